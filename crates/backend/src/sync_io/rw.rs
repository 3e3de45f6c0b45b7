//! Plain synchronous transfers: `preadv`/`pwritev` of a whole request
//! (`IOV_MAX` iovecs at a time, short transfers continued) and `pread`/
//! `pwrite` of a whole buffer.

use std::os::unix::io::RawFd;

use super::iovec::advance_iovecs;
use super::last_errno;
use crate::{IoOp, IoRequest};

/// The file offset `done` bytes past `base`, or `EINVAL` when it overflows
/// or does not fit `off_t`.
fn file_offset(base: u64, done: u64) -> Result<libc::off_t, i32> {
    let pos = base.checked_add(done).ok_or(libc::EINVAL)?;
    libc::off_t::try_from(pos).map_err(|_| libc::EINVAL)
}

/// Runs one transfer system call, again while it fails with `EINTR`.
/// Returns the bytes moved (0 at end of file) or the errno.
fn retry_eintr(mut call: impl FnMut() -> isize) -> Result<usize, i32> {
    loop {
        let r = call();
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = last_errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// `preadv`/`pwritev` the whole request, `IOV_MAX` iovecs at a time,
/// continuing short transfers. A transfer that makes no progress is `EIO`.
pub(super) fn rw_vectored(fd: RawFd, req: &IoRequest) -> Result<u64, i32> {
    let mut iov = req.iovecs.clone();
    iov.retain(|v| v.iov_len > 0);
    let mut done = 0u64;
    while !iov.is_empty() {
        // "preadv() ... iovcnt ... greater than IOV_MAX: EINVAL" (preadv(2)).
        let cnt = iov.len().min(crate::IOV_MAX) as libc::c_int;
        let off = file_offset(req.offset, done)?;
        // SAFETY: the iovecs describe guest memory that stays mapped until the
        // request completes (IoEngine::push contract); `cnt` is within the slice.
        let r = retry_eintr(|| unsafe {
            if req.op == IoOp::Read {
                libc::preadv(fd, iov.as_ptr(), cnt, off)
            } else {
                libc::pwritev(fd, iov.as_ptr(), cnt, off)
            }
        })?;
        if r == 0 {
            return Err(libc::EIO);
        }
        done += r as u64;
        advance_iovecs(&mut iov, r as u64);
    }
    Ok(done)
}

/// `pread` into `buf` at `offset` until it is full or the file ends.
/// Returns the bytes read.
pub(super) fn pread_full(fd: RawFd, buf: &mut [u8], offset: u64) -> Result<usize, i32> {
    let mut at = 0usize;
    while at < buf.len() {
        let off = file_offset(offset, at as u64)?;
        let rest = &mut buf[at..];
        // SAFETY: `rest` is a live, writable buffer of the given length.
        let r = retry_eintr(|| unsafe {
            libc::pread(fd, rest.as_mut_ptr() as *mut libc::c_void, rest.len(), off)
        })?;
        if r == 0 {
            break;
        }
        at += r;
    }
    Ok(at)
}

/// `pwrite` all of `buf` at `offset`.
pub(super) fn pwrite_full(fd: RawFd, buf: &[u8], offset: u64) -> Result<(), i32> {
    let mut at = 0usize;
    while at < buf.len() {
        let off = file_offset(offset, at as u64)?;
        let rest = &buf[at..];
        // SAFETY: `rest` is a live buffer of the given length.
        let r = retry_eintr(|| unsafe {
            libc::pwrite(fd, rest.as_ptr() as *const libc::c_void, rest.len(), off)
        })?;
        if r == 0 {
            return Err(libc::EIO);
        }
        at += r;
    }
    Ok(())
}
