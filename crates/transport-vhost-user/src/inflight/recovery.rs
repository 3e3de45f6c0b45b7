//! Recovery at a ring start ("When reconnecting"): the inflight entries
//! of the last batch cleared, the heads still in flight found, oldest
//! first, and where the avail ring continues.

use std::sync::atomic::{fence, Ordering};

use super::layout::{
    D_COUNTER, D_INFLIGHT, D_NEXT, INFLIGHT_VERSION, OFF_LAST_BATCH_HEAD, OFF_USED_IDX, OFF_VERSION,
};
use super::queue::QueueInflight;

/// What a ring start has to do after reading the inflight region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Heads to execute again, oldest first.
    pub resubmit: Vec<u16>,
    /// Where the avail ring continues: the used index plus the number of
    /// heads still in flight (libvhost-user `vu_check_queue_inflights`:
    /// every head taken from the avail ring is either on the used ring or
    /// in flight).
    pub next_avail: Option<u16>,
    /// The region was uninitialized (version 0) and has been initialized.
    pub fresh: bool,
}

impl QueueInflight {
    /// "When reconnecting", given the `idx` of the used ring as it is in
    /// guest memory now.
    pub fn recover(&mut self, used_ring_idx: u16) -> Recovery {
        self.batch.clear();
        if self.version() != INFLIGHT_VERSION {
            // "Zero value indicates an uninitialized buffer" (and any other
            // value is one we cannot read): start from a clean region.
            for h in 0..self.desc_num {
                self.set_inflight(h, 0);
            }
            self.map.store16(self.base + OFF_USED_IDX, used_ring_idx);
            self.map.store16(self.base + OFF_LAST_BATCH_HEAD, 0);
            self.map.store16(self.base + OFF_VERSION, INFLIGHT_VERSION);
            self.counter = 0;
            return Recovery {
                resubmit: Vec::new(),
                next_avail: None,
                fresh: true,
            };
        }
        // 1. "If the value of used_idx does not match the idx value of used
        //    ring (means the inflight field of DescStateSplit entries in
        //    last batch may be incorrect),
        //    a. Subtract the value of used_idx from the idx value of used
        //       ring to get last batch size of DescStateSplit entries
        //    b. Set the inflight field of each DescStateSplit entry to 0 in
        //       last batch list which starts from last_batch_head
        //    c. Set used_idx to the idx value of used ring"
        let recorded = self.used_idx();
        if recorded != used_ring_idx {
            // A batch is never larger than the ring: a bigger difference
            // comes from a corrupt region and is bounded here.
            let batch = used_ring_idx.wrapping_sub(recorded).min(self.desc_num);
            let mut h = self.map.load16(self.base + OFF_LAST_BATCH_HEAD);
            for _ in 0..batch {
                let Some(next) = self.desc(h, D_NEXT) else {
                    break;
                };
                self.set_inflight(h, 0);
                h = self.map.load16(next);
            }
            fence(Ordering::Release);
            self.map.store16(self.base + OFF_USED_IDX, used_ring_idx);
        }
        // 2. "Resubmit inflight DescStateSplit entries in order of their
        //    counter value".
        let mut inflight: Vec<(u64, u16)> = (0..self.desc_num)
            .filter(|h| self.desc(*h, D_INFLIGHT).map(|o| self.map.load8(o)) == Some(1))
            .map(|h| (self.desc(h, D_COUNTER).map_or(0, |o| self.map.load64(o)), h))
            .collect();
        inflight.sort_unstable();
        self.counter = inflight.last().map_or(0, |(c, _)| c.wrapping_add(1));
        let n = u16::try_from(inflight.len()).unwrap_or(u16::MAX);
        Recovery {
            resubmit: inflight.into_iter().map(|(_, h)| h).collect(),
            next_avail: Some(used_ring_idx.wrapping_add(n)),
            fresh: false,
        }
    }
}
