//! Completion: reap the engine's completions, in any order, and
//! finish each request whose last operation is done (a failed merged
//! operation is retried request by request): status byte, dirty pages,
//! used element.

use std::time::Duration;

use vblk_backend::IoCompletion;
use vblk_queue::Queue;
use vblk_request::{RequestType, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK};
use vm_memory::GuestMemory;

use super::{Op, QueueError, QueueWorker};
use crate::inflight::Token;
use crate::plan::write_status;
use crate::stats::{add, inc};

impl QueueWorker {
    /// Take the completions the engine has (waiting for at least `min`),
    /// and finish the requests they complete. Returns requests finished.
    pub fn reap<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        min: usize,
    ) -> Result<usize, QueueError> {
        self.reap_for(queue, mem, min, None)
    }

    pub(super) fn reap_for<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        min: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, QueueError> {
        if self.ops.is_empty() {
            return Ok(0);
        }
        let mut done = std::mem::take(&mut self.completions);
        let r = match timeout {
            None => self.engine.reap(&mut done, min.min(self.ops.len())),
            Some(t) => self
                .engine
                .reap_timeout(&mut done, min.min(self.ops.len()), t),
        };
        if let Err(e) = r {
            inc(&self.qstats().engine_errors);
            log::warn!("queue {}: reaping completions failed: {e}", self.index);
        }
        let mut finished = 0;
        let mut result = Ok(());
        let mut retried = false;
        for c in done.drain(..) {
            match self.complete_op(queue, mem, c) {
                Ok((n, retry)) => {
                    finished += n;
                    retried |= retry;
                }
                Err(e) => result = Err(e),
            }
        }
        self.completions = done;
        if retried {
            self.submit();
        }
        result.map(|()| finished)
    }

    /// One engine completion. Returns (requests finished, whether operations
    /// were queued again).
    fn complete_op<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        c: IoCompletion,
    ) -> Result<(usize, bool), QueueError> {
        let Some(op) = self.ops.remove(c.token) else {
            log::warn!(
                "queue {}: completion for an unknown operation {:#x}; ignored",
                self.index,
                c.token
            );
            return Ok((0, false));
        };
        let mut finished = 0;
        match op {
            Op::Single(t) => {
                let expect = self.requests.get_mut(t).map(|p| p.bytes).unwrap_or(0);
                finished += self.request_op_done(queue, mem, t, c.result, expect)?;
            }
            Op::Merged(members) => {
                let expect: u64 = members.iter().map(|m| m.len).sum();
                let ok = matches!(c.result, Ok(n) if n == expect);
                if !ok {
                    // Retry each member on its own, so each request gets its
                    // own status.
                    log::debug!(
                        "queue {}: merged I/O failed ({:?}); retrying its {} requests",
                        self.index,
                        c.result,
                        members.len()
                    );
                    for m in members {
                        let t = m.token;
                        self.push_op(Op::Single(t), m);
                    }
                    return Ok((0, true));
                }
                for m in &members {
                    finished += self.request_op_done(queue, mem, m.token, Ok(m.len), m.len)?;
                }
            }
        }
        Ok((finished, false))
    }

    /// One operation of request `t` finished; complete the request when it
    /// was its last. Returns 1 if the request completed.
    pub(super) fn request_op_done<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        t: Token,
        result: Result<u64, i32>,
        expect: u64,
    ) -> Result<usize, QueueError> {
        let qi = self.index;
        let Some(p) = self.requests.get_mut(t) else {
            return Ok(0);
        };
        match result {
            Ok(n) if matches!(p.kind, Some(RequestType::In | RequestType::Out)) && n != expect => {
                log::warn!("queue {qi}: short I/O: {n} of {expect} bytes");
                p.status = VIRTIO_BLK_S_IOERR;
            }
            Ok(_) => {}
            Err(errno) => {
                log::warn!(
                    "queue {qi}: storage error on {:?}: {}",
                    p.kind,
                    std::io::Error::from_raw_os_error(errno)
                );
                p.status = VIRTIO_BLK_S_IOERR;
            }
        }
        p.ops_left = p.ops_left.saturating_sub(1);
        if p.ops_left > 0 {
            return Ok(0);
        }
        let Some(p) = self.requests.remove(t) else {
            return Ok(0);
        };
        self.stats
            .latency(usize::from(qi))
            .record(p.started.elapsed());
        let s = self.qstats();
        if p.status == VIRTIO_BLK_S_OK {
            match p.kind {
                Some(RequestType::In) => add(&s.bytes_read, p.bytes),
                Some(RequestType::Out) => add(&s.bytes_written, p.bytes),
                _ => {}
            }
        } else {
            inc(&s.backend_errors);
        }
        let used_ok = if p.status == VIRTIO_BLK_S_OK {
            p.used_ok
        } else {
            1
        };
        let len = write_status(s, mem, p.status_addr, p.status, used_ok);
        // Logged after the writes (data, status) and before the used
        // element: a log sync that clears the bits copies the new content.
        self.dirty.written(&p.dirty);
        self.push_used(queue, mem, p.head, len)?;
        Ok(1)
    }
}
