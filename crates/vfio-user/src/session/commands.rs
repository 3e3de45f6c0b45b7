//! Every command after VERSION: its payload size, fields and fds checked
//! (region accesses against the region and `max_data_xfer_size`, DMA maps
//! against `max_dma_maps`) before the backend sees it, and the reply body.

use std::fs::File;
use std::io;

use super::{einval, exact, no_fds, Session};
use crate::proto::{self, cmd, size, DmaMapFlags, DmaUnmapFlags, Header, Reader};
use crate::{refuse, Backend};

impl Session {
    pub(super) fn dispatch<B: Backend + ?Sized>(
        &mut self,
        b: &mut B,
        h: &Header,
        p: &[u8],
        fds: Vec<File>,
    ) -> io::Result<Vec<u8>> {
        // "This is the initial message sent by the client after the socket
        // connection is established" / "Upon establishing a connection, the
        // client must send a VFIO_USER_VERSION message": anything else first
        // is refused (with a reply, so the client can tell).
        if h.command == cmd::VERSION {
            no_fds(&fds, "VERSION")?;
            return self.version(p);
        }
        if !self.negotiated {
            return Err(einval(format!(
                "command {} before VERSION (the first message must be VERSION)",
                h.command
            )));
        }
        let mut r = Reader::new(p);
        match h.command {
            cmd::DMA_MAP => {
                exact(p, size::DMA_MAP, "DMA_MAP")?;
                let argsz = r.u32().unwrap_or(0);
                let fl = r.u32().unwrap_or(0);
                let offset = r.u64().unwrap_or(0);
                let address = r.u64().unwrap_or(0);
                let sz = r.u64().unwrap_or(0);
                if (argsz as usize) < size::DMA_MAP {
                    return Err(einval(format!("DMA_MAP argsz {argsz}")));
                }
                if fl & !DmaMapFlags::READ_WRITE.bits() != 0 {
                    return Err(einval(format!("DMA_MAP flags {fl:#x}")));
                }
                if fds.len() > 1 {
                    return Err(einval(format!("DMA_MAP with {} fds", fds.len())));
                }
                if sz == 0 {
                    return Err(einval("DMA_MAP of 0 bytes"));
                }
                if address.checked_add(sz - 1).is_none() {
                    return Err(einval("DMA_MAP wraps the address space"));
                }
                if self.dma_maps >= self.limits.max_dma_maps {
                    return Err(refuse(
                        libc::ENOSPC,
                        format!("already {} DMA maps (max_dma_maps)", self.dma_maps),
                    ));
                }
                b.dma_map(DmaMapFlags(fl), offset, address, sz, fds.into_iter().next())?;
                self.dma_maps += 1;
                Ok(Vec::new())
            }
            cmd::DMA_UNMAP => {
                exact(p, size::DMA_UNMAP, "DMA_UNMAP")?;
                no_fds(&fds, "DMA_UNMAP")?;
                let _argsz = r.u32();
                let fl = r.u32().unwrap_or(0);
                let address = r.u64().unwrap_or(0);
                let sz = r.u64().unwrap_or(0);
                let fl = DmaUnmapFlags(fl);
                if fl.contains(DmaUnmapFlags::GET_DIRTY_BITMAP) {
                    return Err(refuse(libc::ENOTSUP, "dirty page tracking"));
                }
                if fl.bits() & !DmaUnmapFlags::UNMAP_ALL.bits() != 0 {
                    return Err(einval(format!("DMA_UNMAP flags {:#x}", fl.bits())));
                }
                let all = fl.contains(DmaUnmapFlags::UNMAP_ALL);
                if all && (address != 0 || sz != 0) {
                    return Err(einval("DMA_UNMAP all with an address or size"));
                }
                b.dma_unmap(fl, address, sz)?;
                self.dma_maps = if all {
                    0
                } else {
                    self.dma_maps.saturating_sub(1)
                };
                // "The server responds with the original DMA entry in the
                // request."
                Ok(p.to_vec())
            }
            cmd::DEVICE_GET_INFO => {
                exact(p, size::DEVICE_INFO, "DEVICE_GET_INFO")?;
                no_fds(&fds, "DEVICE_GET_INFO")?;
                let argsz = r.u32().unwrap_or(0);
                if (argsz as usize) < size::DEVICE_INFO {
                    return Err(einval(format!("DEVICE_GET_INFO argsz {argsz}")));
                }
                let i = b.device_info();
                let mut w = proto::Writer::default();
                w.u32(size::DEVICE_INFO as u32)
                    .u32(i.flags)
                    .u32(i.num_regions)
                    .u32(i.num_irqs);
                Ok(w.b)
            }
            cmd::DEVICE_GET_REGION_INFO => {
                exact(p, size::REGION_INFO, "DEVICE_GET_REGION_INFO")?;
                no_fds(&fds, "DEVICE_GET_REGION_INFO")?;
                let argsz = r.u32().unwrap_or(0);
                let _flags = r.u32();
                let index = r.u32().unwrap_or(u32::MAX);
                if (argsz as usize) < size::REGION_INFO {
                    return Err(einval(format!("DEVICE_GET_REGION_INFO argsz {argsz}")));
                }
                let ri = b
                    .region_info(index)
                    .ok_or_else(|| einval(format!("no region {index}")))?;
                let mut w = proto::Writer::default();
                // argsz, flags, index, cap_offset, size, offset (no caps,
                // nothing mmap-able).
                w.u32(size::REGION_INFO as u32)
                    .u32(ri.flags)
                    .u32(index)
                    .u32(0)
                    .u64(ri.size)
                    .u64(0);
                Ok(w.b)
            }
            cmd::DEVICE_GET_IRQ_INFO => {
                exact(p, size::IRQ_INFO, "DEVICE_GET_IRQ_INFO")?;
                no_fds(&fds, "DEVICE_GET_IRQ_INFO")?;
                let argsz = r.u32().unwrap_or(0);
                let _flags = r.u32();
                let index = r.u32().unwrap_or(u32::MAX);
                if (argsz as usize) < size::IRQ_INFO {
                    return Err(einval(format!("DEVICE_GET_IRQ_INFO argsz {argsz}")));
                }
                let ii = b
                    .irq_info(index)
                    .ok_or_else(|| einval(format!("no irq index {index}")))?;
                let mut w = proto::Writer::default();
                w.u32(size::IRQ_INFO as u32)
                    .u32(ii.flags)
                    .u32(index)
                    .u32(ii.count);
                Ok(w.b)
            }
            cmd::DEVICE_SET_IRQS => self.set_irqs(b, p, fds),
            cmd::REGION_READ => {
                exact(p, size::REGION_ACCESS, "REGION_READ")?;
                no_fds(&fds, "REGION_READ")?;
                let offset = r.u64().unwrap_or(0);
                let region = r.u32().unwrap_or(u32::MAX);
                let count = r.u32().unwrap_or(0);
                self.check_access(b, region, offset, count, false)?;
                // Bounded: count <= the region's size and <= max_data_xfer_size.
                let mut data = vec![0u8; count as usize];
                if count > 0 {
                    b.region_read(region, offset, &mut data)?;
                }
                let mut w = proto::Writer::default();
                w.u64(offset).u32(region).u32(count).bytes(&data);
                Ok(w.b)
            }
            cmd::REGION_WRITE => {
                no_fds(&fds, "REGION_WRITE")?;
                if p.len() < size::REGION_ACCESS {
                    return Err(einval(format!(
                        "REGION_WRITE: payload of {} bytes",
                        p.len()
                    )));
                }
                let offset = r.u64().unwrap_or(0);
                let region = r.u32().unwrap_or(u32::MAX);
                let count = r.u32().unwrap_or(0);
                let data = r.rest();
                if data.len() != count as usize {
                    return Err(einval(format!(
                        "REGION_WRITE: count {count} but {} data bytes",
                        data.len()
                    )));
                }
                self.check_access(b, region, offset, count, true)?;
                if count > 0 {
                    b.region_write(region, offset, data)?;
                }
                let mut w = proto::Writer::default();
                w.u64(offset).u32(region).u32(count);
                Ok(w.b)
            }
            cmd::DEVICE_RESET => {
                // "Neither the request or reply have a payload."
                exact(p, 0, "DEVICE_RESET")?;
                no_fds(&fds, "DEVICE_RESET")?;
                b.reset()?;
                Ok(Vec::new())
            }
            cmd::DEVICE_GET_REGION_IO_FDS => {
                exact(p, size::REGION_IO_FDS, "DEVICE_GET_REGION_IO_FDS")?;
                // Optional ("an optional feature intended for performance
                // improvements"); QEMU's client does not send it.
                Err(refuse(libc::ENOTSUP, "DEVICE_GET_REGION_IO_FDS"))
            }
            cmd::DMA_READ | cmd::DMA_WRITE => Err(refuse(
                libc::ENOTSUP,
                "DMA_READ/DMA_WRITE go from server to client",
            )),
            // REGION_WRITE_MULTI is only sent when the server advertises
            // "write_multiple"; we do not.
            other => Err(refuse(libc::ENOTSUP, format!("command {other}"))),
        }
    }

    fn check_access<B: Backend + ?Sized>(
        &self,
        b: &B,
        region: u32,
        offset: u64,
        count: u32,
        write: bool,
    ) -> io::Result<()> {
        // "The count field must not exceed the value of max_data_xfer_size".
        if count > self.limits.max_data_xfer_size {
            return Err(refuse(
                libc::E2BIG,
                format!(
                    "access of {count} bytes, max_data_xfer_size is {}",
                    self.limits.max_data_xfer_size
                ),
            ));
        }
        let ri = b
            .region_info(region)
            .ok_or_else(|| einval(format!("no region {region}")))?;
        let need = if write {
            proto::REGION_INFO_FLAG_WRITE
        } else {
            proto::REGION_INFO_FLAG_READ
        };
        if count > 0 && ri.flags & need == 0 {
            return Err(einval(format!(
                "region {region} does not allow this access"
            )));
        }
        match offset.checked_add(u64::from(count)) {
            Some(end) if end <= ri.size => Ok(()),
            _ => Err(einval(format!(
                "region {region}: {count} bytes at {offset:#x} outside its {:#x} bytes",
                ri.size
            ))),
        }
    }
}
