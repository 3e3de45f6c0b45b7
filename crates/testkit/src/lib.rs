//! The one test kit of vblk.
//!
//! * [`mem`]: guest memory, plain (`GuestMemoryMmap`) or in a memfd that a
//!   vhost-user daemon can map too;
//! * [`ring`]: a split virtqueue the caller fills like a driver
//!   (descriptors, chains, indirect tables, avail ring, used ring, event-idx
//!   fields) — including every way a hostile driver can get it wrong;
//! * [`packed`]: the same for a packed virtqueue (wrap counters, buffer
//!   ids, event suppression structures);
//! * [`blk`]: virtio-blk requests (header, data, status) for every type;
//! * [`vhost_user`]: a vhost-user front end (rust-vmm `vhost`'s frontend,
//!   plus raw messages for what that API refuses to send);
//! * [`fuzz`]: what the fuzz bodies share (a byte reader, a leak check);
//! * `RecordingInterrupt` (feature `test-util`): an interrupt sink for the
//!   device core's tests.
//!
//! Used by the tests of every crate, the fuzz targets and `vblk torture`.

pub mod blk;
pub mod fuzz;
pub mod mem;
pub mod packed;
pub mod ring;
pub mod vhost_user;

#[cfg(feature = "test-util")]
mod irq;
#[cfg(feature = "test-util")]
pub use irq::RecordingInterrupt;

pub use mem::GuestRam;
pub use packed::PackedDriver;
pub use ring::{Desc, SplitRing, F_INDIRECT, F_NEXT, F_WRITE};
