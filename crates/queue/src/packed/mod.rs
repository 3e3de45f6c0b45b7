//! Packed virtqueues (virtio 1.2, 2.8; feature `VIRTIO_F_RING_PACKED`, bit 34).
//!
//! rust-vmm's `virtio-queue` has no packed ring; this module is ours and
//! pure (guest memory in, guest memory out, no threads, no transport). One
//! ring of 16-byte descriptors is shared by both sides:
//!
//! ```text
//! struct pvirtq_desc { le64 addr; le32 len; le16 id; le16 flags; };
//! ```
//!
//! The driver makes a descriptor available by setting its AVAIL flag to
//! its wrap counter and USED to the inverse; the device hands a buffer back
//! by writing *one* used descriptor (the buffer id, the bytes written, and
//! AVAIL = USED = the device's used wrap counter) at its next used slot,
//! then skips as many slots as the chain had descriptors. Buffers may be
//! used in any order: the id, not the position, names the buffer.
//!
//! * [`walk`]: a chain read from the ring (and its indirect table) into a
//!   [`crate::Chain`], every driver MUST checked;
//! * [`event`]: the two event suppression structures (interrupt decision,
//!   kick suppression);
//! * this file: the ring state (positions with wrap counters, the buffers
//!   outstanding) and the used descriptor writes.
//!
//! Everything the driver wrote is untrusted: a violation is a
//! [`PackedError`] (the ring is broken: the transport stops the queue or
//! sets DEVICE_NEEDS_RESET), never a panic or an access out of bounds.

use std::sync::atomic::Ordering;

use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

mod event;
mod walk;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hostile;

pub use event::{EventFlags, EVENT_FLAG_DESC, EVENT_FLAG_DISABLE, EVENT_FLAG_ENABLE};

/// "This marks a buffer as continuing." (same bits as the split ring)
pub const DESC_F_NEXT: u16 = 1;
/// "This marks a descriptor as device write-only (otherwise device
/// read-only)." In a used descriptor: "this bit is used to specify whether
/// any data has been written by the device into any parts of the buffer."
pub const DESC_F_WRITE: u16 = 2;
/// "This means the element contains a table of descriptors."
pub const DESC_F_INDIRECT: u16 = 4;
/// `VIRTQ_DESC_F_AVAIL` (virtio 1.2, 2.8, "Driver and Device Ring Wrap
/// Counters"): bit 7.
pub const DESC_F_AVAIL: u16 = 1 << 7;
/// `VIRTQ_DESC_F_USED`: bit 15.
pub const DESC_F_USED: u16 = 1 << 15;

/// Size of one packed descriptor.
pub const DESC_SIZE: u64 = 16;
/// "Packed virtqueues support up to 2^15 entries each." (virtio 1.2, 2.8)
pub const MAX_QUEUE_SIZE: u16 = 1 << 15;

/// Why a packed ring cannot be used (the ring is broken).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PackedError {
    #[error("queue size {0} is not 1..=32768")]
    BadSize(u16),
    #[error("ring area at {0:#x} is misaligned")]
    Misaligned(u64),
    #[error("saved position {0:#x} is past the ring")]
    BadBase(u32),
    #[error("descriptor {0} cannot be read or written (outside guest memory)")]
    Unreachable(u16),
    #[error("the event suppression structure at {0:#x} is outside guest memory")]
    BadEventArea(u64),
    #[error("the chain is longer than the ring (more than {0} descriptors)")]
    ChainTooLong(u16),
    #[error("descriptor {0} continues a chain but was not made available")]
    NotAvailable(u16),
    #[error("descriptor {0}: an indirect descriptor inside a chain")]
    IndirectInChain(u16),
    #[error(
        "an indirect table of {0} bytes (not a non-zero multiple of 16, or over 65535 entries)"
    )]
    BadIndirectTable(u32),
    #[error("entry {0} of an indirect table has flags {1:#x} (only WRITE is allowed)")]
    BadIndirectFlags(u16, u16),
    #[error("entry {0} of an indirect table cannot be read")]
    UnreadableIndirect(u16),
    #[error("buffer id {0} is past the queue size")]
    BadId(u16),
    #[error("buffer id {0} is already in flight")]
    IdInUse(u16),
    #[error("buffer id {0} is not in flight")]
    UnknownId(u16),
    #[error("the chain is longer than 4 GiB")]
    TooLong,
    #[error("the driver made more descriptors available than the ring holds")]
    Overrun,
}

/// A slot and the wrap counter that goes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub index: u16,
    pub wrap: bool,
}

impl Position {
    /// The vhost-user encoding: "Bits 0–14: index, bit 15: wrap counter".
    pub fn encode(self) -> u16 {
        self.index | (u16::from(self.wrap) << 15)
    }

    pub fn decode(v: u16) -> Position {
        Position {
            index: v & 0x7fff,
            wrap: v & 0x8000 != 0,
        }
    }

    /// `n` slots further on a ring of `size` (n <= size).
    fn advance(&mut self, n: u16, size: u16) {
        let next = u32::from(self.index) + u32::from(n);
        if next >= u32::from(size) {
            self.index = (next - u32::from(size)) as u16;
            self.wrap = !self.wrap;
        } else {
            self.index = next as u16;
        }
    }

    /// A position as a count modulo 2 * size: slots go 0..size with the
    /// wrap counter set (the initial phase), size..2*size without.
    fn linear(self, size: u16) -> u32 {
        u32::from(self.index) + if self.wrap { 0 } else { u32::from(size) }
    }
}

/// One descriptor as read from the ring or an indirect table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub id: u16,
    pub flags: u16,
}

impl Desc {
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..14].copy_from_slice(&self.id.to_le_bytes());
        b[14..16].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 16]) -> Desc {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[0..8]);
        Desc {
            addr: u64::from_le_bytes(a),
            len: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            id: u16::from_le_bytes([b[12], b[13]]),
            flags: u16::from_le_bytes([b[14], b[15]]),
        }
    }

    /// "To mark a descriptor as available, the driver sets the
    /// VIRTQ_DESC_F_AVAIL bit in Flags to match the internal Driver Ring Wrap
    /// Counter. It also sets the VIRTQ_DESC_F_USED bit to match the inverse
    /// value" ("Driver and Device Ring Wrap Counters"); "A device MUST NOT use a descriptor unless it observes
    /// the VIRTQ_DESC_F_AVAIL bit in its flags being changed" ("Device Requirements: The Virtqueue Descriptor
    /// Table").
    pub fn is_available(flags: u16, wrap: bool) -> bool {
        (flags & DESC_F_AVAIL != 0) == wrap && (flags & DESC_F_USED != 0) != wrap
    }
}

/// The device's side of one packed ring.
#[derive(Debug, Clone)]
pub struct PackedRing {
    desc: GuestAddress,
    /// Driver event suppression (the driver writes, the device reads).
    driver: GuestAddress,
    /// Device event suppression (the device writes).
    device: GuestAddress,
    size: u16,
    event_idx: bool,
    avail: Position,
    used: Position,
    /// Ring slots of each buffer id in flight (0: not in flight).
    outstanding: Vec<u16>,
    in_flight: usize,
    /// Ring slots of every buffer in flight.
    slots_in_flight: u32,
    /// Used position at the last interrupt decision.
    signalled: Position,
}

impl PackedRing {
    /// A ring of `size` descriptors at `desc`, with its event suppression
    /// areas, continuing at `base` (vhost-user's encoding: avail position
    /// in bits 0–15, used position in bits 16–31; 0x8000_8000 is a fresh
    /// ring).
    pub fn new(
        desc: GuestAddress,
        driver: GuestAddress,
        device: GuestAddress,
        size: u16,
        base: u32,
        event_idx: bool,
    ) -> Result<PackedRing, PackedError> {
        if size == 0 || size > MAX_QUEUE_SIZE {
            return Err(PackedError::BadSize(size));
        }
        // "The driver MUST ensure that the physical address of the first
        // byte of each virtqueue part is a multiple of the specified
        // alignment value" ("Structure Size and Alignment": descriptor ring
        // 16, device and driver event suppression 4).
        for (a, align) in [(desc, 16), (driver, 4), (device, 4)] {
            if a.raw_value() % align != 0 {
                return Err(PackedError::Misaligned(a.raw_value()));
            }
        }
        let avail = Position::decode(base as u16);
        let used = Position::decode((base >> 16) as u16);
        if avail.index >= size || used.index >= size {
            return Err(PackedError::BadBase(base));
        }
        Ok(PackedRing {
            desc,
            driver,
            device,
            size,
            event_idx,
            avail,
            used,
            outstanding: vec![0; usize::from(size)],
            in_flight: 0,
            slots_in_flight: 0,
            signalled: used,
        })
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    pub fn avail(&self) -> Position {
        self.avail
    }

    pub fn used(&self) -> Position {
        self.used
    }

    /// Where the ring stands, in vhost-user's GET_VRING_BASE encoding.
    pub fn base(&self) -> u32 {
        u32::from(self.avail.encode()) | (u32::from(self.used.encode()) << 16)
    }

    /// Buffers taken and not used yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn slot_addr(&self, index: u16) -> Result<GuestAddress, PackedError> {
        self.desc
            .checked_add(u64::from(index) * DESC_SIZE)
            .ok_or(PackedError::Unreachable(index))
    }

    /// The flags of descriptor `index`, read with acquire ordering: the
    /// rest of the descriptor (and the chain behind it) is read after.
    fn load_flags<M: GuestMemory + ?Sized>(&self, mem: &M, index: u16) -> Result<u16, PackedError> {
        let at = self
            .slot_addr(index)?
            .checked_add(14)
            .ok_or(PackedError::Unreachable(index))?;
        mem.load::<u16>(at, Ordering::Acquire)
            .map(u16::from_le)
            .map_err(|_| PackedError::Unreachable(index))
    }

    fn read_desc<M: GuestMemory + ?Sized>(&self, mem: &M, index: u16) -> Result<Desc, PackedError> {
        let mut raw = [0u8; 16];
        mem.read_slice(&mut raw, self.slot_addr(index)?)
            .map_err(|_| PackedError::Unreachable(index))?;
        Ok(Desc::from_bytes(&raw))
    }

    /// Whether the driver made a buffer available at the next avail slot.
    pub fn has_pending<M: GuestMemory + ?Sized>(&self, mem: &M) -> Result<bool, PackedError> {
        let flags = self.load_flags(mem, self.avail.index)?;
        Ok(Desc::is_available(flags, self.avail.wrap))
    }

    /// Hand buffer `id` back with `len` bytes written: one used descriptor
    /// at the next used slot, which then moves on by the number of ring
    /// descriptors the buffer took.
    ///
    /// "The device only writes out a single used descriptor for the whole
    /// list. It then skips forward according to the number of descriptors
    /// in the list." ("Next Flag: Descriptor Chaining", virtio 1.2, 2.8), and "The
    /// device MUST start writing device descriptors into the ring in the
    /// order in which they complete." ("Device Requirements:
    /// Virtqueues"). The id, the length, then the
    /// flags (release order): the driver reads the descriptor once it sees
    /// the flags.
    pub fn push_used<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        id: u16,
        len: u32,
    ) -> Result<(), PackedError> {
        let slots = match self.outstanding.get(usize::from(id)) {
            Some(&n) if n > 0 => n,
            _ => return Err(PackedError::UnknownId(id)),
        };
        let at = self.slot_addr(self.used.index)?;
        let index = self.used.index;
        let unreachable = |_| PackedError::Unreachable(index);
        let mut body = [0u8; 6];
        body[0..4].copy_from_slice(&len.to_le_bytes());
        body[4..6].copy_from_slice(&id.to_le_bytes());
        let body_at = at.checked_add(8).ok_or(PackedError::Unreachable(index))?;
        mem.write_slice(&body, body_at).map_err(unreachable)?;
        // "To mark a descriptor as used, the device sets the
        // VIRTQ_DESC_F_USED bit in Flags to match the internal Device Ring
        // Wrap Counter. It also sets the VIRTQ_DESC_F_AVAIL bit to match the
        // same value." ("Driver and Device Ring Wrap Counters"). And "Element Length is reserved for used
        // descriptors without the VIRTQ_DESC_F_WRITE flag" ("Element Address and Length"): WRITE
        // says the length counts.
        let mut flags = if self.used.wrap {
            DESC_F_AVAIL | DESC_F_USED
        } else {
            0
        };
        if len > 0 {
            flags |= DESC_F_WRITE;
        }
        let flags_at = at.checked_add(14).ok_or(PackedError::Unreachable(index))?;
        mem.store(flags.to_le(), flags_at, Ordering::Release)
            .map_err(unreachable)?;
        self.outstanding[usize::from(id)] = 0;
        self.in_flight -= 1;
        self.slots_in_flight -= u32::from(slots);
        self.used.advance(slots, self.size);
        Ok(())
    }
}
