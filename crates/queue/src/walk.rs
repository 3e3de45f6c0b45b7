//! Walking one descriptor chain of a split virtqueue, from its head.
//!
//! rust-vmm's `virtio-queue` iterator ends a chain silently on a loop, a bad
//! or nested indirect table, an unreadable descriptor or a chain over 4 GiB,
//! and the prefix it yielded looks like a whole request. Executing that
//! prefix would write the status byte into what is really a data byte. Here
//! every such case is an error of the ring itself ([`BrokenChain`]): the
//! transport marks the device DEVICE_NEEDS_RESET (PCI) or stops the queue
//! (vhost-user), as QEMU's `virtqueue_pop` does with `virtio_error`.

use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

use crate::Chain;

/// "This marks a buffer as continuing via the next field." (virtio 1.2, 2.7.5)
pub const DESC_F_NEXT: u16 = 1;
/// "This marks a buffer as device write-only (otherwise device read-only)."
pub const DESC_F_WRITE: u16 = 2;
/// "This means the buffer contains a list of buffer descriptors."
pub const DESC_F_INDIRECT: u16 = 4;

/// Size of one split-ring descriptor: `le64 addr; le32 len; le16 flags; le16 next`.
const DESC_SIZE: u64 = 16;

/// Why a descriptor chain cannot be walked: the ring is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BrokenChain {
    #[error("head {0} is past the queue size")]
    BadHead(u16),
    #[error("descriptor {0} cannot be read (outside guest memory)")]
    Unreadable(u16),
    #[error("descriptor {0} links to {1}, past the table of {2}")]
    BadNext(u16, u16, u16),
    #[error("the chain is longer than its table (a descriptor loop)")]
    Loop,
    #[error("an indirect table inside an indirect table")]
    NestedIndirect,
    #[error(
        "an indirect table of {0} bytes (not a non-zero multiple of 16, or over 65535 entries)"
    )]
    BadIndirectTable(u32),
    #[error("the chain is longer than 4 GiB")]
    TooLong,
}

fn read_desc<M: GuestMemory + ?Sized>(
    mem: &M,
    table: GuestAddress,
    index: u16,
) -> Result<(u64, u32, u16, u16), BrokenChain> {
    let mut raw = [0u8; DESC_SIZE as usize];
    table
        .checked_add(u64::from(index) * DESC_SIZE)
        .and_then(|a| mem.read_slice(&mut raw, a).ok())
        .ok_or(BrokenChain::Unreadable(index))?;
    let mut a = [0u8; 8];
    a.copy_from_slice(&raw[0..8]);
    let mut l = [0u8; 4];
    l.copy_from_slice(&raw[8..12]);
    Ok((
        u64::from_le_bytes(a),
        u32::from_le_bytes(l),
        u16::from_le_bytes([raw[12], raw[13]]),
        u16::from_le_bytes([raw[14], raw[15]]),
    ))
}

impl Chain {
    /// Read the chain that starts at descriptor `head` of the table at
    /// `desc_table` (a queue of `queue_size` entries) into this chain's
    /// buffers. Request-level problems (readable after writable) stay in
    /// [`Chain::error`] for the status byte; a broken ring is an `Err`.
    pub fn walk<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        desc_table: GuestAddress,
        queue_size: u16,
        head: u16,
    ) -> Result<(), BrokenChain> {
        self.reset(head);
        if head >= queue_size {
            return Err(BrokenChain::BadHead(head));
        }
        let mut table = desc_table;
        let mut table_len = queue_size;
        let mut index = head;
        // "A driver MUST NOT create a descriptor chain longer than the Queue
        // Size of the device" (2.7.5.2): more links than entries is a loop.
        let mut ttl = u32::from(queue_size);
        let mut indirect = false;
        loop {
            if ttl == 0 {
                return Err(BrokenChain::Loop);
            }
            ttl -= 1;
            let (addr, len, flags, next) = read_desc(mem, table, index)?;
            if flags & DESC_F_INDIRECT != 0 {
                // "The driver MUST NOT set the VIRTQ_DESC_F_INDIRECT flag
                // within an indirect descriptor" (2.7.5.3.1).
                if indirect {
                    return Err(BrokenChain::NestedIndirect);
                }
                let entries = u64::from(len) / DESC_SIZE;
                if len == 0 || u64::from(len) % DESC_SIZE != 0 || entries > u64::from(u16::MAX) {
                    return Err(BrokenChain::BadIndirectTable(len));
                }
                // The table must be readable as a whole.
                GuestAddress(addr)
                    .checked_add(u64::from(len) - 1)
                    .ok_or(BrokenChain::BadIndirectTable(len))?;
                // "the device MUST ignore the write-only flag ... in the
                // descriptor that refers to an indirect table" (2.7.5.3.2);
                // the chain continues only inside the table.
                indirect = true;
                table = GuestAddress(addr);
                table_len = entries as u16;
                ttl = u32::from(table_len);
                index = 0;
                continue;
            }
            self.push(GuestAddress(addr), len, flags & DESC_F_WRITE != 0);
            if self.check_length() {
                return Err(BrokenChain::TooLong);
            }
            if flags & DESC_F_NEXT == 0 {
                return Ok(());
            }
            if next >= table_len {
                return Err(BrokenChain::BadNext(index, next, table_len));
            }
            index = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    const TABLE: u64 = 0x1000;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    fn put(m: &GuestMemoryMmap, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..16].copy_from_slice(&next.to_le_bytes());
        m.write_slice(&b, GuestAddress(table + 16 * u64::from(i)))
            .unwrap();
    }

    fn walk(m: &GuestMemoryMmap, head: u16) -> (Chain, Result<(), BrokenChain>) {
        let mut c = Chain::default();
        let r = c.walk(m, GuestAddress(TABLE), 8, head);
        (c, r)
    }

    #[test]
    fn a_plain_chain_is_read_whole() {
        let m = mem();
        put(&m, TABLE, 0, 0x8000, 16, DESC_F_NEXT, 3);
        put(&m, TABLE, 3, 0x9000, 512, DESC_F_NEXT | DESC_F_WRITE, 5);
        put(&m, TABLE, 5, 0xa000, 1, DESC_F_WRITE, 0);
        let (c, r) = walk(&m, 0);
        assert_eq!(r, Ok(()));
        assert_eq!(
            (c.readable_len, c.writable_len, c.descriptors),
            (16, 513, 3)
        );
        assert!(c.error.is_none());
    }

    #[test]
    fn a_loop_breaks_the_ring_instead_of_ending_the_chain() {
        let m = mem();
        put(&m, TABLE, 0, 0x8000, 16, DESC_F_NEXT, 1);
        put(&m, TABLE, 1, 0x9000, 16, DESC_F_NEXT | DESC_F_WRITE, 0);
        assert_eq!(walk(&m, 0).1, Err(BrokenChain::Loop));
    }

    #[test]
    fn next_past_the_table_and_bad_heads_break_the_ring() {
        let m = mem();
        put(&m, TABLE, 0, 0x8000, 16, DESC_F_NEXT, 8);
        assert_eq!(walk(&m, 0).1, Err(BrokenChain::BadNext(0, 8, 8)));
        assert_eq!(walk(&m, 8).1, Err(BrokenChain::BadHead(8)));
        let mut c = Chain::default();
        let r = c.walk(&m, GuestAddress(0x10_0000 - 8), 8, 0);
        assert_eq!(r, Err(BrokenChain::Unreadable(0)));
    }

    #[test]
    fn indirect_tables_are_followed_and_checked() {
        let m = mem();
        let itab = 0x4000;
        put(&m, TABLE, 2, itab, 48, DESC_F_INDIRECT | DESC_F_WRITE, 0);
        put(&m, itab, 0, 0x8000, 16, DESC_F_NEXT, 1);
        put(&m, itab, 1, 0x9000, 4096, DESC_F_NEXT | DESC_F_WRITE, 2);
        put(&m, itab, 2, 0xa000, 1, DESC_F_WRITE, 0);
        let (c, r) = walk(&m, 2);
        assert_eq!(r, Ok(()));
        assert_eq!((c.readable_len, c.writable_len), (16, 4097));
        // Nested indirect.
        put(&m, itab, 2, 0x6000, 16, DESC_F_INDIRECT, 0);
        assert_eq!(walk(&m, 2).1, Err(BrokenChain::NestedIndirect));
        // Bad table sizes.
        for len in [0u32, 20] {
            put(&m, TABLE, 2, itab, len, DESC_F_INDIRECT, 0);
            assert_eq!(walk(&m, 2).1, Err(BrokenChain::BadIndirectTable(len)));
        }
        // A loop inside the table.
        put(&m, TABLE, 2, itab, 32, DESC_F_INDIRECT, 0);
        put(&m, itab, 0, 0x8000, 16, DESC_F_NEXT, 1);
        put(&m, itab, 1, 0x8000, 16, DESC_F_NEXT, 0);
        assert_eq!(walk(&m, 2).1, Err(BrokenChain::Loop));
    }

    #[test]
    fn over_4_gib_breaks_the_ring() {
        let m = mem();
        put(&m, TABLE, 0, 0x8000, u32::MAX, DESC_F_NEXT, 1);
        put(&m, TABLE, 1, 0x8000, 2, DESC_F_WRITE, 0);
        assert_eq!(walk(&m, 0).1, Err(BrokenChain::TooLong));
    }
}
