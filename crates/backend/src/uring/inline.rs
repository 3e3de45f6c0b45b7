//! The inline path for buffered files: a read or write tried in the
//! caller's thread with `RWF_NOWAIT` (a page-cache hit completes without the
//! ring; a partial transfer sends only the rest to the ring), or
//! synchronously where the file system has no `RWF_NOWAIT`.

use std::io;

use super::{Inline, UringEngine};
use crate::sync_io::{advance, exec_sync};
use crate::{IoOp, IoRequest};

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl UringEngine {
    /// Try a read/write inline without blocking. Returns the request back
    /// (possibly advanced past a partial transfer, with the bytes already
    /// done) if it has to go through the ring, or None when it is complete.
    pub(super) fn try_inline(&mut self, req: IoRequest) -> Option<(IoRequest, u64)> {
        let dir = match req.op {
            IoOp::Read => 0,
            // A write with force unit access would block in the syscall:
            // straight to the ring (RWF_DSYNC there).
            IoOp::Write if !req.fua => 1,
            _ => return Some((req, 0)),
        };
        match self.inline[dir] {
            Inline::Ring => return Some((req, 0)),
            Inline::Sync => {
                let result = exec_sync(&self.sync, &req);
                self.inline_done += 1;
                self.complete(req.token, result);
                return None;
            }
            Inline::Nowait => {}
        }
        let Ok(off) = libc::off_t::try_from(req.offset) else {
            return Some((req, 0));
        };
        // At most IOV_MAX iovecs here (see `route`), so the count fits.
        let cnt = req.iovecs.len() as libc::c_int;
        // preadv2(2): "RWF_NOWAIT: Do not wait for data which is not
        // immediately available. If this flag is specified, the preadv2()
        // system call will return instantly if it would have to read data
        // from the backing storage or wait for a lock. If some data was
        // successfully read, it will return the number of bytes read. If no
        // bytes were read, it will return -1 and set errno to EAGAIN".
        // SAFETY: the iovecs describe memory that stays valid until the
        // request completes (IoEngine::push contract); the count matches.
        let r = unsafe {
            if dir == 0 {
                libc::preadv2(
                    self.sync.fd,
                    req.iovecs.as_ptr(),
                    cnt,
                    off,
                    libc::RWF_NOWAIT,
                )
            } else {
                libc::pwritev2(
                    self.sync.fd,
                    req.iovecs.as_ptr(),
                    cnt,
                    off,
                    libc::RWF_NOWAIT,
                )
            }
        };
        if r < 0 {
            let e = errno_of(&io::Error::last_os_error());
            if e == libc::EOPNOTSUPP || e == libc::EINVAL {
                log::debug!(
                    "RWF_NOWAIT not supported for {}; page-cache I/O synchronous in the queue thread",
                    if dir == 0 { "reads" } else { "writes" }
                );
                self.inline[dir] = Inline::Sync;
                return self.try_inline(req);
            }
            if e == libc::EAGAIN || e == libc::EINTR {
                return Some((req, 0));
            }
            self.complete(req.token, Err(e));
            return None;
        }
        let n = r as u64;
        if n >= req.len {
            self.inline_done += 1;
            self.complete(req.token, Ok(req.len));
            return None;
        }
        if n == 0 && dir == 0 {
            // End of file.
            self.complete(req.token, Err(libc::EIO));
            return None;
        }
        // Partial (some pages cached, some not): the rest goes through the
        // ring; the slot remembers the `n` bytes already done, so the
        // completion reports the full length.
        self.partial_inline += 1;
        Some((advance(&req, n), n))
    }
}
