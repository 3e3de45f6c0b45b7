//! Test helpers: register access at three levels (the function itself,
//! the vfio-user backend, a real vfio-user client over the socket), guest
//! RAM in a memfd, a split ring the test fills like a driver, and Linux's
//! probe sequences.
#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;

use std::sync::Arc;
use vblk_testkit::blk::header;
use vblk_testkit::{SplitRing, F_WRITE};

use vblk_transport_pci::regs::{common, layout::*, legacy, msix, status::*};
use vblk_transport_pci::vfio::Backend;
use vblk_transport_pci::PciFunction;
use vblk_vfio_user::Backend as _;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const CONFIG_REGION: u32 = 7;

/// Register access, whatever carries it.
pub trait Regs {
    fn bar_rd(&mut self, bar: usize, off: u64, n: usize) -> u64;
    fn bar_wr(&mut self, bar: usize, off: u64, n: usize, v: u64);
    fn cfg_rd(&mut self, off: u64, n: usize) -> u64;
    fn cfg_wr(&mut self, off: u64, n: usize, v: u64);
}

impl Regs for PciFunction {
    fn bar_rd(&mut self, bar: usize, off: u64, n: usize) -> u64 {
        let mut b = [0u8; 8];
        self.bar_read(bar, off, &mut b[..n]);
        u64::from_le_bytes(b)
    }
    fn bar_wr(&mut self, bar: usize, off: u64, n: usize, v: u64) {
        self.bar_write(bar, off, &v.to_le_bytes()[..n]);
        // Requests run on the queue threads: wait for a kick's effects.
        self.settle();
    }
    fn cfg_rd(&mut self, off: u64, n: usize) -> u64 {
        let mut b = [0u8; 8];
        self.config_read(off, &mut b[..n]);
        u64::from_le_bytes(b)
    }
    fn cfg_wr(&mut self, off: u64, n: usize, v: u64) {
        self.config_write(off, &v.to_le_bytes()[..n]);
    }
}

impl Regs for Backend {
    fn bar_rd(&mut self, bar: usize, off: u64, n: usize) -> u64 {
        let mut b = [0u8; 8];
        self.region_read(bar as u32, off, &mut b[..n]).unwrap();
        u64::from_le_bytes(b)
    }
    fn bar_wr(&mut self, bar: usize, off: u64, n: usize, v: u64) {
        self.region_write(bar as u32, off, &v.to_le_bytes()[..n])
            .unwrap();
        self.function().settle();
    }
    fn cfg_rd(&mut self, off: u64, n: usize) -> u64 {
        let mut b = [0u8; 8];
        self.region_read(CONFIG_REGION, off, &mut b[..n]).unwrap();
        u64::from_le_bytes(b)
    }
    fn cfg_wr(&mut self, off: u64, n: usize, v: u64) {
        self.region_write(CONFIG_REGION, off, &v.to_le_bytes()[..n])
            .unwrap();
    }
}

impl Regs for vfio_user::Client {
    fn bar_rd(&mut self, bar: usize, off: u64, n: usize) -> u64 {
        let mut b = [0u8; 8];
        self.region_read(bar as u32, off, &mut b[..n]).unwrap();
        u64::from_le_bytes(b)
    }
    fn bar_wr(&mut self, bar: usize, off: u64, n: usize, v: u64) {
        self.region_write(bar as u32, off, &v.to_le_bytes()[..n])
            .unwrap();
    }
    fn cfg_rd(&mut self, off: u64, n: usize) -> u64 {
        let mut b = [0u8; 8];
        self.region_read(CONFIG_REGION, off, &mut b[..n]).unwrap();
        u64::from_le_bytes(b)
    }
    fn cfg_wr(&mut self, off: u64, n: usize, v: u64) {
        self.region_write(CONFIG_REGION, off, &v.to_le_bytes()[..n])
            .unwrap();
    }
}

/// Guest RAM at guest address 0, in a memfd as QEMU's
/// memory-backend-memfd,share=on: the test's view and the device's are the
/// same pages.
pub struct GuestRam {
    pub file: File,
    pub mem: GuestMemoryMmap,
    pub size: u64,
}

impl GuestRam {
    pub fn new(size: u64) -> GuestRam {
        let ram = vblk_testkit::GuestRam::memfd(size).unwrap();
        GuestRam {
            file: ram.file.expect("memfd"),
            mem: ram.mem,
            size,
        }
    }
}

/// An eventfd: (our end, the end handed to the device).
pub fn eventfd() -> (File, File) {
    // SAFETY: plain eventfd(2); the result is checked and owned by the File.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
    assert!(fd >= 0, "eventfd");
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let f = unsafe { File::from_raw_fd(fd) };
    let g = f.try_clone().unwrap();
    (f, g)
}

/// Take an eventfd's count (0 if it was not signalled).
pub fn take(f: &File) -> u64 {
    let mut b = [0u8; 8];
    match (&*f).read(&mut b) {
        Ok(8) => u64::from_ne_bytes(b),
        _ => 0,
    }
}

/// Wait up to a second for an eventfd to be signalled; its count.
pub fn wait_signal(f: &File) -> u64 {
    for _ in 0..200 {
        let n = take(f);
        if n > 0 {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    0
}

pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;

/// A split virtqueue the test drives as a driver would.
pub struct Ring {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub size: u16,
    pub avail_idx: u16,
    /// Scratch area for headers, data and status bytes.
    pub scratch: u64,
}

impl Ring {
    pub fn new(desc: u64, avail: u64, used: u64, size: u16, scratch: u64) -> Ring {
        Ring {
            desc,
            avail,
            used,
            size,
            avail_idx: 0,
            scratch,
        }
    }

    /// The kit's view of this ring.
    pub fn split(&self) -> SplitRing {
        let mut r = SplitRing::new(self.size, self.desc, self.avail, self.used);
        r.avail_idx = self.avail_idx;
        r
    }

    /// Publish a 3-descriptor request (header, data, status) for `len`
    /// bytes at `sector`; the data buffer is at the returned address, the
    /// status byte right after it (pre-set to 0xee).
    pub fn request(
        &mut self,
        mem: &GuestMemoryMmap,
        kind: u32,
        sector: u64,
        data: &[u8],
    ) -> (u64, u64) {
        let slot = self.avail_idx % self.size;
        let head = (slot % (self.size / 3)) * 3;
        // Requests complete synchronously: 8 scratch slots of 16 KiB do.
        assert!(data.len() < 0x3000);
        let base = self.scratch + u64::from(slot % 8) * 0x4000;
        let (hdr, buf, status) = (base, base + 0x1000, base + 0x1000 + data.len() as u64);
        mem.write_slice(&header(kind, sector), GuestAddress(hdr))
            .unwrap();
        mem.write_slice(data, GuestAddress(buf)).unwrap();
        mem.write_obj(0xeeu8, GuestAddress(status)).unwrap();
        let data_flags = if kind == VIRTIO_BLK_T_IN { F_WRITE } else { 0 };
        let mut ring = self.split();
        ring.chain_at(
            mem,
            head,
            &[
                (hdr, 16, 0),
                (buf, data.len() as u32, data_flags),
                (status, 1, F_WRITE),
            ],
        );
        ring.publish(mem, head);
        self.avail_idx = ring.avail_idx;
        (buf, status)
    }

    pub fn used_idx(&self, mem: &GuestMemoryMmap) -> u16 {
        self.split().used_idx(mem)
    }
}

/// Wait (up to 5 s) until the status byte at `at` is no longer the
/// placeholder `Ring::request` put there (requests complete on the queue
/// threads, after the kick's reply).
pub fn wait_status(mem: &GuestMemoryMmap, at: u64) -> u8 {
    let t = std::time::Instant::now();
    loop {
        let s = status_byte(mem, at);
        if s != 0xee || t.elapsed() > std::time::Duration::from_secs(5) {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

pub fn status_byte(mem: &GuestMemoryMmap, at: u64) -> u8 {
    mem.read_obj(GuestAddress(at)).unwrap()
}

pub fn read_bytes(mem: &GuestMemoryMmap, at: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    mem.read_slice(&mut v, GuestAddress(at)).unwrap();
    v
}

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

/// A device on a memory backend.
pub fn device(disk: u64, queues: u16) -> (Arc<vblk_device::BlkDevice>, vblk_backend::MemBackend) {
    let backend = vblk_backend::MemBackend::new(disk);
    let mut cfg = vblk_device::BlkConfig::new(disk);
    cfg.num_queues = queues;
    let dev = Arc::new(vblk_device::BlkDevice::new(cfg, Arc::new(backend.clone())));
    (dev, backend)
}

pub fn counter(dev: &vblk_device::BlkDevice, name: &str) -> u64 {
    let s = dev.stats();
    let mut total = 0;
    for (k, v) in s.device.snapshot() {
        if k == name {
            total += v;
        }
    }
    for q in &s.queues {
        for (k, v) in q.snapshot() {
            if k == name {
                total += v;
            }
        }
    }
    total
}

pub const MODERN: usize = MODERN_BAR;
