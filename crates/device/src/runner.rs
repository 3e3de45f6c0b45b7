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

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vblk_interrupt::Interrupt;
use vblk_queue::Queue;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use crate::stats::inc;
use crate::{BlkDevice, InflightLog, QueueError, QueueWorker};

/// Called first thing on every runner thread (e.g. to install its seccomp
/// filter); an error stops the thread before it serves anything.
pub type ThreadHook = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

/// How the runners work.
#[derive(Clone)]
pub struct RunnerOptions {
    /// Busy-poll the avail ring and the engine for up to this long after a
    /// round before sleeping (adaptive: halves when a poll finds nothing,
    /// doubles when it does). Zero: sleep at once.
    pub poll: Duration,
    /// Chains popped per round before the round's I/O is submitted and its
    /// completions published.
    pub max_batch: usize,
    /// Data a round takes from the ring before it submits.
    pub max_round_bytes: u64,
    /// Rounds per wake-up before the runner looks at its control commands
    /// and other queues again.
    pub max_rounds: usize,
    /// A stop or pause that waits this long for in-flight I/O logs and
    /// counts it as stuck ...
    pub stuck_after: Duration,
    /// ... and after this long asks the engine to cancel it (the wait still
    /// lasts until the engine gives every request back).
    pub cancel_after: Duration,
    /// Run at the start of each runner thread.
    pub thread_hook: Option<ThreadHook>,
    /// Where every queue logs the guest pages it writes (live migration).
    pub dirty_log: Option<Arc<dyn crate::DirtyLog>>,
}

impl std::fmt::Debug for RunnerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerOptions")
            .field("poll", &self.poll)
            .field("max_batch", &self.max_batch)
            .field("max_round_bytes", &self.max_round_bytes)
            .field("max_rounds", &self.max_rounds)
            .field("stuck_after", &self.stuck_after)
            .field("cancel_after", &self.cancel_after)
            .field("thread_hook", &self.thread_hook.is_some())
            .field("dirty_log", &self.dirty_log.is_some())
            .finish()
    }
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            poll: Duration::ZERO,
            max_batch: 64,
            max_round_bytes: crate::worker::MAX_ROUND_BYTES,
            max_rounds: 16,
            stuck_after: crate::worker::STUCK_AFTER,
            cancel_after: crate::worker::CANCEL_AFTER,
            thread_hook: None,
            dirty_log: None,
        }
    }
}

/// A configured ring to serve.
pub struct RingSetup {
    /// Size, ring addresses, `next_avail`/`next_used`, EVENT_IDX: ready.
    pub queue: Queue,
    pub mem: GuestMemoryAtomic<GuestMemoryMmap>,
    /// The driver's kick eventfd; `None` when the transport kicks through
    /// [`Runners::kick`].
    pub kick: Option<Arc<EventFd>>,
    pub irq: Arc<dyn Interrupt>,
    /// The ring is broken (the queue stays stopped until the next start).
    pub on_broken: Box<dyn Fn(&QueueError) + Send>,
    pub inflight: Option<Box<dyn InflightLog>>,
    /// Heads to execute before anything from the avail ring (recovery).
    pub resubmit: Vec<u16>,
    /// `VIRTIO_F_RING_PACKED` was negotiated: `queue` describes a packed
    /// ring (see `crate::ring`).
    pub packed: bool,
}

/// What [`Runners::stop`] hands back.
pub struct Stopped {
    pub queue: Queue,
    pub broken: bool,
}

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

// ----------------------------------------------------------------------
// The thread
// ----------------------------------------------------------------------

struct Active {
    queue: Queue,
    atomic: GuestMemoryAtomic<GuestMemoryMmap>,
    /// The memory every in-flight request points into.
    mem: Arc<GuestMemoryMmap>,
    kick: Option<Arc<EventFd>>,
    irq: Arc<dyn Interrupt>,
    on_broken: Box<dyn Fn(&QueueError) + Send>,
    broken: bool,
    /// The ring's memory is not in the memory table now: it is served
    /// again once the transport kicks after a new mapping.
    unmapped: bool,
    /// Process-wide contained guest-memory faults when the ring started.
    faults: u64,
}

struct QueueCtx {
    worker: QueueWorker,
    own_kick: Arc<EventFd>,
    active: Option<Active>,
    poll_window: Duration,
}

/// Chains in the first round of a wake-up (see [`RunnerThread::serve`]).
const FIRST_ROUND: usize = 4;

const KIND_OWN_KICK: u64 = 0;
const KIND_KICK: u64 = 1;
const KIND_COMPLETION: u64 = 2;
const TOKEN_CTL: u64 = u64::MAX;

fn token(slot: usize, kind: u64) -> u64 {
    ((slot as u64) << 2) | kind
}

/// Whether a region of `mem` holds a mapping that contained a fault.
fn faulted_in(mem: &GuestMemoryMmap) -> bool {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};
    mem.iter().any(|r| {
        let (Ok(base), Ok(len)) = (
            r.get_host_address(MemoryRegionAddress(0)),
            usize::try_from(r.len()),
        ) else {
            return false;
        };
        vblk_memory::faulted_within(base as usize, len)
    })
}

fn drain_eventfd(fd: &EventFd) {
    let _ = fd.read();
}

struct RunnerThread {
    queues: Vec<QueueCtx>,
    ctl: Arc<Ctl>,
    epoll: Epoll,
    opts: RunnerOptions,
    device: Arc<BlkDevice>,
    /// Settle requests, answered after the next pass over the queues.
    settles: Vec<Sender<()>>,
}

impl RunnerThread {
    fn new(
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

    fn slot_of(&self, index: u16) -> Option<usize> {
        self.queues.iter().position(|q| q.worker.index() == index)
    }

    fn run(&mut self) {
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

    /// Handle pending control commands; false on Exit.
    fn commands(&mut self) -> bool {
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

    fn broken(&mut self, slot: usize, e: QueueError) {
        let Some(q) = self.queues.get_mut(slot) else {
            return;
        };
        let Some(a) = q.active.as_mut() else {
            return;
        };
        // Requests already with the storage still own their buffers: wait
        // for them (their completions are written as far as the ring allows).
        let _ = q.worker.wait_all(&mut a.queue, &*a.mem);
        a.broken = true;
        log::error!("{e}; the queue stops until the driver resets it");
        (a.on_broken)(&e);
    }

    /// Run rounds on `slot` until its avail ring is empty (or the round
    /// budget is spent). Returns whether work may be left.
    fn serve(&mut self, slot: usize) -> bool {
        let max_batch = self.opts.max_batch.max(1);
        let max_rounds = self.opts.max_rounds.max(1);
        let Some(q) = self.queues.get_mut(slot) else {
            return false;
        };
        let Some(a) = q.active.as_mut() else {
            return false;
        };
        if a.broken {
            return false;
        }
        if q.worker.in_flight() == 0 {
            // Nothing points into the old snapshot any more.
            a.mem = a.atomic.memory().into_inner();
        }
        let mem = a.mem.clone();
        if !q.worker.ring_in_memory(&a.queue, &*mem) {
            if !a.unmapped {
                log::info!(
                    "queue {}: its ring is not in guest memory now; waiting until it is mapped again",
                    q.worker.index()
                );
            }
            a.unmapped = true;
            return false;
        }
        a.unmapped = false;
        q.worker.retry_submit();
        let mut result = Ok(false);
        // The first round of a wake-up is small, so that its completions
        // (and the interrupt the waiting driver needs) go out early and the
        // driver refills the ring while the device works through the rest;
        // rounds then double up to `max_batch`.
        let mut batch = FIRST_ROUND.min(max_batch);
        for _ in 0..max_rounds {
            let r = (|| -> Result<bool, QueueError> {
                q.worker.set_notification(&mut a.queue, &*mem, false)?;
                let popped = q.worker.pop_and_submit(&mut a.queue, &*mem, batch)?;
                q.worker.reap(&mut a.queue, &*mem, 0)?;
                q.worker.publish(&mut a.queue, &*mem, &*a.irq)?;
                if popped >= batch {
                    return Ok(true);
                }
                // Re-enable kicks; chains that raced in mean another round.
                q.worker.set_notification(&mut a.queue, &*mem, true)
            })();
            batch = (batch * 2).min(max_batch);
            match r {
                Ok(true) => result = Ok(true),
                other => {
                    result = other;
                    break;
                }
            }
        }
        // A guest-memory access the fault handler contained (a mapping
        // past the end of its file, a write to read-only memory) read
        // zeroes or went nowhere: the ring cannot be trusted any more.
        if result.is_ok() && vblk_memory::contained_faults() != a.faults {
            a.faults = vblk_memory::contained_faults();
            // Some mapping faulted; was it one of this ring's memory?
            if faulted_in(&mem) {
                result = Err(QueueError::MemoryFault(q.worker.index()));
            }
        }
        match result {
            Ok(more) => more,
            Err(e) => {
                self.broken(slot, e);
                false
            }
        }
    }

    /// Busy-poll every active queue's avail ring and engine for up to its
    /// adaptive window. Returns whether work was found.
    fn poll(&mut self) -> bool {
        let max = self.opts.poll;
        let window = self
            .queues
            .iter()
            .filter(|q| q.active.as_ref().is_some_and(|a| !a.broken))
            .map(|q| q.poll_window)
            .max()
            .unwrap_or(Duration::ZERO);
        if window.is_zero() {
            return false;
        }
        // No kicks while we watch the ring ourselves: the driver saves its
        // notification (a syscall) for every request found by polling.
        for q in &mut self.queues {
            if let Some(a) = q.active.as_mut().filter(|a| !a.broken) {
                let _ = q.worker.set_notification(&mut a.queue, &*a.mem, false);
            }
        }
        let deadline = Instant::now() + window;
        let mut found = false;
        'outer: while Instant::now() < deadline {
            for q in &mut self.queues {
                let Some(a) = q.active.as_mut() else { continue };
                if a.broken {
                    continue;
                }
                let pending = q.worker.has_pending(&a.queue, &*a.mem);
                let done = q.worker.in_flight() > 0
                    && q.worker.reap(&mut a.queue, &*a.mem, 0).unwrap_or(0) > 0;
                if done {
                    let _ = q.worker.publish(&mut a.queue, &*a.mem, &*a.irq);
                }
                if pending || done {
                    found = true;
                    break 'outer;
                }
            }
            if !self
                .ctl
                .cmds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
            {
                return true;
            }
            std::hint::spin_loop();
        }
        if !found {
            // Kicks back on before sleeping; chains that raced in are work.
            for q in &mut self.queues {
                if let Some(a) = q.active.as_mut().filter(|a| !a.broken) {
                    found |= q
                        .worker
                        .set_notification(&mut a.queue, &*a.mem, true)
                        .unwrap_or(true);
                }
            }
        }
        for q in &mut self.queues {
            q.poll_window = if found {
                (q.poll_window * 2).min(max)
            } else {
                (q.poll_window / 2).max(max / 16)
            };
        }
        found
    }
}
