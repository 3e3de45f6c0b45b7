//! The device core against a driver-side split ring (the test kit's
//! `SplitRing`) in real guest memory: every request type, every
//! error path, hostile chains, batching and interrupt suppression. Every
//! test checks the status byte, the used length and the backing bytes (or,
//! when the ring itself is broken, that nothing was used and nothing
//! written).
//!
//! The ring parts sit at fixed addresses (descriptor table, avail and used
//! rings). virtio-queue's own mock is not used: in virtio-queue 0.18
//! `MockSplitQueue::create` lays the used ring over the second half of the
//! avail ring for queues of 16 and more (rust-vmm/vm-virtio PR #400).

mod batches;
mod broken_ring;
mod chain_layout;
mod discard_write_zeroes;
mod errors;
mod interrupts;
mod out_of_range;
mod requests;

use std::sync::Arc;

use vblk_backend::MemBackend;
use vblk_device::{BlkConfig, BlkDevice, QueueError, QueueWorker};
use vblk_interrupt::InterruptKind;
use vblk_queue::{Queue, QueueT};
use vblk_testkit::RecordingInterrupt;
use vblk_testkit::{Desc, SplitRing};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const QSIZE: u16 = 16;
const DESC: u64 = 0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const MIB: u64 = 0x10_0000;
/// Guest memory: [0, 1 MiB) and [1 MiB, 2 MiB) are adjacent regions, then a
/// hole [2 MiB, 3 MiB), then [3 MiB, 4 MiB). The ring sits at 0.
const REGION2: u64 = MIB;
const HOLE: u64 = 2 * MIB;
const REGION3: u64 = 3 * MIB;
const HDR: u64 = 0x1_0000;
const DATA: u64 = 0x2_0000;
const STATUS: u64 = 0x4_0000;
const TABLE: u64 = 0x5_0000;

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const T_DISCARD: u32 = 11;
const T_WRITE_ZEROES: u32 = 13;

const OK: u8 = 0;
const IOERR: u8 = 1;
const UNSUPP: u8 = 2;
/// The status location is filled with this before a request: still there
/// afterwards means the device did not write a status.
const UNTOUCHED: u8 = 0xee;

const DISK: u64 = 64 * 1024;
const SECTORS: u64 = DISK / 512;

/// Readable / writable, for the `(addr, len, writable)` chain lists.
const R: bool = false;
const W: bool = true;

const Q0: InterruptKind = InterruptKind::Queue(0);

fn q0() -> Vec<InterruptKind> {
    vec![Q0]
}

fn none() -> Vec<InterruptKind> {
    Vec::new()
}

/// The disk's initial contents: byte i is i % 251 (no run of zeroes).
fn pristine() -> Vec<u8> {
    (0..DISK as usize).map(|i| (i % 251) as u8).collect()
}

fn orig(off: u64, n: usize) -> Vec<u8> {
    pristine()[off as usize..off as usize + n].to_vec()
}

/// What one request produced: status byte, used length, interrupts.
type Outcome = (u8, u32, Vec<InterruptKind>);

struct Rig {
    mem: &'static GuestMemoryMmap,
    /// The driver side: the test kit's split ring.
    ring: SplitRing,
    queue: Queue,
    backend: MemBackend,
    dev: BlkDevice,
    worker: QueueWorker,
    irq: RecordingInterrupt,
    used_seen: u16,
    /// What the backing store should hold.
    expect: Vec<u8>,
}

impl Rig {
    fn new() -> Rig {
        Self::with(|_| {}, false)
    }

    fn with(cfg: impl FnOnce(&mut BlkConfig), event_idx: bool) -> Rig {
        // Leaked so the mock ring can borrow it for the whole test.
        let mem: &'static GuestMemoryMmap = Box::leak(Box::new(
            GuestMemoryMmap::<()>::from_ranges(&[
                (GuestAddress(0), MIB as usize),
                (GuestAddress(REGION2), MIB as usize),
                (GuestAddress(REGION3), MIB as usize),
            ])
            .unwrap(),
        ));
        let ring = SplitRing::new(QSIZE, DESC, AVAIL, USED);
        let backend = MemBackend::new(DISK);
        backend.fill(0, &pristine());
        let mut c = BlkConfig::new(DISK);
        c.set_serial("mock-serial");
        cfg(&mut c);
        let dev = BlkDevice::new(c, Arc::new(backend.clone()));
        let worker = dev.worker(0).unwrap();
        let mut queue = Queue::new(QSIZE).unwrap();
        queue.set_size(QSIZE);
        queue.set_desc_table_address(Some(DESC as u32), Some(0));
        queue.set_avail_ring_address(Some(AVAIL as u32), Some(0));
        queue.set_used_ring_address(Some(USED as u32), Some(0));
        queue.set_event_idx(event_idx);
        queue.set_ready(true);
        Rig {
            mem,
            ring,
            queue,
            backend,
            dev,
            worker,
            irq: RecordingInterrupt::new(),
            used_seen: 0,
            expect: pristine(),
        }
    }

    // ---- driver side

    /// Write descriptor `i` of the ring's table.
    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.ring
            .desc(self.mem, i, Desc::new(addr, len, flags, next));
    }

    /// Write a descriptor anywhere in guest memory (indirect tables).
    fn desc_at(&self, at: u64, addr: u64, len: u32, flags: u16, next: u16) {
        let d = Desc::new(addr, len, flags, next);
        self.mem
            .write_slice(&d.to_bytes(), GuestAddress(at))
            .unwrap();
    }

    /// An indirect table at `at` holding a linked chain; returns its length in bytes.
    fn indirect_table(&self, at: u64, descs: &[(u64, u32, bool)]) -> u32 {
        for (k, &(a, l, w)) in descs.iter().enumerate() {
            let last = k + 1 == descs.len();
            let flags = if w { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            self.desc_at(at + 16 * k as u64, a, l, flags, k as u16 + 1);
        }
        16 * descs.len() as u32
    }

    /// Write `descs` at table indexes `first..`, linked with NEXT.
    fn chain_at(&self, first: u16, descs: &[(u64, u32, u16)]) {
        for (k, &(a, l, f)) in descs.iter().enumerate() {
            let i = first + k as u16;
            let last = k + 1 == descs.len();
            let (f, next) = if last { (f, 0) } else { (f | F_NEXT, i + 1) };
            self.desc(i, a, l, f, next);
        }
    }

    /// Put `head` on the avail ring and bump the avail index.
    fn publish(&self, head: u16) {
        // The avail index in memory is the truth (tests move it by hand).
        let mut ring = self.ring.clone();
        ring.avail_idx = self.avail_idx();
        ring.publish(self.mem, head);
    }

    fn avail_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(AVAIL + 2)).unwrap()
    }

    fn set_avail_idx(&mut self, idx: u16) {
        self.ring.set_avail_idx(self.mem, idx);
    }

    fn header(&self, at: u64, t: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&t.to_le_bytes());
        // Bytes 4..8 (ioprio) are ignored; make them noisy.
        h[4..8].copy_from_slice(&0x5a5a_5a5au32.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.put(at, &h);
    }

    fn put(&self, at: u64, b: &[u8]) {
        self.mem.write_slice(b, GuestAddress(at)).unwrap();
    }

    fn guest(&self, at: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.mem.read_slice(&mut v, GuestAddress(at)).unwrap();
        v
    }

    fn set_avail_flags(&self, flags: u16) {
        self.ring.set_avail_flags(self.mem, flags);
    }

    fn set_used_event(&self, v: u16) {
        self.ring.set_used_event(self.mem, v);
    }

    fn avail_event(&self) -> u16 {
        self.ring.avail_event(self.mem)
    }

    // ---- device side

    fn run(&mut self) -> Result<usize, QueueError> {
        self.worker.process(&mut self.queue, self.mem, &self.irq)
    }

    /// The next used element (id, len), if the device published one.
    fn used(&mut self) -> Option<(u32, u32)> {
        self.ring.used_seen = self.used_seen;
        let e = self.ring.take_used(self.mem);
        self.used_seen = self.ring.used_seen;
        e
    }

    fn read_status(&self, at: u64) -> u8 {
        self.mem.read_obj(GuestAddress(at)).unwrap_or(UNTOUCHED)
    }

    /// Publish `head` (already in the table), process, and return the
    /// status byte at `status_at`, the used length and the interrupts.
    fn run_one(&mut self, head: u16, status_at: u64) -> Outcome {
        let _ = self.mem.write_obj(UNTOUCHED, GuestAddress(status_at));
        self.publish(head);
        assert_eq!(self.run().expect("process failed"), 1, "chains completed");
        let (id, len) = self.used().expect("no used entry");
        assert_eq!(id, u32::from(head), "used id");
        assert!(self.used().is_none(), "more than one used entry");
        (self.read_status(status_at), len, self.irq.take())
    }

    /// Publish `head` and process: the chain must break the ring, with no
    /// used entry and nothing written to guest memory (the status byte and
    /// the data buffer keep their contents).
    fn run_broken(&mut self, head: u16) -> vblk_queue::BrokenChain {
        let _ = self.mem.write_obj(UNTOUCHED, GuestAddress(STATUS));
        let data = self.guest(DATA, 512);
        self.publish(head);
        let e = match self.run() {
            Err(QueueError::Chain(_, h, e)) => {
                assert_eq!(h, head, "broken chain head");
                e
            }
            other => panic!("expected a broken ring, got {other:?}"),
        };
        assert!(
            self.used().is_none(),
            "a broken chain was put on the used ring"
        );
        assert_eq!(self.read_status(STATUS), UNTOUCHED, "status written");
        assert_eq!(self.guest(DATA, 512), data, "data buffer written");
        assert!(self.irq.take().is_empty(), "interrupt for a broken ring");
        e
    }

    /// One chain of `(addr, len, flags)` at table index 0, run; the status
    /// byte is read from the last byte of the last writable descriptor
    /// (`STATUS` if there is none).
    fn submit_raw(&mut self, descs: &[(u64, u32, u16)]) -> Outcome {
        let status_at = descs
            .iter()
            .rev()
            .find(|d| d.2 & F_WRITE != 0 && d.1 > 0)
            .map_or(STATUS, |d| d.0.wrapping_add(u64::from(d.1) - 1));
        self.chain_at(0, descs);
        self.run_one(0, status_at)
    }

    /// One chain of `(addr, len, writable)` descriptors.
    fn submit(&mut self, descs: &[(u64, u32, bool)]) -> Outcome {
        let raw: Vec<_> = descs
            .iter()
            .map(|&(a, l, w)| (a, l, if w { F_WRITE } else { 0 }))
            .collect();
        self.submit_raw(&raw)
    }

    // ---- backing store

    fn expect_write(&mut self, off: u64, bytes: &[u8]) {
        self.expect[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
    }

    fn check_disk(&self) {
        let got = self.backend.snapshot();
        if let Some(i) = (0..got.len()).find(|&i| got[i] != self.expect[i]) {
            panic!(
                "backing store differs at byte {i} (sector {}): {:#04x}, expected {:#04x}",
                i / 512,
                got[i],
                self.expect[i]
            );
        }
    }

    fn counter(&self, name: &str) -> u64 {
        self.dev.stats().queues[0]
            .snapshot()
            .into_iter()
            .find(|(k, _)| *k == name)
            .unwrap_or_else(|| panic!("no counter {name}"))
            .1
    }
}

fn segment(sector: u64, n: u32, flags: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&sector.to_le_bytes());
    b[8..12].copy_from_slice(&n.to_le_bytes());
    b[12..16].copy_from_slice(&flags.to_le_bytes());
    b
}
