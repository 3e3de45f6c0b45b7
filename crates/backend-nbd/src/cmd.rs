//! One NBD command in flight: what was asked (so it can be resent after a
//! reconnect and every reply checked against it) and the guest request it
//! is part of.

use std::sync::Arc;

use crate::complete::Parent;
use crate::proto::{encode_request, CMD_READ, CMD_WRITE, REQUEST_LEN};

pub struct Cmd {
    pub cmd: u16,
    pub flags: u16,
    pub offset: u64,
    pub len: u32,
    /// Guest buffers: the payload of a WRITE, the destination of a READ.
    pub iovecs: Vec<libc::iovec>,
    pub parent: Arc<Parent>,
    /// READ with structured replies: the byte ranges received so far
    /// (relative to `offset`), so chunks that overlap or leave a gap are
    /// caught.
    pub got: Vec<(u64, u64)>,
    /// The first error chunk's errno.
    pub err: Option<i32>,
}

// SAFETY: the iovecs point to guest memory that stays mapped until the
// parent request completes (IoEngine::push contract); only the connection
// thread that owns the command touches it.
unsafe impl Send for Cmd {}

impl Cmd {
    pub fn new(
        cmd: u16,
        flags: u16,
        offset: u64,
        len: u32,
        iovecs: Vec<libc::iovec>,
        parent: Arc<Parent>,
    ) -> Self {
        Cmd {
            cmd,
            flags,
            offset,
            len,
            iovecs,
            parent,
            got: Vec::new(),
            err: None,
        }
    }

    pub fn header(&self, cookie: u64) -> [u8; REQUEST_LEN] {
        encode_request(self.flags, self.cmd, cookie, self.offset, self.len)
    }

    pub fn is_read(&self) -> bool {
        self.cmd == CMD_READ
    }

    pub fn has_payload(&self) -> bool {
        self.cmd == CMD_WRITE
    }

    /// Forget a partial answer before the command is sent again.
    pub fn reset(&mut self) {
        self.got.clear();
        self.err = None;
    }

    /// Record that `[rel, rel + len)` arrived; false when it overlaps what
    /// already did (a broken server).
    pub fn record(&mut self, rel: u64, len: u64) -> bool {
        let end = rel + len;
        if self.got.iter().any(|&(s, e)| rel < e && s < end) {
            return false;
        }
        self.got.push((rel, end));
        true
    }

    pub fn received(&self) -> u64 {
        self.got.iter().map(|&(s, e)| e - s).sum()
    }

    /// The command is over: tell its request.
    pub fn finish(self, r: Result<(), i32>) {
        self.parent.part_done(r);
    }
}
