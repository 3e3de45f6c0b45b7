//! Plain synchronous transfers: `preadv`/`pwritev` of a whole request
//! (`IOV_MAX` iovecs at a time, short transfers continued) and `pread`/
//! `pwrite` of a whole buffer.

use std::os::unix::io::RawFd;

use super::iovec::advance_iovecs;
use super::last_errno;
use crate::{IoOp, IoRequest};

/// `preadv`/`pwritev` the whole request, `IOV_MAX` iovecs at a time,
/// continuing short transfers. A transfer that makes no progress is `EIO`.
pub(super) fn rw_vectored(fd: RawFd, req: &IoRequest) -> Result<u64, i32> {
    let mut iov = req.iovecs.clone();
    iov.retain(|v| v.iov_len > 0);
    let mut done = 0u64;
    while !iov.is_empty() {
        // "preadv() ... iovcnt ... greater than IOV_MAX: EINVAL" (preadv(2)).
        let cnt = iov.len().min(crate::IOV_MAX) as libc::c_int;
        let offset = req.offset.checked_add(done).ok_or(libc::EINVAL)?;
        let off = libc::off_t::try_from(offset).map_err(|_| libc::EINVAL)?;
        // SAFETY: the iovecs describe guest memory that stays mapped until the
        // request completes (IoEngine::push contract); `cnt` is within the slice.
        let r = unsafe {
            if req.op == IoOp::Read {
                libc::preadv(fd, iov.as_ptr(), cnt, off)
            } else {
                libc::pwritev(fd, iov.as_ptr(), cnt, off)
            }
        };
        if r < 0 {
            let e = last_errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
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
        let pos = offset.checked_add(at as u64).ok_or(libc::EINVAL)?;
        let off = libc::off_t::try_from(pos).map_err(|_| libc::EINVAL)?;
        // SAFETY: `buf[at..]` is a live, writable buffer of the given length.
        let r = unsafe {
            libc::pread(
                fd,
                buf[at..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - at,
                off,
            )
        };
        if r < 0 {
            let e = last_errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            break;
        }
        at += r as usize;
    }
    Ok(at)
}

/// `pwrite` all of `buf` at `offset`.
pub(super) fn pwrite_full(fd: RawFd, buf: &[u8], offset: u64) -> Result<(), i32> {
    let mut at = 0usize;
    while at < buf.len() {
        let pos = offset.checked_add(at as u64).ok_or(libc::EINVAL)?;
        let off = libc::off_t::try_from(pos).map_err(|_| libc::EINVAL)?;
        // SAFETY: `buf[at..]` is a live buffer of the given length.
        let r = unsafe {
            libc::pwrite(
                fd,
                buf[at..].as_ptr() as *const libc::c_void,
                buf.len() - at,
                off,
            )
        };
        if r < 0 {
            let e = last_errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Err(libc::EIO);
        }
        at += r as usize;
    }
    Ok(())
}
