//! The fake kernel: requests it holds until they are due, completed from
//! a helper thread (buffers touched once, at completion), the eventfd
//! signalled for each.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::{lock, Outcome, Shared};
use crate::{IoCompletion, IoOp, IoRequest};

/// Execute `req` on the disk, moving at most `limit` bytes.
fn execute(shared: &Shared, req: &IoRequest, limit: u64) -> Result<u64, i32> {
    let mut data = lock(&shared.disk);
    let size = data.len() as u64;
    let end = req.offset.checked_add(req.len).ok_or(libc::EINVAL)?;
    if end > size {
        return Err(libc::EIO);
    }
    // Both fit in usize: end <= size = a Vec length.
    let (start, end) = (req.offset as usize, end as usize);
    match req.op {
        IoOp::Flush => {
            shared.flushes.fetch_add(1, Ordering::SeqCst);
            Ok(0)
        }
        IoOp::Discard | IoOp::WriteZeroes => {
            data[start..end].fill(0);
            Ok(req.len)
        }
        IoOp::Read | IoOp::Write => {
            let limit = limit.min(req.len);
            let mut done = 0u64;
            for v in &req.iovecs {
                if done >= limit {
                    break;
                }
                // Both bounded by `limit - done` <= len, so they fit.
                let n = (v.iov_len as u64).min(limit - done) as usize;
                let pos = start + done as usize;
                if req.op == IoOp::Read {
                    // SAFETY: the iovec points to `iov_len` >= n writable bytes
                    // that stay valid until the completion is reaped
                    // (IoEngine::push contract).
                    let dst = unsafe { std::slice::from_raw_parts_mut(v.iov_base as *mut u8, n) };
                    dst.copy_from_slice(&data[pos..pos + n]);
                } else {
                    // SAFETY: as above, readable bytes.
                    let src = unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, n) };
                    data[pos..pos + n].copy_from_slice(src);
                }
                done += n as u64;
            }
            Ok(done)
        }
    }
}

pub(super) struct Pending {
    pub(super) seq: u64,
    pub(super) req: IoRequest,
    pub(super) outcome: Outcome,
    /// `None`: stuck.
    pub(super) due: Option<Instant>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) pending: Vec<Pending>,
    pub(super) ready: Vec<IoCompletion>,
    pub(super) stop: bool,
}

pub(super) struct Kernel {
    pub(super) shared: Arc<Shared>,
    pub(super) state: Mutex<State>,
    pub(super) cv: Condvar,
    pub(super) evfd: OwnedFd,
}

impl Kernel {
    pub(super) fn signal(&self) {
        let v = 1u64;
        // SAFETY: writes 8 bytes from `v` to an eventfd we own.
        unsafe {
            libc::write(
                self.evfd.as_raw_fd(),
                &v as *const u64 as *const libc::c_void,
                8,
            )
        };
    }

    /// Complete one request: touch its buffers (the only time), then make
    /// it reapable and signal.
    pub(super) fn finish(&self, st: &mut State, p: Pending, cancelled: bool) {
        let result = if cancelled {
            Err(libc::ECANCELED)
        } else {
            match p.outcome {
                Outcome::Complete { .. } => execute(&self.shared, &p.req, u64::MAX),
                Outcome::Short { bytes, .. } => execute(&self.shared, &p.req, bytes),
                Outcome::Errno { errno, .. } => Err(errno),
                Outcome::Stuck => Err(libc::ECANCELED),
            }
        };
        lock(&self.shared.outstanding).remove(&p.seq);
        self.shared.completed.fetch_add(1, Ordering::SeqCst);
        st.ready.push(IoCompletion {
            token: p.req.token,
            result,
        });
        self.signal();
        self.cv.notify_all();
    }

    /// The helper thread: complete pending requests when they are due.
    pub(super) fn run(self: Arc<Self>) {
        let mut st = lock(&self.state);
        loop {
            let now = Instant::now();
            let next = st
                .pending
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.due.map(|d| (i, d)))
                .min_by_key(|&(_, d)| d);
            match next {
                Some((i, due)) if due <= now => {
                    let p = st.pending.swap_remove(i);
                    self.finish(&mut st, p, false);
                }
                Some((_, due)) => {
                    st = self
                        .cv
                        .wait_timeout(st, due - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None if st.stop => return,
                None => st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}
