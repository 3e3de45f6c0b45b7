//! PCI configuration space of the virtio-blk function: header, BARs, and the
//! capability list (MSI-X, then the virtio vendor capabilities).

use crate::regs::{cap, layout::*, msix, pci::*};

/// Per-BAR: size (0 = absent) and type bits.
#[derive(Clone, Copy, Default)]
pub struct BarDef {
    pub size: u64,
    pub io: bool,
    pub mem64: bool,
}

pub struct ConfigSpace {
    pub bytes: [u8; CONFIG_SPACE_SIZE],
    /// Bit-wise writable mask for bytes the generic path handles.
    writable: [u8; CONFIG_SPACE_SIZE],
    pub bars: [BarDef; 6],
}

fn put16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

impl ConfigSpace {
    pub fn new(msix_vectors: u16) -> Self {
        let mut b = [0u8; CONFIG_SPACE_SIZE];
        let mut w = [0u8; CONFIG_SPACE_SIZE];
        put16(&mut b, VENDOR_ID, VIRTIO_VENDOR);
        put16(&mut b, DEVICE_ID, VIRTIO_BLK_TRANSITIONAL_ID);
        put16(&mut b, STATUS, STATUS_CAP_LIST);
        b[REVISION_ID] = 0;
        b[CLASS_PROG] = 0;
        b[CLASS_DEVICE] = SUBCLASS_STORAGE_SCSI;
        b[CLASS_DEVICE + 1] = CLASS_STORAGE;
        b[HEADER_TYPE] = 0;
        put16(&mut b, SUBSYSTEM_VENDOR_ID, VIRTIO_VENDOR);
        put16(&mut b, SUBSYSTEM_ID, VIRTIO_SUBSYSTEM_BLOCK);
        b[CAPABILITY_LIST] = CAP_MSIX as u8;
        b[INTERRUPT_PIN] = 1; // INTA#
        w[INTERRUPT_LINE] = 0xff;

        // MSI-X: table size N-1, table and PBA in BAR1.
        b[CAP_MSIX] = CAP_ID_MSIX;
        b[CAP_MSIX + 1] = CAP_COMMON as u8;
        put16(&mut b, CAP_MSIX + 2, msix_vectors - 1);
        put32(
            &mut b,
            CAP_MSIX + 4,
            MSIX_TABLE_OFFSET as u32 | MSIX_BAR as u32,
        );
        put32(
            &mut b,
            CAP_MSIX + 8,
            MSIX_PBA_OFFSET as u32 | MSIX_BAR as u32,
        );

        // virtio vendor capabilities: cap_vndr, cap_next, cap_len, cfg_type,
        // bar, id, padding[2], offset, length [, extra].
        let mut vcap = |at: usize, next: usize, len: u8, ty: u8, off: u64, size: u64| {
            b[at] = CAP_ID_VENDOR;
            b[at + 1] = next as u8;
            b[at + 2] = len;
            b[at + 3] = ty;
            b[at + 4] = MODERN_BAR as u8;
            put32(&mut b, at + 8, off as u32);
            put32(&mut b, at + 12, size as u32);
        };
        vcap(
            CAP_COMMON,
            CAP_NOTIFY,
            16,
            cap::COMMON_CFG,
            COMMON_OFFSET,
            COMMON_SIZE,
        );
        vcap(
            CAP_NOTIFY,
            CAP_ISR,
            20,
            cap::NOTIFY_CFG,
            NOTIFY_OFFSET,
            NOTIFY_SIZE,
        );
        vcap(CAP_ISR, CAP_DEVICE, 16, cap::ISR_CFG, ISR_OFFSET, ISR_SIZE);
        vcap(
            CAP_DEVICE,
            CAP_PCI_CFG,
            16,
            cap::DEVICE_CFG,
            DEVICE_OFFSET,
            DEVICE_SIZE,
        );
        vcap(CAP_PCI_CFG, 0, 20, cap::PCI_CFG, 0, 0);
        b[CAP_PCI_CFG + 4] = 0;
        put32(&mut b, CAP_NOTIFY + 16, NOTIFY_OFF_MULTIPLIER);
        // The PCI_CFG window's bar, offset, length and data are writable.
        w[CAP_PCI_CFG + 4] = 0xff;
        w[CAP_PCI_CFG + 8..CAP_PCI_CFG + 20].fill(0xff);

        let mut bars = [BarDef::default(); 6];
        bars[LEGACY_BAR] = BarDef {
            size: LEGACY_BAR_SIZE,
            io: true,
            mem64: false,
        };
        bars[MSIX_BAR] = BarDef {
            size: MSIX_BAR_SIZE,
            io: false,
            mem64: false,
        };
        bars[MODERN_BAR] = BarDef {
            size: MODERN_BAR_SIZE,
            io: false,
            mem64: true,
        };
        let mut cs = ConfigSpace {
            bytes: b,
            writable: w,
            bars,
        };
        for i in 0..6 {
            let v = cs.bar_type_bits(i);
            put32(&mut cs.bytes, BAR0 + 4 * i, v);
        }
        cs
    }

    fn bar_type_bits(&self, i: usize) -> u32 {
        let d = self.bars[i];
        if d.size == 0 {
            0
        } else if d.io {
            BAR_IO
        } else if d.mem64 {
            BAR_MEM_64
        } else {
            0
        }
    }

    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i)
                .and_then(|o| self.bytes.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    pub fn u16_at(&self, o: usize) -> u16 {
        u16::from_le_bytes([self.bytes[o], self.bytes[o + 1]])
    }

    pub fn u32_at(&self, o: usize) -> u32 {
        u32::from_le_bytes([
            self.bytes[o],
            self.bytes[o + 1],
            self.bytes[o + 2],
            self.bytes[o + 3],
        ])
    }

    /// Write `data` at `offset`, honouring read-only fields. Command, BARs
    /// and the MSI-X control word are special-cased; the caller reacts to
    /// their new values.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let Some(o) = offset.checked_add(i) else {
                return;
            };
            if o >= CONFIG_SPACE_SIZE {
                return;
            }
            match o {
                // Command: only the bits we implement.
                COMMAND | 0x05 => {
                    let mask = COMMAND_WRITABLE.to_le_bytes()[o - COMMAND];
                    self.bytes[o] = (self.bytes[o] & !mask) | (v & mask);
                }
                // BARs: keep type bits, drop the bits below the size.
                _ if (BAR0..BAR0 + 24).contains(&o) => self.write_bar_byte(o, v),
                // MSI-X Message Control: enable and function mask (byte 3 of the cap).
                _ if o == CAP_MSIX + 3 => {
                    let mask = ((msix::CTRL_ENABLE | msix::CTRL_FUNCTION_MASK) >> 8) as u8;
                    self.bytes[o] = (self.bytes[o] & !mask) | (v & mask);
                }
                _ => {
                    let m = self.writable[o];
                    self.bytes[o] = (self.bytes[o] & !m) | (v & m);
                }
            }
        }
    }

    fn write_bar_byte(&mut self, o: usize, v: u8) {
        let rel = o - BAR0;
        let (bar, byte) = (rel / 4, rel % 4);
        // The upper half of a 64-bit BAR belongs to the BAR below it.
        let (owner, upper) = if bar > 0 && self.bars[bar - 1].mem64 {
            (bar - 1, true)
        } else {
            (bar, false)
        };
        let d = self.bars[owner];
        if d.size == 0 {
            self.bytes[o] = 0;
            return;
        }
        let size_mask: u64 = !(d.size - 1);
        let mask_bytes = size_mask.to_le_bytes();
        let m = if upper {
            mask_bytes[4 + byte]
        } else {
            mask_bytes[byte]
        };
        let type_bits = if upper {
            0
        } else {
            self.bar_type_bits(owner).to_le_bytes()[byte]
        };
        let low_type_mask: u8 = if byte == 0 && !upper {
            if d.io {
                0x03
            } else {
                0x0f
            }
        } else {
            0
        };
        self.bytes[o] = (v & m & !low_type_mask) | type_bits;
    }

    /// The address a BAR is programmed to (for diagnostics).
    pub fn bar_address(&self, bar: usize) -> u64 {
        let lo = u64::from(self.u32_at(BAR0 + 4 * bar));
        let d = self.bars[bar];
        if d.io {
            lo & !0x3
        } else if d.mem64 {
            (lo & !0xf) | (u64::from(self.u32_at(BAR0 + 4 * (bar + 1))) << 32)
        } else {
            lo & !0xf
        }
    }
}
