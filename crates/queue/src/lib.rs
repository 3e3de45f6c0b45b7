//! Descriptor chains, read as byte streams.
//!
//! The split-ring data structure itself (available/used rings, EVENT_IDX
//! bookkeeping, descriptor iteration with loop and indirect-table limits) is
//! rust-vmm's `virtio-queue`. This crate turns one popped chain into two
//! streams, the device-readable bytes and the device-writable bytes, so that
//! request parsing never depends on how the driver split its buffers into
//! descriptors.

use std::num::Wrapping;

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, Permissions};

pub use virtio_queue::{Queue, QueueOwnedT, QueueT};

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

    /// Like [`Chain::collect`], reusing this chain's buffers.
    pub fn refill<I: IntoIterator<Item = Descriptor>>(&mut self, head: u16, descs: I) {
        self.head = head;
        self.readable.clear();
        self.writable.clear();
        self.readable_len = 0;
        self.writable_len = 0;
        self.descriptors = 0;
        self.error = None;
        let c = self;
        for d in descs {
            c.descriptors = c.descriptors.saturating_add(1);
            let len = d.len();
            if len == 0 {
                continue;
            }
            let r = Region {
                addr: d.addr(),
                len,
            };
            if d.is_write_only() {
                c.writable_len += u64::from(len);
                c.writable.push(r);
            } else {
                // "The driver MUST place any device-writable descriptor elements
                // after any device-readable descriptor elements." (virtio 1.2, 2.7.4.2)
                if !c.writable.is_empty() && c.error.is_none() {
                    c.error = Some(ChainError::ReadableAfterWritable);
                }
                c.readable_len += u64::from(len);
                c.readable.push(r);
            }
        }
        if c.readable_len + c.writable_len > u64::from(u32::MAX) && c.error.is_none() {
            c.error = Some(ChainError::TooLong);
        }
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

/// A position in a list of guest buffers: reads or writes consume bytes in
/// order, whatever the descriptor boundaries.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    regions: &'a [Region],
    idx: usize,
    off: u32,
    consumed: u64,
    limit: u64,
}

impl<'a> Cursor<'a> {
    fn new(regions: &'a [Region]) -> Self {
        let limit = regions.iter().map(|r| u64::from(r.len)).sum();
        Cursor {
            regions,
            idx: 0,
            off: 0,
            consumed: 0,
            limit,
        }
    }

    /// Bytes left.
    pub fn remaining(&self) -> u64 {
        self.limit - self.consumed
    }

    /// Bytes consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Take the next `len` bytes as guest (address, length) pieces.
    fn take(
        &mut self,
        len: u64,
        out: &mut impl FnMut(GuestAddress, usize) -> Result<(), ChainError>,
    ) -> Result<(), ChainError> {
        if len > self.remaining() {
            return Err(ChainError::ShortChain);
        }
        let mut left = len;
        while left > 0 {
            let r = self.regions.get(self.idx).ok_or(ChainError::ShortChain)?;
            let avail = u64::from(r.len - self.off);
            let n = avail.min(left);
            let addr = r
                .addr
                .checked_add(u64::from(self.off))
                .ok_or(ChainError::BadAddress)?;
            out(addr, n as usize)?;
            left -= n;
            self.consumed += n;
            if n == avail {
                self.idx += 1;
                self.off = 0;
            } else {
                self.off += n as u32;
            }
        }
        Ok(())
    }

    /// Copy the next `buf.len()` bytes out of guest memory.
    pub fn read_exact<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        buf: &mut [u8],
    ) -> Result<(), ChainError> {
        let mut pos = 0usize;
        self.take(buf.len() as u64, &mut |addr, n| {
            mem.read_slice(&mut buf[pos..pos + n], addr)
                .map_err(|_| ChainError::BadAddress)?;
            pos += n;
            Ok(())
        })
    }

    /// Copy `buf` into the next `buf.len()` bytes of guest memory.
    pub fn write_all<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        buf: &[u8],
    ) -> Result<(), ChainError> {
        let mut pos = 0usize;
        self.take(buf.len() as u64, &mut |addr, n| {
            mem.write_slice(&buf[pos..pos + n], addr)
                .map_err(|_| ChainError::BadAddress)?;
            pos += n;
            Ok(())
        })
    }

    /// Turn the next `len` bytes into host iovecs (appended to `out`), for
    /// zero-copy I/O. A buffer that crosses guest memory regions becomes
    /// several iovecs; one outside guest memory is an error.
    ///
    /// The pointers stay valid while the guest memory mapping `mem` stays
    /// alive: the caller must keep it until the I/O completes.
    pub fn iovecs<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        len: u64,
        out: &mut Vec<libc::iovec>,
    ) -> Result<(), ChainError> {
        self.take(len, &mut |addr, n| host_iovecs(mem, addr, n, out))
    }
}

/// Append the host iovecs of guest range `[addr, addr+len)`.
pub fn host_iovecs<M: GuestMemory + ?Sized>(
    mem: &M,
    addr: GuestAddress,
    len: usize,
    out: &mut Vec<libc::iovec>,
) -> Result<(), ChainError> {
    if len == 0 {
        return Ok(());
    }
    addr.checked_add(len as u64).ok_or(ChainError::BadAddress)?;
    let slices = mem
        .get_slices(addr, len, Permissions::ReadWrite)
        .map_err(|_| ChainError::BadAddress)?;
    let mut got = 0usize;
    for s in slices {
        let s = s.map_err(|_| ChainError::BadAddress)?;
        out.push(libc::iovec {
            iov_base: s.ptr_guard_mut().as_ptr() as *mut libc::c_void,
            iov_len: s.len(),
        });
        got += s.len();
    }
    if got != len {
        return Err(ChainError::BadAddress);
    }
    Ok(())
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
    use vm_memory::GuestMemoryMmap;

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
