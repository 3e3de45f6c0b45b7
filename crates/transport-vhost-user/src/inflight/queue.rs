//! One queue's inflight tracking while its ring runs: the "When receiving
//! available buffers" and "When supplying used buffers" steps
//! ([`InflightLog`]), on that queue's region of the shared buffer.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use vblk_device::InflightLog;

use super::layout::{
    DESC, D_COUNTER, D_INFLIGHT, D_NEXT, HDR, OFF_LAST_BATCH_HEAD, OFF_USED_IDX, OFF_VERSION,
};
use super::shared_map::SharedMap;

/// The inflight state of one queue region: implements the "When receiving
/// available buffers" and "When supplying used buffers" steps for the
/// device core, and the "When reconnecting" steps for a ring start.
#[derive(Debug)]
pub struct QueueInflight {
    pub(super) map: Arc<SharedMap>,
    pub(super) base: usize,
    /// Heads are below this (the ring size, at most the region's queue size).
    pub(super) desc_num: u16,
    /// The "global counter".
    pub(super) counter: u64,
    /// Heads passed to `completing` since the last `published`.
    pub(super) batch: Vec<u16>,
}

impl QueueInflight {
    pub(super) fn desc(&self, head: u16, field: usize) -> Option<usize> {
        if head >= self.desc_num {
            return None;
        }
        self.base
            .checked_add(HDR)?
            .checked_add(usize::from(head).checked_mul(DESC)?)?
            .checked_add(field)
    }

    pub(super) fn set_inflight(&self, head: u16, v: u8) {
        if let Some(o) = self.desc(head, D_INFLIGHT) {
            self.map.store8(o, v);
        }
    }

    pub fn version(&self) -> u16 {
        self.map.load16(self.base + OFF_VERSION)
    }

    pub fn used_idx(&self) -> u16 {
        self.map.load16(self.base + OFF_USED_IDX)
    }
}

impl InflightLog for QueueInflight {
    /// "When receiving available buffers from the driver: 1. Get the next
    /// available head-descriptor index from available ring, i 2. Set
    /// desc[i].counter to the value of global counter 3. Increase global
    /// counter by 1 4. Set desc[i].inflight to 1"
    fn popped(&mut self, head: u16) {
        if let Some(o) = self.desc(head, D_COUNTER) {
            self.map.store64(o, self.counter);
            self.counter = self.counter.wrapping_add(1);
            fence(Ordering::Release);
            self.set_inflight(head, 1);
        }
    }

    /// "When supplying used buffers to the driver: 1. Get corresponding
    /// used head-descriptor index, i 2. Set desc[i].next to last_batch_head
    /// 3. Set last_batch_head to i"
    fn completing(&mut self, head: u16) {
        let Some(next) = self.desc(head, D_NEXT) else {
            return;
        };
        let last = self.map.load16(self.base + OFF_LAST_BATCH_HEAD);
        self.map.store16(next, last);
        self.map.store16(self.base + OFF_LAST_BATCH_HEAD, head);
        self.batch.push(head);
    }

    /// "5. Increase the idx value of used ring by the size of the batch
    /// [done by the core] 6. Set the inflight field of each DescStateSplit
    /// entry in the batch to 0 7. Set used_idx to the idx value of used
    /// ring"
    fn published(&mut self, used_idx: u16) {
        for h in std::mem::take(&mut self.batch) {
            self.set_inflight(h, 0);
        }
        fence(Ordering::Release);
        self.map.store16(self.base + OFF_USED_IDX, used_idx);
    }
}
