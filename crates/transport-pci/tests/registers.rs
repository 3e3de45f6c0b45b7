//! Replays the register sequences Linux's virtio_pci driver performs
//! (legacy and modern probe, MSI-X, INTx, resets) against the emulated
//! function, with a real request in guest memory.

use std::sync::Arc;

use vblk_backend::MemBackend;
use vblk_device::{BlkConfig, BlkDevice};
use vblk_transport_pci::irq::{CountingLine, Line};
use vblk_transport_pci::regs::{common, layout::*, legacy, msix, pci, status::*};
use vblk_transport_pci::PciFunction;
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};

const DISK: u64 = 1 << 20;
const QSIZE: u64 = 256;

struct Rig {
    f: PciFunction,
    mem: GuestMemoryMmap,
    backend: MemBackend,
    dev: Arc<BlkDevice>,
    msix: Vec<Arc<CountingLine>>,
    intx: Arc<CountingLine>,
}

impl Rig {
    fn new() -> Rig {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
        let backend = MemBackend::new(DISK);
        let mut cfg = BlkConfig::new(DISK);
        cfg.num_queues = 2;
        let dev = Arc::new(BlkDevice::new(cfg, Arc::new(backend.clone())));
        let f = PciFunction::new(dev.clone(), GuestMemoryAtomic::new(mem.clone())).unwrap();
        let msix: Vec<Arc<CountingLine>> =
            (0..3).map(|_| Arc::new(CountingLine::default())).collect();
        for (i, l) in msix.iter().enumerate() {
            f.irq().set_msix_line(i, Some(l.clone() as Arc<dyn Line>));
        }
        let intx = Arc::new(CountingLine::default());
        f.irq().set_intx_line(Some(intx.clone() as Arc<dyn Line>));
        Rig {
            f,
            mem,
            backend,
            dev,
            msix,
            intx,
        }
    }

    fn rd(&mut self, bar: usize, off: u64, n: usize) -> u64 {
        let mut b = [0u8; 8];
        self.f.bar_read(bar, off, &mut b[..n]);
        u64::from_le_bytes(b)
    }

    fn wr(&mut self, bar: usize, off: u64, n: usize, v: u64) {
        self.f.bar_write(bar, off, &v.to_le_bytes()[..n]);
        // Requests run on the queue threads: wait for a kick's effects.
        self.f.settle();
    }

    fn cfg_rd(&mut self, off: u64, n: usize) -> u64 {
        let mut b = [0u8; 8];
        self.f.config_read(off, &mut b[..n]);
        u64::from_le_bytes(b)
    }

    fn cfg_wr(&mut self, off: u64, n: usize, v: u64) {
        self.f.config_write(off, &v.to_le_bytes()[..n]);
        self.f.settle();
    }

    fn enable_msix(&mut self) {
        let ctrl = self.cfg_rd(CAP_MSIX as u64 + 2, 2);
        self.cfg_wr(CAP_MSIX as u64 + 2, 2, ctrl | u64::from(msix::CTRL_ENABLE));
    }

    /// Put one IN request (sector 1, 512 bytes) at `desc` as chain head 0
    /// of a split ring at desc/avail/used; returns where status lands.
    fn request(&self, desc: u64, avail: u64, avail_idx: u16) -> u64 {
        let (hdr, data, status) = (0x30_0000u64, 0x30_1000u64, 0x30_2000u64);
        let mut h = [0u8; 16];
        h[8..16].copy_from_slice(&1u64.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(hdr)).unwrap();
        self.mem.write_obj(0xeeu8, GuestAddress(status)).unwrap();
        let d = |i: u64, a: u64, l: u32, fl: u16, n: u16| {
            let mut b = [0u8; 16];
            b[0..8].copy_from_slice(&a.to_le_bytes());
            b[8..12].copy_from_slice(&l.to_le_bytes());
            b[12..14].copy_from_slice(&fl.to_le_bytes());
            b[14..16].copy_from_slice(&n.to_le_bytes());
            self.mem
                .write_slice(&b, GuestAddress(desc + 16 * i))
                .unwrap();
        };
        d(0, hdr, 16, 1, 1);
        d(1, data, 512, 3, 2);
        d(2, status, 1, 2, 0);
        self.mem
            .write_obj(
                0u16,
                GuestAddress(avail + 4 + 2 * u64::from(avail_idx % QSIZE as u16)),
            )
            .unwrap();
        self.mem
            .write_obj(avail_idx + 1, GuestAddress(avail + 2))
            .unwrap();
        status
    }

    fn stat(&self, q: usize, name: &str) -> u64 {
        self.dev.stats().queues[q]
            .snapshot()
            .into_iter()
            .find(|(k, _)| *k == name)
            .unwrap()
            .1
    }
}

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

fn legacy_probe(r: &mut Rig, msix_on: bool) -> (u64, u64) {
    if msix_on {
        r.enable_msix();
    }
    r.wr(0, legacy::STATUS, 1, 0);
    r.wr(0, legacy::STATUS, 1, u64::from(ACKNOWLEDGE));
    r.wr(0, legacy::STATUS, 1, u64::from(ACKNOWLEDGE | DRIVER));
    let host = r.rd(0, legacy::HOST_FEATURES, 4);
    assert_eq!(host >> 32, 0);
    r.wr(0, legacy::GUEST_FEATURES, 4, host & !(1 << 29));
    assert_eq!(r.rd(0, legacy::GUEST_FEATURES, 4), host & !(1 << 29));
    // Device config: at 20 without MSI-X, 24 with.
    let cfg = if msix_on { 24 } else { 20 };
    assert_eq!(r.rd(0, cfg, 4), DISK / 512);
    if msix_on {
        r.wr(0, legacy::MSI_CONFIG_VECTOR, 2, 0);
        assert_eq!(r.rd(0, legacy::MSI_CONFIG_VECTOR, 2), 0);
    }
    r.wr(0, legacy::QUEUE_SEL, 2, 0);
    let num = r.rd(0, legacy::QUEUE_NUM, 2);
    assert_eq!(num, QSIZE);
    if msix_on {
        r.wr(0, legacy::MSI_QUEUE_VECTOR, 2, 1);
        assert_eq!(r.rd(0, legacy::MSI_QUEUE_VECTOR, 2), 1);
    }
    let pfn = 0x10u64; // rings at 64 KiB
    r.wr(0, legacy::QUEUE_PFN, 4, pfn);
    assert_eq!(r.rd(0, legacy::QUEUE_PFN, 4), pfn);
    r.wr(
        0,
        legacy::STATUS,
        1,
        u64::from(ACKNOWLEDGE | DRIVER | DRIVER_OK),
    );
    assert_eq!(r.f.status(), ACKNOWLEDGE | DRIVER | DRIVER_OK);
    let desc = pfn << 12;
    let avail = desc + 16 * num;
    let used = (avail + 6 + 2 * num + 4095) & !4095;
    (desc, used)
}

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
