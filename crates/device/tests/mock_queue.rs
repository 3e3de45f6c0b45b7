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

use std::sync::Arc;

use vblk_backend::MemBackend;
use vblk_device::{BlkConfig, BlkDevice, QueueError, QueueWorker};
use vblk_interrupt::InterruptKind;
use vblk_queue::{BrokenChain, Queue, QueueT};
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

// ================================================================ requests

#[test]
fn in_reads_disk_bytes_with_exact_used_len() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 3);
    r.put(DATA, &[0xcc; 1100]);
    let out = r.submit(&[(HDR, 16, R), (DATA, 1024, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1025, q0()));
    assert_eq!(r.guest(DATA, 1024), orig(3 * 512, 1024));
    assert_eq!(r.guest(DATA + 1024, 76), vec![0xcc; 76], "wrote past data");
    r.check_disk();
    for (k, v) in [
        ("chains_popped", 1),
        ("req_in", 1),
        ("bytes_read", 1024),
        ("status_ok", 1),
        ("used_pushes", 1),
        ("interrupts", 1),
        ("backend_ios", 1),
        ("malformed_chains", 0),
    ] {
        assert_eq!(r.counter(k), v, "{k}");
    }
}

#[test]
fn out_writes_exactly_its_sectors() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 5);
    r.put(DATA, &[0xab; 1536]);
    let out = r.submit(&[(HDR, 16, R), (DATA, 1536, R), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    r.expect_write(5 * 512, &[0xab; 1536]);
    r.check_disk();
    assert_eq!(r.counter("req_out"), 1);
    assert_eq!(r.counter("bytes_written"), 1536);
}

#[test]
fn flush_reaches_the_backend() {
    let mut r = Rig::new();
    r.header(HDR, T_FLUSH, 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, q0()));
    // A sector number in a FLUSH is ignored.
    r.header(HDR, T_FLUSH, u64::MAX);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, q0()));
    assert_eq!(r.backend.flush_count(), 2);
    assert_eq!(r.counter("req_flush"), 2);
    r.check_disk();
}

#[test]
fn get_id_20_byte_serial_in_a_20_byte_buffer() {
    let mut r = Rig::with(|c| c.set_serial("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), false);
    r.header(HDR, T_GET_ID, 0);
    r.put(DATA, &[0xff; 32]);
    let out = r.submit(&[(HDR, 16, R), (DATA, 20, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 21, q0()));
    assert_eq!(&r.guest(DATA, 20), b"ABCDEFGHIJKLMNOPQRST", "no NUL at 20");
    assert_eq!(r.guest(DATA + 20, 12), vec![0xff; 12]);
    assert_eq!(r.counter("req_get_id"), 1);
    r.check_disk();
}

#[test]
fn get_id_long_short_split_and_empty_buffers() {
    let mut r = Rig::new();
    r.header(HDR, T_GET_ID, 0);
    // Longer than 20 bytes: 20 written, zero padded, used = 21.
    r.put(DATA, &[0xff; 64]);
    let out = r.submit(&[(HDR, 16, R), (DATA, 64, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 21, q0()));
    let id = r.guest(DATA, 21);
    assert_eq!(&id[..11], b"mock-serial");
    assert_eq!(&id[11..20], &[0; 9]);
    assert_eq!(id[20], 0xff, "wrote past the 20-byte ID");
    // Shorter: truncated, used = n + 1.
    r.put(DATA, &[0xff; 64]);
    let out = r.submit(&[(HDR, 16, R), (DATA, 4, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 5, q0()));
    assert_eq!(&r.guest(DATA, 5), b"mock\xff");
    // Split over two descriptors.
    r.put(DATA, &[0xff; 64]);
    r.put(DATA + 0x100, &[0xff; 64]);
    let out = r.submit(&[
        (HDR, 16, R),
        (DATA, 3, W),
        (DATA + 0x100, 17, W),
        (STATUS, 1, W),
    ]);
    assert_eq!(out, (OK, 21, q0()));
    assert_eq!(&r.guest(DATA, 4), b"moc\xff");
    assert_eq!(&r.guest(DATA + 0x100, 9), b"k-serial\0");
    // No buffer at all: nothing to write, still OK.
    let out = r.submit(&[(HDR, 16, R), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    assert_eq!(r.counter("req_get_id"), 4);
    r.check_disk();
}

#[test]
fn discard_zeroes_every_segment() {
    let mut r = Rig::new();
    r.header(HDR, T_DISCARD, 0);
    r.put(DATA, &segment(10, 2, 0));
    r.put(DATA + 16, &segment(20, 1, 0));
    r.put(DATA + 32, &segment(30, 0, 0)); // empty segment: nothing to do
    let out = r.submit(&[(HDR, 16, R), (DATA, 48, R), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    // MemBackend deallocates as zeroes.
    r.expect_write(10 * 512, &[0; 1024]);
    r.expect_write(20 * 512, &[0; 512]);
    r.check_disk();
    assert_eq!(r.counter("req_discard"), 1);
}

#[test]
fn write_zeroes_with_and_without_unmap() {
    let mut r = Rig::new();
    r.header(HDR, T_WRITE_ZEROES, 0);
    r.put(DATA, &segment(2, 4, 1)); // UNMAP allowed
    assert_eq!(
        r.submit(&[(HDR, 16, R), (DATA, 16, R), (STATUS, 1, W)]),
        (OK, 1, q0())
    );
    r.expect_write(1024, &[0; 2048]);
    r.check_disk();
    r.put(DATA, &segment(SECTORS - 1, 1, 0));
    assert_eq!(
        r.submit(&[(HDR, 16, R), (DATA, 16, R), (STATUS, 1, W)]),
        (OK, 1, q0())
    );
    r.expect_write(DISK - 512, &[0; 512]);
    r.check_disk();
    assert_eq!(r.counter("req_write_zeroes"), 2);
}

#[test]
fn discard_and_write_zeroes_refuse_bad_segments() {
    let mut r = Rig::new();
    let cases: &[(u32, Vec<u8>, u8)] = &[
        // Unknown flag (UNMAP is not valid for discard).
        (T_DISCARD, segment(10, 2, 1).to_vec(), UNSUPP),
        (T_WRITE_ZEROES, segment(10, 2, 2).to_vec(), UNSUPP),
        // Past the end.
        (T_DISCARD, segment(SECTORS - 1, 2, 0).to_vec(), IOERR),
        (
            T_WRITE_ZEROES,
            segment(u64::MAX / 256, 1, 0).to_vec(),
            IOERR,
        ),
        // Not a whole segment.
        (T_DISCARD, segment(0, 1, 0)[..15].to_vec(), IOERR),
        // More segments than max_discard_seg (32).
        (T_DISCARD, segment(0, 1, 0).repeat(33), UNSUPP),
    ];
    for (t, data, want) in cases {
        r.header(HDR, *t, 0);
        r.put(DATA, data);
        let out = r.submit(&[(HDR, 16, R), (DATA, data.len() as u32, R), (STATUS, 1, W)]);
        assert_eq!(out, (*want, 1, q0()), "type {t}, {} bytes", data.len());
        r.check_disk();
    }
    // No segment at all; a writable data buffer.
    r.header(HDR, T_DISCARD, 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (IOERR, 1, q0()));
    r.put(DATA, &segment(0, 1, 0));
    assert_eq!(
        r.submit(&[
            (HDR, 16, R),
            (DATA, 16, R),
            (DATA + 64, 16, W),
            (STATUS, 1, W)
        ]),
        (IOERR, 1, q0())
    );
    r.check_disk();
    // A good segment after a bad one does not run either.
    r.put(DATA, &segment(0, 1, 0));
    r.put(DATA + 16, &segment(SECTORS, 1, 0));
    assert_eq!(
        r.submit(&[(HDR, 16, R), (DATA, 32, R), (STATUS, 1, W)]),
        (IOERR, 1, q0())
    );
    r.check_disk();
}

#[test]
fn unknown_types_are_unsupp() {
    let mut r = Rig::new();
    for t in [2u32, 3, 5, 7, 9, 10, 12, 14, 0xdead_beef] {
        r.header(HDR, t, 0);
        r.put(DATA, &[0x11; 512]);
        let out = r.submit(&[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
        assert_eq!(out, (UNSUPP, 1, q0()), "type {t}");
    }
    assert_eq!(r.counter("req_unsupported"), 9);
    assert_eq!(r.counter("status_unsupp"), 9);
    r.check_disk();
}

#[test]
fn read_only_device_refuses_writes_and_keeps_every_byte() {
    let mut r = Rig::with(|c| c.read_only = true, false);
    r.put(DATA, &[1; 512]);
    r.header(HDR, T_OUT, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    r.put(DATA, &segment(0, 8, 0));
    for t in [T_DISCARD, T_WRITE_ZEROES] {
        r.header(HDR, t, 0);
        let out = r.submit(&[(HDR, 16, R), (DATA, 16, R), (STATUS, 1, W)]);
        assert_eq!(out, (UNSUPP, 1, q0()), "not offered on a read-only device");
    }
    r.check_disk();
    // Reads and flushes still work.
    r.header(HDR, T_IN, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 513, q0()));
    assert_eq!(r.guest(DATA, 512), orig(0, 512));
    r.header(HDR, T_FLUSH, 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, q0()));
    r.check_disk();
    assert_eq!(r.counter("backend_ios"), 2, "only the read and the flush");
}

#[test]
fn backend_eio_and_enospc_are_ioerr_and_the_next_request_works() {
    let mut r = Rig::new();
    r.put(DATA, &[0x77; 512]);
    for errno in [libc::EIO, libc::ENOSPC] {
        r.backend.fail_next(1, errno);
        r.header(HDR, T_OUT, 0);
        let out = r.submit(&[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
        assert_eq!(out, (IOERR, 1, q0()), "errno {errno}");
        r.check_disk();
        // The very next request is served normally.
        let out = r.submit(&[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
        assert_eq!(out, (OK, 1, q0()));
        r.expect_write(0, &[0x77; 512]);
        r.check_disk();
        r.backend.fill(0, &orig(0, 512));
        r.expect = pristine();
    }
    assert_eq!(r.counter("backend_errors"), 2);
    assert_eq!(r.counter("status_ioerr"), 2);
    assert_eq!(r.counter("status_ok"), 2);
}

#[test]
fn backend_errors_on_read_flush_and_discard() {
    let mut r = Rig::new();
    r.put(DATA, &[0xcc; 512]);
    r.backend.fail_next(1, libc::EIO);
    r.header(HDR, T_IN, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()), "a failed read reports 1 used byte");
    r.backend.fail_next(1, libc::EIO);
    r.header(HDR, T_FLUSH, 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (IOERR, 1, q0()));
    r.backend.fail_next(1, libc::EIO);
    r.header(HDR, T_DISCARD, 0);
    r.put(DATA + 0x1000, &segment(0, 1, 0));
    let out = r.submit(&[(HDR, 16, R), (DATA + 0x1000, 16, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    r.check_disk();
    r.header(HDR, T_IN, 1);
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 513, q0()));
    assert_eq!(r.guest(DATA, 512), orig(512, 512));
    assert_eq!(r.counter("backend_errors"), 3);
    assert_eq!(r.backend.flush_count(), 0);
}

#[test]
fn short_io_is_ioerr() {
    let mut r = Rig::new();
    r.put(DATA, &[0x99; 1024]);
    r.backend.short_next(1);
    r.header(HDR, T_IN, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 1024, W), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()), "short read");
    r.put(DATA, &[0x99; 1024]);
    r.backend.short_next(1);
    r.header(HDR, T_OUT, 4);
    let out = r.submit(&[(HDR, 16, R), (DATA, 1024, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()), "short write");
    // MemBackend wrote the first half before stopping.
    r.expect_write(4 * 512, &[0x99; 512]);
    r.check_disk();
    assert_eq!(r.counter("backend_errors"), 2);
    assert_eq!(r.counter("bytes_read"), 0);
    assert_eq!(r.counter("bytes_written"), 0);
}

// ================================================================ malformed chains

#[test]
fn m01_no_header() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    r.put(DATA, &[3; 512]);
    // 8 header bytes only.
    let out = r.submit(&[(HDR, 8, R), (STATUS, 1, W)]);
    assert_eq!(out, (UNTOUCHED, 0, q0()));
    // 15 bytes, split over two descriptors.
    let out = r.submit(&[(HDR, 7, R), (HDR + 7, 8, R), (STATUS, 1, W)]);
    assert_eq!(out, (UNTOUCHED, 0, q0()));
    // Nothing readable at all.
    let out = r.submit(&[(STATUS, 1, W)]);
    assert_eq!(out, (UNTOUCHED, 0, q0()));
    r.check_disk();
    assert_eq!(r.counter("malformed_chains"), 3);
    assert_eq!(r.counter("req_out"), 0);
}

#[test]
fn m02_header_split_over_several_descriptors_works() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 2);
    let out = r.submit(&[
        (HDR, 1, R),
        (HDR + 1, 1, R),
        (HDR + 2, 2, R),
        (HDR + 4, 4, R),
        (HDR + 8, 3, R),
        (HDR + 11, 5, R),
        (DATA, 512, W),
        (STATUS, 1, W),
    ]);
    assert_eq!(out, (OK, 513, q0()));
    assert_eq!(r.guest(DATA, 512), orig(1024, 512));
    // Out of order in guest memory: the stream order is what counts.
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&T_OUT.to_le_bytes());
    h[8..16].copy_from_slice(&7u64.to_le_bytes());
    r.put(HDR + 0x100, &h[8..]);
    r.put(HDR + 0x200, &h[..8]);
    r.put(DATA, &[0x42; 512]);
    let out = r.submit(&[
        (HDR + 0x200, 8, R),
        (HDR + 0x100, 8, R),
        (DATA, 512, R),
        (STATUS, 1, W),
    ]);
    assert_eq!(out, (OK, 1, q0()));
    r.expect_write(7 * 512, &[0x42; 512]);
    r.check_disk();
}

#[test]
fn m03_header_and_data_in_one_descriptor_works() {
    let mut r = Rig::new();
    r.header(DATA, T_OUT, 9);
    r.put(DATA + 16, &[0x5e; 1024]);
    let out = r.submit(&[(DATA, 16 + 1024, R), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    r.expect_write(9 * 512, &[0x5e; 1024]);
    r.check_disk();
}

#[test]
fn m04_data_split_over_many_descriptors_works() {
    let mut r = Rig::new();
    // Direct: 14 data pieces of uneven sizes (sum 2048) in a 16-entry ring.
    let sizes = [
        1u32, 511, 100, 300, 112, 7, 9, 16, 256, 256, 128, 64, 32, 256,
    ];
    assert_eq!(sizes.iter().sum::<u32>(), 2048);
    r.header(HDR, T_OUT, 16);
    let mut descs = vec![(HDR, 16, R)];
    let mut want = Vec::new();
    let mut at = DATA;
    for (k, &n) in sizes.iter().enumerate() {
        let bytes = vec![k as u8 + 1; n as usize];
        r.put(at, &bytes);
        want.extend_from_slice(&bytes);
        descs.push((at, n, R));
        at += 0x400; // scattered
    }
    descs.push((STATUS, 1, W));
    assert_eq!(r.submit(&descs), (OK, 1, q0()));
    r.expect_write(16 * 512, &want);
    r.check_disk();
    // Indirect: 200 writable pieces of 20..=44 bytes read back the same 4 KiB
    // (a Linux guest never sends this many, seg_max is 254).
    let mut table = vec![(HDR, 16, R)];
    let mut left = 4096u32;
    let mut k = 0u64;
    while left > 0 {
        let n = (20 + (k as u32 * 7) % 25).min(left);
        table.push((REGION2 + k * 64, n, W));
        left -= n;
        k += 1;
    }
    let pieces = table.len() - 1;
    assert!(pieces > 100, "{pieces}");
    table.push((STATUS, 1, W));
    r.header(HDR, T_IN, 14);
    let len = r.indirect_table(TABLE, &table);
    r.desc(0, TABLE, len, F_INDIRECT, 0);
    let out = r.run_one(0, STATUS);
    assert_eq!(out, (OK, 4097, q0()));
    let mut got = Vec::new();
    for d in &table[1..=pieces] {
        got.extend(r.guest(d.0, d.1 as usize));
    }
    assert_eq!(got, r.expect[14 * 512..22 * 512].to_vec());
    r.check_disk();
}

#[test]
fn m05_status_in_a_readable_descriptor_is_returned_unexecuted() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    r.put(DATA, &[7; 512]);
    r.put(STATUS, &[UNTOUCHED]);
    // No writable byte at all: nowhere to put a status.
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, R)]);
    assert_eq!(r.read_status(STATUS), UNTOUCHED);
    assert_eq!((out.1, out.2), (0, q0()));
    r.check_disk();
    assert_eq!(r.counter("malformed_chains"), 1);
    assert_eq!(r.counter("backend_ios"), 0);
}

#[test]
fn m06_zero_length_data() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 0);
    // A zero-length data descriptor: a read of nothing.
    let out = r.submit(&[(HDR, 16, R), (DATA, 0, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    r.header(HDR, T_OUT, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 0, R), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    // Zero-length descriptors sprinkled through a real read are skipped.
    r.header(HDR, T_IN, 1);
    let out = r.submit(&[
        (HDR, 0, R),
        (HDR, 16, R),
        (0, 0, R),
        (DATA, 512, W),
        (u64::MAX, 0, W),
        (STATUS, 1, W),
    ]);
    assert_eq!(out, (OK, 513, q0()));
    assert_eq!(r.guest(DATA, 512), orig(512, 512));
    // A zero-length "status" descriptor does not count as a status byte.
    r.header(HDR, T_FLUSH, 0);
    r.chain_at(0, &[(HDR, 16, 0), (STATUS, 0, F_WRITE)]);
    let out = r.run_one(0, STATUS);
    assert_eq!(out, (UNTOUCHED, 0, q0()));
    r.check_disk();
    assert_eq!(r.counter("backend_ios"), 1, "only the real read");
    assert_eq!(r.backend.flush_count(), 0);
}

#[test]
fn m07_header_in_a_writable_descriptor() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    r.put(DATA, &[7; 512]);
    let out = r.submit(&[(HDR, 16, W), (DATA, 512, W), (STATUS, 1, W)]);
    assert_eq!(out, (UNTOUCHED, 0, q0()));
    r.check_disk();
    assert_eq!(r.guest(HDR, 1), vec![T_OUT as u8], "header overwritten");
    assert_eq!(r.counter("malformed_chains"), 1);
}

#[test]
fn m08_readable_after_writable() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    r.put(DATA, &[7; 512]);
    let out = r.submit(&[
        (HDR, 16, R),
        (DATA + 0x1000, 1, W),
        (DATA, 512, R),
        (STATUS, 1, W),
    ]);
    assert_eq!(out, (IOERR, 1, q0()));
    r.check_disk();
    assert_eq!(r.counter("req_out"), 0, "never parsed");
}

#[test]
fn m09_data_length_not_a_multiple_of_512() {
    let mut r = Rig::new();
    r.put(DATA, &[7; 1024]);
    for (t, n) in [(T_OUT, 100u32), (T_OUT, 513), (T_IN, 511), (T_IN, 513)] {
        r.header(HDR, t, 0);
        let w = t == T_IN;
        let out = r.submit(&[(HDR, 16, R), (DATA, n, w), (STATUS, 1, W)]);
        assert_eq!(out, (IOERR, 1, q0()), "type {t}, {n} bytes");
    }
    assert_eq!(r.guest(DATA, 1024), vec![7; 1024], "no partial read");
    r.check_disk();
}

#[test]
fn m10_lengths_summing_past_4_gib() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 0);
    // "Drivers MUST NOT add a descriptor chain longer than 2^32 bytes"
    // (virtio 1.2, 2.7.5.2): the ring is broken, nothing is executed.
    r.chain_at(
        0,
        &[
            (HDR, 16, 0),
            (DATA, u32::MAX, F_WRITE),
            (DATA, u32::MAX, F_WRITE),
            (STATUS, 1, F_WRITE),
        ],
    );
    assert_eq!(r.run_broken(0), BrokenChain::TooLong);
    // Just under 4 GiB in total: a read larger than the disk, IOERR.
    let out = r.submit(&[
        (HDR, 16, R),
        (DATA, 0x8000_0000, W),
        (DATA, 0x7fff_0000, W),
        (STATUS, 1, W),
    ]);
    assert_eq!(out, (IOERR, 1, q0()));
    r.check_disk();
}

#[test]
fn m11_sector_at_the_last_block_works() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, SECTORS - 1);
    r.put(DATA, &[9; 512]);
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    r.expect_write(DISK - 512, &[9; 512]);
    r.check_disk();
    r.header(HDR, T_IN, SECTORS - 2);
    let out = r.submit(&[(HDR, 16, R), (DATA, 1024, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1025, q0()));
    assert_eq!(
        r.guest(DATA, 1024),
        r.expect[DISK as usize - 1024..].to_vec()
    );
}

#[test]
fn m12_sector_past_the_end() {
    let mut r = Rig::new();
    r.put(DATA, &[7; 1024]);
    for (t, sector, n) in [
        (T_IN, SECTORS, 512u32),
        (T_IN, SECTORS - 1, 1024),
        (T_OUT, SECTORS, 512),
        (T_OUT, SECTORS - 1, 1024),
        (T_OUT, 1 << 40, 512),
    ] {
        r.header(HDR, t, sector);
        let out = r.submit(&[(HDR, 16, R), (DATA, n, t == T_IN), (STATUS, 1, W)]);
        assert_eq!(
            out,
            (IOERR, 1, q0()),
            "type {t}, sector {sector}, {n} bytes"
        );
    }
    assert_eq!(r.guest(DATA, 1024), vec![7; 1024]);
    r.check_disk();
    assert_eq!(r.counter("backend_ios"), 0);
}

#[test]
fn m13_sector_times_512_overflowing_u64() {
    let mut r = Rig::new();
    r.put(DATA, &[7; 512]);
    for sector in [u64::MAX, u64::MAX / 512 + 1, u64::MAX / 512, 1 << 55] {
        for t in [T_OUT, T_IN] {
            r.header(HDR, t, sector);
            let out = r.submit(&[(HDR, 16, R), (DATA, 512, t == T_IN), (STATUS, 1, W)]);
            assert_eq!(out, (IOERR, 1, q0()), "type {t}, sector {sector:#x}");
        }
    }
    r.check_disk();
    assert_eq!(r.counter("backend_ios"), 0);
}

#[test]
fn m14_chain_that_loops_terminates() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 0);
    r.put(DATA, &[7; 512]);
    // 0 -> 1 -> 0 -> ...: more links than the queue has entries is a loop;
    // the ring is broken (a prefix executed as a request would put its
    // status byte into the data buffer).
    r.desc(0, HDR, 16, F_NEXT, 1);
    r.desc(1, DATA, 512, F_WRITE | F_NEXT, 0);
    assert_eq!(r.run_broken(0), BrokenChain::Loop);
    // A descriptor that points at itself.
    r.desc(0, HDR, 16, F_NEXT, 0);
    assert_eq!(r.run_broken(0), BrokenChain::Loop);
    // A loop entirely in the writable part.
    r.desc(0, HDR, 16, F_NEXT, 1);
    r.desc(1, DATA, 512, F_WRITE | F_NEXT, 1);
    assert_eq!(r.run_broken(0), BrokenChain::Loop);
    r.check_disk();
}

#[test]
fn m15_indirect_table_inside_an_indirect_table() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    r.put(DATA, &[7; 512]);
    let inner = r.indirect_table(
        TABLE + 0x100,
        &[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)],
    );
    r.desc_at(TABLE, TABLE + 0x100, inner, F_INDIRECT, 0);
    r.desc(0, TABLE, 16, F_INDIRECT, 0);
    assert_eq!(r.run_broken(0), BrokenChain::NestedIndirect);
    r.check_disk();
}

#[test]
fn m16_indirect_table_with_a_bad_length() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 1);
    let len = r.indirect_table(TABLE, &[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]);
    // The good table works...
    r.desc(0, TABLE, len, F_INDIRECT, 0);
    assert_eq!(r.run_one(0, STATUS), (OK, 513, q0()));
    assert_eq!(r.guest(DATA, 512), orig(512, 512));
    // ...not a multiple of 16, or empty, do not.
    for len in [40u32, 47, 1, 0] {
        r.desc(0, TABLE, len, F_INDIRECT, 0);
        assert_eq!(r.run_broken(0), BrokenChain::BadIndirectTable(len));
    }
    // A table running into the hole after guest memory: its third entry
    // cannot be read; the ring is broken.
    r.desc_at(HOLE - 32, HDR, 16, F_NEXT, 1);
    r.desc_at(HOLE - 16, DATA, 512, F_WRITE | F_NEXT, 2);
    r.desc(0, HOLE - 32, 48, F_INDIRECT, 0);
    assert_eq!(r.run_broken(0), BrokenChain::Unreadable(2));
    r.check_disk();
}

#[test]
fn m17_data_outside_guest_memory_is_ioerr_with_status() {
    let mut r = Rig::new();
    r.put(DATA, &[7; 512]);
    for (t, addr) in [
        (T_IN, HOLE),
        (T_IN, HOLE + 0x800),
        (T_IN, 64 * MIB),
        (T_IN, u64::MAX - 100),
        (T_OUT, HOLE),
        (T_OUT, u64::MAX - 511),
    ] {
        r.header(HDR, t, 0);
        let out = r.submit(&[(HDR, 16, R), (addr, 512, t == T_IN), (STATUS, 1, W)]);
        assert_eq!(out, (IOERR, 1, q0()), "type {t} at {addr:#x}");
    }
    r.check_disk();
    assert_eq!(r.counter("bad_address"), 6);
    assert_eq!(r.counter("backend_ios"), 0);
}

#[test]
fn m18_status_outside_guest_memory_is_returned_unexecuted() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    r.put(DATA, &[7; 512]);
    for status in [HOLE, u64::MAX] {
        r.chain_at(0, &[(HDR, 16, 0), (DATA, 512, 0), (status, 1, F_WRITE)]);
        let out = r.run_one(0, status);
        assert_eq!(out, (UNTOUCHED, 0, q0()), "status at {status:#x}");
    }
    r.check_disk();
    assert_eq!(r.counter("malformed_chains"), 2);
    assert_eq!(r.counter("bad_address"), 2);
}

#[test]
fn m19_header_outside_guest_memory() {
    let mut r = Rig::new();
    let out = r.submit(&[(HOLE, 16, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    // Half in memory, half in the hole.
    r.put(HOLE - 8, &T_FLUSH.to_le_bytes());
    let out = r.submit(&[(HOLE - 8, 16, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    r.check_disk();
    assert_eq!(r.backend.flush_count(), 0);
}

#[test]
fn m20_buffer_straddling_two_memory_regions_works() {
    let mut r = Rig::new();
    // 1 MiB - 0x300 .. 1 MiB + 0x300 crosses from region 1 into region 2.
    let at = REGION2 - 0x300;
    r.put(at, &[0x3c; 1536]);
    r.header(HDR, T_OUT, 40);
    let out = r.submit(&[(HDR, 16, R), (at, 1536, R), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    r.expect_write(40 * 512, &[0x3c; 1536]);
    r.check_disk();
    r.header(HDR, T_IN, 2);
    let out = r.submit(&[(HDR, 16, R), (at, 1536, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1537, q0()));
    assert_eq!(r.guest(at, 1536), orig(1024, 1536));
    // The header and the status byte may straddle too.
    r.header(REGION2 - 8, T_IN, 0);
    let out = r.submit(&[(REGION2 - 8, 16, R), (DATA, 512, W), (REGION2 - 1, 1, W)]);
    assert_eq!(out, (OK, 513, q0()));
    assert_eq!(r.guest(DATA, 512), orig(0, 512));
    r.check_disk();
}

#[test]
fn m21_buffer_straddling_into_a_hole_is_refused() {
    let mut r = Rig::new();
    let at = HOLE - 0x200;
    r.put(at, &[0x3c; 0x200]);
    r.header(HDR, T_IN, 0);
    let out = r.submit(&[(HDR, 16, R), (at, 1024, W), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    assert_eq!(r.guest(at, 0x200), vec![0x3c; 0x200], "partial read");
    r.header(HDR, T_OUT, 0);
    let out = r.submit(&[(HDR, 16, R), (at, 1024, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    r.check_disk();
}

#[test]
fn m22_avail_index_jumping_past_queue_size_is_a_ring_error() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    r.put(DATA, &[7; 512]);
    r.chain_at(0, &[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, F_WRITE)]);
    r.publish(0);
    r.set_avail_idx(QSIZE + 1);
    // The transport sets DEVICE_NEEDS_RESET on this error.
    assert!(matches!(
        r.run(),
        Err(QueueError::Ring(
            0,
            virtio_queue::Error::InvalidAvailRingIndex
        ))
    ));
    assert!(r.used().is_none());
    assert!(r.irq.take().is_empty());
    r.check_disk();
    // (Exactly queue size ahead is a full ring, and fine: see b1.)
}

#[test]
fn m23_head_index_past_queue_size_is_a_ring_error() {
    let mut r = Rig::new();
    r.publish(QSIZE + 5);
    // It cannot go back on the used ring: the ring is broken (NEEDS_RESET).
    assert!(matches!(r.run(), Err(QueueError::BadHead(0, 21))));
    assert!(r.used().is_none());
    assert!(r.irq.take().is_empty());
    r.check_disk();
}

#[test]
fn m24_data_in_the_wrong_direction() {
    let mut r = Rig::new();
    r.put(DATA, &[7; 512]);
    r.header(HDR, T_IN, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    r.header(HDR, T_OUT, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    assert_eq!(r.guest(DATA, 512), vec![7; 512]);
    r.header(HDR, T_GET_ID, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 20, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    r.check_disk();
}

#[test]
fn m25_status_sharing_a_descriptor_with_data_works() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 6);
    // One writable descriptor of 513 bytes: 512 data bytes, then the status.
    let out = r.submit(&[(HDR, 16, R), (DATA, 513, W)]);
    assert_eq!(out, (OK, 513, q0()));
    assert_eq!(r.guest(DATA, 512), orig(6 * 512, 512));
    r.check_disk();
}

#[test]
fn m26_next_index_past_the_table() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 0);
    r.put(DATA, &[7; 512]);
    // header -> data -> (index 99): the ring is broken; the data buffer
    // keeps its bytes (no status byte written into it).
    r.desc(0, HDR, 16, F_NEXT, 1);
    r.desc(1, DATA, 512, F_WRITE | F_NEXT, 99);
    assert_eq!(r.run_broken(0), BrokenChain::BadNext(1, 99, QSIZE));
    assert_eq!(r.guest(DATA, 511), vec![7; 511]);
    r.check_disk();
}

#[test]
fn m27_same_head_twice_in_one_batch() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 3);
    r.put(DATA, &[0x21; 512]);
    r.chain_at(0, &[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, F_WRITE)]);
    r.publish(0);
    r.publish(0);
    assert_eq!(r.run().unwrap(), 2);
    assert_eq!(r.used(), Some((0, 1)));
    assert_eq!(r.used(), Some((0, 1)));
    assert_eq!(r.read_status(STATUS), OK);
    assert_eq!(r.irq.take(), q0());
    r.expect_write(3 * 512, &[0x21; 512]);
    r.check_disk();
}

// ================================================================ batches and interrupts

/// Chain `i` of a batch: an indirect table at `TABLE + 0x100 * i` for an
/// IN, OUT or FLUSH of sector `i`, data at `DATA + 512 * i`, status at
/// `STATUS + i`.
fn queue_mixed(r: &Rig, i: u16) -> u32 {
    let n = u64::from(i);
    let hdr = HDR + 16 * n;
    let data = DATA + 512 * n;
    let t = [T_IN, T_OUT, T_FLUSH][usize::from(i % 3)];
    r.header(hdr, t, n);
    let mut descs = vec![(hdr, 16, R)];
    match t {
        T_IN => descs.push((data, 512, W)),
        T_OUT => {
            r.put(data, &[0x80 | i as u8; 512]);
            descs.push((data, 512, R));
        }
        _ => {}
    }
    descs.push((STATUS + n, 1, W));
    let len = r.indirect_table(TABLE + 0x100 * n, &descs);
    r.desc(i, TABLE + 0x100 * n, len, F_INDIRECT, 0);
    r.publish(i);
    if t == T_IN {
        513
    } else {
        1
    }
}

#[test]
fn b1_a_full_ring_in_one_batch_one_interrupt() {
    let mut r = Rig::new();
    let mut want = Vec::new();
    for i in 0..QSIZE {
        want.push((u32::from(i), queue_mixed(&r, i)));
    }
    r.put(STATUS, &[UNTOUCHED; QSIZE as usize]);
    assert_eq!(r.run().unwrap(), usize::from(QSIZE));
    let mut got: Vec<_> = std::iter::from_fn(|| r.used()).collect();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(
        r.guest(STATUS, usize::from(QSIZE)),
        vec![OK; QSIZE as usize]
    );
    assert_eq!(r.irq.take(), q0(), "one interrupt per batch");
    for i in 0..QSIZE {
        let n = u64::from(i);
        match i % 3 {
            0 => assert_eq!(r.guest(DATA + 512 * n, 512), orig(512 * n, 512)),
            1 => r.expect_write(512 * n, &[0x80 | i as u8; 512]),
            _ => {}
        }
    }
    r.check_disk();
    assert_eq!(r.counter("chains_popped"), 16);
    assert_eq!(r.counter("used_pushes"), 16);
    assert_eq!(r.counter("status_ok"), 16);
    assert_eq!(r.counter("interrupts"), 1);
    assert_eq!(r.counter("submits"), 1);
    assert_eq!(r.backend.flush_count(), 5);
    // An empty kick: nothing used, no interrupt.
    assert_eq!(r.run().unwrap(), 0);
    assert!(r.used().is_none());
    assert!(r.irq.take().is_empty());
}

#[test]
fn b2_adjacent_reads_are_merged_into_one_io() {
    let mut r = Rig::new();
    for i in 0..4u16 {
        let base = 3 * i;
        let n = u64::from(i);
        r.header(HDR + 16 * n, T_IN, n);
        r.chain_at(
            base,
            &[
                (HDR + 16 * n, 16, 0),
                (DATA + 512 * n, 512, F_WRITE),
                (STATUS + n, 1, F_WRITE),
            ],
        );
        r.publish(base);
    }
    assert_eq!(r.run().unwrap(), 4);
    for i in 0..4u32 {
        assert_eq!(r.used(), Some((3 * i, 513)));
    }
    assert_eq!(r.guest(STATUS, 4), vec![OK; 4]);
    assert_eq!(r.guest(DATA, 2048), orig(0, 2048));
    assert_eq!(r.irq.take(), q0());
    assert_eq!(r.counter("merged"), 3);
    assert_eq!(r.counter("backend_ios"), 1);
    r.check_disk();
}

#[test]
fn b3_a_failed_merge_keeps_each_requests_status() {
    let mut r = Rig::new();
    // Two adjacent writes; the merged I/O fails once, the retries succeed.
    for i in 0..2u16 {
        let n = u64::from(i);
        r.header(HDR + 16 * n, T_OUT, n);
        r.put(DATA + 512 * n, &[0x40 + i as u8; 512]);
        r.chain_at(
            3 * i,
            &[
                (HDR + 16 * n, 16, 0),
                (DATA + 512 * n, 512, 0),
                (STATUS + n, 1, F_WRITE),
            ],
        );
        r.publish(3 * i);
    }
    r.backend.fail_next(1, libc::EIO);
    assert_eq!(r.run().unwrap(), 2);
    assert_eq!(r.used(), Some((0, 1)));
    assert_eq!(r.used(), Some((3, 1)));
    assert_eq!(r.guest(STATUS, 2), vec![OK, OK]);
    r.expect_write(0, &[0x40; 512]);
    r.expect_write(512, &[0x41; 512]);
    r.check_disk();
    assert_eq!(r.irq.take(), q0());
    // The same, failing twice: the first request fails, the second works.
    for i in 0..2u16 {
        r.put(DATA + 512 * u64::from(i), &[0x50 + i as u8; 512]);
        r.publish(3 * i);
    }
    r.backend.fail_next(2, libc::EIO);
    assert_eq!(r.run().unwrap(), 2);
    assert_eq!(r.used(), Some((0, 1)));
    assert_eq!(r.used(), Some((3, 1)));
    assert_eq!(r.guest(STATUS, 2), vec![IOERR, OK]);
    r.expect_write(512, &[0x51; 512]);
    r.check_disk();
}

#[test]
fn b4_indexes_wrap_at_u16() {
    let mut r = Rig::new();
    let start = u16::MAX - 2;
    r.set_avail_idx(start);
    r.ring.set_used_idx(r.mem, start);
    r.queue.set_next_avail(start);
    r.queue.set_next_used(start);
    r.used_seen = start;
    r.header(HDR, T_IN, 1);
    for i in 0..5u16 {
        let n = u64::from(i);
        r.chain_at(
            3 * i,
            &[
                (HDR, 16, 0),
                (DATA + 512 * n, 512, F_WRITE),
                (STATUS + n, 1, F_WRITE),
            ],
        );
        r.publish(3 * i);
    }
    assert_eq!(r.run().unwrap(), 5);
    assert_eq!(r.ring.used_idx(r.mem), 2);
    for i in 0..5u32 {
        assert_eq!(r.used(), Some((3 * i, 513)));
    }
    assert_eq!(r.guest(STATUS, 5), vec![OK; 5]);
    assert_eq!(r.guest(DATA + 4 * 512, 512), orig(512, 512));
    assert_eq!(r.irq.take(), q0());
    r.check_disk();
}

#[test]
fn b5_no_interrupt_flag_without_event_idx() {
    let mut r = Rig::new();
    r.set_avail_flags(1); // VRING_AVAIL_F_NO_INTERRUPT
    r.header(HDR, T_FLUSH, 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, none()));
    assert_eq!(r.counter("interrupts_suppressed"), 1);
    assert_eq!(r.counter("interrupts"), 0);
    // The driver wants interrupts again.
    r.set_avail_flags(0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, q0()));
    assert_eq!(r.counter("interrupts"), 1);
    assert_eq!(r.backend.flush_count(), 2);
    r.check_disk();
}

#[test]
fn b6_event_idx_used_event_suppresses_then_fires() {
    let mut r = Rig::with(|_| {}, true);
    // used_event = 1: the driver wants an interrupt once used idx passes 1,
    // i.e. when the second entry is added.
    r.set_used_event(1);
    r.header(HDR, T_FLUSH, 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, none()));
    assert_eq!(r.counter("interrupts_suppressed"), 1);
    assert_eq!(r.counter("interrupts"), 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, q0()));
    assert_eq!(r.counter("interrupts"), 1);
    // used_event already behind: no more interrupts until it moves.
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, none()));
    assert_eq!(r.counter("interrupts_suppressed"), 2);
    // A batch that jumps over used_event still interrupts once.
    r.set_used_event(4);
    r.chain_at(0, &[(HDR, 16, 0), (STATUS, 1, F_WRITE)]);
    for _ in 0..3 {
        r.publish(0);
    }
    assert_eq!(r.run().unwrap(), 3);
    assert_eq!(r.irq.take(), q0());
    // avail_event tells the driver where the next kick is wanted.
    assert_eq!(r.avail_event(), 6);
    assert_eq!(r.backend.flush_count(), 6);
    r.check_disk();
}

#[test]
fn b7_event_idx_ignores_the_no_interrupt_flag() {
    let mut r = Rig::with(|_| {}, true);
    r.set_avail_flags(1);
    r.set_used_event(0);
    r.header(HDR, T_FLUSH, 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, q0()));
    assert_eq!(r.counter("interrupts"), 1);
    r.check_disk();
}

#[test]
fn b8_ring_outside_guest_memory_is_a_ring_error() {
    let mut r = Rig::new();
    r.queue.set_avail_ring_address(Some(HOLE as u32), Some(0));
    assert!(matches!(r.run(), Err(QueueError::Ring(0, _))));
    r.check_disk();
    // A used ring in the hole: an error (no panic), no interrupt.
    let mut r = Rig::new();
    r.queue.set_used_ring_address(Some(HOLE as u32), Some(0));
    r.header(HDR, T_OUT, 0);
    r.put(DATA, &[7; 512]);
    r.chain_at(0, &[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, F_WRITE)]);
    r.publish(0);
    assert!(matches!(r.run(), Err(QueueError::Ring(0, _))));
    assert!(r.irq.take().is_empty());
    r.check_disk();
}
