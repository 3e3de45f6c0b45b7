//! The socket side: listen, accept one client at a time, read whole
//! messages with their fds, write replies; every wait also polls a stop
//! eventfd, so the server stops promptly with or without a client.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;

use crate::proto::{Header, HEADER_SIZE};
use crate::session::{Limits, Session};
use crate::Backend;

/// Errors of the server loop itself (a client's misbehaviour only ends
/// that client's connection).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}: cannot listen: {1}")]
    Listen(PathBuf, String),
    #[error("{0}: {1}")]
    Io(&'static str, io::Error),
    #[error("cannot set up a backend for a new client: {0}")]
    Backend(io::Error),
}

/// Stops a running [`Server`] from any thread.
#[derive(Clone)]
pub struct Stopper(Arc<OwnedFd>);

impl Stopper {
    /// Ask the server to stop: it returns from `run` after the message in
    /// hand (if any) is answered, dropping the client.
    pub fn stop(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: an 8-byte write from a live buffer to our eventfd.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), 8) };
    }
}

/// Why a connection ended.
enum End {
    /// The client closed the socket (or it failed).
    Closed(Option<io::Error>),
    /// The client sent a message that cannot be framed.
    Dropped(String),
    /// [`Stopper::stop`].
    Stopped,
}

/// A vfio-user server on one listening socket, one client at a time.
pub struct Server {
    listener: UnixListener,
    stop: Arc<OwnedFd>,
    limits: Limits,
}

enum Ready {
    Fd,
    Stop,
}

/// Wait until `fd` is ready for `events` or `stop` is signalled.
fn wait(fd: RawFd, events: libc::c_short, stop: RawFd) -> io::Result<Ready> {
    loop {
        let mut p = [
            libc::pollfd {
                fd: stop,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd,
                events,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds for the duration of the call.
        let n = unsafe { libc::poll(p.as_mut_ptr(), 2, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if p[0].revents != 0 {
            return Ok(Ready::Stop);
        }
        if p[1].revents != 0 {
            // Readable, writable, or hung up / failed: the next call says.
            return Ok(Ready::Fd);
        }
    }
}

/// Room for this many fds' control message.
fn cmsg_space(fds: usize) -> usize {
    let bytes = u32::try_from(fds.saturating_mul(std::mem::size_of::<RawFd>())).unwrap_or(0);
    // SAFETY: CMSG_SPACE is pure arithmetic.
    unsafe { libc::CMSG_SPACE(bytes) as usize }
}

/// One `recvmsg` into `buf`; fds that come with the bytes are taken into
/// `fds` (owned from here: closed when dropped). Returns the bytes read
/// (0 at end of stream) and whether control data was truncated.
fn recv_with_fds(
    fd: RawFd,
    buf: &mut [u8],
    fds: &mut Vec<File>,
    max_fds: usize,
) -> io::Result<(usize, bool)> {
    // u64s keep the control buffer aligned for cmsghdr.
    let mut cbuf = vec![0u64; cmsg_space(max_fds).div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the fields we need are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.len() * 8;
    // SAFETY: `msg` points at `iov` (into `buf`) and `cbuf`, all live and
    // writable for their stated lengths during the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // Take every fd that arrived before looking at anything else, so that
    // none leaks whatever happens next.
    // SAFETY: `msg` was filled in by recvmsg; CMSG_FIRSTHDR/NXTHDR stay
    // inside msg_control/msg_controllen.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: `c` is a cmsghdr inside `cbuf` (checked by CMSG_*HDR).
        let h = unsafe { &*c };
        if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN is arithmetic.
            let head = unsafe { libc::CMSG_LEN(0) } as usize;
            let n = (h.cmsg_len as usize).saturating_sub(head) / std::mem::size_of::<RawFd>();
            // SAFETY: CMSG_DATA points at the payload of `c`, which holds
            // `n` ints inside `cbuf`.
            let data = unsafe { libc::CMSG_DATA(c) } as *const RawFd;
            for i in 0..n {
                // SAFETY: `i < n`, inside the cmsg payload; unaligned read.
                let raw = unsafe { data.add(i).read_unaligned() };
                if raw >= 0 {
                    // SAFETY: the kernel installed this fd for us just now;
                    // nobody else owns it.
                    fds.push(unsafe { File::from_raw_fd(raw) });
                }
            }
        }
        // SAFETY: as above.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    Ok((n as usize, msg.msg_flags & libc::MSG_CTRUNC != 0))
}

impl Server {
    /// Serve on `listener` (made non-blocking here).
    pub fn new(listener: UnixListener, limits: Limits) -> Result<Server, ServerError> {
        listener
            .set_nonblocking(true)
            .map_err(|e| ServerError::Io("listener", e))?;
        // SAFETY: plain eventfd(2); the result is checked, then owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(ServerError::Io("eventfd", io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let stop = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(Server {
            listener,
            stop,
            limits,
        })
    }

    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop.clone())
    }

    /// Accept clients one at a time until stopped. Each gets a fresh
    /// backend from `make`; when its connection ends, for whatever reason,
    /// the backend hears `disconnected()` and is dropped, and the next
    /// client is accepted.
    pub fn run<B, F>(&self, mut make: F) -> Result<(), ServerError>
    where
        B: Backend,
        F: FnMut() -> io::Result<B>,
    {
        let stop = self.stop.as_raw_fd();
        loop {
            match wait(self.listener.as_raw_fd(), libc::POLLIN, stop) {
                Ok(Ready::Stop) => return Ok(()),
                Ok(Ready::Fd) => {}
                Err(e) => return Err(ServerError::Io("poll", e)),
            }
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ECONNABORTED, EMFILE...: this client is lost, not the
                    // server.
                    log::warn!("vfio-user: accept: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            };
            let mut backend = make().map_err(ServerError::Backend)?;
            let end = self.serve_client(&stream, &mut backend);
            backend.disconnected();
            drop(backend);
            drop(stream);
            match end {
                End::Closed(None) => log::info!("vfio-user: client disconnected"),
                End::Closed(Some(e)) => log::warn!("vfio-user: client connection failed: {e}"),
                End::Dropped(why) => log::warn!("vfio-user: client dropped: {why}"),
                End::Stopped => {
                    log::info!("vfio-user: shutting down; client connection closed");
                    return Ok(());
                }
            }
        }
    }

    /// Read exactly `buf.len()` bytes, collecting fds.
    fn read_exact(
        &self,
        s: RawFd,
        buf: &mut [u8],
        fds: &mut Vec<File>,
        truncated: &mut bool,
    ) -> Result<(), End> {
        let mut at = 0;
        while at < buf.len() {
            match wait(s, libc::POLLIN, self.stop.as_raw_fd()) {
                Ok(Ready::Stop) => return Err(End::Stopped),
                Ok(Ready::Fd) => {}
                Err(e) => return Err(End::Closed(Some(e))),
            }
            let room = self.limits.max_msg_fds.saturating_sub(fds.len());
            let rest = buf.get_mut(at..).unwrap_or_default();
            match recv_with_fds(s, rest, fds, room.max(1)) {
                Ok((0, _)) if at == 0 => return Err(End::Closed(None)),
                Ok((0, _)) => {
                    return Err(End::Closed(Some(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client hung up inside a message",
                    ))))
                }
                Ok((n, t)) => {
                    at += n;
                    *truncated |= t;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                    ) => {}
                Err(e) => return Err(End::Closed(Some(e))),
            }
        }
        if fds.len() > self.limits.max_msg_fds {
            *truncated = true;
        }
        Ok(())
    }

    fn write_all(&self, s: RawFd, mut data: &[u8]) -> Result<(), End> {
        while !data.is_empty() {
            match wait(s, libc::POLLOUT, self.stop.as_raw_fd()) {
                Ok(Ready::Stop) => return Err(End::Stopped),
                Ok(Ready::Fd) => {}
                Err(e) => return Err(End::Closed(Some(e))),
            }
            // SAFETY: `data` is a live buffer of data.len() bytes;
            // MSG_NOSIGNAL turns a hung-up peer into EPIPE, not SIGPIPE.
            let n = unsafe {
                libc::send(
                    s,
                    data.as_ptr().cast(),
                    data.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) {
                    continue;
                }
                return Err(End::Closed(Some(e)));
            }
            data = data.get(n as usize..).unwrap_or_default();
        }
        Ok(())
    }

    fn serve_client<B: Backend>(&self, stream: &UnixStream, backend: &mut B) -> End {
        let s = stream.as_raw_fd();
        let mut session = Session::new(self.limits);
        let mut payload = Vec::new();
        loop {
            let mut fds = Vec::new();
            let mut truncated = false;
            let mut hb = [0u8; HEADER_SIZE];
            if let Err(end) = self.read_exact(s, &mut hb, &mut fds, &mut truncated) {
                return end;
            }
            let h = Header::parse(&hb);
            let len = match session.payload_len(&h) {
                Ok(n) => n,
                Err(e) => return End::Dropped(format!("message {}: {e}", h.id)),
            };
            // Bounded by max_msg_size (checked just above).
            payload.clear();
            payload.resize(len, 0);
            if let Err(end) = self.read_exact(s, &mut payload, &mut fds, &mut truncated) {
                return end;
            }
            let reply = session.handle(backend, &h, &payload, fds, truncated);
            if let Some(r) = reply {
                if let Err(end) = self.write_all(s, &r) {
                    return end;
                }
            }
        }
    }
}
