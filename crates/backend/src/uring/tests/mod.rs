//! The io_uring engine's tests, by theme (one file each); here the
//! helpers they share: engines on a temporary image or an empty pipe,
//! pushing a request, aligned buffers and byte patterns.

use std::os::fd::{FromRawFd, OwnedFd};

use io_uring::{opcode, types};

use super::*;
use crate::sync_io::{exec_sync, Direct, SyncFile};
use crate::testutil::{iov, one};
use crate::{IoOp, IoRequest};

mod allowlist;
mod cancel;
mod completion_fd;
mod o_direct;
mod round_trip;
mod short_transfers;

fn engine(size: usize) -> (tempfile::TempDir, std::path::PathBuf, UringEngine) {
    engine_with(size, false)
}

fn engine_with(size: usize, inline: bool) -> (tempfile::TempDir, std::path::PathBuf, UringEngine) {
    let dir = crate::testutil::real_fs_dir();
    let p = dir.path().join("u.img");
    std::fs::write(&p, vec![0u8; size]).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    let e = UringEngine::new(Arc::new(f), 8, inline).expect("io_uring available");
    (dir, p, e)
}

fn push(e: &mut UringEngine, op: IoOp, offset: u64, len: u64, bufs: &mut [&mut [u8]], t: u64) {
    let iovecs = bufs.iter_mut().map(|b| iov(b)).collect();
    // SAFETY: every caller reaps the request before its buffers go away.
    unsafe {
        e.push(IoRequest {
            op,
            offset,
            len,
            iovecs,
            token: t,
            fua: false,
        })
    };
}

/// A page-aligned buffer (for O_DIRECT).
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(len: usize, fill: u8) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: non-zero size layout.
        let ptr = unsafe { std::alloc::alloc(layout) };
        assert!(!ptr.is_null());
        // SAFETY: `ptr` points to `len` freshly allocated bytes.
        unsafe { std::ptr::write_bytes(ptr, fill, len) };
        Aligned { ptr, layout }
    }

    fn buf(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` owns `layout.size()` initialised bytes, borrowed mutably with self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// An engine on the read end of an empty pipe: reads stay in the kernel
/// until data arrives or they are cancelled.
fn pipe_engine() -> (UringEngine, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors, owned from here on.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let e = UringEngine::new(Arc::new(File::from(r)), 8, false).expect("io_uring");
    (e, w)
}
