//! The used ring: elements written as requests complete, the used index
//! stored once per round, and one interrupt decision per publication
//! (EVENT_IDX `used_event` or the NO_INTERRUPT flag).

use std::sync::atomic::{fence, Ordering};

use vblk_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

use crate::QueueError;

/// "If flags is 1, the device SHOULD NOT send a notification" (virtio 1.2,
/// 2.7.7.2); `VRING_AVAIL_F_NO_INTERRUPT` from virtio-bindings.
const NO_INTERRUPT: u16 = virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT as u16;

fn ring_err(q: u16) -> impl Fn(vm_memory::GuestMemoryError) -> QueueError {
    move |e| QueueError::Ring(q, virtio_queue::Error::GuestMemory(e))
}

fn overflow(q: u16) -> QueueError {
    QueueError::Ring(q, virtio_queue::Error::AddressOverflow)
}

/// Write one used element at the next used slot; the index is published
/// later by [`publish`].
pub(crate) fn push<M: GuestMemory>(
    qi: u16,
    queue: &mut Queue,
    mem: &M,
    head: u16,
    len: u32,
) -> Result<(), QueueError> {
    let next = queue.next_used();
    let slot = u64::from(next % queue.size().max(1));
    let addr = GuestAddress(queue.used_ring())
        .checked_add(4 + 8 * slot)
        .ok_or(overflow(qi))?;
    let mut elem = [0u8; 8];
    elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
    elem[4..].copy_from_slice(&len.to_le_bytes());
    mem.write_slice(&elem, addr).map_err(ring_err(qi))?;
    queue.set_next_used(next.wrapping_add(1));
    Ok(())
}

/// Make the used elements written so far visible: one store of the used
/// index, after the elements ("The device MUST NOT ... update idx before
/// the ring entries", virtio 1.2, 2.7.8.2).
pub(crate) fn publish<M: GuestMemory>(qi: u16, queue: &Queue, mem: &M) -> Result<(), QueueError> {
    let addr = GuestAddress(queue.used_ring())
        .checked_add(2)
        .ok_or(overflow(qi))?;
    fence(Ordering::Release);
    mem.store(u16::to_le(queue.next_used()), addr, Ordering::Release)
        .map_err(ring_err(qi))
}

/// Whether the driver wants an interrupt for the used entries `(old, new]`
/// just published.
pub(crate) fn needs_interrupt<M: GuestMemory>(
    qi: u16,
    queue: &Queue,
    mem: &M,
    old: u16,
) -> Result<bool, QueueError> {
    // Read the driver's fields only after the used index is visible.
    fence(Ordering::SeqCst);
    let new = queue.next_used();
    if queue.event_idx_enabled() {
        // EVENT_IDX: interrupt only if `used_event` lies in (old, new]
        // ("vring_need_event", virtio 1.2, 2.7.10).
        let at = GuestAddress(queue.avail_ring())
            .checked_add(4 + 2 * u64::from(queue.size()))
            .ok_or(overflow(qi))?;
        let used_event = u16::from_le(mem.read_obj::<u16>(at).map_err(ring_err(qi))?);
        Ok(new.wrapping_sub(used_event).wrapping_sub(1) < new.wrapping_sub(old))
    } else {
        // virtio-queue does not implement NO_INTERRUPT: read it here.
        let flags: u16 = mem
            .read_obj(GuestAddress(queue.avail_ring()))
            .map_err(ring_err(qi))?;
        Ok(u16::from_le(flags) & NO_INTERRUPT == 0)
    }
}
