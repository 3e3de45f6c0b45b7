//! A complete virtio-blk PCI function, served over vfio-user.
//!
//! * `regs` — every register offset, named;
//! * `config_space` — PCI header, BARs, capability list;
//! * `status` — legal device-status transitions;
//! * `irq` — ISR, MSI-X table/PBA/masks, INTx;
//! * `device` — the legacy I/O block, the modern common/notify/ISR/device
//!   structures, and the kick → device core → interrupt path;
//! * `vfio` — the vfio-user server adapter.

pub mod config_space;
pub mod device;
pub mod irq;
pub mod regs;
pub mod status;
pub mod vfio;

pub use device::{NotifyPath, PciFunction};
pub use vfio::{serve, Error};
