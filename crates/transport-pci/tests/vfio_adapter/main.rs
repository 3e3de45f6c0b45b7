//! The vfio-user adapter without a socket: the messages QEMU sends
//! (DMA_MAP/UNMAP, SET_IRQS in QEMU's shapes, DEVICE_RESET, region
//! accesses) delivered straight to the `vblk_vfio_user::Backend`, with real eventfds
//! and guest RAM in a memfd.
//!
//! Shared here: the backend on a memory disk and the DMA map of all guest
//! RAM. The tests, by message, are in the modules below.

#[path = "../common/mod.rs"]
mod common;

// Where each message's tests live: SET_IRQS for INTx and MSI-X (`irqs`);
// DMA_MAP / DMA_UNMAP and guest memory faults (`dma`); region accesses
// (`regions`); DEVICE_RESET (`reset`).
mod dma;
mod irqs;
mod regions;
mod reset;

use std::sync::Arc;

use common::*;
use vblk_transport_pci::vfio::Backend;
use vblk_transport_pci::PciFunction;
use vblk_vfio_user::{Backend as _, DmaMapFlags};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

const DISK: u64 = 1 << 20;
const RAM: u64 = 4 << 20;

fn backend(
    queues: u16,
) -> (
    Backend,
    Arc<vblk_device::BlkDevice>,
    vblk_backend::MemBackend,
) {
    let (dev, mem_backend) = device(DISK, queues);
    let f = PciFunction::new(dev.clone(), GuestMemoryAtomic::new(GuestMemoryMmap::new())).unwrap();
    (Backend::new(f), dev, mem_backend)
}

fn map_all(b: &mut Backend, ram: &GuestRam) {
    b.dma_map(
        DmaMapFlags::READ_WRITE,
        0,
        0,
        ram.size,
        Some(ram.file.try_clone().unwrap()),
    )
    .unwrap();
}
