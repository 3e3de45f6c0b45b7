//! Linux's probe sequences over any [`Regs`]: the capability walk, the
//! modern probe (split or packed rings) and the legacy probe.

use vblk_transport_pci::regs::{common, layout::*, legacy, msix, status::*};

use super::regs::Regs;
use super::ring::Ring;

/// One virtio capability: (cfg_type, bar, offset, length, the u32 after
/// them: notify_off_multiplier for NOTIFY_CFG).
pub type VirtioCap = (u8, u8, u32, u32, u32);

/// Walk the capability list from 0x34 like Linux's virtio_pci_find_capability:
/// (MSI-X cap offset, the virtio capabilities in list order).
pub fn walk_caps(r: &mut impl Regs) -> (u64, Vec<VirtioCap>) {
    let mut msix_at = 0;
    let mut out = vec![];
    let mut p = r.cfg_rd(0x34, 1) & !3;
    let mut guard = 0;
    while p != 0 && guard < 48 {
        guard += 1;
        match r.cfg_rd(p, 1) {
            0x11 => msix_at = p,
            0x09 => out.push((
                r.cfg_rd(p + 3, 1) as u8,
                r.cfg_rd(p + 4, 1) as u8,
                r.cfg_rd(p + 8, 4) as u32,
                r.cfg_rd(p + 12, 4) as u32,
                r.cfg_rd(p + 16, 4) as u32,
            )),
            id => panic!("unexpected capability {id:#x} at {p:#x}"),
        }
        p = r.cfg_rd(p + 1, 1) & !3;
    }
    (msix_at, out)
}

pub fn enable_msix(r: &mut impl Regs) {
    let ctrl = r.cfg_rd(CAP_MSIX as u64 + 2, 2);
    r.cfg_wr(CAP_MSIX as u64 + 2, 2, ctrl | u64::from(msix::CTRL_ENABLE));
}

/// Linux's modern probe (virtio_pci_modern + virtio core) of queue 0 with
/// its rings at `ring`, MSI-X vectors config=0, queue 0=1 when `msix`.
/// Returns the notify address of queue 0 in BAR4.
pub fn modern_probe(r: &mut impl Regs, ring: &Ring, msix: bool) -> u64 {
    let (notify, status, driver_ok) = modern_probe_status(r, ring, msix);
    assert_eq!(status, driver_ok);
    notify
}

/// [`modern_probe`] without the final status check: returns (notify
/// address, the status read back after DRIVER_OK, the status written).
pub fn modern_probe_status(r: &mut impl Regs, ring: &Ring, msix: bool) -> (u64, u64, u64) {
    modern_probe_layout(r, ring, msix, false)
}

/// [`modern_probe_status`] with RING_PACKED accepted when `packed` (the
/// ring's avail/used addresses are then the driver and device areas).
pub fn modern_probe_layout(
    r: &mut impl Regs,
    ring: &Ring,
    msix: bool,
    packed: bool,
) -> (u64, u64, u64) {
    let (_, caps) = walk_caps(r);
    let find = |t: u8| *caps.iter().find(|c| c.0 == t).expect("virtio capability");
    let common_at = u64::from(find(1).2);
    let notify = find(2);
    let c = |f: u64| common_at + f;
    let bar = usize::from(find(1).1);
    r.bar_wr(bar, c(common::DEVICE_STATUS), 1, 0);
    assert_eq!(r.bar_rd(bar, c(common::DEVICE_STATUS), 1), 0);
    r.bar_wr(bar, c(common::DEVICE_STATUS), 1, u64::from(ACKNOWLEDGE));
    r.bar_wr(
        bar,
        c(common::DEVICE_STATUS),
        1,
        u64::from(ACKNOWLEDGE | DRIVER),
    );
    r.bar_wr(bar, c(common::DEVICE_FEATURE_SELECT), 4, 0);
    let lo = r.bar_rd(bar, c(common::DEVICE_FEATURE), 4);
    r.bar_wr(bar, c(common::DEVICE_FEATURE_SELECT), 4, 1);
    let hi = r.bar_rd(bar, c(common::DEVICE_FEATURE), 4);
    assert_eq!(hi & 1, 1, "VERSION_1");
    // No EVENT_IDX: every completion interrupts, which the tests count.
    r.bar_wr(bar, c(common::DRIVER_FEATURE_SELECT), 4, 0);
    r.bar_wr(bar, c(common::DRIVER_FEATURE), 4, lo & !(1 << 29));
    r.bar_wr(bar, c(common::DRIVER_FEATURE_SELECT), 4, 1);
    // Split rings: everything but RING_PACKED (bit 34 = bit 2 of the high
    // word; `modern_probe_layout` with `packed` takes it).
    let hi = if packed { hi } else { hi & !(1 << 2) };
    r.bar_wr(bar, c(common::DRIVER_FEATURE), 4, hi);
    let s = u64::from(ACKNOWLEDGE | DRIVER | FEATURES_OK);
    r.bar_wr(bar, c(common::DEVICE_STATUS), 1, s);
    assert_eq!(
        r.bar_rd(bar, c(common::DEVICE_STATUS), 1),
        s,
        "FEATURES_OK kept"
    );
    if msix {
        enable_msix(r);
        r.bar_wr(bar, c(common::MSIX_CONFIG), 2, 0);
        assert_eq!(r.bar_rd(bar, c(common::MSIX_CONFIG), 2), 0);
    }
    r.bar_wr(bar, c(common::QUEUE_SELECT), 2, 0);
    let max = r.bar_rd(bar, c(common::QUEUE_SIZE), 2);
    assert!(max >= u64::from(ring.size));
    assert_eq!(r.bar_rd(bar, c(common::QUEUE_ENABLE), 2), 0);
    r.bar_wr(bar, c(common::QUEUE_SIZE), 2, u64::from(ring.size));
    r.bar_wr(bar, c(common::QUEUE_DESC_LO), 4, ring.desc & 0xffff_ffff);
    r.bar_wr(bar, c(common::QUEUE_DESC_HI), 4, ring.desc >> 32);
    r.bar_wr(bar, c(common::QUEUE_DRIVER_LO), 4, ring.avail & 0xffff_ffff);
    r.bar_wr(bar, c(common::QUEUE_DRIVER_HI), 4, ring.avail >> 32);
    r.bar_wr(bar, c(common::QUEUE_DEVICE_LO), 4, ring.used & 0xffff_ffff);
    r.bar_wr(bar, c(common::QUEUE_DEVICE_HI), 4, ring.used >> 32);
    if msix {
        r.bar_wr(bar, c(common::QUEUE_MSIX_VECTOR), 2, 1);
        assert_eq!(r.bar_rd(bar, c(common::QUEUE_MSIX_VECTOR), 2), 1);
    }
    let off = r.bar_rd(bar, c(common::QUEUE_NOTIFY_OFF), 2);
    r.bar_wr(bar, c(common::QUEUE_ENABLE), 2, 1);
    let s = s | u64::from(DRIVER_OK);
    r.bar_wr(bar, c(common::DEVICE_STATUS), 1, s);
    let got = r.bar_rd(bar, c(common::DEVICE_STATUS), 1);
    (u64::from(notify.2) + off * u64::from(notify.4), got, s)
}

/// Linux's legacy probe (virtio_pci_legacy, force_legacy=1) of queue 0 at
/// page frame `pfn`; returns the ring (size = QUEUE_NUM, scratch after it).
pub fn legacy_probe(r: &mut impl Regs, pfn: u32, msix: bool, scratch: u64) -> Ring {
    if msix {
        enable_msix(r);
    }
    r.bar_wr(0, legacy::STATUS, 1, 0);
    assert_eq!(r.bar_rd(0, legacy::STATUS, 1), 0);
    r.bar_wr(0, legacy::STATUS, 1, u64::from(ACKNOWLEDGE));
    r.bar_wr(0, legacy::STATUS, 1, u64::from(ACKNOWLEDGE | DRIVER));
    let host = r.bar_rd(0, legacy::HOST_FEATURES, 4);
    r.bar_wr(0, legacy::GUEST_FEATURES, 4, host & !(1 << 29));
    if msix {
        r.bar_wr(0, legacy::MSI_CONFIG_VECTOR, 2, 0);
        assert_eq!(r.bar_rd(0, legacy::MSI_CONFIG_VECTOR, 2), 0);
    }
    r.bar_wr(0, legacy::QUEUE_SEL, 2, 0);
    let num = r.bar_rd(0, legacy::QUEUE_NUM, 2) as u16;
    assert_eq!(r.bar_rd(0, legacy::QUEUE_PFN, 4), 0, "queue not yet active");
    r.bar_wr(0, legacy::QUEUE_PFN, 4, u64::from(pfn));
    if msix {
        r.bar_wr(0, legacy::MSI_QUEUE_VECTOR, 2, 1);
        assert_eq!(r.bar_rd(0, legacy::MSI_QUEUE_VECTOR, 2), 1);
    }
    r.bar_wr(
        0,
        legacy::STATUS,
        1,
        u64::from(ACKNOWLEDGE | DRIVER | DRIVER_OK),
    );
    let (desc, avail, used) =
        vblk_transport_pci::legacy::ring_layout(pfn, num).expect("ring layout");
    Ring::new(desc, avail, used, num, scratch)
}
