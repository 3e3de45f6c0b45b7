//! [`RawConn`]: any vhost-user message sent verbatim (bad sizes, unknown
//! requests, missing or wrong descriptors) and the [`Reply`] read back,
//! for what the `vhost` frontend API refuses to send.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use super::wire::{req, FLAG_NEED_REPLY, FLAG_VERSION};

/// What came back for a raw message.
#[derive(Debug)]
pub enum Reply {
    /// A message: (request code, flags, body, descriptors).
    Msg {
        code: u32,
        flags: u32,
        body: Vec<u8>,
        fds: Vec<OwnedFd>,
    },
    /// The daemon closed the connection (EOF, reset).
    Closed,
    /// Nothing within the deadline.
    Timeout,
}

impl Reply {
    /// The u64 of a REPLY_ACK / u64 answer.
    pub fn u64(&self) -> Option<u64> {
        match self {
            Reply::Msg { body, .. } if body.len() >= 8 => {
                Some(u64::from_le_bytes(body[..8].try_into().ok()?))
            }
            _ => None,
        }
    }
}

/// Raw vhost-user messages on a connection (possibly the one a
/// [`Frontend`](vhost::vhost_user::Frontend) also uses).
pub struct RawConn {
    sock: UnixStream,
}

impl RawConn {
    pub fn new(sock: UnixStream) -> RawConn {
        RawConn { sock }
    }

    pub fn stream(&self) -> &UnixStream {
        &self.sock
    }

    /// Send a header (code, flags, the size field as given) and `body`,
    /// with `fds` as SCM_RIGHTS. The size field need not match the body.
    pub fn send_sized(
        &self,
        code: u32,
        flags: u32,
        size: u32,
        body: &[u8],
        fds: &[RawFd],
    ) -> io::Result<()> {
        let mut msg = Vec::with_capacity(12 + body.len());
        msg.extend_from_slice(&code.to_le_bytes());
        msg.extend_from_slice(&flags.to_le_bytes());
        msg.extend_from_slice(&size.to_le_bytes());
        msg.extend_from_slice(body);
        let fd_bytes = std::mem::size_of_val(fds);
        // SAFETY: CMSG_SPACE is a pure computation on a length.
        let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
        let mut cbuf = vec![0u64; space.div_ceil(8)];
        let mut sent = 0usize;
        while sent < msg.len() {
            let mut iov = libc::iovec {
                // SAFETY: `sent` < msg.len(), so the pointer stays in `msg`.
                iov_base: unsafe { msg.as_mut_ptr().add(sent) }.cast(),
                iov_len: msg.len() - sent,
            };
            // SAFETY: an all-zero msghdr is a valid empty message header.
            let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
            mh.msg_iov = &mut iov;
            mh.msg_iovlen = 1;
            // The descriptors go with the first bytes only.
            if !fds.is_empty() && sent == 0 {
                mh.msg_control = cbuf.as_mut_ptr().cast();
                mh.msg_controllen = space as _;
                // SAFETY: msg_control points at `space` bytes we own, enough
                // for one header carrying `fds`; CMSG_FIRSTHDR/CMSG_DATA stay
                // inside it.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(&mh);
                    (*c).cmsg_level = libc::SOL_SOCKET;
                    (*c).cmsg_type = libc::SCM_RIGHTS;
                    (*c).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
                    std::ptr::copy_nonoverlapping(
                        fds.as_ptr().cast::<u8>(),
                        libc::CMSG_DATA(c),
                        fd_bytes,
                    );
                }
            }
            // SAFETY: mh describes buffers that live across the call.
            let n = unsafe { libc::sendmsg(self.sock.as_raw_fd(), &mh, libc::MSG_NOSIGNAL) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            sent += n as usize;
        }
        Ok(())
    }

    /// Send a well-sized message (version flag, plus NEED_REPLY if asked).
    pub fn send(&self, code: u32, need_reply: bool, body: &[u8], fds: &[RawFd]) -> io::Result<()> {
        let flags = FLAG_VERSION | if need_reply { FLAG_NEED_REPLY } else { 0 };
        self.send_sized(code, flags, body.len() as u32, body, fds)
    }

    /// Receive one message (the socket's read timeout is the deadline).
    pub fn recv(&self) -> Reply {
        let mut hdr = [0u8; 12];
        let mut iov = libc::iovec {
            iov_base: hdr.as_mut_ptr().cast(),
            iov_len: 12,
        };
        let mut cbuf = [0u64; 16];
        // SAFETY: an all-zero msghdr is a valid empty message header.
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cbuf.as_mut_ptr().cast();
        mh.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        // SAFETY: mh describes buffers that live across the call.
        let n = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut mh, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Reply::Timeout,
                _ => Reply::Closed,
            };
        }
        let mut fds = Vec::new();
        // SAFETY: walking the control messages recvmsg filled in, within
        // msg_controllen; SCM_RIGHTS data are ints the kernel installed.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&mh);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c);
                    let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    for i in 0..len / 4 {
                        let mut fd: RawFd = 0;
                        std::ptr::copy_nonoverlapping(
                            data.add(4 * i),
                            (&mut fd as *mut RawFd).cast::<u8>(),
                            4,
                        );
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
                c = libc::CMSG_NXTHDR(&mh, c);
            }
        }
        if n == 0 {
            return Reply::Closed;
        }
        let mut got = n as usize;
        let mut s = &self.sock;
        while got < 12 {
            match s.read(&mut hdr[got..]) {
                Ok(0) | Err(_) => return Reply::Closed,
                Ok(k) => got += k,
            }
        }
        let code = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let flags = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        let size = u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]) as usize;
        let mut body = vec![0u8; size.min(1 << 20)];
        match s.read_exact(&mut body) {
            Ok(()) => Reply::Msg {
                code,
                flags,
                body,
                fds,
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Reply::Timeout
            }
            Err(_) => Reply::Closed,
        }
    }

    /// Send and, when an answer is due (`need_reply`, or a GET request),
    /// receive it. Send failures read as [`Reply::Closed`].
    pub fn call(&self, code: u32, need_reply: bool, body: &[u8], fds: &[RawFd]) -> Option<Reply> {
        if self.send(code, need_reply, body, fds).is_err() {
            return Some(Reply::Closed);
        }
        let answers = matches!(
            code,
            req::GET_FEATURES
                | req::GET_VRING_BASE
                | req::GET_PROTOCOL_FEATURES
                | req::GET_QUEUE_NUM
                | req::GET_CONFIG
                | req::GET_INFLIGHT_FD
                | req::GET_MAX_MEM_SLOTS
        );
        (need_reply || answers).then(|| self.recv())
    }

    /// Does the daemon still answer on this connection (GET_FEATURES)?
    pub fn answers(&self) -> bool {
        matches!(
            self.call(req::GET_FEATURES, false, &[], &[]),
            Some(Reply::Msg {
                code: req::GET_FEATURES,
                ..
            })
        )
    }
}
