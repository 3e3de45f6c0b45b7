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
//!
//! One step a file: `pop` (pop, walk, plan), `submit` (merge, hand to the
//! engine, retry), `complete` (reap, finish requests), `publish` (used
//! elements, used index, interrupt decision) and `quiesce` (wait for
//! everything in flight). The packed-ring forms are in `crate::ring`.

use std::sync::Arc;
use std::time::Duration;

use vblk_backend::{IoCompletion, IoEngine, IoRequest};
use vblk_interrupt::Interrupt;
use vblk_queue::{BrokenChain, Chain, Queue, QueueT};
use vblk_request::{Limits, ID_BYTES};
use vm_memory::GuestMemory;

use crate::dirty::{Dirty, DirtyLog};
use crate::inflight::{Table, Token};
use crate::live::LiveConfig;
use crate::merge::MERGE_MAX_BYTES;
use crate::plan::Pending;
use crate::stats::{QueueStats, Stats};

mod complete;
mod pop;
mod publish;
mod quiesce;
mod submit;

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
}
