//! The device core against a mock split ring in guest memory: every request
//! type, every error path, and hostile chains. Each test asserts the status
//! byte, the used length and the backing bytes.

use std::sync::Arc;

use vblk_backend::MemBackend;
use vblk_device::{BlkConfig, BlkDevice};
use vblk_interrupt::{InterruptKind, RecordingInterrupt};
use vblk_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const QSIZE: u16 = 16;
const DESC: u64 = 0x0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const HDR: u64 = 0x10000;
const DATA: u64 = 0x20000;
const STATUS: u64 = 0x40000;
const TABLE: u64 = 0x50000;
/// Guest memory: two regions with a hole after 1 MiB; the second starts at 2 MiB.
const REGION2: u64 = 0x20_0000;

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
const DISK: u64 = 64 * 1024;

struct Rig {
    mem: GuestMemoryMmap,
    queue: Queue,
    backend: MemBackend,
    dev: BlkDevice,
    worker: vblk_device::QueueWorker,
    irq: RecordingInterrupt,
    avail_idx: u16,
    used_seen: u16,
}

impl Rig {
    fn new() -> Rig {
        Self::with(|_| {}, false)
    }

    fn with(cfg: impl FnOnce(&mut BlkConfig), event_idx: bool) -> Rig {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), 0x10_0000),
            (GuestAddress(REGION2), 0x10_0000),
        ])
        .unwrap();
        let backend = MemBackend::new(DISK);
        // A recognisable disk: byte i is i % 251.
        let init: Vec<u8> = (0..DISK as usize).map(|i| (i % 251) as u8).collect();
        backend.fill(0, &init);
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
            queue,
            backend,
            dev,
            worker,
            irq: RecordingInterrupt::new(),
            avail_idx: 0,
            used_seen: 0,
        }
    }

    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.desc_at(DESC + 16 * u64::from(i), addr, len, flags, next);
    }

    fn desc_at(&self, at: u64, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.mem.write_slice(&d, GuestAddress(at)).unwrap();
    }

    fn header(&self, at: u64, t: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&t.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(at)).unwrap();
    }

    fn publish(&mut self, head: u16) {
        let slot = AVAIL + 4 + 2 * u64::from(self.avail_idx % QSIZE);
        self.mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx, GuestAddress(AVAIL + 2))
            .unwrap();
    }

    /// Chain `descs` at table indexes `first..` with NEXT links and publish.
    fn chain_at(&mut self, first: u16, descs: &[(u64, u32, u16)]) {
        for (k, (a, l, f)) in descs.iter().enumerate() {
            let i = first + k as u16;
            let last = k + 1 == descs.len();
            self.desc(
                i,
                *a,
                *l,
                if last { *f } else { *f | F_NEXT },
                if last { 0 } else { i + 1 },
            );
        }
        self.publish(first);
    }

    fn run(&mut self) -> Result<usize, vblk_device::QueueError> {
        self.worker.process(&mut self.queue, &self.mem, &self.irq)
    }

    /// Submit one chain, process, return (status byte, used len).
    fn one(&mut self, descs: &[(u64, u32, u16)]) -> (u8, u32) {
        self.mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
        self.chain_at(0, descs);
        assert_eq!(self.run().unwrap(), 1);
        let (_, len) = self.used().expect("no used entry");
        (self.status(), len)
    }

    fn status(&self) -> u8 {
        self.mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap()
    }

    fn used(&mut self) -> Option<(u32, u32)> {
        let idx: u16 = self.mem.read_obj(GuestAddress(USED + 2)).unwrap();
        if idx == self.used_seen {
            return None;
        }
        let e = USED + 4 + 8 * u64::from(self.used_seen % QSIZE);
        self.used_seen = self.used_seen.wrapping_add(1);
        Some((
            self.mem.read_obj(GuestAddress(e)).unwrap(),
            self.mem.read_obj(GuestAddress(e + 4)).unwrap(),
        ))
    }

    fn guest(&self, at: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.mem.read_slice(&mut v, GuestAddress(at)).unwrap();
        v
    }

    fn put(&self, at: u64, b: &[u8]) {
        self.mem.write_slice(b, GuestAddress(at)).unwrap();
    }

    fn disk(&self, off: usize, n: usize) -> Vec<u8> {
        self.backend.snapshot()[off..off + n].to_vec()
    }

    fn counter(&self, name: &str) -> u64 {
        self.dev.stats().queues[0]
            .snapshot()
            .into_iter()
            .find(|(k, _)| *k == name)
            .unwrap()
            .1
    }
}

fn orig(off: usize, n: usize) -> Vec<u8> {
    (off..off + n).map(|i| (i % 251) as u8).collect()
}

// ---------------------------------------------------------------- requests

#[test]
fn read_returns_disk_bytes_and_exact_used_len() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 3);
    let (st, len) = r.one(&[(HDR, 16, 0), (DATA, 1024, F_WRITE), (STATUS, 1, F_WRITE)]);
    assert_eq!((st, len), (OK, 1025));
    assert_eq!(r.guest(DATA, 1024), orig(3 * 512, 1024));
    assert_eq!(r.irq.take(), vec![InterruptKind::Queue(0)]);
    assert_eq!(r.counter("req_in"), 1);
    assert_eq!(r.counter("bytes_read"), 1024);
}

#[test]
fn write_lands_in_backing_store() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 5);
    r.put(DATA, &[0xab; 1536]);
    let (st, len) = r.one(&[(HDR, 16, 0), (DATA, 1536, 0), (STATUS, 1, F_WRITE)]);
    assert_eq!((st, len), (OK, 1));
    assert_eq!(r.disk(5 * 512, 1536), vec![0xab; 1536]);
    assert_eq!(r.disk(4 * 512, 512), orig(4 * 512, 512));
    assert_eq!(r.disk(8 * 512, 512), orig(8 * 512, 512));
}

#[test]
fn flush_reaches_the_backend() {
    let mut r = Rig::new();
    r.header(HDR, T_FLUSH, 0);
    assert_eq!(r.one(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]), (OK, 1));
    assert_eq!(r.backend.flush_count(), 1);
}

#[test]
fn get_id_full_and_short_buffers() {
    let mut r = Rig::new();
    r.header(HDR, T_GET_ID, 0);
    r.put(DATA, &[0xff; 32]);
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 32, F_WRITE), (STATUS, 1, F_WRITE)]),
        (OK, 21)
    );
    let id = r.guest(DATA, 21);
    assert_eq!(&id[..11], b"mock-serial");
    assert!(id[11..20].iter().all(|&b| b == 0));
    assert_eq!(id[20], 0xff, "wrote past the 20-byte ID");
    r.put(DATA, &[0xff; 32]);
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 4, F_WRITE), (STATUS, 1, F_WRITE)]),
        (OK, 5)
    );
    assert_eq!(&r.guest(DATA, 5), b"mock\xff");
}

#[test]
fn discard_and_write_zeroes() {
    let mut r = Rig::new();
    let seg = |sector: u64, n: u32, flags: u32| {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&sector.to_le_bytes());
        b[8..12].copy_from_slice(&n.to_le_bytes());
        b[12..16].copy_from_slice(&flags.to_le_bytes());
        b
    };
    r.header(HDR, T_WRITE_ZEROES, 0);
    r.put(DATA, &seg(2, 4, 1));
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 16, 0), (STATUS, 1, F_WRITE)]),
        (OK, 1)
    );
    assert_eq!(r.disk(1024, 2048), vec![0; 2048]);
    assert_eq!(r.disk(512, 512), orig(512, 512));
    r.header(HDR, T_DISCARD, 0);
    r.put(DATA, &seg(10, 2, 0));
    r.put(DATA + 16, &seg(20, 1, 0));
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 32, 0), (STATUS, 1, F_WRITE)]),
        (OK, 1)
    );
    // Unknown flag on discard: UNSUPP; segment past the end: IOERR.
    r.put(DATA, &seg(10, 2, 1));
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 16, 0), (STATUS, 1, F_WRITE)]),
        (UNSUPP, 1)
    );
    r.put(DATA, &seg(DISK / 512 - 1, 2, 0));
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 16, 0), (STATUS, 1, F_WRITE)]),
        (IOERR, 1)
    );
}

#[test]
fn unknown_type_is_unsupp() {
    let mut r = Rig::new();
    for t in [2u32, 3, 7, 0xdead_beef] {
        r.header(HDR, t, 0);
        assert_eq!(
            r.one(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]),
            (UNSUPP, 1),
            "type {t}"
        );
    }
    assert_eq!(r.counter("req_unsupported"), 4);
}

#[test]
fn read_only_refuses_writes_and_keeps_bytes() {
    let mut r = Rig::with(|c| c.read_only = true, false);
    r.header(HDR, T_OUT, 0);
    r.put(DATA, &[1; 512]);
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, F_WRITE)]),
        (IOERR, 1)
    );
    assert_eq!(r.disk(0, 512), orig(0, 512));
    r.header(HDR, T_IN, 0);
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 512, F_WRITE), (STATUS, 1, F_WRITE)]),
        (OK, 513)
    );
}

#[test]
fn backend_errors_become_ioerr_and_the_device_keeps_serving() {
    let mut r = Rig::new();
    for errno in [libc::EIO, libc::ENOSPC] {
        r.backend.fail_next(1, errno);
        r.header(HDR, T_OUT, 0);
        assert_eq!(
            r.one(&[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, F_WRITE)]),
            (IOERR, 1)
        );
    }
    r.backend.fail_next(1, libc::EIO);
    r.header(HDR, T_IN, 0);
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 512, F_WRITE), (STATUS, 1, F_WRITE)]),
        (IOERR, 1)
    );
    r.backend.short_next(1);
    r.header(HDR, T_IN, 0);
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 1024, F_WRITE), (STATUS, 1, F_WRITE)]),
        (IOERR, 1),
        "short read"
    );
    r.header(HDR, T_IN, 1);
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 512, F_WRITE), (STATUS, 1, F_WRITE)]),
        (OK, 513)
    );
    assert_eq!(r.counter("backend_errors"), 4);
}

// ---------------------------------------------------------------- malformed chains

#[test]
fn m01_no_header() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    assert_eq!(r.one(&[(HDR, 8, 0), (STATUS, 1, F_WRITE)]), (0xee, 0));
    assert_eq!(r.counter("malformed_chains"), 1);
}

#[test]
fn m02_header_split_over_descriptors_works() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 2);
    let (st, len) = r.one(&[
        (HDR, 3, 0),
        (HDR + 3, 5, 0),
        (HDR + 8, 8, 0),
        (DATA, 512, F_WRITE),
        (STATUS, 1, F_WRITE),
    ]);
    assert_eq!((st, len), (OK, 513));
    assert_eq!(r.guest(DATA, 512), orig(1024, 512));
}

#[test]
fn m03_status_in_a_readable_descriptor() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    r.put(DATA, &[7; 512]);
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, 0)]),
        (0xee, 0)
    );
    assert_eq!(
        r.disk(0, 512),
        orig(0, 512),
        "executed a chain without a status byte"
    );
}

#[test]
fn m04_zero_length_data() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 0);
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 0, F_WRITE), (STATUS, 1, F_WRITE)]),
        (OK, 1)
    );
}

#[test]
fn m05_writable_header() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    assert_eq!(
        r.one(&[
            (HDR, 16, F_WRITE),
            (DATA, 512, F_WRITE),
            (STATUS, 1, F_WRITE)
        ]),
        (0xee, 0)
    );
    assert_eq!(r.disk(0, 512), orig(0, 512));
}

#[test]
fn m06_length_overflow_past_4g() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 0);
    let (st, len) = r.one(&[
        (HDR, 16, 0),
        (DATA, u32::MAX, F_WRITE),
        (DATA, u32::MAX, F_WRITE),
        (STATUS, 1, F_WRITE),
    ]);
    // The ring walker stops before 4 GiB: the chain is cut after the
    // header, has no status byte, and comes back unexecuted.
    assert_eq!((st, len), (0xee, 0));
}

#[test]
fn m07_sector_at_the_last_block() {
    let mut r = Rig::new();
    let last = DISK / 512 - 1;
    r.header(HDR, T_OUT, last);
    r.put(DATA, &[9; 512]);
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, F_WRITE)]),
        (OK, 1)
    );
    assert_eq!(r.disk(DISK as usize - 512, 512), vec![9; 512]);
}

#[test]
fn m08_sector_past_the_end() {
    let mut r = Rig::new();
    for (sector, n) in [(DISK / 512, 512u32), (DISK / 512 - 1, 1024)] {
        r.header(HDR, T_IN, sector);
        assert_eq!(
            r.one(&[(HDR, 16, 0), (DATA, n, F_WRITE), (STATUS, 1, F_WRITE)]),
            (IOERR, 1)
        );
    }
}

#[test]
fn m09_sector_overflowing_u64() {
    let mut r = Rig::new();
    for sector in [u64::MAX, u64::MAX / 512 + 1, u64::MAX / 512] {
        r.header(HDR, T_OUT, sector);
        assert_eq!(
            r.one(&[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, F_WRITE)]),
            (IOERR, 1)
        );
    }
    assert_eq!(r.backend.snapshot(), orig(0, DISK as usize));
}

#[test]
fn m10_data_not_a_multiple_of_512() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 100, 0), (STATUS, 1, F_WRITE)]),
        (IOERR, 1)
    );
    assert_eq!(r.disk(0, 512), orig(0, 512));
}

#[test]
fn m11_chain_that_loops_terminates() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 0);
    r.desc(0, HDR, 16, F_NEXT, 1);
    r.desc(1, DATA, 512, F_WRITE | F_NEXT, 0); // back to 0
    r.publish(0);
    assert_eq!(r.run().unwrap(), 1);
    assert!(r.used().is_some());
}

#[test]
fn m12_indirect_inside_indirect_is_refused() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 0);
    r.desc_at(TABLE, TABLE + 0x100, 32, F_INDIRECT, 0);
    r.desc_at(TABLE + 0x100, HDR, 16, F_NEXT, 1);
    r.desc_at(TABLE + 0x110, STATUS, 1, F_WRITE, 0);
    r.desc(0, TABLE, 16, F_INDIRECT, 0);
    r.publish(0);
    r.put(STATUS, &[0xee]);
    assert_eq!(r.run().unwrap(), 1);
    assert_eq!(r.used().unwrap().1, 0);
    assert_eq!(r.status(), 0xee);
}

#[test]
fn m13_indirect_table_works_and_bad_length_is_refused() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 1);
    r.desc_at(TABLE, HDR, 16, F_NEXT, 1);
    r.desc_at(TABLE + 16, DATA, 512, F_WRITE | F_NEXT, 2);
    r.desc_at(TABLE + 32, STATUS, 1, F_WRITE, 0);
    assert_eq!(r.one(&[(TABLE, 48, F_INDIRECT)]), (OK, 513));
    assert_eq!(r.guest(DATA, 512), orig(512, 512));
    // A table length that is not a multiple of 16.
    assert_eq!(r.one(&[(TABLE, 40, F_INDIRECT)]), (0xee, 0));
}

#[test]
fn m14_buffer_outside_guest_memory() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 0);
    // Data in the hole between the regions: IOERR with the status written.
    assert_eq!(
        r.one(&[
            (HDR, 16, 0),
            (0x18_0000, 512, F_WRITE),
            (STATUS, 1, F_WRITE)
        ]),
        (IOERR, 1)
    );
    assert_eq!(
        r.one(&[
            (HDR, 16, 0),
            (u64::MAX - 100, 512, F_WRITE),
            (STATUS, 1, F_WRITE)
        ]),
        (IOERR, 1)
    );
    // Status outside guest memory: nothing can be reported.
    r.mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
    r.chain_at(
        0,
        &[(HDR, 16, 0), (DATA, 512, F_WRITE), (0x18_0000, 1, F_WRITE)],
    );
    assert_eq!(r.run().unwrap(), 1);
    assert_eq!(r.used().unwrap().1, 0);
    // Header outside guest memory.
    assert_eq!(
        r.one(&[(0x18_0000, 16, 0), (STATUS, 1, F_WRITE)]),
        (IOERR, 1)
    );
    assert!(r.counter("bad_address") >= 3);
}

#[test]
fn m15_buffer_straddling_two_regions_is_refused_not_overrun() {
    let mut r = Rig::new();
    // 0xFFE00..0x100200 crosses from region 1 into the hole.
    r.header(HDR, T_IN, 0);
    assert_eq!(
        r.one(&[
            (HDR, 16, 0),
            (0xf_fe00, 1024, F_WRITE),
            (STATUS, 1, F_WRITE)
        ]),
        (IOERR, 1)
    );
}

#[test]
fn m16_readable_after_writable() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    assert_eq!(
        r.one(&[
            (HDR, 16, 0),
            (STATUS, 1, F_WRITE),
            (DATA, 512, 0),
            (STATUS, 1, F_WRITE)
        ]),
        (IOERR, 1)
    );
    assert_eq!(r.disk(0, 512), orig(0, 512));
}

#[test]
fn m17_wrong_direction() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 0);
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, F_WRITE)]),
        (IOERR, 1)
    );
    r.header(HDR, T_OUT, 0);
    assert_eq!(
        r.one(&[(HDR, 16, 0), (DATA, 512, F_WRITE), (STATUS, 1, F_WRITE)]),
        (IOERR, 1)
    );
    assert_eq!(r.disk(0, 512), orig(0, 512));
}

#[test]
fn m18_head_index_out_of_range() {
    let mut r = Rig::new();
    r.publish(QSIZE + 5);
    // It cannot go back on the used ring: the ring is broken (NEEDS_RESET).
    assert!(matches!(
        r.run(),
        Err(vblk_device::QueueError::BadHead(0, 21))
    ));
    assert!(r.used().is_none());
}

#[test]
fn m19_avail_index_jumps_past_queue_size() {
    let mut r = Rig::new();
    r.mem.write_obj(1000u16, GuestAddress(AVAIL + 2)).unwrap();
    assert!(
        r.run().is_err(),
        "an impossible avail index must be a ring error"
    );
}

#[test]
fn m20_data_split_over_many_descriptors_and_regions() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 4);
    let mut descs = vec![(HDR, 16u32, 0u16)];
    for k in 0..8u64 {
        let at = if k % 2 == 0 {
            DATA + k * 64
        } else {
            REGION2 + k * 64
        };
        r.put(at, &[k as u8 + 1; 64]);
        descs.push((at, 64, 0));
    }
    descs.push((STATUS, 1, F_WRITE));
    assert_eq!(r.one(&descs), (OK, 1));
    let want: Vec<u8> = (0..8).flat_map(|k| vec![k as u8 + 1; 64]).collect();
    assert_eq!(r.disk(2048, 512), want);
}

// ---------------------------------------------------------------- batching, suppression

#[test]
fn a_batch_completes_with_one_interrupt_and_merges() {
    let mut r = Rig::new();
    for i in 0..4u16 {
        let base = 4 * i;
        let hdr = HDR + 16 * u64::from(i);
        r.header(hdr, T_IN, u64::from(i));
        r.desc(base, hdr, 16, F_NEXT, base + 1);
        r.desc(
            base + 1,
            DATA + 512 * u64::from(i),
            512,
            F_WRITE | F_NEXT,
            base + 2,
        );
        r.desc(base + 2, STATUS + u64::from(i), 1, F_WRITE, 0);
        r.publish(base);
    }
    assert_eq!(r.run().unwrap(), 4);
    for _ in 0..4 {
        assert_eq!(r.used().unwrap().1, 513);
    }
    assert_eq!(r.guest(DATA, 2048), orig(0, 2048));
    assert_eq!(r.irq.take().len(), 1, "one interrupt per batch");
    assert_eq!(r.counter("merged"), 3);
    assert_eq!(r.counter("backend_ios"), 1);
}

#[test]
fn a_failed_merge_keeps_each_request_status() {
    let mut r = Rig::new();
    // Two adjacent writes; the merged I/O fails once, the retries succeed.
    for i in 0..2u16 {
        let base = 3 * i;
        let hdr = HDR + 16 * u64::from(i);
        r.header(hdr, T_OUT, u64::from(i));
        r.put(DATA + 512 * u64::from(i), &[0x40 + i as u8; 512]);
        r.desc(base, hdr, 16, F_NEXT, base + 1);
        r.desc(base + 1, DATA + 512 * u64::from(i), 512, F_NEXT, base + 2);
        r.desc(base + 2, STATUS + u64::from(i), 1, F_WRITE, 0);
        r.publish(base);
    }
    r.backend.fail_next(1, libc::EIO);
    assert_eq!(r.run().unwrap(), 2);
    assert_eq!(r.guest(STATUS, 2), vec![OK, OK]);
    assert_eq!(r.disk(0, 1024), [vec![0x40; 512], vec![0x41; 512]].concat());
}

#[test]
fn no_interrupt_flag_suppresses_without_event_idx() {
    let mut r = Rig::new();
    r.mem.write_obj(1u16, GuestAddress(AVAIL)).unwrap(); // VRING_AVAIL_F_NO_INTERRUPT
    r.header(HDR, T_FLUSH, 0);
    assert_eq!(r.one(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]), (OK, 1));
    assert!(r.irq.take().is_empty());
    assert_eq!(r.counter("interrupts_suppressed"), 1);
}

#[test]
fn event_idx_used_event_suppresses_then_fires() {
    let mut r = Rig::with(|_| {}, true);
    // used_event lives after the avail ring: the driver wants an interrupt
    // only after used index 2 passes.
    let used_event = AVAIL + 4 + 2 * u64::from(QSIZE);
    r.mem.write_obj(1u16, GuestAddress(used_event)).unwrap();
    r.header(HDR, T_FLUSH, 0);
    assert_eq!(r.one(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]), (OK, 1));
    assert!(r.irq.take().is_empty(), "interrupted before used_event");
    assert_eq!(r.one(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]), (OK, 1));
    assert_eq!(r.irq.take(), vec![InterruptKind::Queue(0)]);
    // avail_event was published for the driver's kick suppression.
    let avail_event: u16 = r
        .mem
        .read_obj(GuestAddress(USED + 4 + 8 * u64::from(QSIZE)))
        .unwrap();
    assert_eq!(avail_event, 2);
}
