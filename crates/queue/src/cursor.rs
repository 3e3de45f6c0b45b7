//! A chain's readable or writable bytes as one stream, whatever the
//! descriptor boundaries; guest buffers become host iovecs for zero-copy I/O.

use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemory, GuestMemoryBackend, GuestMemoryRegion, Permissions,
};

use crate::{ChainError, Region};

/// A position in a list of guest buffers: reads or writes consume bytes in
/// order, whatever the descriptor boundaries.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    regions: &'a [Region],
    idx: usize,
    off: u32,
    consumed: u64,
    pub(crate) limit: u64,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(regions: &'a [Region]) -> Self {
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
    // Fast path: the buffer lies in one region of plain guest memory (no
    // IOMMU), the common case: one lookup instead of the slice iterator.
    if let Some((region, at)) = mem
        .physical_memory()
        .and_then(|phys| phys.to_region_addr(addr))
    {
        let inside = at
            .raw_value()
            .checked_add(len as u64)
            .is_some_and(|end| end <= region.len());
        if inside {
            if let Ok(base) = region.get_host_address(at) {
                out.push(libc::iovec {
                    iov_base: base.cast(),
                    iov_len: len,
                });
                return Ok(());
            }
        }
    }
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
