//! Chains and rings the device cannot serve at all: the ring is broken (the
//! transport sets DEVICE_NEEDS_RESET), nothing is used, written or
//! interrupted. Loops, bad indirect tables, chains over 4 GiB, bad indexes
//! and rings outside guest memory.

use vblk_queue::BrokenChain;

use super::*;

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
