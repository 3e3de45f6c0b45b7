//! Storage backends.
//!
//! A [`Backend`] is the storage object (a raw image file, memory, nothing at
//! all). Each queue worker gets its own [`IoEngine`] from it. The device core
//! is written against the engine interface only, so it does not care which
//! engine it drives (synchronous `preadv`/`pwritev`, io_uring, or the
//! scripted engine of the `test-util` feature).
//!
//! # The engine contract
//!
//! One thread drives an engine (engines are `Send`, not `Sync`):
//!
//! 1. [`IoEngine::push`] queues a request. Nothing reaches the storage yet.
//! 2. [`IoEngine::submit`] hands every queued request to the storage.
//!    Synchronous engines execute them right there.
//! 3. [`IoEngine::reap`] (or [`IoEngine::reap_timeout`]) appends completions
//!    to `out`, in any order: when the engine's [`IoEngine::completion_fd`]
//!    is readable, or right after `submit` for engines without one.
//!
//! Every engine in this crate guarantees, and any other engine must:
//!
//! * **Exactly once.** Every pushed request comes back from `reap` exactly
//!   once, with the [`Token`] it was pushed with (echoed, never interpreted).
//!   Completions come out of order. [`IoEngine::in_flight`] counts requests
//!   pushed and not yet returned.
//! * **No access after completion.** A request is returned only when neither
//!   the kernel nor any helper thread can still read or write its buffers;
//!   from then on the device may reuse or unmap that memory. (This is why
//!   dropping an io_uring engine waits for the requests it still has in the
//!   kernel.)
//! * **Full transfers.** A read or write that moved only part of its bytes
//!   (short transfer, partly cached range under `RWF_NOWAIT`) is continued
//!   from where it stopped; its completion is `Ok(len)` with the request's
//!   FULL length. One that cannot make progress (end of file) is
//!   `Err(EIO)`. The device should still treat `Ok(n)` with `n != len` as an
//!   I/O error: the scripted test engine produces it on purpose.
//! * **Transient errors stay inside.** `EINTR`/`EAGAIN`/`EBUSY` from
//!   `io_uring_enter` are retried (after making room in the completion
//!   ring); `EAGAIN`/`EINTR` results of single requests are resubmitted up
//!   to a bounded number of times, then reported as the errno.
//! * **`submit` failures lose nothing.** When `submit` returns an error,
//!   every request it was given is in exactly one of these states: in the
//!   kernel (it will complete), still queued inside the engine (the next
//!   `submit` — or a `reap` — hands it over; it counts in `in_flight`), or
//!   already completed with an errno because it never reached the storage.
//!   A request is never counted in flight while being neither in the kernel
//!   nor queued. The device keeps reaping and calls `submit` again later.
//! * **`reap` failures lose nothing.** When `reap` returns an error, `out`
//!   is left as it was; completions already harvested stay in the engine
//!   for the next call and the completion fd is signalled again.
//! * **The completion fd.** An engine that completes asynchronously returns
//!   an eventfd from [`IoEngine::completion_fd`], the same one from creation
//!   on (usable before the first request). It is signalled for every
//!   completion that becomes ready, including requests the engine completed
//!   inline during `submit`. The device never reads it: `reap` clears it
//!   *before* harvesting, so a completion that arrives afterwards signals it
//!   again and cannot be missed. The device must tolerate a wake-up that
//!   yields no completion (a completion harvested by the same `reap` that
//!   cleared the fd may have signalled it again). An engine without a
//!   completion fd has finished everything by the time `submit` returns.
//! * **Quiescing.** [`IoEngine::reap_timeout`] bounds the wait, so a device
//!   can log a stuck engine every few seconds while waiting for every I/O;
//!   [`IoEngine::cancel_all`] asks the storage to abandon what it still
//!   has. Cancelled requests still come back through `reap` (with
//!   `ECANCELED`, or their real result if they finished first).

use std::io;
use std::os::unix::io::RawFd;
use std::time::Duration;

mod file;
#[cfg(test)]
mod fua_tests;
mod mem;
mod null;
#[cfg(any(test, feature = "test-util"))]
pub mod pagecache;
mod sync_io;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod uring;

pub use file::{CacheMode, FileBackend, FileOptions};
pub use mem::MemBackend;
pub use null::NullBackend;
pub use sync_io::{skip_iovecs, AlignedBuf};

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

/// Block sizes of the storage, for the device configuration and for
/// `O_DIRECT` alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    /// The smallest unit the storage addresses (bytes, a power of two ≥ 512).
    pub logical: u32,
    /// The storage's physical block (≥ `logical`): smaller writes are a
    /// read-modify-write somewhere below us.
    pub physical: u32,
    /// `O_DIRECT`: required alignment of memory buffers (1: none).
    pub dio_mem_align: u32,
    /// `O_DIRECT`: required alignment of file offsets and lengths (1: none).
    pub dio_offset_align: u32,
}

impl Default for BlockSizes {
    fn default() -> Self {
        BlockSizes {
            logical: 512,
            physical: 512,
            dio_mem_align: 1,
            dio_offset_align: 1,
        }
    }
}

/// A storage object shared by all queues.
pub trait Backend: Send + Sync {
    /// Size in bytes (a multiple of 512).
    fn capacity(&self) -> u64;
    /// A fresh engine for one queue worker.
    fn engine(&self) -> io::Result<Box<dyn IoEngine>>;
    /// Make every completed write durable (used at shutdown).
    fn flush(&self) -> io::Result<()>;
    /// Whether the backend can be written.
    fn read_only(&self) -> bool {
        false
    }
    /// Whether DISCARD is meaningful (punches holes).
    fn supports_discard(&self) -> bool {
        false
    }
    /// The storage's block sizes. Engines bounce requests that do not meet
    /// the `O_DIRECT` alignments, so these are advice for the device
    /// configuration (`blk_size`, `physical_block_exp`), not requirements.
    fn block_sizes(&self) -> BlockSizes {
        BlockSizes::default()
    }
    /// For logs: what this backend is.
    fn describe(&self) -> String;
    /// Online resize: serve `size` bytes from now on (a multiple of 512).
    /// With `resize_file` the storage itself grows or shrinks (a regular
    /// file is truncated or extended); without it the storage is left
    /// alone and `size` must fit in what it holds now. Backends that
    /// cannot do it say why.
    fn resize(&self, size: u64, resize_file: bool) -> io::Result<()> {
        let _ = (size, resize_file);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{} cannot be resized", self.describe()),
        ))
    }
}

/// The error of a resize the storage cannot hold without `resize_file`.
pub fn resize_needs_file(what: &str, have: u64, want: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{what} holds {have} bytes, fewer than {want}: grow it first, or pass --resize-file"
        ),
    )
}

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

/// Check that a capacity is usable: a non-zero multiple of 512.
pub fn check_size(size: u64) -> Result<(), String> {
    if size == 0 {
        return Err("size must not be 0".into());
    }
    if !size.is_multiple_of(512) {
        return Err(format!("size {size} is not a multiple of 512 bytes"));
    }
    Ok(())
}

/// Parse a size such as `1G`, `512M`, `4096`, `10k` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => {
            let unit = s[i..].trim_end_matches(['B', 'b']).trim_end_matches(['i']);
            let m = match unit.to_ascii_lowercase().as_str() {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1 << 40,
                _ => {
                    return Err(format!(
                        "invalid size '{s}': unknown unit (use K, M, G or T)"
                    ))
                }
            };
            (&s[..i], m)
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size '{s}': expected a number with an optional K/M/G/T"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size '{s}': too large"))
}

/// Helpers for the engines' tests.
#[cfg(test)]
pub(crate) mod testutil {
    use crate::{IoCompletion, IoEngine, IoOp, IoRequest};

    pub use crate::pagecache::{partly_cache, real_fs_dir};

    pub fn iov(buf: &mut [u8]) -> libc::iovec {
        libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut _,
            iov_len: buf.len(),
        }
    }

    /// Push one request over `bufs` (none for flush/discard/zeroes), submit,
    /// and wait for its completion.
    pub fn one(
        e: &mut dyn IoEngine,
        op: IoOp,
        offset: u64,
        len: u64,
        bufs: &mut [&mut [u8]],
    ) -> IoCompletion {
        one_with(e, op, offset, len, bufs, false)
    }

    /// [`one`], with force unit access set as given.
    pub fn one_with(
        e: &mut dyn IoEngine,
        op: IoOp,
        offset: u64,
        len: u64,
        bufs: &mut [&mut [u8]],
        fua: bool,
    ) -> IoCompletion {
        let iovecs = bufs.iter_mut().map(|b| iov(b)).collect();
        // SAFETY: the buffers are borrowed until this function returns, and
        // the request is reaped before then.
        unsafe {
            e.push(IoRequest {
                op,
                offset,
                len,
                iovecs,
                token: 42,
                fua,
            })
        };
        e.submit().unwrap();
        let mut out = vec![];
        e.reap(&mut out, 1).unwrap();
        assert_eq!(out.len(), 1);
        out[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("10k").unwrap(), 10 << 10);
        assert!(parse_size("1X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(check_size(1000).is_err());
        assert!(check_size(0).is_err());
        assert!(check_size(1024).is_ok());
    }
}
