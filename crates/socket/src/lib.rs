//! The listening socket: taking its path safely, waking the accept loop
//! without touching the path, and removing the socket only if it is still
//! ours.
//!
//! A path given to `--vhost-user` is only ever replaced when it is a *stale*
//! socket: a socket file on which nobody accepts any more (connect fails
//! with `ECONNREFUSED`). A live socket (another daemon) and anything that
//! is not a socket (a disk image typed by mistake, a directory) are refused.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Why the socket path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("{0}: another process is serving on this socket; refusing to take it over")]
    Live(PathBuf),
    #[error("{0}: exists and is {1}, not a socket; refusing to replace it (is the path a typo?)")]
    NotASocket(PathBuf, &'static str),
    #[error(
        "{0}: cannot tell whether the existing socket is in use ({1}); refusing to replace it"
    )]
    Unknown(PathBuf, io::Error),
    #[error("{0}: cannot remove the stale socket: {1}")]
    RemoveStale(PathBuf, io::Error),
    #[error("{0}: cannot listen: {1}")]
    Bind(PathBuf, io::Error),
}

fn kind_of(ft: &std::fs::FileType) -> &'static str {
    if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else {
        "something else"
    }
}

/// A bound listening socket and the identity of the file it created.
#[derive(Debug)]
pub struct BoundSocket {
    listener: UnixListener,
    path: PathBuf,
    /// (st_dev, st_ino) of the socket file right after bind.
    id: Option<(u64, u64)>,
}

impl BoundSocket {
    /// Bind `path`. An existing stale socket is replaced; a live one or any
    /// other kind of file is refused.
    pub fn bind(path: &Path) -> Result<BoundSocket, SocketError> {
        let listener = match UnixListener::bind(path) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                Self::check_stale(path)?;
                std::fs::remove_file(path)
                    .map_err(|e| SocketError::RemoveStale(path.to_path_buf(), e))?;
                log::info!("{}: replaced a stale socket", path.display());
                UnixListener::bind(path).map_err(|e| SocketError::Bind(path.to_path_buf(), e))?
            }
            Err(e) => return Err(SocketError::Bind(path.to_path_buf(), e)),
        };
        let id = std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        listener
            .set_nonblocking(true)
            .map_err(|e| SocketError::Bind(path.to_path_buf(), e))?;
        Ok(BoundSocket {
            listener,
            path: path.to_path_buf(),
            id,
        })
    }

    /// The path exists: it may only be replaced if it is a socket nobody
    /// answers on.
    fn check_stale(path: &Path) -> Result<(), SocketError> {
        let md = std::fs::symlink_metadata(path)
            .map_err(|e| SocketError::Unknown(path.to_path_buf(), e))?;
        let ft = md.file_type();
        if !ft.is_socket() {
            return Err(SocketError::NotASocket(path.to_path_buf(), kind_of(&ft)));
        }
        match UnixStream::connect(path) {
            Ok(_) => Err(SocketError::Live(path.to_path_buf())),
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Ok(()),
            Err(e) => Err(SocketError::Unknown(path.to_path_buf(), e)),
        }
    }

    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Is the file at our path still the socket we created?
    pub fn still_ours(&self) -> bool {
        match (self.id, std::fs::symlink_metadata(&self.path)) {
            (Some(id), Ok(m)) => m.file_type().is_socket() && (m.dev(), m.ino()) == id,
            _ => false,
        }
    }
}

impl Drop for BoundSocket {
    /// Remove the socket file, unless someone replaced it meanwhile.
    fn drop(&mut self) {
        if self.still_ours() {
            let _ = std::fs::remove_file(&self.path);
        } else {
            log::info!(
                "{}: no longer our socket; left in place",
                self.path.display()
            );
        }
    }
}

/// A stop request that every blocking wait of the server also polls: an
/// eventfd that stays readable once signalled. Stopping therefore never
/// depends on the socket path (another daemon may own it by then).
#[derive(Debug)]
pub struct StopSignal {
    fd: EventFd,
    stopped: AtomicBool,
}

impl StopSignal {
    pub fn new() -> io::Result<StopSignal> {
        Ok(StopSignal {
            fd: EventFd::new(EFD_NONBLOCK)?,
            stopped: AtomicBool::new(false),
        })
    }

    /// Ask the server to stop. Safe to call from any thread, more than once.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // The counter is never read, so the fd stays readable.
        let _ = self.fd.write(1);
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// What woke [`wait_readable`].
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    Ready,
    Stop,
}

/// Block until `fd` is readable (or hung up) or `stop` is signalled.
pub fn wait_readable(fd: RawFd, stop: &StopSignal) -> io::Result<Wake> {
    loop {
        if stop.is_stopped() {
            return Ok(Wake::Stop);
        }
        let mut fds = [
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd structures that lives
        // across the call; the length passed matches it.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[1].revents != 0 || stop.is_stopped() {
            return Ok(Wake::Stop);
        }
        if fds[0].revents != 0 {
            return Ok(Wake::Ready);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_regular_file_and_live_socket_replaces_stale() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        std::fs::write(&img, b"precious").unwrap();
        let e = BoundSocket::bind(&img).unwrap_err();
        assert!(matches!(e, SocketError::NotASocket(..)), "{e}");
        assert_eq!(std::fs::read(&img).unwrap(), b"precious");

        let sock = dir.path().join("s.sock");
        let live = BoundSocket::bind(&sock).unwrap();
        let e = BoundSocket::bind(&sock).unwrap_err();
        assert!(matches!(e, SocketError::Live(..)), "{e}");
        // A stale socket: the file stays after its listener is gone.
        let stale = UnixListener::bind(dir.path().join("stale.sock")).unwrap();
        drop(stale);
        let again = BoundSocket::bind(&dir.path().join("stale.sock")).unwrap();
        assert!(again.still_ours());
        drop(again);
        assert!(!dir.path().join("stale.sock").exists());

        // Not ours any more: another socket took the path; it is left alone.
        std::fs::remove_file(&sock).unwrap();
        let other = UnixListener::bind(&sock).unwrap();
        assert!(!live.still_ours());
        drop(live);
        assert!(sock.exists());
        drop(other);
    }

    #[test]
    fn stop_wakes_a_wait() {
        let stop = std::sync::Arc::new(StopSignal::new().unwrap());
        let (a, _b) = UnixStream::pair().unwrap();
        let s2 = stop.clone();
        let t = std::thread::spawn(move || wait_readable(a.as_raw_fd(), &s2).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(50));
        stop.stop();
        assert_eq!(t.join().unwrap(), Wake::Stop);
    }
}
