//! Guest memory mapped from a client's file descriptor, so that the client
//! cannot kill the daemon through it.
//!
//! Both transports receive guest RAM as (fd, offset, size) from a client
//! that may be hostile or compromised (a VMM): vfio-user's DMA_MAP and
//! vhost-user's SET_MEM_TABLE. Two things then turn into signals in the
//! device's threads:
//!
//! * **SIGBUS**: the mapping reaches past the end of the file, either from
//!   the start (a 4 MiB map of a 4 KiB memfd) or because the client shrinks
//!   the file afterwards. [`map_guest_region`] refuses the first case
//!   (`fstat`). The second cannot be refused when the fd is not sealed
//!   against shrinking (`F_SEAL_SHRINK`, which QEMU's memfd backends set),
//!   so it is contained instead: see below.
//! * **SIGSEGV**: the device writes a region the client mapped read-only.
//!   Read-only regions are mapped `MAP_SHARED` + `PROT_READ`: the device
//!   sees the client's current bytes (a `MAP_PRIVATE` copy would go stale
//!   after the device's first write to it) and can never write the client's
//!   file. `GuestMemoryMmap` does not look at the access mode
//!   (`GuestMemory::check_range(.., Permissions::Write)` is implemented for
//!   plain regions by discarding `Permissions`), so the page protection is
//!   what enforces it, and the resulting fault is contained like a SIGBUS.
//!
//! Containment: a process-wide SIGBUS/SIGSEGV handler looks the fault
//! address up in a fixed, lock-free table of registered guest mappings.
//! Inside one, it maps an anonymous zero page over the faulting page with
//! `mmap(MAP_FIXED)` (the access is then retried and succeeds on scratch
//! memory that is not the client's) and records the fault on the mapping;
//! [`GuestMapping::faults`] reports it and the transport marks the device
//! DEVICE_NEEDS_RESET. A fault anywhere else puts the previous disposition
//! back (Rust's stack-overflow handler, or the default action) and lets the
//! access fault again, so real crashes still crash.

mod error;
mod faults;
mod handler;
mod mapping;
mod registry;

pub use error::MapError;
pub use faults::Faults;
pub use mapping::{map_guest_region, GuestMapping};
pub use registry::{contained_faults, faulted_within, MAX_MAPPINGS};
