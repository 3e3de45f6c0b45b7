//! One request executed synchronously: reads and writes (bounced when
//! `O_DIRECT` needs it), `fdatasync`, `fallocate`, force unit access, and
//! the hand-written write-zeroes fallback.

use super::aligned_buf::AlignedBuf;
use super::bounce::rw_bounced;
use super::rw::rw_vectored;
use super::{last_errno, SyncFile};
use crate::{IoOp, IoRequest};

/// A read or write, bounced when `O_DIRECT` needs it.
fn rw(f: &SyncFile, req: &IoRequest) -> Result<u64, i32> {
    match f.direct {
        Some(d) if !d.fits(req) => rw_bounced(f, d, req),
        _ => rw_vectored(f.fd, req),
    }
}

/// Execute one request synchronously. Short transfers are continued; a
/// transfer that makes no progress is an `EIO`.
pub(crate) fn exec_sync(f: &SyncFile, req: &IoRequest) -> Result<u64, i32> {
    let n = exec_sync_op(f, req)?;
    if req.fua && matches!(req.op, IoOp::Write | IoOp::WriteZeroes) {
        // Force unit access: the data is durable before the completion.
        // SAFETY: plain syscall on a file descriptor we own.
        if unsafe { libc::fdatasync(f.fd) } < 0 {
            return Err(last_errno());
        }
    }
    Ok(n)
}

fn exec_sync_op(f: &SyncFile, req: &IoRequest) -> Result<u64, i32> {
    match req.op {
        IoOp::Read | IoOp::Write => rw(f, req),
        IoOp::Flush => {
            // SAFETY: plain syscall on a file descriptor we own.
            if unsafe { libc::fdatasync(f.fd) } < 0 {
                return Err(last_errno());
            }
            Ok(0)
        }
        IoOp::Discard | IoOp::WriteZeroes => {
            let off = libc::off_t::try_from(req.offset).map_err(|_| libc::EINVAL)?;
            let len = libc::off_t::try_from(req.len).map_err(|_| libc::EINVAL)?;
            let mode = if req.op == IoOp::Discard {
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
            } else {
                libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
            };
            // SAFETY: plain syscall on a file descriptor we own.
            if unsafe { libc::fallocate(f.fd, mode, off, len) } == 0 {
                return Ok(req.len);
            }
            let e = last_errno();
            if req.op == IoOp::Discard {
                // Discard is advisory: succeeding without deallocating is allowed.
                return Ok(req.len);
            }
            if e != libc::EOPNOTSUPP && e != libc::EINVAL {
                return Err(e);
            }
            write_zeroes_slow(f, req.offset, req.len)
        }
    }
}

/// Write-zeroes where `FALLOC_FL_ZERO_RANGE` is unsupported: write zeroes by
/// hand, from an aligned buffer (so `O_DIRECT` accepts it; unaligned ends
/// are bounced like any write).
pub(crate) fn write_zeroes_slow(f: &SyncFile, offset: u64, len: u64) -> Result<u64, i32> {
    const CHUNK: usize = 1 << 16;
    let align = f.direct.map_or(4096, |d| d.buf_align());
    let mut zeroes = AlignedBuf::new(CHUNK, align).ok_or(libc::ENOMEM)?;
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64);
        let mut v = zeroes.iovec();
        v.iov_len = n as usize;
        let req = IoRequest {
            op: IoOp::Write,
            offset: offset.checked_add(done).ok_or(libc::EINVAL)?,
            len: n,
            iovecs: vec![v],
            token: 0,
            fua: false, // the caller syncs once at the end
        };
        rw(f, &req)?;
        done += n;
    }
    Ok(len)
}
