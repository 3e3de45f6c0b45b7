//! A packed virtqueue (virtio 1.2, 2.8) that the caller drives like a
//! driver: buffers with their ids, indirect tables, the driver's event
//! suppression structure, used descriptors taken in the order the device
//! wrote them — and raw descriptor writes for every hostile shape (wrong
//! wrap bits, ids past the ring, chains longer than the ring).

use std::sync::atomic::{fence, Ordering};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::ring::Seg;

/// Descriptor flags of the packed layout.
pub const P_NEXT: u16 = 1;
pub const P_WRITE: u16 = 2;
pub const P_INDIRECT: u16 = 4;
pub const P_AVAIL: u16 = 1 << 7;
pub const P_USED: u16 = 1 << 15;

/// One packed descriptor: `le64 addr; le32 len; le16 id; le16 flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PDesc {
    pub addr: u64,
    pub len: u32,
    pub id: u16,
    pub flags: u16,
}

impl PDesc {
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..14].copy_from_slice(&self.id.to_le_bytes());
        b[14..16].copy_from_slice(&self.flags.to_le_bytes());
        b
    }
}

/// AVAIL/USED bits that make a descriptor available under `wrap`.
pub fn avail_bits(wrap: bool) -> u16 {
    if wrap {
        P_AVAIL
    } else {
        P_USED
    }
}

/// The driver's side of a packed ring.
#[derive(Debug, Clone)]
pub struct PackedDriver {
    pub size: u16,
    /// Descriptor ring, driver and device event suppression areas.
    pub desc: u64,
    pub driver_area: u64,
    pub device_area: u64,
    /// Next slot to fill, and the driver's wrap counter.
    pub avail_idx: u16,
    pub avail_wrap: bool,
    /// Next used descriptor to read, and the used wrap counter expected.
    pub used_idx: u16,
    pub used_wrap: bool,
    /// Ring slots of each buffer id in flight.
    slots: Vec<u16>,
}

impl PackedDriver {
    /// A ring of `size` descriptors at `base` (16-aligned); the event
    /// suppression areas follow it.
    pub fn new(base: u64, size: u16) -> PackedDriver {
        let driver_area = base + 16 * u64::from(size);
        PackedDriver {
            size,
            desc: base,
            driver_area,
            device_area: driver_area + 4,
            avail_idx: 0,
            avail_wrap: true,
            used_idx: 0,
            used_wrap: true,
            slots: vec![0; usize::from(size)],
        }
    }

    /// First byte after the ring's areas.
    pub fn end(&self) -> u64 {
        self.device_area + 4
    }

    /// vhost-user's base for this ring's current positions.
    pub fn base(&self) -> u32 {
        let a = u32::from(self.avail_idx) | (u32::from(self.avail_wrap) << 15);
        let u = u32::from(self.used_idx) | (u32::from(self.used_wrap) << 15);
        a | (u << 16)
    }

    /// Write descriptor `i` verbatim.
    pub fn put(&self, mem: &GuestMemoryMmap, i: u16, d: PDesc) {
        mem.write_slice(&d.to_bytes(), GuestAddress(self.desc + 16 * u64::from(i)))
            .unwrap();
    }

    pub fn read(&self, mem: &GuestMemoryMmap, i: u16) -> PDesc {
        let mut b = [0u8; 16];
        mem.read_slice(&mut b, GuestAddress(self.desc + 16 * u64::from(i)))
            .unwrap();
        PDesc {
            addr: u64::from_le_bytes(b[0..8].try_into().unwrap()),
            len: u32::from_le_bytes(b[8..12].try_into().unwrap()),
            id: u16::from_le_bytes([b[12], b[13]]),
            flags: u16::from_le_bytes([b[14], b[15]]),
        }
    }

    /// Make `segs` available as buffer `id`, as Linux does: every
    /// descriptor after the first written first, the first one's flags
    /// last. Returns the slot of the first descriptor.
    pub fn add(&mut self, mem: &GuestMemoryMmap, segs: &[Seg], id: u16) -> u16 {
        let first = self.avail_idx;
        let mut head = PDesc::default();
        for (i, &(addr, len, flags)) in segs.iter().enumerate() {
            let next = if i + 1 < segs.len() { P_NEXT } else { 0 };
            let d = PDesc {
                addr,
                len,
                id,
                flags: flags | next | avail_bits(self.avail_wrap),
            };
            if i == 0 {
                head = d;
            } else {
                self.put(mem, self.avail_idx, d);
            }
            self.step();
        }
        if let Some(s) = self.slots.get_mut(usize::from(id)) {
            *s = segs.len() as u16;
        }
        // The head last, after the rest is visible.
        fence(Ordering::Release);
        self.put(mem, first, head);
        first
    }

    /// Make an indirect table at `table` holding `segs` available as
    /// buffer `id` (one ring descriptor).
    pub fn add_indirect(&mut self, mem: &GuestMemoryMmap, table: u64, segs: &[Seg], id: u16) {
        for (i, &(addr, len, flags)) in segs.iter().enumerate() {
            let d = PDesc {
                addr,
                len,
                id: 0,
                flags,
            };
            mem.write_slice(&d.to_bytes(), GuestAddress(table + 16 * i as u64))
                .unwrap();
        }
        let len = 16 * segs.len() as u32;
        self.add(mem, &[(table, len, P_INDIRECT)], id);
    }

    /// Advance the driver's slot by one (for hand-made descriptors).
    pub fn step(&mut self) {
        self.avail_idx += 1;
        if self.avail_idx == self.size {
            self.avail_idx = 0;
            self.avail_wrap = !self.avail_wrap;
        }
    }

    /// The next used descriptor, if the device wrote it: (id, len).
    pub fn take_used(&mut self, mem: &GuestMemoryMmap) -> Option<(u16, u32)> {
        let d = self.read(mem, self.used_idx);
        let avail = d.flags & P_AVAIL != 0;
        let used = d.flags & P_USED != 0;
        if avail != self.used_wrap || used != self.used_wrap {
            return None;
        }
        fence(Ordering::Acquire);
        let n = self
            .slots
            .get(usize::from(d.id))
            .copied()
            .unwrap_or(1)
            .max(1);
        for _ in 0..n {
            self.used_idx += 1;
            if self.used_idx == self.size {
                self.used_idx = 0;
                self.used_wrap = !self.used_wrap;
            }
        }
        Some((d.id, d.len))
    }

    /// Write the driver event suppression structure.
    pub fn set_driver_event(&self, mem: &GuestMemoryMmap, off_wrap: u16, flags: u16) {
        let mut b = [0u8; 4];
        b[0..2].copy_from_slice(&off_wrap.to_le_bytes());
        b[2..4].copy_from_slice(&flags.to_le_bytes());
        mem.write_slice(&b, GuestAddress(self.driver_area)).unwrap();
    }

    /// The device event suppression structure: (off_wrap, flags).
    pub fn device_event(&self, mem: &GuestMemoryMmap) -> (u16, u16) {
        let mut b = [0u8; 4];
        mem.read_slice(&mut b, GuestAddress(self.device_area))
            .unwrap();
        (
            u16::from_le_bytes([b[0], b[1]]),
            u16::from_le_bytes([b[2], b[3]]),
        )
    }
}
