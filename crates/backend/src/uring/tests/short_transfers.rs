//! Short transfers: reads at and across the end of the file, partly
//! cached ranges under `RWF_NOWAIT`, and continuation of a short read.

use super::*;

#[test]
fn eof_read_is_an_error_and_a_straddling_read_is_resubmitted() {
    let (_d, _p, mut e) = engine(8192);
    let mut a = vec![0u8; 4096];
    let mut b = vec![0u8; 4096];
    push(&mut e, IoOp::Read, 8192, 4096, &mut [&mut a], 1);
    // Short (2 KiB), then the rest is resubmitted and hits EOF.
    push(&mut e, IoOp::Read, 6144, 4096, &mut [&mut b], 2);
    e.submit().unwrap();
    let mut out = vec![];
    e.reap(&mut out, 2).unwrap();
    out.sort_by_key(|c| c.token);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].result, Err(libc::EIO), "read at EOF");
    assert_eq!(out[1].result, Err(libc::EIO), "read straddling EOF");
    assert!(e.resubmitted >= 1, "the remainder went back to the ring");
    assert_eq!(e.in_flight(), 0);
}

#[test]
fn eof_read_inline_is_an_error() {
    let (_d, _p, mut e) = engine_with(8192, true);
    let mut a = vec![0u8; 4096];
    assert_eq!(
        one(&mut e, IoOp::Read, 8192, 4096, &mut [&mut a]).result,
        Err(libc::EIO)
    );
    assert_eq!(
        one(&mut e, IoOp::Read, 6144, 4096, &mut [&mut a]).result,
        Err(libc::EIO)
    );
}

#[test]
fn partly_cached_read_reports_the_full_length() {
    use std::os::unix::fs::FileExt;
    let (_d, p, mut e) = engine_with(1 << 20, true);
    let want = pattern(65536, 0x11);
    let f = e.file().clone();
    f.write_all_at(&want, 65536).unwrap();
    f.sync_data().unwrap();
    // The middle 16 KiB leave the page cache: RWF_NOWAIT reads the first
    // 24 KiB inline and stops; the ring must do the remaining 40 KiB.
    crate::testutil::partly_cache(&p, 65536);
    let mut got = vec![0u8; 65536];
    let c = one(&mut e, IoOp::Read, 65536, 65536, &mut [&mut got]);
    assert_eq!(c.result, Ok(65536), "the completion reports the whole read");
    assert!(got == want, "exact bytes");
    assert_eq!(
        e.partial_inline, 1,
        "the read was partly inline, partly in the ring"
    );

    // A write over a partly cached range, same expectations.
    let w = pattern(65536, 0x5c);
    let mut wb = w.clone();
    crate::testutil::partly_cache(&p, 65536);
    let c = one(&mut e, IoOp::Write, 65536, 65536, &mut [&mut wb]);
    assert_eq!(c.result, Ok(65536));
    let d = std::fs::read(&p).unwrap();
    assert!(d[65536..131072] == w[..]);
    assert_eq!(e.in_flight(), 0);
}

#[test]
fn short_read_continues_where_it_stopped() {
    use std::os::unix::fs::FileExt;
    // The file ends 2 KiB into a 4 KiB read: the ring returns 2048. The
    // CQE waits in the completion ring while the file grows; reaping it
    // continues the read for the remaining 2 KiB, which now exist.
    let (_d, _p, mut e) = engine(8192);
    let f = e.file().clone();
    f.write_all_at(&pattern(8192, 1), 0).unwrap();
    let fd = e.completion_fd().unwrap();
    let mut buf = vec![0u8; 4096];
    push(&mut e, IoOp::Read, 6144, 4096, &mut [&mut buf], 5);
    e.submit().unwrap();
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(
        unsafe { libc::poll(&mut pfd, 1, 5000) },
        1,
        "the short CQE is posted"
    );
    let more = pattern(4096, 2);
    f.write_all_at(&more, 8192).unwrap();
    let mut out = vec![];
    e.reap(&mut out, 1).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].result,
        Ok(4096),
        "full length, not the 2048 of the first CQE"
    );
    assert_eq!(
        e.resubmitted, 1,
        "the remainder went through the ring again"
    );
    assert!(buf[..2048] == pattern(8192, 1)[6144..]);
    assert!(buf[2048..] == more[..2048]);
}
