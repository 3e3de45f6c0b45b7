//! The packed ring against a driver written from the spec (the test kit's
//! `PackedDriver`): round trips, out-of-order use over many laps, indirect
//! tables, notification decisions, and random shapes (property tests).
//! The hostile shapes are in `tests_hostile`.

use proptest::prelude::*;
use vblk_testkit::packed::{PDesc, PackedDriver, P_WRITE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::event::decide;
use super::*;
use crate::Chain;

pub(super) const MEM: u64 = 0x10_0000;
pub(super) const RING: u64 = 0x1000;

pub(super) fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap()
}

pub(super) fn ring_for(d: &PackedDriver, event_idx: bool) -> PackedRing {
    PackedRing::new(
        GuestAddress(d.desc),
        GuestAddress(d.driver_area),
        GuestAddress(d.device_area),
        d.size,
        d.base(),
        event_idx,
    )
    .unwrap()
}

pub(super) fn snapshot(m: &GuestMemoryMmap) -> Vec<u8> {
    let mut v = vec![0u8; MEM as usize];
    m.read_slice(&mut v, GuestAddress(0)).unwrap();
    v
}

#[test]
fn a_buffer_round_trips_and_the_base_encodes_both_positions() {
    let m = mem();
    let mut d = PackedDriver::new(RING, 8);
    let mut r = ring_for(&d, false);
    assert_eq!(r.base(), 0x8000_8000, "fresh ring: both wrap counters 1");
    let mut c = Chain::default();
    assert_eq!(r.pop(&m, &mut c), Ok(None));
    d.add(
        &m,
        &[
            (0x8000, 16, 0),
            (0x9000, 512, P_WRITE),
            (0xa000, 1, P_WRITE),
        ],
        5,
    );
    assert_eq!(r.pop(&m, &mut c), Ok(Some(5)));
    assert_eq!(
        (c.head, c.readable_len, c.writable_len, c.descriptors),
        (5, 16, 513, 3)
    );
    assert_eq!(r.pop(&m, &mut c), Ok(None));
    assert_eq!(r.in_flight(), 1);
    assert_eq!(d.take_used(&m), None);
    r.push_used(&m, 5, 513).unwrap();
    // Used, lap 1, and WRITE: the length counts.
    assert_eq!(
        d.read(&m, 0).flags,
        DESC_F_AVAIL | DESC_F_USED | DESC_F_WRITE
    );
    assert_eq!(d.take_used(&m), Some((5, 513)));
    assert_eq!(r.base(), 0x8003_8003);
    // Unknown ids are refused (the device's own bookkeeping).
    assert_eq!(r.push_used(&m, 5, 1), Err(PackedError::UnknownId(5)));
}

#[test]
fn out_of_order_completions_over_many_wraps() {
    let m = mem();
    let mut d = PackedDriver::new(RING, 4);
    let mut r = ring_for(&d, false);
    let mut c = Chain::default();
    for round in 0..20u32 {
        // Buffers of 1 and 2 descriptors (3 slots of 4), used in reverse.
        d.add(&m, &[(0x8000, 16, 0)], 0);
        d.add(&m, &[(0x8000, 16, 0), (0x9000, 8, P_WRITE)], 3);
        assert_eq!(r.pop(&m, &mut c), Ok(Some(0)));
        assert_eq!(r.pop(&m, &mut c), Ok(Some(3)));
        r.push_used(&m, 3, round).unwrap();
        r.push_used(&m, 0, round + 1).unwrap();
        assert_eq!(d.take_used(&m), Some((3, round)));
        assert_eq!(d.take_used(&m), Some((0, round + 1)));
        assert_eq!(d.take_used(&m), None);
        assert_eq!(r.avail(), r.used());
    }
}

#[test]
fn an_indirect_table_is_one_ring_slot() {
    let m = mem();
    let mut d = PackedDriver::new(RING, 4);
    let mut r = ring_for(&d, false);
    let mut c = Chain::default();
    d.add_indirect(
        &m,
        0x4000,
        &[
            (0x8000, 16, 0),
            (0x9000, 4096, P_WRITE),
            (0xa000, 1, P_WRITE),
        ],
        2,
    );
    assert_eq!(r.pop(&m, &mut c), Ok(Some(2)));
    assert_eq!(
        (c.readable_len, c.writable_len, c.descriptors),
        (16, 4097, 3)
    );
    r.push_used(&m, 2, 4097).unwrap();
    assert_eq!(
        r.used(),
        Position {
            index: 1,
            wrap: true
        }
    );
    assert_eq!(d.take_used(&m), Some((2, 4097)));
}

#[test]
fn notification_decisions() {
    let p = |index, wrap| Position { index, wrap };
    let ev = |off_wrap, flags| EventFlags { off_wrap, flags };
    assert!(!decide(
        ev(0, EVENT_FLAG_DISABLE),
        true,
        p(0, true),
        p(1, true),
        8
    ));
    assert!(decide(
        ev(0, EVENT_FLAG_ENABLE),
        true,
        p(0, true),
        p(1, true),
        8
    ));
    // DESC without EVENT_IDX, and the reserved value: notify.
    assert!(decide(
        ev(0x8005, EVENT_FLAG_DESC),
        false,
        p(0, true),
        p(1, true),
        8
    ));
    assert!(decide(ev(0x8005, 3), true, p(0, true), p(1, true), 8));
    // DESC: the driver's slot lies in [old, new).
    assert!(decide(
        ev(0x8002, EVENT_FLAG_DESC),
        true,
        p(1, true),
        p(4, true),
        8
    ));
    assert!(!decide(
        ev(0x8004, EVENT_FLAG_DESC),
        true,
        p(1, true),
        p(4, true),
        8
    ));
    assert!(!decide(
        ev(0x8000, EVENT_FLAG_DESC),
        true,
        p(1, true),
        p(4, true),
        8
    ));
    // Across the end of the ring: slot 1 of the next lap (wrap 0).
    assert!(decide(
        ev(0x0001, EVENT_FLAG_DESC),
        true,
        p(6, true),
        p(3, false),
        8
    ));
    assert!(!decide(
        ev(0x8001, EVENT_FLAG_DESC),
        true,
        p(6, true),
        p(3, false),
        8
    ));
    // Nothing written: never.
    assert!(!decide(
        ev(0x8001, EVENT_FLAG_DESC),
        true,
        p(1, true),
        p(1, true),
        8
    ));
    // A hostile offset past the ring does not panic.
    let _ = decide(ev(0x7fff, EVENT_FLAG_DESC), true, p(1, true), p(3, true), 8);
}

#[test]
fn kick_suppression_is_written_and_races_are_reported() {
    let m = mem();
    let mut d = PackedDriver::new(RING, 4);
    let r = ring_for(&d, true);
    assert_eq!(r.set_notification(&m, false), Ok(false));
    assert_eq!(d.device_event(&m).1, EVENT_FLAG_DISABLE);
    d.add(&m, &[(0x8000, 16, 0)], 0);
    // Re-enabling finds the buffer that came in while kicks were off.
    assert_eq!(r.set_notification(&m, true), Ok(true));
    assert_eq!(d.device_event(&m).1, EVENT_FLAG_ENABLE);
}

#[test]
fn interrupts_follow_the_driver_structure() {
    let m = mem();
    let mut d = PackedDriver::new(RING, 4);
    let mut r = ring_for(&d, true);
    let mut c = Chain::default();
    d.set_driver_event(&m, 0, EVENT_FLAG_DISABLE);
    d.add(&m, &[(0x8000, 16, 0)], 0);
    r.pop(&m, &mut c).unwrap();
    r.push_used(&m, 0, 0).unwrap();
    assert_eq!(r.needs_interrupt(&m), Ok(false));
    // DESC at slot 2: the next used descriptor (slot 1) is not it ...
    d.set_driver_event(&m, 0x8002, EVENT_FLAG_DESC);
    d.add(&m, &[(0x8000, 16, 0)], 1);
    d.add(&m, &[(0x8000, 16, 0)], 2);
    r.pop(&m, &mut c).unwrap();
    r.pop(&m, &mut c).unwrap();
    r.push_used(&m, 1, 0).unwrap();
    assert_eq!(r.needs_interrupt(&m), Ok(false));
    // ... the one after is.
    r.push_used(&m, 2, 0).unwrap();
    assert_eq!(r.needs_interrupt(&m), Ok(true));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Buffers of random shapes (direct chains and indirect tables) used
    /// in random order, over many laps of a small ring: the driver gets
    /// every id back once, with its length, and the positions agree.
    #[test]
    fn random_shapes_and_completion_orders(
        size in 1u16..9,
        rounds in proptest::collection::vec((1u16..4, any::<bool>(), any::<u64>()), 1..60),
    ) {
        let m = mem();
        let mut d = PackedDriver::new(RING, size);
        let mut r = ring_for(&d, false);
        let mut c = Chain::default();
        let mut free: Vec<u16> = (0..size).collect();
        let mut free_slots = size;
        let mut pending: Vec<(u16, u32)> = vec![];
        for (n, indirect, seed) in rounds {
            let slots = if indirect { 1 } else { n };
            if slots <= free_slots && !free.is_empty() {
                let id = free.remove((seed % free.len() as u64) as usize);
                let segs: Vec<_> = (0..n).map(|i| (0x8000 + 0x100 * u64::from(i), 16, if i + 1 == n { P_WRITE } else { 0 })).collect();
                if indirect {
                    d.add_indirect(&m, 0x4000 + 0x100 * u64::from(id), &segs, id);
                } else {
                    d.add(&m, &segs, id);
                }
                free_slots -= slots;
                prop_assert_eq!(r.pop(&m, &mut c), Ok(Some(id)));
                prop_assert_eq!(c.descriptors, u32::from(n));
                pending.push((id, slots as u32 * 7 + u32::from(id)));
            }
            // Complete one in-flight buffer, chosen by the seed.
            if !pending.is_empty() && seed % 3 != 0 {
                let (id, len) = pending.remove((seed >> 8) as usize % pending.len());
                r.push_used(&m, id, len).unwrap();
                prop_assert_eq!(d.take_used(&m), Some((id, len)));
                free.push(id);
                free_slots += (len - u32::from(id)) as u16 / 7;
            }
            prop_assert_eq!(r.pop(&m, &mut c), Ok(None));
        }
        for (id, len) in pending.drain(..) {
            r.push_used(&m, id, len).unwrap();
            prop_assert_eq!(d.take_used(&m), Some((id, len)));
        }
        prop_assert_eq!(r.avail(), r.used());
        prop_assert_eq!(r.in_flight(), 0);
    }

    /// Any bytes in the ring: a pop never panics, never writes guest
    /// memory, and either takes a buffer or breaks the ring.
    #[test]
    fn garbage_rings_never_panic_or_write(
        descs in proptest::collection::vec((any::<u64>(), any::<u32>(), any::<u16>(), any::<u16>()), 8),
        base in any::<u32>(),
        table_at in 0u64..MEM,
    ) {
        let m = mem();
        for (i, &(addr, len, id, flags)) in descs.iter().enumerate() {
            // Keep some addresses inside memory so indirect tables get read.
            let addr = if addr % 2 == 0 { table_at & !15 } else { addr };
            let len = if len % 2 == 0 { len % 256 } else { len };
            m.write_slice(&PDesc { addr, len, id, flags }.to_bytes(), GuestAddress(RING + 16 * i as u64)).unwrap();
        }
        let Ok(mut r) = PackedRing::new(GuestAddress(RING), GuestAddress(0x800), GuestAddress(0x804), 8, base, true) else {
            return Ok(());
        };
        let before = snapshot(&m);
        let mut c = Chain::default();
        for _ in 0..9 {
            match r.pop(&m, &mut c) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
        prop_assert!(snapshot(&m) == before);
        prop_assert!(r.in_flight() <= 8);
    }
}
