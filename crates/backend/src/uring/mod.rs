//! io_uring engine: one ring per queue worker; a batch of requests becomes
//! one `io_uring_enter`, completions are reaped in batches. It keeps the
//! engine contract of the [crate documentation](crate).
//!
//! * [`IoEngine::push`] only queues; [`IoEngine::submit`] turns the batch
//!   into SQEs (`readv`, `writev`, `fsync(DATASYNC)`, `fallocate`) and hands
//!   them to the kernel with one `io_uring_enter` (more only when the batch is
//!   larger than the submission ring: then the full ring is entered, the
//!   completion ring drained, and the push retried). No syscall at all when
//!   every request of the batch completed inline (page-cache hits, below).
//! * A request lives in a *slot* from the moment it is handed to the ring
//!   until its final CQE: the slot owns the iovec array (and any bounce
//!   buffer) the kernel reads. A slot is always either in the kernel (its
//!   SQE on the submission ring or being executed) or in `again`, waiting to
//!   be put on the ring by the next `submit`/`reap`; never neither.
//! * [`IoEngine::reap`] clears the completion eventfd, harvests CQEs without
//!   a syscall and only enters the kernel to wait when fewer than `min`
//!   completions are ready.
//! * A short read or write continues through the ring from where it stopped
//!   (accumulating what was already transferred, so its completion reports
//!   the full length); one that makes no progress (end of file) completes
//!   with `EIO`. `EAGAIN`/`EINTR` results are resubmitted up to
//!   [`MAX_RETRIES`] times.
//! * The completion eventfd is created and registered with the ring when the
//!   engine is created; the kernel signals it for every CQE, and `submit`
//!   signals it for requests it completed without the ring.
//! * Operations the running kernel's io_uring does not support (probed at
//!   creation: `fallocate` needs 5.6) are executed synchronously instead.
//! * The image is a registered file (`IORING_REGISTER_FILES`, SQEs use the
//!   fixed index) and the ring only accepts the opcodes this engine uses
//!   (`IORING_REGISTER_RESTRICTIONS` on a ring created with
//!   `IORING_SETUP_R_DISABLED`, then enabled), where the kernel allows it
//!   (5.10+); elsewhere a plain ring is used.
//!
//! Buffered files may complete reads and writes inline before the ring is
//! involved: `RWF_NOWAIT` first (a page-cache hit completes in the caller's
//! thread; a miss, or the uncached part of a partly cached range, goes to
//! the ring), or, on file systems without `RWF_NOWAIT` (tmpfs, writes on
//! ext4), a plain synchronous copy — for page-cache I/O far cheaper than the
//! io-wq worker hand-off io_uring would otherwise use. `O_DIRECT` files and
//! block devices always use the ring.
//!
//! `O_DIRECT` requests whose guest buffers are not aligned, and requests with
//! more than `IOV_MAX` (1024) iovecs, which `readv`/`writev` refuse, go
//! through an aligned bounce buffer owned by the slot (up to 1 MiB), or are
//! executed synchronously (bounced window by window, read-modify-write for
//! unaligned offsets or lengths; see `sync_io`).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::IoUring;

use crate::sync_io::SyncFile;
use crate::{AlignedBuf, IoCompletion, IoEngine, IoRequest};

// Where each step lives: ring creation, registration and the opcode
// allowlist (`setup`); a pushed request onto the ring (`submit`); the
// page-cache fast path (`inline`); `io_uring_enter` (`enter`); CQEs,
// continuations and the completion eventfd (`complete`); waiting for the
// ring to empty, cancellation and `Drop` (`drain`).
mod complete;
mod drain;
mod enter;
mod inline;
mod setup;
mod submit;
#[cfg(test)]
mod tests;

/// How reads (or writes) of a buffered file are tried before the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inline {
    /// Not at all: everything goes through the ring (O_DIRECT, block devices).
    Ring,
    /// `RWF_NOWAIT` first, the ring on `EAGAIN`.
    Nowait,
    /// The file system has no `RWF_NOWAIT`: synchronous, in this thread.
    Sync,
}

/// How many times an `EAGAIN`/`EINTR` result is resubmitted before it is
/// reported as an error.
pub const MAX_RETRIES: u8 = 8;

/// How many times in a row `io_uring_enter` may fail with `EAGAIN`/`EBUSY`
/// before the error is passed on (nothing is lost then: see `submit`).
const MAX_ENTER_RETRIES: u32 = 1000;

// "IORING_OP_READV ... iovecs ... UIO_MAXIOV": `readv`/`writev` fail with
// `EINVAL` above `crate::IOV_MAX` iovecs.

/// `user_data` of `IORING_OP_ASYNC_CANCEL` SQEs (slot ids stay below it).
const CANCEL_TAG: u64 = 1 << 63;

/// An aligned copy of a request's data; the ring reads or writes this
/// instead of guest memory.
struct Bounce {
    buf: AlignedBuf,
    /// The guest's iovecs (a read is copied out to them at completion).
    guest: Vec<libc::iovec>,
}

// SAFETY: like `IoRequest`: the iovecs point to guest memory the device keeps
// mapped until the request is reaped; the engine only copies through them.
unsafe impl Send for Bounce {}

/// A request owned by the engine while the kernel works on it. Its iovec
/// array (and the memory behind it) must stay put until its final CQE.
struct Slot {
    /// What is left to do (advanced past partial transfers).
    req: IoRequest,
    /// Bytes already transferred (inline or by earlier CQEs).
    done: u64,
    /// The request's full length.
    total: u64,
    retries: u8,
    bounce: Option<Bounce>,
    /// `cancel_all` asked the kernel to abandon it: no retries, no continuation.
    cancelled: bool,
    /// Its SQE is on the submission ring or in the kernel (else: in `again`).
    in_kernel: bool,
}

/// Where a read or write goes.
enum Route {
    Ring,
    /// Through an aligned bounce buffer on the ring.
    Bounce,
    /// Synchronously in this thread (large or unaligned `O_DIRECT`).
    Sync,
}

/// An io_uring based engine for one queue.
pub struct UringEngine {
    file: Arc<File>,
    sync: SyncFile,
    /// The registered-file index of the image, if registration worked.
    fixed: Option<u32>,
    ring: IoUring,
    /// Requests owned by the ring; a CQE's user_data is the index.
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// Occupied slots.
    in_ring: usize,
    /// Pushed, not yet handed to the kernel.
    queued: VecDeque<IoRequest>,
    /// Slots whose remainder (short transfer, EAGAIN, refused push) must go
    /// to the ring again.
    again: Vec<usize>,
    done: Vec<IoCompletion>,
    /// Per direction (read, write): how buffered I/O is tried before the ring.
    inline: [Inline; 2],
    /// Whether the ring can do fsync / fallocate (else: synchronous).
    ring_fsync: bool,
    ring_fallocate: bool,
    /// Write-zeroes through `FALLOC_FL_ZERO_RANGE` failed once: write zeroes by hand.
    zero_range_unsupported: bool,
    /// The eventfd registered with the ring.
    evfd: OwnedFd,
    /// Whether the opcode allowlist is in force.
    restricted: bool,
    /// Statistics: requests completed inline (never entered the ring).
    pub inline_done: u64,
    /// Statistics: remainders of short transfers (and retries) resubmitted.
    pub resubmitted: u64,
    /// Statistics: requests that went through a bounce buffer (or were
    /// executed synchronously because of their alignment or size).
    pub bounced: u64,
    /// Statistics: `RWF_NOWAIT` transfers that moved part of their bytes
    /// inline (the rest went through the ring).
    pub partial_inline: u64,
}

impl UringEngine {
    /// The file this engine reads and writes.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Whether the image is a registered file and the opcode allowlist is
    /// in force: `(registered, restricted)`.
    pub fn hardening(&self) -> (bool, bool) {
        (self.fixed.is_some(), self.restricted)
    }
}

impl IoEngine for UringEngine {
    unsafe fn push(&mut self, req: IoRequest) {
        self.queued.push_back(req);
    }

    fn submit(&mut self) -> io::Result<()> {
        // Remainders and refused pushes first: they have waited longest.
        let mut result = self.requeue();
        while result.is_ok() {
            let Some(req) = self.queued.pop_front() else {
                break;
            };
            result = self.start(req);
        }
        if result.is_ok() && self.needs_enter() {
            result = self.enter(0);
        }
        if !self.done.is_empty() {
            // Completed without the ring (inline, synchronous, refused): the
            // kernel will not signal these, so a worker waiting on the
            // completion eventfd must be told here.
            self.signal_evfd();
        }
        result
    }

    fn reap(&mut self, out: &mut Vec<IoCompletion>, min: usize) -> io::Result<()> {
        self.reap_with(out, min, None)
    }

    fn reap_timeout(
        &mut self,
        out: &mut Vec<IoCompletion>,
        min: usize,
        timeout: Duration,
    ) -> io::Result<()> {
        let deadline = Instant::now().checked_add(timeout);
        self.reap_with(out, min, deadline)
    }

    fn cancel_all(&mut self) {
        self.cancel();
    }

    fn in_flight(&self) -> usize {
        self.queued.len() + self.in_ring + self.done.len()
    }

    fn completion_fd(&self) -> Option<RawFd> {
        Some(self.evfd.as_raw_fd())
    }

    fn name(&self) -> &'static str {
        "io_uring"
    }
}
