//! The first part of a round: pop chains from the avail ring (or take the heads
//! to resubmit after a crash), walk each one and plan it: answered at once,
//! or its storage operations queued for the round's submission.

use vblk_queue::{Chain, Queue, QueueOwnedT, QueueT};
use vm_memory::{GuestAddress, GuestMemory};

use super::{QueueError, QueueWorker};
use crate::plan::{Plan, Planner};
use crate::stats::{add, inc};

impl QueueWorker {
    /// Pop up to `budget` chains (and about [`MAX_ROUND_BYTES`] of data, see
    /// [`QueueWorker::set_max_round_bytes`]),
    /// plan them and submit their I/O in one go. Returns the number of
    /// chains popped.
    ///
    /// [`MAX_ROUND_BYTES`]: super::MAX_ROUND_BYTES
    pub fn pop_and_submit<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        budget: usize,
    ) -> Result<usize, QueueError> {
        if self.packed.is_some() {
            return self.pop_packed(queue, mem, budget);
        }
        let qi = self.index;
        let size = queue.size();
        let table = GuestAddress(queue.desc_table());
        let mut popped = 0;
        let mut result = Ok(());
        self.round_bytes = 0;
        while popped < budget && self.round_bytes < self.max_round_bytes {
            let head = match queue.iter(mem) {
                Ok(mut iter) => match iter.next() {
                    Some(dc) => dc.head_index(),
                    None => break,
                },
                Err(e) => {
                    result = Err(QueueError::Ring(qi, e));
                    break;
                }
            };
            popped += 1;
            if let Err(e) = self.start_heads(queue, mem, table, size, &[head]) {
                result = Err(e);
                break;
            }
        }
        if popped > 0 {
            inc(&self.qstats().drains);
        }
        self.submit_planned();
        result.map(|()| popped)
    }

    /// Execute chains named by their heads, ahead of the avail ring (crash
    /// recovery: the requests that were in flight when the previous daemon
    /// died).
    pub fn resubmit<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        heads: &[u16],
    ) -> Result<(), QueueError> {
        let table = GuestAddress(queue.desc_table());
        let r = self.start_heads(queue, mem, table, queue.size(), heads);
        self.submit_planned();
        r
    }

    fn start_heads<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        table: GuestAddress,
        size: u16,
        heads: &[u16],
    ) -> Result<(), QueueError> {
        let qi = self.index;
        let stats = self.stats.clone();
        let s = stats.queue(usize::from(qi));
        add(&s.chains_popped, heads.len() as u64);
        let mut chain = std::mem::take(&mut self.chain);
        let mut result = Ok(());
        for &head in heads {
            if head >= size {
                result = Err(QueueError::BadHead(qi, head));
                break;
            }
            if let Err(e) = chain.walk(mem, table, size, head) {
                inc(&s.broken_rings);
                result = Err(QueueError::Chain(qi, head, e));
                break;
            }
            if let Some(log) = self.log.as_mut() {
                log.popped(head);
            }
            if let Err(e) = self.start_chain(queue, mem, &chain) {
                result = Err(e);
                break;
            }
        }
        self.chain = chain;
        result
    }

    /// Plan one walked chain: answer it at once or queue its operations.
    pub(crate) fn start_chain<M: GuestMemory>(
        &mut self,
        queue: &mut Queue,
        mem: &M,
        chain: &Chain,
    ) -> Result<(), QueueError> {
        self.refresh_live();
        let stats = self.stats.clone();
        let first = self.planned.len();
        let plan = Planner {
            queue: self.index,
            limits: &self.limits,
            serial: &self.serial,
            stats: stats.queue(usize::from(self.index)),
            write_through: self.write_through,
        }
        .plan(chain, mem, &mut self.planned);
        match plan {
            Plan::Done(len) => {
                self.dirty.written(&chain.writable);
                self.push_used(queue, mem, chain.head, len)?
            }
            Plan::Io(mut p) => {
                p.dirty = self.dirty.record(&chain.writable);
                self.round_bytes = self.round_bytes.saturating_add(p.bytes);
                let token = self.requests.insert(p);
                for op in &mut self.planned[first..] {
                    op.token = token;
                }
            }
        }
        Ok(())
    }
}
