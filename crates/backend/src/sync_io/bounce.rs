//! `O_DIRECT` requests that are not aligned: bounced through an aligned
//! buffer window by window, with read-modify-write of partial blocks.

use super::aligned_buf::AlignedBuf;
use super::iovec::{copy_from_iovecs, copy_to_iovecs};
use super::rw::{pread_full, pwrite_full};
use super::{Direct, SyncFile, BOUNCE_WINDOW};
use crate::{IoOp, IoRequest};

/// A read or write on an `O_DIRECT` file whose buffers, offset or length are
/// not aligned: through an aligned heap buffer, one window of at most
/// [`BOUNCE_WINDOW`] bytes at a time. Writes that do not cover whole aligned
/// blocks read the partial head and tail blocks first (read-modify-write,
/// under the backend's RMW lock).
///
/// The RMW lock orders read-modify-write cycles against each other, not
/// against an aligned write to the same block running at the same time in
/// an io_uring (a guest that writes two halves of one physical block
/// concurrently could lose one of them). A device that advertises
/// `blk_size` ≥ `BlockSizes::dio_offset_align` under `--cache none` never
/// takes this path; QEMU would serialise overlapping requests here.
///
/// The last block of a file whose size is not a multiple of the alignment is
/// read short (the missing bytes are zero in the buffer) and written whole,
/// which extends the file by less than one block; the exported capacity was
/// fixed at open and does not change.
pub(super) fn rw_bounced(f: &SyncFile, d: Direct, req: &IoRequest) -> Result<u64, i32> {
    let window = BOUNCE_WINDOW.max(d.off.saturating_mul(2));
    let mut pos = 0u64;
    while pos < req.len {
        let off = req.offset.checked_add(pos).ok_or(libc::EINVAL)?;
        let a_start = off - off % d.off;
        let head = off - a_start;
        let n = (req.len - pos).min(window - head);
        let end = off.checked_add(n).ok_or(libc::EINVAL)?;
        let a_end = end.checked_next_multiple_of(d.off).ok_or(libc::EINVAL)?;
        let blen = usize::try_from(a_end - a_start).map_err(|_| libc::ENOMEM)?;
        let mut buf = AlignedBuf::new(blen, d.buf_align()).ok_or(libc::ENOMEM)?;
        let (lo, hi) = (head as usize, (end - a_start) as usize);
        if req.op == IoOp::Read {
            let got = pread_full(f.fd, buf.as_mut_slice(), a_start)?;
            if got < hi {
                // The range ends past the end of the file.
                return Err(libc::EIO);
            }
            // SAFETY: the iovecs are writable guest memory (push contract).
            unsafe { copy_to_iovecs(&req.iovecs, pos, &buf.as_slice()[lo..hi]) };
        } else {
            let partial = lo != 0 || hi != blen;
            let _guard = if partial {
                Some(f.rmw.lock().unwrap_or_else(|e| e.into_inner()))
            } else {
                None
            };
            let blk = d.off as usize;
            if lo != 0 {
                pread_full(f.fd, &mut buf.as_mut_slice()[..blk], a_start)?;
            }
            if hi != blen && (lo == 0 || blen > blk) {
                let tail = blen - blk;
                pread_full(f.fd, &mut buf.as_mut_slice()[tail..], a_start + tail as u64)?;
            }
            // SAFETY: the iovecs are readable guest memory (push contract).
            unsafe { copy_from_iovecs(&req.iovecs, pos, &mut buf.as_mut_slice()[lo..hi]) };
            pwrite_full(f.fd, buf.as_slice(), a_start)?;
        }
        pos += n;
    }
    Ok(req.len)
}
