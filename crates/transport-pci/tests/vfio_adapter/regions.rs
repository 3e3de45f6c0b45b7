//! Region reads and writes: accesses outside a region refused, and
//! zero-length accesses touching nothing.

use vblk_transport_pci::regs::{layout::*, vfio::*};
use vblk_vfio_user::Backend as _;

use crate::backend;
use crate::common::*;

#[test]
fn region_accesses_outside_a_region_are_refused() {
    let (mut b, dev, _disk) = backend(1);
    let mut buf = [0u8; 4];
    assert!(b.region_read(0, LEGACY_BAR_SIZE - 2, &mut buf).is_err());
    assert!(b.region_read(REGION_ROM, 0, &mut buf).is_err());
    assert!(b.region_read(REGION_VGA, 0, &mut buf).is_err());
    assert!(
        b.region_read(2, 0, &mut buf).is_err(),
        "BAR2 does not exist"
    );
    assert!(b
        .region_write(MODERN as u32, MODERN_BAR_SIZE, &buf)
        .is_err());
    assert!(b
        .region_read(REGION_CONFIG, u64::MAX - 1, &mut buf)
        .is_err());
    let mut cfg = [0u8; 256];
    b.region_read(REGION_CONFIG, 0, &mut cfg).unwrap();
    assert_eq!(&cfg[0..4], &[0xf4, 0x1a, 0x01, 0x10]);
    let mut big = vec![0u8; 257];
    assert!(b.region_read(REGION_CONFIG, 0, &mut big).is_err());
    assert_eq!(counter(&dev, "connections"), 1, "counted once");
}

#[test]
fn zero_length_accesses_touch_nothing() {
    let (mut b, _dev, _disk) = backend(1);
    b.region_read(MODERN as u32, ISR_OFFSET, &mut []).unwrap();
    b.region_write(MODERN as u32, NOTIFY_OFFSET, &[]).unwrap();
    b.region_read(REGION_CONFIG, 0, &mut []).unwrap();
}
