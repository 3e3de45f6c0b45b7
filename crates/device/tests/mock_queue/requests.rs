//! Every request type on a well-formed chain: IN, OUT, FLUSH, GET_ID and
//! unknown types; the status byte, the used length and the backing bytes.

use super::*;

#[test]
fn in_reads_disk_bytes_with_exact_used_len() {
    let mut r = Rig::new();
    r.header(HDR, T_IN, 3);
    r.put(DATA, &[0xcc; 1100]);
    let out = r.submit(&[(HDR, 16, R), (DATA, 1024, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1025, q0()));
    assert_eq!(r.guest(DATA, 1024), orig(3 * 512, 1024));
    assert_eq!(r.guest(DATA + 1024, 76), vec![0xcc; 76], "wrote past data");
    r.check_disk();
    for (k, v) in [
        ("chains_popped", 1),
        ("req_in", 1),
        ("bytes_read", 1024),
        ("status_ok", 1),
        ("used_pushes", 1),
        ("interrupts", 1),
        ("backend_ios", 1),
        ("malformed_chains", 0),
    ] {
        assert_eq!(r.counter(k), v, "{k}");
    }
}

#[test]
fn out_writes_exactly_its_sectors() {
    let mut r = Rig::new();
    r.header(HDR, T_OUT, 5);
    r.put(DATA, &[0xab; 1536]);
    let out = r.submit(&[(HDR, 16, R), (DATA, 1536, R), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    r.expect_write(5 * 512, &[0xab; 1536]);
    r.check_disk();
    assert_eq!(r.counter("req_out"), 1);
    assert_eq!(r.counter("bytes_written"), 1536);
}

#[test]
fn flush_reaches_the_backend() {
    let mut r = Rig::new();
    r.header(HDR, T_FLUSH, 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, q0()));
    // A sector number in a FLUSH is ignored.
    r.header(HDR, T_FLUSH, u64::MAX);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (OK, 1, q0()));
    assert_eq!(r.backend.flush_count(), 2);
    assert_eq!(r.counter("req_flush"), 2);
    r.check_disk();
}

#[test]
fn get_id_20_byte_serial_in_a_20_byte_buffer() {
    let mut r = Rig::with(|c| c.set_serial("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), false);
    r.header(HDR, T_GET_ID, 0);
    r.put(DATA, &[0xff; 32]);
    let out = r.submit(&[(HDR, 16, R), (DATA, 20, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 21, q0()));
    assert_eq!(&r.guest(DATA, 20), b"ABCDEFGHIJKLMNOPQRST", "no NUL at 20");
    assert_eq!(r.guest(DATA + 20, 12), vec![0xff; 12]);
    assert_eq!(r.counter("req_get_id"), 1);
    r.check_disk();
}

#[test]
fn get_id_long_short_split_and_empty_buffers() {
    let mut r = Rig::new();
    r.header(HDR, T_GET_ID, 0);
    // Longer than 20 bytes: 20 written, zero padded, used = 21.
    r.put(DATA, &[0xff; 64]);
    let out = r.submit(&[(HDR, 16, R), (DATA, 64, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 21, q0()));
    let id = r.guest(DATA, 21);
    assert_eq!(&id[..11], b"mock-serial");
    assert_eq!(&id[11..20], &[0; 9]);
    assert_eq!(id[20], 0xff, "wrote past the 20-byte ID");
    // Shorter: truncated, used = n + 1.
    r.put(DATA, &[0xff; 64]);
    let out = r.submit(&[(HDR, 16, R), (DATA, 4, W), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 5, q0()));
    assert_eq!(&r.guest(DATA, 5), b"mock\xff");
    // Split over two descriptors.
    r.put(DATA, &[0xff; 64]);
    r.put(DATA + 0x100, &[0xff; 64]);
    let out = r.submit(&[
        (HDR, 16, R),
        (DATA, 3, W),
        (DATA + 0x100, 17, W),
        (STATUS, 1, W),
    ]);
    assert_eq!(out, (OK, 21, q0()));
    assert_eq!(&r.guest(DATA, 4), b"moc\xff");
    assert_eq!(&r.guest(DATA + 0x100, 9), b"k-serial\0");
    // No buffer at all: nothing to write, still OK.
    let out = r.submit(&[(HDR, 16, R), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    assert_eq!(r.counter("req_get_id"), 4);
    r.check_disk();
}

#[test]
fn unknown_types_are_unsupp() {
    let mut r = Rig::new();
    for t in [2u32, 3, 5, 7, 9, 10, 12, 14, 0xdead_beef] {
        r.header(HDR, t, 0);
        r.put(DATA, &[0x11; 512]);
        let out = r.submit(&[(HDR, 16, R), (DATA, 512, R), (STATUS, 1, W)]);
        assert_eq!(out, (UNSUPP, 1, q0()), "type {t}");
    }
    assert_eq!(r.counter("req_unsupported"), 9);
    assert_eq!(r.counter("status_unsupp"), 9);
    r.check_disk();
}
