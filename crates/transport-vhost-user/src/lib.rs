//! vhost-user-blk: the device core behind a vhost-user socket.
//!
//! The front end (QEMU, Cloud Hypervisor, crosvm, libblkio) owns the guest
//! and its rings; it shares guest memory and hands us one kick eventfd and
//! one call eventfd per queue. The back-end side of the protocol is
//! implemented here directly on the rust-vmm `vhost` crate's message layer:
//!
//! * `vblk_socket`: the listening socket (a stale socket is replaced, anything
//!   else refused; removed at exit only if still ours) and the stop signal;
//! * [`backend`]: one connection's state and every front-end message;
//! * [`memory`]: memory regions, checked against their file before mapping;
//! * [`inflight`]: `VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD`, split rings;
//! * [`dirty_log`]: live migration's dirty log (`VHOST_F_LOG_ALL`,
//!   `VHOST_USER_PROTOCOL_F_LOG_SHMFD`);
//! * [`backend::channel`]: the back-end request channel
//!   (`VHOST_USER_PROTOCOL_F_BACKEND_REQ`): CONFIG_CHANGE_MSG after a resize.
//!
//! The queues themselves run on the device core's
//! [`vblk_device::runner::Runners`], one set per connection: a ring start
//! is `Runners::start`, GET_VRING_BASE is `Runners::stop` (quiescing), a
//! memory change happens under `Runners::pause_all`.

use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vblk_device::runner::RunnerOptions;
use vblk_device::{stats, BlkDevice};
use vhost::vhost_user::{BackendReqHandler, Error as VuError};

pub mod backend;
pub mod dirty_log;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod inflight;
pub mod memory;

pub use vblk_socket::{SocketError, StopSignal};

use backend::Conn;
use vblk_socket::{wait_readable, BoundSocket, Wake};

/// Errors of the vhost-user front end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("waiting on {0}: {1}")]
    Poll(PathBuf, std::io::Error),
    #[error(transparent)]
    Seccomp(std::io::Error),
}

/// Longest wait for the rest of a message, or for room to send a reply.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of the vhost-user front end.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// How the queue threads work (polling, round size).
    pub runner: RunnerOptions,
    /// Worker threads; queue i is served by thread i % threads (0 = one per queue).
    pub threads: usize,
}

impl Options {
    fn runner(&self) -> RunnerOptions {
        self.runner.clone()
    }
}

/// Serve `device` on a vhost-user socket at `socket` until `stop` is
/// signalled. One front end at a time; when it disconnects, the next one is
/// accepted on the same socket. The socket file is removed on return if it
/// is still the one this call created.
pub fn serve(
    device: Arc<BlkDevice>,
    socket: &Path,
    opts: Options,
    stop: Arc<StopSignal>,
) -> Result<(), Error> {
    let bound = BoundSocket::bind(socket)?;
    log::info!("vhost-user-blk: listening on {}", socket.display());
    // This thread serves every front end: narrow its filter before the first.
    vblk_seccomp::enter(vblk_seccomp::ThreadKind::VhostUser).map_err(Error::Seccomp)?;
    loop {
        match wait_readable(bound.listener().as_raw_fd(), &stop) {
            Ok(Wake::Stop) => break,
            Ok(Wake::Ready) => {}
            Err(e) => return Err(Error::Poll(socket.to_path_buf(), e)),
        }
        let stream = match bound.listener().accept() {
            Ok((s, _)) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                continue
            }
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                log::warn!("vhost-user: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // Messages are read only once the socket is readable, so a read
        // blocks only on the rest of a message already under way, and a
        // reply only on a front end that stopped reading: bound both, so a
        // stalled front end cannot hold the daemon (or its shutdown).
        if let Err(e) = stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_read_timeout(Some(IO_TIMEOUT)))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        {
            log::warn!("vhost-user: {e}");
            continue;
        }
        stats::inc(&device.stats().device.connections);
        log::info!("vhost-user: front end connected");
        serve_connection(&device, stream, &opts, &stop);
        stats::inc(&device.stats().device.disconnects);
    }
    drop(bound);
    Ok(())
}

/// Is this a failure of the connection itself (as opposed to a message
/// the back-end refused)?
fn is_transport_error(e: &VuError) -> bool {
    matches!(
        e,
        VuError::Disconnected
            | VuError::PartialMessage
            | VuError::SocketError(_)
            | VuError::SocketBroken(_)
            | VuError::SocketConnect(_)
            | VuError::SocketRetry(_)
            | VuError::OversizedMsg
            | VuError::IncorrectFds
            | VuError::InvalidMessage
    )
}

/// Serve one front end until it disconnects, breaks the protocol, or
/// `stop` is signalled; then quiesce and stop every queue and drop every
/// mapping and fd of the connection.
fn serve_connection(
    device: &Arc<BlkDevice>,
    stream: std::os::unix::net::UnixStream,
    opts: &Options,
    stop: &StopSignal,
) {
    let conn = match Conn::new(device.clone(), opts.threads, opts.runner()) {
        Ok(c) => Arc::new(Mutex::new(c)),
        Err(e) => {
            log::error!("vhost-user: cannot start the queue runners: {e}");
            return;
        }
    };
    let fd = stream.as_raw_fd();
    let mut handler = BackendReqHandler::from_stream(stream, conn.clone());
    loop {
        // The handler owns the socket; `fd` stays valid while it lives.
        match wait_readable(fd, stop) {
            Ok(Wake::Ready) => {}
            Ok(Wake::Stop) => {
                log::info!("vhost-user: stopping with a front end connected");
                break;
            }
            Err(e) => {
                log::warn!("vhost-user: {e}");
                break;
            }
        }
        // SET_BACKEND_REQ_FD is answered here (the library keeps the
        // channel to itself); everything else goes to the library.
        let r = match backend::channel::take_set_backend_req_fd(fd, &conn) {
            Ok(true) => continue,
            Ok(false) => handler.handle_request(),
            Err(e) => Err(e),
        };
        let survivable = conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take_rejected();
        match r {
            Ok(()) => {}
            Err(e) if survivable && !is_transport_error(&e) => {
                log::debug!("vhost-user: message refused: {e}");
            }
            Err(VuError::Disconnected) | Err(VuError::PartialMessage) => {
                log::info!("vhost-user: front end disconnected");
                break;
            }
            Err(e) => {
                log::warn!("vhost-user: dropping the front end: {e}");
                break;
            }
        }
    }
    // Close the socket first: the front end sees the disconnect while the
    // queues finish what is in flight.
    drop(handler);
    let mut c = match Arc::try_unwrap(conn) {
        Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()),
        Err(arc) => {
            // Not reachable (the handler held the only other reference);
            // still stop everything through the lock.
            arc.lock().unwrap_or_else(|e| e.into_inner()).shutdown();
            return;
        }
    };
    c.shutdown();
    // Dropping `c` joins the queue threads and closes every eventfd.
    drop(c);
}
