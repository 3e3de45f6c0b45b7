//! `io_uring_enter`: submitting the submission ring and waiting for
//! completions, with transient failures retried and timed waits (before
//! 5.11 by polling the ring descriptor).

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use io_uring::types;

use super::{UringEngine, MAX_ENTER_RETRIES};

impl UringEngine {
    /// `io_uring_enter`: submit what is on the submission ring and wait for
    /// `want` completions. Transient failures are retried.
    pub(super) fn enter(&mut self, want: usize) -> io::Result<()> {
        let mut busy = 0u32;
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                    if want == 0 {
                        continue;
                    }
                    // Interrupted while waiting: the caller looks at the
                    // completion ring and waits again if it must.
                    return Ok(());
                }
                // io_uring_enter(2): "EBUSY: If the IORING_FEAT_NODROP feature
                // flag is set, then EBUSY will be returned if there were
                // overflow entries ... EAGAIN: The kernel was unable to
                // allocate memory for the request". Make room and retry.
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        || e.raw_os_error() == Some(libc::EAGAIN) =>
                {
                    self.drain_cq();
                    if want > 0 && !self.done.is_empty() {
                        return Ok(());
                    }
                    busy += 1;
                    if busy >= MAX_ENTER_RETRIES {
                        return Err(e);
                    }
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Like `enter(want)` but waiting at most `timeout`.
    pub(super) fn enter_timeout(&mut self, want: usize, timeout: Duration) -> io::Result<()> {
        if self.ring.params().is_feature_ext_arg() {
            let ts = types::Timespec::from(timeout);
            let args = types::SubmitArgs::new().timespec(&ts);
            return match self.ring.submitter().submit_with_args(want, &args) {
                Ok(_) => Ok(()),
                Err(e) => match e.raw_os_error() {
                    Some(libc::ETIME) | Some(libc::EINTR) => Ok(()),
                    Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                        self.drain_cq();
                        Ok(())
                    }
                    _ => Err(e),
                },
            };
        }
        // Before 5.11: submit, then poll the ring descriptor (readable when
        // the completion ring is not empty).
        self.enter(0)?;
        let mut pfd = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd, alive for the call.
        if unsafe { libc::poll(&mut pfd, 1, ms) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether an `io_uring_enter` without waiting has anything to do.
    pub(super) fn needs_enter(&mut self) -> bool {
        let sq = self.ring.submission();
        !sq.is_empty() || sq.cq_overflow() || sq.taskrun()
    }
}
