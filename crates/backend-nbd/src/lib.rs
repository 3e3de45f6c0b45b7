//! An NBD client backend: any export of `qemu-nbd` (qcow2, vmdk, raw, RBD
//! ...), `nbdkit` or another NBD server behind the vblk device.
//!
//! * [`uri`]: `nbd://HOST[:PORT]/EXPORT`, `nbd+unix:///EXPORT?socket=PATH`.
//! * [`handshake`]: fixed newstyle, structured replies, NBD_OPT_GO.
//! * [`proto`]: the wire format; [`reader`]: replies, checked against the
//!   request before guest memory is touched.
//! * [`conn`]: a connection, its reply thread, reconnect and resend.
//! * [`engine`]: the per-queue [`IoEngine`](vblk_backend::IoEngine).
//!
//! One connection per queue when the server says NBD_FLAG_CAN_MULTI_CONN
//! ("the server ... [guarantees] that a flush on one connection covers
//! writes completed on any"), otherwise one connection shared by every
//! queue.

use std::io;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vblk_backend::{Backend, BlockSizes, IoEngine, IoOp, IoRequest};

mod cmd;
mod complete;
pub mod conn;
mod connect;
mod engine;
pub mod handshake;
mod iov;
pub mod proto;
mod reader;
pub mod uri;

pub use conn::ThreadHook;
pub use engine::NbdEngine;
pub use handshake::ExportInfo;
pub use uri::{is_nbd_uri, Address, NbdUri};

use conn::Conn;
use connect::Target;
use proto::*;

/// Default `--nbd-reconnect-timeout`.
pub const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct NbdOptions {
    /// How long a server may be gone before requests fail with EIO.
    pub reconnect_timeout: Duration,
    /// Connections to open when the server allows several (one per queue).
    pub connections: usize,
    /// Run first on every connection thread (its seccomp filter).
    pub thread_hook: Option<ThreadHook>,
}

impl Default for NbdOptions {
    fn default() -> Self {
        NbdOptions {
            reconnect_timeout: DEFAULT_RECONNECT_TIMEOUT,
            connections: 1,
            thread_hook: None,
        }
    }
}

pub struct NbdBackend {
    uri: NbdUri,
    info: ExportInfo,
    conns: Vec<Arc<Conn>>,
    next: AtomicUsize,
}

impl NbdBackend {
    /// Connect to `uri` (one or more connections, see the crate docs).
    pub fn open(uri: &str, opts: NbdOptions) -> io::Result<NbdBackend> {
        let uri = uri::parse(uri).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let target = match &uri.address {
            Address::Tcp { host, port } => {
                Target::Tcp((host.as_str(), *port).to_socket_addrs()?.collect())
            }
            Address::Unix(p) => Target::Unix(p.clone()),
        };
        let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{uri}: {e}"));
        let first = Conn::start(
            target.clone(),
            &uri.export,
            opts.reconnect_timeout,
            0,
            opts.thread_hook.clone(),
        )
        .map_err(ctx)?;
        let info = *first.info();
        let mut conns = vec![Arc::new(first)];
        if info.has(TF_CAN_MULTI_CONN) {
            for i in 1..opts.connections.max(1) {
                let c = Conn::start(
                    target.clone(),
                    &uri.export,
                    opts.reconnect_timeout,
                    i,
                    opts.thread_hook.clone(),
                )
                .map_err(ctx)?;
                if c.info().size != info.size || c.info().flags != info.flags {
                    return Err(io::Error::other(format!(
                        "{uri}: the export changed between connections"
                    )));
                }
                conns.push(Arc::new(c));
            }
        }
        log::info!(
            "{uri}: {} bytes, flags {:#x}{}, {} connection(s)",
            info.size,
            info.flags,
            if info.structured {
                ", structured replies"
            } else {
                ""
            },
            conns.len()
        );
        Ok(NbdBackend {
            uri,
            info,
            conns,
            next: AtomicUsize::new(0),
        })
    }

    pub fn info(&self) -> &ExportInfo {
        &self.info
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    pub fn supports_write_zeroes(&self) -> bool {
        self.info.has(TF_SEND_WRITE_ZEROES)
    }

    pub fn supports_fua(&self) -> bool {
        self.info.has(TF_SEND_FUA)
    }
}

impl Backend for NbdBackend {
    /// The export's size, rounded down to whole sectors.
    fn capacity(&self) -> u64 {
        self.info.size & !511
    }

    fn engine(&self) -> io::Result<Box<dyn IoEngine>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        Ok(Box::new(NbdEngine::new(self.conns[i].clone())?))
    }

    fn flush(&self) -> io::Result<()> {
        if self.info.has(TF_READ_ONLY) || !self.info.has(TF_SEND_FLUSH) {
            return Ok(());
        }
        // Without CAN_MULTI_CONN there is one connection; with it, one
        // flush covers every connection.
        let mut e = NbdEngine::new(self.conns[0].clone())?;
        // SAFETY: a flush has no buffers.
        unsafe {
            e.push(IoRequest {
                op: IoOp::Flush,
                offset: 0,
                len: 0,
                iovecs: Vec::new(),
                token: 0,
                fua: false,
            })
        };
        e.submit()?;
        let mut out = Vec::new();
        e.reap(&mut out, 1)?;
        match out.first().map(|c| c.result) {
            Some(Ok(_)) => Ok(()),
            Some(Err(errno)) => Err(io::Error::from_raw_os_error(errno)),
            None => Err(io::Error::other("flush did not complete")),
        }
    }

    fn read_only(&self) -> bool {
        self.info.has(TF_READ_ONLY)
    }

    /// DISCARD only where the export can trim.
    fn supports_discard(&self) -> bool {
        self.info.has(TF_SEND_TRIM) && !self.read_only()
    }

    fn block_sizes(&self) -> BlockSizes {
        let logical = self.info.min_block.clamp(512, 4096).next_power_of_two();
        let physical = self
            .info
            .preferred_block
            .clamp(logical, 4096)
            .next_power_of_two();
        BlockSizes {
            logical,
            physical,
            ..BlockSizes::default()
        }
    }

    fn describe(&self) -> String {
        format!("NBD export {} ({} bytes)", self.uri, self.info.size)
    }
}
