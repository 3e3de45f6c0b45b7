//! Tests of the synchronous I/O helpers: iovec arithmetic and copies,
//! `O_DIRECT` alignment checks, the write-zeroes fallback.

use super::*;
use crate::testutil::iov;
use crate::IoOp;
use std::os::unix::io::AsRawFd;

#[test]
fn advance_across_iovec_boundaries() {
    let mut a = vec![0u8; 1000];
    let mut b = vec![0u8; 3096];
    let req = IoRequest {
        op: IoOp::Read,
        offset: 10_000,
        len: 4096,
        iovecs: vec![iov(&mut a), iov(&mut b)],
        token: 9,
        fua: false,
    };
    // Inside the second iovec.
    let r = advance(&req, 1500);
    assert_eq!((r.offset, r.len, r.token), (11_500, 2596, 9));
    assert_eq!(r.iovecs.len(), 1);
    assert_eq!(r.iovecs[0].iov_len, 2596);
    assert_eq!(r.iovecs[0].iov_base as usize, b.as_ptr() as usize + 500);
    // Exactly at the boundary: the first iovec disappears whole.
    let r = advance(&req, 1000);
    assert_eq!((r.offset, r.len, r.iovecs.len()), (11_000, 3096, 1));
    assert_eq!(r.iovecs[0].iov_base as usize, b.as_ptr() as usize);
    // Inside the first iovec: both stay, the first shortened.
    let r = advance(&req, 1);
    assert_eq!((r.offset, r.len, r.iovecs.len()), (10_001, 4095, 2));
    assert_eq!(r.iovecs[0].iov_base as usize, a.as_ptr() as usize + 1);
    assert_eq!(r.iovecs[0].iov_len, 999);
    // Nothing and everything.
    let r = advance(&req, 0);
    assert_eq!((r.offset, r.len, r.iovecs.len()), (10_000, 4096, 2));
    let r = advance(&req, 4096);
    assert_eq!((r.offset, r.len, r.iovecs.len()), (14_096, 0, 0));
    // More than there is: clamped, no overflow.
    let r = advance(&req, u64::MAX);
    assert_eq!((r.offset, r.len, r.iovecs.len()), (14_096, 0, 0));
}

#[test]
fn iovec_copies_honour_skip_and_bounds() {
    let mut a = vec![0u8; 3];
    let mut b = vec![0u8; 5];
    let v = [iov(&mut a), iov(&mut b)];
    // SAFETY: the iovecs cover `a` and `b`, alive and unborrowed here.
    let n = unsafe { copy_to_iovecs(&v, 2, &[1, 2, 3, 4, 5, 6, 7, 8]) };
    assert_eq!(n, 6);
    assert_eq!(a, [0, 0, 1]);
    assert_eq!(b, [2, 3, 4, 5, 6]);
    let v = [iov(&mut a), iov(&mut b)];
    let mut out = [0u8; 4];
    // SAFETY: as above.
    let n = unsafe { copy_from_iovecs(&v, 1, &mut out) };
    assert_eq!((n, out), (4, [0, 1, 2, 3]));
}

#[test]
fn direct_fits_checks_memory_offset_and_lengths() {
    let d = Direct::new(512, 4096);
    let mut buf = AlignedBuf::new(8192, 4096).unwrap();
    let base = buf.iovec();
    let mk = |offset: u64, iovecs: Vec<libc::iovec>| IoRequest {
        op: IoOp::Read,
        offset,
        len: iovecs.iter().map(|v| v.iov_len as u64).sum(),
        iovecs,
        token: 0,
        fua: false,
    };
    assert!(d.fits(&mk(4096, vec![base])));
    assert!(!d.fits(&mk(512, vec![base])), "offset");
    let mut short = base;
    short.iov_len = 512;
    assert!(!d.fits(&mk(0, vec![short])), "length");
    let mut shifted = base;
    shifted.iov_base = (base.iov_base as *mut u8).wrapping_add(512) as *mut libc::c_void;
    shifted.iov_len = 4096;
    assert!(
        d.fits(&mk(0, vec![shifted])),
        "512-aligned memory is enough"
    );
    shifted.iov_base = (base.iov_base as *mut u8).wrapping_add(8) as *mut libc::c_void;
    assert!(!d.fits(&mk(0, vec![shifted])), "memory");
}

#[test]
fn write_zeroes_fallback_writes_zeroes() {
    let dir = crate::testutil::real_fs_dir();
    let p = dir.path().join("z.img");
    std::fs::write(&p, vec![0xeeu8; 1 << 18]).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    let f = SyncFile::buffered(file.as_raw_fd());
    assert_eq!(write_zeroes_slow(&f, 1000, 100_000), Ok(100_000));
    let d = std::fs::read(&p).unwrap();
    assert!(d[..1000].iter().all(|&b| b == 0xee));
    assert!(d[1000..101_000].iter().all(|&b| b == 0));
    assert!(d[101_000..].iter().all(|&b| b == 0xee));
}

/// `advance_iovecs` (and `skip_iovecs`, built on it) leave exactly the
/// bytes after the first `n`, for every `n` over iovecs with empty ones
/// among them, and nothing past the end.
#[test]
fn advancing_iovecs_leaves_exactly_the_rest() {
    let mut buf: Vec<u8> = (0..16u8).collect();
    let base = buf.as_mut_ptr();
    let lens = [0usize, 3, 0, 5, 1, 7];
    let mut at = 0;
    let iov: Vec<libc::iovec> = lens
        .iter()
        .map(|&l| {
            let v = libc::iovec {
                iov_base: base.wrapping_add(at) as *mut libc::c_void,
                iov_len: l,
            };
            at += l;
            v
        })
        .collect();
    let total = at;
    let bytes = |v: &[libc::iovec]| -> Vec<u8> {
        v.iter()
            .flat_map(|x| {
                let start = x.iov_base as usize - base as usize;
                buf[start..start + x.iov_len].to_vec()
            })
            .collect()
    };
    for n in 0..=total as u64 + 3 {
        let mut v = iov.clone();
        advance_iovecs(&mut v, n);
        let want: Vec<u8> = buf[(n as usize).min(total)..total].to_vec();
        assert_eq!(bytes(&v), want, "n = {n}");
        assert_eq!(bytes(&skip_iovecs(&iov, n)), want, "n = {n}");
        if n > 0 {
            assert!(v.first().is_none_or(|x| x.iov_len > 0), "n = {n}: {v:?}");
        }
    }
}
