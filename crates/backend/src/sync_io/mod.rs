//! Synchronous I/O on a file descriptor, shared by the synchronous file
//! engine and the io_uring engine (for what it runs inline or cannot put on
//! the ring): vectored reads and writes that continue short transfers,
//! `O_DIRECT` bounce buffers, `fdatasync`, `fallocate` and the hand-written
//! write-zeroes fallback. Also the iovec helpers both engines use.
//!
//! Module graph: `file` → `uring` → `sync_io` and `file` → `sync_io`.

use std::io;
use std::os::unix::io::RawFd;
use std::sync::{Arc, Mutex};

use crate::IoRequest;

// Where each step lives: the aligned heap buffer (`aligned_buf`), iovec
// arithmetic and copies (`iovec`), plain vectored and positioned reads and
// writes (`rw`), `O_DIRECT` bouncing with read-modify-write (`bounce`),
// one request executed (`exec`), and the block-size probe (`block_sizes`).
mod aligned_buf;
mod block_sizes;
mod bounce;
mod exec;
mod iovec;
mod rw;
#[cfg(test)]
mod tests;

pub use aligned_buf::AlignedBuf;
pub(crate) use block_sizes::probe_block_sizes;
pub(crate) use exec::exec_sync;
#[cfg(test)]
pub(crate) use exec::write_zeroes_slow;
pub(crate) use iovec::{advance, copy_from_iovecs, copy_to_iovecs};
pub use iovec::{advance_iovecs, skip_iovecs};

/// Largest bounce buffer one request uses at a time (larger unaligned
/// requests are bounced window by window).
pub(crate) const BOUNCE_WINDOW: u64 = 1 << 20;

/// The errno of the last failed libc call.
pub(crate) fn last_errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `O_DIRECT` alignment requirements (powers of two, ≥ 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Direct {
    /// Memory address alignment of every buffer.
    pub mem: u64,
    /// File offset and length alignment (also of every iovec's length: the
    /// kernel checks each segment against the logical block size).
    pub off: u64,
}

impl Direct {
    pub(crate) fn new(mem: u32, off: u32) -> Self {
        let p2 = |v: u32| u64::from(v.max(1)).next_power_of_two();
        Direct {
            mem: p2(mem),
            off: p2(off),
        }
    }

    /// Alignment of a bounce buffer: good for both memory and length rules.
    fn buf_align(&self) -> usize {
        usize::try_from(self.mem.max(self.off).max(512)).unwrap_or(4096)
    }

    /// Whether `req` (a read or write) can go to an `O_DIRECT` file as is.
    pub(crate) fn fits(&self, req: &IoRequest) -> bool {
        req.offset.is_multiple_of(self.off)
            && req.len.is_multiple_of(self.off)
            && req.iovecs.iter().all(|v| {
                (v.iov_base as u64).is_multiple_of(self.mem)
                    && (v.iov_len as u64).is_multiple_of(self.off)
            })
    }
}

/// A file descriptor plus what synchronous I/O on it needs to know.
#[derive(Debug, Clone)]
pub(crate) struct SyncFile {
    pub fd: RawFd,
    /// `Some` when the file is open with `O_DIRECT`.
    pub direct: Option<Direct>,
    /// Serialises the read-modify-write cycles of unaligned `O_DIRECT`
    /// writes (shared by every engine of one backend), so two of them on the
    /// same block cannot undo each other.
    pub rmw: Arc<Mutex<()>>,
}

impl SyncFile {
    /// A buffered (not `O_DIRECT`) file.
    #[cfg(test)]
    pub(crate) fn buffered(fd: RawFd) -> Self {
        SyncFile {
            fd,
            direct: None,
            rmw: Arc::new(Mutex::new(())),
        }
    }
}
