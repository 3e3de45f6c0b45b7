//! iovec helpers: sub-ranges of a request's guest buffers, and full
//! `readv`/`writev` on a socket (continued after short transfers).

use std::io;
use std::os::fd::RawFd;

use vblk_backend::advance_iovecs;

/// The iovecs covering bytes `[start, start + len)` of `iovs`. Returns
/// `None` when the range is not inside `iovs` (never for ranges the caller
/// validated against the request length).
pub fn slice(iovs: &[libc::iovec], start: u64, len: u64) -> Option<Vec<libc::iovec>> {
    let end = start.checked_add(len)?;
    let mut out = Vec::new();
    let mut pos = 0u64;
    for v in iovs {
        let vlen = v.iov_len as u64;
        let vend = pos.checked_add(vlen)?;
        if vend > start && pos < end {
            let from = start.saturating_sub(pos);
            let to = end.min(vend) - pos;
            out.push(libc::iovec {
                // The offset is inside this iovec (from < vlen).
                iov_base: (v.iov_base as usize + from as usize) as *mut libc::c_void,
                iov_len: (to - from) as usize,
            });
        }
        pos = vend;
        if pos >= end {
            break;
        }
    }
    let total: u64 = out.iter().map(|v| v.iov_len as u64).sum();
    (total == len).then_some(out)
}

/// Total bytes of `iovs`.
#[cfg(test)]
pub fn total(iovs: &[libc::iovec]) -> u64 {
    iovs.iter().map(|v| v.iov_len as u64).sum()
}

/// The kernel takes at most this many iovecs per call.
use vblk_backend::IOV_MAX;

/// Write all of `iovs` to `fd`.
///
/// # Safety
/// Every iovec must point to readable memory of its length.
pub unsafe fn writev_all(fd: RawFd, iovs: &[libc::iovec]) -> io::Result<()> {
    let mut left: Vec<libc::iovec> = iovs.iter().copied().filter(|v| v.iov_len > 0).collect();
    while !left.is_empty() {
        let n = left.len().min(IOV_MAX);
        // SAFETY: the caller guarantees the iovecs are readable.
        let r = unsafe { libc::writev(fd, left.as_ptr(), n as libc::c_int) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        advance_iovecs(&mut left, r as u64);
    }
    Ok(())
}

/// Fill all of `iovs` from `fd`; end of stream is an error. A receive
/// timeout (`SO_RCVTIMEO`) before any byte is `WouldBlock`, after some
/// bytes `TimedOut`.
///
/// # Safety
/// Every iovec must point to writable memory of its length that nothing
/// else accesses meanwhile.
pub unsafe fn readv_all(fd: RawFd, iovs: &[libc::iovec]) -> io::Result<()> {
    let mut left: Vec<libc::iovec> = iovs.iter().copied().filter(|v| v.iov_len > 0).collect();
    let mut started = false;
    while !left.is_empty() {
        let n = left.len().min(IOV_MAX);
        // SAFETY: the caller guarantees the iovecs are writable.
        let r = unsafe { libc::readv(fd, left.as_ptr(), n as libc::c_int) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if e.kind() == io::ErrorKind::WouldBlock && started {
                return Err(io::ErrorKind::TimedOut.into());
            }
            return Err(e);
        }
        started = true;
        if r == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        advance_iovecs(&mut left, r as u64);
    }
    Ok(())
}

/// Read exactly `buf.len()` bytes from `fd`.
pub fn read_exact(fd: RawFd, buf: &mut [u8]) -> io::Result<()> {
    let v = [libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    }];
    // SAFETY: `buf` is writable and borrowed for the call.
    unsafe { readv_all(fd, &v) }
}

/// Zero every byte of `iovs`.
///
/// # Safety
/// As for [`readv_all`].
pub unsafe fn zero(iovs: &[libc::iovec]) {
    for v in iovs {
        // SAFETY: the caller guarantees the memory is writable.
        unsafe { std::ptr::write_bytes(v.iov_base as *mut u8, 0, v.iov_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iov(b: &mut [u8]) -> libc::iovec {
        libc::iovec {
            iov_base: b.as_mut_ptr() as *mut _,
            iov_len: b.len(),
        }
    }

    #[test]
    fn slices_cross_iovecs() {
        let mut a = [0u8; 10];
        let mut b = [0u8; 20];
        let v = [iov(&mut a), iov(&mut b)];
        let s = slice(&v, 5, 10).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].iov_base as usize, a.as_ptr() as usize + 5);
        assert_eq!(s[0].iov_len, 5);
        assert_eq!(s[1].iov_base as usize, b.as_ptr() as usize);
        assert_eq!(s[1].iov_len, 5);
        assert_eq!(slice(&v, 10, 20).unwrap().len(), 1);
        assert!(slice(&v, 25, 10).is_none());
        assert!(slice(&v, u64::MAX, 2).is_none());
        assert_eq!(total(&v), 30);
    }

    #[test]
    fn full_transfers_over_a_socket() {
        let (x, y) = std::os::unix::net::UnixStream::pair().unwrap();
        use std::os::fd::AsRawFd;
        let mut src: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut dst = vec![0u8; 200_000];
        let (s1, s2) = src.split_at_mut(7);
        let srcv = [iov(s1), iov(s2)];
        let t = std::thread::spawn(move || {
            let mut a = vec![0u8; 200_000];
            // SAFETY: `a` is owned by this thread.
            unsafe { readv_all(y.as_raw_fd(), &[iov(&mut a)]).unwrap() };
            a
        });
        // SAFETY: `src` outlives the call.
        unsafe { writev_all(x.as_raw_fd(), &srcv).unwrap() };
        dst.copy_from_slice(&t.join().unwrap());
        assert_eq!(src, dst);
    }
}
