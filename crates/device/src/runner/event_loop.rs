//! The runner thread's loop: one `epoll` wait for the control eventfd, each
//! queue's kick eventfds and its engine's completion eventfd; after every
//! wake-up, control commands first, then a serve of every queue, then
//! polling or sleeping.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::thread::{
    token, QueueCtx, RunnerThread, KIND_COMPLETION, KIND_KICK, KIND_OWN_KICK, TOKEN_CTL,
};
use super::{Ctl, RunnerOptions};
use crate::stats::inc;
use crate::BlkDevice;

fn drain_eventfd(fd: &EventFd) {
    let _ = fd.read();
}

impl RunnerThread {
    pub(super) fn new(
        queues: Vec<QueueCtx>,
        ctl: Arc<Ctl>,
        opts: RunnerOptions,
        device: Arc<BlkDevice>,
    ) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        let add = |fd: RawFd, data: u64| {
            epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, data),
            )
        };
        add(ctl.wake.as_raw_fd(), TOKEN_CTL)?;
        for (i, q) in queues.iter().enumerate() {
            add(q.own_kick.as_raw_fd(), token(i, KIND_OWN_KICK))?;
            if let Some(fd) = q.worker.completion_fd() {
                add(fd, token(i, KIND_COMPLETION))?;
            }
        }
        Ok(RunnerThread {
            queues,
            ctl,
            epoll,
            opts,
            device,
            settles: Vec::new(),
        })
    }

    pub(super) fn run(&mut self) {
        let mut events = vec![EpollEvent::default(); 8 + 3 * self.queues.len()];
        let mut busy = true;
        loop {
            if !self.commands() {
                return;
            }
            for slot in 0..self.queues.len() {
                busy |= self.serve(slot);
            }
            for ack in self.settles.drain(..) {
                let _ = ack.send(());
            }
            if !busy && !self.opts.poll.is_zero() {
                busy = self.poll();
            }
            // A failed submission is retried after a short sleep.
            let retry = self.queues.iter().any(|q| q.worker.submit_pending());
            let timeout = if busy {
                0
            } else if retry {
                1
            } else {
                -1
            };
            busy = false;
            let n = match self.epoll.wait(timeout, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("queue runner: epoll_wait failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            for ev in &events[..n] {
                let data = ev.data();
                if data == TOKEN_CTL {
                    drain_eventfd(&self.ctl.wake);
                    continue;
                }
                let Some(q) = self.queues.get((data >> 2) as usize) else {
                    continue;
                };
                match data & 3 {
                    KIND_OWN_KICK => drain_eventfd(&q.own_kick),
                    KIND_KICK => {
                        if let Some(k) = q.active.as_ref().and_then(|a| a.kick.as_ref()) {
                            drain_eventfd(k);
                        }
                        let st = self.device.stats().queue(usize::from(q.worker.index()));
                        inc(&st.notify_eventfd);
                    }
                    // The engine clears its completion eventfd when it reaps.
                    _ => {}
                }
            }
        }
    }
}
