//! Requests refused or failed below the parser: a read-only device, backend
//! errors (EIO, ENOSPC) and short I/O; the next request still works.

use super::*;

#[test]
fn read_only_device_refuses_writes_and_keeps_every_byte() {
    let mut r = Rig::with(|c| c.read_only = true, false);
    r.put(DATA, &[1; 512]);
    r.header(HDR, T_OUT, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    r.put(DATA, &segment(0, 8, 0));
    for t in [T_DISCARD, T_WRITE_ZEROES] {
        r.header(HDR, t, 0);
        let out = r.submit(&[(HDR, 16, R), (DATA, 16, R), (STATUS, 1, W)]);
        assert_eq!(out, (UNSUPP, 1, q0()), "not offered on a read-only device");
    }
    r.check_disk();
    // Reads and flushes still work.
    r.header(HDR, T_IN, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 513, q0()));
    assert_eq!(r.guest(DATA, 512), orig(0, 512));
    r.header(HDR, T_FLUSH, 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, q0()));
    r.check_disk();
    assert_eq!(r.counter("backend_ios"), 2, "only the read and the flush");
}

#[test]
fn backend_eio_and_enospc_are_ioerr_and_the_next_request_works() {
    let mut r = Rig::new();
    r.put(DATA, &[0x77; 512]);
    for errno in [libc::EIO, libc::ENOSPC] {
        r.backend.fail_next(1, errno);
        r.header(HDR, T_OUT, 0);
        let out = r.submit(&[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
        assert_eq!(out, (IOERR, 1, q0()), "errno {errno}");
        r.check_disk();
        // The very next request is served normally.
        let out = r.submit(&[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
        assert_eq!(out, (OK, 1, q0()));
        r.expect_write(0, &[0x77; 512]);
        r.check_disk();
        r.backend.fill(0, &orig(0, 512));
        r.expect = pristine();
    }
    assert_eq!(r.counter("backend_errors"), 2);
    assert_eq!(r.counter("status_ioerr"), 2);
    assert_eq!(r.counter("status_ok"), 2);
}

#[test]
fn backend_errors_on_read_flush_and_discard() {
    let mut r = Rig::new();
    r.put(DATA, &[0xcc; 512]);
    r.backend.fail_next(1, libc::EIO);
    r.header(HDR, T_IN, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()), "a failed read reports 1 used byte");
    r.backend.fail_next(1, libc::EIO);
    r.header(HDR, T_FLUSH, 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (IOERR, 1, q0()));
    r.backend.fail_next(1, libc::EIO);
    r.header(HDR, T_DISCARD, 0);
    r.put(DATA + 0x1000, &segment(0, 1, 0));
    let out = r.submit(&[(HDR, 16, R), (DATA + 0x1000, 16, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()));
    r.check_disk();
    r.header(HDR, T_IN, 1);
    let out = r.submit(&[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 513, q0()));
    assert_eq!(r.guest(DATA, 512), orig(512, 512));
    assert_eq!(r.counter("backend_errors"), 3);
    assert_eq!(r.backend.flush_count(), 0);
}

#[test]
fn short_io_is_ioerr() {
    let mut r = Rig::new();
    r.put(DATA, &[0x99; 1024]);
    r.backend.short_next(1);
    r.header(HDR, T_IN, 0);
    let out = r.submit(&[(HDR, 16, R), (DATA, 1024, W), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()), "short read");
    r.put(DATA, &[0x99; 1024]);
    r.backend.short_next(1);
    r.header(HDR, T_OUT, 4);
    let out = r.submit(&[(HDR, 16, R), (DATA, 1024, R), (STATUS, 1, W)]);
    assert_eq!(out, (IOERR, 1, q0()), "short write");
    // MemBackend wrote the first half before stopping.
    r.expect_write(4 * 512, &[0x99; 512]);
    r.check_disk();
    assert_eq!(r.counter("backend_errors"), 2);
    assert_eq!(r.counter("bytes_read"), 0);
    assert_eq!(r.counter("bytes_written"), 0);
}
