//! A device on a memory backend, and its statistics counters summed over
//! the device and every queue.

use std::sync::Arc;

/// A device on a memory backend.
pub fn device(disk: u64, queues: u16) -> (Arc<vblk_device::BlkDevice>, vblk_backend::MemBackend) {
    let backend = vblk_backend::MemBackend::new(disk);
    let mut cfg = vblk_device::BlkConfig::new(disk);
    cfg.num_queues = queues;
    let dev = Arc::new(vblk_device::BlkDevice::new(cfg, Arc::new(backend.clone())));
    (dev, backend)
}

pub fn counter(dev: &vblk_device::BlkDevice, name: &str) -> u64 {
    let s = dev.stats();
    let mut total = 0;
    for (k, v) in s.device.snapshot() {
        if k == name {
            total += v;
        }
    }
    for q in &s.queues {
        for (k, v) in q.snapshot() {
            if k == name {
                total += v;
            }
        }
    }
    total
}
