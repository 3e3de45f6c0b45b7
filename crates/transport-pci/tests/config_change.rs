//! The device configuration changing under a running driver: an online
//! resize is seen in the config space with a new config_generation and a
//! configuration change notification (the config MSI-X vector, or ISR bit
//! 1 with INTx, in modern and legacy mode); the driver's `writeback` byte
//! (CONFIG_WCE) is writable through BAR4 and the legacy registers, and
//! nothing else in the device config is.

use std::sync::Arc;

use vblk_transport_pci::irq::{CountingLine, Line};
use vblk_transport_pci::regs::{common as cc, layout::*, legacy};
use vblk_transport_pci::PciFunction;
use vm_memory::{GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};

mod common;
use common::*;

const DISK: u64 = 1 << 20;
const ISR_CONFIG: u64 = 2;

struct Rig {
    f: PciFunction,
    mem: GuestMemoryMmap,
    dev: Arc<vblk_device::BlkDevice>,
    msix: Vec<Arc<CountingLine>>,
    intx: Arc<CountingLine>,
}

fn rig() -> Rig {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
    let (dev, _backend) = device(DISK, 1);
    let f = PciFunction::new(dev.clone(), GuestMemoryAtomic::new(mem.clone())).unwrap();
    let msix: Vec<Arc<CountingLine>> = (0..2).map(|_| Arc::new(CountingLine::default())).collect();
    for (i, l) in msix.iter().enumerate() {
        f.irq().set_msix_line(i, Some(l.clone() as Arc<dyn Line>));
    }
    let intx = Arc::new(CountingLine::default());
    f.irq().set_intx_line(Some(intx.clone() as Arc<dyn Line>));
    Rig {
        f,
        mem,
        dev,
        msix,
        intx,
    }
}

fn ring() -> Ring {
    Ring::new(0x1_0000, 0x2_0000, 0x3_0000, 64, 0x10_0000)
}

fn generation(r: &mut Rig) -> u64 {
    r.f.bar_rd(MODERN_BAR, COMMON_OFFSET + cc::CONFIG_GENERATION, 1)
}

#[test]
fn modern_msix_resize_notifies_on_the_config_vector_with_a_new_generation() {
    let mut r = rig();
    // Before DRIVER_OK nobody is told.
    r.dev.resize(DISK / 2, false).unwrap();
    assert_eq!(r.msix[0].count() + r.intx.count(), 0);
    modern_probe(&mut r.f, &ring(), true);
    let gen = generation(&mut r);
    assert_eq!(r.f.bar_rd(MODERN_BAR, DEVICE_OFFSET, 8), DISK / 2 / 512);
    r.dev.resize(2 * DISK, true).unwrap();
    assert_eq!(r.msix[0].count(), 1, "config vector 0");
    assert_eq!(r.msix[1].count() + r.intx.count(), 0);
    assert_eq!(r.f.bar_rd(MODERN_BAR, DEVICE_OFFSET, 8), 2 * DISK / 512);
    assert_ne!(generation(&mut r), gen, "config_generation changed");
    assert_eq!(
        r.f.bar_rd(MODERN_BAR, ISR_OFFSET, 1) & ISR_CONFIG,
        ISR_CONFIG,
        "ISR bit 1"
    );
    assert_eq!(counter(&r.dev, "config_interrupts"), 1);
    // After a reset the driver is gone: no notification.
    r.f.bar_wr(MODERN_BAR, COMMON_OFFSET + cc::DEVICE_STATUS, 1, 0);
    r.dev.resize(DISK, false).unwrap();
    assert_eq!(r.msix[0].count(), 1);
}

#[test]
fn intx_resize_sets_isr_bit_1_and_asserts_the_line() {
    for legacy_mode in [false, true] {
        let mut r = rig();
        if legacy_mode {
            legacy_probe(&mut r.f, 0x10, false, 0x20_0000);
        } else {
            modern_probe(&mut r.f, &ring(), false);
        }
        r.dev.resize(DISK / 4, false).unwrap();
        assert_eq!(r.intx.count(), 1, "legacy={legacy_mode}");
        assert_eq!(r.msix[0].count(), 0);
        let isr = if legacy_mode {
            r.f.bar_rd(LEGACY_BAR, legacy::ISR, 1)
        } else {
            r.f.bar_rd(MODERN_BAR, ISR_OFFSET, 1)
        };
        assert_eq!(isr, ISR_CONFIG, "legacy={legacy_mode}");
        // Legacy without MSI-X: the device config starts at 20.
        let cap = if legacy_mode {
            r.f.bar_rd(LEGACY_BAR, 20, 8)
        } else {
            r.f.bar_rd(MODERN_BAR, DEVICE_OFFSET, 8)
        };
        assert_eq!(cap, DISK / 4 / 512);
    }
}

#[test]
fn legacy_msix_resize_uses_the_config_vector_and_config_at_24() {
    let mut r = rig();
    legacy_probe(&mut r.f, 0x10, true, 0x20_0000);
    r.dev.resize(DISK / 2, false).unwrap();
    assert_eq!((r.msix[0].count(), r.intx.count()), (1, 0));
    assert_eq!(r.f.bar_rd(LEGACY_BAR, 24, 8), DISK / 2 / 512);
}

#[test]
fn the_writeback_byte_is_writable_in_every_mode_and_nothing_else_is() {
    // Modern: BAR4 device config + 32.
    let mut r = rig();
    modern_probe(&mut r.f, &ring(), true);
    assert_eq!(r.f.bar_rd(MODERN_BAR, DEVICE_OFFSET + 32, 1), 1);
    r.f.bar_wr(MODERN_BAR, DEVICE_OFFSET + 32, 1, 0);
    assert!(r.dev.write_through());
    assert_eq!(r.f.bar_rd(MODERN_BAR, DEVICE_OFFSET + 32, 1), 0);
    r.f.bar_wr(MODERN_BAR, DEVICE_OFFSET + 32, 1, 1);
    assert!(!r.dev.write_through());
    let bad = counter(&r.dev, "bad_register_writes");
    r.f.bar_wr(MODERN_BAR, DEVICE_OFFSET, 4, 0);
    r.f.bar_wr(MODERN_BAR, DEVICE_OFFSET + 32, 4, 0);
    assert_eq!(r.f.bar_rd(MODERN_BAR, DEVICE_OFFSET, 8), DISK / 512);
    assert!(!r.dev.write_through());
    assert_eq!(counter(&r.dev, "bad_register_writes"), bad + 2);
    // Legacy, without and with MSI-X: after the 20- or 24-byte header.
    for (msix, cfg) in [(false, 20u64), (true, 24)] {
        let mut r = rig();
        legacy_probe(&mut r.f, 0x10, msix, 0x20_0000);
        r.f.bar_wr(LEGACY_BAR, cfg + 32, 1, 0);
        assert!(r.dev.write_through(), "msix={msix}");
        assert_eq!(r.f.bar_rd(LEGACY_BAR, cfg + 32, 1), 0);
        r.f.bar_wr(LEGACY_BAR, cfg + 32, 1, 1);
        assert!(!r.dev.write_through());
    }
}

#[test]
fn writeback_is_read_only_without_config_wce() {
    let mut r = rig();
    // A driver that accepts everything but CONFIG_WCE (bit 11).
    let c = COMMON_OFFSET;
    r.f.bar_wr(MODERN_BAR, c + cc::DEVICE_STATUS, 1, 0);
    r.f.bar_wr(MODERN_BAR, c + cc::DEVICE_STATUS, 1, 3);
    r.f.bar_wr(MODERN_BAR, c + cc::DEVICE_FEATURE_SELECT, 4, 0);
    let lo = r.f.bar_rd(MODERN_BAR, c + cc::DEVICE_FEATURE, 4);
    assert_ne!(lo & (1 << 11), 0, "CONFIG_WCE offered");
    r.f.bar_wr(MODERN_BAR, c + cc::DRIVER_FEATURE_SELECT, 4, 0);
    r.f.bar_wr(MODERN_BAR, c + cc::DRIVER_FEATURE, 4, lo & !(1 << 11));
    r.f.bar_wr(MODERN_BAR, c + cc::DRIVER_FEATURE_SELECT, 4, 1);
    r.f.bar_wr(MODERN_BAR, c + cc::DRIVER_FEATURE, 4, 1);
    r.f.bar_wr(MODERN_BAR, c + cc::DEVICE_STATUS, 1, 11);
    let bad = counter(&r.dev, "bad_register_writes");
    r.f.bar_wr(MODERN_BAR, DEVICE_OFFSET + 32, 1, 0);
    assert!(!r.dev.write_through());
    assert_eq!(counter(&r.dev, "bad_register_writes"), bad + 1);
}

#[test]
fn requests_past_the_new_end_fail_after_a_shrink_and_pass_after_a_grow() {
    let mut r = rig();
    let mut ring = ring();
    let notify = modern_probe(&mut r.f, &ring, true);
    let run = |r: &mut Rig, ring: &mut Ring, kind: u32, sector: u64| {
        let (_, st) = ring.request(&r.mem, kind, sector, &[0x42; 512]);
        r.f.bar_wr(MODERN_BAR, notify, 2, 0);
        wait_status(&r.mem, st)
    };
    let last = DISK / 512 - 1;
    assert_eq!(run(&mut r, &mut ring, VIRTIO_BLK_T_OUT, last), 0);
    r.dev.resize(DISK / 2, false).unwrap();
    assert_eq!(run(&mut r, &mut ring, VIRTIO_BLK_T_OUT, last), 1, "IOERR");
    assert_eq!(
        run(&mut r, &mut ring, VIRTIO_BLK_T_IN, DISK / 1024),
        1,
        "IOERR"
    );
    assert_eq!(run(&mut r, &mut ring, VIRTIO_BLK_T_IN, DISK / 1024 - 1), 0);
    r.dev.resize(DISK, false).unwrap();
    assert_eq!(run(&mut r, &mut ring, VIRTIO_BLK_T_IN, last), 0);
}
