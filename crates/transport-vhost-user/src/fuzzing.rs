//! Fuzz body for the `cargo fuzz` target `vhost_user_messages` (fuzz/),
//! also run on stable by `tests/fuzz_smoke.rs`. Built only with the
//! `fuzzing` feature: none of it is in the release binary. Not API.
//!
//! Bytes → a sequence of raw vhost-user messages (header + payload, with
//! memfds and eventfds attached as the input says) written into one end of
//! a socketpair; the other end is served in-process by the same per-
//! connection loop the daemon runs (`serve_connection`: the `vhost` crate's
//! `BackendReqHandler` over [`Conn`](crate::backend::Conn)), against a
//! 1 MiB `MemBackend`. The writing end is then shut down, so the loop sees
//! the end of the stream, drops the connection and stops every ring.
//!
//! Checks: no panic (on any thread: under `cargo fuzz` a panic aborts);
//! no hang (reads and replies are bounded by short timeouts); every reply
//! is a whole, well-formed reply to a request that was sent; and, when
//! asked, no thread and no file descriptor outlives the connection.
//!
//! Input layout:
//!
//! ```text
//! input  := opts:u8 image_len:u16le image[image_len] record*
//! opts   : bit 0 read-only disk; bit 1 one queue (else two)
//! image  : written at offset 0 of every memfd the input attaches
//!          (descriptor table, rings, request headers and data)
//! record := code:u8 flags:u8 fds:u8 pages:u8 len:u16le payload[len]
//!   code  : request code = code % 48
//!   flags : 0x80 set: header flags = flags & 0x7f, raw (any version,
//!           REPLY bit...); else version 1 | (flags & 0x08, NEED_REPLY),
//!           and 0x40 overstates the header size by `pages` bytes
//!   fds   : count = fds & 7 file descriptors of kind (fds >> 3) & 3:
//!           0 memfd of pages+1 pages holding the image, 1 eventfd,
//!           2 the same memfd sealed against shrinking and growing,
//!           3 an empty memfd
//!   len   : payload bytes (clamped to what is left of the input)
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vblk_backend::MemBackend;
use vblk_device::{BlkConfig, BlkDevice};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

use crate::{Options, StopSignal};

/// Disk size behind the connection.
pub const DISK: u64 = 1 << 20;
/// Largest image copied into a memfd.
pub const MAX_IMAGE: usize = 0x1_0000;
/// At most this many messages and attached fds per input (bounds one run).
pub const MAX_MESSAGES: usize = 96;
pub const MAX_FDS: usize = 64;
/// vhost-user header: request u32, flags u32, size u32.
pub const HEADER_LEN: usize = 12;
/// Bound on reads of a message under way and on replies (the daemon uses
/// 5 s; the stream here is complete before it is served, so any wait is a
/// bug or a message that overstates its size).
const IO_TIMEOUT: Duration = Duration::from_millis(500);

/// What one run saw (for the seed tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Messages written to the socket.
    pub sent: usize,
    /// Replies read back: (request code, payload bytes).
    pub replies: Vec<(u32, Vec<u8>)>,
    /// Bytes the 1 MiB disk holds afterwards, at sectors 0..16.
    pub disk_head: Vec<u8>,
}

fn memfd(pages: u8, image: &[u8], seal: bool, empty: bool) -> Option<File> {
    // SAFETY: a NUL-terminated name; the returned fd, if any, is ours.
    let fd = unsafe {
        libc::memfd_create(
            c"vblk-fuzz".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let mut f = unsafe { File::from_raw_fd(fd) };
    if !empty {
        let size = (u64::from(pages) + 1) * 4096;
        f.set_len(size).ok()?;
        let n = image.len().min(size as usize);
        f.write_all(&image[..n]).ok()?;
    }
    if seal {
        // SAFETY: fcntl on our own fd.
        unsafe {
            libc::fcntl(
                f.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW,
            )
        };
    }
    Some(f)
}

pub use vblk_testkit::fuzz::process_counts;
use vblk_testkit::fuzz::ByteReader as Reader;

/// Wait briefly for the counts to come back to `before`; panic if not.
pub fn assert_no_leak(before: (usize, usize)) {
    vblk_testkit::fuzz::assert_no_leak(before, "the connection");
}

/// The fuzz target: [`run`] with the leak check.
pub fn vhost_user_messages(data: &[u8]) {
    run(data, true);
}

/// Serve the message stream `data` describes (see the module docs) on one
/// in-process connection; check the replies and, if `check_leaks`, that no
/// thread or fd outlives the connection (only meaningful when nothing else
/// in the process opens fds or threads meanwhile).
pub fn run(data: &[u8], check_leaks: bool) -> Outcome {
    let before = process_counts();
    let out = run_inner(data);
    if check_leaks {
        assert_no_leak(before);
    }
    out
}

fn run_inner(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut r = Reader(data);
    let Some(opts) = r.u8() else {
        return out;
    };
    let Some(image_len) = r.u16() else {
        return out;
    };
    let image = r.take(usize::from(image_len).min(MAX_IMAGE));

    let backend = MemBackend::new(DISK);
    let mut cfg = BlkConfig::new(DISK);
    cfg.read_only = opts & 1 != 0;
    cfg.num_queues = if opts & 2 != 0 { 1 } else { 2 };
    let device = Arc::new(BlkDevice::new(cfg, Arc::new(backend.clone())));

    let Ok((client, server)) = UnixStream::pair() else {
        return out;
    };
    // The client never blocks: a stream that does not fit the socket
    // buffer is cut short (the server has not started reading yet).
    if client.set_nonblocking(true).is_err() {
        return out;
    }
    let mut codes = Vec::new();
    let mut fds_sent = 0usize;
    while out.sent < MAX_MESSAGES {
        let (Some(code), Some(flags), Some(fds), Some(pages), Some(len)) =
            (r.u8(), r.u8(), r.u8(), r.u8(), r.u16())
        else {
            break;
        };
        let payload = r.take(usize::from(len));
        let request = u32::from(code % 48);
        let (hflags, size) = if flags & 0x80 != 0 {
            (u32::from(flags & 0x7f), payload.len() as u32)
        } else {
            let over = if flags & 0x40 != 0 {
                u32::from(pages)
            } else {
                0
            };
            (1 | u32::from(flags & 0x08), payload.len() as u32 + over)
        };
        let mut msg = Vec::with_capacity(HEADER_LEN + payload.len());
        msg.extend_from_slice(&request.to_le_bytes());
        msg.extend_from_slice(&hflags.to_le_bytes());
        msg.extend_from_slice(&size.to_le_bytes());
        msg.extend_from_slice(payload);

        let count = usize::from(fds & 7).min(MAX_FDS - fds_sent);
        let kind = (fds >> 3) & 3;
        let mut files: Vec<File> = Vec::new();
        let mut events: Vec<EventFd> = Vec::new();
        for _ in 0..count {
            match kind {
                1 => {
                    if let Ok(e) = EventFd::new(libc::EFD_NONBLOCK) {
                        events.push(e);
                    }
                }
                k => {
                    if let Some(f) = memfd(pages, image, k == 2, k == 3) {
                        files.push(f);
                    }
                }
            }
        }
        let raw: Vec<RawFd> = files
            .iter()
            .map(|f| f.as_raw_fd())
            .chain(events.iter().map(|e| e.as_raw_fd()))
            .collect();
        fds_sent += raw.len();
        // One sendmsg per message: its fds travel with its first byte, as
        // a front end sends them.
        let sent = if raw.is_empty() {
            (&client).write(&msg).ok()
        } else {
            client.send_with_fds(&[&msg[..]], &raw).ok()
        };
        // Our copies close here; the server holds its own.
        drop(files);
        drop(events);
        match sent {
            Some(n) if n == msg.len() => {
                out.sent += 1;
                codes.push(request);
            }
            // A partial write (socket full): the stream ends mid-message.
            Some(_) => {
                out.sent += 1;
                break;
            }
            None => break,
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Write);

    if server.set_nonblocking(false).is_err()
        || server.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || server.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return out;
    }
    let Ok(stop) = StopSignal::new() else {
        return out;
    };
    let started = Instant::now();
    crate::serve_connection(&device, server, &Options::default(), &stop);
    // Every message is bounded by IO_TIMEOUT at most once (a read that
    // waits for bytes that never come ends the connection).
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the connection took {:?}",
        started.elapsed()
    );

    // The replies: whole, typed as replies, version 1, for a request sent.
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(IO_TIMEOUT));
    let mut bytes = Vec::new();
    let _ = (&client).read_to_end(&mut bytes);
    let mut b = bytes.as_slice();
    while !b.is_empty() {
        assert!(b.len() >= HEADER_LEN, "a partial reply header");
        let word = |i: usize| u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap_or([0; 4]));
        let (code, flags, size) = (word(0), word(1), word(2) as usize);
        assert_eq!(flags, 0x5, "reply flags of request {code}");
        assert!(
            codes.contains(&code),
            "a reply to request {code}, never sent"
        );
        assert!(size <= 0x1000, "reply of {size} bytes");
        assert!(b.len() >= HEADER_LEN + size, "a partial reply");
        out.replies
            .push((code, b[HEADER_LEN..HEADER_LEN + size].to_vec()));
        b = &b[HEADER_LEN + size..];
    }
    assert!(out.replies.len() <= out.sent, "more replies than messages");
    out.disk_head = backend.snapshot()[..16 * 512].to_vec();
    out
}

// ---------------------------------------------------------------------------
// Seeds: well-formed sessions, to start the fuzzer's corpus and to check
// (in the smoke test) that the input layout reaches real I/O.
// ---------------------------------------------------------------------------

/// Request codes.
pub mod req {
    pub const GET_FEATURES: u8 = 1;
    pub const SET_FEATURES: u8 = 2;
    pub const SET_OWNER: u8 = 3;
    pub const RESET_OWNER: u8 = 4;
    pub const SET_MEM_TABLE: u8 = 5;
    pub const SET_VRING_NUM: u8 = 8;
    pub const SET_VRING_ADDR: u8 = 9;
    pub const SET_VRING_BASE: u8 = 10;
    pub const GET_VRING_BASE: u8 = 11;
    pub const SET_VRING_KICK: u8 = 12;
    pub const SET_VRING_CALL: u8 = 13;
    pub const SET_VRING_ERR: u8 = 14;
    pub const GET_PROTOCOL_FEATURES: u8 = 15;
    pub const SET_PROTOCOL_FEATURES: u8 = 16;
    pub const GET_QUEUE_NUM: u8 = 17;
    pub const SET_VRING_ENABLE: u8 = 18;
    pub const GET_CONFIG: u8 = 24;
    pub const SET_CONFIG: u8 = 25;
    pub const GET_INFLIGHT_FD: u8 = 31;
    pub const SET_INFLIGHT_FD: u8 = 32;
    pub const RESET_DEVICE: u8 = 34;
    pub const GET_MAX_MEM_SLOTS: u8 = 36;
    pub const ADD_MEM_REG: u8 = 37;
    pub const REM_MEM_REG: u8 = 38;
}

/// Fd kinds of a record.
pub mod fd {
    pub const MEMFD: u8 = 0;
    pub const EVENTFD: u8 = 1 << 3;
    pub const SEALED_MEMFD: u8 = 2 << 3;
    pub const EMPTY_MEMFD: u8 = 3 << 3;
}

/// NEED_REPLY in a record's flags byte.
pub const NEED_REPLY: u8 = 0x08;

/// Where the seeds put guest memory: one region of 16 pages at guest
/// address 0, front-end user address `UADDR`.
pub const UADDR: u64 = 0x7f00_0000_0000;
pub const REGION_PAGES: u8 = 15;

/// Builds an input.
pub struct Builder {
    opts: u8,
    image: Vec<u8>,
    records: Vec<u8>,
}

impl Builder {
    pub fn new(opts: u8) -> Builder {
        Builder {
            opts,
            image: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Image bytes at `off` (the memfd offset = guest address in the seeds).
    pub fn image(&mut self, off: usize, b: &[u8]) -> &mut Self {
        if self.image.len() < off + b.len() {
            self.image.resize(off + b.len(), 0);
        }
        self.image[off..off + b.len()].copy_from_slice(b);
        self
    }

    pub fn msg(&mut self, code: u8, flags: u8, fds: u8, payload: &[u8]) -> &mut Self {
        self.records
            .extend_from_slice(&[code, flags, fds, REGION_PAGES]);
        self.records
            .extend_from_slice(&(payload.len() as u16).to_le_bytes());
        self.records.extend_from_slice(payload);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut v = vec![self.opts];
        v.extend_from_slice(&(self.image.len() as u16).to_le_bytes());
        v.extend_from_slice(&self.image);
        v.extend_from_slice(&self.records);
        v
    }

    /// Feature negotiation as QEMU does it; `proto` the protocol features
    /// acked, `flags` on every message (NEED_REPLY).
    pub fn handshake(&mut self, features: u64, proto: u64, flags: u8) -> &mut Self {
        self.msg(req::GET_FEATURES, 0, 0, &[])
            .msg(req::GET_PROTOCOL_FEATURES, 0, 0, &[])
            .msg(req::SET_FEATURES, flags, 0, &features.to_le_bytes())
            .msg(req::SET_PROTOCOL_FEATURES, flags, 0, &proto.to_le_bytes())
            .msg(req::SET_OWNER, flags, 0, &[])
            .msg(req::GET_QUEUE_NUM, 0, 0, &[])
    }

    /// SET_MEM_TABLE with one region of REGION_PAGES+1 pages.
    pub fn mem_table(&mut self, flags: u8) -> &mut Self {
        let mut p = Vec::new();
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&region_bytes(0, 0, 0));
        self.msg(req::SET_MEM_TABLE, flags, 1 | fd::MEMFD, &p)
    }

    /// Ring `q` of 8 entries: desc at guest 0x100 * q, avail 0x1000 +
    /// 0x100 * q, used 0x2000 + 0x100 * q, base 0, call and kick eventfds,
    /// enabled.
    pub fn ring(&mut self, q: u32, flags: u8) -> &mut Self {
        let o = 0x100 * u64::from(q);
        let mut addr = Vec::new();
        addr.extend_from_slice(&q.to_le_bytes());
        addr.extend_from_slice(&0u32.to_le_bytes());
        for a in [o, 0x2000 + o, 0x1000 + o, 0] {
            addr.extend_from_slice(&(UADDR + a).to_le_bytes());
        }
        self.msg(req::SET_VRING_NUM, flags, 0, &state(q, 8))
            .msg(req::SET_VRING_ADDR, flags, 0, &addr)
            .msg(req::SET_VRING_BASE, flags, 0, &state(q, 0))
            .msg(
                req::SET_VRING_CALL,
                flags,
                1 | fd::EVENTFD,
                &u64::from(q).to_le_bytes(),
            )
            .msg(
                req::SET_VRING_KICK,
                flags,
                1 | fd::EVENTFD,
                &u64::from(q).to_le_bytes(),
            )
            .msg(req::SET_VRING_ENABLE, flags, 0, &state(q, 1))
    }

    /// A chain in ring `q` (of the layout [`Builder::ring`] uses): header
    /// (type `t`, sector `sector`) at 0x3000 + 0x100 q, `len` data bytes at
    /// 0x4000 + 0x1000 q (device-writable if `write`), status at 0x8000 +
    /// 0x10 q; published as avail entry 0.
    pub fn chain(&mut self, q: u64, t: u32, sector: u64, len: u32, write: bool) -> &mut Self {
        let hdr = 0x3000 + 0x100 * q;
        let data = 0x4000 + 0x1000 * q;
        let status = 0x8000 + 0x10 * q;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&t.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.image(hdr as usize, &h);
        self.image(data as usize, &vec![0xa5; len as usize]);
        let table = 0x100 * q as usize;
        let mut d = Vec::new();
        let mut desc = |addr: u64, l: u32, fl: u16, next: u16| {
            d.extend_from_slice(&addr.to_le_bytes());
            d.extend_from_slice(&l.to_le_bytes());
            d.extend_from_slice(&fl.to_le_bytes());
            d.extend_from_slice(&next.to_le_bytes());
        };
        if len > 0 {
            desc(hdr, 16, 1, 1);
            desc(data, len, 1 | if write { 2 } else { 0 }, 2);
            desc(status, 1, 2, 0);
        } else {
            desc(hdr, 16, 1, 1);
            desc(status, 1, 2, 0);
        }
        self.image(table, &d);
        let avail = 0x1000 + 0x100 * q as usize;
        self.image(avail, &[0, 0, 1, 0, 0, 0])
    }
}

/// A `VhostUserMemoryRegion` of the seeds' memfd: guest `gpa`, user
/// address `UADDR + gpa`, file offset `offset`.
pub fn region_bytes(gpa: u64, offset: u64, shrink: u64) -> Vec<u8> {
    let size = (u64::from(REGION_PAGES) + 1) * 4096 - shrink;
    let mut v = Vec::new();
    for x in [gpa, size, UADDR + gpa, offset] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

/// A `VhostUserVringState`.
pub fn state(index: u32, num: u32) -> Vec<u8> {
    let mut v = index.to_le_bytes().to_vec();
    v.extend_from_slice(&num.to_le_bytes());
    v
}

/// Protocol features vblk offers (REPLY_ACK, MQ, CONFIG, ...).
pub fn protocol_features() -> u64 {
    crate::backend::offered_protocol_features().bits()
}

/// Virtio features the device offers, plus VHOST_USER_F_PROTOCOL_FEATURES.
pub fn virtio_features(read_only: bool) -> u64 {
    let mut cfg = BlkConfig::new(DISK);
    cfg.read_only = read_only;
    let dev = BlkDevice::new(cfg, Arc::new(vblk_backend::NullBackend::new(DISK)));
    dev.features() | (1 << 30)
}

/// A named input.
pub type Seed = (&'static str, Vec<u8>);

/// Well-formed sessions: handshake only; a read, a write and a flush
/// through a started ring (with and without REPLY_ACK); two queues; the
/// inflight buffer; ADD/REM_MEM_REG; a reset in the middle; a ring
/// polled without a kick fd; config reads and a refused config write.
pub fn seeds() -> Vec<Seed> {
    let f = virtio_features(false);
    let p = protocol_features();
    let mut out: Vec<Seed> = Vec::new();

    let mut b = Builder::new(0);
    b.handshake(f, p, 0)
        .msg(req::GET_MAX_MEM_SLOTS, 0, 0, &[])
        .msg(req::GET_CONFIG, 0, 0, &{
            // VhostUserConfig (offset, size, flags) and room for the bytes.
            let mut c = vec![0u8; 12 + 60];
            c[4] = 60;
            c
        })
        .msg(
            req::SET_CONFIG,
            NEED_REPLY,
            0,
            &[0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
        );
    out.push(("handshake_config", b.bytes()));

    // A read of sector 2 into 1024 bytes, then GET_VRING_BASE.
    let mut b = Builder::new(0);
    b.chain(0, 0, 2, 1024, true)
        .handshake(f, p, 0)
        .mem_table(0)
        .ring(0, 0)
        .msg(req::GET_VRING_BASE, 0, 0, &state(0, 0));
    out.push(("read", b.bytes()));

    // A write of 512 bytes at sector 1, every message with NEED_REPLY.
    let mut b = Builder::new(0);
    b.chain(0, 1, 1, 512, false)
        .handshake(f, p, NEED_REPLY)
        .mem_table(NEED_REPLY)
        .ring(0, NEED_REPLY)
        .msg(req::GET_VRING_BASE, 0, 0, &state(0, 0));
    out.push(("write_reply_ack", b.bytes()));

    // Both queues: a write on 0, a flush on 1.
    let mut b = Builder::new(0);
    b.chain(0, 1, 3, 512, false)
        .chain(1, 4, 0, 0, false)
        .handshake(f, p, 0)
        .mem_table(0)
        .ring(0, 0)
        .ring(1, 0)
        .msg(req::GET_VRING_BASE, 0, 0, &state(1, 0))
        .msg(req::GET_VRING_BASE, 0, 0, &state(0, 0));
    out.push(("two_queues", b.bytes()));

    // The inflight buffer first (as QEMU does), then a read.
    let mut infl = Vec::new();
    infl.extend_from_slice(&0u64.to_le_bytes());
    infl.extend_from_slice(&0u64.to_le_bytes());
    infl.extend_from_slice(&2u16.to_le_bytes());
    infl.extend_from_slice(&8u16.to_le_bytes());
    infl.extend_from_slice(&[0; 4]); // repr(C) padding
    let mut b = Builder::new(0);
    b.chain(0, 0, 0, 512, true)
        .handshake(f, p, 0)
        .msg(req::GET_INFLIGHT_FD, 0, 0, &infl)
        .mem_table(0)
        .ring(0, 0)
        .msg(req::GET_VRING_BASE, 0, 0, &state(0, 0));
    out.push(("inflight_read", b.bytes()));

    // ADD_MEM_REG instead of SET_MEM_TABLE, a read, REM_MEM_REG while
    // the ring is stopped, and again with the ring running.
    let mut single = vec![0u8; 8];
    single.extend_from_slice(&region_bytes(0, 0, 0));
    let mut b = Builder::new(0);
    b.chain(0, 0, 4, 512, true)
        .handshake(f, p, NEED_REPLY)
        .msg(req::ADD_MEM_REG, NEED_REPLY, 1 | fd::SEALED_MEMFD, &single)
        .ring(0, NEED_REPLY)
        .msg(req::GET_VRING_BASE, 0, 0, &state(0, 0))
        .msg(req::REM_MEM_REG, NEED_REPLY, 0, &single)
        .msg(req::ADD_MEM_REG, NEED_REPLY, 1 | fd::MEMFD, &single)
        .msg(req::SET_VRING_KICK, 0, 1 | fd::EVENTFD, &0u64.to_le_bytes())
        .msg(req::REM_MEM_REG, NEED_REPLY, 0, &single);
    out.push(("add_rem_mem_reg", b.bytes()));

    // RESET_DEVICE with a ring running, then set up again; RESET_OWNER.
    let mut b = Builder::new(0);
    b.chain(0, 0, 5, 512, true)
        .handshake(f, p, 0)
        .mem_table(0)
        .ring(0, 0)
        .msg(req::RESET_DEVICE, NEED_REPLY, 0, &[])
        .mem_table(0)
        .ring(0, 0)
        .msg(req::RESET_OWNER, 0, 0, &[]);
    out.push(("reset_device", b.bytes()));

    // A polled ring (kick without an fd: bit 8), an err fd, and a
    // read-only disk refusing a write.
    let mut b = Builder::new(1);
    b.chain(0, 1, 1, 512, false)
        .handshake(virtio_features(true), p, 0)
        .mem_table(0)
        .msg(req::SET_VRING_ERR, 0, 1 | fd::EVENTFD, &0u64.to_le_bytes())
        .msg(req::SET_VRING_NUM, 0, 0, &state(0, 8));
    let mut addr = Vec::new();
    addr.extend_from_slice(&0u32.to_le_bytes());
    addr.extend_from_slice(&0u32.to_le_bytes());
    for a in [0u64, 0x2000, 0x1000, 0] {
        addr.extend_from_slice(&(UADDR + a).to_le_bytes());
    }
    b.msg(req::SET_VRING_ADDR, 0, 0, &addr)
        .msg(req::SET_VRING_KICK, 0, 0, &0x100u64.to_le_bytes())
        .msg(req::SET_VRING_ENABLE, 0, 0, &state(0, 1))
        .msg(req::GET_VRING_BASE, 0, 0, &state(0, 0));
    out.push(("polled_read_only", b.bytes()));

    // Hostile but framed: a region past the end of its memfd, an fd on a
    // message that takes none, a size field that overstates the payload.
    let mut p2 = Vec::new();
    p2.extend_from_slice(&1u32.to_le_bytes());
    p2.extend_from_slice(&0u32.to_le_bytes());
    p2.extend_from_slice(&region_bytes(0, 0x1000, 0));
    let mut b = Builder::new(0);
    b.handshake(f, p, NEED_REPLY)
        .msg(req::SET_MEM_TABLE, NEED_REPLY, 1 | fd::EMPTY_MEMFD, &p2)
        .msg(req::SET_MEM_TABLE, NEED_REPLY, 1 | fd::MEMFD, &p2)
        .msg(req::GET_QUEUE_NUM, 0, 1 | fd::EVENTFD, &[])
        .msg(req::SET_VRING_NUM, 0x40, 0, &state(0, 8));
    out.push(("hostile_framed", b.bytes()));
    out
}
