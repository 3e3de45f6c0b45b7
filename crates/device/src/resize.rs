//! Online resize: a new capacity while the device runs, then a
//! configuration change notification through every transport.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::BlkDevice;

/// How long a shrink that also truncates the file waits for the requests
/// planned under the old capacity to finish.
pub const SHRINK_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a resize did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resized {
    pub old: u64,
    pub new: u64,
    /// The storage (file) was grown or shrunk too.
    pub file: bool,
}

impl BlkDevice {
    /// Serve `size` bytes from now on and tell the driver (capacity in the
    /// config space, the configuration generation, a configuration change
    /// notification on every transport). With `resize_file` the storage
    /// grows or shrinks too; without it the storage is never touched and
    /// `size` must fit in it. Requests planned after the change are checked
    /// against the new capacity: past the end they fail with IOERR.
    pub fn resize(&self, size: u64, resize_file: bool) -> Result<Resized, String> {
        let lbs = u64::from(self.config().logical_block_size.max(512));
        if size == 0 || !size.is_multiple_of(512) || !size.is_multiple_of(lbs) {
            return Err(format!(
                "size {size} must be a non-zero multiple of the logical block size ({lbs} bytes)"
            ));
        }
        let live = self.live();
        let old = live.capacity();
        let backend = self.backend();
        if size < old && resize_file {
            // Shrinking the file: first no request may reach past the new
            // end (or a late write would extend the file again), then cut.
            live.set_capacity(size);
            if let Err(e) = self.drain_popped(SHRINK_DRAIN_TIMEOUT) {
                live.set_capacity(old);
                return Err(format!("{e}; the export is back at {old} bytes"));
            }
            if let Err(e) = backend.resize(size, true) {
                live.set_capacity(old);
                return Err(format!("{e}; the export is back at {old} bytes"));
            }
        } else {
            // Growing (the storage first, so nothing is served before it
            // is there), or shrinking the export only.
            backend
                .resize(size, resize_file)
                .map_err(|e| e.to_string())?;
            live.set_capacity(size);
        }
        crate::stats::inc(&self.stats().device.resizes);
        log::info!(
            "resized from {old} to {size} bytes ({} sectors){}",
            size / 512,
            if resize_file { ", file too" } else { "" }
        );
        Ok(Resized {
            old,
            new: size,
            file: resize_file,
        })
    }

    /// Wait until every queue has been seen with nothing in flight once
    /// since the call (every chain popped before it is answered).
    fn drain_popped(&self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        let stats = self.stats();
        let mut idle = vec![false; stats.queues.len()];
        loop {
            for (i, q) in stats.queues.iter().enumerate() {
                let popped = q.chains_popped.load(Ordering::SeqCst);
                let used = q.used_pushes.load(Ordering::SeqCst);
                let broken = q.broken_rings.load(Ordering::SeqCst);
                // A chain that broke its ring is never answered.
                idle[i] |= used.saturating_add(broken) >= popped;
            }
            if idle.iter().all(|&b| b) {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(format!(
                    "I/O kept running for {timeout:?}; the file was not truncated"
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlkConfig;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use vblk_backend::{Backend, MemBackend, NullBackend};

    fn dev(b: Arc<dyn Backend>) -> BlkDevice {
        BlkDevice::new(BlkConfig::new(b.capacity()), b)
    }

    #[test]
    fn resize_updates_capacity_generation_and_notifies() {
        let mem = Arc::new(MemBackend::new(1 << 20));
        let d = dev(mem.clone());
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        let _h = d.live().on_change(Arc::new(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        }));
        // Shrinking the export leaves the storage alone.
        let r = d.resize(512 << 10, false).unwrap();
        assert_eq!((r.old, r.new, r.file), (1 << 20, 512 << 10, false));
        assert_eq!(mem.capacity(), 1 << 20);
        let cs = d.config_space();
        assert_eq!(u64::from_le_bytes(cs[0..8].try_into().unwrap()), 1024);
        assert_eq!((d.live().generation(), n.load(Ordering::SeqCst)), (1, 1));
        // Growing back within the storage needs no flag; past it, it does.
        d.resize(1 << 20, false).unwrap();
        let e = d.resize(2 << 20, false).unwrap_err();
        assert!(e.contains("--resize-file"), "{e}");
        assert_eq!(d.live().capacity(), 1 << 20);
        d.resize(2 << 20, true).unwrap();
        assert_eq!(mem.capacity(), 2 << 20);
        d.resize(4096, true).unwrap();
        assert_eq!(mem.capacity(), 4096);
        assert_eq!((d.live().generation(), n.load(Ordering::SeqCst)), (4, 4));
        // Refused: nothing changes, nobody is told.
        for bad in [0, 1000, 4097] {
            assert!(d.resize(bad, true).is_err());
        }
        assert_eq!((d.live().capacity(), d.live().generation()), (4096, 4));
    }

    #[test]
    fn the_null_backend_has_no_file_to_resize() {
        let d = dev(Arc::new(NullBackend::new(1 << 20)));
        let e = d.resize(2 << 20, true).unwrap_err();
        assert!(e.contains("null backend has no file"), "{e}");
        let e = d.resize(4096, true).unwrap_err();
        assert!(e.contains("null backend has no file"), "{e}");
        assert_eq!(d.live().capacity(), 1 << 20);
        d.resize(2 << 20, false).unwrap();
        assert_eq!(d.live().capacity(), 2 << 20);
    }
}
