//! Property test of the device core on random packed rings: any
//! descriptors (random flags — NEXT, WRITE, INDIRECT, AVAIL, USED — ids,
//! lengths, addresses inside and outside guest memory, indirect tables of
//! random entries) at a random ring position → `process` never panics,
//! ends with nothing in flight, and writes guest memory only in the
//! descriptor ring, the device event area and the buffers the driver
//! marked device-writable; a broken ring is a `QueueError::Packed`.

use std::sync::Arc;

use proptest::prelude::*;
use vblk_backend::MemBackend;
use vblk_device::{set_packed_base, BlkConfig, BlkDevice, QueueError};
use vblk_queue::{Queue, QueueT};
use vblk_testkit::packed::{PDesc, PackedDriver, P_INDIRECT, P_NEXT, P_WRITE};
use vblk_testkit::RecordingInterrupt;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const QSIZE: u16 = 8;
const RING: u64 = 0;
/// Device-readable buffers (headers, data) and indirect tables live here.
const RO: u64 = 0x1_0000;
/// Device-writable buffers live here.
const WR: u64 = 0x2_0000;
const MEM: u64 = 0x4_0000;
const DISK: u64 = 64 * 1024;

#[derive(Debug, Clone)]
struct Case {
    base: u32,
    descs: Vec<(u8, u32, u16, u16)>,
    table: Vec<(u8, u32, u16)>,
    headers: Vec<u8>,
}

/// An address by kind: 0..=3 the read-only zone, 4..=5 out of memory, the
/// rest the writable zone (only used with WRITE, see `place`).
fn address(kind: u8, salt: u32, write: bool) -> u64 {
    match kind % 8 {
        4 => MEM - 8,
        5 => u64::MAX - 16,
        _ if write => WR + u64::from(salt % 0x8000),
        k => RO + 0x2000 * u64::from(k) + u64::from(salt % 0x1000),
    }
}

fn flags() -> impl Strategy<Value = u16> {
    prop_oneof![
        // Mostly plausible: the right AVAIL/USED bits for lap 1.
        3 => (0u16..8).prop_map(|f| f | (1 << 7)),
        1 => any::<u16>(),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![
            3 => Just(0x8000_8000u32),
            // A position inside the ring, either lap (avail == used: idle).
            2 => (0u32..u32::from(QSIZE), any::<bool>()).prop_map(|(i, w)| {
                let p = i | (u32::from(w) << 15);
                p | (p << 16)
            }),
            1 => any::<u32>(),
        ],
        proptest::collection::vec((any::<u8>(), 0u32..0x3000, 0u16..12, flags()), 8),
        proptest::collection::vec((any::<u8>(), 0u32..0x2000, 0u16..8), 0..5),
        proptest::collection::vec(any::<u8>(), 16),
    )
        .prop_map(|(base, descs, table, headers)| Case {
            base,
            descs,
            table,
            headers,
        })
}

fn snapshot(mem: &GuestMemoryMmap) -> Vec<u8> {
    let mut v = vec![0u8; MEM as usize];
    mem.read_slice(&mut v, GuestAddress(0)).unwrap();
    v
}

fn check(c: &Case) -> Result<(), TestCaseError> {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap();
    let drv = PackedDriver::new(RING, QSIZE);
    // Headers at the start of each read-only block: some are plausible.
    for k in 0..4u64 {
        let mut h = c.headers.clone();
        h[0] %= 16;
        mem.write_slice(&h, GuestAddress(RO + 0x2000 * k)).unwrap();
    }
    // The indirect table (read-only zone, block 3).
    let table_at = RO + 0x6000 + 0x800;
    for (i, &(kind, len, fl)) in c.table.iter().enumerate() {
        let write = fl & P_WRITE != 0;
        let d = PDesc {
            addr: address(kind, len, write),
            len,
            id: 0,
            flags: fl,
        };
        mem.write_slice(&d.to_bytes(), GuestAddress(table_at + 16 * i as u64))
            .unwrap();
    }
    for (i, &(kind, len, id, fl)) in c.descs.iter().enumerate() {
        let write = fl & P_WRITE != 0;
        let (addr, len) = if fl & P_INDIRECT != 0 && kind % 2 == 0 {
            (table_at, 16 * c.table.len() as u32)
        } else {
            (address(kind, len, write), len)
        };
        drv.put(
            &mem,
            i as u16,
            PDesc {
                addr,
                len,
                id,
                flags: fl,
            },
        );
    }
    let _ = P_NEXT;
    let before = snapshot(&mem);
    let backend = MemBackend::new(DISK);
    let dev = BlkDevice::new(BlkConfig::new(DISK), Arc::new(backend));
    let mut w = dev.worker(0).unwrap();
    let mut q = Queue::new(QSIZE).unwrap();
    q.set_size(QSIZE);
    q.set_desc_table_address(Some(drv.desc as u32), Some(0));
    q.set_avail_ring_address(Some(drv.driver_area as u32), Some(0));
    q.set_used_ring_address(Some(drv.device_area as u32), Some(0));
    q.set_event_idx(true);
    q.set_ready(true);
    set_packed_base(&mut q, c.base);
    if w.attach_ring(&q, true).is_err() {
        // A base past the ring: refused before anything is read.
        prop_assert_eq!(snapshot(&mem), before);
        return Ok(());
    }
    let irq = RecordingInterrupt::new();
    match w.process(&mut q, &mem, &irq) {
        Ok(_) | Err(QueueError::Packed(..)) => {}
        Err(e) => prop_assert!(false, "unexpected error {e}"),
    }
    prop_assert_eq!(w.in_flight(), 0);
    let after = snapshot(&mem);
    let ring_end = drv.end() as usize;
    for (i, (a, b)) in before.iter().zip(after.iter()).enumerate() {
        let ok = i < ring_end || (WR as usize..(WR + 0x1_0000) as usize).contains(&i);
        prop_assert!(
            a == b || ok,
            "byte {i:#x} changed outside the ring and the writable zone"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_packed_ring_is_contained(c in case()) {
        check(&c)?;
    }
}
