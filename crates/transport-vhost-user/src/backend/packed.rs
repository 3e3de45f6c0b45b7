//! Packed virtqueues over vhost-user (`VIRTIO_F_RING_PACKED`).
//!
//! * SET_VRING_ADDR: the descriptor ring, the driver area (in the "avail"
//!   field) and the device area (in the "used" field); the two event
//!   suppression areas are 4 bytes each.
//! * SET_VRING_BASE / GET_VRING_BASE (vhost-user.rst, "Vring descriptor
//!   indices for packed virtqueues"): bits 0–14 the last avail index,
//!   bit 15 its wrap counter, bits 16–30 the last used index, bit 31 its
//!   wrap counter. QEMU (7.2 and later) sends and expects all 32 bits; a
//!   front end that sends only the avail half starts with used = avail.
//! * The inflight region (INFLIGHT_SHMFD) has a packed layout of its own
//!   that vblk does not implement: for a packed ring the region is left
//!   alone (nothing logged, nothing resubmitted). After a crash, requests
//!   that were in flight on a packed ring are not resubmitted.

use vblk_device::features;

use super::Conn;

/// "The maximum Queue Size value is 2^15" for packed rings.
const PACKED_MAX_SIZE: u16 = 1 << 15;

impl Conn {
    /// The front end accepted packed rings.
    pub(super) fn packed(&self) -> bool {
        self.acked_features & features::bit(features::VIRTIO_F_RING_PACKED) != 0
    }

    /// Bytes of (descriptors, avail ring or driver area, used ring or
    /// device area) of a ring of `size`.
    pub(super) fn ring_area_sizes(&self, size: u16) -> (u64, u64, u64) {
        let n = u64::from(size);
        if self.packed() {
            // virtio 1.2, 2.8.10: 16 bytes a descriptor; each event
            // suppression structure is `le16 off_wrap; le16 flags`.
            (16 * n, 4, 4)
        } else {
            // virtio 1.2, 2.7: descriptor table 16 * size, available ring
            // 6 + 2 * size, used ring 6 + 8 * size bytes (with EVENT_IDX
            // fields).
            (16 * n, 6 + 2 * n, 6 + 8 * n)
        }
    }

    /// The positions a packed ring starts at. A front end that sends only
    /// the avail half (bits 16–31 zero, as older vhost-user documents
    /// describe) gets the used position equal to it: a ring starts with
    /// nothing in flight (fresh, or after GET_VRING_BASE waited for every
    /// request), and a real used position of slot 0 in lap 0 with the avail
    /// half also 0 gives the same value.
    pub(super) fn packed_start_base(&self, base: u32) -> u32 {
        if base >> 16 == 0 {
            base | (base << 16)
        } else {
            base
        }
    }

    /// Check a SET_VRING_BASE value for the negotiated layout.
    pub(super) fn check_base(&self, base: u32) -> Result<(), String> {
        if self.packed() {
            // Indices are checked against the ring size at start.
            let (a, u) = (base & 0x7fff, (base >> 16) & 0x7fff);
            if a >= u32::from(PACKED_MAX_SIZE) || u >= u32::from(PACKED_MAX_SIZE) {
                return Err(format!("packed base {base:#x} is past any ring"));
            }
            Ok(())
        } else if base > u32::from(u16::MAX) {
            // Split rings: a 16-bit avail index.
            Err(format!("base {base} exceeds 16 bits"))
        } else {
            Ok(())
        }
    }
}
