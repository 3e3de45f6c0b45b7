//! The back-end request channel (`VHOST_USER_PROTOCOL_F_BACKEND_REQ`):
//! how vblk tells the front end that the device configuration changed
//! (online resize): `VHOST_USER_BACKEND_CONFIG_CHANGE_MSG`, after which
//! the front end reads the config again (GET_CONFIG) and notifies the
//! guest.
//!
//! The `vhost` 0.18 crate receives SET_BACKEND_REQ_FD itself and wraps the
//! socket in its `Backend`, which can send shared-object and shmem
//! messages but not CONFIG_CHANGE_MSG, and gives no access to the socket.
//! So this message is taken off the connection before the library sees
//! it: the connection thread peeks at each message header, and reads a
//! SET_BACKEND_REQ_FD (header, fd, payload) and answers it here. Every
//! other message goes to the library as before. Sending on the channel
//! (two fixed-size messages) is ours too.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vhost::vhost_user::message::{
    BackendReq, FrontendReq, VhostUserHeaderFlag, VhostUserProtocolFeatures,
};

use super::Conn;

/// Bytes of a vhost-user message header: request, flags, size (u32 each).
const HEADER: usize = 12;
/// The most fds a SET_BACKEND_REQ_FD may carry before it is refused (one
/// is expected; the rest are closed).
const MAX_FDS: usize = 8;
/// Longest payload accepted with SET_BACKEND_REQ_FD (it has none).
const MAX_PAYLOAD: usize = 64;
/// Longest wait for the front end to take or answer a message.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The channel, once the front end has sent it.
pub struct BackendChannel {
    sock: UnixStream,
    /// REPLY_ACK was negotiated: every message asks for an answer.
    reply_ack: bool,
}

/// Shared between the connection (which installs the channel) and the
/// device's configuration-change notifier (which runs on the control
/// thread).
pub type SharedChannel = Arc<Mutex<Option<BackendChannel>>>;

fn header(request: u32, flags: u32, size: u32) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0..4].copy_from_slice(&request.to_le_bytes());
    h[4..8].copy_from_slice(&flags.to_le_bytes());
    h[8..12].copy_from_slice(&size.to_le_bytes());
    h
}

fn parse(h: &[u8; HEADER]) -> (u32, u32, u32) {
    let w = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    (w(0), w(4), w(8))
}

const VERSION_1: u32 = 0x1;

impl BackendChannel {
    /// "VHOST_USER_BACKEND_CONFIG_CHANGE_MSG ... When VHOST_USER_PROTOCOL_F_CONFIG
    /// is negotiated, this message is sent from the vhost-user back-end to
    /// the front-end to notify that the virtio device's configuration space
    /// has changed. The front-end should issue VHOST_USER_GET_CONFIG to get
    /// the latest content ...". With REPLY_ACK the front end answers 0 once
    /// it has done so.
    pub fn config_changed(&mut self) -> std::io::Result<()> {
        let need = if self.reply_ack {
            VhostUserHeaderFlag::NEED_REPLY.bits()
        } else {
            0
        };
        let req = BackendReq::CONFIG_CHANGE_MSG as u32;
        self.sock.write_all(&header(req, VERSION_1 | need, 0))?;
        if !self.reply_ack {
            return Ok(());
        }
        let mut reply = [0u8; HEADER + 8];
        self.sock.read_exact(&mut reply)?;
        let mut h = [0u8; HEADER];
        h.copy_from_slice(&reply[..HEADER]);
        let (r, flags, size) = parse(&h);
        let value = u64::from_le_bytes(reply[HEADER..].try_into().unwrap_or([0xff; 8]));
        if r != req || flags & VhostUserHeaderFlag::REPLY.bits() == 0 || size != 8 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "bad answer to CONFIG_CHANGE_MSG (request {r}, flags {flags:#x}, size {size})"
                ),
            ));
        }
        if value != 0 {
            return Err(std::io::Error::other(format!(
                "the front end failed CONFIG_CHANGE_MSG ({value})"
            )));
        }
        Ok(())
    }
}

/// A front end reconnected with a previous daemon's inflight buffer (a
/// running guest whose back end was restarted). Its driver may have chosen
/// write-through, and QEMU does not replay SET_CONFIG on a reconnect: the
/// mode is unknown, so the safe one holds until the driver writes
/// `writeback` again. ("Nothing lost": a write acknowledged in
/// write-through mode must be durable.)
pub fn reconnected(device: &vblk_device::BlkDevice) {
    cache_mode_unknown(device, "a front end reconnected");
}

/// The guest's cache mode is unknown (`why`): write-through until the
/// guest's driver writes `writeback`.
pub fn cache_mode_unknown(device: &vblk_device::BlkDevice, why: &str) {
    if device.live().writeback() {
        log::warn!("vhost-user: {why}; its guest's cache mode is unknown: write-through until the guest sets it");
    }
    device.live().set_writeback(false);
}

/// Notify through `channel`, if the front end gave one. A channel that
/// fails is dropped (the front end is gone or broken).
pub fn notify(channel: &SharedChannel, stats: &vblk_device::Stats) {
    let mut slot = channel.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ch) = slot.as_mut() else {
        log::info!("vhost-user: configuration changed; the front end has no back-end channel to be told on");
        return;
    };
    match ch.config_changed() {
        Ok(()) => {
            vblk_device::stats::inc(&stats.device.backend_channel_notifications);
            log::info!("vhost-user: front end notified of the configuration change")
        }
        Err(e) => {
            log::warn!("vhost-user: back-end channel: {e}; dropped");
            *slot = None;
        }
    }
}

/// Peek at the next message on the connection socket `fd`: if it is a
/// SET_BACKEND_REQ_FD and BACKEND_REQ was negotiated, read and answer it
/// here and return true; otherwise leave it for the library (false).
/// Errors are failures of the connection itself.
pub fn take_set_backend_req_fd(
    fd: RawFd,
    conn: &Mutex<Conn>,
) -> Result<bool, vhost::vhost_user::Error> {
    let mut h = [0u8; HEADER];
    // SAFETY: `h` is a writable buffer of HEADER bytes that outlives the
    // call; MSG_PEEK leaves the bytes (and any fds, which the kernel
    // releases for a peek without a control buffer) on the socket.
    let n = unsafe {
        libc::recv(
            fd,
            h.as_mut_ptr().cast(),
            HEADER,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n != HEADER as isize {
        return Ok(false);
    }
    let (request, flags, size) = parse(&h);
    if request != FrontendReq::SET_BACKEND_REQ_FD as u32 {
        return Ok(false);
    }
    let c = conn.lock().unwrap_or_else(|e| e.into_inner());
    let acked = VhostUserProtocolFeatures::from_bits_truncate(c.acked_protocol);
    if !acked.contains(VhostUserProtocolFeatures::BACKEND_REQ) {
        // The library refuses it as for any message not negotiated.
        return Ok(false);
    }
    let mut read = [0u8; HEADER];
    let (fds, got) = recv_with_fds(fd, &mut read)?;
    if got != HEADER || read != h {
        // Only this thread reads the socket: what was peeked is what comes.
        return Err(vhost::vhost_user::Error::PartialMessage);
    }
    let size = size as usize;
    if size > MAX_PAYLOAD {
        return Err(vhost::vhost_user::Error::OversizedMsg);
    }
    let mut payload = [0u8; MAX_PAYLOAD];
    if size > 0 {
        read_exact_fd(fd, &mut payload[..size])?;
    }
    let reply_ack = acked.contains(VhostUserProtocolFeatures::REPLY_ACK);
    let result = if flags & VhostUserHeaderFlag::VERSION.bits() != VERSION_1
        || flags & VhostUserHeaderFlag::RESERVED_BITS.bits() != 0
    {
        Err("bad header flags".to_string())
    } else {
        install(fds, reply_ack)
    };
    let ok = match result {
        Ok(ch) => {
            *c.channel.lock().unwrap_or_else(|e| e.into_inner()) = Some(ch);
            log::debug!("vhost-user: back-end channel installed");
            true
        }
        Err(e) => {
            log::warn!("vhost-user: SET_BACKEND_REQ_FD refused: {e}");
            false
        }
    };
    drop(c);
    if reply_ack && flags & VhostUserHeaderFlag::NEED_REPLY.bits() != 0 {
        let mut reply = [0u8; HEADER + 8];
        reply[..HEADER].copy_from_slice(&header(
            request,
            VERSION_1 | VhostUserHeaderFlag::REPLY.bits(),
            8,
        ));
        reply[HEADER..].copy_from_slice(&u64::from(!ok).to_le_bytes());
        write_all_fd(fd, &reply)?;
    }
    Ok(true)
}

/// Exactly one fd, an AF_UNIX stream socket: the channel.
fn install(mut fds: Vec<OwnedFd>, reply_ack: bool) -> Result<BackendChannel, String> {
    if fds.len() != 1 {
        return Err(format!("{} fds, expected one", fds.len()));
    }
    let fd = fds.remove(0);
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `ty`, which lives
    // through the call; `fd` is open (owned here).
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 || ty != libc::SOCK_STREAM {
        return Err("the fd is not a stream socket".into());
    }
    let mut addr: libc::sockaddr_storage =
        // SAFETY: an all-zero sockaddr_storage is a valid value.
        unsafe { std::mem::zeroed() };
    let mut alen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `alen` bytes into `addr`.
    let r = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut alen,
        )
    };
    if r != 0 || i32::from(addr.ss_family) != libc::AF_UNIX {
        return Err("the fd is not a UNIX socket".into());
    }
    let sock = UnixStream::from(fd);
    sock.set_read_timeout(Some(TIMEOUT))
        .and_then(|()| sock.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    Ok(BackendChannel { sock, reply_ack })
}

/// Read one header with its fds (ancillary data).
fn recv_with_fds(
    fd: RawFd,
    buf: &mut [u8; HEADER],
) -> Result<(Vec<OwnedFd>, usize), vhost::vhost_user::Error> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: HEADER,
    };
    // Room for MAX_FDS ints, aligned for cmsghdr.
    let mut cbuf = [0u64; 16];
    // SAFETY: an all-zero msghdr is valid; the pointers are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE((MAX_FDS * 4) as u32) } as usize;
    debug_assert!(msg.msg_controllen <= std::mem::size_of_val(&cbuf));
    // SAFETY: `msg` points to `buf` and `cbuf`, both live and as large as
    // declared; MSG_CMSG_CLOEXEC keeps the fds out of children.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(vhost::vhost_user::Error::SocketError(
            std::io::Error::last_os_error(),
        ));
    }
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into `cbuf`,
    // with the libc macros, bounded by msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg) as *const libc::c_int;
                let bytes = ((*cmsg).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                for i in 0..bytes / std::mem::size_of::<libc::c_int>() {
                    let raw = std::ptr::read_unaligned(data.add(i));
                    if raw >= 0 {
                        // The kernel installed this fd for us: we own it.
                        fds.push(OwnedFd::from_raw_fd(raw));
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(vhost::vhost_user::Error::IncorrectFds);
    }
    Ok((fds, n as usize))
}

fn read_exact_fd(fd: RawFd, buf: &mut [u8]) -> Result<(), vhost::vhost_user::Error> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the destination is the unread tail of `buf`.
        let n = unsafe { libc::recv(fd, buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        match n {
            0 => return Err(vhost::vhost_user::Error::Disconnected),
            n if n < 0 => {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(vhost::vhost_user::Error::SocketError(e));
            }
            n => done += n as usize,
        }
    }
    Ok(())
}

fn write_all_fd(fd: RawFd, buf: &[u8]) -> Result<(), vhost::vhost_user::Error> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the source is the unsent tail of `buf`; MSG_NOSIGNAL: a
        // closed peer is an error, not SIGPIPE.
        let n = unsafe {
            libc::send(
                fd,
                buf[done..].as_ptr().cast(),
                buf.len() - done,
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(vhost::vhost_user::Error::SocketError(e));
        }
        done += n as usize;
    }
    Ok(())
}
