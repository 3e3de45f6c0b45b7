//! DISCARD and WRITE_ZEROES: every segment applied, UNMAP, and the
//! segments (flags, ranges, sizes, counts) the device refuses.

use super::*;

#[test]
fn discard_zeroes_every_segment() {
    let mut r = Rig::new();
    r.header(HDR, T_DISCARD, 0);
    r.put(DATA, &segment(10, 2, 0));
    r.put(DATA + 16, &segment(20, 1, 0));
    r.put(DATA + 32, &segment(30, 0, 0)); // empty segment: nothing to do
    let out = r.submit(&[(HDR, 16, R), (DATA, 48, R), (STATUS, 1, W)]);
    assert_eq!(out, (OK, 1, q0()));
    // MemBackend deallocates as zeroes.
    r.expect_write(10 * 512, &[0; 1024]);
    r.expect_write(20 * 512, &[0; 512]);
    r.check_disk();
    assert_eq!(r.counter("req_discard"), 1);
}

#[test]
fn write_zeroes_with_and_without_unmap() {
    let mut r = Rig::new();
    r.header(HDR, T_WRITE_ZEROES, 0);
    r.put(DATA, &segment(2, 4, 1)); // UNMAP allowed
    assert_eq!(
        r.submit(&[(HDR, 16, R), (DATA, 16, R), (STATUS, 1, W)]),
        (OK, 1, q0())
    );
    r.expect_write(1024, &[0; 2048]);
    r.check_disk();
    r.put(DATA, &segment(SECTORS - 1, 1, 0));
    assert_eq!(
        r.submit(&[(HDR, 16, R), (DATA, 16, R), (STATUS, 1, W)]),
        (OK, 1, q0())
    );
    r.expect_write(DISK - 512, &[0; 512]);
    r.check_disk();
    assert_eq!(r.counter("req_write_zeroes"), 2);
}

#[test]
fn discard_and_write_zeroes_refuse_bad_segments() {
    let mut r = Rig::new();
    let cases: &[(u32, Vec<u8>, u8)] = &[
        // Unknown flag (UNMAP is not valid for discard).
        (T_DISCARD, segment(10, 2, 1).to_vec(), UNSUPP),
        (T_WRITE_ZEROES, segment(10, 2, 2).to_vec(), UNSUPP),
        // Past the end.
        (T_DISCARD, segment(SECTORS - 1, 2, 0).to_vec(), IOERR),
        (
            T_WRITE_ZEROES,
            segment(u64::MAX / 256, 1, 0).to_vec(),
            IOERR,
        ),
        // Not a whole segment.
        (T_DISCARD, segment(0, 1, 0)[..15].to_vec(), IOERR),
        // More segments than max_discard_seg (32).
        (T_DISCARD, segment(0, 1, 0).repeat(33), UNSUPP),
    ];
    for (t, data, want) in cases {
        r.header(HDR, *t, 0);
        r.put(DATA, data);
        let out = r.submit(&[(HDR, 16, R), (DATA, data.len() as u32, R), (STATUS, 1, W)]);
        assert_eq!(out, (*want, 1, q0()), "type {t}, {} bytes", data.len());
        r.check_disk();
    }
    // No segment at all; a writable data buffer.
    r.header(HDR, T_DISCARD, 0);
    assert_eq!(r.submit(&[(HDR, 16, R), (STATUS, 1, W)]), (IOERR, 1, q0()));
    r.put(DATA, &segment(0, 1, 0));
    assert_eq!(
        r.submit(&[
            (HDR, 16, R),
            (DATA, 16, R),
            (DATA + 64, 16, W),
            (STATUS, 1, W)
        ]),
        (IOERR, 1, q0())
    );
    r.check_disk();
    // A good segment after a bad one does not run either.
    r.put(DATA, &segment(0, 1, 0));
    r.put(DATA + 16, &segment(SECTORS, 1, 0));
    assert_eq!(
        r.submit(&[(HDR, 16, R), (DATA, 32, R), (STATUS, 1, W)]),
        (IOERR, 1, q0())
    );
    r.check_disk();
}
