//! The worker over a packed ring (`VIRTIO_F_RING_PACKED`): the same
//! pipeline as the split ring (pop → plan → submit → complete → publish),
//! with the ring itself from `vblk_queue::packed`.
//!
//! The transports keep handing the worker a `virtio_queue::Queue`: for a
//! packed ring it only carries the configuration (size, descriptor ring,
//! driver area in the "avail" address, device area in the "used" address,
//! EVENT_IDX), and the worker mirrors its positions into it in vhost-user's
//! encoding (`next_avail` = avail index | wrap << 15, `next_used` = used
//! index | wrap << 15), so a transport reads where the ring stopped from
//! the queue it gets back, whatever the layout.

use vblk_interrupt::{Interrupt, InterruptKind};
use vblk_queue::packed::PackedRing;
use vblk_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemory};

use crate::stats::inc;
use crate::{QueueError, QueueWorker};

/// vhost-user's base of a packed ring kept in a queue (see the module
/// documentation): avail position in bits 0–15, used position in 16–31.
pub fn packed_base(queue: &Queue) -> u32 {
    u32::from(queue.next_avail()) | (u32::from(queue.next_used()) << 16)
}

/// Store a packed ring's base (SET_VRING_BASE) in a queue.
pub fn set_packed_base(queue: &mut Queue, base: u32) {
    queue.set_next_avail(base as u16);
    queue.set_next_used((base >> 16) as u16);
}

impl QueueWorker {
    /// Start a fresh ring of either layout. A packed ring whose
    /// configuration the driver got wrong (size, alignment, positions past
    /// the ring) is an error: the caller treats the ring as broken.
    pub fn attach_ring(&mut self, queue: &Queue, packed: bool) -> Result<(), QueueError> {
        self.attach(queue);
        if packed {
            let ring = PackedRing::new(
                GuestAddress(queue.desc_table()),
                GuestAddress(queue.avail_ring()),
                GuestAddress(queue.used_ring()),
                queue.size(),
                packed_base(queue),
                queue.event_idx_enabled(),
            )
            .map_err(|e| QueueError::Packed(self.index(), e))?;
            self.packed = Some(ring);
        }
        Ok(())
    }

    /// Whether this worker serves a packed ring.
    pub fn is_packed(&self) -> bool {
        self.packed.is_some()
    }

    fn packed_err(&self, e: vblk_queue::packed::PackedError) -> QueueError {
        QueueError::Packed(self.index(), e)
    }

    /// Ask the driver to stop (`false`) or resume (`true`) kicking.
    /// Resuming returns whether chains arrived meanwhile.
    pub fn set_notification<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        enable: bool,
    ) -> Result<bool, QueueError> {
        let qi = self.index();
        match &self.packed {
            Some(p) => p
                .set_notification(mem, enable)
                .map_err(|e| self.packed_err(e)),
            None if enable => queue
                .enable_notification(mem)
                .map_err(|e| QueueError::Ring(qi, e)),
            None => queue
                .disable_notification(mem)
                .map(|()| false)
                .map_err(|e| QueueError::Ring(qi, e)),
        }
    }

    /// Whether the ring's three areas (descriptors, driver area, device
    /// area, event fields included) lie in `mem` now.
    ///
    /// A transport may change the memory table under a running ring: QEMU's
    /// vfio-user client unmaps RAM and maps it again, in separate messages,
    /// whenever the guest's memory topology changes (SeaBIOS handing over to
    /// Linux does it while SeaBIOS's rings are live). A ring whose memory is
    /// missing for now waits for it instead of being declared broken.
    pub fn ring_in_memory<M: GuestMemory>(&self, queue: &Queue, mem: &M) -> bool {
        let n = u64::from(queue.size());
        let (driver, device) = if self.packed.is_some() {
            // virtio 1.2, 2.8.10: each event suppression structure is 4 bytes.
            (4, 4)
        } else {
            // 2.7.6 / 2.7.8: flags, idx, ring[n], used_event / avail_event.
            (6 + 2 * n, 6 + 8 * n)
        };
        use vm_memory::Permissions::{Read, Write};
        [
            (queue.desc_table(), 16 * n, Read),
            (queue.avail_ring(), driver, Read),
            (queue.used_ring(), device, Write),
        ]
        .into_iter()
        .all(|(addr, len, access)| {
            usize::try_from(len).is_ok_and(|len| mem.check_range(GuestAddress(addr), len, access))
        })
    }

    /// Whether the driver has made chains available that are not popped.
    pub fn has_pending<M: GuestMemory>(&self, queue: &Queue, mem: &M) -> bool {
        match &self.packed {
            Some(p) => p.has_pending(mem).unwrap_or(false),
            None => vblk_queue::has_pending(queue, mem).unwrap_or(false),
        }
    }

    pub(crate) fn pop_packed<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        budget: usize,
    ) -> Result<usize, QueueError> {
        let mut popped = 0;
        let mut result = Ok(());
        self.round_bytes = 0;
        let mut chain = std::mem::take(&mut self.chain);
        while popped < budget && self.round_bytes < self.max_round_bytes {
            let Some(ring) = self.packed.as_mut() else {
                break;
            };
            let got = ring.pop(mem, &mut chain);
            queue.set_next_avail(ring.avail().encode());
            match got {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    inc(&self.stats.queue(usize::from(self.index())).broken_rings);
                    result = Err(self.packed_err(e));
                    break;
                }
            }
            popped += 1;
            inc(&self.stats.queue(usize::from(self.index())).chains_popped);
            if let Err(e) = self.start_chain(queue, mem, &chain) {
                result = Err(e);
                break;
            }
        }
        self.chain = chain;
        if popped > 0 {
            inc(&self.stats.queue(usize::from(self.index())).drains);
        }
        self.submit_planned();
        result.map(|()| popped)
    }

    /// The used descriptor of buffer `id`, visible to the driver at once
    /// (a packed ring has no used index to publish).
    pub(crate) fn push_used_packed<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        id: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        let qi = self.index();
        let Some(ring) = self.packed.as_mut() else {
            return Ok(());
        };
        let r = ring.push_used(mem, id, len);
        queue.set_next_used(ring.used().encode());
        r.map_err(|e| QueueError::Packed(qi, e))
    }

    /// One interrupt decision for the used descriptors written since the
    /// last one (the driver's event suppression structure).
    pub(crate) fn publish_packed<M: GuestMemory>(
        &mut self,
        mem: &M,
        irq: &dyn Interrupt,
    ) -> Result<(), QueueError> {
        let qi = self.index();
        self.unpublished = 0;
        let s = self.stats.clone();
        let s = s.queue(usize::from(qi));
        inc(&s.reaps);
        let Some(ring) = self.packed.as_mut() else {
            return Ok(());
        };
        if ring
            .needs_interrupt(mem)
            .map_err(|e| QueueError::Packed(qi, e))?
        {
            inc(&s.interrupts);
            if let Err(e) = irq.trigger(InterruptKind::Queue(qi)) {
                log::warn!("queue {qi}: interrupt failed: {e}");
            }
        } else {
            inc(&s.interrupts_suppressed);
        }
        Ok(())
    }
}
