//! io_uring engine: one ring per queue worker; a batch of requests becomes
//! one `io_uring_enter`, completions are reaped in batches.
//!
//! * [`IoEngine::push`] only queues; [`IoEngine::submit`] turns the batch
//!   into SQEs (`readv`, `writev`, `fsync(DATASYNC)`, `fallocate`) and hands
//!   them to the kernel with one `io_uring_enter` (more only when the batch is
//!   larger than the submission ring). No syscall at all when every request
//!   of the batch completed inline (page-cache hits, see below).
//! * [`IoEngine::reap`] harvests CQEs without a syscall and only enters the
//!   kernel to wait when fewer than `min` completions are ready.
//! * A short read or write is resubmitted through the ring for the rest of
//!   its bytes (accumulating what was already transferred); one that makes no
//!   progress (end of file) completes with `EIO`, so the device reports
//!   `VIRTIO_BLK_S_IOERR`. `EAGAIN`/`EINTR` results are retried a few times.
//!   Every pushed request comes back from `reap` exactly once.
//! * [`IoEngine::completion_fd`] registers an eventfd with the ring on first
//!   use, so a worker can wait for completions in epoll; until somebody asks
//!   for it the kernel signals nothing.
//! * Operations the running kernel's io_uring does not support (probed at
//!   creation: `fallocate` needs 5.6) are executed synchronously instead.
//!
//! Buffered files may complete reads and writes inline before the ring is
//! involved: `RWF_NOWAIT` first (a page-cache hit completes in the caller's
//! thread, a miss goes to the ring), or, on file systems without
//! `RWF_NOWAIT` (tmpfs, writes on ext4), a plain synchronous copy — for
//! page-cache I/O far cheaper than the io-wq worker hand-off io_uring would
//! otherwise use. `O_DIRECT` files and block devices always use the ring.

use std::cell::OnceCell;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use io_uring::{opcode, squeue, types, IoUring, Probe};

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

/// How many times an `EAGAIN`/`EINTR` result is resubmitted before it is
/// reported as an error.
const MAX_RETRIES: u8 = 8;

/// A request owned by the engine while the kernel works on it. Its iovec
/// array (and the guest memory behind it) must stay put until its CQE.
struct Slot {
    /// What is left to do (advanced past partial transfers).
    req: IoRequest,
    /// Bytes already transferred (inline or by earlier CQEs).
    done: u64,
    /// The request's full length.
    total: u64,
    retries: u8,
}

/// An io_uring based engine for one queue.
pub struct UringEngine {
    file: Arc<File>,
    fd: RawFd,
    ring: IoUring,
    /// Requests in the ring; a CQE's user_data is the index.
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// Occupied slots.
    in_ring: usize,
    /// Pushed, not yet handed to the kernel.
    queued: Vec<IoRequest>,
    /// Slots whose remainder (short transfer, EAGAIN) must go to the ring again.
    again: Vec<usize>,
    done: Vec<IoCompletion>,
    /// Per direction (read, write): how buffered I/O is tried before the ring.
    inline: [Inline; 2],
    /// Whether the ring can do fsync / fallocate (else: synchronous).
    ring_fsync: bool,
    ring_fallocate: bool,
    /// Write-zeroes through `FALLOC_FL_ZERO_RANGE` failed once: write zeroes by hand.
    zero_range_unsupported: bool,
    /// The eventfd registered with the ring, created on first request.
    evfd: OnceCell<Option<OwnedFd>>,
    /// Statistics: requests completed inline (never entered the ring).
    pub inline_done: u64,
    /// Statistics: remainders of short transfers resubmitted.
    pub resubmitted: u64,
}

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl UringEngine {
    /// A ring of `entries` submission slots. Fails where io_uring is not
    /// available (old kernel, seccomp, `kernel.io_uring_disabled`, container
    /// policy); the caller then uses the synchronous engine.
    ///
    /// `inline_nowait`: for buffered files, try reads and writes inline with
    /// `RWF_NOWAIT` before queueing them (never for `O_DIRECT`, where a
    /// "non-blocking" direct read still waits for the device).
    pub fn new(file: Arc<File>, entries: u32, inline_nowait: bool) -> io::Result<Self> {
        let ring = IoUring::builder()
            .setup_cqsize(entries.saturating_mul(2).max(2))
            .build(entries.max(1))?;
        let mut probe = Probe::new();
        let (ring_fsync, ring_fallocate) = match ring.submitter().register_probe(&mut probe) {
            Ok(()) => (
                probe.is_supported(opcode::Fsync::CODE),
                probe.is_supported(opcode::Fallocate::CODE),
            ),
            // No probe before 5.6: readv/writev/fsync exist since 5.1,
            // fallocate came with the probe.
            Err(_) => (true, false),
        };
        if !(probe_ok(&probe, opcode::Readv::CODE) && probe_ok(&probe, opcode::Writev::CODE)) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring has no readv/writev",
            ));
        }
        let mode = if inline_nowait {
            Inline::Nowait
        } else {
            Inline::Ring
        };
        log::debug!(
            "io_uring engine: {} SQ entries, {} CQ entries, inline page-cache I/O {}, fsync {}, fallocate {}",
            ring.params().sq_entries(),
            ring.params().cq_entries(),
            if inline_nowait { "on" } else { "off" },
            if ring_fsync { "in the ring" } else { "synchronous" },
            if ring_fallocate { "in the ring" } else { "synchronous" },
        );
        Ok(UringEngine {
            fd: file.as_raw_fd(),
            file,
            ring,
            slots: Vec::new(),
            free: Vec::new(),
            in_ring: 0,
            queued: Vec::new(),
            again: Vec::new(),
            done: Vec::new(),
            inline: [mode; 2],
            ring_fsync,
            ring_fallocate,
            zero_range_unsupported: false,
            evfd: OnceCell::new(),
            inline_done: 0,
            resubmitted: 0,
        })
    }

    /// The file this engine reads and writes.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    fn complete(&mut self, token: u64, result: Result<u64, i32>) {
        self.done.push(IoCompletion { token, result });
    }

    /// Try a read/write inline without blocking. Returns the request back
    /// (possibly advanced past a partial transfer, with the bytes already
    /// done) if it has to go through the ring, or None when it is complete.
    fn try_inline(&mut self, req: IoRequest) -> Option<(IoRequest, u64)> {
        let dir = match req.op {
            IoOp::Read => 0,
            IoOp::Write => 1,
            _ => return Some((req, 0)),
        };
        match self.inline[dir] {
            Inline::Ring => return Some((req, 0)),
            Inline::Sync => {
                let result = exec_sync(self.fd, &req);
                self.inline_done += 1;
                self.complete(req.token, result);
                return None;
            }
            Inline::Nowait => {}
        }
        if req.iovecs.len() > libc::UIO_MAXIOV as usize {
            return Some((req, 0));
        }
        let Ok(off) = libc::off_t::try_from(req.offset) else {
            return Some((req, 0));
        };
        // SAFETY: the iovecs describe memory that stays valid until the
        // request completes (IoEngine::push contract); the count matches.
        let r = unsafe {
            if dir == 0 {
                libc::preadv2(
                    self.fd,
                    req.iovecs.as_ptr(),
                    req.iovecs.len() as i32,
                    off,
                    libc::RWF_NOWAIT,
                )
            } else {
                libc::pwritev2(
                    self.fd,
                    req.iovecs.as_ptr(),
                    req.iovecs.len() as i32,
                    off,
                    libc::RWF_NOWAIT,
                )
            }
        };
        if r < 0 {
            let e = errno_of(&io::Error::last_os_error());
            if e == libc::EOPNOTSUPP || e == libc::EINVAL {
                log::debug!(
                    "RWF_NOWAIT not supported for {}; page-cache I/O synchronous in the queue thread",
                    if dir == 0 { "reads" } else { "writes" }
                );
                self.inline[dir] = Inline::Sync;
                return self.try_inline(req);
            }
            if e == libc::EAGAIN || e == libc::EINTR {
                return Some((req, 0));
            }
            self.complete(req.token, Err(e));
            return None;
        }
        let n = r as u64;
        if n == req.len {
            self.inline_done += 1;
            self.complete(req.token, Ok(n));
            return None;
        }
        if n == 0 && dir == 0 {
            // End of file.
            self.complete(req.token, Err(libc::EIO));
            return None;
        }
        // Partial (some pages cached, some not): the rest goes through the ring.
        Some((advance(&req, n), n))
    }

    fn sqe(&self, req: &IoRequest, id: usize) -> squeue::Entry {
        let fd = types::Fd(self.fd);
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
        e.user_data(id as u64)
    }

    /// Whether `op` goes through the ring at all (else: synchronous).
    fn ring_does(&self, op: IoOp) -> bool {
        match op {
            IoOp::Read | IoOp::Write => true,
            IoOp::Flush => self.ring_fsync,
            IoOp::Discard => self.ring_fallocate,
            IoOp::WriteZeroes => self.ring_fallocate && !self.zero_range_unsupported,
        }
    }

    /// Take ownership of a request for the ring; returns its slot.
    fn occupy(&mut self, req: IoRequest, done: u64, total: u64) -> usize {
        let slot = Slot {
            req,
            done,
            total,
            retries: 0,
        };
        self.in_ring += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        }
    }

    fn release(&mut self, id: usize) -> Option<Slot> {
        let s = self.slots.get_mut(id)?.take()?;
        self.in_ring -= 1;
        self.free.push(id);
        Some(s)
    }

    /// Put slot `id`'s SQE on the submission ring, handing the ring to the
    /// kernel first if it is full.
    fn queue_sqe(&mut self, id: usize) -> io::Result<()> {
        let Some(slot) = self.slots[id].as_ref() else {
            return Ok(());
        };
        let e = self.sqe(&slot.req, id);
        loop {
            // SAFETY: the entry's buffers (the iovec array owned by the slot,
            // and the guest memory behind it per the IoEngine::push contract)
            // outlive the operation: the slot is released only when its CQE
            // has been reaped.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return Ok(());
            }
            // Submission ring full: hand what we have to the kernel.
            self.enter(0)?;
            self.drain_cq();
        }
    }

    /// `io_uring_enter`: submit what is on the submission ring and wait for
    /// `want` completions. Transient failures are retried.
    fn enter(&mut self, want: usize) -> io::Result<()> {
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                    if want == 0 {
                        continue;
                    }
                    // Interrupted while waiting: the caller looks at the
                    // completion ring and waits again if it must.
                    return Ok(());
                }
                // Completion ring overflowing or kernel short of memory:
                // make room and try again.
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        || e.raw_os_error() == Some(libc::EAGAIN) =>
                {
                    self.drain_cq();
                    if want > 0 && !self.done.is_empty() {
                        return Ok(());
                    }
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether an `io_uring_enter` without waiting has anything to do.
    fn needs_enter(&mut self) -> bool {
        let sq = self.ring.submission();
        !sq.is_empty() || sq.cq_overflow() || sq.taskrun()
    }

    /// Put the remainders of short or retried transfers back on the ring.
    fn requeue(&mut self) -> io::Result<()> {
        while let Some(id) = self.again.pop() {
            self.resubmitted += 1;
            self.queue_sqe(id)?;
        }
        Ok(())
    }

    /// Finish a CQE: errors as errno, short transfers continued.
    fn finish(&mut self, id: usize, res: i32) {
        let Some(slot) = self.slots.get_mut(id).and_then(|s| s.as_mut()) else {
            log::warn!("io_uring: completion for unknown request {id}");
            return;
        };
        let op = slot.req.op;
        if res < 0 {
            let errno = -res;
            if (errno == libc::EAGAIN || errno == libc::EINTR) && slot.retries < MAX_RETRIES {
                slot.retries += 1;
                self.again.push(id);
                return;
            }
            let Some(slot) = self.release(id) else { return };
            let result = match op {
                // Discard is advisory.
                IoOp::Discard => Ok(slot.total),
                // File systems without ZERO_RANGE: write zeroes by hand.
                IoOp::WriteZeroes if errno == libc::EOPNOTSUPP || errno == libc::EINVAL => {
                    self.zero_range_unsupported = true;
                    exec_sync(self.fd, &slot.req)
                }
                _ => Err(errno),
            };
            self.complete(slot.req.token, result);
            return;
        }
        let n = res as u64;
        match op {
            IoOp::Read | IoOp::Write if n < slot.req.len && n > 0 => {
                // Short: the rest goes to the ring again.
                slot.done += n;
                slot.req = advance(&slot.req, n);
                slot.retries = 0;
                self.again.push(id);
            }
            IoOp::Read | IoOp::Write => {
                let Some(slot) = self.release(id) else { return };
                // No progress at all is the end of the file (or device).
                let result = if n == 0 && slot.req.len > 0 {
                    Err(libc::EIO)
                } else {
                    Ok(slot.done + n)
                };
                self.complete(slot.req.token, result);
            }
            _ => {
                let Some(slot) = self.release(id) else { return };
                self.complete(slot.req.token, Ok(slot.total));
            }
        }
    }

    fn drain_cq(&mut self) {
        loop {
            let mut batch = [(0u64, 0i32); 64];
            let mut n = 0;
            for c in self.ring.completion().take(batch.len()) {
                batch[n] = (c.user_data(), c.result());
                n += 1;
            }
            for &(id, res) in &batch[..n] {
                self.finish(id as usize, res);
            }
            if n < batch.len() {
                break;
            }
        }
    }

    /// Wait until nothing is in the ring any more (completions stay in `done`).
    fn wait_idle(&mut self) -> io::Result<()> {
        self.requeue()?;
        while self.in_ring > 0 {
            self.enter(self.in_ring)?;
            self.drain_cq();
            self.requeue()?;
        }
        Ok(())
    }

    /// Make the completion eventfd readable, if there is one.
    fn signal_evfd(&self) {
        if let Some(Some(fd)) = self.evfd.get() {
            let v = 1u64;
            // SAFETY: writes 8 bytes from `v` to an eventfd we own.
            unsafe { libc::write(fd.as_raw_fd(), &v as *const u64 as *const libc::c_void, 8) };
        }
    }

    /// Clear the completion eventfd, if there is one (before looking at the
    /// completion ring, so a CQE posted afterwards signals it again).
    fn clear_evfd(&self) {
        if let Some(Some(fd)) = self.evfd.get() {
            let mut v = 0u64;
            // SAFETY: reads 8 bytes into `v` from a non-blocking eventfd we own.
            unsafe { libc::read(fd.as_raw_fd(), &mut v as *mut u64 as *mut libc::c_void, 8) };
        }
    }
}

fn probe_ok(probe: &Probe, code: u8) -> bool {
    // An empty probe (registration failed on an old kernel) says nothing.
    probe.is_supported(code) || !probe.is_supported(opcode::Nop::CODE)
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
    let left: u64 = iovecs.iter().map(|v| v.iov_len as u64).sum();
    let done = req.len.saturating_sub(left);
    IoRequest {
        op: req.op,
        offset: req.offset + done,
        len: left,
        iovecs,
        token: req.token,
    }
}

impl IoEngine for UringEngine {
    unsafe fn push(&mut self, req: IoRequest) {
        self.queued.push(req);
    }

    fn submit(&mut self) -> io::Result<()> {
        let mut queued = std::mem::take(&mut self.queued);
        let mut result = Ok(());
        for req in queued.drain(..) {
            if !self.ring_does(req.op) {
                if req.op == IoOp::Flush {
                    // A flush covers the writes before it: let the ring finish them.
                    if let Err(e) = self.wait_idle() {
                        self.complete(req.token, Err(errno_of(&e)));
                        result = Err(e);
                        continue;
                    }
                }
                let r = exec_sync(self.fd, &req);
                self.complete(req.token, r);
                continue;
            }
            let total = req.len;
            let Some((req, done)) = self.try_inline(req) else {
                continue;
            };
            let id = self.occupy(req, done, total);
            if let Err(e) = self.queue_sqe(id) {
                // The kernel refuses the ring: this request never reached
                // it, so it fails here rather than hang.
                if let Some(s) = self.release(id) {
                    self.complete(s.req.token, Err(errno_of(&e)));
                }
                result = Err(e);
            }
        }
        self.queued = queued;
        self.requeue()?;
        if self.needs_enter() {
            self.enter(0)?;
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
        self.clear_evfd();
        self.drain_cq();
        self.requeue()?;
        while self.done.len() < min && self.in_ring > 0 {
            let want = (min - self.done.len()).min(self.in_ring);
            self.enter(want)?;
            self.drain_cq();
            self.requeue()?;
        }
        if self.needs_enter() {
            self.enter(0)?;
        }
        out.append(&mut self.done);
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.queued.len() + self.in_ring + self.done.len()
    }

    fn completion_fd(&self) -> Option<RawFd> {
        self.evfd
            .get_or_init(|| {
                // SAFETY: plain syscall; the new descriptor is owned below.
                let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
                if fd < 0 {
                    log::warn!(
                        "io_uring: cannot create an eventfd: {}",
                        io::Error::last_os_error()
                    );
                    return None;
                }
                // SAFETY: `fd` is a fresh descriptor nobody else owns.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                match self.ring.submitter().register_eventfd(fd.as_raw_fd()) {
                    Ok(()) => Some(fd),
                    Err(e) => {
                        log::warn!("io_uring: cannot register the completion eventfd: {e}");
                        None
                    }
                }
            })
            .as_ref()
            .map(|fd| fd.as_raw_fd())
    }

    fn name(&self) -> &'static str {
        "io_uring"
    }
}

impl Drop for UringEngine {
    fn drop(&mut self) {
        // The kernel may still write into guest memory for requests in the
        // ring: wait for them (the device core never drops an engine with
        // requests in flight, but a panic unwinding through it could).
        if self.in_ring > 0 {
            log::warn!(
                "io_uring engine dropped with {} requests in flight; waiting for them",
                self.in_ring
            );
            let mut out = Vec::new();
            let _ = self.reap(&mut out, usize::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{iov, one};

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

    #[test]
    fn write_read_flush_discard_zeroes_round_trip() {
        for inline in [false, true] {
            let (_d, p, mut e) = engine_with(1 << 16, inline);
            let mut w = vec![0x5au8; 8192];
            let mut r1 = vec![0u8; 512];
            let mut r2 = vec![0u8; 7680];
            assert_eq!(
                one(&mut e, IoOp::Write, 4096, 8192, &mut [&mut w]).result,
                Ok(8192)
            );
            assert_eq!(one(&mut e, IoOp::Flush, 0, 0, &mut []).result, Ok(0));
            assert_eq!(
                one(&mut e, IoOp::Read, 4096, 8192, &mut [&mut r1, &mut r2]).result,
                Ok(8192)
            );
            assert!(r1.iter().chain(r2.iter()).all(|&b| b == 0x5a));
            assert_eq!(
                one(&mut e, IoOp::WriteZeroes, 4096, 1024, &mut []).result,
                Ok(1024)
            );
            assert_eq!(
                one(&mut e, IoOp::Discard, 8192, 4096, &mut []).result,
                Ok(4096)
            );
            let d = std::fs::read(&p).unwrap();
            assert_eq!(d.len(), 1 << 16, "KEEP_SIZE");
            assert!(d[4096..5120].iter().all(|&b| b == 0), "zeroed");
            assert!(d[5120..8192].iter().all(|&b| b == 0x5a), "untouched");
            assert!(
                d[8192..12288].iter().all(|&b| b == 0),
                "punched hole reads zeroes"
            );
            assert_eq!(e.in_flight(), 0);
            if inline {
                assert!(e.inline_done >= 2, "the page-cache path was not taken");
            }
        }
    }

    #[test]
    fn a_batch_of_64_mixed_requests_larger_than_the_ring() {
        let (_d, p, mut e) = engine(1 << 20);
        // Even slots write a pattern, odd slots read what an earlier
        // (separate) batch wrote, plus a flush, a discard and write-zeroes.
        let mut seed: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8 + 100; 4096]).collect();
        for (i, b) in seed.iter_mut().enumerate() {
            push(
                &mut e,
                IoOp::Write,
                (64 + i as u64) * 4096,
                4096,
                &mut [b],
                i as u64,
            );
        }
        e.submit().unwrap();
        let mut out = vec![];
        e.reap(&mut out, 64).unwrap();
        assert!(out.iter().all(|c| c.result == Ok(4096)), "{out:?}");

        let mut bufs: Vec<Vec<u8>> = (0..61).map(|i| vec![i as u8 + 1; 4096]).collect();
        for (i, b) in bufs.iter_mut().enumerate() {
            if i % 2 == 0 {
                push(
                    &mut e,
                    IoOp::Write,
                    i as u64 * 4096,
                    4096,
                    &mut [b],
                    i as u64,
                );
            } else {
                push(
                    &mut e,
                    IoOp::Read,
                    (64 + i as u64) * 4096,
                    4096,
                    &mut [b],
                    i as u64,
                );
            }
        }
        push(&mut e, IoOp::Flush, 0, 0, &mut [], 61);
        push(&mut e, IoOp::Discard, 200 * 4096, 8192, &mut [], 62);
        push(&mut e, IoOp::WriteZeroes, 100 * 4096, 4096, &mut [], 63);
        assert_eq!(e.in_flight(), 64);
        e.submit().unwrap();
        out.clear();
        e.reap(&mut out, 64).unwrap();
        assert_eq!(out.len(), 64);
        assert_eq!(e.in_flight(), 0);
        out.sort_by_key(|c| c.token);
        for (i, c) in out.iter().enumerate() {
            assert_eq!(c.token, i as u64, "every request exactly once");
            let want = match i {
                61 => 0,
                62 => 8192,
                _ => 4096,
            };
            assert_eq!(c.result, Ok(want), "request {i}");
        }
        let data = std::fs::read(&p).unwrap();
        for (i, b) in bufs.iter().enumerate() {
            if i % 2 == 0 {
                assert!(data[i * 4096..(i + 1) * 4096]
                    .iter()
                    .all(|&x| x == i as u8 + 1));
            } else {
                assert!(b.iter().all(|&x| x == i as u8 + 100), "read {i}");
            }
        }
        assert!(data[100 * 4096..101 * 4096].iter().all(|&x| x == 0));
    }

    #[test]
    fn eof_read_is_an_error_and_a_straddling_read_is_resubmitted() {
        let (_d, _p, mut e) = engine(8192);
        let mut a = vec![0u8; 4096];
        let mut b = vec![0u8; 4096];
        push(&mut e, IoOp::Read, 8192, 4096, &mut [&mut a], 1);
        // Short (2 KiB), then the rest is resubmitted and hits EOF.
        push(&mut e, IoOp::Read, 6144, 4096, &mut [&mut b], 2);
        e.submit().unwrap();
        let mut out = vec![];
        e.reap(&mut out, 2).unwrap();
        out.sort_by_key(|c| c.token);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].result, Err(libc::EIO), "read at EOF");
        assert_eq!(out[1].result, Err(libc::EIO), "read straddling EOF");
        assert!(e.resubmitted >= 1, "the remainder went back to the ring");
        assert_eq!(e.in_flight(), 0);
    }

    #[test]
    fn eof_read_inline_is_an_error() {
        let (_d, _p, mut e) = engine_with(8192, true);
        let mut a = vec![0u8; 4096];
        assert_eq!(
            one(&mut e, IoOp::Read, 8192, 4096, &mut [&mut a]).result,
            Err(libc::EIO)
        );
        assert_eq!(
            one(&mut e, IoOp::Read, 6144, 4096, &mut [&mut a]).result,
            Err(libc::EIO)
        );
    }

    #[test]
    fn short_transfer_continues_with_the_right_total() {
        // `advance` is what a short transfer resubmits: check it across
        // iovec boundaries.
        let mut a = vec![0u8; 1000];
        let mut b = vec![0u8; 3096];
        let req = IoRequest {
            op: IoOp::Read,
            offset: 10_000,
            len: 4096,
            iovecs: vec![iov(&mut a), iov(&mut b)],
            token: 9,
        };
        let r = advance(&req, 1500);
        assert_eq!(r.offset, 11_500);
        assert_eq!(r.len, 2596);
        assert_eq!(r.iovecs.len(), 1);
        assert_eq!(r.iovecs[0].iov_len, 2596);
        assert_eq!(r.iovecs[0].iov_base as usize, b.as_ptr() as usize + 500);
        let r = advance(&req, 1000);
        assert_eq!((r.offset, r.len, r.iovecs.len()), (11_000, 3096, 1));
    }

    #[test]
    fn o_direct_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("direct.img");
        std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
        use std::os::unix::fs::OpenOptionsExt;
        let f = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&p)
        {
            Ok(f) => f,
            Err(e) => {
                eprintln!(
                    "O_DIRECT not supported on {}: {e}; skipped",
                    dir.path().display()
                );
                return;
            }
        };
        let mut e = UringEngine::new(Arc::new(f), 8, false).unwrap();
        let mut w = Aligned::new(8192, 0xc3);
        let mut r = Aligned::new(8192, 0);
        // 512-aligned like guest buffers: two iovecs of 512 and 7680 bytes.
        let (w1, w2) = w.buf().split_at_mut(512);
        let res = one(&mut e, IoOp::Write, 512 * 9, 8192, &mut [w1, w2]).result;
        assert_eq!(res, Ok(8192));
        assert_eq!(one(&mut e, IoOp::Flush, 0, 0, &mut []).result, Ok(0));
        let res = one(&mut e, IoOp::Read, 512 * 9, 8192, &mut [r.buf()]).result;
        assert_eq!(res, Ok(8192));
        assert!(r.buf().iter().all(|&b| b == 0xc3));
        // Misaligned O_DIRECT is an error, reported, not lost.
        let mut odd = vec![0u8; 100];
        let res = one(&mut e, IoOp::Read, 3, 100, &mut [&mut odd]).result;
        assert_eq!(res, Err(libc::EINVAL));
        assert_eq!(e.inline_done, 0, "O_DIRECT always goes through the ring");
        let d = std::fs::read(&p).unwrap();
        assert!(d[4608..4608 + 8192].iter().all(|&b| b == 0xc3));
    }

    #[test]
    fn completion_eventfd_signals() {
        let (_d, _p, mut e) = engine(1 << 16);
        let fd = e.completion_fd().expect("eventfd");
        assert_eq!(e.completion_fd(), Some(fd), "one eventfd per engine");
        let mut buf = vec![1u8; 4096];
        push(&mut e, IoOp::Write, 0, 4096, &mut [&mut buf], 7);
        e.submit().unwrap();
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
        assert_eq!(n, 1, "eventfd readable after the completion");
        let mut out = vec![];
        e.reap(&mut out, 0).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].result, Ok(4096));
        // Reaping cleared it.
        pfd.revents = 0;
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0);
    }

    #[test]
    fn completion_eventfd_signals_inline_completions_too() {
        let (_d, _p, mut e) = engine_with(1 << 16, true);
        let fd = e.completion_fd().expect("eventfd");
        let mut buf = vec![1u8; 4096];
        push(&mut e, IoOp::Read, 0, 4096, &mut [&mut buf], 7);
        e.submit().unwrap();
        assert_eq!(e.inline_done, 1, "a page-cache hit completes inline");
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 1);
        let mut out = vec![];
        e.reap(&mut out, 0).unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn nothing_to_submit_is_fine() {
        let (_d, _p, mut e) = engine(4096);
        e.submit().unwrap();
        let mut out = vec![];
        e.reap(&mut out, 1).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn drop_with_nothing_in_flight() {
        let (_d, _p, mut e) = engine(4096);
        let mut b = vec![0u8; 4096];
        assert_eq!(
            one(&mut e, IoOp::Read, 0, 4096, &mut [&mut b]).result,
            Ok(4096)
        );
        assert_eq!(e.in_flight(), 0);
        drop(e);
    }

    #[test]
    fn drop_waits_for_requests_in_flight() {
        let (_d, _p, mut e) = engine(1 << 16);
        let mut b = vec![0u8; 1 << 16];
        push(&mut e, IoOp::Read, 0, 1 << 16, &mut [&mut b], 1);
        e.submit().unwrap();
        drop(e);
        drop(b);
    }
}
