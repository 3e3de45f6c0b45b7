//! A split virtqueue (virtio 1.2, 2.7) that the caller fills like a driver:
//! descriptors, chains and indirect tables are written verbatim, so a test
//! can build any hostile shape (loops, bad lengths, heads past the queue
//! size, index jumps) as easily as a good request.

use std::sync::atomic::{fence, Ordering};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The descriptor continues via `next`.
pub const F_NEXT: u16 = 1;
/// The device writes this buffer.
pub const F_WRITE: u16 = 2;
/// The buffer is an indirect descriptor table.
pub const F_INDIRECT: u16 = 4;

/// One descriptor, as laid out in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

impl Desc {
    pub fn new(addr: u64, len: u32, flags: u16, next: u16) -> Desc {
        Desc {
            addr,
            len,
            flags,
            next,
        }
    }

    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..14].copy_from_slice(&self.flags.to_le_bytes());
        b[14..16].copy_from_slice(&self.next.to_le_bytes());
        b
    }
}

/// One buffer of a chain: (guest address, length, flags without NEXT).
pub type Seg = (u64, u32, u16);

/// Descriptors for `segs` linked in order starting at index `first`:
/// NEXT set on all but the last, `next` = the following index (mod `size`).
pub fn link(segs: &[Seg], first: u16, size: u16) -> Vec<Desc> {
    let n = segs.len();
    segs.iter()
        .enumerate()
        .map(|(i, &(addr, len, flags))| {
            let idx = (u32::from(first) + i as u32) % u32::from(size.max(1));
            let next = ((idx + 1) % u32::from(size.max(1))) as u16;
            if i + 1 < n {
                Desc::new(addr, len, flags | F_NEXT, next)
            } else {
                Desc::new(addr, len, flags, 0)
            }
        })
        .collect()
}

/// A split ring: the addresses of its three parts and the driver's indices.
#[derive(Debug, Clone)]
pub struct SplitRing {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    /// The driver's next avail index.
    pub avail_idx: u16,
    /// Used entries already taken by [`SplitRing::take_used`].
    pub used_seen: u16,
    /// Next descriptor [`SplitRing::alloc`] hands out.
    next_free: u16,
}

impl SplitRing {
    pub fn new(size: u16, desc: u64, avail: u64, used: u64) -> SplitRing {
        SplitRing {
            size,
            desc,
            avail,
            used,
            avail_idx: 0,
            used_seen: 0,
            next_free: 0,
        }
    }

    /// The three parts back to back from `base`, aligned as virtio 1.x
    /// requires (table 16, avail 2, used 4; the used ring on its own page).
    pub fn packed(base: u64, size: u16) -> SplitRing {
        let desc = base;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size) + 0xfff) & !0xfff;
        SplitRing::new(size, desc, avail, used)
    }

    /// First byte after the used ring (including avail_event).
    pub fn end(&self) -> u64 {
        self.used + 6 + 8 * u64::from(self.size)
    }

    /// Write descriptor `i` (no bounds check: `i` may be past the size).
    pub fn desc(&self, mem: &GuestMemoryMmap, i: u16, d: Desc) {
        mem.write_slice(&d.to_bytes(), GuestAddress(self.desc + 16 * u64::from(i)))
            .expect("descriptor inside guest memory");
    }

    /// Read descriptor `i` back.
    pub fn read_desc(&self, mem: &GuestMemoryMmap, i: u16) -> Desc {
        let mut b = [0u8; 16];
        mem.read_slice(&mut b, GuestAddress(self.desc + 16 * u64::from(i)))
            .expect("descriptor inside guest memory");
        Desc {
            addr: u64::from_le_bytes(b[0..8].try_into().unwrap_or_default()),
            len: u32::from_le_bytes(b[8..12].try_into().unwrap_or_default()),
            flags: u16::from_le_bytes(b[12..14].try_into().unwrap_or_default()),
            next: u16::from_le_bytes(b[14..16].try_into().unwrap_or_default()),
        }
    }

    /// Write descriptors verbatim at indices `first..` (their `next` as given).
    pub fn descs(&self, mem: &GuestMemoryMmap, first: u16, ds: &[Desc]) {
        for (i, d) in ds.iter().enumerate() {
            self.desc(mem, first.wrapping_add(i as u16), *d);
        }
    }

    /// Hand out `n` consecutive descriptor indices (round robin; a chain
    /// never wraps). Returns the first.
    pub fn alloc(&mut self, n: u16) -> u16 {
        assert!(
            n >= 1 && n <= self.size,
            "chain of {n} in a ring of {}",
            self.size
        );
        if self.next_free + n > self.size {
            self.next_free = 0;
        }
        let first = self.next_free;
        self.next_free = (self.next_free + n) % self.size;
        first
    }

    /// Write `segs` as a linked chain at indices `first..`; returns the head.
    pub fn chain_at(&self, mem: &GuestMemoryMmap, first: u16, segs: &[Seg]) -> u16 {
        self.descs(mem, first, &link(segs, first, self.size));
        first
    }

    /// Write `segs` as a linked chain at freshly allocated indices; the head.
    pub fn chain(&mut self, mem: &GuestMemoryMmap, segs: &[Seg]) -> u16 {
        let first = self.alloc(segs.len() as u16);
        self.chain_at(mem, first, segs)
    }

    /// Write an indirect table of `segs` (linked from entry 0) at `at`;
    /// returns the descriptor that points at it.
    pub fn indirect_table(mem: &GuestMemoryMmap, at: u64, segs: &[Seg]) -> Seg {
        for (i, d) in link(segs, 0, u16::MAX).iter().enumerate() {
            mem.write_slice(&d.to_bytes(), GuestAddress(at + 16 * i as u64))
                .expect("indirect table inside guest memory");
        }
        (at, 16 * segs.len() as u32, F_INDIRECT)
    }

    /// Put `head` in the next avail slot without publishing it.
    pub fn stage(&mut self, mem: &GuestMemoryMmap, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        mem.write_obj(head, GuestAddress(self.avail + 4 + 2 * slot))
            .expect("avail ring inside guest memory");
        self.avail_idx = self.avail_idx.wrapping_add(1);
    }

    /// Publish what was staged: store the avail index (after a fence).
    pub fn flush_avail(&self, mem: &GuestMemoryMmap) {
        fence(Ordering::SeqCst);
        mem.write_obj(self.avail_idx, GuestAddress(self.avail + 2))
            .expect("avail ring inside guest memory");
        fence(Ordering::SeqCst);
    }

    /// Make `head` available: avail slot, then the index.
    pub fn publish(&mut self, mem: &GuestMemoryMmap, head: u16) {
        self.stage(mem, head);
        self.flush_avail(mem);
    }

    /// Set the avail index to anything (an index jump, a rewind).
    pub fn set_avail_idx(&mut self, mem: &GuestMemoryMmap, idx: u16) {
        self.avail_idx = idx;
        self.flush_avail(mem);
    }

    /// avail->flags (NO_INTERRUPT = 1).
    pub fn set_avail_flags(&self, mem: &GuestMemoryMmap, flags: u16) {
        mem.write_obj(flags, GuestAddress(self.avail))
            .expect("avail ring inside guest memory");
    }

    /// used_event (EVENT_IDX): after the avail ring's entries.
    pub fn set_used_event(&self, mem: &GuestMemoryMmap, v: u16) {
        mem.write_obj(v, GuestAddress(self.avail + 4 + 2 * u64::from(self.size)))
            .expect("avail ring inside guest memory");
    }

    /// avail_event (EVENT_IDX): after the used ring's entries.
    pub fn avail_event(&self, mem: &GuestMemoryMmap) -> u16 {
        mem.read_obj(GuestAddress(self.used + 4 + 8 * u64::from(self.size)))
            .expect("used ring inside guest memory")
    }

    pub fn used_flags(&self, mem: &GuestMemoryMmap) -> u16 {
        mem.read_obj(GuestAddress(self.used))
            .expect("used ring inside guest memory")
    }

    pub fn used_idx(&self, mem: &GuestMemoryMmap) -> u16 {
        mem.read_obj(GuestAddress(self.used + 2))
            .expect("used ring inside guest memory")
    }

    /// Used entry `i` (mod size): (id, len).
    pub fn used_entry(&self, mem: &GuestMemoryMmap, i: u16) -> (u32, u32) {
        let at = self.used + 4 + 8 * u64::from(i % self.size);
        (
            mem.read_obj(GuestAddress(at)).expect("used ring"),
            mem.read_obj(GuestAddress(at + 4)).expect("used ring"),
        )
    }

    /// Write used entry `i` (to forge a state, e.g. after a crash).
    pub fn put_used_entry(&self, mem: &GuestMemoryMmap, i: u16, id: u32, len: u32) {
        let at = self.used + 4 + 8 * u64::from(i % self.size);
        mem.write_obj(id, GuestAddress(at)).expect("used ring");
        mem.write_obj(len, GuestAddress(at + 4)).expect("used ring");
    }

    pub fn set_used_idx(&self, mem: &GuestMemoryMmap, idx: u16) {
        mem.write_obj(idx, GuestAddress(self.used + 2))
            .expect("used ring");
    }

    /// Put head `head` in avail slot `slot` (mod size) without touching the index.
    pub fn put_avail_entry(&self, mem: &GuestMemoryMmap, slot: u16, head: u16) {
        mem.write_obj(
            head,
            GuestAddress(self.avail + 4 + 2 * u64::from(slot % self.size)),
        )
        .expect("avail ring");
    }

    /// The next used entry not yet taken, if the device published one.
    pub fn take_used(&mut self, mem: &GuestMemoryMmap) -> Option<(u32, u32)> {
        fence(Ordering::SeqCst);
        if self.used_idx(mem) == self.used_seen {
            return None;
        }
        fence(Ordering::SeqCst);
        let e = self.used_entry(mem, self.used_seen);
        self.used_seen = self.used_seen.wrapping_add(1);
        Some(e)
    }

    /// Zero both rings and the driver's indices (a reset).
    pub fn reset(&mut self, mem: &GuestMemoryMmap) {
        let zero = vec![0u8; 6 + 2 * usize::from(self.size)];
        mem.write_slice(&zero, GuestAddress(self.avail))
            .expect("avail ring");
        let zero = vec![0u8; 6 + 8 * usize::from(self.size)];
        mem.write_slice(&zero, GuestAddress(self.used))
            .expect("used ring");
        self.avail_idx = 0;
        self.used_seen = 0;
        self.next_free = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_link_and_publish() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let mut r = SplitRing::packed(0, 4);
        assert_eq!((r.desc, r.avail, r.used), (0, 64, 0x1000));
        let h = r.chain(&mem, &[(0x100, 16, 0), (0x200, 1, F_WRITE)]);
        assert_eq!(h, 0);
        assert_eq!(r.read_desc(&mem, 0), Desc::new(0x100, 16, F_NEXT, 1));
        assert_eq!(r.read_desc(&mem, 1), Desc::new(0x200, 1, F_WRITE, 0));
        // The next chain of 3 does not fit before the end: it starts at 0.
        assert_eq!(r.alloc(3), 0);
        r.publish(&mem, h);
        assert_eq!(mem.read_obj::<u16>(GuestAddress(r.avail + 2)).unwrap(), 1);
        assert!(r.take_used(&mem).is_none());
        r.put_used_entry(&mem, 0, 7, 9);
        r.set_used_idx(&mem, 1);
        assert_eq!(r.take_used(&mem), Some((7, 9)));
        let d = SplitRing::indirect_table(&mem, 0x3000, &[(1, 2, 0), (3, 4, F_WRITE)]);
        assert_eq!(d, (0x3000, 32, F_INDIRECT));
        let mut b = [0u8; 16];
        mem.read_slice(&mut b, GuestAddress(0x3000)).unwrap();
        assert_eq!(b, Desc::new(1, 2, F_NEXT, 1).to_bytes());
        r.set_used_event(&mem, 5);
        assert_eq!(mem.read_obj::<u16>(GuestAddress(r.avail + 12)).unwrap(), 5);
    }
}
