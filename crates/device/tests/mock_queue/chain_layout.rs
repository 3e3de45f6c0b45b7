//! Malformed chains, layout: where the header, the data and the status byte
//! sit, how they are split over descriptors, and in which direction.

use super::*;

#[test]
fn m01_no_header() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    r.put(DATA, &[3; 512]);
    // 8 header bytes only.
    let out = r.submit(&[(HDR, 8, R), (STATUS, 1, W)]);
    assert_eq!(out, (UNTOUCHED, 0, q0()));
    // 15 bytes, split over two descriptors.
    let out = r.submit(&[(HDR, 7, R), (HDR + 7, 8, R), (STATUS, 1, W)]);
    assert_eq!(out, (UNTOUCHED, 0, q0()));
    // Nothing readable at all.
    let out = r.submit(&[(STATUS, 1, W)]);
    assert_eq!(out, (UNTOUCHED, 0, q0()));
    r.check_disk();
    assert_eq!(r.counter("malformed_chains"), 3);
    assert_eq!(r.counter("req_out"), 0);
}

#[test]
fn m02_header_split_over_several_descriptors_works() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 2);
    let out = r.submit(&[
        (HDR, 1, R),
        (HDR + 1, 1, R),
        (HDR + 2, 2, R),
        (HDR + 4, 4, R),
        (HDR + 8, 3, R),
        (HDR + 11, 5, R),
        (DATA, 512, W),
        (STATUS, 1, W),
    ]);
    assert_eq!(out, (OK, 513, q0()));
    assert_eq!(r.guest(DATA, 512), orig(1024, 512));
    // Out of order in guest memory: the stream order is what counts.
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&T_OUT.to_le_bytes());
    h[8..16].copy_from_slice(&7u64.to_le_bytes());
    r.put(HDR + 0x100, &h[8..]);
    r.put(HDR + 0x200, &h[..8]);
    r.put(DATA, &[0x42; 512]);
    let out = r.submit(&[
        (HDR + 0x200, 8, R),
        (HDR + 0x100, 8, R),
        (DATA, 512, R),
        (STATUS, 1, W),
    ]);
    assert_eq!(out, (OK, 1, q0()));
    r.expect_write(7 * 512, &[0x42; 512]);
    r.check_disk();
}

#[test]
fn m03_header_and_data_in_one_descriptor_works() {
    let mut r = Rig::new();
    r.header(DATA, T_OUT, 9);
    r.put(DATA + 16, &[0x5e; 1024]);
    let out = r.submit(&[(DATA, 16 + 1024, R), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    r.expect_write(9 * 512, &[0x5e; 1024]);
    r.check_disk();
}

#[test]
fn m04_data_split_over_many_descriptors_works() {
    let mut r = Rig::new();
    // Direct: 14 data pieces of uneven sizes (sum 2048) in a 16-entry ring.
    let sizes = [
        1u32, 511, 100, 300, 112, 7, 9, 16, 256, 256, 128, 64, 32, 256,
    ];
    assert_eq!(sizes.iter().sum::<u32>(), 2048);
    r.header(HDR, T_OUT, 16);
    let mut descs = vec![(HDR, 16, R)];
    let mut want = Vec::new();
    let mut at = DATA;
    for (k, &n) in sizes.iter().enumerate() {
        let bytes = vec![k as u8 + 1; n as usize];
        r.put(at, &bytes);
        want.extend_from_slice(&bytes);
        descs.push((at, n, R));
        at += 0x400; // scattered
    }
    descs.push((STATUS, 1, W));
    assert_eq!(r.submit(&descs), (OK, 1, q0()));
    r.expect_write(16 * 512, &want);
    r.check_disk();
    // Indirect: 200 writable pieces of 20..=44 bytes read back the same 4 KiB
    // (a Linux guest never sends this many, seg_max is 254).
    let mut table = vec![(HDR, 16, R)];
    let mut left = 4096u32;
    let mut k = 0u64;
    while left > 0 {
        let n = (20 + (k as u32 * 7) % 25).min(left);
        table.push((REGION2 + k * 64, n, W));
        left -= n;
        k += 1;
    }
    let pieces = table.len() - 1;
    assert!(pieces > 100, "{pieces}");
    table.push((STATUS, 1, W));
    r.header(HDR, T_IN, 14);
    let len = r.indirect_table(TABLE, &table);
    r.desc(0, TABLE, len, F_INDIRECT, 0);
    let out = r.run_one(0, STATUS);
    assert_eq!(out, (OK, 4097, q0()));
    let mut got = Vec::new();
    for d in &table[1..=pieces] {
        got.extend(r.guest(d.0, d.1 as usize));
    }
    assert_eq!(got, r.expect[14 * 512..22 * 512].to_vec());
    r.check_disk();
}

#[test]
fn m05_status_in_a_readable_descriptor_is_returned_unexecuted() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    r.put(DATA, &[7; 512]);
    r.put(STATUS, &[UNTOUCHED]);
    // No writable byte at all: nowhere to put a status.
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, R)]);
    assert_eq!(r.read_status(STATUS), UNTOUCHED);
    assert_eq!((out.1, out.2), (0, q0()));
    r.check_disk();
    assert_eq!(r.counter("malformed_chains"), 1);
    assert_eq!(r.counter("backend_ios"), 0);
}

#[test]
fn m06_zero_length_data() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 0);
    // A zero-length data descriptor: a read of nothing.
    let out = r.submit(&[(HDR, 16, R), (DATA, 0, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    r.header(HDR, T_OUT, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 0, R), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    // Zero-length descriptors sprinkled through a real read are skipped.
    r.header(HDR, T_IN, 1);
    let out = r.submit(&[
        (HDR, 0, R),
        (HDR, 16, R),
        (0, 0, R),
        (DATA, 512, W),
        (u64::MAX, 0, W),
        (STATUS, 1, W),
    ]);
    assert_eq!(out, (OK, 513, q0()));
    assert_eq!(r.guest(DATA, 512), orig(512, 512));
    // A zero-length "status" descriptor does not count as a status byte.
    r.header(HDR, T_FLUSH, 0);
    r.chain_at(0, &[(HDR, 16, 0), (STATUS, 0, F_WRITE)]);
    let out = r.run_one(0, STATUS);
    assert_eq!(out, (UNTOUCHED, 0, q0()));
    r.check_disk();
    assert_eq!(r.counter("backend_ios"), 1, "only the real read");
    assert_eq!(r.backend.flush_count(), 0);
}

#[test]
fn m07_header_in_a_writable_descriptor() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    r.put(DATA, &[7; 512]);
    let out = r.submit(&[(HDR, 16, W), (DATA, 512, W), (STATUS, 1, W)]);
    assert_eq!(out, (UNTOUCHED, 0, q0()));
    r.check_disk();
    assert_eq!(r.guest(HDR, 1), vec![T_OUT as u8], "header overwritten");
    assert_eq!(r.counter("malformed_chains"), 1);
}

#[test]
fn m08_readable_after_writable() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    r.put(DATA, &[7; 512]);
    let out = r.submit(&[
        (HDR, 16, R),
        (DATA + 0x1000, 1, W),
        (DATA, 512, R),
        (STATUS, 1, W),
    ]);
    assert_eq!(out, (IOERR, 1, q0()));
    r.check_disk();
    assert_eq!(r.counter("req_out"), 0, "never parsed");
}

#[test]
fn m09_data_length_not_a_multiple_of_512() {
    let mut r = Rig::new();
    r.put(DATA, &[7; 1024]);
    for (t, n) in [(T_OUT, 100u32), (T_OUT, 513), (T_IN, 511), (T_IN, 513)] {
        r.header(HDR, t, 0);
        let w = t == T_IN;
        let out = r.submit(&[(HDR, 16, R), (DATA, n, w), (STATUS, 1, W)]);
        assert_eq!(out, (IOERR, 1, q0()), "type {t}, {n} bytes");
    }
    assert_eq!(r.guest(DATA, 1024), vec![7; 1024], "no partial read");
    r.check_disk();
}

#[test]
fn m24_data_in_the_wrong_direction() {
    let mut r = Rig::new();
    r.put(DATA, &[7; 512]);
    r.header(HDR, T_IN, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    r.header(HDR, T_OUT, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    assert_eq!(r.guest(DATA, 512), vec![7; 512]);
    r.header(HDR, T_GET_ID, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 20, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    r.check_disk();
}

#[test]
fn m25_status_sharing_a_descriptor_with_data_works() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 6);
    // One writable descriptor of 513 bytes: 512 data bytes, then the status.
    let out = r.submit(&[(HDR, 16, R), (DATA, 513, W)]);
    assert_eq!(out, (OK, 513, q0()));
    assert_eq!(r.guest(DATA, 512), orig(6 * 512, 512));
    r.check_disk();
}
