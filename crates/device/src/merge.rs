//! Merging: adjacent reads (and adjacent writes) of one round become one
//! storage operation.

use vblk_backend::{IoOp, IoRequest};

pub use vblk_backend::IOV_MAX;
/// Default cap on a merged I/O.
pub const MERGE_MAX_BYTES: u64 = 1 << 20;

pub(crate) fn clone_req(r: &IoRequest) -> IoRequest {
    IoRequest {
        op: r.op,
        offset: r.offset,
        len: r.len,
        iovecs: r.iovecs.clone(),
        token: r.token,
        fua: r.fua,
    }
}

/// Merge a round's operations: reads with reads and writes with writes whose
/// byte ranges are contiguous, bounded by `IOV_MAX` iovecs and `max_bytes`.
/// Returns (operation to submit, the original operations it covers — empty
/// when it is a single request's own operation).
pub(crate) fn merge(
    mut planned: Vec<IoRequest>,
    max_bytes: u64,
) -> Vec<(IoRequest, Vec<IoRequest>)> {
    let mut out: Vec<(IoRequest, Vec<IoRequest>)> = Vec::with_capacity(planned.len());
    let mergeable = |r: &IoRequest| matches!(r.op, IoOp::Read | IoOp::Write);
    if max_bytes == 0 || planned.len() < 2 {
        return planned.into_iter().map(|r| (r, Vec::new())).collect();
    }
    // Order by (reads, writes, the rest) and offset so neighbours meet. Requests
    // in flight together have no order among them (virtio 1.2, 5.2.6), so a
    // FLUSH may also run before a DISCARD queued ahead of it in the batch.
    planned.sort_by_key(|r| (!mergeable(r), r.op == IoOp::Write, r.offset));
    for r in planned {
        if let Some((cur, members)) = out.last_mut() {
            let contiguous = mergeable(&r)
                && cur.op == r.op
                && cur.offset.checked_add(cur.len) == Some(r.offset)
                && cur.len.saturating_add(r.len) <= max_bytes
                && cur.iovecs.len() + r.iovecs.len() <= IOV_MAX;
            if contiguous {
                if members.is_empty() {
                    // The group's first request, kept for a retry on its own.
                    members.push(clone_req(cur));
                }
                cur.len += r.len;
                cur.iovecs.extend_from_slice(&r.iovecs);
                // The merged write is durable on completion if any member
                // must be.
                cur.fua |= r.fua;
                members.push(r);
                continue;
            }
        }
        out.push((r, Vec::new()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(r: &IoRequest, ms: &[IoRequest]) -> Vec<u64> {
        if ms.is_empty() {
            vec![r.token]
        } else {
            ms.iter().map(|x| x.token).collect()
        }
    }

    fn rq(op: IoOp, offset: u64, len: u64, token: u64) -> IoRequest {
        IoRequest {
            op,
            offset,
            len,
            iovecs: vec![libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: len as usize,
            }],
            token,
            fua: false,
        }
    }

    #[test]
    fn merges_contiguous_same_direction_only() {
        let ops = vec![
            rq(IoOp::Read, 4096, 4096, 0),
            rq(IoOp::Write, 0, 512, 1),
            rq(IoOp::Read, 0, 4096, 2),
            rq(IoOp::Write, 512, 512, 3),
            rq(IoOp::Flush, 0, 0, 4),
            rq(IoOp::Read, 16384, 4096, 5),
        ];
        let m = merge(ops, 1 << 20);
        let shape: Vec<(IoOp, u64, u64, Vec<u64>)> = m
            .iter()
            .map(|(r, ms)| (r.op, r.offset, r.len, tokens(r, ms)))
            .collect();
        assert_eq!(
            shape,
            vec![
                (IoOp::Read, 0, 8192, vec![2, 0]),
                (IoOp::Read, 16384, 4096, vec![5]),
                (IoOp::Write, 0, 1024, vec![1, 3]),
                (IoOp::Flush, 0, 0, vec![4]),
            ]
        );
        assert_eq!(m[0].0.iovecs.len(), 2);
    }

    #[test]
    fn merge_respects_caps() {
        let ops: Vec<_> = (0..8).map(|i| rq(IoOp::Read, i * 4096, 4096, i)).collect();
        let m = merge(ops, 8192);
        assert_eq!(m.len(), 4);
        assert!(m.iter().all(|(r, ms)| r.len == 8192 && ms.len() == 2));
        let ops: Vec<_> = (0..8).map(|i| rq(IoOp::Read, i * 4096, 4096, i)).collect();
        assert_eq!(merge(ops, 0).len(), 8);
        let ops: Vec<_> = (0..2000).map(|i| rq(IoOp::Read, i * 512, 512, i)).collect();
        let m = merge(ops, u64::MAX);
        assert!(m.iter().all(|(r, _)| r.iovecs.len() <= IOV_MAX));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn a_merged_write_is_fua_if_any_member_is_and_members_keep_their_own() {
        let mut b = rq(IoOp::Write, 4096, 4096, 1);
        b.fua = true;
        let m = merge(vec![rq(IoOp::Write, 0, 4096, 0), b], u64::MAX);
        assert_eq!(m.len(), 1);
        assert!(m[0].0.fua);
        assert_eq!(
            m[0].1.iter().map(|r| r.fua).collect::<Vec<_>>(),
            [false, true]
        );
    }
}
