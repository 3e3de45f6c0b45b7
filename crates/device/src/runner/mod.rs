//! The per-queue event loop, shared by every transport.
//!
//! Each runner thread serves one or more queues. It waits in one `epoll`
//! for a queue's kick eventfd, its storage engine's completion eventfd and
//! its own control eventfd, and on every wake-up runs rounds of
//! pop → submit → reap → publish ([`QueueWorker`]) until the avail ring is
//! empty, submitting new requests while older ones are still in flight.
//! Completions are published as they arrive, with one interrupt decision
//! per publication: the driver can refill the ring while the device works.
//!
//! The control plane (vhost-user messages, PCI register writes) talks to
//! the runners through [`Runners`]: start a ring, stop it (every in-flight
//! request completes first), pause every ring around a memory change, kick.
//! Guest memory is read through a snapshot that a runner keeps for as long
//! as any request is in flight, so a mapping that points into an I/O stays
//! mapped until that I/O is done; [`Runners::pause_all`] waits for every
//! in-flight request before the caller changes the memory table.
//!
//! One job a file:
//! * `setup`: what a transport hands over ([`RunnerOptions`],
//!   [`RingSetup`]) and gets back ([`Stopped`]);
//! * this file: [`Runners`], the control plane's handle on the threads
//!   (start, stop, pause, settle, kick) and the commands it sends them;
//! * `thread`: one runner thread's state (its queues, their epoll tokens)
//!   and what happens when a ring breaks;
//! * `event_loop`: the thread's `epoll` loop;
//! * `control`: the thread's side of the control commands;
//! * `serve`: the rounds of one queue after a wake-up;
//! * `poll`: busy-polling the rings and engines before sleeping.
//!
//! [`QueueWorker`]: crate::QueueWorker

use std::collections::VecDeque;
use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use vmm_sys_util::eventfd::EventFd;

use crate::BlkDevice;

mod control;
mod event_loop;
mod poll;
mod serve;
mod setup;
mod thread;

pub use setup::{RingSetup, RunnerOptions, Stopped, ThreadHook};

use thread::{QueueCtx, RunnerThread};

enum Cmd {
    Start(u16, Box<RingSetup>, Sender<io::Result<()>>),
    Stop(u16, Sender<Option<Stopped>>),
    Pause(Sender<()>, Receiver<()>),
    Settle(Sender<()>),
    Exit,
}

struct Ctl {
    cmds: Mutex<VecDeque<Cmd>>,
    wake: EventFd,
    /// The runners are being dropped: a pause ends even if its guard lives on.
    exiting: std::sync::atomic::AtomicBool,
}

impl Ctl {
    fn send(&self, c: Cmd) {
        self.cmds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(c);
        let _ = self.wake.write(1);
    }
}

struct ThreadHandle {
    ctl: Arc<Ctl>,
    join: Option<JoinHandle<()>>,
}

/// Every queue runner of one device (one front-end connection).
pub struct Runners {
    threads: Vec<ThreadHandle>,
    /// Queue index → (thread, the queue's own kick eventfd).
    queues: Vec<(usize, Arc<EventFd>)>,
}

/// Keeps every runner paused (no I/O in flight, no guest memory access)
/// until dropped.
pub struct PauseGuard {
    _resume: Vec<Sender<()>>,
}

impl Runners {
    /// A runner per queue; queue `i` on thread `i % threads` (`threads == 0`:
    /// one thread per queue).
    pub fn new(
        device: &Arc<BlkDevice>,
        threads: usize,
        opts: RunnerOptions,
    ) -> io::Result<Runners> {
        let nq = usize::from(device.num_queues());
        let nt = match threads {
            0 => nq,
            t => t.min(nq),
        }
        .max(1);
        let mut per_thread: Vec<Vec<QueueCtx>> = (0..nt).map(|_| Vec::new()).collect();
        let mut queues = Vec::with_capacity(nq);
        for i in 0..nq {
            let mut worker = device.worker(i as u16)?;
            worker.set_stuck_timeouts(opts.stuck_after, opts.cancel_after);
            worker.set_max_round_bytes(opts.max_round_bytes);
            worker.set_dirty_log(opts.dirty_log.clone());
            let kick = Arc::new(EventFd::new(libc::EFD_NONBLOCK)?);
            queues.push((i % nt, kick.clone()));
            per_thread[i % nt].push(QueueCtx {
                worker,
                own_kick: kick,
                active: None,
                poll_window: opts.poll,
            });
        }
        // Built up thread by thread: on an error, dropping it stops the
        // threads already started.
        let mut runners = Runners {
            threads: Vec::with_capacity(nt),
            queues,
        };
        for (t, qs) in per_thread.into_iter().enumerate() {
            let ctl = Arc::new(Ctl {
                cmds: Mutex::new(VecDeque::new()),
                wake: EventFd::new(libc::EFD_NONBLOCK)?,
                exiting: std::sync::atomic::AtomicBool::new(false),
            });
            let mut rt = RunnerThread::new(qs, ctl.clone(), opts.clone(), device.clone())?;
            let hook = opts.thread_hook.clone();
            let (ready_tx, ready_rx) = channel();
            let join = std::thread::Builder::new()
                .name(format!("vblk-queue-{t}"))
                .spawn(move || {
                    if let Some(h) = hook {
                        if let Err(e) = h() {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    }
                    let _ = ready_tx.send(Ok(()));
                    rt.run()
                })?;
            runners.threads.push(ThreadHandle {
                ctl,
                join: Some(join),
            });
            ready_rx
                .recv()
                .map_err(|_| io::Error::other("a queue thread died at start"))??;
        }
        Ok(runners)
    }

    pub fn len(&self) -> usize {
        self.queues.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    fn thread_of(&self, index: u16) -> Option<&ThreadHandle> {
        let (t, _) = self.queues.get(usize::from(index))?;
        self.threads.get(*t)
    }

    /// Start serving a configured ring (a ring already running on `index`
    /// is stopped first).
    pub fn start(&self, index: u16, ring: RingSetup) -> io::Result<()> {
        let th = self
            .thread_of(index)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such queue"))?;
        let (tx, rx) = channel();
        th.ctl.send(Cmd::Start(index, Box::new(ring), tx));
        rx.recv()
            .map_err(|_| io::Error::other("the queue runner has exited"))?
    }

    /// Quiesce queue `index` (every in-flight request completes and is
    /// published), stop it and hand back its queue. `None` if it was not
    /// running.
    pub fn stop(&self, index: u16) -> Option<Stopped> {
        let th = self.thread_of(index)?;
        let (tx, rx) = channel();
        th.ctl.send(Cmd::Stop(index, tx));
        rx.recv().ok().flatten()
    }

    /// Quiesce every running queue and keep it paused until the guard is
    /// dropped: use around any change of guest memory.
    pub fn pause_all(&self) -> PauseGuard {
        let mut acks = Vec::new();
        let mut resume = Vec::new();
        for th in &self.threads {
            let (ack_tx, ack_rx) = channel();
            let (res_tx, res_rx) = channel();
            th.ctl.send(Cmd::Pause(ack_tx, res_rx));
            acks.push(ack_rx);
            resume.push(res_tx);
        }
        for a in acks {
            let _ = a.recv();
        }
        PauseGuard { _resume: resume }
    }

    /// Return once every runner has served the kicks that arrived before
    /// this call (requests its engine completed by then are published).
    pub fn settle(&self) {
        let acks: Vec<_> = self
            .threads
            .iter()
            .map(|th| {
                let (tx, rx) = channel();
                th.ctl.send(Cmd::Settle(tx));
                rx
            })
            .collect();
        for a in acks {
            let _ = a.recv();
        }
    }

    /// Wake queue `index` as if its kick eventfd fired.
    pub fn kick(&self, index: u16) {
        if let Some((_, k)) = self.queues.get(usize::from(index)) {
            let _ = k.write(1);
        }
    }

    /// Kick every queue: after the memory table grew, a ring that waited
    /// for its memory is served.
    pub fn kick_all(&self) {
        for (_, k) in &self.queues {
            let _ = k.write(1);
        }
    }

    /// The eventfd behind [`Runners::kick`] for queue `index` (a transport
    /// can hand it to the client as an ioeventfd).
    pub fn kick_fd(&self, index: u16) -> Option<Arc<EventFd>> {
        self.queues.get(usize::from(index)).map(|(_, k)| k.clone())
    }
}

impl Drop for Runners {
    fn drop(&mut self) {
        for th in &self.threads {
            th.ctl
                .exiting
                .store(true, std::sync::atomic::Ordering::SeqCst);
            th.ctl.send(Cmd::Exit);
        }
        for th in &mut self.threads {
            if let Some(j) = th.join.take() {
                let _ = j.join();
            }
        }
    }
}
