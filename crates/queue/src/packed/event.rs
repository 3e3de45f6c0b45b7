//! The event suppression structures of a packed ring (virtio 1.2, 2.8,
//! "Driver and Device Event Suppression" and "Event Suppression Structure
//! Format"):
//!
//! ```text
//! struct pvirtq_event_suppress {
//!     le16 desc_event_off_wrap; // bits 0-14 offset, bit 15 wrap counter
//!     le16 desc_event_flags;    // bits 0-1: ENABLE, DISABLE, DESC
//! };
//! ```
//!
//! The driver's structure (driver area) says when the device should send
//! used buffer notifications; the device's (device area) when the driver
//! should kick.

use std::sync::atomic::{fence, Ordering};

use vm_memory::{Address, Bytes, GuestMemory};

use super::{PackedError, PackedRing, Position};

/// "Enable events."
pub const EVENT_FLAG_ENABLE: u16 = 0;
/// "Disable events."
pub const EVENT_FLAG_DISABLE: u16 = 1;
/// "Enable events for a specific descriptor (as specified by Descriptor
/// Ring Change Event Offset/Wrap Counter). Only valid if
/// VIRTIO_F_RING_EVENT_IDX has been negotiated."
pub const EVENT_FLAG_DESC: u16 = 2;

/// One event suppression structure, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFlags {
    pub off_wrap: u16,
    pub flags: u16,
}

impl PackedRing {
    fn read_event<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        at: vm_memory::GuestAddress,
    ) -> Result<EventFlags, PackedError> {
        let mut raw = [0u8; 4];
        mem.read_slice(&mut raw, at)
            .map_err(|_| PackedError::BadEventArea(at.raw_value()))?;
        Ok(EventFlags {
            off_wrap: u16::from_le_bytes([raw[0], raw[1]]),
            flags: u16::from_le_bytes([raw[2], raw[3]]) & 3,
        })
    }

    /// The driver's event suppression structure.
    pub fn driver_event<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
    ) -> Result<EventFlags, PackedError> {
        self.read_event(mem, self.driver)
    }

    /// The device's event suppression structure (as last written).
    pub fn device_event<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
    ) -> Result<EventFlags, PackedError> {
        self.read_event(mem, self.device)
    }

    /// Ask the driver not to kick (`false`) or to kick again (`true`).
    /// Re-enabling returns whether buffers arrived meanwhile (a kick the
    /// driver may have skipped): the caller must serve them.
    pub fn set_notification<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        enable: bool,
    ) -> Result<bool, PackedError> {
        // ENABLE rather than DESC even with EVENT_IDX: a kick per batch
        // costs little next to a missed one, and the driver must honour
        // either.
        let flags = if enable {
            EVENT_FLAG_ENABLE
        } else {
            EVENT_FLAG_DISABLE
        };
        let at = self
            .device
            .checked_add(2)
            .ok_or(PackedError::BadEventArea(self.device.raw_value()))?;
        mem.store(flags.to_le(), at, Ordering::Release)
            .map_err(|_| PackedError::BadEventArea(self.device.raw_value()))?;
        if !enable {
            return Ok(false);
        }
        // The flag store before the look at the ring: a buffer the driver
        // made available after reading DISABLE is seen here.
        fence(Ordering::SeqCst);
        self.has_pending(mem)
    }

    /// Whether the driver wants a notification for the used descriptors
    /// written since the last decision; the next decision counts from here.
    pub fn needs_interrupt<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
    ) -> Result<bool, PackedError> {
        // Read the driver's structure only after the used flags are visible.
        fence(Ordering::SeqCst);
        let old = std::mem::replace(&mut self.signalled, self.used);
        let ev = self.driver_event(mem)?;
        Ok(decide(ev, self.event_idx, old, self.used, self.size))
    }
}

/// The notification decision, pure: used descriptors were written from
/// position `old` up to (not including) `new`.
pub(crate) fn decide(
    ev: EventFlags,
    event_idx: bool,
    old: Position,
    new: Position,
    size: u16,
) -> bool {
    match ev.flags {
        EVENT_FLAG_DISABLE => false,
        // "Only valid if VIRTIO_F_RING_EVENT_IDX has been negotiated":
        // without it (or with the reserved value 3) notify, never stay
        // silent on a driver that may be waiting.
        EVENT_FLAG_DESC if event_idx => {
            // "Event will only trigger when Ring Wrap Counter matches this
            // value and a descriptor is made available/used respectively":
            // notify when the driver's offset/wrap lies in the slots this
            // batch covered, [old, new) counted modulo 2 * size (the wrap
            // counter is the extra bit). A list's used descriptor covers
            // all of its slots, as in QEMU's and Linux's packed rings.
            let m = 2 * u32::from(size);
            let event = Position::decode(ev.off_wrap);
            // An offset past the ring (hostile) still gives a number; it
            // is reduced modulo the period like any other.
            let e = event.linear(size) % m;
            let (o, n) = (old.linear(size), new.linear(size));
            let span = (n + m - o) % m;
            let dist = (e + m - o) % m;
            dist < span
        }
        _ => true,
    }
}
