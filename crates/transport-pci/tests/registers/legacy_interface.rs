//! The legacy (virtio 0.9) interface in BAR0: a request with INTx and with
//! MSI-X, QUEUE_PFN rules, out-of-range selects and notifies, and resets at
//! every stage through STATUS and QUEUE_PFN.

use vblk_transport_pci::regs::{legacy, msix, pci, status::*};
use vm_memory::{Bytes, GuestAddress};

use crate::{legacy_probe, Rig, QSIZE};

#[test]
fn legacy_probe_request_and_intx() {
    let mut r = Rig::new();
    let (desc, used) = legacy_probe(&mut r, false);
    r.backend.fill(512, &[0x33; 512]);
    let st = r.request(desc, desc + 16 * QSIZE, 0);
    r.wr(0, legacy::QUEUE_NOTIFY, 2, 0);
    assert_eq!(r.mem.read_obj::<u8>(GuestAddress(st)).unwrap(), 0);
    assert_eq!(r.mem.read_obj::<u32>(GuestAddress(used + 8)).unwrap(), 513);
    let mut data = [0u8; 512];
    r.mem
        .read_slice(&mut data, GuestAddress(0x30_1000))
        .unwrap();
    assert_eq!(data, [0x33; 512]);
    // INTx asserted, PCI status shows it; ISR read returns 1 and de-asserts.
    assert_eq!(r.intx.count(), 1);
    assert_ne!(r.cfg_rd(6, 2) & u64::from(pci::STATUS_INTERRUPT), 0);
    assert_eq!(r.rd(0, legacy::ISR, 1), 1);
    assert_eq!(r.cfg_rd(6, 2) & u64::from(pci::STATUS_INTERRUPT), 0);
    assert_eq!(r.rd(0, legacy::ISR, 1), 0, "ISR read clears");
    assert_eq!(r.stat(0, "notify_legacy"), 1);
    assert_eq!(r.stat(0, "intx"), 1);
    // A second completion while the line is auto-masked fires only after unmask.
    r.request(desc, desc + 16 * QSIZE, 1);
    r.wr(0, legacy::QUEUE_NOTIFY, 2, 0);
    assert_eq!(r.intx.count(), 1, "auto-masked until the client unmasks");
    r.f.irq().set_intx_masked(false);
    assert_eq!(r.intx.count(), 2);
    // INTx disable in the command register keeps the line quiet.
    r.rd(0, legacy::ISR, 1);
    r.f.irq().set_intx_masked(false);
    r.cfg_wr(
        4,
        2,
        u64::from(pci::COMMAND_INTX_DISABLE | pci::COMMAND_IO | pci::COMMAND_MASTER),
    );
    r.request(desc, desc + 16 * QSIZE, 2);
    r.wr(0, legacy::QUEUE_NOTIFY, 2, 0);
    assert_eq!(r.intx.count(), 2);
    assert_eq!(
        r.rd(0, legacy::ISR, 1),
        1,
        "ISR still records the interrupt"
    );
}

#[test]
fn legacy_with_msix_uses_vectors_and_config_at_24() {
    let mut r = Rig::new();
    let (desc, used) = legacy_probe(&mut r, true);
    r.request(desc, desc + 16 * QSIZE, 0);
    r.wr(0, legacy::QUEUE_NOTIFY, 2, 0);
    assert_eq!(r.mem.read_obj::<u32>(GuestAddress(used + 8)).unwrap(), 513);
    assert_eq!(r.msix[1].count(), 1);
    assert_eq!(r.intx.count(), 0);
}

#[test]
fn legacy_queue_pfn_after_driver_ok_does_not_move_the_live_ring() {
    let mut r = Rig::new();
    let (desc, used) = legacy_probe(&mut r, false);
    // Modern common config refuses queue changes after DRIVER_OK; the
    // legacy QUEUE_PFN must too (it used to move the live ring).
    r.wr(0, legacy::QUEUE_SEL, 2, 0);
    r.wr(0, legacy::QUEUE_PFN, 4, 0x20);
    assert_eq!(r.rd(0, legacy::QUEUE_PFN, 4), 0x10, "the ring stays put");
    r.request(desc, desc + 16 * QSIZE, 0);
    r.wr(0, legacy::QUEUE_NOTIFY, 2, 0);
    assert_eq!(r.mem.read_obj::<u32>(GuestAddress(used + 8)).unwrap(), 513);
    assert_eq!(r.f.status() & DEVICE_NEEDS_RESET, 0);
    // Before DRIVER_OK (after a reset) the same write is taken.
    r.wr(0, legacy::STATUS, 1, 0);
    r.wr(0, legacy::QUEUE_PFN, 4, 0x20);
    assert_eq!(r.rd(0, legacy::QUEUE_PFN, 4), 0x20);
}

#[test]
fn legacy_out_of_range_sel_notify_pfn_and_pfn_zero_resets() {
    let mut r = Rig::new();
    let (_desc, _used) = legacy_probe(&mut r, false);
    r.wr(0, legacy::QUEUE_SEL, 2, 1);
    r.wr(0, legacy::QUEUE_SEL, 2, 7); // ignored
    assert_eq!(r.rd(0, legacy::QUEUE_SEL, 2), 1);
    r.wr(0, legacy::QUEUE_NOTIFY, 2, 9); // ignored, no panic
    r.wr(0, legacy::QUEUE_SEL, 2, 1);
    r.wr(0, legacy::QUEUE_PFN, 4, 0xffff_ffff); // after DRIVER_OK: refused
    assert_eq!(r.rd(0, legacy::QUEUE_PFN, 4), 0);
    r.wr(0, legacy::QUEUE_NOTIFY, 2, 1); // queue 1 never set up: nothing
    assert_eq!(r.f.status() & DEVICE_NEEDS_RESET, 0);
    r.wr(0, legacy::QUEUE_PFN, 4, 0);
    assert_eq!(r.f.status(), 0, "QUEUE_PFN 0 resets the device");
    assert!(r
        .dev
        .stats()
        .device
        .snapshot()
        .iter()
        .any(|(k, v)| *k == "bad_register_writes" && *v >= 2));
}

#[test]
fn legacy_reset_at_every_stage() {
    // Status 0 and QUEUE_PFN 0 both reset, whatever was set up before.
    for stage in 0..5 {
        for via_pfn in [false, true] {
            let mut r = Rig::new();
            r.enable_msix();
            let steps = [ACKNOWLEDGE, ACKNOWLEDGE | DRIVER];
            for s in steps.iter().take(stage.min(2)) {
                r.wr(0, legacy::STATUS, 1, u64::from(*s));
            }
            if stage >= 3 {
                r.wr(0, legacy::GUEST_FEATURES, 4, 1 << 9);
                r.wr(0, legacy::MSI_CONFIG_VECTOR, 2, 0);
                r.wr(0, legacy::QUEUE_SEL, 2, 1);
                r.wr(0, legacy::QUEUE_PFN, 4, 0x20);
                r.wr(0, legacy::MSI_QUEUE_VECTOR, 2, 2);
            }
            if stage == 4 {
                r.wr(
                    0,
                    legacy::STATUS,
                    1,
                    u64::from(ACKNOWLEDGE | DRIVER | DRIVER_OK),
                );
                assert_eq!(r.f.status(), ACKNOWLEDGE | DRIVER | DRIVER_OK);
            }
            if via_pfn {
                r.wr(0, legacy::QUEUE_SEL, 2, 1);
                r.wr(0, legacy::QUEUE_PFN, 4, 0);
            } else {
                r.wr(0, legacy::STATUS, 1, 0);
            }
            let what = format!(
                "stage {stage}, via {}",
                if via_pfn { "PFN" } else { "STATUS" }
            );
            assert_eq!(r.rd(0, legacy::STATUS, 1), 0, "{what}");
            assert_eq!(r.rd(0, legacy::GUEST_FEATURES, 4), 0, "{what}");
            assert_eq!(r.rd(0, legacy::QUEUE_SEL, 2), 0, "{what}");
            assert_eq!(
                r.rd(0, legacy::MSI_CONFIG_VECTOR, 2),
                u64::from(msix::NO_VECTOR),
                "{what}"
            );
            for q in 0..2 {
                r.wr(0, legacy::QUEUE_SEL, 2, q);
                assert_eq!(r.rd(0, legacy::QUEUE_PFN, 4), 0, "{what}");
                assert_eq!(
                    r.rd(0, legacy::MSI_QUEUE_VECTOR, 2),
                    u64::from(msix::NO_VECTOR),
                    "{what}"
                );
            }
            assert!(
                r.f.irq().msix_enabled(),
                "MSI-X is PCI's, not reset by virtio"
            );
        }
    }
}
