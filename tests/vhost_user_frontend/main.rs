//! A minimal, hand-driven vhost-user front end (rust-vmm `vhost` crate,
//! frontend side) against `vblk serve`: it builds descriptor chains itself,
//! so it can send what libblkio never would — GET_ID, malformed and hostile
//! chains, broken rings, memory regions past the end of their file, forged
//! inflight regions — and check that vblk answers and keeps serving. It
//! also checks the daemon's socket-path handling and that connections leave
//! no file descriptor behind. Guest memory, descriptors and the rings come
//! from the test kit (`vblk-testkit`); the catalogue of hostile cases any
//! back end can be put through is `vblk torture` (tests/torture.rs).

mod chains;
mod inflight;
mod lifecycle;
mod memory;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vblk_testkit::mem::memfd as kit_memfd;
use vblk_testkit::ring::{link, Desc, SplitRing, F_NEXT, F_WRITE};
use vblk_testkit::GuestRam;
use vhost::vhost_user::message::{
    VhostUserHeaderFlag, VhostUserInflight, VhostUserProtocolFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::EventFd;

#[path = "../common/mod.rs"]
mod common;
use common::Daemon;

const MEM: usize = 4 << 20;
const QSIZE: u16 = 16;
const DESC: u64 = 0x0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;

struct Guest {
    ram: GuestRam,
    ring: SplitRing,
    fe: Frontend,
    kick: EventFd,
    /// Kept open for the daemon's interrupts; the test polls the used ring.
    _call: EventFd,
    /// GET_INFLIGHT_FD's answer and its file (read and written with
    /// pread/pwrite: the same pages the daemon maps).
    inflight: Option<(VhostUserInflight, File)>,
}

/// A memfd of `len` bytes (sealable).
fn memfd(len: u64) -> File {
    kit_memfd(c"guest", len).unwrap()
}

/// How a test front end negotiates.
#[derive(Clone, Copy)]
struct Setup {
    proto: VhostUserProtocolFeatures,
    /// Ask for an inflight region (GET_INFLIGHT_FD + SET_INFLIGHT_FD).
    inflight: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            proto: VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::MQ,
            inflight: false,
        }
    }
}

impl Setup {
    /// REPLY_ACK on every message: refusals become errors here.
    fn acked() -> Self {
        Setup {
            proto: VhostUserProtocolFeatures::CONFIG
                | VhostUserProtocolFeatures::MQ
                | VhostUserProtocolFeatures::REPLY_ACK
                | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
                | VhostUserProtocolFeatures::INFLIGHT_SHMFD,
            inflight: true,
        }
    }
}

impl Guest {
    fn connect(sock: &Path) -> Guest {
        Self::connect_with(sock, Setup::default(), |_| {})
    }

    /// Connect and negotiate; `pre` runs after feature negotiation, before
    /// the memory table is sent.
    fn connect_with(sock: &Path, setup: Setup, pre: impl FnOnce(&mut Frontend)) -> Guest {
        let ram = GuestRam::memfd(MEM as u64).unwrap();
        // Room for hostile queue indices: the daemon, not this side, must refuse them.
        let mut fe = Frontend::connect(sock, 64).expect("connect");
        fe.set_owner().unwrap();
        let features = fe.get_features().unwrap();
        assert!(features & (1 << 32) != 0, "VERSION_1 not offered");
        assert!(features & (1 << 30) != 0, "PROTOCOL_FEATURES not offered");
        // VERSION_1 | PROTOCOL_FEATURES | FLUSH | BLK_SIZE | SEG_MAX | INDIRECT_DESC (no EVENT_IDX).
        fe.set_features((1 << 32) | (1 << 30) | (1 << 9) | (1 << 6) | (1 << 2) | (1 << 28))
            .unwrap();
        let pf = fe.get_protocol_features().unwrap();
        for want in [
            VhostUserProtocolFeatures::CONFIG,
            VhostUserProtocolFeatures::MQ,
            VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS,
            VhostUserProtocolFeatures::REPLY_ACK,
            VhostUserProtocolFeatures::INFLIGHT_SHMFD,
        ] {
            assert!(pf.contains(want), "protocol feature {want:?} not offered");
        }
        fe.set_protocol_features(setup.proto).unwrap();
        if setup.proto.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        let inflight = setup.inflight.then(|| {
            let (info, file) = fe
                .get_inflight_fd(&VhostUserInflight {
                    mmap_size: 0,
                    mmap_offset: 0,
                    num_queues: 1,
                    queue_size: QSIZE,
                })
                .expect("GET_INFLIGHT_FD");
            fe.set_inflight_fd(&info, file.as_raw_fd())
                .expect("SET_INFLIGHT_FD");
            (info, file)
        });
        pre(&mut fe);
        fe.set_mem_table(&[VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: MEM as u64,
            userspace_addr: ram.host_addr(0),
            mmap_offset: 0,
            mmap_handle: ram.fd(),
        }])
        .unwrap();
        let kick = EventFd::new(0).unwrap();
        let call = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut g = Guest {
            ram,
            ring: SplitRing::new(QSIZE, DESC, AVAIL, USED),
            fe,
            kick,
            _call: call,
            inflight,
        };
        g.start_ring(0);
        g
    }

    /// Configure and start ring 0 at avail index `base`.
    fn start_ring(&mut self, base: u16) {
        self.fe.set_vring_num(0, QSIZE).unwrap();
        self.fe.set_vring_addr(0, &self.ring_config()).unwrap();
        self.fe.set_vring_base(0, base).unwrap();
        self.fe.set_vring_call(0, &self._call).unwrap();
        self.fe.set_vring_kick(0, &self.kick).unwrap();
        self.fe.set_vring_enable(0, true).unwrap();
    }

    /// Read a little-endian field of the inflight region.
    fn inflight_get(&self, off: usize, len: usize) -> u64 {
        let (info, file) = self.inflight.as_ref().expect("no inflight region");
        assert!(off + len <= info.mmap_size as usize);
        let mut b = [0u8; 8];
        file.read_exact_at(&mut b[..len], info.mmap_offset + off as u64)
            .unwrap();
        u64::from_le_bytes(b)
    }

    fn inflight_put(&self, off: usize, v: u64, len: usize) {
        let (info, file) = self.inflight.as_ref().expect("no inflight region");
        assert!(off + len <= info.mmap_size as usize);
        file.write_all_at(&v.to_le_bytes()[..len], info.mmap_offset + off as u64)
            .unwrap();
    }

    fn ring_config(&self) -> VringConfigData {
        VringConfigData {
            queue_max_size: QSIZE,
            queue_size: QSIZE,
            flags: 0,
            desc_table_addr: self.ram.host_addr(DESC),
            used_ring_addr: self.ram.host_addr(USED),
            avail_ring_addr: self.ram.host_addr(AVAIL),
            log_addr: None,
        }
    }

    /// What QEMU does on a guest reset: stop the ring, zero it, start it
    /// again at 0.
    fn restart_zeroed(&mut self) {
        self.fe.get_vring_base(0).unwrap();
        self.ring.reset(&self.ram.mem);
        self.start_ring(0);
    }

    fn put(&self, addr: u64, bytes: &[u8]) {
        self.ram.write(addr, bytes);
    }

    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        self.ram.read(addr, len)
    }

    fn u16_at(&self, addr: u64) -> u16 {
        self.ram.u16_at(addr)
    }

    fn desc_bytes(addr: u64, len: u32, flags: u16, next: u16) -> [u8; 16] {
        Desc::new(addr, len, flags, next).to_bytes()
    }

    /// Write `descs` (addr, len, flags, next) at table index 0.., publish
    /// head 0 in the avail ring and kick. `next` is used verbatim.
    fn publish_raw(&mut self, descs: &[(u64, u32, u16, u16)], new_avail_idx: Option<u16>) {
        let ds: Vec<Desc> = descs
            .iter()
            .map(|&(a, l, f, n)| Desc::new(a, l, f, n))
            .collect();
        self.ring.descs(&self.ram.mem, 0, &ds);
        self.ring.stage(&self.ram.mem, 0);
        if let Some(idx) = new_avail_idx {
            self.ring.avail_idx = idx;
        }
        self.ring.flush_avail(&self.ram.mem);
        self.kick.write(1).unwrap();
    }

    /// Chain the descriptors with NEXT links in order, publish, wait for the
    /// used entry; returns its length.
    fn submit(&mut self, descs: &[(u64, u32, u16)]) -> u32 {
        let linked: Vec<_> = link(descs, 0, QSIZE)
            .iter()
            .map(|d| (d.addr, d.len, d.flags, d.next))
            .collect();
        self.publish_raw(&linked, None);
        self.wait_used().expect("no used entry within 5 s")
    }

    fn wait_used(&mut self) -> Option<u32> {
        self.wait_used_for(Duration::from_secs(5))
    }

    fn wait_used_for(&mut self, limit: Duration) -> Option<u32> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some((_, len)) = self.ring.take_used(&self.ram.mem) {
                return Some(len);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    fn header(&self, addr: u64, t: u32, sector: u64) {
        self.put(addr, &vblk_testkit::blk::header(t, sector));
    }
}

/// `vblk serve --image <image> --vhost-user <dir>/vblk.sock`: the daemon and its socket.
fn start(dir: &Path, image: &Path) -> (Daemon, PathBuf) {
    let d = Daemon::vhost_user(image).dir(dir).start();
    let sock = d.sock.clone();
    (d, sock)
}

/// The same with `--control <dir>/vblk.ctl` and `extra`.
fn start_with_control(dir: &Path, image: &Path, extra: &[&str]) -> (Daemon, PathBuf) {
    let d = Daemon::vhost_user(image)
        .dir(dir)
        .control()
        .args(extra)
        .start();
    let sock = d.sock.clone();
    (d, sock)
}

const HDR: u64 = 0x10000;
const DATA: u64 = 0x20000;
const STATUS: u64 = 0x30000;

fn image(dir: &Path) -> PathBuf {
    let img = dir.join("d.img");
    std::fs::write(&img, vec![0x5a; 1 << 20]).unwrap();
    img
}

/// A GET_ID request on head 0; returns the used length.
fn get_id(g: &mut Guest) -> u32 {
    g.header(HDR, 8, 0);
    g.put(STATUS, &[0xff]);
    g.submit(&[(HDR, 16, 0), (DATA, 20, F_WRITE), (STATUS, 1, F_WRITE)])
}
