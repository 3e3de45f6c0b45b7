//! BAR0: the legacy virtio-pci I/O register block (virtio 1.2, 4.1.4.8),
//! what Linux's `virtio_pci` uses with `force_legacy=1`.
//!
//! ```text
//!  0 HOST_FEATURES  u32 R    device features, bits 0-31 (no VERSION_1)
//!  4 GUEST_FEATURES u32 RW   driver features, bits 0-31
//!  8 QUEUE_PFN      u32 RW   ring address >> 12 of QUEUE_SEL; 0 resets the device
//! 12 QUEUE_NUM      u16 R    size of QUEUE_SEL (fixed: the maximum)
//! 14 QUEUE_SEL      u16 RW   values past the last queue are ignored
//! 16 QUEUE_NOTIFY   u16 W    kick the queue written; out of range ignored
//! 18 STATUS         u8  RW   0 resets the device
//! 19 ISR            u8  R    read returns and clears, de-asserts INTx
//! 20 MSI_CONFIG_VECTOR u16 RW  } only while MSI-X is enabled; device
//! 22 MSI_QUEUE_VECTOR  u16 RW  } config then starts at 24 instead of 20
//! ```
//! Accesses of 1, 2 or 4 bytes, little endian, may cover parts of fields;
//! bytes without a register read 0 and writes to them are dropped.

use vblk_queue::QueueT;

use crate::function::{NotifyPath, PciFunction};
use crate::regs::{legacy::*, merge_piece, pieces, read_piece, status::DRIVER_OK, Field};

const FIELDS: &[Field] = &[
    (HOST_FEATURES, 4),
    (GUEST_FEATURES, 4),
    (QUEUE_PFN, 4),
    (QUEUE_NUM, 2),
    (QUEUE_SEL, 2),
    (QUEUE_NOTIFY, 2),
    (STATUS, 1),
    (ISR, 1),
];

const FIELDS_MSIX: &[Field] = &[
    (HOST_FEATURES, 4),
    (GUEST_FEATURES, 4),
    (QUEUE_PFN, 4),
    (QUEUE_NUM, 2),
    (QUEUE_SEL, 2),
    (QUEUE_NOTIFY, 2),
    (STATUS, 1),
    (ISR, 1),
    (MSI_CONFIG_VECTOR, 2),
    (MSI_QUEUE_VECTOR, 2),
];

/// Descriptor table, avail ring and used ring of a legacy queue of `size`
/// entries at page frame `pfn` (4.1.5.1.1.1 "Legacy Interfaces: A Note on
/// Virtqueue Layout"): descriptors first, the avail ring right after them,
/// the used ring at the next 4096 boundary. None if it wraps.
pub fn ring_layout(pfn: u32, size: u16) -> Option<(u64, u64, u64)> {
    let size = u64::from(size);
    let desc = u64::from(pfn) << PFN_SHIFT;
    let avail = desc + 16 * size;
    let avail_end = avail + 6 + 2 * size;
    let used = avail_end.checked_add(VRING_ALIGN - 1)? & !(VRING_ALIGN - 1);
    used.checked_add(6 + 8 * size)?;
    Some((desc, avail, used))
}

impl PciFunction {
    fn legacy_fields(&self) -> &'static [Field] {
        if self.irq.msix_enabled() {
            FIELDS_MSIX
        } else {
            FIELDS
        }
    }

    fn legacy_config_start(&self) -> u64 {
        if self.irq.msix_enabled() {
            CONFIG_MSIX
        } else {
            CONFIG_NO_MSIX
        }
    }

    pub(crate) fn legacy_read(&mut self, offset: u64, data: &mut [u8]) {
        for p in pieces(self.legacy_fields(), offset, data.len()) {
            let v = match p.field {
                // Reading ISR clears it: only when the access covers it.
                ISR => u64::from(self.irq.read_isr()),
                f => self.legacy_value(f),
            };
            read_piece(&p, v, data);
        }
        // The device-specific config follows the header.
        let cfg = self.legacy_config_start();
        let end = offset + data.len() as u64;
        if end > cfg {
            let start = offset.max(cfg);
            let skip = (start - offset) as usize;
            self.dev.read_config(start - cfg, &mut data[skip..]);
        }
    }

    /// A register's value, without side effects.
    fn legacy_value(&self, f: u64) -> u64 {
        let q = usize::from(self.queue_select);
        let slot = self.queues.get(q);
        match f {
            HOST_FEATURES => self.offered_features(true),
            GUEST_FEATURES => self.driver_features & 0xffff_ffff,
            QUEUE_PFN => slot.map_or(0, |s| u64::from(s.pfn)),
            QUEUE_NUM => slot.map_or(0, |s| u64::from(s.queue.max_size())),
            QUEUE_SEL => u64::from(self.queue_select),
            STATUS => u64::from(self.status),
            ISR => u64::from(self.irq.peek_isr()),
            MSI_CONFIG_VECTOR => u64::from(self.irq.config_vector()),
            MSI_QUEUE_VECTOR => u64::from(self.irq.queue_vector(q)),
            _ => 0, // QUEUE_NOTIFY reads 0
        }
    }

    pub(crate) fn legacy_write(&mut self, offset: u64, data: &[u8]) {
        for p in pieces(self.legacy_fields(), offset, data.len()) {
            // Narrow writes keep the other bytes of a stored register;
            // commands (NOTIFY) see only what was written.
            let base = match p.field {
                QUEUE_NOTIFY | HOST_FEATURES | QUEUE_NUM | ISR => 0,
                f => self.legacy_value(f),
            };
            let v = merge_piece(&p, base, data);
            self.legacy_field_write(p.field, v);
        }
        // The device-specific config follows the header: only its
        // `writeback` byte is writable (CONFIG_WCE).
        let cfg = self.legacy_config_start();
        let end = offset + data.len() as u64;
        if end > cfg {
            let start = offset.max(cfg);
            let skip = (start - offset) as usize;
            self.device_config_write(start - cfg, &data[skip..]);
        }
    }

    fn legacy_field_write(&mut self, f: u64, v: u64) {
        let q = usize::from(self.queue_select);
        match f {
            GUEST_FEATURES => {
                if self.status & DRIVER_OK != 0 {
                    return self.bad_write("GUEST_FEATURES after DRIVER_OK");
                }
                // Only what was offered sticks (QEMU: virtio_set_features
                // drops unknown bits for legacy drivers).
                self.driver_features = v & self.offered_features(true);
            }
            QUEUE_PFN => {
                if v == 0 {
                    // The driver tears the queue down: QEMU resets the device
                    // (virtio_ioport_write, VIRTIO_PCI_QUEUE_PFN).
                    self.reset();
                } else if self.status & DRIVER_OK != 0 {
                    // Same rule as the modern common config: a live ring does
                    // not move. "The driver MUST NOT ... change ... after
                    // DRIVER_OK" is the driver's duty; the device refuses.
                    self.bad_write("QUEUE_PFN after DRIVER_OK");
                } else {
                    self.legacy_setup_queue(q, v as u32);
                }
            }
            QUEUE_SEL => {
                if v < self.queues.len() as u64 {
                    self.queue_select = v as u16;
                } else {
                    self.bad_write("QUEUE_SEL past the last queue");
                }
            }
            QUEUE_NOTIFY => {
                if v < self.queues.len() as u64 {
                    self.notify(v as u16, NotifyPath::Legacy);
                } else {
                    self.bad_write("QUEUE_NOTIFY past the last queue");
                }
            }
            STATUS => self.write_status(v as u8, true),
            MSI_CONFIG_VECTOR => self.irq.set_config_vector(v as u16),
            MSI_QUEUE_VECTOR => self.irq.set_queue_vector(q, v as u16),
            _ => self.bad_write("write to a read-only legacy register"),
        }
    }

    fn legacy_setup_queue(&mut self, q: usize, pfn: u32) {
        let Some(slot) = self.queues.get_mut(q) else {
            return;
        };
        // Legacy queues have a fixed size: QUEUE_NUM is read-only.
        let size = slot.queue.max_size();
        let Some((desc, avail, used)) = ring_layout(pfn, size) else {
            return self.bad_write("QUEUE_PFN: ring wraps the address space");
        };
        slot.pfn = pfn;
        let qq = &mut slot.queue;
        qq.set_size(size);
        qq.set_desc_table_address(Some(desc as u32), Some((desc >> 32) as u32));
        qq.set_avail_ring_address(Some(avail as u32), Some((avail >> 32) as u32));
        qq.set_used_ring_address(Some(used as u32), Some((used >> 32) as u32));
        qq.set_ready(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_layout_matches_linux_vring_size() {
        // Linux vring_size(256, 4096): 16*256 + 2*(3+256) = 4614 -> 8192, + 6 + 8*256.
        assert_eq!(ring_layout(0x10, 256), Some((0x10000, 0x11000, 0x12000)));
        assert_eq!(ring_layout(1, 128), Some((0x1000, 0x1800, 0x2000)));
        // The largest PFN still fits 64 bits.
        assert!(ring_layout(u32::MAX, 32768).is_some());
    }
}
