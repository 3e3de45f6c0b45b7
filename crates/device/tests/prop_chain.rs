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

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use vblk_backend::MemBackend;
use vblk_device::{BlkConfig, BlkDevice, QueueError};
use vblk_interrupt::InterruptKind;
use vblk_queue::{BrokenChain, Queue, QueueT};
use vblk_testkit::RecordingInterrupt;
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

// ================================================================ one random chain

fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0x1_0000u64..0x3_8000,
        2 => (0x1_0000u64..0x3_8000).prop_map(|a| a & !15),
        2 => REG - 0x1000..REG + 0x1000,
        2 => HOLE - 0x1000..HOLE + 0x1000,
        1 => REGION3 + REG - 0x1000..REGION3 + REG + 0x1000,
        1 => u64::MAX - 0x1000..=u64::MAX,
        1 => any::<u64>(),
    ]
}

fn len() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => (0u32..=8).prop_map(|k| k * 512),
        2 => Just(16u32),
        2 => Just(1u32),
        3 => 0u32..3000,
        1 => 0xffff_0000u32..=u32::MAX,
        1 => any::<u32>(),
    ]
}

fn request_type() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(4),
        Just(8),
        Just(11),
        Just(13),
        any::<u32>()
    ]
}

fn sector() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0..SECTORS + 4,
        1 => u64::MAX / 512 - 2..=u64::MAX / 512 + 2,
        1 => any::<u64>(),
    ]
}

#[derive(Debug, Clone)]
struct ChainCase {
    /// Descriptors after the header ones: (addr, len, writable).
    descs: Vec<(u64, u32, bool)>,
    /// Guest memory to fill before the run (data for readable buffers).
    writes: Vec<(u64, Vec<u8>)>,
    /// 0: no header descriptor; 16: one; 1..15: split in two.
    header_split: u8,
    request_type: u32,
    ioprio: u32,
    sector: u64,
    indirect: bool,
    read_only: bool,
    event_idx: bool,
    seed: u8,
}

/// Data descriptors (after the header) and the bytes to place in guest
/// memory for them: either fully random, or a plausible request (data in
/// the right direction, whole sectors or segments, a status byte) with at
/// most one thing broken.
type Descs = (Vec<(u64, u32, bool)>, Vec<(u64, Vec<u8>)>);

fn random_descs() -> impl Strategy<Value = Descs> {
    proptest::collection::vec((addr(), len(), any::<bool>()), 0..13).prop_map(|d| (d, Vec::new()))
}

#[derive(Debug, Clone)]
enum Mutation {
    None,
    FlipDirection(prop::sample::Index),
    Address(prop::sample::Index, u64),
    Length(prop::sample::Index, u32),
    Remove(prop::sample::Index),
    Swap(prop::sample::Index),
    Duplicate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    use prop::sample::Index;
    prop_oneof![
        6 => Just(Mutation::None),
        1 => any::<Index>().prop_map(Mutation::FlipDirection),
        1 => (any::<Index>(), addr()).prop_map(|(i, a)| Mutation::Address(i, a)),
        1 => (any::<Index>(), len()).prop_map(|(i, l)| Mutation::Length(i, l)),
        1 => any::<Index>().prop_map(Mutation::Remove),
        1 => any::<Index>().prop_map(Mutation::Swap),
        1 => any::<Index>().prop_map(Mutation::Duplicate),
    ]
}

fn plausible_descs(t: u32) -> impl Strategy<Value = Descs> {
    (
        0u32..=8,
        proptest::collection::vec(
            (
                0..SECTORS + 2,
                0u32..10,
                prop_oneof![4 => Just(0u32), 1 => 0u32..3],
            ),
            1..4,
        ),
        proptest::collection::vec(any::<u16>(), 0..4),
        Just((0u64..20).collect::<Vec<_>>()).prop_shuffle(),
        prop::bool::weighted(0.2),
        0u64..0x1000,
        mutation(),
        any::<u8>(),
    )
        .prop_map(
            move |(k, segs, cuts, slots, straddle, status_off, m, fill)| {
                let (len, write, payload): (usize, bool, Vec<u8>) = match t {
                    0 => (512 * k as usize, true, Vec::new()),
                    1 => {
                        let n = 512 * k as usize;
                        (n, false, (0..n).map(|i| fill ^ (i as u8)).collect())
                    }
                    8 => (4 * k as usize + 1, true, Vec::new()),
                    11 | 13 => {
                        let mut b = Vec::new();
                        for (sector, n, flags) in &segs {
                            b.extend_from_slice(&sector.to_le_bytes());
                            b.extend_from_slice(&n.to_le_bytes());
                            b.extend_from_slice(&flags.to_le_bytes());
                        }
                        (b.len(), false, b)
                    }
                    _ => (0, false, Vec::new()),
                };
                let mut cuts: Vec<usize> =
                    cuts.iter().map(|&c| usize::from(c) % (len + 1)).collect();
                cuts.extend([0, len]);
                cuts.sort();
                cuts.dedup();
                let mut descs = Vec::new();
                let mut writes = Vec::new();
                for (p, w) in cuts.windows(2).enumerate() {
                    let at = if straddle && p == 0 {
                        REG - 0x800
                    } else {
                        0x1_0000 + 0x2000 * slots[p]
                    };
                    descs.push((at, (w[1] - w[0]) as u32, write));
                    if !write {
                        writes.push((at, payload[w[0]..w[1]].to_vec()));
                    }
                }
                descs.push((0x3_a000 + status_off, 1, true));
                let pick = |i: &prop::sample::Index, d: &Vec<_>| i.index(d.len());
                match m {
                    Mutation::None => {}
                    Mutation::FlipDirection(i) => {
                        let i = pick(&i, &descs);
                        descs[i].2 = !descs[i].2;
                    }
                    Mutation::Address(i, a) => {
                        let i = pick(&i, &descs);
                        descs[i].0 = a;
                    }
                    Mutation::Length(i, l) => {
                        let i = pick(&i, &descs);
                        descs[i].1 = l;
                    }
                    Mutation::Remove(i) => {
                        let i = pick(&i, &descs);
                        descs.remove(i);
                    }
                    Mutation::Swap(i) => {
                        let i = pick(&i, &descs);
                        let j = (i + 1) % descs.len();
                        descs.swap(i, j);
                    }
                    Mutation::Duplicate(i) => {
                        let i = pick(&i, &descs);
                        descs.insert(i, descs[i]);
                    }
                }
                (descs, writes)
            },
        )
}

fn chain_case() -> impl Strategy<Value = ChainCase> {
    let head = (
        prop_oneof![1 => Just(0u8), 6 => Just(16u8), 3 => 1u8..16],
        request_type(),
        any::<u32>(),
        sector(),
    );
    let opts = (
        any::<bool>(),
        prop::bool::weighted(0.2),
        any::<bool>(),
        any::<u8>(),
    );
    (head, opts)
        .prop_flat_map(|(head, opts)| {
            let descs = prop_oneof![
                1 => random_descs().boxed(),
                3 => plausible_descs(head.1).boxed(),
            ];
            (Just(head), Just(opts), descs)
        })
        .prop_map(
            |(
                (header_split, request_type, ioprio, sector),
                (indirect, read_only, event_idx, seed),
                (descs, writes),
            )| ChainCase {
                descs,
                writes,
                header_split,
                request_type,
                ioprio,
                sector,
                indirect,
                read_only,
                event_idx,
                seed,
            },
        )
}

/// The chain as virtio-queue will walk it: stops where the byte count
/// would overflow a u32.
fn walked(descs: &[(u64, u32, bool)]) -> Vec<(u64, u32, bool)> {
    let mut total = 0u32;
    let mut out = Vec::new();
    for &d in descs {
        match total.checked_add(d.1) {
            Some(t) => total = t,
            None => break,
        }
        out.push(d);
    }
    out
}

fn check_chain(c: &ChainCase) -> Result<(), TestCaseError> {
    let mem = guest_memory();
    // Noisy guest RAM (so any stray write shows), then the header.
    let noise = noise(c.seed);
    mem.write_slice(&noise[0x8000..], GuestAddress(0x8000))
        .unwrap();
    mem.write_slice(&noise[..REG as usize], GuestAddress(REGION3))
        .unwrap();
    let mut hdr = [0u8; 16];
    hdr[0..4].copy_from_slice(&c.request_type.to_le_bytes());
    hdr[4..8].copy_from_slice(&c.ioprio.to_le_bytes());
    hdr[8..16].copy_from_slice(&c.sector.to_le_bytes());
    mem.write_slice(&hdr, GuestAddress(HDR)).unwrap();
    for (at, b) in &c.writes {
        mem.write_slice(b, GuestAddress(*at)).unwrap();
    }

    let mut descs = Vec::new();
    match c.header_split {
        0 => {}
        16 => descs.push((HDR, 16, false)),
        k => {
            descs.push((HDR, u32::from(k), false));
            descs.push((HDR + u64::from(k), 16 - u32::from(k), false));
        }
    }
    descs.extend_from_slice(&c.descs);
    if descs.is_empty() {
        descs.push((HDR, 0, false));
    }

    let mut ring = Ring::new(&mem, c.event_idx);
    let (backend, dev) = device(c.read_only);
    let mut worker = dev.worker(0).unwrap();
    let irq = RecordingInterrupt::new();
    if c.indirect {
        let n = ring.indirect(TABLE, &descs);
        ring.desc(0, TABLE, n, F_INDIRECT, 0);
    } else {
        for (k, &(a, l, w)) in descs.iter().enumerate() {
            let last = k + 1 == descs.len();
            let flags = if w { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            ring.desc(k as u16, a, l, flags, k as u16 + 1);
        }
    }
    ring.publish(0);
    let before = snapshot(&mem);

    let done = worker.process(&mut ring.queue, &mem, &irq);
    // A chain over 4 GiB breaks the ring ("Drivers MUST NOT add a
    // descriptor chain longer than 2^32 bytes", virtio 1.2, 2.7.5.2):
    // nothing executed, nothing written.
    let total: u64 = descs.iter().map(|d| u64::from(d.1)).sum();
    if total > u64::from(u32::MAX) {
        prop_assert!(
            matches!(done, Err(QueueError::Chain(0, 0, BrokenChain::TooLong))),
            "chain over 4 GiB: {:?}",
            done
        );
        prop_assert!(ring.used_entries().is_empty());
        prop_assert!(irq.take().is_empty());
        // Only the used ring's notification fields may change.
        let after = snapshot(&mem);
        let mut expect = before.clone();
        allow(&mut expect, &after, USED, 0x100);
        prop_assert!(expect == after, "guest memory written by a broken chain");
        return Ok(());
    }
    prop_assert!(matches!(done, Ok(1)), "process on a sane ring: {:?}", done);
    prop_assert_eq!(irq.take(), vec![InterruptKind::Queue(0)]);
    let used = ring.used_entries();
    prop_assert_eq!(used.len(), 1);
    prop_assert_eq!(used[0].0, 0);
    let used_len = used[0].1;
    let after = snapshot(&mem);

    // The model: the chain as walked, zero-length descriptors dropped.
    let walk: Vec<_> = walked(&descs).into_iter().filter(|d| d.1 > 0).collect();
    let readable: Vec<_> = walk.iter().filter(|d| !d.2).copied().collect();
    let writable: Vec<_> = walk.iter().filter(|d| d.2).copied().collect();
    let readable_len: u64 = readable.iter().map(|d| u64::from(d.1)).sum();
    let writable_len: u64 = writable.iter().map(|d| u64::from(d.1)).sum();
    let status_addr = writable
        .last()
        .and_then(|d| d.0.checked_add(u64::from(d.1) - 1))
        .filter(|&a| byte_at(&before, a).is_some());
    let malformed = readable_len < 16 || status_addr.is_none();

    // 1. The used length never exceeds the writable bytes.
    prop_assert!(
        u64::from(used_len) <= writable_len,
        "used {} > writable {}",
        used_len,
        writable_len
    );

    // 2. Guest memory changes only inside writable buffers and the used ring.
    let mut expect = before.clone();
    for d in &writable {
        allow(&mut expect, &after, d.0, u64::from(d.1));
    }
    allow(&mut expect, &after, USED, 0x100);
    if expect != after {
        let first = (0..2 * REG as usize)
            .find(|&i| expect.0[i] != after.0[i])
            .map(|i| i as u64)
            .or_else(|| {
                (0..REG as usize)
                    .find(|&i| expect.1[i] != after.1[i])
                    .map(|i| REGION3 + i as u64)
            });
        return Err(TestCaseError::fail(format!(
            "guest memory written outside the chain at {first:x?}"
        )));
    }

    // 3. Status byte and used length.
    let header: Option<[u8; 16]> = {
        // The first 16 readable bytes, if they are all guest RAM.
        let mut h = Vec::new();
        'o: for d in &readable {
            for i in 0..u64::from(d.1) {
                if h.len() == 16 {
                    break 'o;
                }
                match d.0.checked_add(i).and_then(|a| byte_at(&before, a)) {
                    Some(b) => h.push(b),
                    None => break 'o,
                }
            }
        }
        h.try_into().ok()
    };
    let disk = backend.snapshot();
    let orig = pristine();
    if malformed {
        prop_assert_eq!(used_len, 0, "malformed chain used");
        prop_assert!(disk == orig, "malformed chain executed");
        prop_assert_eq!(counter(&dev, "malformed_chains"), 1);
        return Ok(());
    }
    let status_addr = status_addr.unwrap();
    let status = byte_at(&after, status_addr).unwrap();
    prop_assert!(used_len >= 1, "a chain with a status byte used 0");
    prop_assert!(status <= 2, "status {}", status);
    let t = header.map(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
    let sector = header.map(|h| u64::from_le_bytes(h[8..16].try_into().unwrap()));
    if used_len > 1 {
        prop_assert_eq!(status, 0);
        prop_assert!(
            t == Some(0) || t == Some(8),
            "type {:?} used {}",
            t,
            used_len
        );
    }
    if status == 0 && t == Some(0) {
        // An IN fills every data byte.
        prop_assert_eq!(u64::from(used_len), writable_len);
    }
    if status == 0 && t == Some(8) {
        prop_assert_eq!(u64::from(used_len), (writable_len - 1).min(20) + 1);
    }

    // Data read into the guest is the disk's, when the buffers do not overlap.
    let disjoint = {
        let mut w = writable.clone();
        w.sort();
        w.windows(2).all(|p| {
            p[0].0
                .checked_add(u64::from(p[0].1))
                .is_some_and(|e| e <= p[1].0)
        })
    };
    if status == 0 && t == Some(0) && disjoint {
        let off = sector.unwrap() * 512;
        let mut got = Vec::new();
        for d in &writable {
            for i in 0..u64::from(d.1) {
                got.push(byte_at(&after, d.0 + i).unwrap());
            }
        }
        got.pop(); // the status byte
        prop_assert!(
            got[..] == orig[off as usize..off as usize + got.len()],
            "IN returned the wrong bytes"
        );
    }

    // 4. The backing store changes only as a valid OUT / DISCARD /
    //    WRITE_ZEROES of this chain would.
    if c.read_only || status != 0 || !matches!(t, Some(1) | Some(11) | Some(13)) {
        prop_assert!(
            disk == orig,
            "backing store changed (type {:?}, status {})",
            t,
            status
        );
        return Ok(());
    }
    match t {
        Some(1) => {
            let mut stream = Vec::new();
            for d in &readable {
                for i in 0..u64::from(d.1) {
                    stream.push(byte_at(&before, d.0 + i).unwrap());
                }
            }
            let off = (sector.unwrap() * 512) as usize;
            let data = &stream[16..];
            let mut want = orig.clone();
            want[off..off + data.len()].copy_from_slice(data);
            prop_assert!(disk == want, "OUT wrote something else");
        }
        _ => {
            prop_assert!(
                disk.iter().zip(&orig).all(|(d, o)| d == o || *d == 0),
                "DISCARD / WRITE_ZEROES wrote non-zero bytes"
            );
        }
    }
    Ok(())
}

// ================================================================ a batch of valid requests

#[derive(Debug, Clone)]
struct Req {
    kind: u8, // 0 IN, 1 OUT, 2 FLUSH, 3 DISCARD, 4 WRITE_ZEROES, 5 GET_ID
    /// First sector inside its 8-sector slot, and count (1..=8-first).
    first: u64,
    count: u64,
    /// Cut points splitting the data into pieces.
    cuts: Vec<u16>,
    fill: u8,
}

fn req() -> impl Strategy<Value = Req> {
    (
        prop_oneof![3 => Just(0u8), 3 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8), 1 => Just(4u8), 1 => Just(5u8)],
        prop_oneof![Just((0u64, 8u64)), (0u64..8).prop_flat_map(|f| (Just(f), 1..=8 - f))],
        proptest::collection::vec(any::<u16>(), 0..6),
        any::<u8>(),
    )
        .prop_map(|(kind, (first, count), cuts, fill)| Req {
            kind,
            first,
            count,
            cuts,
            fill,
        })
}

fn check_batch(
    reqs: &[Req],
    slots: &[usize],
    straddle: bool,
    failures: u64,
) -> Result<(), TestCaseError> {
    let mem = guest_memory();
    let mut ring = Ring::new(&mem, false);
    let (backend, dev) = device(false);
    let mut worker = dev.worker(0).unwrap();
    let irq = RecordingInterrupt::new();
    let mut want_disk = pristine();
    // Per request: its data pieces, its byte range on disk.
    let mut layout = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let off = (slots[i] as u64 * 8 + r.first) * 512;
        let n = (r.count * 512) as usize;
        let area = if straddle && i == 0 {
            REG - 0x900
        } else {
            0x4_8000 + 0x2000 * i as u64
        };
        let hdr = HDR + 16 * i as u64;
        let status = 0x7_0000 + i as u64;
        let t: u32 = [0, 1, 4, 11, 13, 8][usize::from(r.kind)];
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&t.to_le_bytes());
        h[8..16].copy_from_slice(&(off / 512).to_le_bytes());
        mem.write_slice(&h, GuestAddress(hdr)).unwrap();
        mem.write_obj(0xeeu8, GuestAddress(status)).unwrap();
        let data_len = match r.kind {
            0 | 1 => n,
            3 | 4 => 16,
            5 => 20,
            _ => 0,
        };
        let payload: Vec<u8> = match r.kind {
            1 => (0..n).map(|k| r.fill ^ (k as u8)).collect(),
            3 | 4 => {
                let mut s = [0u8; 16];
                s[0..8].copy_from_slice(&(off / 512).to_le_bytes());
                s[8..12].copy_from_slice(&(r.count as u32).to_le_bytes());
                s.to_vec()
            }
            _ => vec![0x5a; data_len],
        };
        // Split into pieces at the cut points, 32 bytes apart in guest RAM
        // (at most 4096 + 7 * 32 bytes: inside the request's 8 KiB area).
        let mut cuts: Vec<usize> = r
            .cuts
            .iter()
            .map(|&c| usize::from(c) % (data_len + 1))
            .collect();
        cuts.push(0);
        cuts.push(data_len);
        cuts.sort();
        cuts.dedup();
        let mut pieces = Vec::new();
        let mut at = area;
        for w in cuts.windows(2) {
            let len = w[1] - w[0];
            mem.write_slice(&payload[w[0]..w[1]], GuestAddress(at))
                .unwrap();
            pieces.push((at, len as u32));
            at += len as u64 + 32;
        }
        let write = matches!(r.kind, 0 | 5);
        let mut descs = vec![(hdr, 16, false)];
        descs.extend(pieces.iter().map(|&(a, l)| (a, l, write)));
        descs.push((status, 1, true));
        let tlen = ring.indirect(TABLE + 0x400 * i as u64, &descs);
        ring.desc(i as u16, TABLE + 0x400 * i as u64, tlen, F_INDIRECT, 0);
        ring.publish(i as u16);
        layout.push((off as usize, n, pieces, status, payload));
    }
    backend.fail_next(failures, libc::EIO);
    let done = worker.process(&mut ring.queue, &mem, &irq);
    prop_assert!(matches!(done, Ok(k) if k == reqs.len()), "{:?}", done);
    prop_assert_eq!(irq.take(), vec![InterruptKind::Queue(0)]);
    let mut used = ring.used_entries();
    used.sort();
    let mut errors = 0;
    for (i, r) in reqs.iter().enumerate() {
        let (off, n, pieces, status_at, payload) = &layout[i];
        let status: u8 = mem.read_obj(GuestAddress(*status_at)).unwrap();
        prop_assert!(
            status == 0 || status == 1,
            "request {} status {}",
            i,
            status
        );
        let used_len = used[i].1;
        prop_assert_eq!(used[i].0, i as u32);
        if status == 1 {
            errors += 1;
            prop_assert_eq!(used_len, 1);
            prop_assert!(r.kind != 5, "GET_ID never reaches storage");
            continue;
        }
        let read_back = || {
            let mut v = Vec::new();
            for &(a, l) in pieces {
                let mut b = vec![0u8; l as usize];
                mem.read_slice(&mut b, GuestAddress(a)).unwrap();
                v.extend(b);
            }
            v
        };
        match r.kind {
            0 => {
                prop_assert_eq!(used_len as usize, n + 1);
                prop_assert!(read_back() == want_disk[*off..off + n], "IN {} data", i);
            }
            1 => {
                prop_assert_eq!(used_len, 1);
                want_disk[*off..off + n].copy_from_slice(payload);
            }
            3 | 4 => {
                prop_assert_eq!(used_len, 1);
                want_disk[*off..off + n].fill(0);
            }
            5 => {
                prop_assert_eq!(used_len, 21);
                prop_assert!(read_back() == SERIAL[..], "GET_ID");
            }
            _ => prop_assert_eq!(used_len, 1),
        }
    }
    prop_assert!(
        errors <= failures,
        "{} errors from {} failures",
        errors,
        failures
    );
    prop_assert!(
        backend.snapshot() == want_disk,
        "backing store differs from the model"
    );
    prop_assert_eq!(counter(&dev, "chains_popped"), reqs.len() as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn random_chain_is_contained(c in chain_case()) {
        check_chain(&c)?;
    }

    #[test]
    fn random_batch_matches_model(
        (reqs, slots) in proptest::collection::vec(req(), 1..=QSIZE as usize)
            .prop_flat_map(|reqs| {
                let n = reqs.len();
                (Just(reqs), Just((0..SECTORS as usize / 8).collect::<Vec<_>>()).prop_shuffle().prop_map(move |s| s[..n].to_vec()))
            }),
        straddle: bool,
        failures in prop_oneof![3 => Just(0u64), 1 => 1u64..4],
    ) {
        check_batch(&reqs, &slots, straddle, failures)?;
    }
}
