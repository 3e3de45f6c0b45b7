//! The runner thread's side of the control commands ([`super::Runners`]):
//! start a ring, stop it, pause every ring around a memory change, settle,
//! exit; and the quiesce (every in-flight request completed and published)
//! that a stop and a pause begin with.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use vm_memory::{GuestAddressSpace, GuestMemoryMmap};
use vmm_sys_util::epoll::{ControlOperation, EpollEvent, EventSet};

use super::thread::{token, Active, RunnerThread, KIND_KICK};
use super::{Cmd, RingSetup, Stopped};

impl RunnerThread {
    /// Handle pending control commands; false on Exit.
    pub(super) fn commands(&mut self) -> bool {
        loop {
            let cmd = self
                .ctl
                .cmds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            let Some(cmd) = cmd else { return true };
            match cmd {
                Cmd::Start(index, ring, reply) => {
                    let r = self.start(index, *ring);
                    let _ = reply.send(r);
                }
                Cmd::Stop(index, reply) => {
                    let r = self.slot_of(index).and_then(|s| self.stop(s));
                    let _ = reply.send(r);
                }
                Cmd::Pause(ack, resume) => {
                    for slot in 0..self.queues.len() {
                        self.quiesce(slot);
                        // Hold no reference to the memory that is about to
                        // change; the next round loads the new table.
                        if let Some(a) = self.queues[slot].active.as_mut() {
                            a.mem = Arc::new(GuestMemoryMmap::new());
                        }
                    }
                    let _ = ack.send(());
                    // Until the guard is dropped (its sender goes away), or
                    // the runners are.
                    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        resume.recv_timeout(Duration::from_millis(100))
                    {
                        if self.ctl.exiting.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                    }
                    // A ring that waited for its memory may have it now.
                    for slot in 0..self.queues.len() {
                        if self.queues[slot]
                            .active
                            .as_ref()
                            .is_some_and(|a| a.unmapped)
                        {
                            self.serve(slot);
                        }
                    }
                }
                Cmd::Settle(ack) => self.settles.push(ack),
                Cmd::Exit => {
                    for slot in 0..self.queues.len() {
                        self.stop(slot);
                    }
                    return false;
                }
            }
        }
    }

    fn start(&mut self, index: u16, ring: RingSetup) -> io::Result<()> {
        let slot = self
            .slot_of(index)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such queue"))?;
        self.stop(slot);
        let RingSetup {
            queue,
            mem,
            kick,
            irq,
            on_broken,
            inflight,
            resubmit,
            packed,
        } = ring;
        if let Some(k) = &kick {
            self.epoll.ctl(
                ControlOperation::Add,
                k.as_raw_fd(),
                EpollEvent::new(EventSet::IN, token(slot, KIND_KICK)),
            )?;
        }
        let q = &mut self.queues[slot];
        let attached = q.worker.attach_ring(&queue, packed);
        q.worker.set_inflight_log(inflight);
        q.poll_window = self.opts.poll;
        let snapshot = mem.memory().into_inner();
        q.active = Some(Active {
            queue,
            atomic: mem,
            mem: snapshot,
            kick,
            irq,
            on_broken,
            broken: false,
            unmapped: false,
            faults: vblk_memory::contained_faults(),
        });
        if let Err(e) = attached {
            self.broken(slot, e);
            return Ok(());
        }
        if let (false, Some(a)) = (resubmit.is_empty(), q.active.as_mut()) {
            log::info!(
                "queue {index}: resubmitting {} requests that were in flight",
                resubmit.len()
            );
            let r = q.worker.resubmit(&mut a.queue, &*a.mem, &resubmit);
            if let Err(e) = r {
                self.broken(slot, e);
            }
        }
        // Chains may be waiting already (a restarted ring).
        self.serve(slot);
        Ok(())
    }

    /// Quiesce and stop the ring of `slot`.
    fn stop(&mut self, slot: usize) -> Option<Stopped> {
        self.quiesce(slot);
        let q = self.queues.get_mut(slot)?;
        let a = q.active.take()?;
        if let Some(k) = &a.kick {
            let _ = self.epoll.ctl(
                ControlOperation::Delete,
                k.as_raw_fd(),
                EpollEvent::default(),
            );
        }
        q.worker.set_inflight_log(None);
        Some(Stopped {
            queue: a.queue,
            broken: a.broken,
        })
    }

    /// Wait for every in-flight request of `slot` and publish it.
    fn quiesce(&mut self, slot: usize) {
        let Some(q) = self.queues.get_mut(slot) else {
            return;
        };
        let Some(a) = q.active.as_mut() else {
            return;
        };
        let r = q.worker.quiesce(&mut a.queue, &*a.mem, &*a.irq);
        if let Err(e) = r {
            if !a.broken {
                self.broken(slot, e);
            }
        }
    }
}
