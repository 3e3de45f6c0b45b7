//! One connection's protocol state and message handling, without a socket.

use std::fs::File;
use std::io;

use crate::proto::{self, cmd, flags, irq_set, size, DmaMapFlags, DmaUnmapFlags, Header, Reader};
use crate::{errno_of, refuse, Backend};

/// Limits the server advertises in its VERSION reply and enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// "max_msg_fds: Maximum number of file descriptors that can be
    /// received by the sender in one message." QEMU sends up to this many
    /// MSI-X eventfds per SET_IRQS (its own cap, VFIO_USER_MAX_MAX_FDS, is
    /// 16).
    pub max_msg_fds: usize,
    /// "max_data_xfer_size: Maximum count for data transfer messages".
    pub max_data_xfer_size: u32,
    /// "max_dma_maps: Maximum number DMA map windows that can be valid
    /// simultaneously." Each holds an fd and a mapping.
    pub max_dma_maps: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_msg_fds: 16,
            max_data_xfer_size: 1 << 20,
            max_dma_maps: 512,
        }
    }
}

impl Limits {
    /// The largest message accepted: a REGION_WRITE of
    /// `max_data_xfer_size` bytes. (VERSION's capabilities JSON is far
    /// smaller; the fixed-size commands are tiny.)
    pub fn max_msg_size(&self) -> usize {
        proto::HEADER_SIZE + size::REGION_ACCESS + self.max_data_xfer_size as usize
    }
}

/// A header whose message cannot be read whole: the connection is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message size {0} is smaller than its header")]
    TooSmall(u32),
    #[error("message size {0} exceeds the maximum of {1}")]
    TooLarge(u32, usize),
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Session {
    limits: Limits,
    negotiated: bool,
    dma_maps: u32,
}

/// The capabilities JSON of the VERSION reply, with its NUL.
fn capabilities(l: &Limits) -> Vec<u8> {
    // Migration is absent: none is offered.
    let v = serde_json::json!({
        "capabilities": {
            "max_msg_fds": l.max_msg_fds,
            "max_data_xfer_size": l.max_data_xfer_size,
            "max_dma_maps": l.max_dma_maps,
        }
    });
    let mut b = v.to_string().into_bytes();
    b.push(0);
    b
}

fn einval(msg: impl Into<String>) -> io::Error {
    refuse(libc::EINVAL, msg)
}

/// The payload must be exactly `want` bytes.
fn exact(p: &[u8], want: usize, what: &str) -> io::Result<()> {
    if p.len() != want {
        return Err(einval(format!(
            "{what}: payload of {} bytes, the command has {want}",
            p.len()
        )));
    }
    Ok(())
}

fn no_fds(fds: &[File], what: &str) -> io::Result<()> {
    if !fds.is_empty() {
        return Err(einval(format!(
            "{what} with {} file descriptors",
            fds.len()
        )));
    }
    Ok(())
}

impl Session {
    pub fn new(limits: Limits) -> Self {
        Session {
            limits,
            negotiated: false,
            dma_maps: 0,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// VERSION has been answered.
    pub fn negotiated(&self) -> bool {
        self.negotiated
    }

    /// DMA windows currently mapped.
    pub fn dma_maps(&self) -> u32 {
        self.dma_maps
    }

    /// The payload length of a message with header `h`, if it can be read
    /// whole; otherwise the connection must be dropped (no resync is
    /// possible on a stream whose message sizes cannot be trusted).
    pub fn payload_len(&self, h: &Header) -> Result<usize, FrameError> {
        let size = h.size as usize;
        if size < proto::HEADER_SIZE {
            return Err(FrameError::TooSmall(h.size));
        }
        let max = self.limits.max_msg_size();
        if size > max {
            return Err(FrameError::TooLarge(h.size, max));
        }
        Ok(size - proto::HEADER_SIZE)
    }

    /// Handle one whole message: `payload` is exactly what its header's
    /// size announced, `fds` everything that came with it (closed here
    /// unless a command takes them), `fds_truncated` if the kernel had to
    /// drop some (MSG_CTRUNC). Returns the reply to send, or `None` when
    /// the client asked for none ("No_reply ... indicates that no reply is
    /// needed for this command") or sent a reply.
    pub fn handle<B: Backend + ?Sized>(
        &mut self,
        backend: &mut B,
        h: &Header,
        payload: &[u8],
        fds: Vec<File>,
        fds_truncated: bool,
    ) -> Option<Vec<u8>> {
        match h.kind() {
            flags::TYPE_COMMAND => {}
            flags::TYPE_REPLY => {
                // We never send commands, so there is nothing to match a
                // reply to: consumed and ignored.
                log::debug!("vfio-user: unexpected reply {} ignored", h.id);
                return None;
            }
            _ => return self.answer(h, Err(einval("unknown message type"))),
        }
        let r = if fds_truncated {
            Err(einval(format!(
                "more than {} file descriptors in one message",
                self.limits.max_msg_fds
            )))
        } else {
            self.dispatch(backend, h, payload, fds)
        };
        self.answer(h, r)
    }

    fn answer(&self, h: &Header, r: io::Result<Vec<u8>>) -> Option<Vec<u8>> {
        let (reply_flags, error, body) = match r {
            Ok(body) => (flags::TYPE_REPLY, 0, body),
            Err(e) => {
                let errno = errno_of(&e);
                if h.no_reply() {
                    log::warn!("vfio-user: command {} (no reply wanted): {e}", h.command);
                } else {
                    log::debug!("vfio-user: command {} refused: {e}", h.command);
                }
                // "If an error occurs, the reply message must only include
                // the reply header."
                (flags::TYPE_REPLY | flags::ERROR, errno as u32, Vec::new())
            }
        };
        if h.no_reply() {
            return None;
        }
        let rh = Header {
            id: h.id,
            command: h.command,
            size: u32::try_from(proto::HEADER_SIZE + body.len()).unwrap_or(u32::MAX),
            flags: reply_flags,
            error,
        };
        let mut out = rh.encode().to_vec();
        out.extend_from_slice(&body);
        Some(out)
    }

    fn dispatch<B: Backend + ?Sized>(
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

    fn version(&mut self, p: &[u8]) -> io::Result<Vec<u8>> {
        if self.negotiated {
            return Err(einval("a second VERSION"));
        }
        if p.len() < size::VERSION_MIN {
            return Err(einval(format!("VERSION: payload of {} bytes", p.len())));
        }
        let mut r = Reader::new(p);
        let major = r.u16().unwrap_or(u16::MAX);
        let minor = r.u16().unwrap_or(0);
        // "version data ... (including terminating NUL). Optional."
        let data = r.rest();
        if !data.is_empty() {
            let Some((&0, json)) = data.split_last() else {
                return Err(einval("VERSION data without its terminating NUL"));
            };
            if json.contains(&0) {
                return Err(einval("VERSION data with a NUL inside"));
            }
            let v: serde_json::Value = serde_json::from_slice(json)
                .map_err(|e| einval(format!("VERSION data is not JSON: {e}")))?;
            let ok = v.as_object().is_some_and(|o| {
                o.get("capabilities")
                    .is_none_or(serde_json::Value::is_object)
            });
            if !ok {
                return Err(einval("VERSION capabilities are not a JSON object"));
            }
        }
        // "The major version in the reply must be the same as proposed":
        // we only speak 0.
        if major != 0 {
            return Err(refuse(
                libc::ENOTSUP,
                format!("protocol {major}.{minor}; this server speaks 0.0"),
            ));
        }
        log::debug!("vfio-user: client protocol {major}.{minor}");
        self.negotiated = true;
        let mut w = proto::Writer::default();
        // "The minor version in the reply must be equal to or less than the
        // minor version proposed."
        w.u16(0).u16(0).bytes(&capabilities(&self.limits));
        Ok(w.b)
    }

    fn set_irqs<B: Backend + ?Sized>(
        &mut self,
        b: &mut B,
        p: &[u8],
        fds: Vec<File>,
    ) -> io::Result<Vec<u8>> {
        if p.len() < size::SET_IRQS {
            return Err(einval(format!("SET_IRQS: payload of {} bytes", p.len())));
        }
        let mut r = Reader::new(p);
        let argsz = r.u32().unwrap_or(0);
        let fl = r.u32().unwrap_or(0);
        let index = r.u32().unwrap_or(u32::MAX);
        let start = r.u32().unwrap_or(0);
        let count = r.u32().unwrap_or(0);
        if (argsz as usize) < size::SET_IRQS {
            return Err(einval(format!("SET_IRQS argsz {argsz}")));
        }
        // "The flags are mutually exclusive for both sets."
        let data = fl & irq_set::DATA_MASK;
        let action = fl & irq_set::ACTION_TYPE_MASK;
        if data.count_ones() != 1
            || action.count_ones() != 1
            || fl & !(irq_set::DATA_MASK | irq_set::ACTION_TYPE_MASK) != 0
        {
            return Err(einval(format!("SET_IRQS flags {fl:#x}")));
        }
        let extra = r.rest().len();
        if data == irq_set::DATA_BOOL {
            if extra != count as usize {
                return Err(einval(format!(
                    "SET_IRQS DATA_BOOL: {extra} bytes for {count} vectors"
                )));
            }
            return Err(refuse(libc::ENOTSUP, "SET_IRQS DATA_BOOL"));
        }
        if extra != 0 {
            return Err(einval(format!("SET_IRQS: {extra} unexpected data bytes")));
        }
        if data == irq_set::DATA_EVENTFD {
            // "If no file descriptors are provided, this de-assigns the
            // specified previously configured interrupts."
            if !fds.is_empty() && fds.len() != count as usize {
                return Err(einval(format!(
                    "SET_IRQS: {} eventfds for {count} vectors",
                    fds.len()
                )));
            }
        } else {
            no_fds(&fds, "SET_IRQS without DATA_EVENTFD")?;
        }
        let info = b
            .irq_info(index)
            .ok_or_else(|| einval(format!("no irq index {index}")))?;
        // "a count (and start) of 0, with data flags of DATA_NONE disables
        // all interrupts of the index".
        if u64::from(start) + u64::from(count) > u64::from(info.count) {
            return Err(einval(format!(
                "SET_IRQS index {index}: vectors {start}+{count} of {}",
                info.count
            )));
        }
        b.set_irqs(index, fl, start, count, fds)?;
        Ok(Vec::new())
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

    /// Run a byte stream (no fds) through framing and [`Session::handle`],
    /// as the server does with its socket: the replies, concatenated, and
    /// the framing error that would have dropped the connection, if any.
    /// A trailing incomplete message is left unread. For tests and fuzzing.
    pub fn feed<B: Backend + ?Sized>(
        &mut self,
        backend: &mut B,
        mut stream: &[u8],
    ) -> (Vec<u8>, Option<FrameError>) {
        let mut out = Vec::new();
        while let Some((hb, rest)) = stream.split_first_chunk::<{ proto::HEADER_SIZE }>() {
            let h = Header::parse(hb);
            let len = match self.payload_len(&h) {
                Ok(n) => n,
                Err(e) => return (out, Some(e)),
            };
            let Some((payload, rest)) = rest.split_at_checked(len) else {
                break;
            };
            if let Some(r) = self.handle(backend, &h, payload, Vec::new(), false) {
                out.extend_from_slice(&r);
            }
            stream = rest;
        }
        (out, None)
    }
}
