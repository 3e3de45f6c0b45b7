//! One connection's protocol state and message handling, without a socket.
//!
//! One job a file: this one holds the limits, the state and the framing of
//! one message into a reply (or none); `version` negotiates VERSION;
//! `commands` checks and runs every other command; `set_irqs` checks
//! DEVICE_SET_IRQS.

use std::fs::File;
use std::io;

use crate::proto::{self, flags, size, Header};
use crate::{errno_of, refuse, Backend};

mod commands;
mod set_irqs;
mod version;

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
