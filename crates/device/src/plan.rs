//! From a popped chain to the storage operations it asks for: parse the
//! header, validate it (request crate), turn the data buffers into host
//! iovecs, and split DISCARD / WRITE_ZEROES into bounded pieces. A request
//! that fails here is answered at once.

use vblk_backend::{IoOp, IoRequest};
use vblk_queue::{Chain, ChainError};
use vblk_request::{
    validate, Header, Limits, Reject, Request, RequestType, Segment, HEADER_LEN, ID_BYTES,
    SEGMENT_LEN, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::stats::{inc, QueueStats};

/// Largest piece of a DISCARD or WRITE_ZEROES range handed to the storage as
/// one operation, so that no single operation runs for long.
pub const RANGE_PIECE_BYTES: u64 = 64 << 20;

/// A request between submission and completion.
#[derive(Debug)]
pub(crate) struct Pending {
    pub head: u16,
    pub status_addr: GuestAddress,
    /// Used length reported if the request succeeds (data + status byte).
    pub used_ok: u32,
    pub status: u8,
    /// Storage operations of this request not completed yet.
    pub ops_left: u32,
    pub kind: Option<RequestType>,
    /// Bytes a read or write moves.
    pub bytes: u64,
    /// When it was planned (for the latency histogram).
    pub started: std::time::Instant,
    /// Device-writable buffers to mark in the dirty log at completion
    /// (empty unless logging was on when it was popped).
    pub dirty: Vec<vblk_queue::Region>,
}

/// What to do with one chain.
pub(crate) enum Plan {
    /// Answered already (status byte written, or the chain cannot carry an
    /// answer): put it on the used ring with this length.
    Done(u32),
    /// Storage work: the request; its operations were appended to the
    /// caller's list (their `token` is for the caller to set).
    Io(Pending),
}

/// Write `status`, count it, return the used length (0 if the status byte
/// cannot be written).
pub(crate) fn write_status<M: GuestMemory>(
    s: &QueueStats,
    mem: &M,
    status_addr: GuestAddress,
    status: u8,
    used: u32,
) -> u32 {
    match status {
        VIRTIO_BLK_S_OK => inc(&s.status_ok),
        VIRTIO_BLK_S_UNSUPP => inc(&s.status_unsupp),
        _ => inc(&s.status_ioerr),
    }
    if mem.write_obj(status, status_addr).is_err() {
        inc(&s.bad_address);
        return 0;
    }
    used
}

fn count_type(s: &QueueStats, t: u32) {
    match RequestType::from_raw(t) {
        Some(RequestType::In) => inc(&s.req_in),
        Some(RequestType::Out) => inc(&s.req_out),
        Some(RequestType::Flush) => inc(&s.req_flush),
        Some(RequestType::GetId) => inc(&s.req_get_id),
        Some(RequestType::Discard) => inc(&s.req_discard),
        Some(RequestType::WriteZeroes) => inc(&s.req_write_zeroes),
        None => inc(&s.req_unsupported),
    }
}

/// Split `[offset, offset + len)` into pieces of at most [`RANGE_PIECE_BYTES`].
/// `fua`: each piece must be durable when it completes (write-through).
fn pieces(op: IoOp, offset: u64, len: u64, fua: bool, out: &mut Vec<IoRequest>) {
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(RANGE_PIECE_BYTES);
        out.push(IoRequest {
            op,
            offset: offset + done,
            len: n,
            iovecs: Vec::new(),
            token: 0,
            fua,
        });
        done += n;
    }
}

/// Everything a plan needs besides the chain.
pub(crate) struct Planner<'a> {
    pub queue: u16,
    pub limits: &'a Limits,
    pub serial: &'a [u8; ID_BYTES],
    pub stats: &'a QueueStats,
    /// The cache is in write-through mode: "If the device is in
    /// writethrough mode ... a write MUST be on persistent storage before
    /// the request completes" (see `IoRequest::fua`), decided per request
    /// when it is planned.
    pub write_through: bool,
}

impl Planner<'_> {
    /// Parse and validate one chain; its storage operations go to `ops`
    /// (nothing is left there when the plan is [`Plan::Done`]).
    pub fn plan<M: GuestMemory>(&self, c: &Chain, mem: &M, ops: &mut Vec<IoRequest>) -> Plan {
        let first = ops.len();
        let plan = self.plan_into(c, mem, ops);
        if matches!(plan, Plan::Done(_)) {
            ops.truncate(first);
        }
        plan
    }

    fn plan_into<M: GuestMemory>(&self, c: &Chain, mem: &M, ops: &mut Vec<IoRequest>) -> Plan {
        let first = ops.len();
        let s = self.stats;
        // A chain with no room for the header or no writable status byte
        // cannot carry an answer: return it unexecuted.
        if c.readable_len < HEADER_LEN as u64 || c.writable_len == 0 {
            inc(&s.malformed_chains);
            return Plan::Done(0);
        }
        let Some(status_addr) = c.writable_addr(c.writable_len - 1) else {
            inc(&s.malformed_chains);
            return Plan::Done(0);
        };
        if !mem.check_range(status_addr, 1, vm_memory::Permissions::Write) {
            inc(&s.malformed_chains);
            inc(&s.bad_address);
            return Plan::Done(0);
        }
        let answer =
            |status: u8, used: u32| Plan::Done(write_status(s, mem, status_addr, status, used));
        let ioerr = || answer(VIRTIO_BLK_S_IOERR, 1);
        if let Some(e) = c.error {
            log::debug!("queue {}: chain {}: {e}", self.queue, c.head);
            return ioerr();
        }
        let mut reader = c.reader();
        let mut hdr = [0u8; HEADER_LEN];
        if reader.read_exact(mem, &mut hdr).is_err() {
            inc(&s.bad_address);
            return ioerr();
        }
        let header = Header::parse(&hdr);
        count_type(s, header.request_type);
        let req = match validate(&header, reader.remaining(), c.writable_len - 1, self.limits) {
            Ok(r) => r,
            Err(Reject { status, reason }) => {
                log::debug!(
                    "queue {}: request {header:?} rejected: {reason}",
                    self.queue
                );
                return answer(status, 1);
            }
        };
        let mut p = Pending {
            head: c.head,
            status_addr,
            used_ok: 1,
            status: VIRTIO_BLK_S_OK,
            ops_left: 0,
            kind: RequestType::from_raw(header.request_type),
            bytes: 0,
            started: std::time::Instant::now(),
            dirty: Vec::new(),
        };
        match req {
            Request::In { offset, len } | Request::Out { offset, len } => {
                let read = matches!(req, Request::In { .. });
                let mut iovecs = Vec::new();
                let r = if read {
                    c.writer(1).iovecs(mem, len, &mut iovecs)
                } else {
                    reader.iovecs(mem, len, &mut iovecs)
                };
                if let Err(e) = r {
                    debug_assert_eq!(e, ChainError::BadAddress);
                    inc(&s.bad_address);
                    return ioerr();
                }
                if len == 0 {
                    return answer(VIRTIO_BLK_S_OK, 1);
                }
                p.bytes = len;
                if read {
                    // Chains over 4 GiB break the ring before they get here.
                    p.used_ok = u32::try_from(len + 1).unwrap_or(u32::MAX);
                }
                ops.push(IoRequest {
                    op: if read { IoOp::Read } else { IoOp::Write },
                    offset,
                    len,
                    iovecs,
                    token: 0,
                    fua: !read && self.write_through,
                });
                if !read && self.write_through {
                    inc(&s.fua_writes);
                }
            }
            Request::Flush => ops.push(IoRequest {
                op: IoOp::Flush,
                offset: 0,
                len: 0,
                iovecs: Vec::new(),
                token: 0,
                fua: false,
            }),
            Request::GetId { len } => {
                let id = &self.serial[..(len as usize).min(ID_BYTES)];
                if c.writer(1).write_all(mem, id).is_err() {
                    inc(&s.bad_address);
                    return ioerr();
                }
                return answer(VIRTIO_BLK_S_OK, id.len() as u32 + 1);
            }
            Request::Discard { segments } | Request::WriteZeroes { segments } => {
                let discard = matches!(req, Request::Discard { .. });
                let op = if discard {
                    IoOp::Discard
                } else {
                    IoOp::WriteZeroes
                };
                for _ in 0..segments {
                    let mut b = [0u8; SEGMENT_LEN];
                    if reader.read_exact(mem, &mut b).is_err() {
                        inc(&s.bad_address);
                        return ioerr();
                    }
                    match Segment::parse(&b).check(discard, self.limits) {
                        Ok((offset, len)) => {
                            let fua = !discard && self.write_through;
                            if fua {
                                inc(&s.fua_writes);
                            }
                            pieces(op, offset, len, fua, ops)
                        }
                        Err(Reject { status, .. }) => return answer(status, 1),
                    }
                }
                if ops.len() == first {
                    return answer(VIRTIO_BLK_S_OK, 1);
                }
            }
        }
        p.ops_left = (ops.len() - first) as u32;
        Plan::Io(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_split_into_bounded_pieces() {
        let mut out = vec![];
        pieces(
            IoOp::WriteZeroes,
            512,
            2 * RANGE_PIECE_BYTES + 4096,
            true,
            &mut out,
        );
        assert!(out.iter().all(|r| r.fua));
        let shape: Vec<(u64, u64)> = out.iter().map(|r| (r.offset, r.len)).collect();
        assert_eq!(
            shape,
            vec![
                (512, RANGE_PIECE_BYTES),
                (512 + RANGE_PIECE_BYTES, RANGE_PIECE_BYTES),
                (512 + 2 * RANGE_PIECE_BYTES, 4096)
            ]
        );
        out.clear();
        pieces(IoOp::Discard, 0, 0, false, &mut out);
        assert!(out.is_empty());
    }
}
