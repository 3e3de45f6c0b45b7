//! Storage backends.
//!
//! A [`Backend`] is the storage object (a raw image file, memory, nothing at
//! all). Each queue worker gets its own [`IoEngine`] from it: the engine takes
//! a batch of requests ([`IoEngine::push`]), submits it in one go
//! ([`IoEngine::submit`]) and hands back completions ([`IoEngine::reap`]).
//! A synchronous engine completes at `submit`; an io_uring engine completes
//! asynchronously. The device core is written against the engine interface
//! only, so it does not care which one it drives.

use std::io;
use std::os::unix::io::RawFd;

mod file;
mod mem;
mod null;
pub mod uring;

pub use file::{CacheMode, FileBackend, FileOptions};
pub use mem::MemBackend;
pub use null::NullBackend;

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

/// A per-queue I/O engine.
pub trait IoEngine: Send {
    /// Queue a request for the next [`IoEngine::submit`].
    ///
    /// # Safety
    /// The memory behind `req.iovecs` must stay valid (mapped, not reused)
    /// until this request's completion has been returned by [`IoEngine::reap`].
    unsafe fn push(&mut self, req: IoRequest);

    /// Submit every queued request to the storage, in one go where the
    /// engine can.
    fn submit(&mut self) -> io::Result<()>;

    /// Append completions to `out`, waiting until at least `min` have
    /// arrived in this call (or no request is in flight any more).
    fn reap(&mut self, out: &mut Vec<IoCompletion>, min: usize) -> io::Result<()>;

    /// Like [`IoEngine::reap`], but wait at most `timeout` for `min`
    /// completions.
    fn reap_timeout(
        &mut self,
        out: &mut Vec<IoCompletion>,
        min: usize,
        timeout: std::time::Duration,
    ) -> io::Result<()> {
        let _ = timeout;
        self.reap(out, min)
    }

    /// Ask the storage to give up on everything in flight (best effort);
    /// cancelled requests still come back through [`IoEngine::reap`].
    fn cancel_all(&mut self) {}

    /// Requests pushed but not yet returned by [`IoEngine::reap`].
    fn in_flight(&self) -> usize;

    /// An eventfd that becomes readable when completions are ready, for
    /// engines that complete asynchronously.
    fn completion_fd(&self) -> Option<RawFd> {
        None
    }

    /// A short name for logs ("sync", "io_uring").
    fn name(&self) -> &'static str;
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
    /// For logs: what this backend is.
    fn describe(&self) -> String;
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
