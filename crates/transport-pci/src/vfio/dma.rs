//! Guest memory from DMA_MAP / DMA_UNMAP: the table of windows the client
//! mapped, the swap of the `GuestMemoryAtomic` the queues read, and the
//! check for a mapping that broke under the device.

use std::io;

use vblk_memory::GuestMapping;
use vm_memory::{GuestAddressSpace, GuestMemoryMmap};

use super::Backend;
use crate::regs::status::{DEVICE_NEEDS_RESET, DRIVER_OK};

/// One DMA window the client mapped.
pub(super) struct DmaEntry {
    pub(super) address: u64,
    pub(super) size: u64,
    /// None: mapped without an fd (not reachable; kept so that its unmap
    /// matches).
    pub(super) mapping: Option<GuestMapping>,
}

impl Backend {
    /// A guest mapping broke under the device (its file shrank, or the
    /// device wrote a read-only region): the fault was contained, the
    /// bytes the device saw or wrote are scratch. "The device SHOULD set
    /// DEVICE_NEEDS_RESET when it enters an error state that a reset is
    /// needed" — and again after each re-initialisation while the client
    /// keeps the broken mapping.
    ///
    /// The queue threads make the same check after each round (a contained
    /// fault breaks their ring, which raises DEVICE_NEEDS_RESET with a
    /// configuration interrupt); this one covers accesses from this thread
    /// and names the mapping.
    pub(super) fn check_guest_memory(&mut self) {
        let status = self.func.status();
        if status & DRIVER_OK == 0 || status & DEVICE_NEEDS_RESET != 0 {
            return;
        }
        let broken = self.dma.iter().find_map(|e| {
            let m = e.mapping.as_ref()?;
            let f = m.faults();
            (!f.none()).then(|| format!("guest memory {:#x}+{:#x}: {f}", e.address, e.size))
        });
        if let Some(why) = broken {
            self.func.needs_reset(&why);
        }
    }

    /// Replace the guest memory with `f(current)`.
    pub(super) fn update_memory(
        &self,
        f: impl FnOnce(&GuestMemoryMmap) -> io::Result<GuestMemoryMmap>,
    ) -> io::Result<()> {
        let atomic = self.func.memory().clone();
        let guard = atomic
            .lock()
            .map_err(|_| io::Error::other("guest memory lock poisoned"))?;
        let current = atomic.memory();
        let new = f(&current)?;
        guard.replace(new);
        // `current` (the old snapshot) drops here, before the caller drops
        // any GuestMapping: its region is then no longer referenced.
        Ok(())
    }
}
