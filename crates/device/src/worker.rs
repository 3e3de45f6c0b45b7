//! Drain → execute → complete → interrupt, for one queue.

use std::sync::Arc;

use vblk_backend::{IoCompletion, IoEngine, IoOp, IoRequest};
use vblk_interrupt::{Interrupt, InterruptKind};
use vblk_queue::{Chain, ChainError, Queue, QueueOwnedT, QueueT};
use vblk_request::{
    validate, Header, Limits, Reject, Request, RequestType, Segment, HEADER_LEN, ID_BYTES,
    SEGMENT_LEN, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

use crate::stats::{add, inc, QueueStats, Stats};

/// The queue itself is broken (bad ring address, impossible avail index):
/// the transport marks the device DEVICE_NEEDS_RESET.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("virtqueue {0}: {1}")]
    Ring(u16, virtio_queue::Error),
    #[error("virtqueue {0}: the driver made descriptor {1} available, past the queue size")]
    BadHead(u16, u16),
}

const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;

/// A request between submission and completion.
#[derive(Debug)]
struct Pending {
    head: u16,
    status_addr: GuestAddress,
    /// Used length reported if the request succeeds (data + status byte).
    used_ok: u32,
    status: u8,
    /// Storage operations still outstanding for this request.
    outstanding: u32,
    kind: Option<RequestType>,
    /// Expected bytes for a read/write (short I/O is an error).
    expect: u64,
}

/// Processes one virtqueue. Owned by the thread that serves the queue.
pub struct QueueWorker {
    index: u16,
    engine: Box<dyn IoEngine>,
    limits: Limits,
    serial: [u8; ID_BYTES],
    stats: Arc<Stats>,
    pending: Vec<Pending>,
    completions: Vec<IoCompletion>,
    /// Storage operations of the current batch, before merging; each
    /// one's token is the index of its request in `pending`.
    planned: Vec<IoRequest>,
    /// Chain buffers reused across drains.
    chain_pool: Vec<Chain>,
    /// Operations handed to the engine; a completion's token indexes this.
    inflight: Vec<InflightOp>,
    /// Largest merged I/O.
    merge_max_bytes: u64,
}

/// One engine operation: a single request's, or several adjacent requests'
/// merged into one.
#[derive(Debug)]
struct InflightOp {
    /// The request (index in `pending`) of a single, unmerged operation.
    pending: u64,
    /// For a merged operation, the original per-request operations (token =
    /// index in `pending`); empty for a single one.
    members: Vec<IoRequest>,
    /// Bytes the merged operation must transfer.
    expect: u64,
}

/// `IOV_MAX`: the most iovecs one preadv/pwritev (or io_uring readv) takes.
const IOV_MAX: usize = 1024;
/// Default cap on a merged I/O.
pub const MERGE_MAX_BYTES: u64 = 1 << 20;

impl QueueWorker {
    pub fn new(
        index: u16,
        engine: Box<dyn IoEngine>,
        limits: Limits,
        serial: [u8; ID_BYTES],
        stats: Arc<Stats>,
    ) -> Self {
        QueueWorker {
            index,
            engine,
            limits,
            serial,
            stats,
            pending: Vec::new(),
            completions: Vec::new(),
            planned: Vec::new(),
            chain_pool: Vec::new(),
            inflight: Vec::new(),
            merge_max_bytes: MERGE_MAX_BYTES,
        }
    }

    /// Cap merged reads/writes at `bytes` (0 disables merging).
    pub fn set_merge_max_bytes(&mut self, bytes: u64) {
        self.merge_max_bytes = bytes;
    }

    pub fn index(&self) -> u16 {
        self.index
    }

    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    fn qstats(&self) -> &QueueStats {
        self.stats.queue(usize::from(self.index))
    }

    /// Serve everything the driver has made available, then decide whether
    /// to interrupt. Returns the number of chains completed.
    ///
    /// Every request is completed before this returns, so guest memory only
    /// has to stay mapped for the duration of the call.
    pub fn process<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        irq: &dyn Interrupt,
    ) -> Result<usize, QueueError> {
        let qi = self.index;
        let err = |e| QueueError::Ring(qi, e);
        let mut total = 0usize;
        let old = queue.next_used();
        loop {
            queue.disable_notification(mem).map_err(err)?;
            total += self.drain_once(queue, mem)?;
            // Re-enable kicks; if the driver added chains meanwhile, go again
            // (otherwise a kick it suppressed would be lost).
            if !queue.enable_notification(mem).map_err(err)? {
                break;
            }
        }
        if total > 0 {
            self.maybe_interrupt(queue, mem, irq, old)?;
        }
        Ok(total)
    }

    /// One interrupt decision: EVENT_IDX `used_event` or NO_INTERRUPT.
    fn maybe_interrupt<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        irq: &dyn Interrupt,
        old: u16,
    ) -> Result<(), QueueError> {
        let needed = if queue.event_idx_enabled() {
            // EVENT_IDX: interrupt only if `used_event` lies in the entries
            // this call added, (old, new] ("vring_need_event", virtio 1.2,
            // 2.7.10). Read after the used index is visible.
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            let at = GuestAddress(queue.avail_ring())
                .checked_add(4 + 2 * u64::from(queue.size()))
                .ok_or(QueueError::Ring(
                    self.index,
                    virtio_queue::Error::AddressOverflow,
                ))?;
            let used_event =
                u16::from_le(mem.read_obj::<u16>(at).map_err(|e| {
                    QueueError::Ring(self.index, virtio_queue::Error::GuestMemory(e))
                })?);
            let new = queue.next_used();
            new.wrapping_sub(used_event).wrapping_sub(1) < new.wrapping_sub(old)
        } else {
            // "If flags is 1, the device SHOULD NOT send a notification"
            // (virtio 1.2, 2.7.7.2: VRING_AVAIL_F_NO_INTERRUPT). virtio-queue
            // does not implement the flag, so read it here, after the used
            // ring writes are visible.
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            let flags: u16 = mem
                .read_obj(GuestAddress(queue.avail_ring()))
                .map_err(|e| QueueError::Ring(self.index, virtio_queue::Error::GuestMemory(e)))?;
            u16::from_le(flags) & VRING_AVAIL_F_NO_INTERRUPT == 0
        };
        if needed {
            inc(&self.qstats().interrupts);
            if let Err(e) = irq.trigger(InterruptKind::Queue(self.index)) {
                log::warn!("queue {}: interrupt failed: {e}", self.index);
            }
        } else {
            inc(&self.qstats().interrupts_suppressed);
        }
        Ok(())
    }

    /// Pop every available chain, execute the batch, complete it. Returns
    /// the number of chains.
    fn drain_once<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
    ) -> Result<usize, QueueError> {
        let qi = self.index;
        inc(&self.qstats().drains);
        // Chains are collected into buffers kept from one drain to the next.
        let mut pool = std::mem::take(&mut self.chain_pool);
        let mut count = 0usize;
        {
            let iter = queue.iter(mem).map_err(|e| QueueError::Ring(qi, e))?;
            for dc in iter {
                let head = dc.head_index();
                if count == pool.len() {
                    pool.push(Chain::default());
                }
                pool[count].refill(head, dc);
                count += 1;
            }
        }
        let result = self.drain_chains(queue, mem, &pool[..count]);
        self.chain_pool = pool;
        result
    }

    fn drain_chains<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        chains: &[Chain],
    ) -> Result<usize, QueueError> {
        let qi = self.index;
        // A head index past the queue cannot be returned on the used ring:
        // the ring is broken ("Guest says index is available", QEMU).
        let size = queue.size();
        if let Some(c) = chains.iter().find(|c| c.head >= size) {
            return Err(QueueError::BadHead(qi, c.head));
        }
        if chains.is_empty() {
            return Ok(0);
        }
        let n = chains.len();
        add(&self.qstats().chains_popped, n as u64);
        // Immediate completions: (head, used_len).
        let mut immediate: Vec<(u16, u32)> = Vec::new();
        for c in chains {
            if let Some(done) = self.start(c, mem) {
                immediate.push(done);
            }
        }
        if !self.planned.is_empty() {
            self.submit_planned();
        }
        // Publish: failed validations first (cheap), then executed requests.
        for (head, len) in immediate {
            self.push_used(queue, mem, head, len)?;
        }
        let pending = std::mem::take(&mut self.pending);
        for p in &pending {
            let len = self.complete(p, mem);
            self.push_used(queue, mem, p.head, len)?;
        }
        self.pending = pending;
        self.pending.clear();
        self.publish_used(queue, mem)?;
        Ok(n)
    }

    /// Merge adjacent reads (and adjacent writes) of the batch, hand
    /// everything to the engine in one submission, and wait for it all. A
    /// merged I/O that fails is retried request by request, so each request
    /// gets its own status.
    fn submit_planned(&mut self) {
        let qi = self.index;
        let planned = std::mem::take(&mut self.planned);
        let mut ops = merge(planned, self.merge_max_bytes);
        let mut round = 0;
        while !ops.is_empty() {
            round += 1;
            self.inflight.clear();
            let s = self.stats.clone();
            let s = s.queue(usize::from(qi));
            for (req, members) in ops.drain(..) {
                let expect = req.len;
                if members.len() > 1 {
                    add(&s.merged, members.len() as u64 - 1);
                }
                let token = self.inflight.len() as u64;
                self.inflight.push(InflightOp {
                    pending: req.token,
                    members,
                    expect,
                });
                add(&s.backend_ios, 1);
                // SAFETY: the iovecs point into the guest memory that the
                // caller of `process` keeps alive until `process` returns;
                // every operation is reaped below before then.
                unsafe {
                    self.engine.push(IoRequest { token, ..req });
                }
            }
            inc(&s.submits);
            if let Err(e) = self.engine.submit() {
                log::warn!("queue {qi}: submit failed: {e}");
            }
            let retry = self.reap_all();
            if round >= 2 {
                // Members are single requests by now; nothing left to split.
                debug_assert!(retry.is_empty());
                break;
            }
            ops = retry.into_iter().map(|m| (m, Vec::new())).collect();
        }
        self.inflight.clear();
    }

    /// Reap everything in flight. Returns the member requests of failed
    /// merged operations, to be retried one by one.
    fn reap_all(&mut self) -> Vec<IoRequest> {
        let mut retry = Vec::new();
        while self.engine.in_flight() > 0 {
            let want = self.engine.in_flight();
            if let Err(e) = self.engine.reap(&mut self.completions, want) {
                log::error!("queue {}: reaping completions failed: {e}", self.index);
                break;
            }
            let mut completions = std::mem::take(&mut self.completions);
            for c in completions.drain(..) {
                let Some(op) = usize::try_from(c.token)
                    .ok()
                    .and_then(|i| self.inflight.get_mut(i))
                else {
                    continue;
                };
                // Completed: nothing of this operation is outstanding any more.
                let members = std::mem::take(&mut op.members);
                let pending = std::mem::replace(&mut op.pending, u64::MAX);
                let expect = op.expect;
                if members.is_empty() {
                    self.complete_op(pending, c.result, expect);
                    continue;
                }
                let ok = matches!(c.result, Ok(n) if n == expect || expect == 0);
                if !ok && members.len() > 1 {
                    log::debug!(
                        "queue {}: merged I/O failed ({:?}); retrying its {} requests",
                        self.index,
                        c.result,
                        members.len()
                    );
                    retry.extend(members);
                    continue;
                }
                for m in &members {
                    self.complete_op(m.token, c.result.map(|_| m.len), m.len);
                }
            }
            self.completions = completions;
        }
        // Anything the engine lost is an error, never a hang.
        for op in &mut self.inflight {
            let single = std::mem::replace(&mut op.pending, u64::MAX);
            let tokens: Vec<u64> = if op.members.is_empty() {
                if single == u64::MAX {
                    continue; // completed
                }
                vec![single]
            } else {
                op.members.drain(..).map(|m| m.token).collect()
            };
            for t in tokens {
                if let Some(p) = usize::try_from(t)
                    .ok()
                    .and_then(|i| self.pending.get_mut(i))
                {
                    p.status = VIRTIO_BLK_S_IOERR;
                    p.outstanding = 0;
                }
            }
        }
        retry
    }

    fn complete_op(&mut self, pending: u64, result: Result<u64, i32>, expect: u64) {
        let qi = self.index;
        let Some(p) = usize::try_from(pending)
            .ok()
            .and_then(|i| self.pending.get_mut(i))
        else {
            return;
        };
        p.outstanding = p.outstanding.saturating_sub(1);
        match result {
            Ok(n) if expect == 0 || n == expect => {}
            Ok(n) => {
                log::warn!("queue {qi}: short I/O: {n} of {expect} bytes");
                p.status = VIRTIO_BLK_S_IOERR;
            }
            Err(errno) => {
                log::warn!(
                    "queue {qi}: storage error on {:?}: {}",
                    p.kind,
                    std::io::Error::from_raw_os_error(errno)
                );
                p.status = VIRTIO_BLK_S_IOERR;
            }
        }
    }

    /// Write one used element; the used index is published once per batch
    /// by [`Self::publish_used`].
    fn push_used<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        let qi = self.index;
        let next = queue.next_used();
        let slot = u64::from(next % queue.size().max(1));
        let addr = GuestAddress(queue.used_ring())
            .checked_add(4 + 8 * slot)
            .ok_or(QueueError::Ring(qi, virtio_queue::Error::AddressOverflow))?;
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        mem.write_slice(&elem, addr)
            .map_err(|e| QueueError::Ring(qi, virtio_queue::Error::GuestMemory(e)))?;
        queue.set_next_used(next.wrapping_add(1));
        inc(&self.qstats().used_pushes);
        Ok(())
    }

    /// Make the batch's used elements visible: one store of the used index,
    /// after the elements ("The device MUST NOT ... update idx before the
    /// ring entries", virtio 1.2, 2.7.8.2).
    fn publish_used<M: GuestMemory>(&self, queue: &Queue, mem: &M) -> Result<(), QueueError> {
        let qi = self.index;
        let addr = GuestAddress(queue.used_ring())
            .checked_add(2)
            .ok_or(QueueError::Ring(qi, virtio_queue::Error::AddressOverflow))?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        mem.store(
            u16::to_le(queue.next_used()),
            addr,
            std::sync::atomic::Ordering::Release,
        )
        .map_err(|e| QueueError::Ring(qi, virtio_queue::Error::GuestMemory(e)))
    }

    /// Write the status byte of a finished request; returns the used length.
    fn complete<M: GuestMemory>(&self, p: &Pending, mem: &M) -> u32 {
        let s = self.qstats();
        if p.status == VIRTIO_BLK_S_OK {
            match p.kind {
                Some(RequestType::In) => add(&s.bytes_read, p.expect),
                Some(RequestType::Out) => add(&s.bytes_written, p.expect),
                _ => {}
            }
        } else {
            inc(&s.backend_errors);
        }
        self.finish(
            p.status_addr,
            p.status,
            if p.status == VIRTIO_BLK_S_OK {
                p.used_ok
            } else {
                1
            },
            mem,
        )
    }

    /// Write `status`; count it; return the used length (0 if the status
    /// byte cannot be written).
    fn finish<M: GuestMemory>(
        &self,
        status_addr: GuestAddress,
        status: u8,
        used: u32,
        mem: &M,
    ) -> u32 {
        let s = self.qstats();
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

    fn count_type(&self, t: u32) {
        let s = self.qstats();
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

    /// Parse and validate one chain; queue its storage I/O, or complete it at
    /// once (returns `(head, used_len)`).
    fn start<M: GuestMemory>(&mut self, c: &Chain, mem: &M) -> Option<(u16, u32)> {
        let s = self.stats.clone();
        let s = s.queue(usize::from(self.index));
        // A chain with no room for the header or no writable status byte
        // cannot carry an answer: return it unexecuted.
        if c.readable_len < HEADER_LEN as u64 || c.writable_len == 0 {
            inc(&s.malformed_chains);
            return Some((c.head, 0));
        }
        let Some(status_addr) = c.writable_addr(c.writable_len - 1) else {
            inc(&s.malformed_chains);
            return Some((c.head, 0));
        };
        if !mem.check_range(status_addr, 1, vm_memory::Permissions::Write) {
            inc(&s.malformed_chains);
            inc(&s.bad_address);
            return Some((c.head, 0));
        }
        let ioerr =
            |this: &Self| Some((c.head, this.finish(status_addr, VIRTIO_BLK_S_IOERR, 1, mem)));
        if let Some(e) = c.error {
            log::debug!("queue {}: chain {}: {e}", self.index, c.head);
            return ioerr(self);
        }
        let mut reader = c.reader();
        let mut hdr = [0u8; HEADER_LEN];
        if reader.read_exact(mem, &mut hdr).is_err() {
            inc(&s.bad_address);
            return ioerr(self);
        }
        let header = Header::parse(&hdr);
        self.count_type(header.request_type);
        let req = match validate(
            &header,
            reader.remaining(),
            c.writable_len - 1,
            &self.limits,
        ) {
            Ok(r) => r,
            Err(Reject { status, reason }) => {
                log::debug!(
                    "queue {}: request {:?} rejected: {reason}",
                    self.index,
                    header
                );
                return Some((c.head, self.finish(status_addr, status, 1, mem)));
            }
        };
        let token = self.pending.len() as u64;
        let mut p = Pending {
            head: c.head,
            status_addr,
            used_ok: 1,
            status: VIRTIO_BLK_S_OK,
            outstanding: 0,
            kind: RequestType::from_raw(header.request_type),
            expect: 0,
        };
        let mut ops: Vec<IoRequest> = Vec::new();
        match req {
            Request::In { offset, len } | Request::Out { offset, len } => {
                let mut iovecs = Vec::new();
                let read = matches!(req, Request::In { .. });
                let r = if read {
                    c.writer(1).iovecs(mem, len, &mut iovecs)
                } else {
                    reader.iovecs(mem, len, &mut iovecs)
                };
                if let Err(e) = r {
                    debug_assert_eq!(e, ChainError::BadAddress);
                    inc(&s.bad_address);
                    return ioerr(self);
                }
                if len == 0 {
                    return Some((c.head, self.finish(status_addr, VIRTIO_BLK_S_OK, 1, mem)));
                }
                p.expect = len;
                if read {
                    // u32 is safe: Chain::collect flags chains over 4 GiB.
                    p.used_ok = u32::try_from(len + 1).unwrap_or(u32::MAX);
                }
                ops.push(IoRequest {
                    op: if read { IoOp::Read } else { IoOp::Write },
                    offset,
                    len,
                    iovecs,
                    token,
                });
            }
            Request::Flush => ops.push(IoRequest {
                op: IoOp::Flush,
                offset: 0,
                len: 0,
                iovecs: Vec::new(),
                token,
            }),
            Request::GetId { len } => {
                let mut w = c.writer(1);
                if w.write_all(mem, &self.serial[..len as usize]).is_err() {
                    inc(&s.bad_address);
                    return ioerr(self);
                }
                return Some((
                    c.head,
                    self.finish(status_addr, VIRTIO_BLK_S_OK, len as u32 + 1, mem),
                ));
            }
            Request::Discard { segments } | Request::WriteZeroes { segments } => {
                let discard = matches!(req, Request::Discard { .. });
                for _ in 0..segments {
                    let mut b = [0u8; SEGMENT_LEN];
                    if reader.read_exact(mem, &mut b).is_err() {
                        inc(&s.bad_address);
                        return ioerr(self);
                    }
                    let seg = Segment::parse(&b);
                    match seg.check(discard, &self.limits) {
                        Ok((offset, len)) if len > 0 => ops.push(IoRequest {
                            op: if discard {
                                IoOp::Discard
                            } else {
                                IoOp::WriteZeroes
                            },
                            offset,
                            len,
                            iovecs: Vec::new(),
                            token,
                        }),
                        Ok(_) => {}
                        Err(Reject { status, .. }) => {
                            return Some((c.head, self.finish(status_addr, status, 1, mem)));
                        }
                    }
                }
                if ops.is_empty() {
                    return Some((c.head, self.finish(status_addr, VIRTIO_BLK_S_OK, 1, mem)));
                }
            }
        }
        p.outstanding = ops.len() as u32;
        self.pending.push(p);
        self.planned.append(&mut ops);
        None
    }
}

fn clone_req(r: &IoRequest) -> IoRequest {
    IoRequest {
        op: r.op,
        offset: r.offset,
        len: r.len,
        iovecs: r.iovecs.clone(),
        token: r.token,
    }
}

/// Merge a batch's operations: reads with reads and writes with writes whose
/// byte ranges are contiguous, bounded by `IOV_MAX` iovecs and `max_bytes`.
/// Returns (operation to submit, the original operations it covers — empty
/// when it is a single request's own operation).
fn merge(mut planned: Vec<IoRequest>, max_bytes: u64) -> Vec<(IoRequest, Vec<IoRequest>)> {
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
}
