//! Device status: the legal transitions as a table (virtio 1.2, 2.1 and 3.1).
//!
//! Spec rules this module enforces, next to the code that enforces them:
//! * "The driver MUST follow this sequence to initialize a device: reset,
//!   ACKNOWLEDGE, DRIVER, read features, write the subset understood,
//!   FEATURES_OK, re-read status to ensure FEATURES_OK is still set, ...
//!   DRIVER_OK" (3.1.1) — the prerequisites column of [`TABLE`].
//! * Legacy drivers never set FEATURES_OK (3.1.2, "Legacy Interface: Device
//!   Initialization") — the legacy column.
//! * "The driver MUST NOT clear a device status bit." (2.1.1) — a write that
//!   clears one is refused; 0 is a reset and handled by the caller.
//! * "The device MUST NOT offer a feature which requires another feature
//!   which was not offered" and the device refuses FEATURES_OK when it
//!   cannot accept the driver's subset: "otherwise, the device does not
//!   support our subset of features" (3.1.1 step 6) — [`features_ok`].
//! * DEVICE_NEEDS_RESET is the device's bit (2.1.2): the driver's copy of it
//!   is ignored, the device's kept.

use crate::regs::status::*;

/// For each bit a driver may set: the bits that must already be set.
/// "FAILED ... the driver has given up on the device" may be set at any
/// time (2.1).
pub const TABLE: &[(u8, u8, u8)] = &[
    // (bit, prerequisites for a modern driver, prerequisites for a legacy driver)
    (ACKNOWLEDGE, 0, 0),
    (DRIVER, ACKNOWLEDGE, ACKNOWLEDGE),
    (FEATURES_OK, ACKNOWLEDGE | DRIVER, ACKNOWLEDGE | DRIVER),
    (
        DRIVER_OK,
        ACKNOWLEDGE | DRIVER | FEATURES_OK,
        ACKNOWLEDGE | DRIVER,
    ),
    (FAILED, 0, 0),
];

/// Why a status write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A set bit was cleared without a reset.
    ClearedBit,
    /// A bit was set before its prerequisites.
    OutOfOrder(u8),
    /// An unknown bit.
    UnknownBit(u8),
}

/// The status after the driver writes `new` over `cur`, or why not. A write
/// of 0 is a reset and is not handled here. `DEVICE_NEEDS_RESET` is the
/// device's bit: the driver's copy of it is ignored and the device's kept.
pub fn transition(cur: u8, new: u8, legacy: bool) -> Result<u8, Refused> {
    let new = new & !DEVICE_NEEDS_RESET;
    let cur_driver_bits = cur & !DEVICE_NEEDS_RESET;
    if cur_driver_bits & !new != 0 {
        return Err(Refused::ClearedBit);
    }
    let added = new & !cur_driver_bits;
    let mut have = cur_driver_bits;
    for &(bit, modern_pre, legacy_pre) in TABLE {
        if added & bit == 0 {
            continue;
        }
        let pre = if legacy { legacy_pre } else { modern_pre };
        if have & pre != pre {
            return Err(Refused::OutOfOrder(bit));
        }
        have |= bit;
    }
    let known = TABLE.iter().fold(0, |a, t| a | t.0);
    if added & !known != 0 {
        return Err(Refused::UnknownBit(added & !known));
    }
    Ok(have | (cur & DEVICE_NEEDS_RESET))
}

/// VIRTIO_F_VERSION_1: a modern driver MUST accept it ("A driver MUST
/// accept VIRTIO_F_VERSION_1 if it is offered", 6.1); the device MAY refuse
/// to work otherwise ("A device MAY fail to operate further if
/// VIRTIO_F_VERSION_1 is not accepted", 6.2) — and we do.
pub const VERSION_1: u64 = vblk_device::features::bit(vblk_device::features::VIRTIO_F_VERSION_1);

/// Whether the device accepts FEATURES_OK for `accepted` features out of
/// `offered`: nothing that was not offered, and VERSION_1 on the modern
/// interface.
pub fn features_ok(offered: u64, accepted: u64, legacy: bool) -> bool {
    accepted & !offered == 0 && (legacy || accepted & VERSION_1 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_modern_sequence() {
        let mut s = 0;
        for bit in [ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK] {
            s = transition(s, s | bit, false).unwrap();
        }
        assert_eq!(s, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    }

    #[test]
    fn legacy_skips_features_ok() {
        let s = transition(0, ACKNOWLEDGE | DRIVER, true).unwrap();
        assert_eq!(
            transition(s, s | DRIVER_OK, true),
            Ok(ACKNOWLEDGE | DRIVER | DRIVER_OK)
        );
        assert_eq!(
            transition(s, s | DRIVER_OK, false),
            Err(Refused::OutOfOrder(DRIVER_OK))
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            transition(0, DRIVER, false),
            Err(Refused::OutOfOrder(DRIVER))
        );
        assert_eq!(
            transition(0, DRIVER_OK, false),
            Err(Refused::OutOfOrder(DRIVER_OK))
        );
        assert_eq!(
            transition(ACKNOWLEDGE | DRIVER, ACKNOWLEDGE, false),
            Err(Refused::ClearedBit)
        );
        assert_eq!(transition(0, 0x10, false), Err(Refused::UnknownBit(0x10)));
        assert_eq!(
            transition(ACKNOWLEDGE, ACKNOWLEDGE | FAILED, false),
            Ok(ACKNOWLEDGE | FAILED)
        );
        // NEEDS_RESET is kept by the device, ignored from the driver.
        assert_eq!(
            transition(ACKNOWLEDGE | DEVICE_NEEDS_RESET, ACKNOWLEDGE, false),
            Ok(ACKNOWLEDGE | DEVICE_NEEDS_RESET)
        );
        assert_eq!(
            transition(0, ACKNOWLEDGE | DEVICE_NEEDS_RESET, false),
            Ok(ACKNOWLEDGE)
        );
    }

    #[test]
    fn features_ok_needs_a_subset_and_version_1() {
        let offered = VERSION_1 | 0x3000_0246;
        assert!(features_ok(offered, VERSION_1 | 0x246, false));
        assert!(!features_ok(offered, 0x246, false), "no VERSION_1");
        assert!(features_ok(offered, 0x246, true), "legacy has no VERSION_1");
        assert!(
            !features_ok(offered, VERSION_1 | 1 << 20, false),
            "not offered"
        );
    }

    #[test]
    fn exhaustive_never_clears_and_never_panics() {
        for cur in 0..=255u8 {
            for new in 0..=255u8 {
                for legacy in [false, true] {
                    if let Ok(s) = transition(cur, new, legacy) {
                        assert_eq!(s & cur & !DEVICE_NEEDS_RESET, cur & !DEVICE_NEEDS_RESET);
                    }
                }
            }
        }
    }
}
