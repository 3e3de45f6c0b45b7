//! Property tests of the device core on random descriptor chains.
//!
//! * `random_chain_is_contained`: one random chain (random addresses inside
//!   and outside guest memory, random lengths, directions, header bytes,
//!   direct or indirect) → `process` never panics, completes the chain,
//!   reports a used length no larger than the chain's writable bytes, writes
//!   guest memory only inside the chain's writable buffers (and the used
//!   ring), and changes the backing store only as a valid OUT (or DISCARD /
//!   WRITE_ZEROES) of that chain would.
//! * `random_batch_matches_model`: a batch of valid requests on disjoint
//!   sectors, data scattered over random pieces, some storage failures
//!   injected → every request that reports OK did exactly what it asked,
//!   every one that failed changed nothing, one interrupt for the batch.

mod batch;
mod chain;
mod chain_strategy;

use std::sync::{Arc, OnceLock};

use vblk_backend::MemBackend;
use vblk_device::{BlkConfig, BlkDevice};
use vblk_queue::{Queue, QueueT};
use vblk_testkit::{Desc, SplitRing};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const QSIZE: u16 = 16;
const DESC: u64 = 0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const HDR: u64 = 0x8000;
const TABLE: u64 = 0x9000;
/// Region size (small, so a case is cheap to set up and compare).
const REG: u64 = 0x4_0000;
/// [0, REG) + [REG, 2 REG) adjacent, a hole, then [3 REG, 4 REG).
const HOLE: u64 = 2 * REG;
const REGION3: u64 = 3 * REG;
const DISK: u64 = 64 * 1024;
const SECTORS: u64 = DISK / 512;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;
const SERIAL: &[u8; 20] = b"prop-serial-0123456\0";

fn pristine() -> Vec<u8> {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| (0..DISK as usize).map(|i| (i % 251) as u8).collect())
        .clone()
}

/// 2 REG + 256 bytes of noise; a case takes 2 REG from its seed on.
fn noise(seed: u8) -> &'static [u8] {
    static N: OnceLock<Vec<u8>> = OnceLock::new();
    let n = N.get_or_init(|| {
        (0..2 * REG as usize + 256)
            .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 9) as u8 ^ (i >> 17) as u8)
            .collect()
    });
    &n[usize::from(seed)..usize::from(seed) + 2 * REG as usize]
}

fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), REG as usize),
        (GuestAddress(REG), REG as usize),
        (GuestAddress(REGION3), REG as usize),
    ])
    .unwrap()
}

/// Guest RAM as two flat copies: [0, 2 REG) and [3 REG, 4 REG).
fn snapshot(mem: &GuestMemoryMmap) -> (Vec<u8>, Vec<u8>) {
    let mut a = vec![0u8; 2 * REG as usize];
    let mut b = vec![0u8; REG as usize];
    mem.read_slice(&mut a, GuestAddress(0)).unwrap();
    mem.read_slice(&mut b, GuestAddress(REGION3)).unwrap();
    (a, b)
}

/// Byte `addr` of a snapshot, if it is guest RAM.
fn byte_at(s: &(Vec<u8>, Vec<u8>), addr: u64) -> Option<u8> {
    if addr < 2 * REG {
        Some(s.0[addr as usize])
    } else if (REGION3..REGION3 + REG).contains(&addr) {
        Some(s.1[(addr - REGION3) as usize])
    } else {
        None
    }
}

/// Copy `after`'s bytes of `[addr, addr+len)` into `expect` (the parts that
/// are guest RAM).
fn allow(expect: &mut (Vec<u8>, Vec<u8>), after: &(Vec<u8>, Vec<u8>), addr: u64, len: u64) {
    let end = addr.saturating_add(len);
    let a = addr.min(2 * REG) as usize..end.min(2 * REG) as usize;
    expect.0[a.clone()].copy_from_slice(&after.0[a]);
    let lo = addr.clamp(REGION3, REGION3 + REG) - REGION3;
    let hi = end.clamp(REGION3, REGION3 + REG) - REGION3;
    expect.1[lo as usize..hi as usize].copy_from_slice(&after.1[lo as usize..hi as usize]);
}

struct Ring<'a> {
    mem: &'a GuestMemoryMmap,
    /// The driver side: the test kit's split ring.
    ring: SplitRing,
    queue: Queue,
}

impl<'a> Ring<'a> {
    fn new(mem: &'a GuestMemoryMmap, event_idx: bool) -> Self {
        let mut queue = Queue::new(QSIZE).unwrap();
        queue.set_size(QSIZE);
        queue.set_desc_table_address(Some(DESC as u32), Some(0));
        queue.set_avail_ring_address(Some(AVAIL as u32), Some(0));
        queue.set_used_ring_address(Some(USED as u32), Some(0));
        queue.set_event_idx(event_idx);
        queue.set_ready(true);
        Ring {
            mem,
            ring: SplitRing::new(QSIZE, DESC, AVAIL, USED),
            queue,
        }
    }

    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.ring
            .desc(self.mem, i, Desc::new(addr, len, flags, next));
    }

    /// A linked chain in an indirect table at `at`; returns its length.
    fn indirect(&self, at: u64, descs: &[(u64, u32, bool)]) -> u32 {
        for (k, &(a, l, w)) in descs.iter().enumerate() {
            let last = k + 1 == descs.len();
            let flags = if w { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            let d = Desc::new(a, l, flags, k as u16 + 1);
            self.mem
                .write_slice(&d.to_bytes(), GuestAddress(at + 16 * k as u64))
                .unwrap();
        }
        16 * descs.len() as u32
    }

    fn publish(&self, head: u16) {
        // The avail index in memory is the truth.
        let mut ring = self.ring.clone();
        ring.avail_idx = self.mem.read_obj(GuestAddress(AVAIL + 2)).unwrap();
        ring.publish(self.mem, head);
    }

    fn used_entries(&self) -> Vec<(u32, u32)> {
        let n = self.ring.used_idx(self.mem);
        (0..n).map(|i| self.ring.used_entry(self.mem, i)).collect()
    }
}

fn device(read_only: bool) -> (MemBackend, BlkDevice) {
    let backend = MemBackend::new(DISK);
    backend.fill(0, &pristine());
    let mut cfg = BlkConfig::new(DISK);
    cfg.read_only = read_only;
    cfg.serial = *SERIAL;
    let dev = BlkDevice::new(cfg, Arc::new(backend.clone()));
    (backend, dev)
}

fn counter(dev: &BlkDevice, name: &str) -> u64 {
    dev.stats().queues[0]
        .snapshot()
        .into_iter()
        .find(|(k, _)| *k == name)
        .unwrap()
        .1
}
