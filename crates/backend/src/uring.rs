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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{opcode, register::Restriction, squeue, types, IoUring, Probe};

use crate::sync_io::{
    advance, copy_from_iovecs, copy_to_iovecs, exec_sync, probe_block_sizes, Direct, SyncFile,
    BOUNCE_WINDOW,
};
use crate::{AlignedBuf, IoCompletion, IoEngine, IoOp, IoRequest};

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

/// "IORING_OP_READV ... iovecs ... UIO_MAXIOV": `readv`/`writev` fail with
/// `EINVAL` above this many iovecs.
const IOV_MAX: usize = libc::UIO_MAXIOV as usize;

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

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// A ring with the image registered and the opcode allowlist applied (when
/// `restrict`); the caller falls back to `restrict = false` on error.
fn build_ring(entries: u32, fd: RawFd, restrict: bool) -> io::Result<(IoUring, Option<u32>)> {
    let mut b = IoUring::builder();
    b.setup_cqsize(entries.saturating_mul(2).max(2));
    if restrict {
        // io_uring_register(2): "IORING_REGISTER_RESTRICTIONS ... can be
        // registered only if the io_uring ring started in a disabled state
        // (IORING_SETUP_R_DISABLED must be specified in the call to
        // io_uring_setup(2))."
        b.setup_r_disabled();
    }
    let ring = b.build(entries.max(1))?;
    let fixed = match ring.submitter().register_files(&[fd]) {
        Ok(()) => Some(0),
        Err(e) => {
            log::debug!("io_uring: cannot register the image file ({e}); plain descriptors");
            None
        }
    };
    if restrict {
        let mut flags = squeue::Flags::IO_DRAIN.bits();
        if fixed.is_some() {
            flags |= squeue::Flags::FIXED_FILE.bits();
        }
        let mut allow = [
            Restriction::sqe_op(opcode::Readv::CODE),
            Restriction::sqe_op(opcode::Writev::CODE),
            Restriction::sqe_op(opcode::Fsync::CODE),
            Restriction::sqe_op(opcode::Fallocate::CODE),
            Restriction::sqe_op(opcode::AsyncCancel::CODE),
            Restriction::sqe_op(opcode::Nop::CODE),
            Restriction::sqe_flags_allowed(flags),
        ];
        // No register opcode is allowed once enabled: everything the engine
        // registers (file, eventfd, probe) happens before.
        ring.submitter().register_restrictions(&mut allow)?;
    }
    Ok((ring, fixed))
}

impl UringEngine {
    /// A ring of `entries` submission slots on `file` (buffered, or
    /// `O_DIRECT` — detected, with the alignment probed). Fails where
    /// io_uring is not available (old kernel, seccomp,
    /// `kernel.io_uring_disabled`, container policy); the caller then uses
    /// the synchronous engine.
    ///
    /// `inline_nowait`: for buffered files, try reads and writes inline with
    /// `RWF_NOWAIT` before queueing them (never for `O_DIRECT`, where a
    /// "non-blocking" direct read still waits for the device).
    pub fn new(file: Arc<File>, entries: u32, inline_nowait: bool) -> io::Result<Self> {
        let fd = file.as_raw_fd();
        // SAFETY: plain fcntl on a descriptor we hold open.
        let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        let direct = fl >= 0 && fl & libc::O_DIRECT != 0;
        let block_device = file
            .metadata()
            .map(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
            .unwrap_or(false);
        let bs = probe_block_sizes(fd, block_device, direct);
        let sync = SyncFile {
            fd,
            direct: direct.then(|| Direct::new(bs.dio_mem_align, bs.dio_offset_align)),
            rmw: Default::default(),
        };
        Self::with_sync(file, sync, entries, inline_nowait)
    }

    /// Like [`UringEngine::new`], sharing the backend's synchronous-I/O
    /// settings (alignment, read-modify-write lock).
    pub(crate) fn with_sync(
        file: Arc<File>,
        sync: SyncFile,
        entries: u32,
        inline_nowait: bool,
    ) -> io::Result<Self> {
        let fd = file.as_raw_fd();
        let (ring, fixed, restricted) = match build_ring(entries, fd, true) {
            Ok((r, f)) => (r, f, true),
            Err(e) => {
                log::debug!("io_uring: no opcode restrictions ({e}); unrestricted ring");
                let (r, f) = build_ring(entries, fd, false)?;
                (r, f, false)
            }
        };
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
        // The completion eventfd exists from the start, so no CQE can be
        // posted before a worker can wait for it.
        // SAFETY: plain syscall; the new descriptor is owned below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let evfd = unsafe { OwnedFd::from_raw_fd(raw) };
        ring.submitter().register_eventfd(evfd.as_raw_fd())?;
        if restricted {
            ring.submitter().register_enable_rings()?;
        }
        let mode = if inline_nowait && sync.direct.is_none() {
            Inline::Nowait
        } else {
            Inline::Ring
        };
        log::debug!(
            "io_uring engine: {} SQ entries, {} CQ entries, inline page-cache I/O {}, fsync {}, \
             fallocate {}, registered file {}, opcode allowlist {}, O_DIRECT {:?}",
            ring.params().sq_entries(),
            ring.params().cq_entries(),
            if mode == Inline::Nowait { "on" } else { "off" },
            if ring_fsync {
                "in the ring"
            } else {
                "synchronous"
            },
            if ring_fallocate {
                "in the ring"
            } else {
                "synchronous"
            },
            fixed.is_some(),
            restricted,
            sync.direct,
        );
        Ok(UringEngine {
            file,
            sync,
            fixed,
            ring,
            slots: Vec::new(),
            free: Vec::new(),
            in_ring: 0,
            queued: VecDeque::new(),
            again: Vec::new(),
            done: Vec::new(),
            inline: [mode; 2],
            ring_fsync,
            ring_fallocate,
            zero_range_unsupported: false,
            evfd,
            restricted,
            inline_done: 0,
            resubmitted: 0,
            bounced: 0,
            partial_inline: 0,
        })
    }

    /// The file this engine reads and writes.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Whether the image is a registered file and the opcode allowlist is
    /// in force: `(registered, restricted)`.
    pub fn hardening(&self) -> (bool, bool) {
        (self.fixed.is_some(), self.restricted)
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
            // A write with force unit access would block in the syscall:
            // straight to the ring (RWF_DSYNC there).
            IoOp::Write if !req.fua => 1,
            _ => return Some((req, 0)),
        };
        match self.inline[dir] {
            Inline::Ring => return Some((req, 0)),
            Inline::Sync => {
                let result = exec_sync(&self.sync, &req);
                self.inline_done += 1;
                self.complete(req.token, result);
                return None;
            }
            Inline::Nowait => {}
        }
        let Ok(off) = libc::off_t::try_from(req.offset) else {
            return Some((req, 0));
        };
        // At most IOV_MAX iovecs here (see `route`), so the count fits.
        let cnt = req.iovecs.len() as libc::c_int;
        // preadv2(2): "RWF_NOWAIT: Do not wait for data which is not
        // immediately available. If this flag is specified, the preadv2()
        // system call will return instantly if it would have to read data
        // from the backing storage or wait for a lock. If some data was
        // successfully read, it will return the number of bytes read. If no
        // bytes were read, it will return -1 and set errno to EAGAIN".
        // SAFETY: the iovecs describe memory that stays valid until the
        // request completes (IoEngine::push contract); the count matches.
        let r = unsafe {
            if dir == 0 {
                libc::preadv2(
                    self.sync.fd,
                    req.iovecs.as_ptr(),
                    cnt,
                    off,
                    libc::RWF_NOWAIT,
                )
            } else {
                libc::pwritev2(
                    self.sync.fd,
                    req.iovecs.as_ptr(),
                    cnt,
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
        if n >= req.len {
            self.inline_done += 1;
            self.complete(req.token, Ok(req.len));
            return None;
        }
        if n == 0 && dir == 0 {
            // End of file.
            self.complete(req.token, Err(libc::EIO));
            return None;
        }
        // Partial (some pages cached, some not): the rest goes through the
        // ring; the slot remembers the `n` bytes already done, so the
        // completion reports the full length.
        self.partial_inline += 1;
        Some((advance(&req, n), n))
    }

    /// How a read or write travels (see the module documentation).
    fn route(&self, req: &IoRequest) -> Route {
        let many = req.iovecs.len() > IOV_MAX;
        let (misaligned, ends_aligned) = match self.sync.direct {
            Some(d) => (
                !d.fits(req),
                req.offset.is_multiple_of(d.off) && req.len.is_multiple_of(d.off),
            ),
            None => (false, true),
        };
        if !many && !misaligned {
            Route::Ring
        } else if ends_aligned && req.len <= BOUNCE_WINDOW {
            Route::Bounce
        } else {
            Route::Sync
        }
    }

    fn sqe(&self, req: &IoRequest, id: usize) -> squeue::Entry {
        macro_rules! build {
            ($fd:expr) => {{
                let fd = $fd;
                match req.op {
                    IoOp::Read => {
                        opcode::Readv::new(fd, req.iovecs.as_ptr(), req.iovecs.len() as u32)
                            .offset(req.offset)
                            .build()
                    }
                    // pwritev2(2): "RWF_DSYNC: Provide a per-write equivalent
                    // of the O_DSYNC open(2) flag": force unit access.
                    IoOp::Write => {
                        opcode::Writev::new(fd, req.iovecs.as_ptr(), req.iovecs.len() as u32)
                            .offset(req.offset)
                            .rw_flags(if req.fua { libc::RWF_DSYNC } else { 0 })
                            .build()
                    }
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
                }
            }};
        }
        let e = match self.fixed {
            Some(i) => build!(types::Fixed(i)),
            None => build!(types::Fd(self.sync.fd)),
        };
        e.user_data(id as u64)
    }

    /// Whether `op` goes through the ring at all (else: synchronous).
    fn ring_does(&self, op: IoOp, fua: bool) -> bool {
        match op {
            IoOp::Read | IoOp::Write => true,
            IoOp::Flush => self.ring_fsync,
            IoOp::Discard => self.ring_fallocate,
            // fallocate has no per-call sync flag: a write-zeroes with force
            // unit access runs synchronously (fallocate, then fdatasync).
            IoOp::WriteZeroes => self.ring_fallocate && !self.zero_range_unsupported && !fua,
        }
    }

    /// Take ownership of a request for the ring; returns its slot (not yet
    /// in the kernel: the caller queues its SQE or puts it in `again`).
    fn occupy(&mut self, req: IoRequest, done: u64, total: u64, bounce: Option<Bounce>) -> usize {
        let slot = Slot {
            req,
            done,
            total,
            retries: 0,
            bounce,
            cancelled: false,
            in_kernel: false,
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
    /// kernel first if it is full. On error the SQE is not on the ring and
    /// the caller keeps the slot in `again`.
    fn queue_sqe(&mut self, id: usize) -> io::Result<()> {
        let e = match self.slots.get(id).and_then(Option::as_ref) {
            Some(slot) => self.sqe(&slot.req, id),
            None => return Ok(()),
        };
        loop {
            // SAFETY: the entry's buffers (the iovec array owned by the slot,
            // any bounce buffer it owns, and the guest memory behind them per
            // the IoEngine::push contract) outlive the operation: the slot is
            // released only when its final CQE has been reaped.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                if let Some(Some(s)) = self.slots.get_mut(id) {
                    s.in_kernel = true;
                }
                return Ok(());
            }
            // Submission ring full: hand what we have to the kernel and make
            // room in the completion ring, then retry the push. Never
            // "counted but not pushed".
            self.enter(0)?;
            self.drain_cq();
        }
    }

    /// `io_uring_enter`: submit what is on the submission ring and wait for
    /// `want` completions. Transient failures are retried.
    fn enter(&mut self, want: usize) -> io::Result<()> {
        let mut busy = 0u32;
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
                // io_uring_enter(2): "EBUSY: If the IORING_FEAT_NODROP feature
                // flag is set, then EBUSY will be returned if there were
                // overflow entries ... EAGAIN: The kernel was unable to
                // allocate memory for the request". Make room and retry.
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        || e.raw_os_error() == Some(libc::EAGAIN) =>
                {
                    self.drain_cq();
                    if want > 0 && !self.done.is_empty() {
                        return Ok(());
                    }
                    busy += 1;
                    if busy >= MAX_ENTER_RETRIES {
                        return Err(e);
                    }
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Like `enter(want)` but waiting at most `timeout`.
    fn enter_timeout(&mut self, want: usize, timeout: Duration) -> io::Result<()> {
        if self.ring.params().is_feature_ext_arg() {
            let ts = types::Timespec::from(timeout);
            let args = types::SubmitArgs::new().timespec(&ts);
            return match self.ring.submitter().submit_with_args(want, &args) {
                Ok(_) => Ok(()),
                Err(e) => match e.raw_os_error() {
                    Some(libc::ETIME) | Some(libc::EINTR) => Ok(()),
                    Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                        self.drain_cq();
                        Ok(())
                    }
                    _ => Err(e),
                },
            };
        }
        // Before 5.11: submit, then poll the ring descriptor (readable when
        // the completion ring is not empty).
        self.enter(0)?;
        let mut pfd = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd, alive for the call.
        if unsafe { libc::poll(&mut pfd, 1, ms) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether an `io_uring_enter` without waiting has anything to do.
    fn needs_enter(&mut self) -> bool {
        let sq = self.ring.submission();
        !sq.is_empty() || sq.cq_overflow() || sq.taskrun()
    }

    /// Put the remainders of short or retried transfers (and pushes refused
    /// earlier) back on the ring. On error the slots not queued stay in
    /// `again`.
    fn requeue(&mut self) -> io::Result<()> {
        while let Some(id) = self.again.pop() {
            if let Err(e) = self.queue_sqe(id) {
                self.again.push(id);
                return Err(e);
            }
            self.resubmitted += 1;
        }
        Ok(())
    }

    /// Finish a CQE: errors as errno, short transfers continued, bounced
    /// reads copied out.
    fn finish(&mut self, id: usize, res: i32) {
        let Some(slot) = self.slots.get_mut(id).and_then(|s| s.as_mut()) else {
            log::warn!("io_uring: completion for unknown request {id}");
            return;
        };
        slot.in_kernel = false;
        let op = slot.req.op;
        if res < 0 {
            let errno = -res;
            if (errno == libc::EAGAIN || errno == libc::EINTR)
                && slot.retries < MAX_RETRIES
                && !slot.cancelled
            {
                slot.retries += 1;
                self.again.push(id);
                return;
            }
            let Some(slot) = self.release(id) else { return };
            let result = match op {
                // Discard is advisory.
                IoOp::Discard if !slot.cancelled => Ok(slot.total),
                // File systems without ZERO_RANGE: write zeroes by hand.
                IoOp::WriteZeroes
                    if !slot.cancelled && (errno == libc::EOPNOTSUPP || errno == libc::EINVAL) =>
                {
                    self.zero_range_unsupported = true;
                    exec_sync(&self.sync, &slot.req)
                }
                _ => Err(errno),
            };
            self.complete(slot.req.token, result);
            return;
        }
        let n = res as u64;
        match op {
            IoOp::Read | IoOp::Write if n < slot.req.len && n > 0 => {
                if slot.cancelled {
                    if let Some(slot) = self.release(id) {
                        self.complete(slot.req.token, Err(libc::ECANCELED));
                    }
                    return;
                }
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
                    if let (IoOp::Read, Some(b)) = (op, &slot.bounce) {
                        // SAFETY: the guest iovecs are writable memory that
                        // stays valid until this completion is reaped (push
                        // contract); the kernel is done with the bounce buffer.
                        unsafe { copy_to_iovecs(&b.guest, 0, b.buf.as_slice()) };
                    }
                    Ok(slot.total)
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
            for &(ud, res) in &batch[..n] {
                if ud & CANCEL_TAG != 0 {
                    // The outcome of an IORING_OP_ASYNC_CANCEL: the request
                    // it aimed at reports its own CQE (-ECANCELED or its
                    // real result); ENOENT/EALREADY just mean "too late".
                    log::debug!("io_uring: cancel of {} -> {res}", ud & !CANCEL_TAG);
                    continue;
                }
                match usize::try_from(ud) {
                    Ok(id) => self.finish(id, res),
                    Err(_) => log::warn!("io_uring: completion with bad user_data {ud}"),
                }
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

    /// Make the completion eventfd readable.
    fn signal_evfd(&self) {
        let v = 1u64;
        // SAFETY: writes 8 bytes from `v` to an eventfd we own.
        unsafe {
            libc::write(
                self.evfd.as_raw_fd(),
                &v as *const u64 as *const libc::c_void,
                8,
            )
        };
    }

    /// Clear the completion eventfd (before looking at the completion ring,
    /// so a CQE posted afterwards signals it again).
    fn clear_evfd(&self) {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into `v` from a non-blocking eventfd we own.
        unsafe {
            libc::read(
                self.evfd.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }

    /// Start one pushed request: complete it inline or synchronously, or put
    /// it in a slot on the ring. On error the request is not lost: it is
    /// back at the front of `queued`, or its slot is in `again`.
    fn start(&mut self, req: IoRequest) -> io::Result<()> {
        let id = match req.op {
            IoOp::Read | IoOp::Write => {
                let total = req.len;
                match self.route(&req) {
                    Route::Sync => {
                        self.bounced += 1;
                        let r = exec_sync(&self.sync, &req);
                        self.complete(req.token, r);
                        return Ok(());
                    }
                    Route::Bounce => {
                        let align = self.sync.direct.map_or(4096, |d| d.mem.max(d.off));
                        let len = usize::try_from(total).unwrap_or(usize::MAX);
                        let align = usize::try_from(align).unwrap_or(4096);
                        let Some(mut buf) = AlignedBuf::new(len, align) else {
                            self.complete(req.token, Err(libc::ENOMEM));
                            return Ok(());
                        };
                        if req.op == IoOp::Write {
                            // SAFETY: the guest iovecs are readable memory
                            // (push contract).
                            unsafe { copy_from_iovecs(&req.iovecs, 0, buf.as_mut_slice()) };
                        }
                        self.bounced += 1;
                        let ring_req = IoRequest {
                            op: req.op,
                            offset: req.offset,
                            len: total,
                            iovecs: vec![buf.iovec()],
                            token: req.token,
                            fua: req.fua,
                        };
                        let bounce = Bounce {
                            buf,
                            guest: req.iovecs,
                        };
                        self.occupy(ring_req, 0, total, Some(bounce))
                    }
                    Route::Ring => {
                        let Some((req, done)) = self.try_inline(req) else {
                            return Ok(());
                        };
                        self.occupy(req, done, total, None)
                    }
                }
            }
            op if !self.ring_does(op, req.fua) => {
                if op == IoOp::Flush {
                    // A flush covers the writes before it: let the ring finish them.
                    if let Err(e) = self.wait_idle() {
                        self.queued.push_front(req);
                        return Err(e);
                    }
                }
                let r = exec_sync(&self.sync, &req);
                self.complete(req.token, r);
                return Ok(());
            }
            _ => {
                let total = req.len;
                self.occupy(req, 0, total, None)
            }
        };
        if let Err(e) = self.queue_sqe(id) {
            self.again.push(id);
            return Err(e);
        }
        Ok(())
    }

    /// Harvest into `done`; wait (until `deadline`, if any) for `min`.
    fn reap_inner(&mut self, min: usize, deadline: Option<Instant>) -> io::Result<()> {
        self.drain_cq();
        self.requeue()?;
        while self.done.len() < min && self.in_ring > 0 {
            let want = (min - self.done.len()).min(self.in_ring);
            match deadline {
                None => self.enter(want)?,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break;
                    }
                    self.enter_timeout(want, d - now)?;
                }
            }
            self.drain_cq();
            self.requeue()?;
        }
        if self.needs_enter() {
            self.enter(0)?;
            self.drain_cq();
        }
        Ok(())
    }

    fn reap_with(
        &mut self,
        out: &mut Vec<IoCompletion>,
        min: usize,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        self.clear_evfd();
        if let Err(e) = self.reap_inner(min, deadline) {
            // Keep what was harvested for the next call, and make sure the
            // worker comes back for it.
            if !self.done.is_empty() {
                self.signal_evfd();
            }
            return Err(e);
        }
        out.append(&mut self.done);
        Ok(())
    }
}

fn probe_ok(probe: &Probe, code: u8) -> bool {
    // An empty probe (registration failed on an old kernel) says nothing.
    probe.is_supported(code) || !probe.is_supported(opcode::Nop::CODE)
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
        // Never reached the kernel: complete them here.
        while let Some(req) = self.queued.pop_front() {
            self.complete(req.token, Err(libc::ECANCELED));
        }
        for id in std::mem::take(&mut self.again) {
            if let Some(s) = self.release(id) {
                self.complete(s.req.token, Err(libc::ECANCELED));
            }
        }
        // In the kernel: ask it to abandon them; they report their own CQE.
        let ids: Vec<usize> = self
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = s.as_mut()?;
                s.cancelled = true;
                s.in_kernel.then_some(i)
            })
            .collect();
        for id in ids {
            let e = opcode::AsyncCancel::new(id as u64)
                .build()
                .user_data(CANCEL_TAG | id as u64);
            loop {
                // SAFETY: an ASYNC_CANCEL SQE refers to no memory.
                if unsafe { self.ring.submission().push(&e) }.is_ok() {
                    break;
                }
                if let Err(err) = self.enter(0) {
                    log::warn!("io_uring: cannot submit cancellations: {err}");
                    break;
                }
                self.drain_cq();
            }
        }
        if let Err(err) = self.enter(0) {
            log::warn!("io_uring: cannot submit cancellations: {err}");
        }
        if !self.done.is_empty() {
            self.signal_evfd();
        }
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

impl Drop for UringEngine {
    fn drop(&mut self) {
        // The kernel may still write into memory of requests in the ring:
        // cancel them and wait (the device core never drops an engine with
        // requests in flight, but a panic unwinding through it could).
        if self.in_ring > 0 {
            log::warn!(
                "io_uring engine dropped with {} requests in flight; cancelling and waiting for them",
                self.in_ring
            );
            self.cancel_all();
            let mut out = Vec::new();
            while self.in_ring > 0 {
                if self.reap(&mut out, usize::MAX).is_err() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
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
    fn o_direct_round_trip() {
        let dir = crate::testutil::real_fs_dir();
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
        // Misaligned O_DIRECT (odd offset, length and buffer) is bounced,
        // not refused.
        let mut odd = vec![0u8; 100];
        let res = one(&mut e, IoOp::Read, 4608 + 3, 100, &mut [&mut odd]).result;
        assert_eq!(res, Ok(100));
        assert!(odd.iter().all(|&b| b == 0xc3));
        assert_eq!(e.bounced, 1);
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

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    #[test]
    fn partly_cached_read_reports_the_full_length() {
        use std::os::unix::fs::FileExt;
        let (_d, p, mut e) = engine_with(1 << 20, true);
        let want = pattern(65536, 0x11);
        let f = e.file().clone();
        f.write_all_at(&want, 65536).unwrap();
        f.sync_data().unwrap();
        // The middle 16 KiB leave the page cache: RWF_NOWAIT reads the first
        // 24 KiB inline and stops; the ring must do the remaining 40 KiB.
        crate::testutil::partly_cache(&p, 65536);
        let mut got = vec![0u8; 65536];
        let c = one(&mut e, IoOp::Read, 65536, 65536, &mut [&mut got]);
        assert_eq!(c.result, Ok(65536), "the completion reports the whole read");
        assert!(got == want, "exact bytes");
        assert_eq!(
            e.partial_inline, 1,
            "the read was partly inline, partly in the ring"
        );

        // A write over a partly cached range, same expectations.
        let w = pattern(65536, 0x5c);
        let mut wb = w.clone();
        crate::testutil::partly_cache(&p, 65536);
        let c = one(&mut e, IoOp::Write, 65536, 65536, &mut [&mut wb]);
        assert_eq!(c.result, Ok(65536));
        let d = std::fs::read(&p).unwrap();
        assert!(d[65536..131072] == w[..]);
        assert_eq!(e.in_flight(), 0);
    }

    #[test]
    fn short_read_continues_where_it_stopped() {
        use std::os::unix::fs::FileExt;
        // The file ends 2 KiB into a 4 KiB read: the ring returns 2048. The
        // CQE waits in the completion ring while the file grows; reaping it
        // continues the read for the remaining 2 KiB, which now exist.
        let (_d, _p, mut e) = engine(8192);
        let f = e.file().clone();
        f.write_all_at(&pattern(8192, 1), 0).unwrap();
        let fd = e.completion_fd().unwrap();
        let mut buf = vec![0u8; 4096];
        push(&mut e, IoOp::Read, 6144, 4096, &mut [&mut buf], 5);
        e.submit().unwrap();
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(
            unsafe { libc::poll(&mut pfd, 1, 5000) },
            1,
            "the short CQE is posted"
        );
        let more = pattern(4096, 2);
        f.write_all_at(&more, 8192).unwrap();
        let mut out = vec![];
        e.reap(&mut out, 1).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].result,
            Ok(4096),
            "full length, not the 2048 of the first CQE"
        );
        assert_eq!(
            e.resubmitted, 1,
            "the remainder went through the ring again"
        );
        assert!(buf[..2048] == pattern(8192, 1)[6144..]);
        assert!(buf[2048..] == more[..2048]);
    }

    #[test]
    fn completion_fd_is_registered_from_creation() {
        // Asking for the fd only after the CQE was posted still works.
        let (_d, _p, mut e) = engine(1 << 16);
        let mut buf = vec![0u8; 4096];
        push(&mut e, IoOp::Read, 0, 4096, &mut [&mut buf], 1);
        e.submit().unwrap();
        let fd = e.completion_fd().expect("eventfd");
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1);
        let mut out = vec![];
        e.reap(&mut out, 1).unwrap();
        assert_eq!(out[0].result, Ok(4096));
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

    #[test]
    fn reap_timeout_bounds_the_wait_and_cancel_all_frees_a_stuck_read() {
        let (mut e, _w) = pipe_engine();
        let mut buf = vec![0u8; 512];
        push(&mut e, IoOp::Read, 0, 512, &mut [&mut buf], 77);
        // A second request pushed but never submitted.
        let mut buf2 = vec![0u8; 512];
        e.submit().unwrap();
        push(&mut e, IoOp::Read, 0, 512, &mut [&mut buf2], 78);
        let mut out = vec![];
        let t = Instant::now();
        e.reap_timeout(&mut out, 1, Duration::from_millis(100))
            .unwrap();
        let waited = t.elapsed();
        assert!(out.is_empty(), "nothing can complete: {out:?}");
        assert!(
            waited >= Duration::from_millis(90),
            "returned early: {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(5),
            "timeout ignored: {waited:?}"
        );
        assert_eq!(e.in_flight(), 2);
        e.cancel_all();
        e.reap_timeout(&mut out, 2, Duration::from_secs(5)).unwrap();
        out.sort_by_key(|c| c.token);
        assert_eq!(
            out,
            vec![
                IoCompletion {
                    token: 77,
                    result: Err(libc::ECANCELED)
                },
                IoCompletion {
                    token: 78,
                    result: Err(libc::ECANCELED)
                },
            ]
        );
        assert_eq!(e.in_flight(), 0);
    }

    #[test]
    fn drop_cancels_and_waits_for_a_stuck_read() {
        let (mut e, _w) = pipe_engine();
        let mut buf = vec![0u8; 512];
        push(&mut e, IoOp::Read, 0, 512, &mut [&mut buf], 1);
        e.submit().unwrap();
        // Without the cancellation this would wait forever.
        drop(e);
    }

    #[test]
    fn the_ring_refuses_opcodes_outside_the_allowlist() {
        let (_d, _p, mut e) = engine(4096);
        let (registered, restricted) = e.hardening();
        if !restricted {
            eprintln!("kernel refused IORING_REGISTER_RESTRICTIONS; skipped");
            return;
        }
        assert!(registered);
        // IORING_OP_OPENAT is not on the list.
        let sqe = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), c"/".as_ptr())
            .build()
            .user_data(CANCEL_TAG | 1);
        // SAFETY: the path is a static C string.
        unsafe { e.ring.submission().push(&sqe) }.unwrap();
        e.ring.submit_and_wait(1).unwrap();
        let c = e.ring.completion().next().expect("a CQE");
        assert_eq!(c.result(), -libc::EACCES);
        // The engine's own operations still work.
        let mut b = vec![0u8; 4096];
        assert_eq!(
            one(&mut e, IoOp::Read, 0, 4096, &mut [&mut b]).result,
            Ok(4096)
        );
        assert_eq!(one(&mut e, IoOp::Flush, 0, 0, &mut []).result, Ok(0));
    }

    #[test]
    fn more_iovecs_than_iov_max_round_trip() {
        // 2000 x 512 bytes fits one bounce buffer; 3000 x 512 is executed
        // synchronously. Both exceed the 1024 iovecs readv/writev accept.
        for inline in [false, true] {
            for count in [2000usize, 3000] {
                let (_d, p, mut e) = engine_with(4 << 20, inline);
                let len = count * 512;
                let want = pattern(len, 0x33);
                let mut w = want.clone();
                let mut chunks: Vec<&mut [u8]> = w.chunks_mut(512).collect();
                let c = one(&mut e, IoOp::Write, 4096, len as u64, &mut chunks);
                assert_eq!(c.result, Ok(len as u64), "write {count} iovecs");
                assert!(std::fs::read(&p).unwrap()[4096..4096 + len] == want[..]);
                let mut r = vec![0u8; len];
                let mut chunks: Vec<&mut [u8]> = r.chunks_mut(512).collect();
                let c = one(&mut e, IoOp::Read, 4096, len as u64, &mut chunks);
                assert_eq!(c.result, Ok(len as u64), "read {count} iovecs");
                assert!(r == want);
                assert_eq!(e.bounced, 2);
            }
        }
    }

    #[test]
    fn o_direct_bounces_unaligned_buffers_and_read_modify_writes_partial_blocks() {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        let dir = crate::testutil::real_fs_dir();
        let p = dir.path().join("rmw.img");
        let init = pattern(1 << 16, 0x77);
        std::fs::write(&p, &init).unwrap();
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&p)
        else {
            eprintln!("O_DIRECT unsupported here; skipped");
            return;
        };
        let f = Arc::new(f);
        // Stricter than this file system needs (still valid for O_DIRECT),
        // so 512-byte guest I/O must be read-modify-write.
        let sync = SyncFile {
            fd: f.as_raw_fd(),
            direct: Some(Direct::new(512, 4096)),
            rmw: Default::default(),
        };
        let mut e = UringEngine::with_sync(f.clone(), sync, 8, true).unwrap();
        let mut expect = init.clone();

        // Aligned offset and length, buffer 8 bytes off alignment: bounced
        // through the ring.
        let mut raw = Aligned::new(8192 + 8, 0);
        let buf = &mut raw.buf()[8..8 + 8192];
        buf.copy_from_slice(&pattern(8192, 0x01));
        assert_eq!(
            one(&mut e, IoOp::Write, 8192, 8192, &mut [buf]).result,
            Ok(8192)
        );
        expect[8192..16384].copy_from_slice(&pattern(8192, 0x01));
        // 512 bytes at 512 + 1024 bytes at 5120 in 3 iovecs: partial blocks.
        let mut a = vec![0xa1u8; 512];
        let mut b = vec![0xb2u8; 1000];
        let mut c = vec![0xc3u8; 24];
        assert_eq!(
            one(
                &mut e,
                IoOp::Write,
                512,
                1536,
                &mut [&mut a, &mut b, &mut c]
            )
            .result,
            Ok(1536)
        );
        expect[512..1024].fill(0xa1);
        expect[1024..2024].fill(0xb2);
        expect[2024..2048].fill(0xc3);
        // An odd offset and length read back through a misaligned buffer.
        let mut odd = vec![0u8; 3001];
        assert_eq!(
            one(&mut e, IoOp::Read, 333, 3001, &mut [&mut odd]).result,
            Ok(3001)
        );
        assert!(odd[..] == expect[333..3334]);
        let mut all = vec![0u8; 1 << 16];
        f.read_exact_at(&mut all, 0).unwrap_or_else(|_| {
            // O_DIRECT pread with a Vec may be refused: read buffered.
            all = std::fs::read(&p).unwrap();
        });
        assert!(all == expect, "neighbouring bytes preserved");
        assert!(e.bounced >= 3);
        // Write-zeroes fallback under O_DIRECT at an unaligned range.
        assert_eq!(
            exec_sync(
                &e.sync,
                &IoRequest {
                    op: IoOp::Write,
                    offset: 0,
                    len: 0,
                    iovecs: vec![],
                    token: 0,
                    fua: false,
                }
            ),
            Ok(0)
        );
        assert_eq!(
            crate::sync_io::write_zeroes_slow(&e.sync, 1536, 5000),
            Ok(5000)
        );
        expect[1536..6536].fill(0);
        assert!(
            std::fs::read(&p).unwrap() == expect,
            "zeroes written through O_DIRECT"
        );
    }
}
