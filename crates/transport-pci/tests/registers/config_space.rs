//! The PCI side of the function: the header that identifies a
//! transitional virtio-blk, BAR sizing and the command register, and the
//! PCI_CFG capability window into the BARs.

use vblk_transport_pci::regs::{common, layout::*, pci, status::*};

use crate::{Rig, DISK};

#[test]
fn pci_header_identifies_a_transitional_virtio_blk() {
    let mut r = Rig::new();
    assert_eq!(r.cfg_rd(0, 2), 0x1af4);
    assert_eq!(r.cfg_rd(2, 2), 0x1001);
    assert_eq!(r.cfg_rd(0x2c, 2), 0x1af4);
    assert_eq!(r.cfg_rd(0x2e, 2), 2);
    assert_eq!(r.cfg_rd(0x0b, 1), 0x01, "class mass storage");
    assert_eq!(r.cfg_rd(0x3d, 1), 1, "INTA");
    assert_ne!(r.cfg_rd(6, 2) & u64::from(pci::STATUS_CAP_LIST), 0);
    // Read-only fields stay read-only.
    r.cfg_wr(0, 4, 0xdead_beef);
    assert_eq!(r.cfg_rd(0, 4), 0x1001_1af4);
    r.cfg_wr(0x2c, 4, 0);
    assert_eq!(r.cfg_rd(0x2e, 2), 2);
}

#[test]
fn bar_sizing_and_command_bits() {
    let mut r = Rig::new();
    // BAR0: I/O, 0x80 bytes.
    r.cfg_wr(0x10, 4, 0xffff_ffff);
    assert_eq!(r.cfg_rd(0x10, 4), 0xffff_ff81);
    // BAR1: 32-bit memory, 4 KiB.
    r.cfg_wr(0x14, 4, 0xffff_ffff);
    assert_eq!(r.cfg_rd(0x14, 4), 0xffff_f000);
    // BAR4/5: 64-bit memory, 16 KiB.
    r.cfg_wr(0x20, 4, 0xffff_ffff);
    r.cfg_wr(0x24, 4, 0xffff_ffff);
    assert_eq!(r.cfg_rd(0x20, 4), 0xffff_c004);
    assert_eq!(r.cfg_rd(0x24, 4), 0xffff_ffff);
    // Absent BARs read 0.
    r.cfg_wr(0x18, 4, 0xffff_ffff);
    assert_eq!(r.cfg_rd(0x18, 4), 0);
    // Programming an address.
    r.cfg_wr(0x20, 4, 0xfe00_0000);
    r.cfg_wr(0x24, 4, 0);
    assert_eq!(r.cfg_rd(0x20, 4), 0xfe00_0004);
    // Command: I/O, memory, bus master, INTx disable writable; others not.
    r.cfg_wr(4, 2, 0xffff);
    assert_eq!(r.cfg_rd(4, 2), 0x0407);
}

#[test]
fn pci_cfg_capability_window_reaches_the_bars() {
    let mut r = Rig::new();
    let cap = CAP_PCI_CFG as u64;
    r.cfg_wr(cap + 4, 1, MODERN_BAR as u64);
    r.cfg_wr(cap + 8, 4, DEVICE_OFFSET);
    r.cfg_wr(cap + 12, 4, 4);
    assert_eq!(
        r.cfg_rd(cap + 16, 4),
        DISK / 512,
        "capacity through the window"
    );
    // Writes go through too: device status.
    r.cfg_wr(cap + 8, 4, COMMON_OFFSET + common::DEVICE_STATUS);
    r.cfg_wr(cap + 12, 4, 1);
    r.cfg_wr(cap + 16, 1, u64::from(ACKNOWLEDGE));
    assert_eq!(r.f.status(), ACKNOWLEDGE);
    // A misaligned or odd-sized window does nothing.
    r.cfg_wr(cap + 12, 4, 3);
    assert_eq!(r.cfg_rd(cap + 16, 4), 0);
}
