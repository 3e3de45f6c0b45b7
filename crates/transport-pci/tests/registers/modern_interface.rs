//! The modern (virtio 1.0) interface in BAR4: Linux's probe through the
//! capability list up to a request and a reset, FEATURES_OK refusals,
//! resets at every stage and the queue rules of the common config.

use vblk_transport_pci::regs::{common, layout::*, msix, status::*};
use vm_memory::{Bytes, GuestAddress};

use crate::{Rig, DISK, QSIZE};

#[test]
fn modern_probe_through_the_capability_list() {
    let mut r = Rig::new();
    let mut types = vec![];
    let mut p = r.cfg_rd(0x34, 1);
    let mut notify_mult = 0;
    let mut guard = 0;
    while p != 0 && guard < 16 {
        guard += 1;
        let id = r.cfg_rd(p, 1);
        if id == 0x09 {
            let ty = r.cfg_rd(p + 3, 1);
            if ty != 5 {
                // (PCI_CFG's bar field selects the window's target instead.)
                assert_eq!(
                    r.cfg_rd(p + 4, 1),
                    MODERN_BAR as u64,
                    "virtio structures live in BAR4"
                );
            }
            types.push(ty);
            if ty == 2 {
                notify_mult = r.cfg_rd(p + 16, 4);
            }
        } else {
            assert_eq!(id, 0x11, "MSI-X");
            assert_eq!(
                r.cfg_rd(p + 2, 2) & 0x7ff,
                2,
                "3 vectors: config + 2 queues"
            );
        }
        p = r.cfg_rd(p + 1, 1);
    }
    assert_eq!(types, vec![1, 2, 3, 4, 5]);
    assert_eq!(notify_mult, u64::from(NOTIFY_OFF_MULTIPLIER));

    // Linux modern probe.
    let c = COMMON_OFFSET;
    r.wr(4, c + common::DEVICE_STATUS, 1, 0);
    r.wr(4, c + common::DEVICE_STATUS, 1, u64::from(ACKNOWLEDGE));
    r.wr(
        4,
        c + common::DEVICE_STATUS,
        1,
        u64::from(ACKNOWLEDGE | DRIVER),
    );
    r.wr(4, c + common::DEVICE_FEATURE_SELECT, 4, 0);
    let lo = r.rd(4, c + common::DEVICE_FEATURE, 4);
    r.wr(4, c + common::DEVICE_FEATURE_SELECT, 4, 1);
    let hi = r.rd(4, c + common::DEVICE_FEATURE, 4);
    let offered = lo | hi << 32;
    assert_ne!(offered & (1 << 32), 0, "VERSION_1");
    assert_ne!(offered & (1 << 29), 0, "EVENT_IDX");
    r.wr(4, c + common::DRIVER_FEATURE_SELECT, 4, 0);
    r.wr(4, c + common::DRIVER_FEATURE, 4, lo & !(1 << 29));
    r.wr(4, c + common::DRIVER_FEATURE_SELECT, 4, 1);
    // A split ring: everything offered but RING_PACKED (bit 34).
    assert_ne!(
        offered & (1 << 34),
        0,
        "RING_PACKED on the modern interface"
    );
    r.wr(4, c + common::DRIVER_FEATURE, 4, hi & !(1 << 2));
    r.wr(
        4,
        c + common::DEVICE_STATUS,
        1,
        u64::from(ACKNOWLEDGE | DRIVER | FEATURES_OK),
    );
    assert_ne!(
        r.rd(4, c + common::DEVICE_STATUS, 1) & u64::from(FEATURES_OK),
        0
    );
    assert_eq!(r.rd(4, c + common::NUM_QUEUES, 2), 2);
    // Device config: capacity in sectors.
    assert_eq!(r.rd(4, DEVICE_OFFSET, 8), DISK / 512);
    // MSI-X: config vector 0, queue 0 vector 1.
    r.enable_msix();
    r.wr(4, c + common::MSIX_CONFIG, 2, 0);
    assert_eq!(r.rd(4, c + common::MSIX_CONFIG, 2), 0);
    r.wr(4, c + common::QUEUE_SELECT, 2, 0);
    assert_eq!(r.rd(4, c + common::QUEUE_SIZE, 2), QSIZE);
    r.wr(4, c + common::QUEUE_SIZE, 2, 64);
    r.wr(4, c + common::QUEUE_MSIX_VECTOR, 2, 1);
    assert_eq!(r.rd(4, c + common::QUEUE_MSIX_VECTOR, 2), 1);
    let (desc, avail, used) = (0x1_0000u64, 0x2_0000u64, 0x3_0000u64);
    r.wr(4, c + common::QUEUE_DESC_LO, 4, desc);
    r.wr(4, c + common::QUEUE_DESC_HI, 4, 0);
    r.wr(4, c + common::QUEUE_DRIVER_LO, 4, avail);
    r.wr(4, c + common::QUEUE_DRIVER_HI, 4, 0);
    r.wr(4, c + common::QUEUE_DEVICE_LO, 8, used);
    r.wr(4, c + common::QUEUE_ENABLE, 2, 1);
    assert_eq!(r.rd(4, c + common::QUEUE_ENABLE, 2), 1);
    let notify_off = r.rd(4, c + common::QUEUE_NOTIFY_OFF, 2);
    r.wr(
        4,
        c + common::DEVICE_STATUS,
        1,
        u64::from(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK),
    );
    assert_eq!(r.f.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    // A request, kicked through the notify region.
    r.backend.fill(512, &[0x5a; 512]);
    let st = r.request(desc, avail, 0);
    r.wr(
        4,
        NOTIFY_OFFSET + notify_off * u64::from(NOTIFY_OFF_MULTIPLIER),
        2,
        0,
    );
    assert_eq!(r.mem.read_obj::<u8>(GuestAddress(st)).unwrap(), 0);
    assert_eq!(r.mem.read_obj::<u32>(GuestAddress(used + 8)).unwrap(), 513);
    assert_eq!(r.msix[1].count(), 1, "queue 0 interrupt on vector 1");
    assert_eq!(r.intx.count(), 0);
    assert_eq!(r.stat(0, "notify_modern"), 1);
    assert_eq!(r.stat(0, "msix"), 1);
    // Reset through status 0.
    r.wr(4, c + common::DEVICE_STATUS, 1, 0);
    assert_eq!(r.f.status(), 0);
    r.wr(4, c + common::QUEUE_SELECT, 2, 0);
    assert_eq!(r.rd(4, c + common::QUEUE_ENABLE, 2), 0);
    assert_eq!(
        r.rd(4, c + common::MSIX_CONFIG, 2),
        u64::from(msix::NO_VECTOR)
    );
}

#[test]
fn features_ok_refused_for_unoffered_features_or_missing_version_1() {
    let mut r = Rig::new();
    let c = COMMON_OFFSET;
    r.wr(
        4,
        c + common::DEVICE_STATUS,
        1,
        u64::from(ACKNOWLEDGE | DRIVER),
    );
    r.wr(4, c + common::DRIVER_FEATURE_SELECT, 4, 1);
    r.wr(4, c + common::DRIVER_FEATURE, 4, 1 | (1 << 20)); // VERSION_1 + an unoffered bit
    r.wr(
        4,
        c + common::DEVICE_STATUS,
        1,
        u64::from(ACKNOWLEDGE | DRIVER | FEATURES_OK),
    );
    assert_eq!(
        r.rd(4, c + common::DEVICE_STATUS, 1) & u64::from(FEATURES_OK),
        0
    );
    r.wr(4, c + common::DRIVER_FEATURE, 4, 0); // no VERSION_1 on the modern interface
    r.wr(
        4,
        c + common::DEVICE_STATUS,
        1,
        u64::from(ACKNOWLEDGE | DRIVER | FEATURES_OK),
    );
    assert_eq!(
        r.rd(4, c + common::DEVICE_STATUS, 1) & u64::from(FEATURES_OK),
        0
    );
    // DRIVER_OK before FEATURES_OK is refused too.
    r.wr(
        4,
        c + common::DEVICE_STATUS,
        1,
        u64::from(ACKNOWLEDGE | DRIVER | DRIVER_OK),
    );
    assert_eq!(r.f.status() & DRIVER_OK, 0);
}

#[test]
fn reset_at_every_stage() {
    for stage in 0..5 {
        let mut r = Rig::new();
        let c = COMMON_OFFSET;
        let steps = [
            ACKNOWLEDGE,
            ACKNOWLEDGE | DRIVER,
            ACKNOWLEDGE | DRIVER | FEATURES_OK,
        ];
        if stage > 0 {
            r.wr(4, c + common::DRIVER_FEATURE_SELECT, 4, 1);
            r.wr(4, c + common::DRIVER_FEATURE, 4, 1);
        }
        for s in steps.iter().take(stage.min(3)) {
            r.wr(4, c + common::DEVICE_STATUS, 1, u64::from(*s));
        }
        if stage == 4 {
            r.wr(4, c + common::QUEUE_ENABLE, 2, 1);
            r.wr(
                4,
                c + common::DEVICE_STATUS,
                1,
                u64::from(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK),
            );
        }
        r.wr(4, c + common::DEVICE_STATUS, 1, 0);
        assert_eq!(r.f.status(), 0, "stage {stage}");
        assert_eq!(r.rd(4, c + common::DRIVER_FEATURE, 4), 0);
        assert_eq!(r.rd(4, c + common::QUEUE_ENABLE, 2), 0);
    }
}

#[test]
fn modern_queue_rules() {
    let mut r = Rig::new();
    let c = COMMON_OFFSET;
    // A queue_select past the last queue: size 0 ("not available").
    r.wr(4, c + common::QUEUE_SELECT, 2, 5);
    assert_eq!(r.rd(4, c + common::QUEUE_SIZE, 2), 0);
    r.wr(4, c + common::QUEUE_ENABLE, 2, 1);
    assert_eq!(r.rd(4, c + common::QUEUE_ENABLE, 2), 0);
    r.wr(4, c + common::QUEUE_SELECT, 2, 0);
    // Sizes: powers of two up to the maximum only.
    for bad in [0u64, 3, 100, 512] {
        r.wr(4, c + common::QUEUE_SIZE, 2, bad);
        assert_eq!(r.rd(4, c + common::QUEUE_SIZE, 2), QSIZE, "size {bad}");
    }
    r.wr(4, c + common::QUEUE_SIZE, 2, 16);
    assert_eq!(r.rd(4, c + common::QUEUE_SIZE, 2), 16);
    // "The driver MUST NOT write a 0 to queue_enable."
    r.wr(4, c + common::QUEUE_ENABLE, 2, 0);
    assert_eq!(r.rd(4, c + common::QUEUE_ENABLE, 2), 0);
    r.wr(4, c + common::QUEUE_DESC_LO, 4, 0x1000);
    r.wr(4, c + common::QUEUE_ENABLE, 2, 1);
    // Once enabled, the queue's layout is fixed.
    r.wr(4, c + common::QUEUE_DESC_LO, 4, 0x8000);
    r.wr(4, c + common::QUEUE_SIZE, 2, 32);
    assert_eq!(r.rd(4, c + common::QUEUE_DESC_LO, 4), 0x1000);
    assert_eq!(r.rd(4, c + common::QUEUE_SIZE, 2), 16);
    // Feature selects past 63 read 0.
    r.wr(4, c + common::DEVICE_FEATURE_SELECT, 4, 2);
    assert_eq!(r.rd(4, c + common::DEVICE_FEATURE, 4), 0);
    // Kicks before DRIVER_OK do nothing but count.
    r.wr(4, NOTIFY_OFFSET, 2, 0);
    assert_eq!(r.stat(0, "notify_modern"), 1);
    assert_eq!(r.stat(0, "drains"), 0);
    // A notify address between two queues' is no kick.
    r.wr(4, NOTIFY_OFFSET + 2, 2, 0);
    assert_eq!(r.stat(0, "notify_modern"), 1);
}
