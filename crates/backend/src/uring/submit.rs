//! Submission: a pushed request is routed (ring, bounce buffer or
//! synchronous), given a slot and its SQE put on the submission ring;
//! remainders of short or retried transfers go back on the ring.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{Bounce, Route, Slot, UringEngine};
use crate::sync_io::{copy_from_iovecs, exec_sync, BOUNCE_WINDOW};
use crate::IOV_MAX;
use crate::{AlignedBuf, IoOp, IoRequest};

impl UringEngine {
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

    pub(super) fn release(&mut self, id: usize) -> Option<Slot> {
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

    /// Put the remainders of short or retried transfers (and pushes refused
    /// earlier) back on the ring. On error the slots not queued stay in
    /// `again`.
    pub(super) fn requeue(&mut self) -> io::Result<()> {
        while let Some(id) = self.again.pop() {
            if let Err(e) = self.queue_sqe(id) {
                self.again.push(id);
                return Err(e);
            }
            self.resubmitted += 1;
        }
        Ok(())
    }

    /// Start one pushed request: complete it inline or synchronously, or put
    /// it in a slot on the ring. On error the request is not lost: it is
    /// back at the front of `queued`, or its slot is in `again`.
    pub(super) fn start(&mut self, req: IoRequest) -> io::Result<()> {
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
}
