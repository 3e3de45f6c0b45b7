//! The shared-memory layout of the inflight buffer: one region per queue,
//! a 16-byte header then one 16-byte `DescStateSplit` per descriptor head,
//! each region aligned as libvhost-user lays it out.

/// Byte alignment of each queue region (libvhost-user `INFLIGHT_ALIGNMENT`).
pub const INFLIGHT_ALIGNMENT: u64 = 64;
/// "The version of this region. It's 1 currently."
pub const INFLIGHT_VERSION: u16 = 1;

pub(super) const HDR: usize = 16;
pub(super) const DESC: usize = 16;
pub(super) const OFF_VERSION: usize = 8;
pub(super) const OFF_DESC_NUM: usize = 10;
pub(super) const OFF_LAST_BATCH_HEAD: usize = 12;
pub(super) const OFF_USED_IDX: usize = 14;
pub(super) const D_INFLIGHT: usize = 0;
pub(super) const D_NEXT: usize = 6;
pub(super) const D_COUNTER: usize = 8;

/// Size of one queue's region: `ALIGN_UP(sizeof(DescStateSplit) *
/// queue_size + sizeof(uint16_t), INFLIGHT_ALIGNMENT)` (libvhost-user).
/// Always at least the 16-byte header plus `queue_size` entries.
pub fn queue_region_size(queue_size: u16) -> u64 {
    let raw = 16 * u64::from(queue_size) + 2;
    raw.div_ceil(INFLIGHT_ALIGNMENT) * INFLIGHT_ALIGNMENT
}
