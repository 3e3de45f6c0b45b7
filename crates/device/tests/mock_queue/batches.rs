//! Batches: a full ring in one pass, merged adjacent I/O and its failure,
//! index wrap-around, the same head twice.

use super::*;

#[test]
fn m27_same_head_twice_in_one_batch() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 3);
    r.put(DATA, &[0x21; 512]);
    r.chain_at(0, &[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, F_WRITE)]);
    r.publish(0);
    r.publish(0);
    assert_eq!(r.run().unwrap(), 2);
    assert_eq!(r.used(), Some((0, 1)));
    assert_eq!(r.used(), Some((0, 1)));
    assert_eq!(r.read_status(STATUS), OK);
    assert_eq!(r.irq.take(), q0());
    r.expect_write(3 * 512, &[0x21; 512]);
    r.check_disk();
}

/// Chain `i` of a batch: an indirect table at `TABLE + 0x100 * i` for an
/// IN, OUT or FLUSH of sector `i`, data at `DATA + 512 * i`, status at
/// `STATUS + i`.
fn queue_mixed(r: &Rig, i: u16) -> u32 {
    let n = u64::from(i);
    let hdr = HDR + 16 * n;
    let data = DATA + 512 * n;
    let t = [T_IN, T_OUT, T_FLUSH][usize::from(i % 3)];
    r.header(hdr, t, n);
    let mut descs = vec![(hdr, 16, R)];
    match t {
        T_IN => descs.push((data, 512, W)),
        T_OUT => {
            r.put(data, &[0x80 | i as u8; 512]);
            descs.push((data, 512, R));
        }
        _ => {}
    }
    descs.push((STATUS + n, 1, W));
    let len = r.indirect_table(TABLE + 0x100 * n, &descs);
    r.desc(i, TABLE + 0x100 * n, len, F_INDIRECT, 0);
    r.publish(i);
    if t == T_IN {
        513
    } else {
        1
    }
}

#[test]
fn b1_a_full_ring_in_one_batch_one_interrupt() {
    let mut r = Rig::new();
    let mut want = Vec::new();
    for i in 0..QSIZE {
        want.push((u32::from(i), queue_mixed(&r, i)));
    }
    r.put(STATUS, &[UNTOUCHED; QSIZE as usize]);
    assert_eq!(r.run().unwrap(), usize::from(QSIZE));
    let mut got: Vec<_> = std::iter::from_fn(|| r.used()).collect();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(
        r.guest(STATUS, usize::from(QSIZE)),
        vec![OK; QSIZE as usize]
    );
    assert_eq!(r.irq.take(), q0(), "one interrupt per batch");
    for i in 0..QSIZE {
        let n = u64::from(i);
        match i % 3 {
            0 => assert_eq!(r.guest(DATA + 512 * n, 512), orig(512 * n, 512)),
            1 => r.expect_write(512 * n, &[0x80 | i as u8; 512]),
            _ => {}
        }
    }
    r.check_disk();
    assert_eq!(r.counter("chains_popped"), 16);
    assert_eq!(r.counter("used_pushes"), 16);
    assert_eq!(r.counter("status_ok"), 16);
    assert_eq!(r.counter("interrupts"), 1);
    assert_eq!(r.counter("submits"), 1);
    assert_eq!(r.backend.flush_count(), 5);
    // An empty kick: nothing used, no interrupt.
    assert_eq!(r.run().unwrap(), 0);
    assert!(r.used().is_none());
    assert!(r.irq.take().is_empty());
}

#[test]
fn b2_adjacent_reads_are_merged_into_one_io() {
    let mut r = Rig::new();
    for i in 0..4u16 {
        let base = 3 * i;
        let n = u64::from(i);
        r.header(HDR + 16 * n, T_IN, n);
        r.chain_at(
            base,
            &[
                (HDR + 16 * n, 16, 0),
                (DATA + 512 * n, 512, F_WRITE),
                (STATUS + n, 1, F_WRITE),
            ],
        );
        r.publish(base);
    }
    assert_eq!(r.run().unwrap(), 4);
    for i in 0..4u32 {
        assert_eq!(r.used(), Some((3 * i, 513)));
    }
    assert_eq!(r.guest(STATUS, 4), vec![OK; 4]);
    assert_eq!(r.guest(DATA, 2048), orig(0, 2048));
    assert_eq!(r.irq.take(), q0());
    assert_eq!(r.counter("merged"), 3);
    assert_eq!(r.counter("backend_ios"), 1);
    r.check_disk();
}

#[test]
fn b3_a_failed_merge_keeps_each_requests_status() {
    let mut r = Rig::new();
    // Two adjacent writes; the merged I/O fails once, the retries succeed.
    for i in 0..2u16 {
        let n = u64::from(i);
        r.header(HDR + 16 * n, T_OUT, n);
        r.put(DATA + 512 * n, &[0x40 + i as u8; 512]);
        r.chain_at(
            3 * i,
            &[
                (HDR + 16 * n, 16, 0),
                (DATA + 512 * n, 512, 0),
                (STATUS + n, 1, F_WRITE),
            ],
        );
        r.publish(3 * i);
    }
    r.backend.fail_next(1, libc::EIO);
    assert_eq!(r.run().unwrap(), 2);
    assert_eq!(r.used(), Some((0, 1)));
    assert_eq!(r.used(), Some((3, 1)));
    assert_eq!(r.guest(STATUS, 2), vec![OK, OK]);
    r.expect_write(0, &[0x40; 512]);
    r.expect_write(512, &[0x41; 512]);
    r.check_disk();
    assert_eq!(r.irq.take(), q0());
    // The same, failing twice: the first request fails, the second works.
    for i in 0..2u16 {
        r.put(DATA + 512 * u64::from(i), &[0x50 + i as u8; 512]);
        r.publish(3 * i);
    }
    r.backend.fail_next(2, libc::EIO);
    assert_eq!(r.run().unwrap(), 2);
    assert_eq!(r.used(), Some((0, 1)));
    assert_eq!(r.used(), Some((3, 1)));
    assert_eq!(r.guest(STATUS, 2), vec![IOERR, OK]);
    r.expect_write(512, &[0x51; 512]);
    r.check_disk();
}

#[test]
fn b4_indexes_wrap_at_u16() {
    let mut r = Rig::new();
    let start = u16::MAX - 2;
    r.set_avail_idx(start);
    r.ring.set_used_idx(r.mem, start);
    r.queue.set_next_avail(start);
    r.queue.set_next_used(start);
    r.used_seen = start;
    r.header(HDR, T_IN, 1);
    for i in 0..5u16 {
        let n = u64::from(i);
        r.chain_at(
            3 * i,
            &[
                (HDR, 16, 0),
                (DATA + 512 * n, 512, F_WRITE),
                (STATUS + n, 1, F_WRITE),
            ],
        );
        r.publish(3 * i);
    }
    assert_eq!(r.run().unwrap(), 5);
    assert_eq!(r.ring.used_idx(r.mem), 2);
    for i in 0..5u32 {
        assert_eq!(r.used(), Some((3 * i, 513)));
    }
    assert_eq!(r.guest(STATUS, 5), vec![OK; 5]);
    assert_eq!(r.guest(DATA + 4 * 512, 512), orig(512, 512));
    assert_eq!(r.irq.take(), q0());
    r.check_disk();
}
