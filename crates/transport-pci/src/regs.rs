//! Every register offset and constant of the PCI function, in one place,
//! plus the helper that splits a byte access over a table of fields.

/// PCI configuration space (PCI Local Bus 3.0, 6.1).
pub mod pci {
    pub const CONFIG_SPACE_SIZE: usize = 256;
    pub const VENDOR_ID: usize = 0x00;
    pub const DEVICE_ID: usize = 0x02;
    pub const COMMAND: usize = 0x04;
    pub const STATUS: usize = 0x06;
    pub const REVISION_ID: usize = 0x08;
    pub const CLASS_PROG: usize = 0x09;
    pub const CLASS_DEVICE: usize = 0x0a;
    pub const HEADER_TYPE: usize = 0x0e;
    pub const BAR0: usize = 0x10;
    pub const BAR_COUNT: usize = 6;
    pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
    pub const SUBSYSTEM_ID: usize = 0x2e;
    pub const ROM_ADDRESS: usize = 0x30;
    pub const CAPABILITY_LIST: usize = 0x34;
    pub const INTERRUPT_LINE: usize = 0x3c;
    pub const INTERRUPT_PIN: usize = 0x3d;

    pub const COMMAND_IO: u16 = 1 << 0;
    pub const COMMAND_MEMORY: u16 = 1 << 1;
    pub const COMMAND_MASTER: u16 = 1 << 2;
    pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
    /// Command bits the driver may change; the rest read as 0.
    pub const COMMAND_WRITABLE: u16 =
        COMMAND_IO | COMMAND_MEMORY | COMMAND_MASTER | COMMAND_INTX_DISABLE;
    /// Status bit 3: the function's INTx is asserted (whatever COMMAND says).
    pub const STATUS_INTERRUPT: u16 = 1 << 3;
    pub const STATUS_CAP_LIST: u16 = 1 << 4;

    /// BAR type bits.
    pub const BAR_IO: u32 = 0x1;
    pub const BAR_MEM_64: u32 = 0x4;

    pub const CAP_ID_MSIX: u8 = 0x11;
    pub const CAP_ID_VENDOR: u8 = 0x09;

    /// INTA#.
    pub const INTERRUPT_PIN_A: u8 = 1;

    /// virtio: vendor 0x1af4; transitional block device 0x1001 (virtio 1.2,
    /// 4.1.2.3); subsystem id = virtio device id 2 for legacy drivers
    /// (4.1.2.3: "Transitional devices MUST have the PCI Subsystem Device ID
    /// matching the Virtio Device ID"); revision 0 ("Transitional devices
    /// MUST have a PCI Revision ID of 0").
    pub const VIRTIO_VENDOR: u16 = 0x1af4;
    pub const VIRTIO_BLK_TRANSITIONAL_ID: u16 = 0x1001;
    pub const VIRTIO_SUBSYSTEM_BLOCK: u16 = 2;
    pub const REVISION_TRANSITIONAL: u8 = 0;
    /// Class 0x01 mass storage, subclass 0x00 (SCSI), as QEMU's virtio-blk-pci.
    pub const CLASS_STORAGE: u8 = 0x01;
    pub const SUBCLASS_STORAGE_SCSI: u8 = 0x00;
}

/// Where things are in our function.
pub mod layout {
    /// BAR0: the legacy virtio I/O register block.
    pub const LEGACY_BAR: usize = 0;
    pub const LEGACY_BAR_SIZE: u64 = 0x80;
    /// BAR1: the MSI-X table and PBA (32-bit memory). Its size and the PBA
    /// offset depend on the vector count: see [`crate::msix::MsixLayout`].
    pub const MSIX_BAR: usize = 1;
    pub const MSIX_TABLE_OFFSET: u64 = 0;
    /// Smallest PBA offset / BAR size (what up to 128 vectors use).
    pub const MSIX_PBA_OFFSET: u64 = 0x800;
    pub const MSIX_BAR_MIN_SIZE: u64 = 0x1000;
    /// BAR4: the modern virtio structures (64-bit memory, BAR4+BAR5).
    pub const MODERN_BAR: usize = 4;
    pub const MODERN_BAR_SIZE: u64 = 0x4000;
    pub const COMMON_OFFSET: u64 = 0x0000;
    pub const COMMON_SIZE: u64 = 0x1000;
    pub const ISR_OFFSET: u64 = 0x1000;
    pub const ISR_SIZE: u64 = 0x1000;
    pub const DEVICE_OFFSET: u64 = 0x2000;
    pub const DEVICE_SIZE: u64 = 0x1000;
    pub const NOTIFY_OFFSET: u64 = 0x3000;
    pub const NOTIFY_SIZE: u64 = 0x1000;
    /// Bytes between two queues' notify addresses.
    pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
    /// Queues whose notify address fits the notify structure (QEMU's
    /// VIRTIO_QUEUE_MAX is the same 1024).
    pub const MAX_QUEUES: u16 = (NOTIFY_SIZE / NOTIFY_OFF_MULTIPLIER as u64) as u16;

    /// Capability offsets in config space.
    pub const CAP_MSIX: usize = 0x40;
    pub const CAP_COMMON: usize = 0x50;
    pub const CAP_NOTIFY: usize = 0x60;
    pub const CAP_ISR: usize = 0x74;
    pub const CAP_DEVICE: usize = 0x84;
    pub const CAP_PCI_CFG: usize = 0x94;
}

/// The legacy virtio-pci register block in BAR0 (virtio 1.2, 4.1.4.8).
pub mod legacy {
    pub const HOST_FEATURES: u64 = 0;
    pub const GUEST_FEATURES: u64 = 4;
    pub const QUEUE_PFN: u64 = 8;
    pub const QUEUE_NUM: u64 = 12;
    pub const QUEUE_SEL: u64 = 14;
    pub const QUEUE_NOTIFY: u64 = 16;
    pub const STATUS: u64 = 18;
    pub const ISR: u64 = 19;
    /// Only while MSI-X is enabled:
    pub const MSI_CONFIG_VECTOR: u64 = 20;
    pub const MSI_QUEUE_VECTOR: u64 = 22;
    /// Device config starts here without MSI-X...
    pub const CONFIG_NO_MSIX: u64 = 20;
    /// ... and here with MSI-X enabled.
    pub const CONFIG_MSIX: u64 = 24;
    /// Legacy rings: QUEUE_PFN counts 4 KiB pages; the used ring is aligned
    /// to 4096 (4.1.5.1.1.1 "Virtqueue Layout").
    pub const PFN_SHIFT: u32 = 12;
    pub const VRING_ALIGN: u64 = 4096;
}

/// `struct virtio_pci_common_cfg` (virtio 1.2, 4.1.4.3).
pub mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0;
    pub const DEVICE_FEATURE: u64 = 4;
    pub const DRIVER_FEATURE_SELECT: u64 = 8;
    pub const DRIVER_FEATURE: u64 = 12;
    pub const MSIX_CONFIG: u64 = 16;
    pub const NUM_QUEUES: u64 = 18;
    pub const DEVICE_STATUS: u64 = 20;
    pub const CONFIG_GENERATION: u64 = 21;
    pub const QUEUE_SELECT: u64 = 22;
    pub const QUEUE_SIZE: u64 = 24;
    pub const QUEUE_MSIX_VECTOR: u64 = 26;
    pub const QUEUE_ENABLE: u64 = 28;
    pub const QUEUE_NOTIFY_OFF: u64 = 30;
    pub const QUEUE_DESC_LO: u64 = 32;
    pub const QUEUE_DESC_HI: u64 = 36;
    pub const QUEUE_DRIVER_LO: u64 = 40;
    pub const QUEUE_DRIVER_HI: u64 = 44;
    pub const QUEUE_DEVICE_LO: u64 = 48;
    pub const QUEUE_DEVICE_HI: u64 = 52;
    pub const SIZE: u64 = 56;
}

/// virtio PCI capability types (virtio 1.2, 4.1.4).
pub mod cap {
    pub const COMMON_CFG: u8 = 1;
    pub const NOTIFY_CFG: u8 = 2;
    pub const ISR_CFG: u8 = 3;
    pub const DEVICE_CFG: u8 = 4;
    pub const PCI_CFG: u8 = 5;
    /// `struct virtio_pci_cap` is 16 bytes; the notify capability adds
    /// `notify_off_multiplier`, the PCI_CFG capability `pci_cfg_data`.
    pub const LEN: u8 = 16;
    pub const NOTIFY_LEN: u8 = 20;
    pub const PCI_CFG_LEN: u8 = 20;
    /// Field offsets inside a virtio capability.
    pub const BAR: usize = 4;
    pub const OFFSET: usize = 8;
    pub const LENGTH: usize = 12;
    pub const NOTIFY_OFF_MULTIPLIER: usize = 16;
    pub const PCI_CFG_DATA: usize = 16;
}

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

/// ISR status bits (virtio 1.2, 4.1.4.5).
pub mod isr {
    pub const QUEUE: u8 = 1;
    pub const CONFIG: u8 = 2;
}

/// MSI-X (PCI Local Bus 3.0, 6.8.2).
pub mod msix {
    /// virtio's "no vector" (VIRTIO_MSI_NO_VECTOR).
    pub const NO_VECTOR: u16 = 0xffff;
    /// The Table Size field is 11 bits: N-1 up to 2047.
    pub const MAX_VECTORS: usize = 2048;
    pub const ENTRY_SIZE: u64 = 16;
    /// Message Control bits.
    pub const CTRL_TABLE_SIZE: u16 = 0x07ff;
    pub const CTRL_FUNCTION_MASK: u16 = 1 << 14;
    pub const CTRL_ENABLE: u16 = 1 << 15;
    /// Vector Control bit 0.
    pub const VECTOR_CTRL_MASKED: u32 = 1;
    /// Offsets inside the capability.
    pub const CAP_CONTROL: usize = 2;
    pub const CAP_TABLE: usize = 4;
    pub const CAP_PBA: usize = 8;
    pub const CAP_LEN: usize = 12;
}

/// vfio region and irq indexes and flags (linux/vfio.h).
pub mod vfio {
    pub const REGION_BAR0: u32 = 0;
    pub const REGION_BAR5: u32 = 5;
    pub const REGION_ROM: u32 = 6;
    pub const REGION_CONFIG: u32 = 7;
    pub const REGION_VGA: u32 = 8;
    pub const NUM_REGIONS: u32 = 9;
    pub const IRQ_INTX: u32 = 0;
    pub const IRQ_MSI: u32 = 1;
    pub const IRQ_MSIX: u32 = 2;
    pub const IRQ_ERR: u32 = 3;
    pub const IRQ_REQ: u32 = 4;
    pub const REGION_FLAG_READ: u32 = 1;
    pub const REGION_FLAG_WRITE: u32 = 2;
    pub const IRQ_INFO_EVENTFD: u32 = 1;
    pub const IRQ_INFO_MASKABLE: u32 = 2;
    pub const IRQ_INFO_AUTOMASKED: u32 = 4;
    pub const IRQ_INFO_NORESIZE: u32 = 8;
    pub const IRQ_SET_DATA_NONE: u32 = 1;
    pub const IRQ_SET_DATA_BOOL: u32 = 2;
    pub const IRQ_SET_DATA_EVENTFD: u32 = 4;
    pub const IRQ_SET_ACTION_MASK: u32 = 8;
    pub const IRQ_SET_ACTION_UNMASK: u32 = 16;
    pub const IRQ_SET_ACTION_TRIGGER: u32 = 32;
}

/// One register of a block: (offset, size in bytes).
pub type Field = (u64, u64);

/// The part of one field an access touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// The field's offset (its name in the block).
    pub field: u64,
    /// The field's size.
    pub size: u64,
    /// First byte of the field touched.
    pub field_byte: usize,
    /// Where that byte is in the access.
    pub data_byte: usize,
    /// Bytes touched.
    pub len: usize,
}

/// Split an access of `len` bytes at `offset` over `fields`: every field
/// it overlaps, and which bytes. Bytes outside every field are not listed
/// (reads of them return 0, writes are dropped).
pub fn pieces(fields: &[Field], offset: u64, len: usize) -> impl Iterator<Item = Piece> + '_ {
    let end = offset.saturating_add(len as u64);
    fields.iter().filter_map(move |&(f, size)| {
        let fend = f + size;
        if fend <= offset || f >= end {
            return None;
        }
        let start = f.max(offset);
        let stop = fend.min(end);
        Some(Piece {
            field: f,
            size,
            field_byte: (start - f) as usize,
            data_byte: (start - offset) as usize,
            len: (stop - start) as usize,
        })
    })
}

/// Copy the touched bytes of a field's little-endian `value` into `data`.
pub fn read_piece(p: &Piece, value: u64, data: &mut [u8]) {
    data[p.data_byte..p.data_byte + p.len]
        .copy_from_slice(&value.to_le_bytes()[p.field_byte..p.field_byte + p.len]);
}

/// Merge the touched bytes of `data` into a field's current `value`.
pub fn merge_piece(p: &Piece, value: u64, data: &[u8]) -> u64 {
    let mut b = value.to_le_bytes();
    b[p.field_byte..p.field_byte + p.len].copy_from_slice(&data[p.data_byte..p.data_byte + p.len]);
    let mut v = [0u8; 8];
    v[..p.size as usize].copy_from_slice(&b[..p.size as usize]);
    u64::from_le_bytes(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &[Field] = &[(0, 4), (4, 2), (6, 1), (7, 1)];

    #[test]
    fn pieces_split_accesses_over_fields() {
        let p: Vec<_> = pieces(F, 3, 4).collect();
        assert_eq!(
            p,
            vec![
                Piece {
                    field: 0,
                    size: 4,
                    field_byte: 3,
                    data_byte: 0,
                    len: 1
                },
                Piece {
                    field: 4,
                    size: 2,
                    field_byte: 0,
                    data_byte: 1,
                    len: 2
                },
                Piece {
                    field: 6,
                    size: 1,
                    field_byte: 0,
                    data_byte: 3,
                    len: 1
                },
            ]
        );
        assert_eq!(pieces(F, 8, 4).count(), 0);
        assert_eq!(pieces(F, u64::MAX - 1, 4).count(), 0);
    }

    #[test]
    fn merge_keeps_untouched_bytes() {
        let p = pieces(F, 1, 1).next().unwrap();
        assert_eq!(merge_piece(&p, 0x1122_3344, &[0xaa]), 0x1122_aa44);
        let mut out = [0u8; 1];
        read_piece(&p, 0x1122_3344, &mut out);
        assert_eq!(out, [0x33]);
    }
}
