//! A vhost-user front end: connect, negotiate, share guest memory (memfd),
//! set up and kick a ring, wait for its used entries — on rust-vmm
//! `vhost`'s frontend API — plus [`RawConn`], which sends any message
//! verbatim (bad sizes, unknown requests, missing or wrong descriptors) on
//! the same connection, for what that API refuses to send.
//!
//! Every wait has a deadline: a daemon that stops answering or dies makes
//! a call fail, never hang.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserHeaderFlag, VhostUserProtocolFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::EventFd;

use crate::blk::{features as vf, Request, STATUS_UNSET};
use crate::mem::GuestRam;
use crate::ring::{Seg, SplitRing};

mod packed;
pub use packed::RING_PACKED;

/// Front-end request codes (vhost-user spec, "Front-end message types").
pub mod req {
    pub const GET_FEATURES: u32 = 1;
    pub const SET_FEATURES: u32 = 2;
    pub const SET_OWNER: u32 = 3;
    pub const RESET_OWNER: u32 = 4;
    pub const SET_MEM_TABLE: u32 = 5;
    pub const SET_LOG_BASE: u32 = 6;
    pub const SET_LOG_FD: u32 = 7;
    pub const SET_VRING_NUM: u32 = 8;
    pub const SET_VRING_ADDR: u32 = 9;
    pub const SET_VRING_BASE: u32 = 10;
    pub const GET_VRING_BASE: u32 = 11;
    pub const SET_VRING_KICK: u32 = 12;
    pub const SET_VRING_CALL: u32 = 13;
    pub const SET_VRING_ERR: u32 = 14;
    pub const GET_PROTOCOL_FEATURES: u32 = 15;
    pub const SET_PROTOCOL_FEATURES: u32 = 16;
    pub const GET_QUEUE_NUM: u32 = 17;
    pub const SET_VRING_ENABLE: u32 = 18;
    pub const GET_CONFIG: u32 = 24;
    pub const SET_CONFIG: u32 = 25;
    pub const GET_INFLIGHT_FD: u32 = 31;
    pub const SET_INFLIGHT_FD: u32 = 32;
    pub const RESET_DEVICE: u32 = 34;
    pub const GET_MAX_MEM_SLOTS: u32 = 36;
    pub const ADD_MEM_REG: u32 = 37;
    pub const REM_MEM_REG: u32 = 38;
}

/// Header flags: protocol version 1, a reply, a reply wanted.
pub const FLAG_VERSION: u32 = 0x1;
pub const FLAG_REPLY: u32 = 0x4;
pub const FLAG_NEED_REPLY: u32 = 0x8;

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
/// [`Frontend`] also uses).
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

/// Body of a memory region (guest address, size, user address, mmap offset).
pub fn region_bytes(gpa: u64, size: u64, uva: u64, offset: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0..8].copy_from_slice(&gpa.to_le_bytes());
    b[8..16].copy_from_slice(&size.to_le_bytes());
    b[16..24].copy_from_slice(&uva.to_le_bytes());
    b[24..32].copy_from_slice(&offset.to_le_bytes());
    b
}

/// Body of SET_MEM_TABLE: the region count as given, then the regions.
pub fn mem_table_bytes(num_regions: u32, regions: &[[u8; 32]]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&num_regions.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    for r in regions {
        b.extend_from_slice(r);
    }
    b
}

/// Body of a vring state message (index, num).
pub fn state_bytes(index: u32, num: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&index.to_le_bytes());
    b[4..8].copy_from_slice(&num.to_le_bytes());
    b
}

/// Body of SET_VRING_ADDR (index, flags, desc, used, avail, log).
pub fn vring_addr_bytes(index: u32, desc: u64, used: u64, avail: u64) -> [u8; 40] {
    let mut b = [0u8; 40];
    b[0..4].copy_from_slice(&index.to_le_bytes());
    b[8..16].copy_from_slice(&desc.to_le_bytes());
    b[16..24].copy_from_slice(&used.to_le_bytes());
    b[24..32].copy_from_slice(&avail.to_le_bytes());
    b
}

/// How a [`Driver`] connects.
#[derive(Debug, Clone)]
pub struct Options {
    /// Guest RAM (one memfd at guest address 0).
    pub mem_size: u64,
    pub queue_size: u16,
    /// Virtio features wanted (what the daemon offers of them is acked).
    pub features: u64,
    /// Protocol features wanted (likewise).
    pub protocol: VhostUserProtocolFeatures,
    /// REPLY_ACK on every message, when negotiated: refusals become errors.
    pub reply_ack: bool,
    /// The deadline of every socket read and every wait.
    pub timeout: Duration,
    /// Queue indices the `Frontend` lets through (the daemon must refuse
    /// the ones it does not have).
    pub max_queues: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mem_size: 8 << 20,
            queue_size: 128,
            features: vf::VERSION_1
                | vf::PROTOCOL_FEATURES
                | vf::FLUSH
                | vf::BLK_SIZE
                | vf::SEG_MAX
                | vf::INDIRECT_DESC
                | vf::DISCARD
                | vf::WRITE_ZEROES,
            protocol: VhostUserProtocolFeatures::CONFIG
                | VhostUserProtocolFeatures::MQ
                | VhostUserProtocolFeatures::REPLY_ACK
                | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
                | VhostUserProtocolFeatures::INFLIGHT_SHMFD
                | VhostUserProtocolFeatures::RESET_DEVICE,
            reply_ack: true,
            timeout: Duration::from_secs(5),
            max_queues: 256,
        }
    }
}

/// A completed request.
#[derive(Debug, Clone)]
pub struct Done {
    pub id: u32,
    /// The used length the daemon reported.
    pub len: u32,
    pub status: u8,
    /// The writable data after completion.
    pub data: Vec<u8>,
}

/// Shuts a connection down when a front-end call outlives its deadline:
/// the `vhost` crate retries a half-received message on EAGAIN forever, so
/// a socket timeout alone does not end a wait on a daemon that stalls
/// mid-message.
struct Watchdog {
    base: Instant,
    /// Deadline in ms after `base`; 0 = disarmed.
    deadline: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Watchdog {
    fn new(sock: &UnixStream) -> io::Result<Watchdog> {
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

    fn arm(&self, limit: Duration) {
        let at = (self.base.elapsed() + limit).as_millis() as u64;
        self.deadline.store(at.max(1), Ordering::SeqCst);
    }

    fn disarm(&self) {
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
    fe: Frontend,
    wd: &'a Watchdog,
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

/// A vhost-user front end with one memfd of guest RAM and ring 0.
pub struct Driver {
    fe: Frontend,
    wd: Watchdog,
    pub raw: RawConn,
    pub ram: GuestRam,
    pub ring: SplitRing,
    pub kick: EventFd,
    pub call: EventFd,
    /// Virtio features the daemon offered / we acked.
    pub offered: u64,
    pub acked: u64,
    pub offered_protocol: VhostUserProtocolFeatures,
    pub acked_protocol: VhostUserProtocolFeatures,
    pub opts: Options,
    scratch_base: u64,
    scratch: u64,
}

fn e<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |err| format!("{what}: {err}")
}

impl Driver {
    /// Connect and negotiate features; no memory table, no ring yet.
    pub fn negotiate(sock: &Path, opts: Options) -> Result<Driver, String> {
        let stream = connect_timeout(sock, opts.timeout).map_err(e("connect"))?;
        stream
            .set_read_timeout(Some(opts.timeout))
            .map_err(e("timeout"))?;
        stream
            .set_write_timeout(Some(opts.timeout))
            .map_err(e("timeout"))?;
        let raw = RawConn::new(stream.try_clone().map_err(e("socket"))?);
        let wd = Watchdog::new(&stream).map_err(e("watchdog"))?;
        let fe = Frontend::from_stream(stream, opts.max_queues);
        // The whole negotiation runs under one deadline.
        wd.arm(opts.timeout);
        let mut g = Fe { fe, wd: &wd };
        let fe = &mut g;
        fe.set_owner().map_err(e("SET_OWNER"))?;
        let offered = fe.get_features().map_err(e("GET_FEATURES"))?;
        if offered & vf::VERSION_1 == 0 {
            return Err("the daemon does not offer VERSION_1".into());
        }
        let acked = offered & opts.features;
        fe.set_features(acked).map_err(e("SET_FEATURES"))?;
        let (offered_protocol, acked_protocol) = if acked & vf::PROTOCOL_FEATURES != 0 {
            let pf = fe
                .get_protocol_features()
                .map_err(e("GET_PROTOCOL_FEATURES"))?;
            let want = pf & opts.protocol;
            fe.set_protocol_features(want)
                .map_err(e("SET_PROTOCOL_FEATURES"))?;
            (pf, want)
        } else {
            (
                VhostUserProtocolFeatures::empty(),
                VhostUserProtocolFeatures::empty(),
            )
        };
        if opts.reply_ack && acked_protocol.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        let fe = g.fe.clone();
        drop(g);
        let ram = GuestRam::memfd(opts.mem_size).map_err(e("guest RAM"))?;
        let ring = SplitRing::packed(0, opts.queue_size);
        let scratch_base = (ring.end() + 0xffff) & !0xffff;
        assert!(
            scratch_base < opts.mem_size,
            "guest RAM too small for the ring"
        );
        Ok(Driver {
            fe,
            wd,
            raw,
            ram,
            ring,
            kick: EventFd::new(0).map_err(e("eventfd"))?,
            call: EventFd::new(libc::EFD_NONBLOCK).map_err(e("eventfd"))?,
            offered,
            acked,
            offered_protocol,
            acked_protocol,
            opts,
            scratch_base,
            scratch: scratch_base,
        })
    }

    /// Connect, negotiate, send the memory table and start ring 0.
    pub fn connect(sock: &Path, opts: Options) -> Result<Driver, String> {
        let mut d = Driver::negotiate(sock, opts)?;
        d.send_mem_table()?;
        d.start_ring(0)?;
        Ok(d)
    }

    /// The front end, for one call (or a few): the connection is shut
    /// down if they take longer than the timeout.
    pub fn fe(&self) -> Fe<'_> {
        self.wd.arm(self.opts.timeout);
        Fe {
            fe: self.fe.clone(),
            wd: &self.wd,
        }
    }

    /// Whether protocol feature `f` was negotiated.
    pub fn has(&self, f: VhostUserProtocolFeatures) -> bool {
        self.acked_protocol.contains(f)
    }

    /// Whether REPLY_ACK is on for every message.
    pub fn acks(&self) -> bool {
        self.opts.reply_ack && self.has(VhostUserProtocolFeatures::REPLY_ACK)
    }

    /// The guest RAM as a memory-table region (user address = our mapping).
    pub fn region(&self) -> VhostUserMemoryRegionInfo {
        VhostUserMemoryRegionInfo {
            guest_phys_addr: self.ram.gpa,
            memory_size: self.ram.size,
            userspace_addr: self.ram.host_addr(self.ram.gpa),
            mmap_offset: 0,
            mmap_handle: self.ram.fd(),
        }
    }

    /// Any region of any file (for hostile tables).
    pub fn region_of(
        gpa: u64,
        size: u64,
        uva: u64,
        offset: u64,
        fd: RawFd,
    ) -> VhostUserMemoryRegionInfo {
        VhostUserMemoryRegionInfo {
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: uva,
            mmap_offset: offset,
            mmap_handle: fd,
        }
    }

    pub fn send_mem_table(&self) -> Result<(), String> {
        self.fe()
            .set_mem_table(&[self.region()])
            .map(|_| ())
            .map_err(e("SET_MEM_TABLE"))
    }

    /// Ring 0's addresses in our (user) address space.
    pub fn vring_config(&self) -> VringConfigData {
        let uva = |gpa| self.ram.host_addr(gpa);
        VringConfigData {
            queue_max_size: self.ring.size,
            queue_size: self.ring.size,
            flags: 0,
            desc_table_addr: uva(self.ring.desc),
            used_ring_addr: uva(self.ring.used),
            avail_ring_addr: uva(self.ring.avail),
            log_addr: None,
        }
    }

    /// SET_VRING_NUM/ADDR/BASE/CALL/KICK/ENABLE for ring 0 at `base`.
    pub fn start_ring(&mut self, base: u16) -> Result<(), String> {
        self.fe()
            .set_vring_num(0, self.ring.size)
            .map_err(e("SET_VRING_NUM"))?;
        self.fe()
            .set_vring_addr(0, &self.vring_config())
            .map_err(e("SET_VRING_ADDR"))?;
        self.fe()
            .set_vring_base(0, base)
            .map_err(e("SET_VRING_BASE"))?;
        self.fe()
            .set_vring_call(0, &self.call)
            .map_err(e("SET_VRING_CALL"))?;
        self.fe()
            .set_vring_kick(0, &self.kick)
            .map_err(e("SET_VRING_KICK"))?;
        if self.acked & vf::PROTOCOL_FEATURES != 0 {
            self.fe()
                .set_vring_enable(0, true)
                .map_err(e("SET_VRING_ENABLE"))?;
        }
        Ok(())
    }

    /// GET_VRING_BASE (stops the ring), zero the rings, start again at 0.
    pub fn restart_ring(&mut self) -> Result<(), String> {
        self.fe().get_vring_base(0).map_err(e("GET_VRING_BASE"))?;
        self.ring.reset(&self.ram.mem);
        self.start_ring(0)
    }

    /// Capacity in bytes from the config space (CONFIG), if it answers.
    pub fn capacity(&mut self) -> Option<u64> {
        if !self.has(VhostUserProtocolFeatures::CONFIG) {
            return None;
        }
        let (_, cfg) = self
            .fe()
            .get_config(0, 8, VhostUserConfigFlags::WRITABLE, &[0u8; 8])
            .ok()?;
        Some(u64::from_le_bytes(cfg.get(..8)?.try_into().ok()?) * 512)
    }

    /// `len` bytes of scratch RAM (after the ring; wraps around).
    pub fn scratch(&mut self, len: u64) -> u64 {
        let len = (len + 63) & !63;
        assert!(
            self.scratch_base + len <= self.ram.size,
            "scratch request too big"
        );
        if self.scratch + len > self.ram.size {
            self.scratch = self.scratch_base;
        }
        let at = self.scratch;
        self.scratch += len;
        at
    }

    pub fn kick(&self) {
        let _ = self.kick.write(1);
    }

    /// Chain `segs`, publish the head and kick; returns the head.
    pub fn submit_segs(&mut self, segs: &[Seg]) -> u16 {
        let head = self.ring.chain(&self.ram.mem, segs);
        self.ring.publish(&self.ram.mem, head);
        self.kick();
        head
    }

    /// Place `r` in scratch RAM and submit it; returns (head, placement).
    pub fn submit(&mut self, r: &Request) -> (u16, crate::blk::Placed) {
        let at = self.scratch(r.footprint());
        let p = r.place(&self.ram.mem, at);
        (self.submit_segs(&p.segs), p)
    }

    /// The next used entry, waiting up to `limit` (polls the call eventfd).
    pub fn wait_used_for(&mut self, limit: Duration) -> Option<(u32, u32)> {
        let t = Instant::now();
        loop {
            if let Some(u) = self.ring.take_used(&self.ram.mem) {
                return Some(u);
            }
            let left = limit.saturating_sub(t.elapsed());
            if left.is_zero() {
                return None;
            }
            let mut p = libc::pollfd {
                fd: self.call.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one pollfd we own, bounded wait.
            unsafe { libc::poll(&mut p, 1, left.as_millis().clamp(1, 5) as i32) };
            let _ = self.call.read();
        }
    }

    pub fn wait_used(&mut self) -> Option<(u32, u32)> {
        self.wait_used_for(self.opts.timeout)
    }

    /// Submit `r` and wait for its completion: (used length, status, data).
    pub fn run(&mut self, r: &Request) -> Result<Done, String> {
        let (head, p) = self.submit(r);
        let (id, len) = self
            .wait_used()
            .ok_or_else(|| format!("no completion within {:?}", self.opts.timeout))?;
        if id != u32::from(head) {
            return Err(format!("completed head {id}, expected {head}"));
        }
        let status = self.ram.u8_at(p.status);
        let data = if r.in_len > 0 {
            self.ram.read(p.data, r.in_len as usize)
        } else {
            Vec::new()
        };
        if status == STATUS_UNSET {
            return Err("completed without a status".into());
        }
        Ok(Done {
            id,
            len,
            status,
            data,
        })
    }
}
