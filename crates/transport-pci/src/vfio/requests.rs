//! Each vfio-user request the session passes on, answered for the
//! function: device, region and irq info, region reads and writes (the
//! function's config space and BARs), DMA_MAP / DMA_UNMAP, DEVICE_RESET and
//! SET_IRQS.

use std::fs::File;
use std::io;

use vblk_memory::map_guest_region;
use vblk_vfio_user::proto::{DEVICE_FLAGS_PCI, DEVICE_FLAGS_RESET};
use vblk_vfio_user::{refuse, DeviceInfo, DmaMapFlags, DmaUnmapFlags, IrqInfo, RegionInfo};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::{einval, Backend, DmaEntry};
use crate::regs::vfio::*;

impl vblk_vfio_user::Backend for Backend {
    fn device_info(&self) -> DeviceInfo {
        DeviceInfo {
            flags: DEVICE_FLAGS_PCI | DEVICE_FLAGS_RESET,
            num_regions: NUM_REGIONS,
            num_irqs: IRQ_REQ + 1,
        }
    }

    fn region_info(&self, index: u32) -> Option<RegionInfo> {
        if index >= NUM_REGIONS {
            return None;
        }
        let size = self.region_size(index);
        Some(RegionInfo {
            flags: if size > 0 {
                REGION_FLAG_READ | REGION_FLAG_WRITE
            } else {
                0
            },
            size,
        })
    }

    fn irq_info(&self, index: u32) -> Option<IrqInfo> {
        let (flags, count) = match index {
            IRQ_INTX => (
                IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE | IRQ_INFO_AUTOMASKED,
                1,
            ),
            IRQ_MSI => (IRQ_INFO_EVENTFD, 0),
            IRQ_MSIX => (
                IRQ_INFO_EVENTFD | IRQ_INFO_NORESIZE,
                self.func.msix_layout().vectors as u32,
            ),
            IRQ_ERR => (IRQ_INFO_EVENTFD, 1),
            IRQ_REQ => (IRQ_INFO_EVENTFD, 0),
            _ => return None,
        };
        Some(IrqInfo { flags, count })
    }

    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        self.touch();
        self.check_access(region, offset, data.len())?;
        if data.is_empty() {
            return Ok(()); // nothing to read (and no read side effect, e.g. ISR)
        }
        match region {
            REGION_CONFIG => self.func.config_read(offset, data),
            _ => self.func.bar_read(region as usize, offset, data),
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        self.touch();
        self.check_access(region, offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        match region {
            REGION_CONFIG => self.func.config_write(offset, data),
            _ => self.func.bar_write(region as usize, offset, data),
        }
        // A kick may have run into a broken guest mapping.
        self.check_guest_memory();
        Ok(())
    }

    fn dma_map(
        &mut self,
        flags: DmaMapFlags,
        offset: u64,
        address: u64,
        size: u64,
        fd: Option<File>,
    ) -> io::Result<()> {
        self.touch();
        let end = address
            .checked_add(size)
            .filter(|_| size > 0)
            .ok_or_else(|| einval("DMA region empty or wrapping"))?;
        // "A command to map over an existing region must be failed by the
        // server with EEXIST set in error field in the reply."
        if let Some(e) = self
            .dma
            .iter()
            .find(|e| address < e.address.saturating_add(e.size) && e.address < end)
        {
            return Err(refuse(
                libc::EEXIST,
                format!(
                    "DMA region {address:#x}+{size:#x} overlaps {:#x}+{:#x}",
                    e.address, e.size
                ),
            ));
        }
        let Some(fd) = fd else {
            // Without a file descriptor the memory is only reachable through
            // DMA_READ/WRITE messages, which we do not use. QEMU maps its
            // ROMs this way; guest RAM must come from a shared memory
            // backend.
            let msg =
                format!("vfio-user: DMA region {address:#x}+{size:#x} has no fd; not reachable");
            if size >= 16 << 20 {
                log::warn!("{msg} (guest RAM needs -object memory-backend-memfd,share=on)");
            } else {
                log::debug!("{msg}");
            }
            self.dma.push(DmaEntry {
                address,
                size,
                mapping: None,
            });
            return Ok(());
        };
        // Read-only regions are mapped MAP_SHARED + PROT_READ: the device
        // sees the client's current bytes and can never write them (a
        // device write is a contained fault; see check_guest_memory).
        let writable = flags.contains(DmaMapFlags::WRITE);
        let mapping = map_guest_region(fd, offset, size, GuestAddress(address), writable)
            .map_err(|e| refuse(e.errno(), format!("DMA region {address:#x}+{size:#x}: {e}")))?;
        let region = mapping.region();
        self.update_memory(|cur| {
            cur.insert_region(region).map_err(|e| {
                refuse(
                    libc::EEXIST,
                    format!("DMA region {address:#x}+{size:#x}: {e}"),
                )
            })
        })?;
        log::debug!(
            "vfio-user: mapped guest memory {address:#x}+{size:#x}{}{}",
            if writable { "" } else { " read-only" },
            if mapping.sealed() {
                ""
            } else {
                " (fd not sealed)"
            }
        );
        self.dma.push(DmaEntry {
            address,
            size,
            mapping: Some(mapping),
        });
        self.func.memory_added();
        Ok(())
    }

    fn dma_unmap(&mut self, flags: DmaUnmapFlags, address: u64, size: u64) -> io::Result<()> {
        self.touch();
        // "if the file descriptor is mapped then the server must release
        // all references to that DMA region before replying, which
        // potentially includes in-flight DMA transactions": the queue
        // threads finish their I/O, drop their memory snapshot and wait
        // until the memory table has changed.
        let _paused = self.func.pause();
        if flags.contains(DmaUnmapFlags::UNMAP_ALL) {
            self.update_memory(|_| Ok(GuestMemoryMmap::new()))?;
            self.dma.clear(); // munmap, now that nothing references them
            return Ok(());
        }
        // "The address and size of the DMA region being unmapped must match
        // exactly a previous mapping."
        let i = self
            .dma
            .iter()
            .position(|e| e.address == address && e.size == size)
            .ok_or_else(|| {
                einval(format!(
                    "DMA_UNMAP {address:#x}+{size:#x} does not match a mapping exactly"
                ))
            })?;
        if self.dma.get(i).is_some_and(|e| e.mapping.is_some()) {
            self.update_memory(|cur| {
                cur.remove_region(GuestAddress(address), size)
                    .map(|(new, _)| new)
                    .map_err(|e| einval(format!("DMA_UNMAP {address:#x}+{size:#x}: {e}")))
            })?;
        }
        self.dma.remove(i); // munmap, now that nothing references it
        Ok(())
    }

    fn reset(&mut self) -> io::Result<()> {
        self.touch();
        // The function reset stops the queue threads (each finishes its
        // in-flight requests) before queues, vectors and eventfds go.
        self.intx_unmask = None;
        self.intx_mask = None;
        self._err_eventfd = None;
        self.func.function_reset();
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> io::Result<()> {
        self.touch();
        let available = match index {
            IRQ_INTX | IRQ_ERR => 1,
            IRQ_MSIX => self.func.msix_layout().vectors as u64,
            _ => 0,
        };
        if u64::from(start) + u64::from(count) > available {
            return Err(einval(format!(
                "SET_IRQS index {index}: vectors {start}+{count} of {available}"
            )));
        }
        match index {
            IRQ_INTX => self.set_intx(flags, count, fds),
            IRQ_MSIX => self.set_msix(flags, start, count, fds),
            IRQ_ERR => {
                if flags & IRQ_SET_ACTION_TRIGGER != 0 {
                    self._err_eventfd = fds.into_iter().next();
                }
                Ok(())
            }
            _ => Ok(()), // MSI and REQ have no vectors: only "disable" gets here
        }
    }

    fn disconnected(&mut self) {
        self.finish();
    }
}
