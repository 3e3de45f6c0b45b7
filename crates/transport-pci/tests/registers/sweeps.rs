//! Sweeps over the whole register file: every offset at every size (and
//! past the BARs), wide reads equal to byte reads, and the read-only
//! registers staying read-only.

use vblk_transport_pci::regs::{common, layout::*, legacy};

use crate::{legacy_probe, Rig, DISK, QSIZE};

#[test]
fn every_offset_every_size_and_past_the_bars() {
    let mut r = Rig::new();
    for bar in 0..6usize {
        let size = r.f.bar_size(bar);
        for off in (0..size.max(64) + 64).step_by(1) {
            for n in [1usize, 2, 4] {
                let _ = r.rd(bar, off, n);
                // Writes of zero to every offset except the reset-prone status
                // fields exercise the write paths without wedging the device.
                r.wr(bar, off, n, 0);
            }
        }
        // Far past the BAR and at u64::MAX: zero, no panic.
        assert_eq!(r.rd(bar, u64::MAX - 1, 4), 0);
        r.wr(bar, u64::MAX - 2, 4, 0xffff_ffff);
    }
    for off in 0..300u64 {
        for n in [1usize, 2, 4] {
            let _ = r.cfg_rd(off, n);
        }
    }
    r.cfg_wr(u64::MAX, 4, 1);
}

/// For registers without read side effects, a wide read is the
/// concatenation of byte reads: every offset, sizes 1, 2 and 4.
#[test]
fn every_offset_reads_the_same_at_every_width() {
    let mut r = Rig::new();
    legacy_probe(&mut r, true);
    r.wr(4, COMMON_OFFSET + common::QUEUE_SELECT, 2, 1);
    let check = |r: &mut Rig, bar: usize, range: std::ops::Range<u64>, skip: &[u64]| {
        for off in range {
            for n in [2usize, 4] {
                if (off..off + n as u64).any(|o| skip.contains(&o)) {
                    continue;
                }
                let wide = r.rd(bar, off, n);
                let bytes: u64 = (0..n as u64)
                    .map(|i| r.rd(bar, off + i, 1) << (8 * i))
                    .sum();
                assert_eq!(wide, bytes, "BAR{bar} offset {off:#x} size {n}");
            }
        }
    };
    // BAR0 (ISR at 19 clears on read).
    check(&mut r, 0, 0..LEGACY_BAR_SIZE - 4, &[legacy::ISR]);
    // BAR4 common cfg and device config.
    check(&mut r, 4, COMMON_OFFSET..COMMON_OFFSET + 64, &[]);
    check(&mut r, 4, DEVICE_OFFSET..DEVICE_OFFSET + 64, &[]);
    // BAR1 MSI-X table and PBA.
    check(&mut r, MSIX_BAR, 0..64, &[]);
    check(&mut r, MSIX_BAR, MSIX_PBA_OFFSET..MSIX_PBA_OFFSET + 8, &[]);
    // Config space.
    for off in 0..252u64 {
        let wide = r.cfg_rd(off, 4);
        let bytes: u64 = (0..4u64).map(|i| r.cfg_rd(off + i, 1) << (8 * i)).sum();
        assert_eq!(wide, bytes, "config offset {off:#x}");
    }
}

#[test]
fn read_only_registers_stay_read_only() {
    let mut r = Rig::new();
    legacy_probe(&mut r, false);
    let host = r.rd(0, legacy::HOST_FEATURES, 4);
    r.wr(0, legacy::HOST_FEATURES, 4, 0);
    assert_eq!(r.rd(0, legacy::HOST_FEATURES, 4), host);
    r.wr(0, legacy::QUEUE_NUM, 2, 16);
    assert_eq!(
        r.rd(0, legacy::QUEUE_NUM, 2),
        QSIZE,
        "legacy queue size is fixed"
    );
    // Device config (capacity) through BAR0 and BAR4.
    r.wr(0, 20, 4, 0);
    assert_eq!(r.rd(0, 20, 4), DISK / 512);
    r.wr(4, DEVICE_OFFSET, 4, 0);
    assert_eq!(r.rd(4, DEVICE_OFFSET, 8), DISK / 512);
    // Modern: num_queues, device_feature, config_generation, notify_off.
    let c = COMMON_OFFSET;
    for (f, n) in [
        (common::NUM_QUEUES, 2),
        (common::DEVICE_FEATURE, 4),
        (common::CONFIG_GENERATION, 1),
        (common::QUEUE_NOTIFY_OFF, 2),
    ] {
        let before = r.rd(4, c + f, n);
        r.wr(4, c + f, n, 0x5a5a_5a5a);
        assert_eq!(r.rd(4, c + f, n), before, "common cfg {f}");
    }
    // The MSI-X PBA.
    r.wr(MSIX_BAR, MSIX_PBA_OFFSET, 4, 0xffff_ffff);
    assert_eq!(r.rd(MSIX_BAR, MSIX_PBA_OFFSET, 4), 0);
    // The MSI-X table size in Message Control.
    r.cfg_wr(CAP_MSIX as u64 + 2, 2, 0x07ff);
    assert_eq!(r.cfg_rd(CAP_MSIX as u64 + 2, 2), 2);
    // Capability pointers, interrupt pin, class.
    r.cfg_wr(0x34, 1, 0);
    r.cfg_wr(0x3d, 1, 4);
    r.cfg_wr(0x08, 4, 0);
    assert_eq!(r.cfg_rd(0x34, 1), CAP_MSIX as u64);
    assert_eq!(r.cfg_rd(0x3d, 1), 1);
    assert_eq!(r.cfg_rd(0x0b, 1), 1);
    // Interrupt Line is the firmware's scratch byte.
    r.cfg_wr(0x3c, 1, 11);
    assert_eq!(r.cfg_rd(0x3c, 1), 11);
}
