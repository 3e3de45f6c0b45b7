//! The per-queue engine: each guest request becomes one or more NBD
//! commands on the queue's connection; the connection's reply thread
//! completes them into this engine's [`Sink`] and signals its eventfd.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vblk_backend::{IoCompletion, IoEngine, IoOp, IoRequest};

use crate::cmd::Cmd;
use crate::complete::{Parent, Sink};
use crate::conn::Conn;
use crate::handshake::ExportInfo;
use crate::iov::slice;
use crate::proto::*;

/// A page of zeroes, the payload of WRITE_ZEROES emulated with WRITE when
/// the server cannot do it.
static ZEROES: [u8; 64 << 10] = [0u8; 64 << 10];

/// Largest TRIM / WRITE_ZEROES range per command (the length is 32 bits).
const MAX_RANGE: u64 = 1 << 30;

/// One NBD command of a request: (cmd, flags, offset, len, iovecs).
type Piece = (u16, u16, u64, u32, Vec<libc::iovec>);

pub struct NbdEngine {
    conn: Arc<Conn>,
    sink: Arc<Sink>,
    pending: Vec<IoRequest>,
    in_flight: usize,
}

impl NbdEngine {
    pub fn new(conn: Arc<Conn>) -> io::Result<Self> {
        Ok(NbdEngine {
            conn,
            sink: Arc::new(Sink::new()?),
            pending: Vec::new(),
            in_flight: 0,
        })
    }

    fn info(&self) -> &ExportInfo {
        self.conn.info()
    }

    /// The NBD commands for one request.
    fn plan(&self, req: &IoRequest) -> Result<Vec<Piece>, i32> {
        let info = *self.info();
        let writes = matches!(req.op, IoOp::Write | IoOp::WriteZeroes | IoOp::Discard);
        if writes && info.has(TF_READ_ONLY) {
            return Err(libc::EROFS);
        }
        req.offset
            .checked_add(req.len)
            .filter(|&e| e <= info.size)
            .ok_or(libc::EIO)?;
        let mut out = Vec::new();
        let max = u64::from(info.max_payload());
        // "NBD_CMD_FLAG_FUA ... [only] if the export has NBD_FLAG_SEND_FUA"
        // (otherwise a FLUSH follows, see `Parent::flush_after`).
        let fua = if req.fua && info.has(TF_SEND_FUA) {
            CMD_FLAG_FUA
        } else {
            0
        };
        let mut pieces = |cmd: u16, flags: u16, step: u64, data: bool| -> Result<(), i32> {
            let mut done = 0u64;
            while done < req.len {
                let n = (req.len - done).min(step);
                let iov = if data {
                    slice(&req.iovecs, done, n).ok_or(libc::EINVAL)?
                } else {
                    Vec::new()
                };
                out.push((cmd, flags, req.offset + done, n as u32, iov));
                done += n;
            }
            Ok(())
        };
        match req.op {
            IoOp::Read => pieces(CMD_READ, 0, max, true)?,
            IoOp::Write => pieces(CMD_WRITE, fua, max, true)?,
            IoOp::Flush if info.has(TF_SEND_FLUSH) => out.push((CMD_FLUSH, 0, 0, 0, Vec::new())),
            // No FLUSH: the server says writes need none.
            IoOp::Flush => {}
            IoOp::Discard if info.has(TF_SEND_TRIM) => pieces(CMD_TRIM, 0, MAX_RANGE, false)?,
            // A discard is advice; without TRIM it does nothing.
            IoOp::Discard => {}
            // The request does not say whether the guest set UNMAP, so the
            // range stays allocated, as the file engines' FALLOC_FL_ZERO_RANGE
            // does: "NBD_CMD_FLAG_NO_HOLE ... the server MUST ensure that a
            // subsequent read ... [returns zeroes] ... without punching a hole".
            IoOp::WriteZeroes if info.has(TF_SEND_WRITE_ZEROES) => {
                pieces(CMD_WRITE_ZEROES, fua | CMD_FLAG_NO_HOLE, MAX_RANGE, false)?
            }
            IoOp::WriteZeroes => {
                let mut done = 0u64;
                while done < req.len {
                    let n = (req.len - done).min(max);
                    let mut iov = Vec::new();
                    let mut left = n;
                    while left > 0 {
                        let k = left.min(ZEROES.len() as u64);
                        iov.push(libc::iovec {
                            iov_base: ZEROES.as_ptr() as *mut libc::c_void,
                            iov_len: k as usize,
                        });
                        left -= k;
                    }
                    out.push((CMD_WRITE, fua, req.offset + done, n as u32, iov));
                    done += n;
                }
            }
        }
        Ok(out)
    }
}

impl IoEngine for NbdEngine {
    unsafe fn push(&mut self, req: IoRequest) {
        self.pending.push(req);
        self.in_flight += 1;
    }

    fn submit(&mut self) -> io::Result<()> {
        let reqs = std::mem::take(&mut self.pending);
        for req in reqs {
            let plan = self.plan(&req);
            let parts = plan.as_ref().map(|p| p.len()).unwrap_or(1);
            let parent = Parent::new(req.token, req.len, self.sink.clone(), parts);
            let info = self.info();
            if req.fua
                && matches!(req.op, IoOp::Write | IoOp::WriteZeroes)
                && !info.has(TF_SEND_FUA)
                && info.has(TF_SEND_FLUSH)
            {
                parent.flush_after();
            }
            match plan {
                Err(e) => parent.part_done(Err(e)),
                Ok(p) if p.is_empty() => parent.part_done(Ok(())),
                Ok(p) => {
                    for (cmd, flags, offset, len, iov) in p {
                        let c = Cmd::new(cmd, flags, offset, len, iov, parent.clone());
                        if let Err(c) = self.conn.inner.send(c) {
                            c.finish(Err(libc::EIO));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<IoCompletion>, min: usize) -> io::Result<()> {
        self.reap_until(out, min, None)
    }

    fn reap_timeout(
        &mut self,
        out: &mut Vec<IoCompletion>,
        min: usize,
        timeout: Duration,
    ) -> io::Result<()> {
        self.reap_until(out, min, Some(Instant::now() + timeout))
    }

    /// Requests not yet submitted complete with ECANCELED. Those on the
    /// wire finish normally (NBD has no cancel), bounded by the reply
    /// timeout and the reconnect timeout.
    fn cancel_all(&mut self) {
        for req in self.pending.drain(..) {
            Parent::new(req.token, req.len, self.sink.clone(), 1).part_done(Err(libc::ECANCELED));
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn completion_fd(&self) -> Option<RawFd> {
        Some(self.sink.fd())
    }

    fn name(&self) -> &'static str {
        "nbd"
    }
}

impl NbdEngine {
    /// Send what the reply thread leaves to this thread: commands of a
    /// lost connection, and the FLUSH of each FUA write whose data has
    /// been written (see `Parent::flush_after`).
    fn send_flushes(&self) {
        self.conn.inner.send_unsent();
        for p in self.sink.take_flush_wanted() {
            let c = Cmd::new(CMD_FLUSH, 0, 0, 0, Vec::new(), p);
            if let Err(c) = self.conn.inner.send(c) {
                c.finish(Err(libc::EIO));
            }
        }
    }

    fn reap_until(
        &mut self,
        out: &mut Vec<IoCompletion>,
        min: usize,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        let mut got = 0;
        loop {
            self.sink.clear();
            self.send_flushes();
            let n = self.sink.harvest(out);
            self.in_flight -= n.min(self.in_flight);
            got += n;
            if got >= min || self.in_flight == 0 {
                return Ok(());
            }
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(());
                    }
                    left.as_millis().clamp(1, i32::MAX as u128) as i32
                }
            };
            let mut p = libc::pollfd {
                fd: self.sink.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd on the stack.
            let r = unsafe { libc::poll(&mut p, 1, ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

impl Drop for NbdEngine {
    /// No access after completion, and none after the engine is gone
    /// either: wait until the connection thread has finished with every
    /// command of this engine (the reconnect timeout bounds this when the
    /// server is gone).
    fn drop(&mut self) {
        for req in self.pending.drain(..) {
            let _ = req;
        }
        let start = Instant::now();
        let mut warned = false;
        while self.sink.outstanding() > 0 {
            self.send_flushes();
            std::thread::sleep(Duration::from_millis(1));
            if !warned && start.elapsed() > Duration::from_secs(5) {
                log::warn!(
                    "nbd engine: waiting for {} request(s) before closing",
                    self.sink.outstanding()
                );
                warned = true;
            }
        }
    }
}
