//! Packed rings over the modern PCI interface: RING_PACKED is offered in
//! the modern feature words only (a legacy driver cannot see bit 34), a
//! driver that accepts it gets a packed ring at the common config's
//! descriptor/driver/device addresses, requests complete through it, and a
//! hostile packed ring sets DEVICE_NEEDS_RESET.

mod common;

use std::sync::Arc;

use common::*;
use vblk_testkit::blk::{Request, S_OK};
use vblk_testkit::packed::{avail_bits, PDesc, PackedDriver};
use vblk_transport_pci::irq::{CountingLine, Line};
use vblk_transport_pci::regs::{layout::*, legacy, status::*};
use vblk_transport_pci::PciFunction;
use vm_memory::{GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};

const DISK: u64 = 1 << 20;

fn function() -> (PciFunction, GuestMemoryMmap, vblk_backend::MemBackend) {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
    let (dev, backend) = device(DISK, 1);
    let f = PciFunction::new(dev, GuestMemoryAtomic::new(mem.clone())).unwrap();
    for i in 0..2 {
        f.irq()
            .set_msix_line(i, Some(Arc::new(CountingLine::default()) as Arc<dyn Line>));
    }
    (f, mem, backend)
}

#[test]
fn modern_offers_packed_and_legacy_cannot_see_it() {
    let (mut f, _, _) = function();
    let (_, caps) = walk_caps(&mut f);
    let c = u64::from(caps.iter().find(|c| c.0 == 1).unwrap().2);
    f.bar_wr(
        MODERN_BAR,
        c + vblk_transport_pci::regs::common::DEVICE_FEATURE_SELECT,
        4,
        1,
    );
    let hi = f.bar_rd(
        MODERN_BAR,
        c + vblk_transport_pci::regs::common::DEVICE_FEATURE,
        4,
    );
    assert_ne!(
        hi & (1 << 2),
        0,
        "RING_PACKED (bit 34) offered on the modern interface"
    );
    // The legacy register is 32 bits wide: bit 34 does not exist there.
    let legacy_features = f.bar_rd(0, legacy::HOST_FEATURES, 4);
    assert_eq!(legacy_features >> 32, 0);
    // Turned off (`vblk serve --no-packed-rings`): not offered, and a
    // driver that sets it anyway does not get FEATURES_OK.
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
    let mut cfg = vblk_device::BlkConfig::new(DISK);
    cfg.packed_rings = false;
    let dev = Arc::new(vblk_device::BlkDevice::new(
        cfg,
        Arc::new(vblk_backend::MemBackend::new(DISK)),
    ));
    let mut f = PciFunction::new(dev, GuestMemoryAtomic::new(mem)).unwrap();
    let common = |f: u64| c + f;
    f.bar_wr(
        MODERN_BAR,
        common(vblk_transport_pci::regs::common::DEVICE_FEATURE_SELECT),
        4,
        1,
    );
    let hi = f.bar_rd(
        MODERN_BAR,
        common(vblk_transport_pci::regs::common::DEVICE_FEATURE),
        4,
    );
    assert_eq!(hi & (1 << 2), 0, "RING_PACKED offered although turned off");
    use vblk_transport_pci::regs::common as cc;
    f.bar_wr(
        MODERN_BAR,
        common(cc::DEVICE_STATUS),
        1,
        u64::from(ACKNOWLEDGE | DRIVER),
    );
    f.bar_wr(MODERN_BAR, common(cc::DRIVER_FEATURE_SELECT), 4, 1);
    f.bar_wr(MODERN_BAR, common(cc::DRIVER_FEATURE), 4, hi | (1 << 2));
    f.bar_wr(
        MODERN_BAR,
        common(cc::DEVICE_STATUS),
        1,
        u64::from(ACKNOWLEDGE | DRIVER | FEATURES_OK),
    );
    assert_eq!(
        f.status() & FEATURES_OK,
        0,
        "FEATURES_OK for a feature not offered"
    );
}

#[test]
fn a_packed_ring_serves_requests_and_a_hostile_one_needs_a_reset() {
    let (mut f, mem, backend) = function();
    let mut drv = PackedDriver::new(0x1_0000, 64);
    let ring = Ring::new(drv.desc, drv.driver_area, drv.device_area, 64, 0x10_0000);
    let (notify, got, want) = modern_probe_layout(&mut f, &ring, true, true);
    assert_eq!(got, want, "DRIVER_OK kept with a packed ring");
    let data: Vec<u8> = (0..4096).map(|i| (i % 239) as u8).collect();
    let p = Request::write(8, &data).place(&mem, 0x10_0000);
    drv.add(&mem, &p.segs, 7);
    f.bar_wr(MODERN_BAR, notify, 2, 0);
    f.settle();
    assert_eq!(drv.take_used(&mem), Some((7, 1)));
    assert_eq!(status_byte(&mem, p.status), S_OK);
    assert_eq!(&backend.snapshot()[4096..8192], &data[..]);
    let p = Request::read(8, 4096).place(&mem, 0x12_0000);
    drv.add(&mem, &p.segs, 3);
    f.bar_wr(MODERN_BAR, notify, 2, 0);
    f.settle();
    assert_eq!(drv.take_used(&mem), Some((3, 4097)));
    assert_eq!(read_bytes(&mem, p.data, 4096), data);
    assert_eq!(f.status() & DEVICE_NEEDS_RESET, 0);
    // A buffer id past the ring: the ring is broken, the device needs a reset.
    drv.put(
        &mem,
        drv.avail_idx,
        PDesc {
            addr: 0x12_0000,
            len: 16,
            id: 64,
            flags: avail_bits(drv.avail_wrap),
        },
    );
    f.bar_wr(MODERN_BAR, notify, 2, 0);
    f.settle();
    assert_ne!(f.status() & DEVICE_NEEDS_RESET, 0);
}
