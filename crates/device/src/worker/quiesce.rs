//! Waiting for everything in flight: before a stop, a reset, a memory
//! change or a broken ring, every request the engine holds is reaped and
//! answered, however long a stuck engine takes to give it back.

use std::time::{Duration, Instant};

use vblk_interrupt::Interrupt;
use vblk_queue::Queue;
use vblk_request::VIRTIO_BLK_S_IOERR;
use vm_memory::GuestMemory;

use super::{QueueError, QueueWorker};
use crate::stats::inc;

impl QueueWorker {
    /// Wait until nothing is in flight. Requests complete as usual (status
    /// byte, used element); a stuck engine is logged and counted every
    /// [`STUCK_AFTER`], and asked to cancel after [`CANCEL_AFTER`] (see
    /// [`QueueWorker::set_stuck_timeouts`]) — but
    /// the wait only ends when the engine has given every request back,
    /// because until then the kernel may still write into guest memory.
    ///
    /// [`STUCK_AFTER`]: super::STUCK_AFTER
    /// [`CANCEL_AFTER`]: super::CANCEL_AFTER
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
