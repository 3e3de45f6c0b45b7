//! Dirty-page logging for live migration: every guest page the device
//! writes (IN data, the status byte, the used ring) is recorded in a log
//! the front end reads, so that pages changed after the migration copied
//! them are copied again.
//!
//! The core calls a [`DirtyLog`] (the transport owns the log memory and
//! turns logging on and off); [`LogBitmap`] is the log format vhost-user
//! uses: one bit per 4 KiB page of guest physical address, set with an
//! atomic OR. When logging is off the cost is one atomic load per
//! completed request.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use vblk_queue::{Queue, QueueT, Region};

/// "The log is a bitmap, one bit per page of `VHOST_LOG_PAGE` (0x1000)
/// bytes of guest physical address" (vhost-user.rst, "Migration").
pub const LOG_PAGE: u64 = 0x1000;

/// Where the device records the guest memory it wrote.
pub trait DirtyLog: Send + Sync {
    /// Is logging on? Called for every completed request: keep it cheap.
    fn enabled(&self) -> bool;
    /// The device wrote `[gpa, gpa + len)` (already: mark after writing).
    fn mark(&self, gpa: u64, len: u64);
    /// The guest address at which writes to queue `queue`'s used ring are
    /// logged, when the front end asked for it (vhost-user:
    /// `VHOST_VRING_F_LOG` and `log_guest_addr` of SET_VRING_ADDR).
    fn used_ring(&self, queue: u16) -> Option<u64>;
}

/// A dirty bitmap over memory the caller keeps mapped. Bits past its end
/// are not written: [`LogBitmap::set`] reports how many pages fell outside.
#[derive(Debug)]
pub struct LogBitmap {
    base: *mut u8,
    len: usize,
}

// SAFETY: the bitmap is only written through atomic byte operations; the
// creator guarantees the memory stays mapped for the bitmap's lifetime.
unsafe impl Send for LogBitmap {}
// SAFETY: as above; every access is an atomic fetch_or.
unsafe impl Sync for LogBitmap {}

impl LogBitmap {
    /// # Safety
    /// `base` must point to `len` bytes of writable memory that stay mapped
    /// (and are accessed by others only atomically, or not at all) for as
    /// long as the returned bitmap lives.
    pub unsafe fn new(base: *mut u8, len: usize) -> LogBitmap {
        LogBitmap { base, len }
    }

    /// Bytes of bitmap: it covers `len * 8` pages.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Set the bit of every page `[gpa, gpa + len)` touches (nothing for
    /// `len == 0`). Returns the number of pages outside the bitmap (not
    /// logged; the range is clipped, never written out of bounds).
    pub fn set(&self, gpa: u64, len: u64) -> u64 {
        if len == 0 {
            return 0;
        }
        let first = gpa / LOG_PAGE;
        // An end past 2^64 is clipped to the last page.
        let last = gpa.saturating_add(len - 1) / LOG_PAGE;
        let covered = (self.len as u64).saturating_mul(8);
        let mut outside = 0;
        if last >= covered {
            outside = last - first.max(covered) + 1;
        }
        let mut page = first;
        while page <= last && page < covered {
            let byte = (page / 8) as usize;
            let bit = 1u8 << (page % 8);
            // SAFETY: `byte < self.len` (page < len * 8), and the creator
            // keeps `len` bytes at `base` mapped while `self` lives.
            let cell = unsafe { AtomicU8::from_ptr(self.base.add(byte)) };
            // "The back-end MUST ... set the bit using an atomic OR" (the
            // front end clears bits concurrently with atomic exchanges).
            cell.fetch_or(bit, Ordering::SeqCst);
            page += 1;
        }
        outside
    }
}

/// The worker's view of the log: nothing at all when no transport set one.
#[derive(Default)]
pub(crate) struct Dirty {
    log: Option<Arc<dyn DirtyLog>>,
}

impl Dirty {
    pub(crate) fn set(&mut self, log: Option<Arc<dyn DirtyLog>>) {
        self.log = log;
    }

    /// The log, if logging is on.
    #[inline]
    fn on(&self) -> Option<&dyn DirtyLog> {
        self.log.as_deref().filter(|l| l.enabled())
    }

    /// What a request popped now must log when it completes: its
    /// device-writable buffers, if logging is on (else nothing, no
    /// allocation). A front end that turns logging on quiesces the rings
    /// first, so no request popped before is still in flight then.
    #[inline]
    pub(crate) fn record(&self, writable: &[Region]) -> Vec<Region> {
        if self.on().is_some() {
            writable.to_vec()
        } else {
            Vec::new()
        }
    }

    /// The device wrote (some of) `regions`: log them all.
    #[inline]
    pub(crate) fn written(&self, regions: &[Region]) {
        if let Some(l) = self.on() {
            for r in regions {
                l.mark(r.addr.0, u64::from(r.len));
            }
        }
    }

    /// The device wrote queue `qi`'s ring (used elements, the used index,
    /// `avail_event`; packed: used descriptors, the device event
    /// suppression structure): log it whole, when the front end asked for
    /// the ring to be logged. Split: "6 + 8 * Queue Size" bytes (virtio
    /// 1.2, 2.7.8) at the logging address ("the write to first byte of the
    /// used ring is logged at this offset from log start"). Packed: the
    /// descriptor ring (16 * Queue Size bytes, 2.8.10) and the 4-byte
    /// device area (2.8.14) at their guest addresses.
    #[inline]
    pub(crate) fn ring_written(&self, qi: u16, queue: &Queue, packed: bool) {
        if let Some(l) = self.on() {
            if let Some(at) = l.used_ring(qi) {
                let size = u64::from(queue.size());
                if packed {
                    l.mark(queue.desc_table(), 16 * size);
                    l.mark(queue.used_ring(), 4);
                } else {
                    l.mark(at, 6 + 8 * size);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(b: &[u8]) -> Vec<u64> {
        (0..b.len() as u64 * 8)
            .filter(|p| b[(p / 8) as usize] & (1 << (p % 8)) != 0)
            .collect()
    }

    #[test]
    fn pages_touched_are_set_and_nothing_past_the_end() {
        let mut mem = vec![0u8; 3];
        {
            // SAFETY: `mem` outlives `log` (this block) and is read after it.
            let log = unsafe { LogBitmap::new(mem.as_mut_ptr(), 2) };
            assert_eq!(log.set(0x1fff, 2), 0);
            assert_eq!(log.set(0x5000, 0), 0);
            assert_eq!(log.set(0xf000, 0x1000), 0);
            // Pages 15..=17: 16 and 17 are past the 16 pages covered.
            assert_eq!(log.set(0xf000, 0x2001), 2);
            assert_eq!(log.set(u64::MAX - 10, 100), 1);
            assert_eq!(
                log.set(u64::MAX / 2, u64::MAX),
                (u64::MAX / LOG_PAGE) - (u64::MAX / 2 / LOG_PAGE) + 1
            );
        }
        assert_eq!(bits(&mem[..2]), vec![1, 2, 15]);
        assert_eq!(mem[2], 0, "written past the bitmap");
    }
}
