//! MSI-X masking (per vector and per function, the pending bit, NO_VECTOR)
//! and the config interrupt a broken ring raises with DEVICE_NEEDS_RESET.

use vblk_transport_pci::regs::{layout::*, legacy, msix, status::*};
use vm_memory::{Bytes, GuestAddress};

use crate::{legacy_probe, Rig, QSIZE};

#[test]
fn msix_mask_pending_and_unmask() {
    let mut r = Rig::new();
    let (desc, used) = legacy_probe(&mut r, true);
    // The driver masks vector 1 through the table (entry 1, vector control).
    let entry1 = MSIX_TABLE_OFFSET + 16;
    r.wr(MSIX_BAR, entry1 + 12, 4, 1);
    r.request(desc, desc + 16 * QSIZE, 0);
    r.wr(0, legacy::QUEUE_NOTIFY, 2, 0);
    assert_eq!(r.mem.read_obj::<u32>(GuestAddress(used + 8)).unwrap(), 513);
    assert_eq!(r.msix[1].count(), 0, "masked vector fired");
    assert_eq!(r.rd(MSIX_BAR, MSIX_PBA_OFFSET, 4) & 2, 2, "pending bit");
    r.wr(MSIX_BAR, entry1 + 12, 4, 0);
    assert_eq!(r.msix[1].count(), 1, "fires on unmask");
    assert_eq!(r.rd(MSIX_BAR, MSIX_PBA_OFFSET, 4) & 2, 0);
    // Function mask.
    let ctrl = r.cfg_rd(CAP_MSIX as u64 + 2, 2);
    r.cfg_wr(
        CAP_MSIX as u64 + 2,
        2,
        ctrl | u64::from(msix::CTRL_FUNCTION_MASK),
    );
    r.request(desc, desc + 16 * QSIZE, 1);
    r.wr(0, legacy::QUEUE_NOTIFY, 2, 0);
    assert_eq!(r.msix[1].count(), 1);
    r.cfg_wr(
        CAP_MSIX as u64 + 2,
        2,
        ctrl & !u64::from(msix::CTRL_FUNCTION_MASK),
    );
    assert_eq!(r.msix[1].count(), 2);
    // NO_VECTOR: no interrupt at all.
    r.wr(0, legacy::MSI_QUEUE_VECTOR, 2, u64::from(msix::NO_VECTOR));
    r.request(desc, desc + 16 * QSIZE, 2);
    r.wr(0, legacy::QUEUE_NOTIFY, 2, 0);
    assert_eq!(r.msix.iter().map(|l| l.count()).sum::<u64>(), 2);
    // A vector past the table reads back as NO_VECTOR.
    r.wr(0, legacy::MSI_QUEUE_VECTOR, 2, 50);
    assert_eq!(
        r.rd(0, legacy::MSI_QUEUE_VECTOR, 2),
        u64::from(msix::NO_VECTOR)
    );
}

#[test]
fn broken_ring_sets_needs_reset_and_config_interrupt() {
    let mut r = Rig::new();
    let (desc, _) = legacy_probe(&mut r, true);
    // avail idx jumps by more than the queue size.
    r.mem
        .write_obj(1000u16, GuestAddress(desc + 16 * QSIZE + 2))
        .unwrap();
    r.wr(0, legacy::QUEUE_NOTIFY, 2, 0);
    assert_ne!(r.f.status() & DEVICE_NEEDS_RESET, 0);
    assert_eq!(r.msix[0].count(), 1, "config interrupt on vector 0");
    // Further kicks are ignored until reset.
    r.wr(0, legacy::QUEUE_NOTIFY, 2, 0);
    assert_eq!(
        r.dev
            .stats()
            .device
            .snapshot()
            .iter()
            .find(|(k, _)| *k == "needs_reset")
            .unwrap()
            .1,
        1
    );
    r.wr(0, legacy::STATUS, 1, 0);
    assert_eq!(r.f.status(), 0);
}
