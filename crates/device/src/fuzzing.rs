//! Fuzz target bodies, shared by `fuzz/` (cargo fuzz, libFuzzer) and a
//! stable-Rust smoke test, so CI exercises them without a nightly compiler.
//! Behind the `fuzzing` feature: not in the release binary.

use std::sync::Arc;

use vblk_backend::MemBackend;
use vblk_queue::{Queue, QueueOwnedT, QueueT};
use vblk_request::{validate, Header, Limits, Request, Segment, HEADER_LEN, SEGMENT_LEN};
use vblk_testkit::RecordingInterrupt;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::{BlkConfig, BlkDevice};

/// Header bytes + two lengths → validation; checks its promises.
pub fn request_validate(data: &[u8]) {
    if data.len() < HEADER_LEN + 17 {
        return;
    }
    let h = Header::parse(data[..HEADER_LEN].try_into().unwrap_or(&[0; HEADER_LEN]));
    let r = u64::from_le_bytes(data[16..24].try_into().unwrap_or([0; 8]));
    let w = u64::from_le_bytes(data[24..32].try_into().unwrap_or([0; 8]));
    let limits = Limits {
        capacity: 1 << 30,
        read_only: data[32] & 1 != 0,
        flush: data[32] & 2 != 0,
        discard: data[32] & 4 != 0,
        write_zeroes: data[32] & 8 != 0,
        max_discard_sectors: 1 << 20,
        max_write_zeroes_sectors: 1 << 20,
        max_segments: 16,
    };
    match validate(&h, r, w, &limits) {
        Ok(Request::In { offset, len }) => {
            assert!(r == 0 && len == w && len % 512 == 0);
            assert_eq!(Some(offset), h.sector.checked_mul(512));
            assert!(offset
                .checked_add(len)
                .is_some_and(|e| e <= limits.capacity));
        }
        Ok(Request::Out { offset, len }) => {
            assert!(w == 0 && len == r && len % 512 == 0 && !limits.read_only);
            assert_eq!(Some(offset), h.sector.checked_mul(512));
            assert!(offset
                .checked_add(len)
                .is_some_and(|e| e <= limits.capacity));
        }
        Ok(Request::Flush) => assert!(limits.flush),
        Ok(Request::GetId { len }) => assert!(r == 0 && len <= 20 && len <= w),
        Ok(Request::Discard { segments } | Request::WriteZeroes { segments }) => {
            assert!(w == 0 && !limits.read_only);
            assert!(segments >= 1 && segments <= limits.max_segments);
            assert_eq!(u64::from(segments) * SEGMENT_LEN as u64, r);
        }
        Err(rej) => assert!(rej.status == 1 || rej.status == 2),
    }
    if data.len() >= HEADER_LEN + 17 + SEGMENT_LEN {
        let s = Segment::parse(
            data[33..33 + SEGMENT_LEN]
                .try_into()
                .unwrap_or(&[0; SEGMENT_LEN]),
        );
        if let Ok((off, len)) = s.check(data[0] & 1 != 0, &limits) {
            assert!(off.checked_add(len).is_some_and(|e| e <= limits.capacity));
        }
    }
}

const QSIZE: u16 = 8;
const MEM: usize = 0x4_0000;
const DISK: u64 = 64 * 1024;

/// Arbitrary bytes as a descriptor table, avail ring and buffers in guest
/// memory → one `process` call. Never panics; every used entry names a
/// chain that was made available and reports no more bytes than that
/// chain's writable buffers hold; a read-only disk is never written.
///
/// Returns the used entries `(id, len)` (for the seed tests; empty when the
/// ring was refused).
///
/// Input layout: bytes 0..128 are the descriptor table (8 entries, guest
/// address 0), bytes 128..148 the avail ring (flags, idx, 8 heads; guest
/// 0x1000), the rest lands at guest 0x3000. The first byte (low byte of
/// descriptor 0's address) also selects options: 0x80 read-only device,
/// 0x40 EVENT_IDX.
pub fn chain_process(data: &[u8]) -> Vec<(u32, u32)> {
    // Two adjacent regions (buffers may straddle them), a hole, a third.
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), MEM),
        (GuestAddress(MEM as u64), 0x1000),
        (GuestAddress(0x10_0000), 0x1000),
    ]) else {
        return Vec::new();
    };
    // Layout: descriptor table at 0, avail at 0x1000, used at 0x2000;
    // the input fills the table, the avail ring and the data area 0x3000...
    let table_len = 16 * usize::from(QSIZE);
    let (table, rest) = data.split_at(data.len().min(table_len));
    let _ = mem.write_slice(table, GuestAddress(0));
    let (avail, rest) = rest.split_at(rest.len().min(4 + 2 * usize::from(QSIZE)));
    let _ = mem.write_slice(avail, GuestAddress(0x1000));
    let _ = mem.write_slice(&rest[..rest.len().min(MEM - 0x3000)], GuestAddress(0x3000));
    let backend = MemBackend::new(DISK);
    let pristine: Vec<u8> = (0..DISK as usize).map(|i| (i % 251) as u8).collect();
    backend.fill(0, &pristine);
    let flags = data.first().copied().unwrap_or(0);
    let read_only = flags & 0x80 != 0;
    let mut cfg = BlkConfig::new(DISK);
    cfg.read_only = read_only;
    let dev = BlkDevice::new(cfg, Arc::new(backend.clone()));
    let Ok(mut worker) = dev.worker(0) else {
        return Vec::new();
    };
    let queue = || {
        let mut q = Queue::new(QSIZE).ok()?;
        q.set_size(QSIZE);
        q.set_desc_table_address(Some(0), Some(0));
        q.set_avail_ring_address(Some(0x1000), Some(0));
        q.set_used_ring_address(Some(0x2000), Some(0));
        q.set_event_idx(flags & 0x40 != 0);
        q.set_ready(true);
        Some(q)
    };
    // What the device will pop in its first drain: per head, the most
    // writable bytes its chain has (heads may repeat).
    let mut writable = [None::<u64>; QSIZE as usize];
    let mut first_drain = 0usize;
    // A guest may aim its own buffers at the used ring; then the entries
    // are its own doing and are not checked.
    let used_ring = 0x2000..0x2000 + 6 + 8 * u64::from(QSIZE);
    let mut aims_at_used_ring = false;
    if let Some(mut q) = queue() {
        // The device's first step (it may write the used flags, which a
        // hostile table could overlap).
        let _ = q.disable_notification(&mem);
        if let Ok(iter) = q.iter(&mem) {
            for chain in iter {
                let head = usize::from(chain.head_index());
                let mut w = 0u64;
                for d in chain.filter(|d| d.is_write_only()) {
                    w += u64::from(d.len());
                    let end = d.addr().0.saturating_add(u64::from(d.len()));
                    aims_at_used_ring |= d.addr().0 < used_ring.end && end > used_ring.start;
                }
                if let Some(slot) = writable.get_mut(head) {
                    *slot = Some(slot.unwrap_or(0).max(w));
                }
                first_drain += 1;
            }
        }
    }
    let Some(mut q) = queue() else {
        return Vec::new();
    };
    let irq = RecordingInterrupt::new();
    let mut used = Vec::new();
    if let Ok(n) = worker.process(&mut q, &mem, &irq) {
        assert!(
            n >= first_drain,
            "{n} chains completed, {first_drain} available"
        );
        let used_idx: u16 = mem.read_obj(GuestAddress(0x2002)).unwrap_or(0);
        assert_eq!(used_idx, n as u16, "used index");
        // Entries of the first drain, when there was no other (the requests
        // may rewrite the avail ring; later drains are not modelled).
        let checked = if n == first_drain && !aims_at_used_ring {
            n.min(usize::from(QSIZE))
        } else {
            0
        };
        for i in 0..checked {
            let e = 0x2004 + 8 * i as u64;
            let id: u32 = mem.read_obj(GuestAddress(e)).unwrap_or(0);
            let len: u32 = mem.read_obj(GuestAddress(e + 4)).unwrap_or(0);
            let Some(Some(max)) = writable.get(id as usize) else {
                panic!("used id {id} was not made available");
            };
            assert!(
                u64::from(len) <= *max,
                "used len {len} > {max} writable bytes"
            );
        }
        if n > 0 {
            assert!(irq.take().len() <= 1, "more than one interrupt per call");
        }
        for i in 0..n.min(usize::from(QSIZE)) {
            let e = 0x2004 + 8 * i as u64;
            used.push((
                mem.read_obj(GuestAddress(e)).unwrap_or(0),
                mem.read_obj(GuestAddress(e + 4)).unwrap_or(0),
            ));
        }
    }
    if read_only {
        assert!(backend.snapshot() == pristine, "read-only disk written");
    }
    used
}

/// A named `chain_process` input and the used entries it must produce.
pub type Seed = (&'static str, Vec<u8>, Vec<(u32, u32)>);

/// Well-formed `chain_process` inputs, to seed the fuzzer's corpus and to
/// check (in the smoke test) that the input layout reaches real I/O.
pub fn chain_process_seeds() -> Vec<Seed> {
    use vblk_testkit::ring::{Desc, F_INDIRECT as INDIRECT, F_NEXT as NEXT, F_WRITE as WRITE};
    struct Input {
        table: [u8; 128],
        avail: [u8; 20],
        data: Vec<u8>,
    }
    impl Input {
        fn new() -> Self {
            Input {
                table: [0; 128],
                avail: [0; 20],
                data: Vec::new(),
            }
        }
        fn desc(&mut self, i: usize, addr: u64, len: u32, flags: u16, next: u16) -> &mut Self {
            self.table[16 * i..16 * i + 16]
                .copy_from_slice(&Desc::new(addr, len, flags, next).to_bytes());
            self
        }
        /// Guest bytes at `addr` (>= 0x3000).
        fn put(&mut self, addr: u64, b: &[u8]) -> &mut Self {
            let off = (addr - 0x3000) as usize;
            if self.data.len() < off + b.len() {
                self.data.resize(off + b.len(), 0);
            }
            self.data[off..off + b.len()].copy_from_slice(b);
            self
        }
        fn header(&mut self, addr: u64, t: u32, sector: u64) -> &mut Self {
            let h = Header {
                request_type: t,
                sector,
            };
            self.put(addr, &h.to_bytes())
        }
        fn publish(&mut self, heads: &[u16]) -> &mut Self {
            self.avail[2..4].copy_from_slice(&(heads.len() as u16).to_le_bytes());
            for (k, h) in heads.iter().enumerate() {
                self.avail[4 + 2 * k..6 + 2 * k].copy_from_slice(&h.to_le_bytes());
            }
            self
        }
        fn bytes(&self) -> Vec<u8> {
            [&self.table[..], &self.avail[..], &self.data[..]].concat()
        }
    }
    let rw = |s: &mut Input, hdr: u64, data: Option<(u64, u32, bool)>, first: usize| {
        let f = first as u16;
        s.desc(first, hdr, 16, NEXT, f + 1);
        match data {
            Some((a, l, w)) => {
                s.desc(first + 1, a, l, NEXT | if w { WRITE } else { 0 }, f + 2);
                s.desc(first + 2, 0x5000 + u64::from(f), 1, WRITE, 0);
            }
            None => {
                s.desc(first + 1, 0x5000 + u64::from(f), 1, WRITE, 0);
            }
        }
    };
    let segment = |sector: u64, n: u32, flags: u32| {
        Segment {
            sector,
            num_sectors: n,
            flags,
        }
        .to_bytes()
    };
    let mut out = Vec::new();

    let mut s = Input::new();
    rw(&mut s, 0x3000, Some((0x4000, 1024, true)), 0);
    s.header(0x3000, 0, 2).publish(&[0]);
    out.push(("in", s.bytes(), vec![(0, 1025)]));

    let mut s = Input::new();
    rw(&mut s, 0x3000, Some((0x3100, 512, false)), 0);
    s.header(0x3000, 1, 3)
        .put(0x3100, &[0xa5; 512])
        .publish(&[0]);
    out.push(("out", s.bytes(), vec![(0, 1)]));

    let mut s = Input::new();
    rw(&mut s, 0x3000, None, 0);
    s.header(0x3000, 4, 0).publish(&[0]);
    out.push(("flush", s.bytes(), vec![(0, 1)]));

    let mut s = Input::new();
    rw(&mut s, 0x3000, Some((0x4000, 20, true)), 0);
    s.header(0x3000, 8, 0).publish(&[0]);
    out.push(("get_id", s.bytes(), vec![(0, 21)]));

    for (name, t) in [("discard", 11u32), ("write_zeroes", 13)] {
        let mut s = Input::new();
        rw(&mut s, 0x3000, Some((0x3010, 32, false)), 0);
        s.header(0x3000, t, 0)
            .put(0x3010, &segment(4, 2, 0))
            .put(0x3020, &segment(100, 1, 0))
            .publish(&[0]);
        out.push((name, s.bytes(), vec![(0, 1)]));
    }

    // An indirect table in the data area.
    let mut s = Input::new();
    s.desc(0, 0x3200, 48, INDIRECT, 0);
    let mut t = Input::new();
    t.desc(0, 0x3000, 16, NEXT, 1)
        .desc(1, 0x4000, 512, NEXT | WRITE, 2)
        .desc(2, 0x5000, 1, WRITE, 0);
    s.header(0x3000, 0, 7)
        .put(0x3200, &t.table[..48])
        .publish(&[0]);
    out.push(("indirect_in", s.bytes(), vec![(0, 513)]));

    // Three chains in one batch.
    let mut s = Input::new();
    rw(&mut s, 0x3000, Some((0x4000, 512, true)), 0);
    rw(&mut s, 0x3010, Some((0x3100, 512, false)), 3);
    rw(&mut s, 0x3020, None, 6);
    s.header(0x3000, 0, 1)
        .header(0x3010, 1, 2)
        .header(0x3020, 4, 0)
        .put(0x3100, &[0x5a; 512])
        .publish(&[0, 3, 6]);
    out.push(("batch", s.bytes(), vec![(0, 513), (3, 1), (6, 1)]));

    // A read into a buffer straddling the two adjacent regions.
    let mut s = Input::new();
    rw(&mut s, 0x3000, Some((MEM as u64 - 0x200, 1024, true)), 0);
    s.header(0x3000, 0, 0).publish(&[0]);
    out.push(("straddle_in", s.bytes(), vec![(0, 1025)]));

    // Read-only device (first byte 0x80): the write is refused.
    let mut s = Input::new();
    rw(&mut s, 0x3080, Some((0x3100, 512, false)), 0);
    s.header(0x3080, 1, 3).publish(&[0]);
    out.push(("read_only_out", s.bytes(), vec![(0, 1)]));

    // EVENT_IDX (first byte 0x40).
    let mut s = Input::new();
    rw(&mut s, 0x3040, Some((0x4000, 512, true)), 0);
    s.header(0x3040, 0, 5).publish(&[0]);
    out.push(("event_idx_in", s.bytes(), vec![(0, 513)]));
    out
}
