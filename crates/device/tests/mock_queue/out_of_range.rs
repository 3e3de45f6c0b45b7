//! Malformed chains, out of range: sectors at and past the end of the disk
//! (and overflowing), and buffers at, across and past the edges of guest
//! memory regions.

use super::*;

#[test]
fn m11_sector_at_the_last_block_works() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, SECTORS - 1);
    r.put(DATA, &[9; 512]);
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    r.expect_write(DISK - 512, &[9; 512]);
    r.check_disk();
    r.header(HDR, T_IN, SECTORS - 2);
    let out = r.submit(&[(HDR, 16, R), (DATA, 1024, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1025, q0()));
    assert_eq!(
        r.guest(DATA, 1024),
        r.expect[DISK as usize - 1024..].to_vec()
    );
}

#[test]
fn m12_sector_past_the_end() {
    let mut r = Rig::new();
    r.put(DATA, &[7; 1024]);
    for (t, sector, n) in [
        (T_IN, SECTORS, 512u32),
        (T_IN, SECTORS - 1, 1024),
        (T_OUT, SECTORS, 512),
        (T_OUT, SECTORS - 1, 1024),
        (T_OUT, 1 << 40, 512),
    ] {
        r.header(HDR, t, sector);
        let out = r.submit(&[(HDR, 16, R), (DATA, n, t == T_IN), (STATUS, 1, W)]);
        assert_eq!(
            out,
            (IOERR, 1, q0()),
            "type {t}, sector {sector}, {n} bytes"
        );
    }
    assert_eq!(r.guest(DATA, 1024), vec![7; 1024]);
    r.check_disk();
    assert_eq!(r.counter("backend_ios"), 0);
}

#[test]
fn m13_sector_times_512_overflowing_u64() {
    let mut r = Rig::new();
    r.put(DATA, &[7; 512]);
    for sector in [u64::MAX, u64::MAX / 512 + 1, u64::MAX / 512, 1 << 55] {
        for t in [T_OUT, T_IN] {
            r.header(HDR, t, sector);
            let out = r.submit(&[(HDR, 16, R), (DATA, 512, t == T_IN), (STATUS, 1, W)]);
            assert_eq!(out, (IOERR, 1, q0()), "type {t}, sector {sector:#x}");
        }
    }
    r.check_disk();
    assert_eq!(r.counter("backend_ios"), 0);
}

#[test]
fn m17_data_outside_guest_memory_is_ioerr_with_status() {
    let mut r = Rig::new();
    r.put(DATA, &[7; 512]);
    for (t, addr) in [
        (T_IN, HOLE),
        (T_IN, HOLE + 0x800),
        (T_IN, 64 * MIB),
        (T_IN, u64::MAX - 100),
        (T_OUT, HOLE),
        (T_OUT, u64::MAX - 511),
    ] {
        r.header(HDR, t, 0);
        let out = r.submit(&[(HDR, 16, R), (addr, 512, t == T_IN), (STATUS, 1, W)]);
        assert_eq!(out, (IOERR, 1, q0()), "type {t} at {addr:#x}");
    }
    r.check_disk();
    assert_eq!(r.counter("bad_address"), 6);
    assert_eq!(r.counter("backend_ios"), 0);
}

#[test]
fn m18_status_outside_guest_memory_is_returned_unexecuted() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 0);
    r.put(DATA, &[7; 512]);
    for status in [HOLE, u64::MAX] {
        r.chain_at(0, &[(HDR, 16, 0), (DATA, 512, 0), (status, 1, F_WRITE)]);
        let out = r.run_one(0, status);
        assert_eq!(out, (UNTOUCHED, 0, q0()), "status at {status:#x}");
    }
    r.check_disk();
    assert_eq!(r.counter("malformed_chains"), 2);
    assert_eq!(r.counter("bad_address"), 2);
}

#[test]
fn m19_header_outside_guest_memory() {
    let mut r = Rig::new();
    let out = r.submit(&[(HOLE, 16, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    // Half in memory, half in the hole.
    r.put(HOLE - 8, &T_FLUSH.to_le_bytes());
    let out = r.submit(&[(HOLE - 8, 16, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    r.check_disk();
    assert_eq!(r.backend.flush_count(), 0);
}

#[test]
fn m20_buffer_straddling_two_memory_regions_works() {
    let mut r = Rig::new();
    // 1 MiB - 0x300 .. 1 MiB + 0x300 crosses from region 1 into region 2.
    let at = REGION2 - 0x300;
    r.put(at, &[0x3c; 1536]);
    r.header(HDR, T_OUT, 40);
    let out = r.submit(&[(HDR, 16, R), (at, 1536, R), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    r.expect_write(40 * 512, &[0x3c; 1536]);
    r.check_disk();
    r.header(HDR, T_IN, 2);
    let out = r.submit(&[(HDR, 16, R), (at, 1536, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1537, q0()));
    assert_eq!(r.guest(at, 1536), orig(1024, 1536));
    // The header and the status byte may straddle too.
    r.header(REGION2 - 8, T_IN, 0);
    let out = r.submit(&[(REGION2 - 8, 16, R), (DATA, 512, W), (REGION2 - 1, 1, W)]);
    assert_eq!(out, (OK, 513, q0()));
    assert_eq!(r.guest(DATA, 512), orig(0, 512));
    r.check_disk();
}

#[test]
fn m21_buffer_straddling_into_a_hole_is_refused() {
    let mut r = Rig::new();
    let at = HOLE - 0x200;
    r.put(at, &[0x3c; 0x200]);
    r.header(HDR, T_IN, 0);
    let out = r.submit(&[(HDR, 16, R), (at, 1024, W), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    assert_eq!(r.guest(at, 0x200), vec![0x3c; 0x200], "partial read");
    r.header(HDR, T_OUT, 0);
    let out = r.submit(&[(HDR, 16, R), (at, 1024, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    r.check_disk();
}
