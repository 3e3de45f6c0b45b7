//! Ring setup: the ring with the image registered and the opcode allowlist
//! applied (falling back to a plain ring), the opcode probe, and the
//! completion eventfd registered from the start.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use io_uring::{opcode, register::Restriction, squeue, IoUring, Probe};

use super::{Inline, UringEngine};
use crate::sync_io::{probe_block_sizes, Direct, SyncFile};

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
}

fn probe_ok(probe: &Probe, code: u8) -> bool {
    // An empty probe (registration failed on an old kernel) says nothing.
    probe.is_supported(code) || !probe.is_supported(opcode::Nop::CODE)
}
