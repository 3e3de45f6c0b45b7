//! Publication: used elements are written as requests finish; the
//! used index is stored once per publication, with one interrupt decision
//! (the split-ring rules are in `crate::used`).

use vblk_interrupt::{Interrupt, InterruptKind};
use vblk_queue::{Queue, QueueT};
use vm_memory::GuestMemory;

use super::{QueueError, QueueWorker};
use crate::stats::inc;
use crate::used;

impl QueueWorker {
    pub(super) fn push_used<M: GuestMemory>(
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
}
