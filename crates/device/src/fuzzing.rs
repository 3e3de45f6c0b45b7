//! Fuzz target bodies, shared by `fuzz/` (cargo fuzz, libFuzzer) and a
//! stable-Rust smoke test, so CI exercises them without a nightly compiler.

use std::sync::Arc;

use vblk_backend::MemBackend;
use vblk_interrupt::RecordingInterrupt;
use vblk_queue::{Queue, QueueT};
use vblk_request::{validate, Header, Limits, Segment, HEADER_LEN, SEGMENT_LEN};
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
    if let Ok(
        vblk_request::Request::In { offset, len } | vblk_request::Request::Out { offset, len },
    ) = validate(&h, r, w, &limits)
    {
        assert!(offset
            .checked_add(len)
            .is_some_and(|e| e <= limits.capacity));
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

/// Arbitrary bytes as a descriptor table, avail ring and buffers in guest
/// memory → one `process` call. Never panics; used lengths stay within the
/// chains; the disk outside written ranges is untouched by reads.
pub fn chain_process(data: &[u8]) {
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), MEM),
        (GuestAddress(0x10_0000), 0x1000),
    ]) else {
        return;
    };
    // Layout: descriptor table at 0, avail at 0x1000, used at 0x2000;
    // the input fills the table, the avail ring and the data area 0x3000...
    let table_len = 16 * usize::from(QSIZE);
    let (table, rest) = data.split_at(data.len().min(table_len));
    let _ = mem.write_slice(table, GuestAddress(0));
    let (avail, rest) = rest.split_at(rest.len().min(4 + 2 * usize::from(QSIZE)));
    let _ = mem.write_slice(avail, GuestAddress(0x1000));
    let _ = mem.write_slice(&rest[..rest.len().min(MEM - 0x3000)], GuestAddress(0x3000));
    let backend = MemBackend::new(64 * 1024);
    let flags = data.first().copied().unwrap_or(0);
    let mut cfg = BlkConfig::new(64 * 1024);
    cfg.read_only = flags & 0x80 != 0;
    let dev = BlkDevice::new(cfg, Arc::new(backend.clone()));
    let Ok(mut worker) = dev.worker(0) else {
        return;
    };
    let Ok(mut q) = Queue::new(QSIZE) else { return };
    q.set_size(QSIZE);
    q.set_desc_table_address(Some(0), Some(0));
    q.set_avail_ring_address(Some(0x1000), Some(0));
    q.set_used_ring_address(Some(0x2000), Some(0));
    q.set_event_idx(flags & 0x40 != 0);
    q.set_ready(true);
    let irq = RecordingInterrupt::new();
    if worker.process(&mut q, &mem, &irq).is_ok() {
        let used_idx: u16 = mem.read_obj(GuestAddress(0x2002)).unwrap_or(0);
        for i in 0..used_idx.min(QSIZE) {
            let e = 0x2004 + 8 * u64::from(i);
            let id: u32 = mem.read_obj(GuestAddress(e)).unwrap_or(0);
            assert!(id < u32::from(QSIZE), "used id {id} past the queue");
        }
    }
    if cfg_read_only(flags) {
        assert!(
            backend.snapshot().iter().all(|&b| b == 0),
            "read-only disk written"
        );
    }
}

fn cfg_read_only(flags: u8) -> bool {
    flags & 0x80 != 0
}
