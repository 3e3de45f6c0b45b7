//! The reply side of a connection: read each reply, match its cookie to a
//! command in flight, and check every length and offset against that
//! command before a byte reaches guest memory. Anything that does not fit
//! is a protocol error: the connection is dropped (and re-established by
//! the caller); the command is kept to be sent again.

use std::io;
use std::os::fd::RawFd;

use crate::cmd::Cmd;
use crate::conn::Inner;
use crate::iov::{read_exact, readv_all, slice, zero};
use crate::proto::*;

fn broken(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Read replies until the connection fails; returns why.
pub fn serve(inner: &Inner, fd: RawFd) -> io::Error {
    loop {
        match one_reply(inner, fd) {
            Err(e) => return e,
            // A whole, valid answer ends an outage (a valid first chunk
            // followed by garbage does not).
            Ok(true) => inner.healthy(),
            Ok(false) => {}
        }
    }
}

/// Ok(true) when a command got its whole answer.
fn one_reply(inner: &Inner, fd: RawFd) -> io::Result<bool> {
    let mut magic = [0u8; 4];
    loop {
        // The socket has a receive timeout: idle is fine, but a server
        // that leaves a command unanswered (or a reply half sent) that
        // long is treated as gone, so nothing waits forever.
        match read_exact(fd, &mut magic) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && inner.idle() => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply in time"))
            }
            r => break r?,
        }
    }
    match reply_kind(u32::from_be_bytes(magic)) {
        Some(ReplyKind::Simple) => {
            let mut rest = [0u8; 12];
            read_exact(fd, &mut rest)?;
            let r = decode_simple(&rest);
            let cmd = inner.take(r.cookie).ok_or_else(|| {
                broken(format!("simple reply for unknown cookie {:#x}", r.cookie))
            })?;
            simple(inner, fd, r, cmd).map(|()| true)
        }
        Some(ReplyKind::Structured) => {
            let mut rest = [0u8; 16];
            read_exact(fd, &mut rest)?;
            let h = decode_chunk(&rest);
            if !inner.info.structured {
                return Err(broken("structured reply without negotiating it".into()));
            }
            let cmd = inner.take(h.cookie).ok_or_else(|| {
                broken(format!(
                    "structured reply for unknown cookie {:#x}",
                    h.cookie
                ))
            })?;
            chunk(inner, fd, h, cmd).map(|()| h.flags & REPLY_FLAG_DONE != 0)
        }
        None => Err(broken(format!(
            "bad reply magic {:#x}",
            u32::from_be_bytes(magic)
        ))),
    }
}

fn simple(inner: &Inner, fd: RawFd, r: SimpleReply, cmd: Cmd) -> io::Result<()> {
    if r.error != 0 {
        // An error reply to a READ carries no payload.
        cmd.finish(Err(errno_of(r.error)));
        return Ok(());
    }
    if cmd.is_read() {
        // The payload is exactly the length we asked for (our own number,
        // not the server's).
        // SAFETY: the iovecs are the request's guest buffers, valid until
        // the command finishes; only this thread writes them now.
        if let Err(e) = unsafe { readv_all(fd, &cmd.iovecs) } {
            inner.put_back(r.cookie, cmd);
            return Err(e);
        }
    }
    cmd.finish(Ok(()));
    Ok(())
}

/// Check that `[off, off + len)` lies inside the command's range; the
/// offset relative to the command.
fn inside(cmd: &Cmd, off: u64, len: u64) -> Option<u64> {
    let rel = off.checked_sub(cmd.offset)?;
    let end = rel.checked_add(len)?;
    (len > 0 && end <= u64::from(cmd.len)).then_some(rel)
}

fn chunk(inner: &Inner, fd: RawFd, h: ChunkHeader, mut cmd: Cmd) -> io::Result<()> {
    let r = chunk_body(fd, &h, &mut cmd);
    if let Err(e) = r {
        inner.put_back(h.cookie, cmd);
        return Err(e);
    }
    if h.flags & REPLY_FLAG_DONE == 0 {
        inner.put_back(h.cookie, cmd);
        return Ok(());
    }
    let result = match cmd.err {
        Some(e) => Err(e),
        // "The server MUST NOT send ... DONE before every byte of a
        // successful read has been covered": a server that did is broken,
        // and the guest must not get a buffer with holes in it.
        None if cmd.is_read() && cmd.received() != u64::from(cmd.len) => {
            log::warn!(
                "{}: read reply DONE after {} of {} bytes",
                inner.name,
                cmd.received(),
                cmd.len
            );
            Err(libc::EIO)
        }
        None => Ok(()),
    };
    cmd.finish(result);
    Ok(())
}

fn chunk_body(fd: RawFd, h: &ChunkHeader, cmd: &mut Cmd) -> io::Result<()> {
    match h.kind {
        REPLY_TYPE_NONE => {
            // "NBD_REPLY_TYPE_NONE ... length MUST be 0 ... MUST be used
            // only with NBD_REPLY_FLAG_DONE".
            if h.len != 0 || h.flags & REPLY_FLAG_DONE == 0 {
                return Err(broken(format!(
                    "NONE chunk of {} bytes, flags {:#x}",
                    h.len, h.flags
                )));
            }
            Ok(())
        }
        REPLY_TYPE_OFFSET_DATA => {
            if !cmd.is_read() || h.len <= 8 {
                return Err(broken(format!(
                    "OFFSET_DATA of {} bytes for command {}",
                    h.len, cmd.cmd
                )));
            }
            let mut o = [0u8; 8];
            read_exact(fd, &mut o)?;
            let off = u64::from_be_bytes(o);
            let len = u64::from(h.len - 8);
            let rel = inside(cmd, off, len).ok_or_else(|| {
                broken(format!(
                    "OFFSET_DATA {off}+{len} outside {}+{}",
                    cmd.offset, cmd.len
                ))
            })?;
            if !cmd.record(rel, len) {
                return Err(broken(format!(
                    "OFFSET_DATA {off}+{len} overlaps an earlier chunk"
                )));
            }
            let dst = slice(&cmd.iovecs, rel, len).ok_or_else(|| broken("iovec range".into()))?;
            // SAFETY: `dst` is inside the request's guest buffers (checked
            // against the command's length above), valid until it finishes.
            unsafe { readv_all(fd, &dst) }
        }
        REPLY_TYPE_OFFSET_HOLE => {
            if !cmd.is_read() || h.len != 12 {
                return Err(broken(format!(
                    "OFFSET_HOLE of {} bytes for command {}",
                    h.len, cmd.cmd
                )));
            }
            let mut b = [0u8; 12];
            read_exact(fd, &mut b)?;
            let off = be64(&b, 0);
            let len = u64::from(be32(&b, 8));
            let rel = inside(cmd, off, len).ok_or_else(|| {
                broken(format!(
                    "OFFSET_HOLE {off}+{len} outside {}+{}",
                    cmd.offset, cmd.len
                ))
            })?;
            if !cmd.record(rel, len) {
                return Err(broken(format!(
                    "OFFSET_HOLE {off}+{len} overlaps an earlier chunk"
                )));
            }
            let dst = slice(&cmd.iovecs, rel, len).ok_or_else(|| broken("iovec range".into()))?;
            // SAFETY: as for OFFSET_DATA.
            unsafe { zero(&dst) };
            Ok(())
        }
        k if k & (1 << 15) != 0 => {
            // Error chunks: u32 error, u16 message length, message, and
            // for ERROR_OFFSET a u64 offset. Bounded before allocating.
            if h.len < 6 || h.len > 6 + MAX_ERROR_MESSAGE + 8 {
                return Err(broken(format!("error chunk of {} bytes", h.len)));
            }
            let mut b = vec![0u8; h.len as usize];
            read_exact(fd, &mut b)?;
            let error = be32(&b, 0);
            let msg_len = u32::from(be16(&b, 4));
            let want = 6 + msg_len + if k == REPLY_TYPE_ERROR_OFFSET { 8 } else { 0 };
            // "The server MUST NOT send an error chunk with error 0."
            if error == 0
                || (k == REPLY_TYPE_ERROR || k == REPLY_TYPE_ERROR_OFFSET) && want != h.len
                || want > h.len
            {
                return Err(broken(format!(
                    "error chunk type {k:#x}, error {error}, {} bytes",
                    h.len
                )));
            }
            let msg = String::from_utf8_lossy(&b[6..6 + msg_len as usize]);
            log::debug!(
                "NBD error {error} for command {} at {}: {msg}",
                cmd.cmd,
                cmd.offset
            );
            cmd.err.get_or_insert(errno_of(error));
            Ok(())
        }
        k => Err(broken(format!("unknown chunk type {k}"))),
    }
}
