//! The input format's vocabulary, shared by the harness that decodes it
//! and the builder that encodes it: the disk and queue sizes, the register
//! tables the `common` / `legacy` ops index, access widths, op codes.

use crate::regs::{common, legacy};

/// Disk behind the function.
pub const DISK: u64 = 64 * 1024;
/// Largest queue (legacy queues have exactly this size).
pub const QUEUE_SIZE: u16 = 8;

/// Modern common-config fields (offset, width), as the driver sees them.
pub const COMMON_FIELDS: &[(u64, usize)] = &[
    (common::DEVICE_FEATURE_SELECT, 4),
    (common::DEVICE_FEATURE, 4),
    (common::DRIVER_FEATURE_SELECT, 4),
    (common::DRIVER_FEATURE, 4),
    (common::MSIX_CONFIG, 2),
    (common::NUM_QUEUES, 2),
    (common::DEVICE_STATUS, 1),
    (common::CONFIG_GENERATION, 1),
    (common::QUEUE_SELECT, 2),
    (common::QUEUE_SIZE, 2),
    (common::QUEUE_MSIX_VECTOR, 2),
    (common::QUEUE_ENABLE, 2),
    (common::QUEUE_NOTIFY_OFF, 2),
    (common::QUEUE_DESC_LO, 4),
    (common::QUEUE_DESC_HI, 4),
    (common::QUEUE_DRIVER_LO, 4),
    (common::QUEUE_DRIVER_HI, 4),
    (common::QUEUE_DEVICE_LO, 4),
    (common::QUEUE_DEVICE_HI, 4),
];

/// Legacy BAR0 registers (offset, width).
pub const LEGACY_FIELDS: &[(u64, usize)] = &[
    (legacy::HOST_FEATURES, 4),
    (legacy::GUEST_FEATURES, 4),
    (legacy::QUEUE_PFN, 4),
    (legacy::QUEUE_NUM, 2),
    (legacy::QUEUE_SEL, 2),
    (legacy::QUEUE_NOTIFY, 2),
    (legacy::STATUS, 1),
    (legacy::ISR, 1),
    (legacy::MSI_CONFIG_VECTOR, 2),
    (legacy::MSI_QUEUE_VECTOR, 2),
];

pub(super) fn width(w: u8) -> usize {
    if w & 4 != 0 {
        usize::from(w >> 3) % 9
    } else {
        [1, 2, 4, 8][usize::from(w & 3)]
    }
}

/// Op codes (k % 12).
pub mod op {
    pub const CFG_READ: u8 = 0;
    pub const CFG_WRITE: u8 = 1;
    pub const BAR_READ: u8 = 2;
    pub const BAR_WRITE: u8 = 3;
    pub const COMMON: u8 = 4;
    pub const LEGACY: u8 = 5;
    pub const NOTIFY: u8 = 6;
    pub const SETTLE: u8 = 7;
    pub const RESET: u8 = 8;
    pub const GUEST_WRITE: u8 = 9;
    pub const MEMORY: u8 = 10;
    pub const MSIX_ENTRY: u8 = 11;
}
