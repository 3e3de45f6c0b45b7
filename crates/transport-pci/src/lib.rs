//! A complete virtio-blk PCI function, served over vfio-user.
//!
//! One job per module:
//! * [`regs`] — every register offset and constant, named;
//! * [`config_space`] — PCI header, BARs (sizing), capability list;
//! * [`status`] — the device-status transition table and FEATURES_OK rule;
//! * `device_cfg` — the device config as it changes: resize
//!   notifications, generation, the driver's `writeback` writes;
//! * [`legacy`] — BAR0, the legacy virtio I/O registers;
//! * [`modern`] — BAR4, common cfg / notify / ISR / device cfg;
//! * [`msix`] — the MSI-X table, PBA and masks (BAR1);
//! * [`line`] — what an interrupt signals (a client eventfd);
//! * [`intx`] — the INTA# line over a vfio eventfd;
//! * [`irq`] — routing "queue n / config" to an MSI-X vector or INTx + ISR;
//! * [`function`] — the function: config space and BAR routing, reset,
//!   status, and kick → the queue threads (device core runners);
//! * [`vfio`] — the vfio-user server, a thin adapter over [`function`].
//!
//! Everything but [`vfio`] is plain state driven by register accesses, so
//! the tests replay Linux's register sequences without a socket.

pub mod config_space;
mod device_cfg;
pub mod function;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod intx;
pub mod irq;
pub mod legacy;
pub mod line;
pub mod modern;
pub mod msix;
pub mod regs;
pub mod status;
pub mod vfio;

pub use function::{NotifyPath, PciFunction};
pub use vfio::{serve, Error};
