//! A hostile vfio-user client must not kill, desync or exhaust the daemon
//! (issue 12). The client here speaks raw bytes, written by hand from the
//! spec (QEMU docs/interop/vfio-user.rst), to a real `vblk serve`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

mod common;
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

// ----------------------------------------------------------------------
// Tests
// ----------------------------------------------------------------------

#[test]
fn malformed_messages_do_not_kill_the_daemon() {
    let mut d = start();
    let attacks: Vec<Vec<u8>> = vec![
        // VERSION whose size is smaller than its own header.
        header(1, 1, 4).to_vec(),
        // An unknown command.
        header(2, 0x7777, 16).to_vec(),
        // A region read of 4 GiB - 1 from a region that does not exist.
        [
            header(3, 9, 32).to_vec(),
            0xffu32.to_le_bytes().to_vec(),
            vec![0; 4],
            0u64.to_le_bytes().to_vec(),
            0xffff_ffffu32.to_le_bytes().to_vec(),
        ]
        .concat(),
        // Half a header, then hang up.
        vec![1, 2, 3],
        // Garbage.
        (0..200u32).map(|i| (i * 37 % 251) as u8).collect(),
    ];
    for (i, a) in attacks.iter().enumerate() {
        let mut s = UnixStream::connect(&d.sock)
            .unwrap_or_else(|e| panic!("attack {i}: cannot connect: {e}"));
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let _ = s.write_all(a);
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        drop(s);
        std::thread::sleep(Duration::from_millis(100));
        assert!(d.alive(), "daemon died on attack {i}");
    }
    // Still serving: a fresh client is accepted and the counters answer.
    let mut c = client(&d);
    c.version();
    assert!(c.device_info().ok());
    drop(c);
    let v = d.stats();
    assert!(
        v["device"]["connections"].as_u64().unwrap() >= attacks.len() as u64,
        "{v}"
    );
    stop(d);
}

#[test]
fn a_refused_message_is_consumed_whole_so_an_embedded_header_never_runs() {
    let d = start();
    let mut c = client(&d);
    c.version();
    let reset = msg(7, DEVICE_RESET, &[]);
    // REGION_WRITE to region 99 whose data is a DEVICE_RESET message.
    let mut p = Client::access(99, 0, reset.len() as u32);
    p.extend_from_slice(&reset);
    assert_eq!(c.call(REGION_WRITE, &p).errno(), libc::EINVAL);
    // An unknown command whose payload is a DEVICE_RESET message.
    assert_eq!(c.call(0x7777, &reset).errno(), libc::ENOTSUP);
    // A no_reply REGION_READ and VERSION-like no_reply unknown command:
    // no reply, and the stream stays in step.
    let mut r = header_flags(50, REGION_READ, 32, NO_REPLY).to_vec();
    r.extend_from_slice(&Client::access(7, 0, 4));
    c.send(&r, &[]);
    c.send(
        &[&header_flags(51, 0x7777, 20, NO_REPLY)[..], &[0; 4]].concat(),
        &[],
    );
    // The next reply is the next command's, not a reset's (id 7).
    let info = c.device_info();
    assert!(info.ok(), "{info:?}");
    assert!(c.nothing_more(), "no reply to the embedded reset");
    let v = d.stats();
    assert_eq!(v["device"]["resets"].as_u64(), Some(0), "{v}");
}

#[test]
fn wrong_sizes_are_answered_with_einval_and_absurd_sizes_drop_only_that_client() {
    let mut d = start();
    let mut c = client(&d);
    c.version();
    // DEVICE_GET_INFO with 4 bytes more or fewer than its layout.
    assert_eq!(c.call(DEVICE_GET_INFO, &[0; 20]).errno(), libc::EINVAL);
    assert_eq!(c.call(DEVICE_GET_INFO, &[0; 12]).errno(), libc::EINVAL);
    assert_eq!(c.call(DEVICE_RESET, &[0; 8]).errno(), libc::EINVAL);
    assert_eq!(c.call(DMA_UNMAP, &[0; 8]).errno(), libc::EINVAL);
    // REGION_WRITE whose count disagrees with its data.
    let mut p = Client::access(0, 0, 4096);
    p.extend_from_slice(&[0; 4]);
    assert_eq!(c.call(REGION_WRITE, &p).errno(), libc::EINVAL);
    assert!(c.device_info().ok(), "still in step");
    drop(c); // one client at a time
             // Sizes that cannot be framed end this connection, and only it.
    for size in [8u32, 0xffff_ffff] {
        let mut c = client(&d);
        c.version();
        c.send(&header(9, DEVICE_GET_INFO, size), &[]);
        assert!(c.closed(), "size {size}: connection dropped");
        assert!(d.alive());
    }
    let mut c = client(&d);
    c.version();
    assert!(c.device_info().ok());
    drop(c);
    stop(d);
}

#[test]
fn client_sized_allocations_never_happen() {
    let mut d = start();
    let mut c = client(&d);
    c.version();
    let before = vm_hwm(&d);
    // REGION_WRITE claiming 4 GiB - 1 of data in a 32-byte message.
    let w = Client::access(0, 0, 0xffff_ffff);
    assert_eq!(c.call(REGION_WRITE, &w).errno(), libc::EINVAL);
    // REGION_READ of 4 GiB - 1 from a real region.
    assert_eq!(c.rd(0, 0, 0xffff_ffff).errno(), libc::E2BIG);
    // A header announcing a 4 GiB message, followed by a little data.
    let mut big = header(3, REGION_WRITE, 0xffff_fff0).to_vec();
    big.extend_from_slice(&Client::access(0, 0, 0xffff_ffd0));
    big.extend_from_slice(&[0; 4096]);
    drop(c); // one client at a time
    let mut c2 = client(&d);
    c2.version();
    let _ = c2.s.write_all(&big);
    assert!(c2.closed());
    let after = vm_hwm(&d);
    assert!(
        after < before + 16 * 1024,
        "peak memory {before} KiB -> {after} KiB"
    );
    assert!(d.alive());
}

#[test]
fn commands_before_version_and_malformed_versions_get_errno_replies() {
    let mut d = start();
    let mut c = client(&d);
    // "the first message is VERSION"
    assert_eq!(c.call(DEVICE_RESET, &[]).errno(), libc::EINVAL);
    assert_eq!(c.device_info().errno(), libc::EINVAL);
    for bad in [
        b"\0\0\0\0{\"capabilities\":{}}".to_vec(), // no NUL
        b"\0\0\0\0{}\0{}\0".to_vec(),              // NUL inside
        b"\0\0\0\0not json\0".to_vec(),
        vec![0; 12], // VERSION size 16 + 12: NULs inside
        vec![0; 2],  // shorter than major + minor
        vec![1, 0, 0, 0],
    ] {
        let r = c.call(VERSION, &bad);
        assert_ne!(r.errno(), 0, "{bad:?}");
        assert!(d.alive());
    }
    // A bare VERSION header (size 16, no payload).
    assert_eq!(c.call(VERSION, &[]).errno(), libc::EINVAL);
    c.version();
    assert!(c.device_info().ok());
}

#[test]
fn dma_maps_are_checked_capped_and_unmapped_exactly() {
    let mut d = start();
    let mut c = client(&d);
    c.version();
    // A 4 MiB map of a 4 KiB memfd: refused (it would SIGBUS on touch).
    let small = memfd(4096);
    assert_eq!(
        c.dma_map(3, 0, 0, 4 << 20, Some(&small)).errno(),
        libc::EINVAL
    );
    assert_eq!(
        c.dma_map(3, 4096, 0, 4096, Some(&small)).errno(),
        libc::EINVAL
    );
    // A fine map; an overlapping one is EEXIST.
    let ram = memfd(1 << 20);
    assert!(c.dma_map(3, 0, 0x10_0000, 1 << 20, Some(&ram)).ok());
    assert_eq!(
        c.dma_map(3, 0, 0x18_0000, 1 << 20, Some(&ram)).errno(),
        libc::EEXIST
    );
    // Unmaps must match a mapping exactly.
    assert_eq!(c.dma_unmap(0x10_0000, 4096).errno(), libc::EINVAL);
    assert_eq!(c.dma_unmap(0x10_1000, 1 << 20).errno(), libc::EINVAL);
    assert_eq!(c.dma_unmap(0x20_0000, 1 << 20).errno(), libc::EINVAL);
    let r = c.dma_unmap(0x10_0000, 1 << 20);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.payload.len(), 24, "the entry is echoed");
    assert_eq!(c.dma_unmap(0x10_0000, 1 << 20).errno(), libc::EINVAL);

    // The map cap, advertised in VERSION: fds do not pile up.
    drop(c); // one client at a time
    let mut c2 = client(&d);
    let mut p = vec![0, 0, 0, 0];
    p.extend_from_slice(b"{}\0");
    let v = c2.call(VERSION, &p);
    let json = &v.payload[4..v.payload.len() - 1];
    let caps: serde_json::Value = serde_json::from_slice(json).unwrap();
    let max = caps["capabilities"]["max_dma_maps"].as_u64().unwrap();
    assert!((1..=4096).contains(&max), "{caps}");
    assert!(caps["capabilities"]["max_msg_fds"].as_u64().unwrap() >= 8);
    let page = memfd(4096);
    let fds_before = d.open_fds();
    for i in 0..max {
        let r = c2.dma_map(1, 0, i * 4096, 4096, Some(&page));
        assert!(r.ok(), "map {i}: {r:?}");
    }
    assert_eq!(
        c2.dma_map(1, 0, max * 4096, 4096, Some(&page)).errno(),
        libc::ENOSPC
    );
    assert!(d.open_fds() <= fds_before + max as usize + 2);
    drop(c2);
    assert!(d.alive());
}

#[test]
fn a_memfd_shrunk_under_the_rings_does_not_kill_the_daemon() {
    let mut d = start();
    let mut c = client(&d);
    c.version();
    let ram = memfd(64 * 1024);
    assert!(c.dma_map(3, 0, 0, 64 * 1024, Some(&ram)).ok());
    let notify = c.probe(0x1000, 0x3000, 0x4000);
    ram.set_len(0).unwrap(); // not sealed: allowed
    c.modern_wr(notify, 0, 2); // the device reads the avail ring: SIGBUS
                               // The queue thread reads the ring after the kick's reply.
    let t = std::time::Instant::now();
    while c.status() & NEEDS_RESET == 0 && t.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(d.alive(), "daemon killed by SIGBUS");
    assert_ne!(c.status() & NEEDS_RESET, 0, "breakage reported");
    // The daemon goes on serving: a reset and a fresh map work.
    assert!(c.call(DEVICE_RESET, &[]).ok());
    assert!(c.dma_unmap(0, 64 * 1024).ok());
    assert!(d.alive());
    drop(c);
    stop(d);
}

#[test]
fn the_device_never_writes_a_read_only_region() {
    let mut d = start();
    let mut c = client(&d);
    c.version();
    let ram = memfd(64 * 1024);
    // One IN request: header (OUT), 512 data bytes and status (IN).
    let desc = [
        (0x8000u64, 16u32, 1u16, 1u16),
        (0x9000, 512, 1 | 2, 2),
        (0xa000, 1, 2, 0),
    ];
    for (i, (addr, len, flags, next)) in desc.iter().enumerate() {
        let mut b = addr.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&next.to_le_bytes());
        ram.write_all_at(&b, 0x1000 + 16 * i as u64).unwrap();
    }
    ram.write_all_at(&[0; 16], 0x8000).unwrap(); // VIRTIO_BLK_T_IN, sector 0
    ram.write_all_at(&[0x77; 512], 0x9000).unwrap();
    ram.write_all_at(&[0xff], 0xa000).unwrap();
    ram.write_all_at(&[0, 0, 1, 0, 0, 0], 0x3000).unwrap(); // avail idx 1, ring[0] 0
                                                            // Mapped readable only.
    assert!(c.dma_map(1, 0, 0, 64 * 1024, Some(&ram)).ok());
    let notify = c.probe(0x1000, 0x3000, 0x4000);
    c.modern_wr(notify, 0, 2);
    assert!(d.alive(), "daemon killed writing a read-only region");
    let mut b = [0u8; 512];
    ram.read_exact_at(&mut b, 0x9000).unwrap();
    assert_eq!(b, [0x77; 512], "data untouched");
    ram.read_exact_at(&mut b[..1], 0xa000).unwrap();
    assert_eq!(b[0], 0xff, "status untouched");
    ram.read_exact_at(&mut b[..4], 0x4000).unwrap();
    assert_eq!(&b[..4], &[0; 4], "used ring untouched");
    assert_ne!(c.status() & NEEDS_RESET, 0, "the failed write is reported");
    drop(c);
    stop(d);
}

#[test]
fn fds_sent_with_a_message_are_closed_when_unused() {
    let mut d = start();
    let mut c = client(&d);
    c.version();
    let f = memfd(4096);
    let before = d.open_fds();
    let mut info = 16u32.to_le_bytes().to_vec();
    info.extend_from_slice(&[0; 12]);
    for _ in 0..50 {
        // Fds with a command that takes none.
        let fds = [f.as_raw_fd(); 3];
        assert_eq!(
            c.call_fds(DEVICE_GET_INFO, &info, &fds).errno(),
            libc::EINVAL
        );
        // More fds than max_msg_fds: the kernel truncates (MSG_CTRUNC).
        let fds = [f.as_raw_fd(); 40];
        let mut p = 20u32.to_le_bytes().to_vec();
        for v in [4u32 | 32, 2, 0, 40] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(c.call_fds(8, &p, &fds).errno(), libc::EINVAL);
    }
    assert!(c.device_info().ok(), "in step");
    assert!(
        d.open_fds() <= before + 2,
        "fds leaked: {before} -> {}",
        d.open_fds()
    );
    assert!(d.alive());
}
