//! The well-formed seed inputs (a corpus for the fuzzer, and what the
//! smoke test checks they do): modern and legacy probes with requests,
//! the PCI_CFG window, MSI-X masking, memory changes, resets, a sweep.

use crate::regs::{common, layout::*, legacy, msix as msix_regs};

use super::builder::Builder;
use super::input::op;

/// The features the seeds ack: VERSION_1, FLUSH, SEG_MAX, BLK_SIZE, MQ,
/// and EVENT_IDX if `event_idx`.
pub fn seed_features(event_idx: bool) -> u64 {
    (1 << 32) | (1 << 9) | (1 << 2) | (1 << 6) | (1 << 12) | if event_idx { 1 << 29 } else { 0 }
}

/// A named input.
pub type Seed = (&'static str, Vec<u8>);

/// Well-formed driver sequences: the modern probe with an IN request on
/// each queue (MSI-X and INTx), the legacy probe with a request (INTx, and
/// with MSI-X), the PCI_CFG window, MSI-X masking, a memory unmap under a
/// running queue, resets at several stages, and a sweep of every
/// register at every width.
pub fn seeds() -> Vec<Seed> {
    use crate::regs::status::*;
    let mut out: Vec<Seed> = Vec::new();
    let notify = |b: &mut Builder, q: u8| {
        b.raw(&[op::NOTIFY, q]);
    };

    // Modern, MSI-X, two queues, an IN on each, EVENT_IDX.
    let mut b = Builder::new(0);
    b.chain(0, 0x1000, 0, 0, 0)
        .chain(0x800, 0x1800, 1, 0, 1)
        .modern_probe(seed_features(true), 2, true);
    notify(&mut b, 0);
    notify(&mut b, 1);
    b.raw(&[op::SETTLE]).bar_read(1, 0x800, 8);
    out.push(("modern_msix", b.bytes()));

    // Modern without MSI-X: INTx and the ISR (read clears); a flush.
    let mut b = Builder::new(2);
    b.chain(0, 0x1000, 0, 0, 4)
        .modern_probe(seed_features(false), 1, false);
    notify(&mut b, 0);
    b.raw(&[op::SETTLE])
        .cfg_read(6, 2)
        .bar_read(MODERN_BAR as u8, ISR_OFFSET as u16, 1)
        .bar_read(MODERN_BAR as u8, ISR_OFFSET as u16, 1);
    out.push(("modern_intx_flush", b.bytes()));

    // Legacy: QUEUE_PFN 1 (desc 0x1000, avail 0x1080, used 0x2000).
    for (name, msix) in [("legacy_intx", false), ("legacy_msix", true)] {
        let mut b = Builder::new(2);
        b.chain(0x1000, 0x1080, 0, 0, 0);
        if msix {
            b.cfg_write(
                (CAP_MSIX + msix_regs::CAP_CONTROL) as u16,
                1,
                u64::from(msix_regs::CTRL_ENABLE),
            )
            .legacy(legacy::MSI_CONFIG_VECTOR, 0)
            .legacy(legacy::MSI_QUEUE_VECTOR, 1);
        }
        b.legacy(legacy::STATUS, u32::from(ACKNOWLEDGE))
            .legacy(legacy::STATUS, u32::from(ACKNOWLEDGE | DRIVER))
            .bar_read(0, 0, 4)
            .legacy(legacy::GUEST_FEATURES, (1 << 9) | (1 << 6))
            .legacy(legacy::QUEUE_SEL, 0)
            .bar_read(0, legacy::QUEUE_NUM as u16, 2)
            .legacy(legacy::QUEUE_PFN, 1)
            .legacy(legacy::STATUS, u32::from(ACKNOWLEDGE | DRIVER | DRIVER_OK))
            .raw(&[op::NOTIFY, 0x80, op::SETTLE])
            .bar_read(0, legacy::ISR as u16, 1)
            .bar_read(0, if msix { 24 } else { 20 }, 8);
        out.push((name, b.bytes()));
    }

    // The PCI_CFG window: bar 4, offset DEVICE_STATUS, length 1; read it,
    // write ACKNOWLEDGE through it; then length 4 at the device config.
    let c = CAP_PCI_CFG as u16;
    let mut b = Builder::new(0);
    b.cfg_write(c + 4, 1, MODERN_BAR as u64)
        .cfg_write(c + 8, 4, common::DEVICE_STATUS)
        .cfg_write(c + 12, 4, 1)
        .cfg_read(c + 16, 4)
        .cfg_write(c + 16, 1, 1)
        .cfg_write(c + 8, 4, DEVICE_OFFSET)
        .cfg_write(c + 12, 4, 4)
        .cfg_read(c + 16, 4)
        .cfg_write(c + 4, 1, 0)
        .cfg_write(c + 8, 4, legacy::STATUS)
        .cfg_write(c + 12, 4, 1)
        .cfg_read(c + 16, 1);
    out.push(("pci_cfg_window", b.bytes()));

    // MSI-X: program entries, function mask, per-vector mask, kick while
    // masked (pending bit), unmask (delivered), PBA read.
    let mut b = Builder::new(2);
    b.chain(0, 0x1000, 0, 0, 0)
        .modern_probe(seed_features(false), 1, true);
    for e in 0..2u8 {
        b.raw(&[op::MSIX_ENTRY, e, 0])
            .raw(&0xfee0_0000u32.to_le_bytes())
            .raw(&[op::MSIX_ENTRY, e, 2])
            .raw(&(0x40 + u32::from(e)).to_le_bytes())
            .raw(&[op::MSIX_ENTRY, e, 3])
            .raw(&1u32.to_le_bytes());
    }
    b.raw(&[op::NOTIFY, 0, op::SETTLE])
        .bar_read(MSIX_BAR as u8, 0x800, 8)
        .raw(&[op::MSIX_ENTRY, 1, 3])
        .raw(&0u32.to_le_bytes())
        .cfg_write(
            (CAP_MSIX + msix_regs::CAP_CONTROL) as u16,
            2,
            u64::from(msix_regs::CTRL_ENABLE | msix_regs::CTRL_FUNCTION_MASK),
        )
        .cfg_read((CAP_MSIX + msix_regs::CAP_CONTROL) as u16, 2)
        .bar_read(MSIX_BAR as u8, 0x10, 4);
    out.push(("msix_masking", b.bytes()));

    // Region A unmapped under a running queue: the next kick breaks the
    // ring (DEVICE_NEEDS_RESET); a reset and the probe again, A back.
    let mut b = Builder::new(2);
    b.chain(0, 0x1000, 0, 0, 0)
        .modern_probe(seed_features(false), 1, true)
        .raw(&[op::MEMORY, 0]);
    notify(&mut b, 0);
    b.raw(&[op::SETTLE])
        .bar_read(MODERN_BAR as u8, common::DEVICE_STATUS as u16, 1)
        .raw(&[op::RESET, 0, op::MEMORY, 2])
        .modern_probe(seed_features(false), 1, true);
    notify(&mut b, 0);
    b.raw(&[op::SETTLE, op::MEMORY, 1]);
    out.push(("unmap_running", b.bytes()));

    // Resets at every stage, and QUEUE_PFN 0 (a legacy reset).
    let mut b = Builder::new(0);
    b.common(common::DEVICE_STATUS, u32::from(ACKNOWLEDGE))
        .raw(&[op::RESET, 0])
        .common(common::DEVICE_STATUS, u32::from(ACKNOWLEDGE | DRIVER))
        .common(common::DRIVER_FEATURE, 0)
        .common(
            common::DEVICE_STATUS,
            u32::from(ACKNOWLEDGE | DRIVER | FEATURES_OK),
        )
        .raw(&[op::RESET, 1])
        .modern_probe(seed_features(false), 2, true)
        .common(common::DEVICE_STATUS, 0)
        .legacy(legacy::STATUS, 1)
        .legacy(legacy::QUEUE_PFN, 2)
        .legacy(legacy::QUEUE_PFN, 0)
        .raw(&[op::RESET, 1]);
    out.push(("resets", b.bytes()));

    // Every register at widths 1, 2, 4 and 8 (reads), config space too.
    let mut b = Builder::new(0);
    for w in 0..4u8 {
        let step = [1u16, 2, 4, 8][usize::from(w)];
        for off in (0..0x100u16).step_by(usize::from(step.max(4))) {
            b.cfg_read(off, w);
        }
        for off in (0..0x80u16).step_by(usize::from(step)) {
            b.bar_read(0, off, w);
        }
        for off in (0..0x40u16).step_by(usize::from(step)) {
            b.bar_read(MODERN_BAR as u8, off, w);
        }
        b.bar_read(MODERN_BAR as u8, DEVICE_OFFSET as u16, w);
    }
    out.push(("sweep", b.bytes()));

    // A guest refilling its ring after DRIVER_OK (a second request).
    let mut b = Builder::new(2);
    b.chain(0, 0x1000, 0, 0, 0)
        .image(0x4200, &[0x5a; 512])
        .modern_probe(seed_features(false), 1, true);
    notify(&mut b, 0);
    let mut later = Builder::new(0);
    later.chain(0, 0x1000, 1, 1, 1);
    // Descriptors 3..6 and avail entry 1, written by the guest now.
    b.raw(&[op::SETTLE, op::GUEST_WRITE])
        .raw(&(0x30u16 / 4).to_le_bytes())
        .raw(&[48])
        .raw(&later.image[0x30..0x60])
        .raw(&[op::GUEST_WRITE])
        .raw(&(0x3100u16 / 4).to_le_bytes())
        .raw(&[16])
        .raw(&later.image[0x3100..0x3110])
        .raw(&[op::GUEST_WRITE])
        .raw(&(0x1000u16 / 4).to_le_bytes())
        .raw(&[8])
        .raw(&later.image[0x1000..0x1008]);
    notify(&mut b, 0);
    b.raw(&[op::SETTLE]);
    out.push(("refill", b.bytes()));
    out
}
