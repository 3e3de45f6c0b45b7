//! Every register offset and constant of the PCI function, in one place.

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
    /// Command bits the driver may change.
    pub const COMMAND_WRITABLE: u16 =
        COMMAND_IO | COMMAND_MEMORY | COMMAND_MASTER | COMMAND_INTX_DISABLE;
    pub const STATUS_INTERRUPT: u16 = 1 << 3;
    pub const STATUS_CAP_LIST: u16 = 1 << 4;

    pub const BAR_IO: u32 = 0x1;
    pub const BAR_MEM_64: u32 = 0x4;

    pub const CAP_ID_MSIX: u8 = 0x11;
    pub const CAP_ID_VENDOR: u8 = 0x09;

    /// virtio: vendor 0x1af4; transitional block device 0x1001 (virtio 1.2, 4.1.2.3).
    pub const VIRTIO_VENDOR: u16 = 0x1af4;
    pub const VIRTIO_BLK_TRANSITIONAL_ID: u16 = 0x1001;
    pub const VIRTIO_SUBSYSTEM_BLOCK: u16 = 2;
    pub const CLASS_STORAGE: u8 = 0x01;
    pub const SUBCLASS_STORAGE_SCSI: u8 = 0x00;
}

/// Where things are in our function.
pub mod layout {
    /// BAR0: the legacy virtio I/O register block.
    pub const LEGACY_BAR: usize = 0;
    pub const LEGACY_BAR_SIZE: u64 = 0x80;
    /// BAR1: the MSI-X table and PBA (32-bit memory).
    pub const MSIX_BAR: usize = 1;
    pub const MSIX_BAR_SIZE: u64 = 0x1000;
    pub const MSIX_TABLE_OFFSET: u64 = 0;
    pub const MSIX_PBA_OFFSET: u64 = 0x800;
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

    /// Capability offsets in config space.
    pub const CAP_MSIX: usize = 0x40;
    pub const CAP_COMMON: usize = 0x50;
    pub const CAP_NOTIFY: usize = 0x60;
    pub const CAP_ISR: usize = 0x74;
    pub const CAP_DEVICE: usize = 0x84;
    pub const CAP_PCI_CFG: usize = 0x94;
}

/// The legacy virtio-pci register block (virtio 1.2, 4.1.4.8).
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
    /// Legacy rings: 4 KiB pages, used ring aligned to 4096.
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

/// ISR bits.
pub mod isr {
    pub const QUEUE: u8 = 1;
    pub const CONFIG: u8 = 2;
}

/// MSI-X (PCI 3.0, 6.8.2).
pub mod msix {
    pub const NO_VECTOR: u16 = 0xffff;
    pub const ENTRY_SIZE: u64 = 16;
    pub const CTRL_ENABLE: u16 = 1 << 15;
    pub const CTRL_FUNCTION_MASK: u16 = 1 << 14;
    pub const VECTOR_CTRL_MASKED: u32 = 1;
}

/// vfio region and irq indexes (linux/vfio.h).
pub mod vfio {
    pub const REGION_BAR0: u32 = 0;
    pub const REGION_CONFIG: u32 = 7;
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
