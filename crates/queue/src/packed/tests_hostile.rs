//! The packed ring against hostile drivers: every shape the spec's driver
//! requirements forbid breaks the ring, and nothing is written.

use vblk_testkit::packed::{avail_bits, PDesc, PackedDriver, P_INDIRECT, P_NEXT, P_WRITE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::tests::{mem, ring_for, snapshot, MEM, RING};
use super::*;
use crate::Chain;

/// A hostile ring: the pop fails with `want`, and no byte of guest memory
/// changed (nothing was used, nothing half-written).
fn broken(m: &GuestMemoryMmap, r: &mut PackedRing, want: PackedError) {
    let before = snapshot(m);
    let pos = (r.avail(), r.used());
    let mut c = Chain::default();
    assert_eq!(r.pop(m, &mut c), Err(want));
    assert_eq!((r.avail(), r.used()), pos, "the ring moved");
    assert!(snapshot(m) == before, "guest memory was written");
}

#[test]
fn hostile_chains_break_the_ring_and_write_nothing() {
    let m = mem();
    // A chain longer than the ring: every descriptor says NEXT.
    let d = PackedDriver::new(RING, 4);
    for i in 0..4 {
        d.put(
            &m,
            i,
            PDesc {
                addr: 0x8000,
                len: 16,
                id: 0,
                flags: P_NEXT | avail_bits(true),
            },
        );
    }
    broken(&m, &mut ring_for(&d, false), PackedError::ChainTooLong(4));
    // A chain that continues into a slot the driver has not made available.
    let d = PackedDriver::new(RING, 4);
    d.put(
        &m,
        0,
        PDesc {
            addr: 0x8000,
            len: 16,
            id: 0,
            flags: P_NEXT | avail_bits(true),
        },
    );
    d.put(
        &m,
        1,
        PDesc {
            addr: 0x8000,
            len: 16,
            id: 0,
            flags: avail_bits(false),
        },
    );
    broken(&m, &mut ring_for(&d, false), PackedError::NotAvailable(1));
    // Wrap-counter confusion across the end of the ring: slot 0 after a
    // wrap needs the flipped counter.
    let mut d = PackedDriver::new(RING, 4);
    for _ in 0..3 {
        d.step();
    }
    let mut r = PackedRing::new(
        GuestAddress(RING),
        GuestAddress(d.driver_area),
        GuestAddress(d.device_area),
        4,
        d.base() & 0xffff | (d.base() & 0xffff) << 16,
        false,
    )
    .unwrap();
    d.put(
        &m,
        3,
        PDesc {
            addr: 0x8000,
            len: 16,
            id: 1,
            flags: P_NEXT | avail_bits(true),
        },
    );
    d.put(
        &m,
        0,
        PDesc {
            addr: 0x8000,
            len: 16,
            id: 1,
            flags: avail_bits(true),
        },
    );
    broken(&m, &mut r, PackedError::NotAvailable(0));
    d.put(
        &m,
        0,
        PDesc {
            addr: 0x8000,
            len: 16,
            id: 1,
            flags: avail_bits(false),
        },
    );
    let mut c = Chain::default();
    assert_eq!(r.pop(&m, &mut c), Ok(Some(1)));
    assert_eq!(
        r.avail(),
        Position {
            index: 1,
            wrap: false
        }
    );
}

#[test]
fn hostile_indirect_tables_break_the_ring() {
    let m = mem();
    let cases: Vec<(Vec<PDesc>, u32, PackedError)> = vec![
        // NEXT inside an indirect table.
        (
            vec![PDesc {
                addr: 0x8000,
                len: 16,
                id: 0,
                flags: P_NEXT,
            }],
            16,
            PackedError::BadIndirectFlags(0, P_NEXT),
        ),
        // An indirect table inside an indirect table.
        (
            vec![
                PDesc {
                    addr: 0x8000,
                    len: 16,
                    id: 0,
                    flags: 0,
                },
                PDesc {
                    addr: 0x6000,
                    len: 16,
                    id: 0,
                    flags: P_INDIRECT,
                },
            ],
            32,
            PackedError::BadIndirectFlags(1, P_INDIRECT),
        ),
        (vec![], 0, PackedError::BadIndirectTable(0)),
        (vec![], 20, PackedError::BadIndirectTable(20)),
    ];
    for (table, len, want) in cases {
        let d = PackedDriver::new(RING, 4);
        for (i, e) in table.iter().enumerate() {
            m.write_slice(&e.to_bytes(), GuestAddress(0x4000 + 16 * i as u64))
                .unwrap();
        }
        d.put(
            &m,
            0,
            PDesc {
                addr: 0x4000,
                len,
                id: 0,
                flags: P_INDIRECT | avail_bits(true),
            },
        );
        broken(&m, &mut ring_for(&d, false), want);
    }
    // A table outside guest memory.
    let d = PackedDriver::new(RING, 4);
    d.put(
        &m,
        0,
        PDesc {
            addr: MEM - 16,
            len: 32,
            id: 0,
            flags: P_INDIRECT | avail_bits(true),
        },
    );
    broken(
        &m,
        &mut ring_for(&d, false),
        PackedError::UnreadableIndirect(1),
    );
    d.put(
        &m,
        0,
        PDesc {
            addr: u64::MAX - 8,
            len: 32,
            id: 0,
            flags: P_INDIRECT | avail_bits(true),
        },
    );
    broken(
        &m,
        &mut ring_for(&d, false),
        PackedError::BadIndirectTable(32),
    );
    // An indirect descriptor linked into a chain.
    let d = PackedDriver::new(RING, 4);
    d.put(
        &m,
        0,
        PDesc {
            addr: 0x8000,
            len: 16,
            id: 0,
            flags: P_NEXT | avail_bits(true),
        },
    );
    d.put(
        &m,
        1,
        PDesc {
            addr: 0x4000,
            len: 16,
            id: 0,
            flags: P_INDIRECT | avail_bits(true),
        },
    );
    broken(
        &m,
        &mut ring_for(&d, false),
        PackedError::IndirectInChain(1),
    );
    d.put(
        &m,
        0,
        PDesc {
            addr: 0x4000,
            len: 16,
            id: 0,
            flags: P_INDIRECT | P_NEXT | avail_bits(true),
        },
    );
    broken(
        &m,
        &mut ring_for(&d, false),
        PackedError::IndirectInChain(0),
    );
}

#[test]
fn hostile_ids_sizes_and_addresses() {
    let m = mem();
    // An id past the queue size.
    let d = PackedDriver::new(RING, 4);
    d.put(
        &m,
        0,
        PDesc {
            addr: 0x8000,
            len: 16,
            id: 4,
            flags: avail_bits(true),
        },
    );
    broken(&m, &mut ring_for(&d, false), PackedError::BadId(4));
    // An id already in flight.
    let mut d = PackedDriver::new(RING, 4);
    let mut r = ring_for(&d, false);
    d.add(&m, &[(0x8000, 16, 0)], 1);
    d.add(&m, &[(0x8000, 16, 0)], 1);
    let mut c = Chain::default();
    assert_eq!(r.pop(&m, &mut c), Ok(Some(1)));
    broken(&m, &mut r, PackedError::IdInUse(1));
    // More available than the ring holds: the driver reused slots the
    // device still owns.
    let mut d = PackedDriver::new(RING, 2);
    let mut r = ring_for(&d, false);
    d.add(&m, &[(0x8000, 16, 0), (0x8000, 16, 0)], 0);
    assert_eq!(r.pop(&m, &mut c), Ok(Some(0)));
    d.add(&m, &[(0x8000, 16, 0)], 1);
    broken(&m, &mut r, PackedError::Overrun);
    // A ring at the very end of memory: its descriptors cannot be read.
    let mut r = PackedRing::new(
        GuestAddress(MEM - 16),
        GuestAddress(0),
        GuestAddress(4),
        4,
        0x8001_8001,
        false,
    )
    .unwrap();
    assert_eq!(r.pop(&m, &mut c), Err(PackedError::Unreachable(1)));
    // Positions and sizes past the ring, misaligned areas.
    let new = |desc: u64, size: u16, base: u32| {
        PackedRing::new(
            GuestAddress(desc),
            GuestAddress(0),
            GuestAddress(4),
            size,
            base,
            false,
        )
        .map(|_| ())
    };
    assert_eq!(new(RING, 4, 0x8004), Err(PackedError::BadBase(0x8004)));
    assert_eq!(
        new(RING, 4, 0x0004_8000),
        Err(PackedError::BadBase(0x0004_8000))
    );
    assert_eq!(new(RING, 0, 0), Err(PackedError::BadSize(0)));
    assert_eq!(new(RING, 0x8001, 0), Err(PackedError::BadSize(0x8001)));
    assert_eq!(new(RING + 8, 4, 0), Err(PackedError::Misaligned(RING + 8)));
    // Zero-length descriptors are counted, not kept; a chain over 4 GiB
    // breaks the ring.
    let mut d = PackedDriver::new(RING, 4);
    let mut r = ring_for(&d, false);
    d.add(&m, &[(0x8000, 0, 0), (0x8000, 16, P_WRITE)], 0);
    assert_eq!(r.pop(&m, &mut c), Ok(Some(0)));
    assert_eq!(
        (c.descriptors, c.readable.len(), c.writable_len),
        (2, 0, 16)
    );
    d.add(&m, &[(0x8000, u32::MAX, 0), (0x8000, 2, P_WRITE)], 1);
    broken(&m, &mut r, PackedError::TooLong);
}

#[test]
fn used_or_stale_descriptors_are_not_available() {
    let m = mem();
    let d = PackedDriver::new(RING, 4);
    let r = ring_for(&d, false);
    // AVAIL == USED: a used descriptor (either phase); the other phase's
    // AVAIL bit: not made available in this lap.
    for flags in [0, P_NEXT, (1 << 7) | (1 << 15), 1 << 15] {
        d.put(
            &m,
            0,
            PDesc {
                addr: 0x8000,
                len: 16,
                id: 0,
                flags,
            },
        );
        assert_eq!(r.has_pending(&m), Ok(false), "flags {flags:#x}");
    }
}
