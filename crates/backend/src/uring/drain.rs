//! Draining: waiting until the ring is empty, cancelling what the kernel
//! still holds (`IoEngine::cancel_all`), and `Drop`, which cancels and
//! waits so the kernel never writes into memory after the engine is gone.

use std::io;
use std::time::Duration;

use io_uring::opcode;

use super::{UringEngine, CANCEL_TAG};
use crate::IoEngine;

impl UringEngine {
    /// Wait until nothing is in the ring any more (completions stay in `done`).
    pub(super) fn wait_idle(&mut self) -> io::Result<()> {
        self.requeue()?;
        while self.in_ring > 0 {
            self.enter(self.in_ring)?;
            self.drain_cq();
            self.requeue()?;
        }
        Ok(())
    }

    /// [`IoEngine::cancel_all`]: complete what never reached the kernel
    /// with `ECANCELED`, ask the kernel to abandon the rest.
    pub(super) fn cancel(&mut self) {
        // Never reached the kernel: complete them here.
        while let Some(req) = self.queued.pop_front() {
            self.complete(req.token, Err(libc::ECANCELED));
        }
        for id in std::mem::take(&mut self.again) {
            if let Some(s) = self.release(id) {
                self.complete(s.req.token, Err(libc::ECANCELED));
            }
        }
        // In the kernel: ask it to abandon them; they report their own CQE.
        let ids: Vec<usize> = self
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = s.as_mut()?;
                s.cancelled = true;
                s.in_kernel.then_some(i)
            })
            .collect();
        for id in ids {
            let e = opcode::AsyncCancel::new(id as u64)
                .build()
                .user_data(CANCEL_TAG | id as u64);
            loop {
                // SAFETY: an ASYNC_CANCEL SQE refers to no memory.
                if unsafe { self.ring.submission().push(&e) }.is_ok() {
                    break;
                }
                if let Err(err) = self.enter(0) {
                    log::warn!("io_uring: cannot submit cancellations: {err}");
                    break;
                }
                self.drain_cq();
            }
        }
        if let Err(err) = self.enter(0) {
            log::warn!("io_uring: cannot submit cancellations: {err}");
        }
        if !self.done.is_empty() {
            self.signal_evfd();
        }
    }
}

impl Drop for UringEngine {
    fn drop(&mut self) {
        // The kernel may still write into memory of requests in the ring:
        // cancel them and wait (the device core never drops an engine with
        // requests in flight, but a panic unwinding through it could).
        if self.in_ring > 0 {
            log::warn!(
                "io_uring engine dropped with {} requests in flight; cancelling and waiting for them",
                self.in_ring
            );
            self.cancel_all();
            let mut out = Vec::new();
            while self.in_ring > 0 {
                if self.reap(&mut out, usize::MAX).is_err() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}
