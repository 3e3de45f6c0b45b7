//! What a transport hands the runners and gets back: how they work
//! ([`RunnerOptions`], the [`ThreadHook`]), a configured ring to serve
//! ([`RingSetup`]) and a stopped one ([`Stopped`]).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use vblk_interrupt::Interrupt;
use vblk_queue::Queue;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use crate::{InflightLog, QueueError};

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
    /// [`Runners::kick`](super::Runners::kick).
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

/// What [`Runners::stop`](super::Runners::stop) hands back.
pub struct Stopped {
    pub queue: Queue,
    pub broken: bool,
}
