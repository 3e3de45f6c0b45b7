//! Helpers for the engines' tests (`cfg(test)` only): iovecs over test
//! buffers, and one request pushed, submitted and reaped.

use crate::{IoCompletion, IoEngine, IoOp, IoRequest};

pub use crate::pagecache::{partly_cache, real_fs_dir};

pub fn iov(buf: &mut [u8]) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut _,
        iov_len: buf.len(),
    }
}

/// Push one request over `bufs` (none for flush/discard/zeroes), submit,
/// and wait for its completion.
pub fn one(
    e: &mut dyn IoEngine,
    op: IoOp,
    offset: u64,
    len: u64,
    bufs: &mut [&mut [u8]],
) -> IoCompletion {
    one_with(e, op, offset, len, bufs, false)
}

/// [`one`], with force unit access set as given.
pub fn one_with(
    e: &mut dyn IoEngine,
    op: IoOp,
    offset: u64,
    len: u64,
    bufs: &mut [&mut [u8]],
    fua: bool,
) -> IoCompletion {
    let iovecs = bufs.iter_mut().map(|b| iov(b)).collect();
    // SAFETY: the buffers are borrowed until this function returns, and
    // the request is reaped before then.
    unsafe {
        e.push(IoRequest {
            op,
            offset,
            len,
            iovecs,
            token: 42,
            fua,
        })
    };
    e.submit().unwrap();
    let mut out = vec![];
    e.reap(&mut out, 1).unwrap();
    assert_eq!(out.len(), 1);
    out[0]
}
