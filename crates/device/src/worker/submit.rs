//! Submission: merge the round's planned operations and hand them
//! to the storage engine in one submission; retry a failed submission.

use vblk_backend::IoRequest;

use super::{Op, QueueWorker};
use crate::merge::merge;
use crate::stats::{add, inc};

impl QueueWorker {
    /// Merge this round's operations and hand them to the engine.
    pub(crate) fn submit_planned(&mut self) {
        if self.planned.is_empty() {
            return;
        }
        let planned = std::mem::take(&mut self.planned);
        let stats = self.stats.clone();
        let s = stats.queue(usize::from(self.index));
        for (req, members) in merge(planned, self.merge_max_bytes) {
            let op = if members.is_empty() {
                Op::Single(req.token)
            } else {
                add(&s.merged, members.len() as u64 - 1);
                Op::Merged(members)
            };
            self.push_op(op, req);
        }
        self.submit();
    }

    pub(super) fn push_op(&mut self, op: Op, req: IoRequest) {
        let token = self.ops.insert(op);
        add(&self.qstats().backend_ios, 1);
        // SAFETY: the iovecs point into guest memory that the caller keeps
        // mapped while any request is in flight (the runner holds its memory
        // snapshot until `in_flight()` is 0, and quiesces before a memory
        // change); the request stays in `self.ops` until the engine returns
        // its completion.
        unsafe { self.engine.push(IoRequest { token, ..req }) };
    }

    pub(super) fn submit(&mut self) {
        inc(&self.qstats().submits);
        // A failed submission leaves the requests queued in the engine (its
        // contract): they go with the next submit (the runner retries soon,
        // see `submit_pending`) or come back with an errno.
        match self.engine.submit() {
            Ok(()) => self.submit_failed = false,
            Err(e) => {
                if !self.submit_failed {
                    log::warn!("queue {}: submitting I/O failed: {e}; retrying", self.index);
                }
                inc(&self.qstats().engine_errors);
                self.submit_failed = true;
            }
        }
    }

    /// Requests wait in the engine because the last submission failed: call
    /// [`QueueWorker::retry_submit`] soon.
    pub fn submit_pending(&self) -> bool {
        self.submit_failed
    }

    /// Hand the engine's queued requests to the storage again.
    pub fn retry_submit(&mut self) {
        if self.submit_failed {
            self.submit();
        }
    }
}
