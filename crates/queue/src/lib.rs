//! Descriptor chains, read as byte streams.
//!
//! The split-ring data structure itself (available/used rings, EVENT_IDX
//! bookkeeping, descriptor iteration with loop and indirect-table limits) is
//! rust-vmm's `virtio-queue`. This crate turns one popped chain into two
//! streams, the device-readable bytes and the device-writable bytes, so that
//! request parsing never depends on how the driver split its buffers into
//! descriptors.
//!
//! Packed virtqueues (`VIRTIO_F_RING_PACKED`), which `virtio-queue` does not
//! have, are this crate's own: [`packed`].

use std::num::Wrapping;

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, GuestAddress, GuestMemory};

mod cursor;
pub mod packed;
mod walk;

pub use cursor::{host_iovecs, Cursor};
pub use virtio_queue::{Queue, QueueOwnedT, QueueT};
pub use walk::{BrokenChain, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};

/// Why a chain cannot be used as a request at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("a device-readable descriptor follows a device-writable one")]
    ReadableAfterWritable,
    #[error("the chain is longer than 4 GiB")]
    TooLong,
    #[error("a descriptor points outside guest memory")]
    BadAddress,
    #[error("the chain ended before the expected data")]
    ShortChain,
}

/// One guest buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub addr: GuestAddress,
    pub len: u32,
}

/// A popped chain, split into its device-readable and device-writable parts.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    pub head: u16,
    pub readable: Vec<Region>,
    pub writable: Vec<Region>,
    pub readable_len: u64,
    pub writable_len: u64,
    /// Number of descriptors (after following an indirect table).
    pub descriptors: u32,
    /// First layout problem seen, if any. The chain is still returned so
    /// that the device can report an error in its status byte.
    pub error: Option<ChainError>,
}

impl Chain {
    /// Collect the descriptors of a chain. Zero-length descriptors are skipped.
    pub fn collect<I: IntoIterator<Item = Descriptor>>(head: u16, descs: I) -> Self {
        let mut c = Chain::default();
        c.refill(head, descs);
        c
    }

    /// Like [`Chain::collect`], reusing this chain's buffers. The device
    /// walks chains itself ([`Chain::walk`]); this form is for descriptor
    /// lists built by tests.
    pub fn refill<I: IntoIterator<Item = Descriptor>>(&mut self, head: u16, descs: I) {
        self.reset(head);
        for d in descs {
            self.push(d.addr(), d.len(), d.is_write_only());
        }
        self.check_length();
    }

    pub(crate) fn reset(&mut self, head: u16) {
        self.head = head;
        self.readable.clear();
        self.writable.clear();
        self.readable_len = 0;
        self.writable_len = 0;
        self.descriptors = 0;
        self.error = None;
    }

    /// Add one buffer descriptor (zero-length ones are counted, not kept).
    pub(crate) fn push(&mut self, addr: GuestAddress, len: u32, write: bool) {
        self.descriptors = self.descriptors.saturating_add(1);
        if len == 0 {
            return;
        }
        let r = Region { addr, len };
        if write {
            self.writable_len += u64::from(len);
            self.writable.push(r);
        } else {
            // "The driver MUST place any device-writable descriptor elements
            // after any device-readable descriptor elements." (virtio 1.2, 2.7.4.2)
            if !self.writable.is_empty() && self.error.is_none() {
                self.error = Some(ChainError::ReadableAfterWritable);
            }
            self.readable_len += u64::from(len);
            self.readable.push(r);
        }
    }

    /// Whether the chain is longer than 4 GiB ("Drivers MUST NOT add a
    /// descriptor chain longer than 2^32 bytes in total", 2.7.5.2).
    pub(crate) fn check_length(&mut self) -> bool {
        let too_long = self.readable_len + self.writable_len > u64::from(u32::MAX);
        if too_long && self.error.is_none() {
            self.error = Some(ChainError::TooLong);
        }
        too_long
    }

    /// A reader over the device-readable bytes.
    pub fn reader(&self) -> Cursor<'_> {
        Cursor::new(&self.readable)
    }

    /// A writer over the device-writable bytes, except the last `reserve`
    /// bytes (virtio-blk keeps the last writable byte for the status).
    pub fn writer(&self, reserve: u64) -> Cursor<'_> {
        let mut c = Cursor::new(&self.writable);
        c.limit = self.writable_len.saturating_sub(reserve);
        c
    }

    /// The guest address of the byte at `offset` in the writable stream.
    pub fn writable_addr(&self, offset: u64) -> Option<GuestAddress> {
        let mut left = offset;
        for r in &self.writable {
            if left < u64::from(r.len) {
                return r.addr.checked_add(left);
            }
            left -= u64::from(r.len);
        }
        None
    }
}

/// Whether the driver has published chains we have not popped yet.
pub fn has_pending<M: GuestMemory>(q: &Queue, mem: &M) -> Result<bool, virtio_queue::Error> {
    let avail = q.avail_idx(mem, std::sync::atomic::Ordering::Acquire)?;
    Ok(avail != Wrapping(q.next_avail()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryMmap};

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x10_0000),
            (GuestAddress(0x10_0000), 0x10_0000),
        ])
        .unwrap()
    }

    fn d(addr: u64, len: u32, write: bool) -> RawDescriptor {
        RawDescriptor::from(Descriptor::new(addr, len, if write { 2 } else { 0 }, 0))
    }

    #[test]
    fn streams_ignore_descriptor_boundaries() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        m.write_slice(&[1, 2, 3], GuestAddress(0x8000)).unwrap();
        m.write_slice(&[4, 5], GuestAddress(0x9000)).unwrap();
        let chain = vq
            .build_desc_chain(&[d(0x8000, 3, false), d(0x9000, 2, false), d(0xa000, 4, true)])
            .unwrap();
        let head = chain.head_index();
        let c = Chain::collect(head, chain);
        assert_eq!(c.readable_len, 5);
        assert_eq!(c.writable_len, 4);
        assert!(c.error.is_none());
        let mut r = c.reader();
        let mut buf = [0u8; 4];
        r.read_exact(&m, &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3, 4]);
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.read_exact(&m, &mut buf), Err(ChainError::ShortChain));
        let mut w = c.writer(1);
        assert_eq!(w.remaining(), 3);
        w.write_all(&m, &[9, 9, 9]).unwrap();
        assert_eq!(c.writable_addr(3), Some(GuestAddress(0xa003)));
        assert_eq!(c.writable_addr(4), None);
    }

    #[test]
    fn readable_after_writable_is_flagged() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        let chain = vq
            .build_desc_chain(&[d(0x8000, 16, true), d(0x9000, 16, false)])
            .unwrap();
        let c = Chain::collect(0, chain);
        assert_eq!(c.error, Some(ChainError::ReadableAfterWritable));
    }

    #[test]
    fn a_buffer_inside_one_region_is_one_iovec_at_its_host_address() {
        let m = mem();
        let mut out = vec![];
        host_iovecs(&m, GuestAddress(0x1_0000), 0x3000, &mut out).unwrap();
        let want = m
            .get_slice(GuestAddress(0x1_0000), 0x3000)
            .unwrap()
            .ptr_guard_mut()
            .as_ptr();
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].iov_base as *mut u8, out[0].iov_len), (want, 0x3000));
        // The region's last byte, and one past it.
        out.clear();
        host_iovecs(&m, GuestAddress(0x1f_ffff), 1, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            host_iovecs(&m, GuestAddress(0x20_0000), 1, &mut out),
            Err(ChainError::BadAddress)
        );
    }

    #[test]
    fn iovecs_split_across_regions_and_reject_holes() {
        let m = mem();
        let mut out = vec![];
        host_iovecs(&m, GuestAddress(0xf_f000), 0x2000, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].iov_len + out[1].iov_len, 0x2000);
        out.clear();
        assert_eq!(
            host_iovecs(&m, GuestAddress(0x1f_f000), 0x2000, &mut out),
            Err(ChainError::BadAddress)
        );
        assert_eq!(
            host_iovecs(&m, GuestAddress(u64::MAX - 10), 100, &mut out),
            Err(ChainError::BadAddress)
        );
    }
}
