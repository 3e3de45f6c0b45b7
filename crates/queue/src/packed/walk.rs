//! A buffer taken from a packed ring: its descriptors, in ring order from
//! the next avail slot (or from the one indirect table it points to), read
//! into a [`Chain`].

use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

use super::{Desc, PackedError, PackedRing, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, DESC_SIZE};
use crate::Chain;

impl PackedRing {
    /// Take the next available buffer into `chain` (`chain.head` is its
    /// buffer id). `Ok(None)`: nothing available. An error leaves the ring
    /// where it was: the caller stops the queue.
    pub fn pop<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        chain: &mut Chain,
    ) -> Result<Option<u16>, PackedError> {
        if !self.has_pending(mem)? {
            return Ok(None);
        }
        chain.reset(0);
        let mut pos = self.avail;
        let mut slots: u16 = 0;
        let id = loop {
            // "A driver MUST NOT create a descriptor list longer than the
            // Queue Size. This implies that loops in the descriptor list
            // are forbidden!" ("Driver Requirements:
            // Scatter-Gather Support", virtio 1.2, 2.8): past that the list runs into its own head.
            if slots == self.size {
                return Err(PackedError::ChainTooLong(self.size));
            }
            let at = pos.index;
            let d = self.read_desc(mem, at)?;
            // "A driver MUST NOT make the first descriptor in the list
            // available before all subsequent descriptors comprising the
            // list are made available." (same section), and "all flags, including
            // VIRTQ_DESC_F_AVAIL, VIRTQ_DESC_F_USED, VIRTQ_DESC_F_WRITE must
            // be set/cleared correctly in all descriptors in the list, not
            // just the first one." ("Next Flag: Descriptor Chaining"): every descriptor of the list
            // carries the flags of its own slot and lap.
            if slots > 0 && !Desc::is_available(d.flags, pos.wrap) {
                return Err(PackedError::NotAvailable(at));
            }
            slots += 1;
            pos.advance(1, self.size);
            if d.flags & DESC_F_INDIRECT != 0 {
                // "A driver MUST NOT write direct descriptors with
                // VIRTQ_DESC_F_INDIRECT set in a scatter-gather list linked
                // by VIRTQ_DESC_F_NEXT." ("Driver Requirements:
                // Indirect Descriptors"): an indirect descriptor
                // is a buffer's only ring descriptor.
                if slots != 1 || d.flags & DESC_F_NEXT != 0 {
                    return Err(PackedError::IndirectInChain(at));
                }
                walk_indirect(mem, chain, d.addr, d.len)?;
                break d.id;
            }
            chain.push(GuestAddress(d.addr), d.len, d.flags & DESC_F_WRITE != 0);
            if chain.check_length() {
                return Err(PackedError::TooLong);
            }
            // "Buffer ID is included in the last descriptor in the list."
            if d.flags & DESC_F_NEXT == 0 {
                break d.id;
            }
        };
        // Ids name buffers the driver tracks per ring slot: one past the
        // queue size, or one already in flight, would make the used
        // descriptor ambiguous.
        let Some(entry) = self.outstanding.get_mut(usize::from(id)) else {
            return Err(PackedError::BadId(id));
        };
        if *entry != 0 {
            return Err(PackedError::IdInUse(id));
        }
        // The slots of the buffers in flight are the driver's until used:
        // a driver that makes more available than the ring holds has
        // overwritten descriptors the device still owns.
        let total = self.slots_in_flight + u32::from(slots);
        if total > u32::from(self.size) {
            return Err(PackedError::Overrun);
        }
        *entry = slots;
        self.slots_in_flight = total;
        self.in_flight += 1;
        self.avail = pos;
        chain.head = id;
        Ok(Some(id))
    }
}

/// The descriptors of an indirect table, one after the other (packed
/// tables have no `next` field: "additional indirect descriptors come
/// immediately afterwards").
fn walk_indirect<M: GuestMemory + ?Sized>(
    mem: &M,
    chain: &mut Chain,
    addr: u64,
    len: u32,
) -> Result<(), PackedError> {
    let entries = u64::from(len) / DESC_SIZE;
    if len == 0 || u64::from(len) % DESC_SIZE != 0 || entries > u64::from(u16::MAX) {
        return Err(PackedError::BadIndirectTable(len));
    }
    let table = GuestAddress(addr);
    table
        .checked_add(u64::from(len) - 1)
        .ok_or(PackedError::BadIndirectTable(len))?;
    for i in 0..entries as u16 {
        let mut raw = [0u8; 16];
        table
            .checked_add(u64::from(i) * DESC_SIZE)
            .and_then(|a| mem.read_slice(&mut raw, a).ok())
            .ok_or(PackedError::UnreadableIndirect(i))?;
        let d = Desc::from_bytes(&raw);
        // "The driver MUST NOT set any flags except DESC_F_WRITE within an
        // indirect descriptor." (same section): a NEXT or a
        // nested INDIRECT there is a broken ring, not a silent shortcut.
        if d.flags & !DESC_F_WRITE != 0 {
            return Err(PackedError::BadIndirectFlags(i, d.flags));
        }
        chain.push(GuestAddress(d.addr), d.len, d.flags & DESC_F_WRITE != 0);
        if chain.check_length() {
            return Err(PackedError::TooLong);
        }
    }
    Ok(())
}
