//! The rounds of one queue after a wake-up: pop → submit → reap → publish
//! until the avail ring is empty or the round budget is spent, the first
//! round small and the next ones larger; then the check for contained
//! guest-memory faults.

use vm_memory::{GuestAddressSpace, GuestMemoryMmap};

use super::thread::RunnerThread;
use crate::QueueError;

/// Chains in the first round of a wake-up (see [`RunnerThread::serve`]).
const FIRST_ROUND: usize = 4;

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

impl RunnerThread {
    /// Run rounds on `slot` until its avail ring is empty (or the round
    /// budget is spent). Returns whether work may be left.
    pub(super) fn serve(&mut self, slot: usize) -> bool {
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
}
