//! The packed-ring fuzz body (feature `fuzzing`, not in the release
//! binary): arbitrary bytes as a packed descriptor ring, its position and
//! the buffers → one `process` call through the device worker.

use std::sync::Arc;

use vblk_backend::MemBackend;
use vblk_queue::{Queue, QueueT};
use vblk_testkit::RecordingInterrupt;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::{set_packed_base, BlkConfig, BlkDevice, QueueError};

const QSIZE: u16 = 8;
const MEM: usize = 0x4_0000;
const DISK: u64 = 64 * 1024;
/// Descriptor ring at 0, driver and device event areas after it.
const DRIVER_AREA: u64 = 16 * QSIZE as u64;
const DEVICE_AREA: u64 = DRIVER_AREA + 4;

/// Never panics; nothing stays in flight; a read-only disk is never
/// written; the only error is a broken packed ring.
///
/// Input layout: byte 0 options (0x80 read-only, 0x40 EVENT_IDX, 0x20 a
/// fresh ring position, else bytes 1..5 are the vhost-user base), bytes
/// 5..133 the 8 descriptors, 133..137 the driver event suppression
/// structure, the rest lands at guest 0x3000 (headers, indirect tables).
///
/// Returns how many buffers were used (for the seed test).
pub fn packed_process(data: &[u8]) -> usize {
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]) else {
        return 0;
    };
    let opt = data.first().copied().unwrap_or(0);
    let base = if opt & 0x20 != 0 || data.len() < 5 {
        0x8000_8000
    } else {
        u32::from_le_bytes([data[1], data[2], data[3], data[4]])
    };
    let rest = data.get(5..).unwrap_or(&[]);
    let (ring, rest) = rest.split_at(rest.len().min(16 * usize::from(QSIZE)));
    let _ = mem.write_slice(ring, GuestAddress(0));
    let (event, rest) = rest.split_at(rest.len().min(4));
    let _ = mem.write_slice(event, GuestAddress(DRIVER_AREA));
    let _ = mem.write_slice(&rest[..rest.len().min(MEM - 0x3000)], GuestAddress(0x3000));
    let backend = MemBackend::new(DISK);
    let pristine: Vec<u8> = (0..DISK as usize).map(|i| (i % 251) as u8).collect();
    backend.fill(0, &pristine);
    let mut cfg = BlkConfig::new(DISK);
    cfg.read_only = opt & 0x80 != 0;
    let dev = BlkDevice::new(cfg, Arc::new(backend.clone()));
    let Ok(mut worker) = dev.worker(0) else {
        return 0;
    };
    let Ok(mut q) = Queue::new(QSIZE) else {
        return 0;
    };
    q.set_size(QSIZE);
    q.set_desc_table_address(Some(0), Some(0));
    q.set_avail_ring_address(Some(DRIVER_AREA as u32), Some(0));
    q.set_used_ring_address(Some(DEVICE_AREA as u32), Some(0));
    q.set_event_idx(opt & 0x40 != 0);
    q.set_ready(true);
    set_packed_base(&mut q, base);
    if worker.attach_ring(&q, true).is_err() {
        return 0;
    }
    let irq = RecordingInterrupt::new();
    match worker.process(&mut q, &mem, &irq) {
        Ok(_) | Err(QueueError::Packed(..)) => {}
        Err(e) => panic!("a packed ring failed with {e}"),
    }
    assert_eq!(worker.in_flight(), 0, "requests left in flight");
    if opt & 0x80 != 0 {
        assert!(
            backend.snapshot() == pristine,
            "a read-only disk was written"
        );
    }
    // (The used descriptors' bytes are not checked: a guest may aim its
    // own writable buffers at the ring, as inputs here can.)
    let used = dev
        .stats()
        .queue(0)
        .snapshot()
        .into_iter()
        .find(|(n, _)| *n == "used_pushes")
        .map_or(0, |(_, v)| v);
    used as usize
}

/// Well-formed inputs: a FLUSH, a GET_ID and a read over a fresh ring.
pub fn packed_process_seeds() -> Vec<(&'static str, Vec<u8>, usize)> {
    let desc = |addr: u64, len: u32, id: u16, flags: u16| {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&id.to_le_bytes());
        b[14..16].copy_from_slice(&(flags | 0x80).to_le_bytes());
        b
    };
    let header = |t: u32, sector: u64| {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&t.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        h
    };
    let build = |descs: &[[u8; 16]], data: &[u8]| {
        let mut v = vec![0x20u8, 0, 0, 0, 0];
        for d in descs {
            v.extend_from_slice(d);
        }
        v.resize(5 + 16 * usize::from(QSIZE), 0);
        v.extend_from_slice(&[0, 0, 0, 0]);
        v.extend_from_slice(data);
        v
    };
    let flush = build(
        &[desc(0x3000, 16, 0, 1), desc(0x3010, 1, 0, 2)],
        &header(4, 0),
    );
    let get_id = build(
        &[
            desc(0x3000, 16, 5, 1),
            desc(0x3100, 20, 5, 3),
            desc(0x3010, 1, 5, 2),
        ],
        &header(8, 0),
    );
    let read = build(
        &[
            desc(0x3000, 16, 2, 1),
            desc(0x4000, 512, 2, 3),
            desc(0x3010, 1, 2, 2),
            desc(0x3000, 16, 1, 1),
            desc(0x3010, 1, 1, 2),
        ],
        &header(0, 1),
    );
    vec![
        ("flush", flush, 1),
        ("get-id", get_id, 1),
        ("read-and-flush", read, 2),
    ]
}
