//! Reaching the server: TCP (addresses resolved once, at start) or a UNIX
//! socket, with timeouts, then the handshake.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::handshake::{handshake, ExportInfo};

/// How to reach the server again (addresses resolved once, at start: the
/// connection thread may not open files).
#[derive(Debug, Clone)]
pub enum Target {
    Tcp(Vec<SocketAddr>),
    Unix(PathBuf),
}

/// Time allowed for connecting and for the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A server that stops reading our requests for this long is treated as
/// gone (the connection is dropped and re-established).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Connect and negotiate.
pub fn open(
    target: &Target,
    export: &str,
    reply_timeout: Duration,
) -> io::Result<(OwnedFd, ExportInfo)> {
    let reply_timeout = Some(reply_timeout.max(Duration::from_secs(1)));
    match target {
        Target::Tcp(addrs) => {
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
            for a in addrs {
                match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
                    Ok(mut s) => {
                        s.set_nodelay(true)?;
                        s.set_read_timeout(Some(CONNECT_TIMEOUT))?;
                        s.set_write_timeout(Some(CONNECT_TIMEOUT))?;
                        let info = handshake(&mut s, export)?;
                        s.set_read_timeout(reply_timeout)?;
                        s.set_write_timeout(Some(SEND_TIMEOUT))?;
                        return Ok((s.into(), info));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        Target::Unix(p) => {
            let mut s = UnixStream::connect(p)?;
            s.set_read_timeout(Some(CONNECT_TIMEOUT))?;
            s.set_write_timeout(Some(CONNECT_TIMEOUT))?;
            let info = handshake(&mut s, export)?;
            s.set_read_timeout(reply_timeout)?;
            s.set_write_timeout(Some(SEND_TIMEOUT))?;
            Ok((s.into(), info))
        }
    }
}
