//! io_uring engine: one ring per queue worker; a batch of requests becomes
//! one `io_uring_enter`, completions are reaped in batches.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

use io_uring::{opcode, squeue, types, IoUring};

use crate::file::exec_sync;
use crate::{IoCompletion, IoEngine, IoOp, IoRequest};

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

/// An io_uring based engine for one queue.
pub struct UringEngine {
    file: Arc<File>,
    ring: IoUring,
    /// Requests in the kernel, by user_data (their iovecs must stay put).
    inflight: HashMap<u64, IoRequest>,
    /// Pushed, not yet handed to the kernel.
    queued: Vec<IoRequest>,
    next_id: u64,
    done: Vec<IoCompletion>,
    /// Per direction (read, write): how buffered I/O is tried before the ring.
    nowait: [Inline; 2],
    /// Bytes already transferred inline for requests finished by the ring.
    partial: HashMap<u64, u64>,
    /// Statistics: requests completed inline.
    pub inline_done: u64,
}

impl UringEngine {
    /// A ring of `entries` submission slots. Fails where io_uring is not
    /// available (old kernel, seccomp, container policy).
    ///
    /// `inline_nowait`: for buffered files, try reads and writes inline with
    /// `RWF_NOWAIT` before queueing them (never for `O_DIRECT`, where a
    /// "non-blocking" direct read still waits for the device).
    pub fn new(file: Arc<File>, entries: u32, inline_nowait: bool) -> io::Result<Self> {
        let ring = IoUring::new(entries)?;
        Ok(UringEngine {
            file,
            ring,
            inflight: HashMap::new(),
            queued: Vec::new(),
            next_id: 0,
            done: Vec::new(),
            nowait: [if inline_nowait {
                Inline::Nowait
            } else {
                Inline::Ring
            }; 2],
            partial: HashMap::new(),
            inline_done: 0,
        })
    }

    /// Try a read/write inline without blocking. Returns the request back
    /// if it has to go through the ring (possibly advanced past a partial
    /// transfer), or None when it is complete.
    ///
    /// Buffered files only: first `RWF_NOWAIT` (a page-cache hit completes
    /// here, a miss goes to the ring); where the file system does not support
    /// it (tmpfs, and writes on many file systems) a plain `preadv`/`pwritev`
    /// in this thread, which for page-cache I/O is far cheaper than handing
    /// each request to an io-wq worker thread.
    fn try_inline(&mut self, req: IoRequest) -> Option<IoRequest> {
        let dir = match req.op {
            IoOp::Read => 0,
            IoOp::Write => 1,
            _ => return Some(req),
        };
        match self.nowait[dir] {
            Inline::Ring => return Some(req),
            Inline::Sync => {
                let result = exec_sync(self.file.as_raw_fd(), &req);
                self.inline_done += 1;
                self.done.push(IoCompletion {
                    token: req.token,
                    result,
                });
                return None;
            }
            Inline::Nowait => {}
        }
        if req.iovecs.len() > libc::UIO_MAXIOV as usize {
            return Some(req);
        }
        let Ok(off) = libc::off_t::try_from(req.offset) else {
            return Some(req);
        };
        // SAFETY: the iovecs describe memory that stays valid until the
        // request completes (IoEngine::push contract); the count matches.
        let r = unsafe {
            if dir == 0 {
                libc::preadv2(
                    self.file.as_raw_fd(),
                    req.iovecs.as_ptr(),
                    req.iovecs.len() as i32,
                    off,
                    libc::RWF_NOWAIT,
                )
            } else {
                libc::pwritev2(
                    self.file.as_raw_fd(),
                    req.iovecs.as_ptr(),
                    req.iovecs.len() as i32,
                    off,
                    libc::RWF_NOWAIT,
                )
            }
        };
        if r < 0 {
            let e = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            if e == libc::EOPNOTSUPP || e == libc::EINVAL {
                log::debug!(
                    "RWF_NOWAIT not supported for {}; inline synchronous I/O",
                    if dir == 0 { "reads" } else { "writes" }
                );
                self.nowait[dir] = Inline::Sync;
                return self.try_inline(req);
            }
            if e == libc::EAGAIN || e == libc::EINTR {
                return Some(req);
            }
            self.done.push(IoCompletion {
                token: req.token,
                result: Err(e),
            });
            return None;
        }
        let n = r as u64;
        if n == req.len {
            self.inline_done += 1;
            self.done.push(IoCompletion {
                token: req.token,
                result: Ok(n),
            });
            return None;
        }
        if n == 0 && dir == 0 {
            // End of file.
            self.done.push(IoCompletion {
                token: req.token,
                result: Err(libc::EIO),
            });
            return None;
        }
        // Partial: the rest goes through the ring; remember what was done.
        let mut rest = advance(&req, n);
        rest.len = req.len - n;
        self.partial.insert(req.token, n);
        Some(rest)
    }

    fn sqe(&self, req: &IoRequest, id: u64) -> squeue::Entry {
        let fd = types::Fd(self.file.as_raw_fd());
        let e = match req.op {
            IoOp::Read => opcode::Readv::new(fd, req.iovecs.as_ptr(), req.iovecs.len() as u32)
                .offset(req.offset)
                .build(),
            IoOp::Write => opcode::Writev::new(fd, req.iovecs.as_ptr(), req.iovecs.len() as u32)
                .offset(req.offset)
                .build(),
            // A flush runs after everything submitted before it.
            IoOp::Flush => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .flags(squeue::Flags::IO_DRAIN),
            IoOp::Discard => opcode::Fallocate::new(fd, req.len)
                .offset(req.offset)
                .mode(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE)
                .build(),
            IoOp::WriteZeroes => opcode::Fallocate::new(fd, req.len)
                .offset(req.offset)
                .mode(libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE)
                .build(),
        };
        e.user_data(id)
    }

    /// Finish a completion: errors as errno; short reads/writes completed
    /// synchronously from where the kernel stopped.
    fn finish(&mut self, id: u64, res: i32) {
        let Some(req) = self.inflight.remove(&id) else {
            return;
        };
        let result = if res < 0 {
            let errno = -res;
            match req.op {
                // Discard is advisory.
                IoOp::Discard => Ok(req.len),
                // Filesystems without ZERO_RANGE: write zeroes by hand.
                IoOp::WriteZeroes if errno == libc::EOPNOTSUPP || errno == libc::EINVAL => {
                    exec_sync(self.file.as_raw_fd(), &req)
                }
                _ => Err(errno),
            }
        } else {
            let n = res as u64;
            match req.op {
                IoOp::Read | IoOp::Write if n < req.len => {
                    if n == 0 {
                        Err(libc::EIO)
                    } else {
                        let rest = advance(&req, n);
                        exec_sync(self.file.as_raw_fd(), &rest).map(|m| n + m)
                    }
                }
                IoOp::Read | IoOp::Write => Ok(n),
                _ => Ok(req.len),
            }
        };
        self.done.push(IoCompletion {
            token: req.token,
            result,
        });
    }

    fn drain_cq(&mut self) {
        let cqes: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (id, res) in cqes {
            self.finish(id, res);
        }
    }
}

/// The part of `req` after its first `n` bytes.
fn advance(req: &IoRequest, mut n: u64) -> IoRequest {
    let mut iovecs = Vec::with_capacity(req.iovecs.len());
    for v in &req.iovecs {
        if n >= v.iov_len as u64 {
            n -= v.iov_len as u64;
            continue;
        }
        // SAFETY: advancing within the same iovec by less than its length.
        let base = unsafe { (v.iov_base as *mut u8).add(n as usize) };
        iovecs.push(libc::iovec {
            iov_base: base as *mut libc::c_void,
            iov_len: v.iov_len - n as usize,
        });
        n = 0;
    }
    let done: u64 = req.len - iovecs.iter().map(|v| v.iov_len as u64).sum::<u64>();
    IoRequest {
        op: req.op,
        offset: req.offset + done,
        len: req.len - done,
        iovecs,
        token: req.token,
    }
}

impl IoEngine for UringEngine {
    unsafe fn push(&mut self, req: IoRequest) {
        self.queued.push(req);
    }

    fn submit(&mut self) -> io::Result<()> {
        let queued = std::mem::take(&mut self.queued);
        for req in queued {
            let Some(req) = self.try_inline(req) else {
                continue;
            };
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            let e = self.sqe(&req, id);
            // The request (and its iovec array) lives in `inflight` until its
            // completion, so the pointers in the SQE stay valid.
            self.inflight.insert(id, req);
            loop {
                // SAFETY: the entry's buffers (iovec array in `inflight`, guest
                // memory behind it per the IoEngine::push contract) outlive
                // the operation: they are released only in `finish`.
                let pushed = unsafe { self.ring.submission().push(&e).is_ok() };
                if pushed {
                    break;
                }
                // Submission queue full: hand what we have to the kernel.
                self.ring.submit()?;
                self.drain_cq();
            }
        }
        self.ring.submit()?;
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<IoCompletion>, min: usize) -> io::Result<()> {
        self.drain_cq();
        while self.done.len() < min && !self.inflight.is_empty() {
            let want = (min - self.done.len()).min(self.inflight.len());
            match self.ring.submit_and_wait(want) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
            self.drain_cq();
        }
        out.append(&mut self.done);
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.queued.len() + self.inflight.len() + self.done.len()
    }

    fn name(&self) -> &'static str {
        "io_uring"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iov(buf: &mut [u8]) -> libc::iovec {
        libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut _,
            iov_len: buf.len(),
        }
    }

    fn engine(size: usize) -> (tempfile::TempDir, std::path::PathBuf, UringEngine) {
        engine_with(size, false)
    }

    fn engine_with(
        size: usize,
        inline: bool,
    ) -> (tempfile::TempDir, std::path::PathBuf, UringEngine) {
        let dir = tempfile::tempdir().unwrap();
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

    #[test]
    fn a_batch_larger_than_the_ring() {
        let (_d, p, mut e) = engine(1 << 20);
        let mut bufs: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8 + 1; 4096]).collect();
        // SAFETY: buffers outlive the reap below.
        unsafe {
            for (i, b) in bufs.iter_mut().enumerate() {
                e.push(IoRequest {
                    op: IoOp::Write,
                    offset: i as u64 * 4096,
                    len: 4096,
                    iovecs: vec![iov(b)],
                    token: i as u64,
                });
            }
            e.push(IoRequest {
                op: IoOp::Flush,
                offset: 0,
                len: 0,
                iovecs: vec![],
                token: 999,
            });
        }
        e.submit().unwrap();
        let mut out = vec![];
        e.reap(&mut out, 65).unwrap();
        assert_eq!(out.len(), 65);
        assert!(out.iter().all(|c| c.result.is_ok()), "{out:?}");
        assert_eq!(e.in_flight(), 0);
        let data = std::fs::read(&p).unwrap();
        for i in 0..64 {
            assert!(data[i * 4096..(i + 1) * 4096]
                .iter()
                .all(|&b| b == i as u8 + 1));
        }
        // Read back through the ring, split over two iovecs.
        let mut a = vec![0u8; 1024];
        let mut b = vec![0u8; 3072];
        // SAFETY: buffers outlive the reap.
        unsafe {
            e.push(IoRequest {
                op: IoOp::Read,
                offset: 4096 * 3,
                len: 4096,
                iovecs: vec![iov(&mut a), iov(&mut b)],
                token: 5,
            });
        }
        e.submit().unwrap();
        out.clear();
        e.reap(&mut out, 1).unwrap();
        assert_eq!(out[0].result, Ok(4096));
        assert!(a.iter().chain(b.iter()).all(|&x| x == 4));
    }

    #[test]
    fn eof_read_is_an_error_and_zeroes_work() {
        let (_d, p, mut e) = engine(8192);
        let mut buf = vec![0u8; 4096];
        // SAFETY: buffer outlives the reap.
        unsafe {
            e.push(IoRequest {
                op: IoOp::Read,
                offset: 8192,
                len: 4096,
                iovecs: vec![iov(&mut buf)],
                token: 1,
            });
            e.push(IoRequest {
                op: IoOp::Read,
                offset: 6144,
                len: 4096,
                iovecs: vec![iov(&mut buf)],
                token: 2,
            });
        }
        e.submit().unwrap();
        let mut out = vec![];
        e.reap(&mut out, 2).unwrap();
        out.sort_by_key(|c| c.token);
        assert_eq!(out[0].result, Err(libc::EIO), "read at EOF");
        assert_eq!(
            out[1].result,
            Err(libc::EIO),
            "read straddling EOF is short, then EOF"
        );
        std::fs::write(&p, vec![7u8; 8192]).unwrap();
        // SAFETY: no buffers.
        unsafe {
            e.push(IoRequest {
                op: IoOp::WriteZeroes,
                offset: 512,
                len: 1024,
                iovecs: vec![],
                token: 3,
            });
        }
        e.submit().unwrap();
        out.clear();
        e.reap(&mut out, 1).unwrap();
        assert_eq!(out[0].result, Ok(1024));
        let d = std::fs::read(&p).unwrap();
        assert!(d[512..1536].iter().all(|&b| b == 0) && d[0] == 7 && d[1536] == 7);
    }

    #[test]
    fn inline_nowait_path_gives_the_same_results() {
        use crate::testutil::one;
        let (_d, p, mut e) = engine_with(1 << 16, true);
        let mut w = vec![0x77u8; 8192];
        let mut r = vec![0u8; 8192];
        let mut eof = vec![0u8; 4096];
        assert_eq!(
            one(&mut e, IoOp::Write, 4096, 8192, &mut [&mut w]).result,
            Ok(8192)
        );
        assert_eq!(
            one(&mut e, IoOp::Read, 4096, 8192, &mut [&mut r]).result,
            Ok(8192)
        );
        assert_eq!(
            one(&mut e, IoOp::Read, 1 << 16, 4096, &mut [&mut eof]).result,
            Err(libc::EIO)
        );
        assert!(r.iter().all(|&b| b == 0x77));
        assert_eq!(&std::fs::read(&p).unwrap()[4096..12288], &w[..]);
        assert_eq!(e.in_flight(), 0);
        assert!(e.inline_done >= 2, "the page-cache path was not taken");
    }

    #[test]
    fn drop_with_nothing_in_flight() {
        let (_d, _p, e) = engine(4096);
        assert_eq!(e.in_flight(), 0);
        drop(e);
    }
}
