//! [`SyncEngine`]: the engine of the synchronous backends (file without
//! io_uring, memory, null), executing each request in `submit`.

use std::io;

use crate::{IoCompletion, IoEngine, IoRequest};

/// A minimal, synchronous engine built on a closure that executes one
/// request. Used by the file (preadv/pwritev), memory and null backends.
pub struct SyncEngine<F> {
    exec: F,
    done: Vec<IoCompletion>,
    pending: Vec<IoRequest>,
}

impl<F> SyncEngine<F>
where
    F: FnMut(&IoRequest) -> Result<u64, i32> + Send,
{
    pub fn new(exec: F) -> Self {
        Self {
            exec,
            done: Vec::new(),
            pending: Vec::new(),
        }
    }
}

impl<F> IoEngine for SyncEngine<F>
where
    F: FnMut(&IoRequest) -> Result<u64, i32> + Send,
{
    unsafe fn push(&mut self, req: IoRequest) {
        self.pending.push(req);
    }

    fn submit(&mut self) -> io::Result<()> {
        for req in self.pending.drain(..) {
            let result = (self.exec)(&req);
            self.done.push(IoCompletion {
                token: req.token,
                result,
            });
        }
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<IoCompletion>, _min: usize) -> io::Result<()> {
        out.append(&mut self.done);
        Ok(())
    }

    fn cancel_all(&mut self) {
        for req in self.pending.drain(..) {
            self.done.push(IoCompletion {
                token: req.token,
                result: Err(libc::ECANCELED),
            });
        }
    }

    fn in_flight(&self) -> usize {
        self.pending.len() + self.done.len()
    }

    fn name(&self) -> &'static str {
        "sync"
    }
}
