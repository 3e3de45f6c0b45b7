//! The connection's deadlines: a connect(2) that gives up, and the
//! [`Watchdog`] that shuts the connection down when a front-end call held
//! through an [`Fe`] outlives its deadline.

use std::io;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vhost::vhost_user::Frontend;

/// Connect to a UNIX socket, giving up after `limit`: a daemon that
/// stopped accepting lets its backlog fill, and a plain connect(2) then
/// blocks for ever.
pub fn connect_timeout(path: &Path, limit: Duration) -> io::Result<UnixStream> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: an all-zero sockaddr_un is valid; the path is copied in below
    // within its bounds (checked).
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::other("socket path too long"));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2); the result is checked and owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let sock = unsafe { UnixStream::from_raw_fd(fd) };
    let t = Instant::now();
    loop {
        // SAFETY: connect(2) with a sockaddr_un we own and its exact size.
        let r = unsafe {
            libc::connect(
                fd,
                (&addr as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) if t.elapsed() < limit => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Some(libc::EAGAIN) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the daemon accepts no connection",
                ))
            }
            _ => return Err(e),
        }
    }
    sock.set_nonblocking(false)?;
    Ok(sock)
}

/// Shuts a connection down when a front-end call outlives its deadline:
/// the `vhost` crate retries a half-received message on EAGAIN forever, so
/// a socket timeout alone does not end a wait on a daemon that stalls
/// mid-message.
pub(super) struct Watchdog {
    base: Instant,
    /// Deadline in ms after `base`; 0 = disarmed.
    deadline: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Watchdog {
    pub(super) fn new(sock: &UnixStream) -> io::Result<Watchdog> {
        let base = Instant::now();
        let deadline = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (deadline.clone(), stop.clone());
        let sock = sock.try_clone()?;
        std::thread::Builder::new()
            .name("vu-watchdog".into())
            .spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    let at = d.load(Ordering::SeqCst);
                    if at != 0 && base.elapsed().as_millis() as u64 > at {
                        let _ = sock.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })?;
        Ok(Watchdog {
            base,
            deadline,
            stop,
        })
    }

    pub(super) fn arm(&self, limit: Duration) {
        let at = (self.base.elapsed() + limit).as_millis() as u64;
        self.deadline.store(at.max(1), Ordering::SeqCst);
    }

    pub(super) fn disarm(&self) {
        self.deadline.store(0, Ordering::SeqCst);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The front end, with the connection's deadline armed while it is held.
pub struct Fe<'a> {
    pub(super) fe: Frontend,
    pub(super) wd: &'a Watchdog,
}

impl std::ops::Deref for Fe<'_> {
    type Target = Frontend;
    fn deref(&self) -> &Frontend {
        &self.fe
    }
}

impl std::ops::DerefMut for Fe<'_> {
    fn deref_mut(&mut self) -> &mut Frontend {
        &mut self.fe
    }
}

impl Drop for Fe<'_> {
    fn drop(&mut self) {
        self.wd.disarm();
    }
}
