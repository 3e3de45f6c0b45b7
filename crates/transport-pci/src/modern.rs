//! BAR4: the modern virtio structures (virtio 1.2, 4.1.4), each found by
//! the driver through its vendor capability:
//!
//! ```text
//! 0x0000 common cfg   struct virtio_pci_common_cfg (4.1.4.3)
//! 0x1000 ISR          one byte; read returns and clears (4.1.4.5)
//! 0x2000 device cfg   struct virtio_blk_config; `writeback` writable (5.2.4)
//! 0x3000 notify       queue n at n * notify_off_multiplier (4.1.4.4)
//! ```

use vblk_queue::QueueT;

use crate::function::{NotifyPath, PciFunction};
use crate::regs::{
    common::*, layout::*, merge_piece, pieces, read_piece, status::DRIVER_OK, status::FEATURES_OK,
    Field,
};

const FIELDS: &[Field] = &[
    (DEVICE_FEATURE_SELECT, 4),
    (DEVICE_FEATURE, 4),
    (DRIVER_FEATURE_SELECT, 4),
    (DRIVER_FEATURE, 4),
    (MSIX_CONFIG, 2),
    (NUM_QUEUES, 2),
    (DEVICE_STATUS, 1),
    (CONFIG_GENERATION, 1),
    (QUEUE_SELECT, 2),
    (QUEUE_SIZE, 2),
    (QUEUE_MSIX_VECTOR, 2),
    (QUEUE_ENABLE, 2),
    (QUEUE_NOTIFY_OFF, 2),
    (QUEUE_DESC_LO, 4),
    (QUEUE_DESC_HI, 4),
    (QUEUE_DRIVER_LO, 4),
    (QUEUE_DRIVER_HI, 4),
    (QUEUE_DEVICE_LO, 4),
    (QUEUE_DEVICE_HI, 4),
];

fn within(offset: u64, start: u64, size: u64) -> Option<u64> {
    offset.checked_sub(start).filter(|&o| o < size)
}

impl PciFunction {
    pub(crate) fn modern_read(&mut self, offset: u64, data: &mut [u8]) {
        if let Some(off) = within(offset, COMMON_OFFSET, COMMON_SIZE) {
            for p in pieces(FIELDS, off, data.len()) {
                read_piece(&p, self.common_value(p.field), data);
            }
        } else if let Some(off) = within(offset, ISR_OFFSET, ISR_SIZE) {
            if let (0, Some(b)) = (off, data.first_mut()) {
                *b = self.irq.read_isr();
            }
        } else if let Some(off) = within(offset, DEVICE_OFFSET, DEVICE_SIZE) {
            self.dev.read_config(off, data);
        }
        // The notify region reads 0.
    }

    pub(crate) fn modern_write(&mut self, offset: u64, data: &[u8]) {
        if let Some(off) = within(offset, COMMON_OFFSET, COMMON_SIZE) {
            for p in pieces(FIELDS, off, data.len()) {
                let v = merge_piece(&p, self.common_value(p.field), data);
                self.common_write(p.field, v);
            }
        } else if let Some(off) = within(offset, NOTIFY_OFFSET, NOTIFY_SIZE) {
            // The queue is in the address (queue_notify_off = the queue
            // index); without VIRTIO_F_NOTIFICATION_DATA the value written
            // carries nothing more (4.1.5.2).
            let q = off / u64::from(NOTIFY_OFF_MULTIPLIER);
            if q < self.queues.len() as u64 && off % u64::from(NOTIFY_OFF_MULTIPLIER) == 0 {
                self.notify(q as u16, NotifyPath::Modern);
            } else {
                self.bad_write("notify at an address of no queue");
            }
        } else if let Some(off) = within(offset, DEVICE_OFFSET, DEVICE_SIZE) {
            // Only `writeback` is writable (with CONFIG_WCE negotiated).
            self.device_config_write(off, data);
        } else {
            self.bad_write("write to the ISR");
        }
    }

    /// A common-config field, without side effects.
    fn common_value(&self, f: u64) -> u64 {
        let qi = usize::from(self.queue_select);
        let q = self.queues.get(qi).map(|s| &s.queue);
        match f {
            DEVICE_FEATURE_SELECT => u64::from(self.device_feature_select),
            // "device_feature ... bits selected by device_feature_select":
            // 0 for selects past 63.
            DEVICE_FEATURE => match self.device_feature_select {
                0 => self.offered_features(false) & 0xffff_ffff,
                1 => self.offered_features(false) >> 32,
                _ => 0,
            },
            DRIVER_FEATURE_SELECT => u64::from(self.driver_feature_select),
            DRIVER_FEATURE => match self.driver_feature_select {
                0 => self.driver_features & 0xffff_ffff,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            MSIX_CONFIG => u64::from(self.irq.config_vector()),
            NUM_QUEUES => self.queues.len() as u64,
            DEVICE_STATUS => u64::from(self.status),
            CONFIG_GENERATION => u64::from(self.generation()),
            QUEUE_SELECT => u64::from(self.queue_select),
            // A queue_select past the last queue reads size 0: "not available".
            QUEUE_SIZE => q.map_or(0, |q| u64::from(q.size())),
            QUEUE_MSIX_VECTOR => u64::from(self.irq.queue_vector(qi)),
            QUEUE_ENABLE => q.map_or(0, |q| u64::from(q.ready())),
            QUEUE_NOTIFY_OFF => q.map_or(0, |_| u64::from(self.queue_select)),
            QUEUE_DESC_LO => q.map_or(0, |q| q.desc_table() & 0xffff_ffff),
            QUEUE_DESC_HI => q.map_or(0, |q| q.desc_table() >> 32),
            QUEUE_DRIVER_LO => q.map_or(0, |q| q.avail_ring() & 0xffff_ffff),
            QUEUE_DRIVER_HI => q.map_or(0, |q| q.avail_ring() >> 32),
            QUEUE_DEVICE_LO => q.map_or(0, |q| q.used_ring() & 0xffff_ffff),
            QUEUE_DEVICE_HI => q.map_or(0, |q| q.used_ring() >> 32),
            _ => 0,
        }
    }

    fn common_write(&mut self, f: u64, v: u64) {
        let qi = usize::from(self.queue_select);
        match f {
            DEVICE_FEATURE_SELECT => self.device_feature_select = v as u32,
            DRIVER_FEATURE_SELECT => self.driver_feature_select = v as u32,
            DRIVER_FEATURE => {
                // Features are fixed once FEATURES_OK is set (3.1.1 step 5-6;
                // QEMU's virtio_set_features refuses too).
                if self.status & FEATURES_OK != 0 {
                    return self.bad_write("driver_feature after FEATURES_OK");
                }
                let v = v & 0xffff_ffff;
                match self.driver_feature_select {
                    0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v,
                    1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (v << 32),
                    _ if v == 0 => {}
                    _ => self.bad_write("driver_feature bits past 63"),
                }
            }
            MSIX_CONFIG => self.irq.set_config_vector(v as u16),
            DEVICE_STATUS => self.write_status(v as u8, false),
            // Kept as written; the queue fields then read 0 for no queue.
            QUEUE_SELECT => self.queue_select = v as u16,
            QUEUE_MSIX_VECTOR => {
                if qi < self.queues.len() {
                    self.irq.set_queue_vector(qi, v as u16);
                } else {
                    self.bad_write("queue_msix_vector for no queue");
                }
            }
            QUEUE_SIZE | QUEUE_ENABLE | QUEUE_DESC_LO | QUEUE_DESC_HI | QUEUE_DRIVER_LO
            | QUEUE_DRIVER_HI | QUEUE_DEVICE_LO | QUEUE_DEVICE_HI => {
                if self.status & DRIVER_OK != 0 {
                    // Without VIRTIO_F_RING_RESET a live queue is not
                    // reconfigured (4.1.4.3.2).
                    return self.bad_write("queue configuration after DRIVER_OK");
                }
                let Some(s) = self.queues.get_mut(qi) else {
                    return self.bad_write("queue configuration for no queue");
                };
                let q = &mut s.queue;
                if q.ready() && f != QUEUE_ENABLE {
                    // "The driver MUST configure the other virtqueue fields
                    // before enabling the virtqueue with queue_enable."
                    return self.bad_write("queue configuration after queue_enable");
                }
                let (lo, hi) = if f.is_multiple_of(8) {
                    (Some(v as u32), None)
                } else {
                    (None, Some(v as u32))
                };
                match f {
                    QUEUE_SIZE => {
                        // Split rings: a power of 2 up to the maximum (2.7).
                        let n = v as u16;
                        if n == 0 || n > q.max_size() || !n.is_power_of_two() {
                            return self
                                .bad_write("queue_size not a power of two up to the maximum");
                        }
                        q.set_size(n);
                    }
                    QUEUE_ENABLE => {
                        // "The driver MUST NOT write a 0 to queue_enable." (4.1.4.3.2)
                        if v != 1 {
                            return self.bad_write("queue_enable not 1");
                        }
                        q.set_ready(true);
                    }
                    QUEUE_DESC_LO | QUEUE_DESC_HI => q.set_desc_table_address(lo, hi),
                    QUEUE_DRIVER_LO | QUEUE_DRIVER_HI => q.set_avail_ring_address(lo, hi),
                    _ => q.set_used_ring_address(lo, hi),
                }
            }
            _ => self.bad_write("write to a read-only common config field"),
        }
    }
}
