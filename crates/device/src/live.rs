//! The parts of the device configuration that change while the device
//! runs: the capacity (online resize) and the write-cache mode (the
//! `writeback` byte a driver writes when `VIRTIO_BLK_F_CONFIG_WCE` is
//! negotiated), plus the device-side configuration generation and the
//! transports' "configuration changed" notifiers.
//!
//! Every queue worker reads the capacity and the cache mode once per chain
//! it plans, so a change applies to every request popped after it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// What a transport does when the device configuration changed (virtio
/// 1.2, 2.5.1 / 4.1.4.5: a configuration change notification).
pub type ConfigNotify = Arc<dyn Fn() + Send + Sync>;

/// The live values, shared by the device, its workers and the transports.
pub struct LiveConfig {
    /// Capacity in bytes (a multiple of 512).
    capacity: AtomicU64,
    /// The cache mode chosen (`--write-cache`, then the driver's writes of
    /// `writeback`): write-back when set.
    writeback: AtomicBool,
    /// The driver negotiated FLUSH: without it the device is write-through
    /// whatever was chosen.
    flush_ok: AtomicBool,
    /// The mode set on the command line (`--write-cache`).
    initial_writeback: bool,
    /// Bumped on every change the device makes to its configuration.
    generation: AtomicU32,
    notifiers: Mutex<Vec<(u64, ConfigNotify)>>,
    next_id: AtomicU64,
}

impl LiveConfig {
    pub fn new(capacity: u64, writeback: bool) -> Arc<Self> {
        Arc::new(LiveConfig {
            capacity: AtomicU64::new(capacity),
            writeback: AtomicBool::new(writeback),
            flush_ok: AtomicBool::new(true),
            initial_writeback: writeback,
            generation: AtomicU32::new(0),
            notifiers: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        })
    }

    pub fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::SeqCst)
    }

    /// The cache is write-back now (the `writeback` byte): chosen so, and
    /// the driver can flush. Otherwise every write must be durable before
    /// it completes.
    pub fn writeback(&self) -> bool {
        self.writeback.load(Ordering::SeqCst) && self.flush_ok.load(Ordering::SeqCst)
    }

    pub fn initial_writeback(&self) -> bool {
        self.initial_writeback
    }

    /// The driver switched the cache mode (a write of the `writeback`
    /// byte). The driver made the change itself: no notification.
    pub fn set_writeback(&self, on: bool) {
        self.writeback.store(on, Ordering::SeqCst);
    }

    /// The driver did (not) negotiate FLUSH.
    pub fn set_flush_ok(&self, on: bool) {
        self.flush_ok.store(on, Ordering::SeqCst);
    }

    /// Device reset: the command line's mode again (as QEMU restores its
    /// original write-cache setting at reset), until a driver says more.
    pub fn reset_cache_mode(&self) {
        self.writeback
            .store(self.initial_writeback, Ordering::SeqCst);
        self.flush_ok.store(true, Ordering::SeqCst);
    }

    /// The device-side configuration generation: transports add it to
    /// their own so that `config_generation` changes with every change.
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Set a new capacity, bump the generation and notify every transport.
    pub(crate) fn set_capacity(&self, bytes: u64) {
        self.capacity.store(bytes, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.notify();
    }

    /// Run every registered notifier (outside the lock: a notifier may
    /// block on its front end for a while).
    pub fn notify(&self) {
        let list: Vec<ConfigNotify> = self
            .notifiers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, f)| f.clone())
            .collect();
        for f in list {
            f();
        }
    }

    /// Call `f` on every configuration change until the returned handle
    /// is dropped.
    pub fn on_change(self: &Arc<Self>, f: ConfigNotify) -> NotifierHandle {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        self.notifiers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, f));
        NotifierHandle {
            live: Arc::downgrade(self),
            id,
        }
    }

    /// Notifiers registered now (for tests and logs).
    pub fn notifier_count(&self) -> usize {
        self.notifiers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// Keeps a notifier registered; dropping it unregisters.
pub struct NotifierHandle {
    live: Weak<LiveConfig>,
    id: u64,
}

impl Drop for NotifierHandle {
    fn drop(&mut self) {
        if let Some(l) = self.live.upgrade() {
            l.notifiers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(id, _)| *id != self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn notifiers_run_until_their_handle_drops() {
        let l = LiveConfig::new(4096, true);
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        let h = l.on_change(Arc::new(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        }));
        l.set_capacity(8192);
        assert_eq!((l.capacity(), l.generation()), (8192, 1));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        drop(h);
        assert_eq!(l.notifier_count(), 0);
        l.set_capacity(512);
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(l.generation(), 2);
    }
}
