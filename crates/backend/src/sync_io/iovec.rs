//! Iovec arithmetic: skipping the bytes a short transfer already moved,
//! the rest of a request, and copies between iovecs and a buffer.

use crate::IoRequest;

/// The iovecs after their first `n` bytes (empty iovecs dropped).
pub fn skip_iovecs(iovecs: &[libc::iovec], n: u64) -> Vec<libc::iovec> {
    let mut out = iovecs.to_vec();
    advance_iovecs(&mut out, n);
    out
}

/// [`skip_iovecs`] in place: drop the first `n` bytes of `iovecs` (whole
/// iovecs from the front, then part of the next). Zero-length iovecs at
/// the front go too.
pub fn advance_iovecs(iovecs: &mut Vec<libc::iovec>, mut n: u64) {
    let mut whole = 0;
    for v in iovecs.iter_mut() {
        let l = v.iov_len as u64;
        if n >= l {
            n -= l;
            whole += 1;
            continue;
        }
        // `n < iov_len`, so it fits in usize.
        let k = n as usize;
        // Pointer arithmetic only (wrapping_add: never dereferenced here);
        // the result stays inside the same iovec because k < iov_len.
        v.iov_base = (v.iov_base as *mut u8).wrapping_add(k) as *mut libc::c_void;
        v.iov_len -= k;
        break;
    }
    iovecs.drain(..whole);
}

/// The part of `req` after its first `n` bytes: what a short transfer still
/// has to do. Offset and length move by the bytes actually skipped.
pub(crate) fn advance(req: &IoRequest, n: u64) -> IoRequest {
    let iovecs = skip_iovecs(&req.iovecs, n);
    let left: u64 = iovecs.iter().map(|v| v.iov_len as u64).sum();
    let done = req.len.saturating_sub(left);
    IoRequest {
        op: req.op,
        offset: req.offset.saturating_add(done),
        len: left,
        iovecs,
        token: req.token,
        fua: req.fua,
    }
}

/// Copy `dst.len()` bytes out of the byte stream the iovecs describe,
/// starting `skip` bytes into it. Returns the bytes copied (less at the end
/// of the iovecs).
///
/// # Safety
/// Every iovec must describe readable memory of `iov_len` bytes.
pub(crate) unsafe fn copy_from_iovecs(iovecs: &[libc::iovec], skip: u64, dst: &mut [u8]) -> usize {
    let mut at = 0usize;
    for v in skip_iovecs(iovecs, skip) {
        if at >= dst.len() {
            break;
        }
        let n = v.iov_len.min(dst.len() - at);
        // SAFETY: the caller guarantees the iovec is readable for iov_len ≥ n
        // bytes; `dst[at..at + n]` is in bounds; guest and heap memory do not
        // overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(v.iov_base as *const u8, dst[at..].as_mut_ptr(), n)
        };
        at += n;
    }
    at
}

/// Copy `src` into the byte stream the iovecs describe, starting `skip`
/// bytes into it. Returns the bytes copied.
///
/// # Safety
/// Every iovec must describe writable memory of `iov_len` bytes.
pub(crate) unsafe fn copy_to_iovecs(iovecs: &[libc::iovec], skip: u64, src: &[u8]) -> usize {
    let mut at = 0usize;
    for v in skip_iovecs(iovecs, skip) {
        if at >= src.len() {
            break;
        }
        let n = v.iov_len.min(src.len() - at);
        // SAFETY: the caller guarantees the iovec is writable for iov_len ≥ n
        // bytes; `src[at..at + n]` is in bounds; no overlap.
        unsafe { std::ptr::copy_nonoverlapping(src[at..].as_ptr(), v.iov_base as *mut u8, n) };
        at += n;
    }
    at
}
