//! One queue's requests from pop to used ring.
//!
//! [`QueueWorker`] owns every request of its queue while it is in flight.
//! The event loop ([`crate::runner`]) drives it in rounds:
//!
//! 1. [`QueueWorker::pop_and_submit`]: pop up to a budget of chains, plan
//!    each one (`plan`), merge neighbours (`merge`) and hand the round's
//!    operations to the storage engine in one submission;
//! 2. [`QueueWorker::reap`]: take whatever the engine has finished — in any
//!    order — write each finished request's status byte and used element;
//! 3. [`QueueWorker::publish`]: store the used index once and take one
//!    interrupt decision (`used`).
//!
//! Requests live in a table with generation-tagged tokens (`inflight`), so
//! a late or duplicated completion can never complete the wrong request.
//! Nothing is published while any of its I/O is still with the engine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vblk_backend::{IoCompletion, IoEngine, IoRequest};
use vblk_interrupt::{Interrupt, InterruptKind};
use vblk_queue::{BrokenChain, Chain, Queue, QueueOwnedT, QueueT};
use vblk_request::{Limits, RequestType, ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK};
use vm_memory::{GuestAddress, GuestMemory};

use crate::dirty::{Dirty, DirtyLog};
use crate::inflight::{Table, Token};
use crate::live::LiveConfig;
use crate::merge::{merge, MERGE_MAX_BYTES};
use crate::plan::{write_status, Pending, Plan, Planner};
use crate::stats::{add, inc, QueueStats, Stats};
use crate::used;

/// The queue itself is broken (bad ring address, impossible avail index,
/// a chain that cannot be walked): the transport marks the device
/// DEVICE_NEEDS_RESET or stops the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("virtqueue {0}: {1}")]
    Ring(u16, virtio_queue::Error),
    #[error("virtqueue {0}: the driver made descriptor {1} available, past the queue size")]
    BadHead(u16, u16),
    #[error("virtqueue {0}: chain at descriptor {1}: {2}")]
    Chain(u16, u16, BrokenChain),
    #[error("virtqueue {0}: guest memory faulted (a mapping reaches past its file, or a write to read-only memory)")]
    MemoryFault(u16),
    #[error("virtqueue {0} (packed): {1}")]
    Packed(u16, vblk_queue::packed::PackedError),
}

/// Hooks for crash recovery (vhost-user's inflight region): the worker
/// reports each chain's progress on its own thread.
pub trait InflightLog: Send {
    /// `head` was taken from the avail ring (or resubmitted), before any of
    /// its I/O starts.
    fn popped(&mut self, head: u16);
    /// The used element of `head` has just been written (the used index is
    /// not published yet).
    fn completing(&mut self, head: u16);
    /// The used index `used_idx` was stored: every head passed to
    /// [`InflightLog::completing`] since the last call is done.
    fn published(&mut self, used_idx: u16);
}

/// One storage operation with the engine: a single request's, or the merge
/// of several adjacent requests' (kept to retry them one by one if the
/// merged operation fails).
#[derive(Debug)]
enum Op {
    Single(Token),
    Merged(Vec<IoRequest>),
}

/// After this long without every in-flight request done, a quiesce logs and
/// counts a stuck engine; after [`CANCEL_AFTER`] it asks the engine to cancel.
pub const STUCK_AFTER: Duration = Duration::from_secs(5);
pub const CANCEL_AFTER: Duration = Duration::from_secs(30);

/// Data a round takes from the ring before it submits (bounded work per
/// round, so one queue's large requests do not hold up its completions or
/// the other queues of the thread).
pub const MAX_ROUND_BYTES: u64 = 4 << 20;

/// Processes one virtqueue. Owned by the thread that serves the queue.
pub struct QueueWorker {
    index: u16,
    engine: Box<dyn IoEngine>,
    limits: Limits,
    serial: [u8; ID_BYTES],
    pub(crate) stats: Arc<Stats>,
    requests: Table<Pending>,
    ops: Table<Op>,
    /// This round's operations before merging; token = request token.
    planned: Vec<IoRequest>,
    completions: Vec<IoCompletion>,
    pub(crate) chain: Chain,
    /// Data bytes planned in the current round, and the cap.
    pub(crate) round_bytes: u64,
    pub(crate) max_round_bytes: u64,
    merge_max_bytes: u64,
    /// Used index at the last interrupt decision.
    signalled: u16,
    /// Used elements written since the last publication.
    pub(crate) unpublished: u32,
    log: Option<Box<dyn InflightLog>>,
    /// Live migration: the guest pages written are logged here.
    dirty: Dirty,
    stuck_after: Duration,
    cancel_after: Duration,
    /// The last `submit` failed: requests wait in the engine for another.
    submit_failed: bool,
    /// The ring is packed (`crate::ring`); `None`: split.
    pub(crate) packed: Option<vblk_queue::packed::PackedRing>,
    /// Capacity and cache mode as they change (resize, CONFIG_WCE); read
    /// for every chain planned.
    live: Option<Arc<LiveConfig>>,
    /// Writes of the chain being planned must be durable when they complete.
    write_through: bool,
}

impl QueueWorker {
    pub fn new(
        index: u16,
        engine: Box<dyn IoEngine>,
        limits: Limits,
        serial: [u8; ID_BYTES],
        stats: Arc<Stats>,
    ) -> Self {
        QueueWorker {
            index,
            engine,
            limits,
            serial,
            stats,
            requests: Table::default(),
            ops: Table::default(),
            planned: Vec::new(),
            completions: Vec::new(),
            chain: Chain::default(),
            round_bytes: 0,
            max_round_bytes: MAX_ROUND_BYTES,
            merge_max_bytes: MERGE_MAX_BYTES,
            signalled: 0,
            unpublished: 0,
            log: None,
            dirty: Dirty::default(),
            stuck_after: STUCK_AFTER,
            cancel_after: CANCEL_AFTER,
            submit_failed: false,
            packed: None,
            live: None,
            write_through: false,
        }
    }

    /// Follow `live` (capacity and write-cache mode) from the next chain on.
    pub fn set_live(&mut self, live: Option<Arc<LiveConfig>>) {
        self.live = live;
    }

    /// Take the current capacity and cache mode for the next chain.
    fn refresh_live(&mut self) {
        if let Some(l) = &self.live {
            self.limits.capacity = l.capacity();
            self.write_through = !l.writeback();
        }
    }

    /// How long a quiesce waits before it reports in-flight I/O as stuck
    /// (and again each such period), and before it asks the engine to
    /// cancel everything.
    pub fn set_stuck_timeouts(&mut self, stuck_after: Duration, cancel_after: Duration) {
        self.stuck_after = stuck_after.max(Duration::from_millis(1));
        self.cancel_after = cancel_after;
    }

    /// Cap merged reads/writes at `bytes` (0 disables merging).
    pub fn set_merge_max_bytes(&mut self, bytes: u64) {
        self.merge_max_bytes = bytes;
    }

    /// Stop taking chains in a round once `bytes` of data are planned.
    pub fn set_max_round_bytes(&mut self, bytes: u64) {
        self.max_round_bytes = bytes.max(1);
    }

    /// Report progress to `log` (crash recovery), or stop reporting.
    pub fn set_inflight_log(&mut self, log: Option<Box<dyn InflightLog>>) {
        self.log = log;
    }

    /// Log the guest pages this queue writes to `log` while it is enabled.
    pub fn set_dirty_log(&mut self, log: Option<Arc<dyn DirtyLog>>) {
        self.dirty.set(log);
    }

    pub fn index(&self) -> u16 {
        self.index
    }

    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    /// Requests popped and not completed yet.
    pub fn in_flight(&self) -> usize {
        self.requests.len()
    }

    /// The engine's completion eventfd (asynchronous engines only).
    pub fn completion_fd(&self) -> Option<std::os::fd::RawFd> {
        self.engine.completion_fd()
    }

    /// Start a fresh ring: the next interrupt decision counts from the
    /// queue's current used index.
    pub fn attach(&mut self, queue: &Queue) {
        self.signalled = queue.next_used();
        self.unpublished = 0;
        self.packed = None;
    }

    fn qstats(&self) -> &QueueStats {
        self.stats.queue(usize::from(self.index))
    }

    /// Serve everything the driver has made available and wait for all of
    /// it, then publish and decide on an interrupt. Returns the number of
    /// chains popped. (The synchronous form of a round, for tests and
    /// simple callers; the event loop uses the steps below.)
    pub fn process<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        irq: &dyn Interrupt,
    ) -> Result<usize, QueueError> {
        self.signalled = queue.next_used().wrapping_sub(self.unpublished as u16);
        let mut total = 0usize;
        let result = loop {
            if let Err(e) = self.set_notification(queue, mem, false) {
                break Err(e);
            }
            match self.pop_and_submit(queue, mem, usize::MAX) {
                Ok(n) => total += n,
                Err(e) => break Err(e),
            }
            if let Err(e) = self.wait_all(queue, mem) {
                break Err(e);
            }
            // Re-enable kicks; if the driver added chains meanwhile, go again
            // (otherwise a kick it suppressed would be lost).
            match self.set_notification(queue, mem, true) {
                Ok(true) => continue,
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        // Whatever happened, nothing stays in flight past this call.
        let drained = self.wait_all(queue, mem);
        let published = self.publish(queue, mem, irq);
        result.and(drained).and(published)?;
        Ok(total)
    }

    /// Pop up to `budget` chains (and about [`MAX_ROUND_BYTES`] of data, see
    /// [`QueueWorker::set_max_round_bytes`]),
    /// plan them and submit their I/O in one go. Returns the number of
    /// chains popped.
    pub fn pop_and_submit<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        budget: usize,
    ) -> Result<usize, QueueError> {
        if self.packed.is_some() {
            return self.pop_packed(queue, mem, budget);
        }
        let qi = self.index;
        let size = queue.size();
        let table = GuestAddress(queue.desc_table());
        let mut popped = 0;
        let mut result = Ok(());
        self.round_bytes = 0;
        while popped < budget && self.round_bytes < self.max_round_bytes {
            let head = match queue.iter(mem) {
                Ok(mut iter) => match iter.next() {
                    Some(dc) => dc.head_index(),
                    None => break,
                },
                Err(e) => {
                    result = Err(QueueError::Ring(qi, e));
                    break;
                }
            };
            popped += 1;
            if let Err(e) = self.start_heads(queue, mem, table, size, &[head]) {
                result = Err(e);
                break;
            }
        }
        if popped > 0 {
            inc(&self.qstats().drains);
        }
        self.submit_planned();
        result.map(|()| popped)
    }

    /// Execute chains named by their heads, ahead of the avail ring (crash
    /// recovery: the requests that were in flight when the previous daemon
    /// died).
    pub fn resubmit<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        heads: &[u16],
    ) -> Result<(), QueueError> {
        let table = GuestAddress(queue.desc_table());
        let r = self.start_heads(queue, mem, table, queue.size(), heads);
        self.submit_planned();
        r
    }

    fn start_heads<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        table: GuestAddress,
        size: u16,
        heads: &[u16],
    ) -> Result<(), QueueError> {
        let qi = self.index;
        let stats = self.stats.clone();
        let s = stats.queue(usize::from(qi));
        add(&s.chains_popped, heads.len() as u64);
        let mut chain = std::mem::take(&mut self.chain);
        let mut result = Ok(());
        for &head in heads {
            if head >= size {
                result = Err(QueueError::BadHead(qi, head));
                break;
            }
            if let Err(e) = chain.walk(mem, table, size, head) {
                inc(&s.broken_rings);
                result = Err(QueueError::Chain(qi, head, e));
                break;
            }
            if let Some(log) = self.log.as_mut() {
                log.popped(head);
            }
            if let Err(e) = self.start_chain(queue, mem, &chain) {
                result = Err(e);
                break;
            }
        }
        self.chain = chain;
        result
    }

    /// Plan one walked chain: answer it at once or queue its operations.
    pub(crate) fn start_chain<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        chain: &Chain,
    ) -> Result<(), QueueError> {
        self.refresh_live();
        let stats = self.stats.clone();
        let first = self.planned.len();
        let plan = Planner {
            queue: self.index,
            limits: &self.limits,
            serial: &self.serial,
            stats: stats.queue(usize::from(self.index)),
            write_through: self.write_through,
        }
        .plan(chain, mem, &mut self.planned);
        match plan {
            Plan::Done(len) => {
                self.dirty.written(&chain.writable);
                self.push_used(queue, mem, chain.head, len)?
            }
            Plan::Io(mut p) => {
                p.dirty = self.dirty.record(&chain.writable);
                self.round_bytes = self.round_bytes.saturating_add(p.bytes);
                let token = self.requests.insert(p);
                for op in &mut self.planned[first..] {
                    op.token = token;
                }
            }
        }
        Ok(())
    }

    /// Merge this round's operations and hand them to the engine.
    pub(crate) fn submit_planned(&mut self) {
        if self.planned.is_empty() {
            return;
        }
        let planned = std::mem::take(&mut self.planned);
        let stats = self.stats.clone();
        let s = stats.queue(usize::from(self.index));
        for (req, members) in merge(planned, self.merge_max_bytes) {
            let op = if members.is_empty() {
                Op::Single(req.token)
            } else {
                add(&s.merged, members.len() as u64 - 1);
                Op::Merged(members)
            };
            self.push_op(op, req);
        }
        self.submit();
    }

    fn push_op(&mut self, op: Op, req: IoRequest) {
        let token = self.ops.insert(op);
        add(&self.qstats().backend_ios, 1);
        // SAFETY: the iovecs point into guest memory that the caller keeps
        // mapped while any request is in flight (the runner holds its memory
        // snapshot until `in_flight()` is 0, and quiesces before a memory
        // change); the request stays in `self.ops` until the engine returns
        // its completion.
        unsafe { self.engine.push(IoRequest { token, ..req }) };
    }

    fn submit(&mut self) {
        inc(&self.qstats().submits);
        // A failed submission leaves the requests queued in the engine (its
        // contract): they go with the next submit (the runner retries soon,
        // see `submit_pending`) or come back with an errno.
        match self.engine.submit() {
            Ok(()) => self.submit_failed = false,
            Err(e) => {
                if !self.submit_failed {
                    log::warn!("queue {}: submitting I/O failed: {e}; retrying", self.index);
                }
                inc(&self.qstats().engine_errors);
                self.submit_failed = true;
            }
        }
    }

    /// Requests wait in the engine because the last submission failed: call
    /// [`QueueWorker::retry_submit`] soon.
    pub fn submit_pending(&self) -> bool {
        self.submit_failed
    }

    /// Hand the engine's queued requests to the storage again.
    pub fn retry_submit(&mut self) {
        if self.submit_failed {
            self.submit();
        }
    }

    /// Take the completions the engine has (waiting for at least `min`),
    /// and finish the requests they complete. Returns requests finished.
    pub fn reap<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        min: usize,
    ) -> Result<usize, QueueError> {
        self.reap_for(queue, mem, min, None)
    }

    fn reap_for<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        min: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, QueueError> {
        if self.ops.is_empty() {
            return Ok(0);
        }
        let mut done = std::mem::take(&mut self.completions);
        let r = match timeout {
            None => self.engine.reap(&mut done, min.min(self.ops.len())),
            Some(t) => self
                .engine
                .reap_timeout(&mut done, min.min(self.ops.len()), t),
        };
        if let Err(e) = r {
            inc(&self.qstats().engine_errors);
            log::warn!("queue {}: reaping completions failed: {e}", self.index);
        }
        let mut finished = 0;
        let mut result = Ok(());
        let mut retried = false;
        for c in done.drain(..) {
            match self.complete_op(queue, mem, c) {
                Ok((n, retry)) => {
                    finished += n;
                    retried |= retry;
                }
                Err(e) => result = Err(e),
            }
        }
        self.completions = done;
        if retried {
            self.submit();
        }
        result.map(|()| finished)
    }

    /// One engine completion. Returns (requests finished, whether operations
    /// were queued again).
    fn complete_op<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        c: IoCompletion,
    ) -> Result<(usize, bool), QueueError> {
        let Some(op) = self.ops.remove(c.token) else {
            log::warn!(
                "queue {}: completion for an unknown operation {:#x}; ignored",
                self.index,
                c.token
            );
            return Ok((0, false));
        };
        let mut finished = 0;
        match op {
            Op::Single(t) => {
                let expect = self.requests.get_mut(t).map(|p| p.bytes).unwrap_or(0);
                finished += self.request_op_done(queue, mem, t, c.result, expect)?;
            }
            Op::Merged(members) => {
                let expect: u64 = members.iter().map(|m| m.len).sum();
                let ok = matches!(c.result, Ok(n) if n == expect);
                if !ok {
                    // Retry each member on its own, so each request gets its
                    // own status.
                    log::debug!(
                        "queue {}: merged I/O failed ({:?}); retrying its {} requests",
                        self.index,
                        c.result,
                        members.len()
                    );
                    for m in members {
                        let t = m.token;
                        self.push_op(Op::Single(t), m);
                    }
                    return Ok((0, true));
                }
                for m in &members {
                    finished += self.request_op_done(queue, mem, m.token, Ok(m.len), m.len)?;
                }
            }
        }
        Ok((finished, false))
    }

    /// One operation of request `t` finished; complete the request when it
    /// was its last. Returns 1 if the request completed.
    fn request_op_done<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        t: Token,
        result: Result<u64, i32>,
        expect: u64,
    ) -> Result<usize, QueueError> {
        let qi = self.index;
        let Some(p) = self.requests.get_mut(t) else {
            return Ok(0);
        };
        match result {
            Ok(n) if matches!(p.kind, Some(RequestType::In | RequestType::Out)) && n != expect => {
                log::warn!("queue {qi}: short I/O: {n} of {expect} bytes");
                p.status = VIRTIO_BLK_S_IOERR;
            }
            Ok(_) => {}
            Err(errno) => {
                log::warn!(
                    "queue {qi}: storage error on {:?}: {}",
                    p.kind,
                    std::io::Error::from_raw_os_error(errno)
                );
                p.status = VIRTIO_BLK_S_IOERR;
            }
        }
        p.ops_left = p.ops_left.saturating_sub(1);
        if p.ops_left > 0 {
            return Ok(0);
        }
        let Some(p) = self.requests.remove(t) else {
            return Ok(0);
        };
        self.stats
            .latency(usize::from(qi))
            .record(p.started.elapsed());
        let s = self.qstats();
        if p.status == VIRTIO_BLK_S_OK {
            match p.kind {
                Some(RequestType::In) => add(&s.bytes_read, p.bytes),
                Some(RequestType::Out) => add(&s.bytes_written, p.bytes),
                _ => {}
            }
        } else {
            inc(&s.backend_errors);
        }
        let used_ok = if p.status == VIRTIO_BLK_S_OK {
            p.used_ok
        } else {
            1
        };
        let len = write_status(s, mem, p.status_addr, p.status, used_ok);
        // Logged after the writes (data, status) and before the used
        // element: a log sync that clears the bits copies the new content.
        self.dirty.written(&p.dirty);
        self.push_used(queue, mem, p.head, len)?;
        Ok(1)
    }

    fn push_used<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        if self.packed.is_some() {
            self.push_used_packed(queue, mem, head, len)?;
        } else {
            used::push(self.index, queue, mem, head, len)?;
        }
        inc(&self.qstats().used_pushes);
        self.unpublished += 1;
        if let Some(log) = self.log.as_mut() {
            log.completing(head);
        }
        Ok(())
    }

    /// Store the used index if elements were added since the last time and
    /// take one interrupt decision for them.
    pub fn publish<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        irq: &dyn Interrupt,
    ) -> Result<(), QueueError> {
        if self.unpublished == 0 {
            return Ok(());
        }
        if self.packed.is_some() {
            // The used descriptors are written (and visible) already.
            self.dirty.ring_written(self.index, queue, true);
            return self.publish_packed(mem, irq);
        }
        let qi = self.index;
        used::publish(qi, queue, mem)?;
        self.dirty.ring_written(qi, queue, false);
        self.unpublished = 0;
        inc(&self.qstats().reaps);
        if let Some(log) = self.log.as_mut() {
            log.published(queue.next_used());
        }
        let old = std::mem::replace(&mut self.signalled, queue.next_used());
        if used::needs_interrupt(qi, queue, mem, old)? {
            inc(&self.qstats().interrupts);
            if let Err(e) = irq.trigger(InterruptKind::Queue(qi)) {
                log::warn!("queue {qi}: interrupt failed: {e}");
            }
        } else {
            inc(&self.qstats().interrupts_suppressed);
        }
        Ok(())
    }

    /// Wait until nothing is in flight. Requests complete as usual (status
    /// byte, used element); a stuck engine is logged and counted every
    /// [`STUCK_AFTER`], and asked to cancel after [`CANCEL_AFTER`] (see
    /// [`QueueWorker::set_stuck_timeouts`]) — but
    /// the wait only ends when the engine has given every request back,
    /// because until then the kernel may still write into guest memory.
    pub fn wait_all<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
    ) -> Result<(), QueueError> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        let mut next_report = self.stuck_after;
        let poll = self.stuck_after.min(Duration::from_millis(500));
        let mut cancelled = false;
        let mut result = Ok(());
        while !self.ops.is_empty() {
            self.retry_submit();
            let want = self.ops.len();
            if let Err(e) = self.reap_for(queue, mem, want, Some(poll)) {
                // Keep reaping: the I/O still owns its buffers. The ring
                // error is reported when everything is back.
                result = Err(e);
            }
            let waited = start.elapsed();
            if !self.ops.is_empty() && waited >= next_report {
                inc(&self.qstats().stuck_io);
                log::error!(
                    "queue {}: {} storage operations still in flight after {:?}",
                    self.index,
                    self.ops.len(),
                    waited
                );
                next_report += self.stuck_after;
            }
            if !cancelled && waited >= self.cancel_after {
                cancelled = true;
                log::error!("queue {}: cancelling stuck storage operations", self.index);
                self.engine.cancel_all();
            }
        }
        // Requests whose operations were all lost (cannot happen with a
        // correct engine) must still be answered.
        for t in self.requests.tokens() {
            if let Some(p) = self.requests.get_mut(t) {
                p.status = VIRTIO_BLK_S_IOERR;
                p.ops_left = 1;
            }
            let r = self.request_op_done(queue, mem, t, Err(libc::EIO), 0);
            if result.is_ok() {
                result = r.map(|_| ());
            }
        }
        result
    }

    /// Every request done and published (before a stop, a reset, a memory
    /// change). Counted.
    pub fn quiesce<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        irq: &dyn Interrupt,
    ) -> Result<(), QueueError> {
        if !self.requests.is_empty() || self.unpublished > 0 {
            inc(&self.qstats().quiesces);
        }
        let r = self.wait_all(queue, mem);
        let p = self.publish(queue, mem, irq);
        // `avail_event` is written between publications: the ring as it
        // stops (before GET_VRING_BASE answers) is logged whole.
        self.dirty
            .ring_written(self.index, queue, self.packed.is_some());
        r.and(p)
    }
}
