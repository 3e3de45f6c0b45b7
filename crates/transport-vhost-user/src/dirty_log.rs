//! Live migration: the dirty log of one connection.
//!
//! "During live migration, the front-end may need to track the
//! modifications the back-end makes to the memory mapped regions. The
//! front-end should mark the dirty pages in a log." (vhost-user.rst,
//! "Migration"). The front end hands over the log with SET_LOG_BASE (an fd,
//! a size and an offset: `VHOST_USER_PROTOCOL_F_LOG_SHMFD`), turns logging
//! on and off with SET_FEATURES (`VHOST_F_LOG_ALL`), and asks for the used
//! rings to be logged with SET_VRING_ADDR (`VHOST_VRING_F_LOG`,
//! `log_guest_addr`).
//!
//! The queue threads write the bitmap while the control thread may replace
//! it: the mapping sits behind a lock the writers hold for reading, so a
//! replaced or dropped log is unmapped only once no queue writes into it.
//! Every bit is bounds-checked against the mapped size: a page the log
//! does not cover is not logged, only counted (the front end sized its own
//! log; the guest's I/O goes on).

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;

use vblk_device::{DirtyLog, LogBitmap};
use vblk_memory::{map_guest_region, GuestMapping};
use vm_memory::GuestAddress;

/// Largest log accepted: 1 GiB of bitmap covers 32 TiB of guest memory.
pub const MAX_LOG_BYTES: u64 = 1 << 30;

/// No used-ring logging for this queue.
const NO_LOG_ADDR: u64 = u64::MAX;

/// A mapped log (the bitmap is dropped before the mapping it points into).
pub struct LogMap {
    bitmap: LogBitmap,
    _mapping: GuestMapping,
}

impl LogMap {
    /// Map the log the front end sent with SET_LOG_BASE: `size` bytes of
    /// `file` from `offset`. Refused: an empty or oversized log, an
    /// unaligned or overflowing offset, an fd that is not a regular file
    /// (memfd), a range past the end of the file.
    pub fn map(file: File, size: u64, offset: u64) -> Result<LogMap, String> {
        if size == 0 || size > MAX_LOG_BYTES {
            return Err(format!(
                "log of {size} bytes (1 to {MAX_LOG_BYTES} accepted)"
            ));
        }
        if offset.checked_add(size).is_none() {
            return Err(format!("log offset {offset:#x} + size {size:#x} overflows"));
        }
        if !offset.is_multiple_of(4096) {
            return Err(format!("log offset {offset:#x} is not page aligned"));
        }
        // Mapped like guest memory: checked against the file first, and a
        // later truncation by the front end is a contained fault, not a
        // SIGBUS in a queue thread.
        let mapping = map_guest_region(file, offset, size, GuestAddress(0), true)
            .map_err(|e| format!("cannot map the log: {e}"))?;
        let region = mapping.region();
        let len = region
            .size()
            .min(usize::try_from(size).unwrap_or(usize::MAX));
        // SAFETY: `region` maps `len` writable bytes and stays mapped while
        // `_mapping` (which holds it) lives, that is as long as the bitmap;
        // the bitmap only does atomic byte ORs, as the front end expects.
        let bitmap = unsafe { LogBitmap::new(region.as_ptr(), len) };
        Ok(LogMap {
            bitmap,
            _mapping: mapping,
        })
    }

    pub fn len(&self) -> usize {
        self.bitmap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bitmap.is_empty()
    }
}

/// The dirty log state of one connection, shared with its queue threads.
pub struct VuDirtyLog {
    /// SET_FEATURES with `VHOST_F_LOG_ALL`.
    on: AtomicBool,
    map: RwLock<Option<LogMap>>,
    /// Per queue: `log_guest_addr` if `VHOST_VRING_F_LOG` was set.
    used: Vec<AtomicU64>,
    /// Pages written that the log did not cover (or with no log set).
    unlogged: AtomicU64,
}

impl VuDirtyLog {
    pub fn new(queues: u16) -> VuDirtyLog {
        VuDirtyLog {
            on: AtomicBool::new(false),
            map: RwLock::new(None),
            used: (0..queues).map(|_| AtomicU64::new(NO_LOG_ADDR)).collect(),
            unlogged: AtomicU64::new(0),
        }
    }

    /// Turn logging on or off; returns whether it was on.
    pub fn set_enabled(&self, on: bool) -> bool {
        self.on.swap(on, Ordering::SeqCst)
    }

    /// Install a new log (or none). Returns once no queue writes into the
    /// old one any more; the old mapping goes here.
    pub fn replace(&self, map: Option<LogMap>) {
        let old = std::mem::replace(
            &mut *self.map.write().unwrap_or_else(|e| e.into_inner()),
            map,
        );
        drop(old);
    }

    /// Bytes of the current log (0: none).
    pub fn log_len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, LogMap::len)
    }

    /// Log queue `q`'s used ring at `addr` (None: do not log it).
    pub fn set_used_ring(&self, q: u16, addr: Option<u64>) {
        if let Some(a) = self.used.get(usize::from(q)) {
            // u64::MAX cannot be a ring start (6 bytes at least follow).
            a.store(addr.unwrap_or(NO_LOG_ADDR), Ordering::SeqCst);
        }
    }

    /// Pages that were written while logging was on but could not be
    /// logged (outside the log, or no log).
    pub fn unlogged(&self) -> u64 {
        self.unlogged.load(Ordering::Relaxed)
    }

    /// Back to the initial state: off, no log, no used-ring addresses.
    pub fn reset(&self) {
        self.set_enabled(false);
        self.replace(None);
        for a in &self.used {
            a.store(NO_LOG_ADDR, Ordering::SeqCst);
        }
    }
}

impl DirtyLog for VuDirtyLog {
    #[inline]
    fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    fn mark(&self, gpa: u64, len: u64) {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let outside = match map.as_ref() {
            Some(m) => m.bitmap.set(gpa, len),
            None => u64::from(len > 0),
        };
        if outside > 0 {
            let before = self.unlogged.fetch_add(outside, Ordering::Relaxed);
            if before == 0 {
                log::warn!(
                    "dirty log: a write at guest address {gpa:#x} (+{len:#x}) lies outside the log of {} bytes; not logged (counted)",
                    map.as_ref().map_or(0, LogMap::len)
                );
            }
        }
    }

    fn used_ring(&self, queue: u16) -> Option<u64> {
        self.used
            .get(usize::from(queue))
            .map(|a| a.load(Ordering::Relaxed))
            .filter(|a| *a != NO_LOG_ADDR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::io::FromRawFd;

    fn memfd(len: u64) -> File {
        // SAFETY: memfd_create with a valid C string; the fd is ours.
        let fd = unsafe { libc::memfd_create(c"log".as_ptr(), 0) };
        assert!(fd >= 0);
        // SAFETY: fd is a fresh descriptor we own.
        let f = unsafe { File::from_raw_fd(fd) };
        f.set_len(len).unwrap();
        f
    }

    #[test]
    fn hostile_log_bases_are_refused() {
        assert!(LogMap::map(memfd(4096), 0, 0).is_err(), "empty");
        assert!(LogMap::map(memfd(4096), MAX_LOG_BYTES + 1, 0).is_err());
        assert!(LogMap::map(memfd(4096), 4096, u64::MAX - 10).is_err());
        assert!(LogMap::map(memfd(8192), 4096, 100).is_err(), "unaligned");
        assert!(LogMap::map(memfd(4096), 8192, 0).is_err(), "past EOF");
        assert!(LogMap::map(memfd(8192), 4096, 8192).is_err(), "past EOF");
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let sock = File::from(std::os::fd::OwnedFd::from(a));
        assert!(LogMap::map(sock, 4096, 0).is_err(), "not a file");
        assert_eq!(LogMap::map(memfd(8192), 100, 4096).unwrap().len(), 100);
    }

    #[test]
    fn marks_land_in_the_file_and_outside_is_counted() {
        let f = memfd(8192);
        let l = VuDirtyLog::new(2);
        l.mark(0, 1);
        assert_eq!(l.unlogged(), 1, "no log yet");
        l.replace(Some(LogMap::map(f.try_clone().unwrap(), 16, 4096).unwrap()));
        l.mark(0x3000, 0x1001);
        l.mark(128 * 4096, 4096);
        assert_eq!(l.unlogged(), 2);
        l.set_used_ring(1, Some(0x10000));
        assert_eq!(l.used_ring(1), Some(0x10000));
        assert_eq!(l.used_ring(0), None);
        assert_eq!(l.used_ring(7), None);
        l.reset();
        assert!(!l.enabled());
        assert_eq!(l.used_ring(1), None);
        let mut buf = [0u8; 3];
        use std::os::unix::fs::FileExt;
        f.read_exact_at(&mut buf, 4096).unwrap();
        assert_eq!(buf, [0b0001_1000, 0, 0]);
    }
}
