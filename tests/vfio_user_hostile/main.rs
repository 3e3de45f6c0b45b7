//! A hostile vfio-user client must not kill, desync or exhaust the daemon
//! (issue 12). The client here speaks raw bytes, written by hand from the
//! spec (QEMU docs/interop/vfio-user.rst), to a real `vblk serve`.
//!
//! Shared here: the message constants, the daemon and a raw client. The
//! tests, by theme, are in the modules below.

#[path = "../common/mod.rs"]
mod common;

// Where the tests live: malformed, refused and mis-sized messages and
// VERSION first (`framing`); client-sized allocations and fds that must
// not pile up (`resources`); DMA maps and guest memory under the rings
// (`dma`).
mod dma;
mod framing;
mod resources;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use common::Daemon;

const VERSION: u16 = 1;
const DMA_MAP: u16 = 2;
const DMA_UNMAP: u16 = 3;
const DEVICE_GET_INFO: u16 = 4;
const REGION_READ: u16 = 9;
const REGION_WRITE: u16 = 10;
const DEVICE_RESET: u16 = 13;
const REPLY: u32 = 1;
const NO_REPLY: u32 = 1 << 4;
const ERROR: u32 = 1 << 5;
const MODERN_BAR: u32 = 4;
const DEVICE_STATUS: u64 = 20;
const NEEDS_RESET: u8 = 0x40;

fn header(id: u16, command: u16, size: u32) -> [u8; 16] {
    header_flags(id, command, size, 0)
}

fn header_flags(id: u16, command: u16, size: u32, flags: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..2].copy_from_slice(&id.to_le_bytes());
    h[2..4].copy_from_slice(&command.to_le_bytes());
    h[4..8].copy_from_slice(&size.to_le_bytes());
    h[8..12].copy_from_slice(&flags.to_le_bytes());
    h
}

fn msg(id: u16, command: u16, payload: &[u8]) -> Vec<u8> {
    [&header(id, command, 16 + payload.len() as u32)[..], payload].concat()
}

// ----------------------------------------------------------------------
// The daemon
// ----------------------------------------------------------------------

/// `vblk serve --image null:1M --vfio-user ... --control ...`.
fn start() -> Daemon {
    Daemon::vfio_user("null:1M").control().start()
}

/// SIGTERM: exit 0, the socket removed.
fn stop(mut d: Daemon) {
    let st = d.stop();
    assert!(st.success(), "exit status {st}");
    assert!(!d.sock.exists(), "socket left behind");
}

fn client(d: &Daemon) -> Client {
    Client::connect(&d.sock)
}

/// Peak resident memory of the daemon, in KiB.
fn vm_hwm(d: &Daemon) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

// ----------------------------------------------------------------------
// A raw client
// ----------------------------------------------------------------------

#[derive(Debug)]
struct Reply {
    id: u16,
    command: u16,
    flags: u32,
    error: u32,
    payload: Vec<u8>,
}

impl Reply {
    fn ok(&self) -> bool {
        self.flags == REPLY && self.error == 0
    }
    fn errno(&self) -> i32 {
        assert_eq!(self.flags, REPLY | ERROR, "not an error reply: {self:?}");
        self.error as i32
    }
}

struct Client {
    s: UnixStream,
    id: u16,
}

impl Client {
    fn connect(sock: &Path) -> Client {
        let s = UnixStream::connect(sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Client { s, id: 100 }
    }

    fn send(&mut self, bytes: &[u8], fds: &[RawFd]) {
        if fds.is_empty() {
            self.s.write_all(bytes).unwrap();
            return;
        }
        let mut iov = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        let n = std::mem::size_of_val(fds) as u32;
        // SAFETY: arithmetic.
        let space = unsafe { libc::CMSG_SPACE(n) } as usize;
        let mut cbuf = vec![0u64; space.div_ceil(8)];
        // SAFETY: zeroed msghdr is valid; filled below.
        let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        m.msg_control = cbuf.as_mut_ptr().cast();
        m.msg_controllen = space;
        // SAFETY: the control buffer has room for one cmsghdr with `n`
        // bytes of fds; all pointers are live for the call.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&m);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(n) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
            assert_eq!(
                libc::sendmsg(self.s.as_raw_fd(), &m, 0),
                bytes.len() as isize
            );
        }
    }

    fn recv(&mut self) -> Reply {
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h).expect("a reply header");
        let size = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
        assert!((16..1 << 21).contains(&size), "reply size {size}");
        let mut payload = vec![0; size - 16];
        self.s.read_exact(&mut payload).expect("a reply payload");
        Reply {
            id: u16::from_le_bytes([h[0], h[1]]),
            command: u16::from_le_bytes([h[2], h[3]]),
            flags: u32::from_le_bytes(h[8..12].try_into().unwrap()),
            error: u32::from_le_bytes(h[12..16].try_into().unwrap()),
            payload,
        }
    }

    /// Nothing more arrives within a short while (the connection may be
    /// closed, or simply quiet).
    fn nothing_more(&mut self) -> bool {
        self.s
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = [0u8; 1];
        let r = self.s.read(&mut b);
        self.s
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        !matches!(r, Ok(1))
    }

    /// The server closed the connection.
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.s.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }

    fn call_fds(&mut self, command: u16, payload: &[u8], fds: &[RawFd]) -> Reply {
        self.id = self.id.wrapping_add(1);
        let id = self.id;
        self.send(&msg(id, command, payload), fds);
        let r = self.recv();
        assert_eq!((r.id, r.command), (id, command), "reply in step");
        r
    }

    fn call(&mut self, command: u16, payload: &[u8]) -> Reply {
        self.call_fds(command, payload, &[])
    }

    fn version(&mut self) {
        let mut p = vec![0, 0, 0, 0];
        p.extend_from_slice(br#"{"capabilities":{"max_msg_fds":16}}"#);
        p.push(0);
        let r = self.call(VERSION, &p);
        assert!(r.ok(), "{r:?}");
    }

    fn device_info(&mut self) -> Reply {
        let mut p = 16u32.to_le_bytes().to_vec();
        p.extend_from_slice(&[0; 12]);
        self.call(DEVICE_GET_INFO, &p)
    }

    fn access(region: u32, offset: u64, count: u32) -> Vec<u8> {
        let mut p = offset.to_le_bytes().to_vec();
        p.extend_from_slice(&region.to_le_bytes());
        p.extend_from_slice(&count.to_le_bytes());
        p
    }

    fn wr(&mut self, region: u32, offset: u64, data: &[u8]) -> Reply {
        let mut p = Self::access(region, offset, data.len() as u32);
        p.extend_from_slice(data);
        self.call(REGION_WRITE, &p)
    }

    fn rd(&mut self, region: u32, offset: u64, count: u32) -> Reply {
        self.call(REGION_READ, &Self::access(region, offset, count))
    }

    fn modern_wr(&mut self, off: u64, v: u64, n: usize) {
        let r = self.wr(MODERN_BAR, off, &v.to_le_bytes()[..n]);
        assert!(r.ok(), "{r:?}");
    }

    fn status(&mut self) -> u8 {
        let r = self.rd(MODERN_BAR, DEVICE_STATUS, 1);
        assert!(r.ok(), "{r:?}");
        r.payload[16]
    }

    fn dma_map(
        &mut self,
        flags: u32,
        offset: u64,
        addr: u64,
        size: u64,
        fd: Option<&File>,
    ) -> Reply {
        let mut p = 32u32.to_le_bytes().to_vec();
        p.extend_from_slice(&flags.to_le_bytes());
        p.extend_from_slice(&offset.to_le_bytes());
        p.extend_from_slice(&addr.to_le_bytes());
        p.extend_from_slice(&size.to_le_bytes());
        match fd {
            Some(f) => self.call_fds(DMA_MAP, &p, &[f.as_raw_fd()]),
            None => self.call(DMA_MAP, &p),
        }
    }

    fn dma_unmap(&mut self, addr: u64, size: u64) -> Reply {
        let mut p = 24u32.to_le_bytes().to_vec();
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&addr.to_le_bytes());
        p.extend_from_slice(&size.to_le_bytes());
        self.call(DMA_UNMAP, &p)
    }

    /// Linux's modern probe of queue 0 with rings at desc/avail/used (64
    /// entries); returns the queue's notify offset in BAR4.
    fn probe(&mut self, desc: u64, avail: u64, used: u64) -> u64 {
        self.modern_wr(DEVICE_STATUS, 0, 1);
        self.modern_wr(DEVICE_STATUS, 1, 1);
        self.modern_wr(DEVICE_STATUS, 3, 1);
        self.modern_wr(8, 1, 4); // driver_feature_select: high word
        self.modern_wr(12, 1, 4); // VERSION_1
        self.modern_wr(8, 0, 4);
        self.modern_wr(12, 0, 4);
        self.modern_wr(DEVICE_STATUS, 3 | 8, 1);
        assert_eq!(self.status(), 3 | 8, "FEATURES_OK");
        self.modern_wr(22, 0, 2); // queue_select
        self.modern_wr(24, 64, 2); // queue_size
        for (off, a) in [(32, desc), (40, avail), (48, used)] {
            self.modern_wr(off, a, 4);
            self.modern_wr(off + 4, 0, 4);
        }
        self.modern_wr(28, 1, 2); // queue_enable
        self.modern_wr(DEVICE_STATUS, 3 | 8 | 4, 1);
        let r = self.rd(MODERN_BAR, 30, 2);
        let notify_off = u16::from_le_bytes([r.payload[16], r.payload[17]]);
        0x3000 + 4 * u64::from(notify_off)
    }
}

fn memfd(size: u64) -> File {
    // SAFETY: a NUL-terminated name; checked, then owned.
    let fd = unsafe { libc::memfd_create(c"vblk-hostile".as_ptr(), 0) };
    assert!(fd >= 0);
    // SAFETY: a fresh descriptor nobody else owns.
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(size).unwrap();
    f
}
