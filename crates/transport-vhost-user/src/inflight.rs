//! Inflight I/O tracking (`VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD`), split
//! rings.
//!
//! vhost-user.rst, "Inflight I/O tracking": the back-end keeps, in a buffer
//! shared with the front end, which descriptor heads it has taken from the
//! avail ring and not yet returned, so that after a crash or a restart the
//! next back-end can "resubmit inflight DescStateSplit entries in order of
//! their counter value". The buffer is one region per queue:
//!
//! ```text
//! u64 features; u16 version; u16 desc_num; u16 last_batch_head; u16 used_idx;
//! DescStateSplit desc[desc_num];   // u8 inflight; u8 padding[5]; u16 next; u64 counter
//! ```
//!
//! Each queue region is `ALIGN_UP(16 * queue_size + 2, 64)` bytes, as
//! libvhost-user lays it out (`vu_inflight_queue_size`), so a buffer
//! written by one back-end can be read by another.
//!
//! The buffer is shared memory the front end can write at any time: every
//! value read from it (version, indices, counters) is treated as hostile,
//! and every access is bounds-checked against the mapping.
//!
//! Files: `layout` (the region's format and sizes), `shared_map` (the
//! bounds-checked shared mapping), `region` (GET_INFLIGHT_FD and
//! SET_INFLIGHT_FD: allocating and mapping the buffer), `queue` (one
//! queue's tracking while the ring runs) and `recovery` (what a ring
//! start resubmits after a reconnect).

mod layout;
mod queue;
mod recovery;
mod region;
mod shared_map;

pub use layout::{queue_region_size, INFLIGHT_ALIGNMENT, INFLIGHT_VERSION};
pub use queue::QueueInflight;
pub use recovery::Recovery;
pub use region::{Allocated, InflightError, InflightRegion};

#[cfg(test)]
mod tests;
