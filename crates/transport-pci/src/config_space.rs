//! PCI configuration space of the virtio-blk function: the type 0 header,
//! the BARs (with sizing), and the capability list — MSI-X first, then the
//! virtio vendor capabilities a modern driver looks for (virtio 1.2, 4.1.4).
//!
//! Only the bits a driver may change are writable; everything else keeps
//! its value ("read-only fields stay read-only"). Live bits (INTx status,
//! MSI-X control, the PCI_CFG data window) are filled in by the function.

use crate::msix::MsixLayout;
use crate::regs::{cap, layout::*, msix, pci::*};

/// One BAR: size (0 = absent) and type.
#[derive(Clone, Copy, Default, Debug)]
pub struct BarDef {
    pub size: u64,
    pub io: bool,
    pub mem64: bool,
}

pub struct ConfigSpace {
    bytes: [u8; CONFIG_SPACE_SIZE],
    /// Bit-wise writable mask for bytes the generic path handles.
    writable: [u8; CONFIG_SPACE_SIZE],
    bars: [BarDef; BAR_COUNT],
}

fn put16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

/// The virtio capabilities: (config offset, next, length, type, offset in
/// BAR4, length in BAR4).
const VIRTIO_CAPS: &[(usize, usize, u8, u8, u64, u64)] = &[
    (
        CAP_COMMON,
        CAP_NOTIFY,
        cap::LEN,
        cap::COMMON_CFG,
        COMMON_OFFSET,
        COMMON_SIZE,
    ),
    (
        CAP_NOTIFY,
        CAP_ISR,
        cap::NOTIFY_LEN,
        cap::NOTIFY_CFG,
        NOTIFY_OFFSET,
        NOTIFY_SIZE,
    ),
    (
        CAP_ISR,
        CAP_DEVICE,
        cap::LEN,
        cap::ISR_CFG,
        ISR_OFFSET,
        ISR_SIZE,
    ),
    (
        CAP_DEVICE,
        CAP_PCI_CFG,
        cap::LEN,
        cap::DEVICE_CFG,
        DEVICE_OFFSET,
        DEVICE_SIZE,
    ),
    (CAP_PCI_CFG, 0, cap::PCI_CFG_LEN, cap::PCI_CFG, 0, 0),
];

impl ConfigSpace {
    pub fn new(msix_layout: &MsixLayout) -> Self {
        let mut b = [0u8; CONFIG_SPACE_SIZE];
        let mut w = [0u8; CONFIG_SPACE_SIZE];
        put16(&mut b, VENDOR_ID, VIRTIO_VENDOR);
        put16(&mut b, DEVICE_ID, VIRTIO_BLK_TRANSITIONAL_ID);
        put16(&mut b, STATUS, STATUS_CAP_LIST);
        b[REVISION_ID] = REVISION_TRANSITIONAL;
        b[CLASS_PROG] = 0;
        b[CLASS_DEVICE] = SUBCLASS_STORAGE_SCSI;
        b[CLASS_DEVICE + 1] = CLASS_STORAGE;
        b[HEADER_TYPE] = 0; // type 0, single function
        put16(&mut b, SUBSYSTEM_VENDOR_ID, VIRTIO_VENDOR);
        put16(&mut b, SUBSYSTEM_ID, VIRTIO_SUBSYSTEM_BLOCK);
        b[CAPABILITY_LIST] = CAP_MSIX as u8;
        b[INTERRUPT_PIN] = INTERRUPT_PIN_A;
        // Interrupt Line is a scratch register for the firmware.
        w[INTERRUPT_LINE] = 0xff;

        // MSI-X: Table Size is N-1; table and PBA offsets with the BAR
        // indicator in the low 3 bits (6.8.2).
        b[CAP_MSIX] = CAP_ID_MSIX;
        b[CAP_MSIX + 1] = CAP_COMMON as u8;
        put16(
            &mut b,
            CAP_MSIX + msix::CAP_CONTROL,
            (msix_layout.vectors as u16 - 1) & msix::CTRL_TABLE_SIZE,
        );
        put32(
            &mut b,
            CAP_MSIX + msix::CAP_TABLE,
            msix_layout.table_offset as u32 | MSIX_BAR as u32,
        );
        put32(
            &mut b,
            CAP_MSIX + msix::CAP_PBA,
            msix_layout.pba_offset as u32 | MSIX_BAR as u32,
        );

        // virtio capabilities: cap_vndr, cap_next, cap_len, cfg_type, bar,
        // id, padding[2], offset, length [, notify_off_multiplier | pci_cfg_data].
        for &(at, next, len, ty, off, size) in VIRTIO_CAPS {
            b[at] = CAP_ID_VENDOR;
            b[at + 1] = next as u8;
            b[at + 2] = len;
            b[at + 3] = ty;
            b[at + cap::BAR] = MODERN_BAR as u8;
            put32(&mut b, at + cap::OFFSET, off as u32);
            put32(&mut b, at + cap::LENGTH, size as u32);
        }
        put32(
            &mut b,
            CAP_NOTIFY + cap::NOTIFY_OFF_MULTIPLIER,
            NOTIFY_OFF_MULTIPLIER,
        );
        // The PCI_CFG window: the driver writes bar, offset and length, then
        // accesses pci_cfg_data (4.1.4.9). It starts at BAR 0, offset 0.
        b[CAP_PCI_CFG + cap::BAR] = 0;
        w[CAP_PCI_CFG + cap::BAR] = 0xff;
        w[CAP_PCI_CFG + cap::OFFSET..CAP_PCI_CFG + cap::PCI_CFG_DATA].fill(0xff);

        let mut bars = [BarDef::default(); BAR_COUNT];
        bars[LEGACY_BAR] = BarDef {
            size: LEGACY_BAR_SIZE,
            io: true,
            mem64: false,
        };
        bars[MSIX_BAR] = BarDef {
            size: msix_layout.bar_size,
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
        for i in 0..BAR_COUNT {
            let v = cs.bar_type_bits(i);
            put32(&mut cs.bytes, BAR0 + 4 * i, v);
        }
        cs
    }

    pub fn bar(&self, i: usize) -> BarDef {
        self.bars.get(i).copied().unwrap_or_default()
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

    /// Read the stored bytes; past the end reads 0.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i)
                .and_then(|o| self.bytes.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    pub fn u8_at(&self, o: usize) -> u8 {
        self.bytes[o]
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

    /// Write `data` at `offset`, honouring read-only fields. COMMAND, the
    /// BARs and the MSI-X Message Control have their own rules; the caller
    /// reacts to their new values.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let Some(o) = offset.checked_add(i).filter(|&o| o < CONFIG_SPACE_SIZE) else {
                return;
            };
            match o {
                // COMMAND: only the bits we implement.
                _ if (COMMAND..COMMAND + 2).contains(&o) => {
                    let mask = COMMAND_WRITABLE.to_le_bytes()[o - COMMAND];
                    self.bytes[o] = (self.bytes[o] & !mask) | (v & mask);
                }
                _ if (BAR0..BAR0 + 4 * BAR_COUNT).contains(&o) => self.write_bar_byte(o, v),
                // MSI-X Message Control, high byte: enable and function mask.
                _ if o == CAP_MSIX + msix::CAP_CONTROL + 1 => {
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

    /// A BAR byte: the address bits above the size are writable, the type
    /// bits are fixed, so writing all-ones reads back the size mask.
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
        let m = size_mask.to_le_bytes()[if upper { 4 + byte } else { byte }];
        let (type_bits, type_mask) = if upper || byte != 0 {
            (0, 0)
        } else {
            let low_mask = if d.io { 0x03 } else { 0x0f };
            (self.bar_type_bits(owner) as u8, low_mask)
        };
        self.bytes[o] = (v & m & !type_mask) | type_bits;
    }
}
