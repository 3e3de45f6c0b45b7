//! Replays the register sequences Linux's virtio_pci driver performs
//! (legacy and modern probe, MSI-X, INTx, resets) against the emulated
//! function, with a real request in guest memory.
//!
//! Shared here: the [`Rig`] (a function on a two-queue device, guest
//! memory, counting MSI-X and INTx lines) and Linux's legacy probe. The
//! tests, by topic, are in the modules below.

use std::sync::Arc;

use vblk_backend::MemBackend;
use vblk_device::{BlkConfig, BlkDevice};
use vblk_transport_pci::irq::{CountingLine, Line};
use vblk_transport_pci::regs::{layout::*, legacy, msix, status::*};
use vblk_transport_pci::PciFunction;
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};

// Where each topic lives: the PCI header, BARs and the PCI_CFG window
// (`config_space`); the modern probe, feature negotiation, queue rules and
// resets (`modern_interface`); the legacy BAR0 probe, INTx, QUEUE_PFN and
// legacy resets (`legacy_interface`); MSI-X masking and the config
// interrupt of a broken ring (`interrupts`); every offset at every width
// and the read-only registers (`sweeps`).
mod config_space;
mod interrupts;
mod legacy_interface;
mod modern_interface;
mod sweeps;

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
