//! The inflight buffer's shared mapping: every access is an atomic,
//! bounds- and alignment-checked against the mapping.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicU8, Ordering};

/// A shared mapping, unmapped on drop.
#[derive(Debug)]
pub(super) struct SharedMap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access goes through
// atomics (see `atomic`), so sharing the pointer between threads is sound.
unsafe impl Send for SharedMap {}
// SAFETY: as above.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Map `len` bytes of `file` from `offset` (page aligned), shared.
    pub(super) fn map(file: &File, offset: u64, len: usize) -> io::Result<SharedMap> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a fresh shared mapping of a file we hold; the result is
        // checked against MAP_FAILED and owned by the returned value.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedMap { ptr: p.cast(), len })
    }

    /// The atomic of type `T` at byte `off`, if it lies in the mapping and
    /// is aligned.
    pub(super) fn atomic<T>(&self, off: usize) -> Option<&T> {
        let size = std::mem::size_of::<T>();
        let end = off.checked_add(size)?;
        if end > self.len || !off.is_multiple_of(std::mem::align_of::<T>()) {
            return None;
        }
        // SAFETY: `off..off + size` lies inside the live mapping (checked
        // above) and the mapping is page aligned, so the address is aligned
        // for T (checked above). T is only instantiated with AtomicU8/16/64,
        // which are valid for any bit pattern and may be accessed
        // concurrently (the front end shares this memory).
        Some(unsafe { &*(self.ptr.add(off) as *const T) })
    }

    pub(super) fn load8(&self, off: usize) -> u8 {
        self.atomic::<AtomicU8>(off)
            .map_or(0, |a| a.load(Ordering::Acquire))
    }
    pub(super) fn store8(&self, off: usize, v: u8) {
        if let Some(a) = self.atomic::<AtomicU8>(off) {
            a.store(v, Ordering::Release)
        }
    }
    pub(super) fn load16(&self, off: usize) -> u16 {
        self.atomic::<AtomicU16>(off)
            .map_or(0, |a| a.load(Ordering::Acquire))
    }
    pub(super) fn store16(&self, off: usize, v: u16) {
        if let Some(a) = self.atomic::<AtomicU16>(off) {
            a.store(v, Ordering::Release)
        }
    }
    pub(super) fn load64(&self, off: usize) -> u64 {
        self.atomic::<AtomicU64>(off)
            .map_or(0, |a| a.load(Ordering::Acquire))
    }
    pub(super) fn store64(&self, off: usize, v: u64) {
        if let Some(a) = self.atomic::<AtomicU64>(off) {
            a.store(v, Ordering::Release)
        }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping created in `map`; no
        // reference into it outlives `self` (accessors borrow `self`).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
