//! A split ring in guest memory driven through the device's runners: the
//! harness the runner and pipeline tests share.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use vblk_backend::{Backend, MemBackend};
use vblk_device::runner::{RingSetup, RunnerOptions, Runners};
use vblk_device::{BlkConfig, BlkDevice, InflightLog};
use vblk_queue::{Queue, QueueT};
use vblk_testkit::blk::header;
use vblk_testkit::RecordingInterrupt;
use vblk_testkit::{Desc, SplitRing};
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

pub const QSIZE: u16 = 64;
pub const DESC: u64 = 0;
pub const AVAIL: u64 = 0x1000;
pub const USED: u64 = 0x2000;
pub const BUFS: u64 = 0x10_0000;
pub const DISK: u64 = 1 << 20;

pub struct Rig<B> {
    pub dev: Arc<BlkDevice>,
    pub mem: GuestMemoryMmap,
    pub atomic: GuestMemoryAtomic<GuestMemoryMmap>,
    pub backend: Arc<B>,
    pub runners: Runners,
    pub irq: Arc<RecordingInterrupt>,
    pub kick: Arc<EventFd>,
    pub avail_idx: u16,
    next_desc: u16,
    /// The ring's layout and driver side (the kit's builder).
    pub ring: SplitRing,
}

pub fn queue() -> Queue {
    let mut q = Queue::new(QSIZE).unwrap();
    q.set_size(QSIZE);
    q.set_desc_table_address(Some(DESC as u32), Some(0));
    q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    q.set_used_ring_address(Some(USED as u32), Some(0));
    q.set_ready(true);
    q
}

impl Rig<MemBackend> {
    pub fn new(opts: RunnerOptions) -> Self {
        Rig::with_backend(MemBackend::new(DISK), opts)
    }
}

impl<B: Backend + 'static> Rig<B> {
    pub fn with_backend(backend: B, opts: RunnerOptions) -> Self {
        let backend = Arc::new(backend);
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap();
        let atomic = GuestMemoryAtomic::new(mem.clone());
        let dev = Arc::new(BlkDevice::new(
            BlkConfig::new(DISK),
            backend.clone() as Arc<dyn Backend>,
        ));
        let runners = Runners::new(&dev, 0, opts).unwrap();
        Rig {
            dev: dev.clone(),
            mem,
            atomic,
            backend,
            runners,
            irq: Arc::new(RecordingInterrupt::new()),
            kick: Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()),
            avail_idx: 0,
            next_desc: 0,
            ring: SplitRing::new(QSIZE, DESC, AVAIL, USED),
        }
    }

    pub fn setup(&self, log: Option<Box<dyn InflightLog>>, resubmit: Vec<u16>) -> RingSetup {
        RingSetup {
            queue: queue(),
            mem: self.atomic.clone(),
            kick: Some(self.kick.clone()),
            irq: self.irq.clone(),
            on_broken: Box::new(|e| panic!("ring broken: {e}")),
            inflight: log,
            resubmit,
            packed: false,
        }
    }

    pub fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.ring
            .desc(&self.mem, i, Desc::new(addr, len, flags, next));
    }

    /// Write a 3-descriptor request (type, sector, 512 data bytes) into the
    /// table; returns (head, status address, data address). Not published.
    pub fn request(&mut self, t: u32, sector: u64, fill: u8) -> (u16, u64, u64) {
        self.request_len(t, sector, fill, 512)
    }

    /// Like [`Rig::request`] with `len` data bytes (at most 64 KiB).
    pub fn request_len(&mut self, t: u32, sector: u64, fill: u8, len: u32) -> (u16, u64, u64) {
        assert!(len <= 0x1_0000);
        let head = self.next_desc;
        self.next_desc = (self.next_desc + 3) % (QSIZE - QSIZE % 3);
        let base = BUFS + u64::from(head) * 0x2_0000;
        let (hdr, status, data) = (base, base + 0x200, base + 0x1000);
        self.mem
            .write_slice(&header(t, sector), GuestAddress(hdr))
            .unwrap();
        self.mem
            .write_slice(&vec![fill; len as usize], GuestAddress(data))
            .unwrap();
        self.mem.write_obj(0xeeu8, GuestAddress(status)).unwrap();
        let wr = if t == 0 { 2 } else { 0 };
        self.desc(head, hdr, 16, 1, head + 1);
        self.desc(head + 1, data, len, 1 | wr, head + 2);
        self.desc(head + 2, status, 1, 2, 0);
        (head, status, data)
    }

    pub fn publish(&mut self, head: u16) {
        self.ring.avail_idx = self.avail_idx;
        self.ring.publish(&self.mem, head);
        self.avail_idx = self.ring.avail_idx;
    }

    pub fn used_idx(&self) -> u16 {
        self.ring.used_idx(&self.mem)
    }

    pub fn wait_used(&self, n: u16) {
        let t = Instant::now();
        while self.used_idx() != n {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "used idx {} != {n}",
                self.used_idx()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn status(&self, at: u64) -> u8 {
        self.mem.read_obj(GuestAddress(at)).unwrap()
    }
}

impl<B> Rig<B> {
    /// Queue 0's counter `name`.
    pub fn dev_stat(&self, name: &str) -> u64 {
        self.dev.stats().queues[0]
            .snapshot()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no counter {name}"))
    }

    /// Used element `i` (id, len).
    pub fn used_elem(&self, i: u16) -> (u32, u32) {
        self.ring.used_entry(&self.mem, i)
    }
}
