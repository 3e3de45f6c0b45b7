//! The engine interface: a request ([`IoRequest`]), its outcome
//! ([`IoCompletion`]) and the [`IoEngine`] trait every engine implements
//! (the contract is in the [crate documentation](crate)).

use std::io;
use std::os::unix::io::RawFd;
use std::time::Duration;

/// `IOV_MAX`: the most iovecs one `preadv`/`pwritev`/`readv`/`writev` (or
/// io_uring `READV`/`WRITEV`) takes; above it they fail with `EINVAL`.
/// Merged requests stay within it, and every loop over a longer list goes
/// this many at a time.
pub const IOV_MAX: usize = libc::UIO_MAXIOV as usize;

/// Identifies a request between [`IoEngine::push`] and its completion.
pub type Token = u64;

/// What a request asks the storage to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// Read into the iovecs from `offset`.
    Read,
    /// Write the iovecs at `offset`.
    Write,
    /// Make every completed write durable.
    Flush,
    /// Deallocate `len` bytes at `offset` (reads may return anything afterwards).
    Discard,
    /// Make `len` bytes at `offset` read as zeroes.
    WriteZeroes,
}

/// One request for an engine. The iovecs point into guest memory.
#[derive(Debug)]
pub struct IoRequest {
    pub op: IoOp,
    /// Byte offset in the backing store.
    pub offset: u64,
    /// Total length in bytes: the sum of the iovec lengths for reads and
    /// writes, the range length for discard and write-zeroes, 0 for flush.
    pub len: u64,
    pub iovecs: Vec<libc::iovec>,
    pub token: Token,
    /// Force unit access, for [`IoOp::Write`] and [`IoOp::WriteZeroes`]:
    /// the data is on stable storage when the completion comes back (the
    /// guest's write cache is off: virtio 1.2, 5.2.6.2 "If the device is
    /// in writethrough mode ... a write MUST be on persistent storage
    /// before the request completes" is what the device builds on this).
    /// Engines honour it natively (`RWF_DSYNC`, NBD's FUA flag) or by a
    /// flush of their own before completing. Ignored for other operations.
    pub fua: bool,
}

// SAFETY: the iovec pointers refer to guest memory that the device core keeps
// mapped until the request's completion is reaped; the engine only passes
// them to the kernel.
unsafe impl Send for IoRequest {}

/// The outcome of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoCompletion {
    pub token: Token,
    /// Bytes transferred, or a positive errno.
    pub result: Result<u64, i32>,
}

/// A per-queue I/O engine. See the [crate documentation](crate) for the
/// contract every engine keeps.
pub trait IoEngine: Send {
    /// Queue a request for the next [`IoEngine::submit`].
    ///
    /// # Safety
    /// The memory behind `req.iovecs` must stay valid (mapped, not reused)
    /// until this request's completion has been returned by [`IoEngine::reap`].
    unsafe fn push(&mut self, req: IoRequest);

    /// Submit every queued request to the storage, in one go where the
    /// engine can. On error nothing is lost (see the crate documentation):
    /// reap as usual and call `submit` again later.
    fn submit(&mut self) -> io::Result<()>;

    /// Append completions to `out`, waiting until at least `min` have
    /// arrived in this call (or no request that can complete is in flight
    /// any more). `reap(out, 0)` never blocks.
    fn reap(&mut self, out: &mut Vec<IoCompletion>, min: usize) -> io::Result<()>;

    /// Like [`IoEngine::reap`], but wait at most `timeout` for the `min`
    /// completions; returns `Ok` with fewer when the time is up.
    fn reap_timeout(
        &mut self,
        out: &mut Vec<IoCompletion>,
        min: usize,
        timeout: Duration,
    ) -> io::Result<()> {
        let _ = timeout;
        self.reap(out, min)
    }

    /// Best effort: ask the storage to abandon every request it still has
    /// (io_uring: `IORING_OP_ASYNC_CANCEL`). Does not wait. The cancelled
    /// requests still come back through [`IoEngine::reap`], with
    /// `Err(ECANCELED)` or their real result. Requests queued but not yet
    /// submitted complete with `ECANCELED`.
    fn cancel_all(&mut self) {}

    /// Requests pushed but not yet returned by [`IoEngine::reap`].
    fn in_flight(&self) -> usize;

    /// An eventfd that becomes readable when completions are ready, for
    /// engines that complete asynchronously. The same fd for the engine's
    /// whole life; [`IoEngine::reap`] clears it.
    fn completion_fd(&self) -> Option<RawFd> {
        None
    }

    /// A short name for logs ("sync", "io_uring").
    fn name(&self) -> &'static str;
}
