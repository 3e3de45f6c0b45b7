//! Completion handling: CQEs harvested from the completion ring and
//! finished (errors as errno, retries, short transfers continued, bounced
//! reads copied out), the completion eventfd, and `reap`.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use super::{UringEngine, CANCEL_TAG, MAX_RETRIES};
use crate::sync_io::{advance, copy_to_iovecs, exec_sync};
use crate::{IoCompletion, IoOp};

impl UringEngine {
    pub(super) fn complete(&mut self, token: u64, result: Result<u64, i32>) {
        self.done.push(IoCompletion { token, result });
    }

    /// Finish a CQE: errors as errno, short transfers continued, bounced
    /// reads copied out.
    fn finish(&mut self, id: usize, res: i32) {
        let Some(slot) = self.slots.get_mut(id).and_then(|s| s.as_mut()) else {
            log::warn!("io_uring: completion for unknown request {id}");
            return;
        };
        slot.in_kernel = false;
        let op = slot.req.op;
        if res < 0 {
            let errno = -res;
            if (errno == libc::EAGAIN || errno == libc::EINTR)
                && slot.retries < MAX_RETRIES
                && !slot.cancelled
            {
                slot.retries += 1;
                self.again.push(id);
                return;
            }
            let Some(slot) = self.release(id) else { return };
            let result = match op {
                // Discard is advisory.
                IoOp::Discard if !slot.cancelled => Ok(slot.total),
                // File systems without ZERO_RANGE: write zeroes by hand.
                IoOp::WriteZeroes
                    if !slot.cancelled && (errno == libc::EOPNOTSUPP || errno == libc::EINVAL) =>
                {
                    self.zero_range_unsupported = true;
                    exec_sync(&self.sync, &slot.req)
                }
                _ => Err(errno),
            };
            self.complete(slot.req.token, result);
            return;
        }
        let n = res as u64;
        match op {
            IoOp::Read | IoOp::Write if n < slot.req.len && n > 0 => {
                if slot.cancelled {
                    if let Some(slot) = self.release(id) {
                        self.complete(slot.req.token, Err(libc::ECANCELED));
                    }
                    return;
                }
                // Short: the rest goes to the ring again.
                slot.done += n;
                slot.req = advance(&slot.req, n);
                slot.retries = 0;
                self.again.push(id);
            }
            IoOp::Read | IoOp::Write => {
                let Some(slot) = self.release(id) else { return };
                // No progress at all is the end of the file (or device).
                let result = if n == 0 && slot.req.len > 0 {
                    Err(libc::EIO)
                } else {
                    if let (IoOp::Read, Some(b)) = (op, &slot.bounce) {
                        // SAFETY: the guest iovecs are writable memory that
                        // stays valid until this completion is reaped (push
                        // contract); the kernel is done with the bounce buffer.
                        unsafe { copy_to_iovecs(&b.guest, 0, b.buf.as_slice()) };
                    }
                    Ok(slot.total)
                };
                self.complete(slot.req.token, result);
            }
            _ => {
                let Some(slot) = self.release(id) else { return };
                self.complete(slot.req.token, Ok(slot.total));
            }
        }
    }

    pub(super) fn drain_cq(&mut self) {
        loop {
            let mut batch = [(0u64, 0i32); 64];
            let mut n = 0;
            for c in self.ring.completion().take(batch.len()) {
                batch[n] = (c.user_data(), c.result());
                n += 1;
            }
            for &(ud, res) in &batch[..n] {
                if ud & CANCEL_TAG != 0 {
                    // The outcome of an IORING_OP_ASYNC_CANCEL: the request
                    // it aimed at reports its own CQE (-ECANCELED or its
                    // real result); ENOENT/EALREADY just mean "too late".
                    log::debug!("io_uring: cancel of {} -> {res}", ud & !CANCEL_TAG);
                    continue;
                }
                match usize::try_from(ud) {
                    Ok(id) => self.finish(id, res),
                    Err(_) => log::warn!("io_uring: completion with bad user_data {ud}"),
                }
            }
            if n < batch.len() {
                break;
            }
        }
    }

    /// Make the completion eventfd readable.
    pub(super) fn signal_evfd(&self) {
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

    /// Clear the completion eventfd (before looking at the completion ring,
    /// so a CQE posted afterwards signals it again).
    fn clear_evfd(&self) {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into `v` from a non-blocking eventfd we own.
        unsafe {
            libc::read(
                self.evfd.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }

    /// Harvest into `done`; wait (until `deadline`, if any) for `min`.
    fn reap_inner(&mut self, min: usize, deadline: Option<Instant>) -> io::Result<()> {
        self.drain_cq();
        self.requeue()?;
        while self.done.len() < min && self.in_ring > 0 {
            let want = (min - self.done.len()).min(self.in_ring);
            match deadline {
                None => self.enter(want)?,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break;
                    }
                    self.enter_timeout(want, d - now)?;
                }
            }
            self.drain_cq();
            self.requeue()?;
        }
        if self.needs_enter() {
            self.enter(0)?;
            self.drain_cq();
        }
        Ok(())
    }

    pub(super) fn reap_with(
        &mut self,
        out: &mut Vec<IoCompletion>,
        min: usize,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        self.clear_evfd();
        if let Err(e) = self.reap_inner(min, deadline) {
            // Keep what was harvested for the next call, and make sure the
            // worker comes back for it.
            if !self.done.is_empty() {
                self.signal_evfd();
            }
            return Err(e);
        }
        out.append(&mut self.done);
        Ok(())
    }
}
