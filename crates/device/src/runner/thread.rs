//! One runner thread's state: the queues it serves (each with its worker
//! and, while started, its ring), the `epoll` tokens of their eventfds, and
//! what happens when a ring breaks. The thread's work is in `event_loop`,
//! `control`, `serve` and `poll`.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use vblk_interrupt::Interrupt;
use vblk_queue::Queue;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::Epoll;
use vmm_sys_util::eventfd::EventFd;

use super::{Ctl, RunnerOptions};
use crate::{BlkDevice, QueueError, QueueWorker};

pub(super) struct Active {
    pub(super) queue: Queue,
    pub(super) atomic: GuestMemoryAtomic<GuestMemoryMmap>,
    /// The memory every in-flight request points into.
    pub(super) mem: Arc<GuestMemoryMmap>,
    pub(super) kick: Option<Arc<EventFd>>,
    pub(super) irq: Arc<dyn Interrupt>,
    pub(super) on_broken: Box<dyn Fn(&QueueError) + Send>,
    pub(super) broken: bool,
    /// The ring's memory is not in the memory table now: it is served
    /// again once the transport kicks after a new mapping.
    pub(super) unmapped: bool,
    /// Process-wide contained guest-memory faults when the ring started.
    pub(super) faults: u64,
}

pub(super) struct QueueCtx {
    pub(super) worker: QueueWorker,
    pub(super) own_kick: Arc<EventFd>,
    pub(super) active: Option<Active>,
    pub(super) poll_window: Duration,
}

pub(super) const KIND_OWN_KICK: u64 = 0;
pub(super) const KIND_KICK: u64 = 1;
pub(super) const KIND_COMPLETION: u64 = 2;
pub(super) const TOKEN_CTL: u64 = u64::MAX;

pub(super) fn token(slot: usize, kind: u64) -> u64 {
    ((slot as u64) << 2) | kind
}

pub(super) struct RunnerThread {
    pub(super) queues: Vec<QueueCtx>,
    pub(super) ctl: Arc<Ctl>,
    pub(super) epoll: Epoll,
    pub(super) opts: RunnerOptions,
    pub(super) device: Arc<BlkDevice>,
    /// Settle requests, answered after the next pass over the queues.
    pub(super) settles: Vec<Sender<()>>,
}

impl RunnerThread {
    pub(super) fn slot_of(&self, index: u16) -> Option<usize> {
        self.queues.iter().position(|q| q.worker.index() == index)
    }

    pub(super) fn broken(&mut self, slot: usize, e: QueueError) {
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
}
