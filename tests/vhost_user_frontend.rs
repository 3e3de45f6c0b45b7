//! A minimal, hand-driven vhost-user front end (rust-vmm `vhost` crate,
//! frontend side) against `vblk serve`: it builds descriptor chains itself,
//! so it can send what libblkio never would — GET_ID, malformed and hostile
//! chains, broken rings, memory regions past the end of their file, forged
//! inflight regions — and check that vblk answers and keeps serving. It
//! also checks the daemon's socket-path handling and that connections leave
//! no file descriptor behind. Guest memory, descriptors and the rings come
//! from the test kit (`vblk-testkit`); the catalogue of hostile cases any
//! back end can be put through is `vblk torture` (tests/torture.rs).

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use vblk_testkit::mem::memfd as kit_memfd;
use vblk_testkit::ring::{link, Desc, SplitRing, F_INDIRECT, F_NEXT, F_WRITE};
use vblk_testkit::GuestRam;
use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserHeaderFlag, VhostUserInflight, VhostUserProtocolFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::EventFd;

mod common;
use common::{vblk, Daemon};

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

/// (st_dev, st_ino) of `p`, if it exists.
fn inode(p: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(p)
        .ok()
        .map(|m| (m.dev(), m.ino()))
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

#[test]
fn get_id_config_and_hostile_chains_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.img");
    std::fs::write(&img, vec![0x5a; 1 << 20]).unwrap();
    let (mut daemon, sock) =
        start_with_control(dir.path(), &img, &["--serial", "vblk-test-serial-01"]);
    let mut g = Guest::connect(&sock);

    // Config space: capacity in sectors, blk_size.
    let (_, cfg) =
        g.fe.get_config(0, 24, VhostUserConfigFlags::WRITABLE, &[0u8; 24])
            .unwrap();
    assert_eq!(u64::from_le_bytes(cfg[0..8].try_into().unwrap()), 2048);
    assert_eq!(u32::from_le_bytes(cfg[20..24].try_into().unwrap()), 512);

    // GET_ID: 20 bytes of serial + status.
    g.header(HDR, 8, 0);
    g.put(STATUS, &[0xff]);
    let len = g.submit(&[(HDR, 16, 0), (DATA, 20, F_WRITE), (STATUS, 1, F_WRITE)]);
    assert_eq!(len, 21);
    assert_eq!(g.get(STATUS, 1), [0]);
    assert_eq!(&g.get(DATA, 20)[..19], b"vblk-test-serial-01");

    // IN through an indirect table.
    let table = 0x40000;
    g.header(HDR, 0, 1);
    g.put(table, &Guest::desc_bytes(HDR, 16, F_NEXT, 1));
    g.put(
        table + 16,
        &Guest::desc_bytes(DATA, 512, F_WRITE | F_NEXT, 2),
    );
    g.put(table + 32, &Guest::desc_bytes(STATUS, 1, F_WRITE, 0));
    g.put(STATUS, &[0xff]);
    g.put(DATA, &[0u8; 512]);
    assert_eq!(g.submit(&[(table, 48, F_INDIRECT)]), 513);
    assert_eq!(g.get(STATUS, 1), [0]);
    assert!(g.get(DATA, 512).iter().all(|&b| b == 0x5a));

    // Hostile: status byte in a readable descriptor → returned unexecuted, len 0.
    g.header(HDR, 1, 0);
    assert_eq!(g.submit(&[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, 0)]), 0);
    // Hostile: data buffer outside guest memory → IOERR.
    g.header(HDR, 0, 0);
    g.put(STATUS, &[0xff]);
    assert_eq!(
        g.submit(&[(HDR, 16, 0), (1 << 40, 512, F_WRITE), (STATUS, 1, F_WRITE)]),
        1
    );
    assert_eq!(g.get(STATUS, 1), [1]);
    // Hostile: sector past the end → IOERR.
    g.header(HDR, 0, 2048);
    assert_eq!(
        g.submit(&[(HDR, 16, 0), (DATA, 512, F_WRITE), (STATUS, 1, F_WRITE)]),
        1
    );
    assert_eq!(g.get(STATUS, 1), [1]);
    // Hostile: a chain that loops (0 → 1 → 0 ...) breaks the ring: it is
    // not served (no used entry), the daemon survives, and the ring is
    // served again once the front end restarts it.
    g.header(HDR, 0, 0);
    g.publish_raw(
        &[(HDR, 16, F_NEXT, 1), (DATA, 512, F_WRITE | F_NEXT, 0)],
        None,
    );
    assert_eq!(
        g.wait_used_for(Duration::from_millis(500)),
        None,
        "a looping chain was completed"
    );
    g.restart_zeroed();
    // Hostile: unknown type → UNSUPP.
    g.header(HDR, 0x1234, 0);
    g.put(STATUS, &[0xff]);
    assert_eq!(g.submit(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]), 1);
    assert_eq!(g.get(STATUS, 1), [2]);

    // Still serving: a write lands in the file.
    g.header(HDR, 1, 7);
    g.put(DATA, &[0xc3; 512]);
    assert_eq!(
        g.submit(&[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, F_WRITE)]),
        1
    );
    assert_eq!(g.get(STATUS, 1), [0]);
    g.header(HDR, 4, 0);
    assert_eq!(g.submit(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]), 1);
    assert!(std::fs::read(&img).unwrap()[7 * 512..8 * 512]
        .iter()
        .all(|&b| b == 0xc3));

    // Hostile: the avail index jumps by more than the queue size. The queue
    // is refused (no completion), the daemon survives, and a new front end
    // is served.
    g.header(HDR, 0, 0);
    g.publish_raw(
        &[(HDR, 16, F_NEXT, 1), (STATUS, 1, F_WRITE, 0)],
        Some(g.ring.avail_idx.wrapping_add(1000)),
    );
    assert_eq!(
        g.wait_used_for(Duration::from_millis(500)),
        None,
        "a broken ring was served"
    );
    let stats = daemon.stats();
    assert_eq!(stats["device"]["needs_reset"], 2, "{stats}");
    assert!(
        stats["queues"][0]["malformed_chains"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(
        stats["queues"][0]["bad_address"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    // The front end stops and restarts the ring (what QEMU does on a guest
    // reset): the queue is served again on the same connection.
    g.restart_zeroed();
    g.header(HDR, 0, 7);
    g.put(STATUS, &[0xff]);
    assert_eq!(
        g.submit(&[(HDR, 16, 0), (DATA, 512, F_WRITE), (STATUS, 1, F_WRITE)]),
        513,
        "a restarted ring is not served"
    );
    drop(g);
    assert!(daemon.alive(), "daemon died on a broken ring");
    let mut g = Guest::connect(&sock);
    g.header(HDR, 0, 7);
    g.put(STATUS, &[0xff]);
    assert_eq!(
        g.submit(&[(HDR, 16, 0), (DATA, 512, F_WRITE), (STATUS, 1, F_WRITE)]),
        513
    );
    assert!(g.get(DATA, 512).iter().all(|&b| b == 0xc3));
    drop(g);
    drop(daemon); // killed
    let _ = std::fs::remove_file(&sock);
}

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

#[test]
fn memory_regions_past_their_file_are_refused_and_the_daemon_lives() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (mut daemon, sock) = start(dir.path(), &img);
    let small = memfd(1 << 20);
    let region = |gpa: u64, size: u64, off: u64, fd: i32| VhostUserMemoryRegionInfo {
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: 0x7000_0000_0000 + gpa,
        mmap_offset: off,
        mmap_handle: fd,
    };
    let sfd = small.as_raw_fd();
    let mut g = Guest::connect_with(&sock, Setup::acked(), |fe| {
        // Past the end of the file: mapping it would SIGBUS the daemon on
        // first touch. Refused (REPLY_ACK non-zero), connection kept.
        assert!(fe.set_mem_table(&[region(0, 4 << 20, 0, sfd)]).is_err());
        assert!(fe.set_mem_table(&[region(0, 4096, 1 << 20, sfd)]).is_err());
        // Overlapping regions.
        assert!(fe
            .set_mem_table(&[region(0, 8192, 0, sfd), region(4096, 4096, 0, sfd)])
            .is_err());
        assert_eq!(fe.get_max_mem_slots().unwrap(), 509);
        // A hostile queue index or size is refused, the connection kept.
        assert!(fe.set_vring_num(5, 16).is_err());
        assert!(fe.set_vring_num(0, 24).is_err(), "not a power of two");
        assert!(fe.set_vring_num(0, 2048).is_err(), "over the maximum");
    });
    // The valid table sent afterwards serves I/O on the same connection.
    assert_eq!(get_id(&mut g), 21);
    // ADD_MEM_REG past the end is refused too; a good one is added and
    // removed again, and the ring keeps working across the changes.
    let extra = memfd(1 << 20);
    let far = 0x1_0000_0000u64;
    assert!(g
        .fe
        .add_mem_region(&region(far, 2 << 20, 0, extra.as_raw_fd()))
        .is_err());
    assert!(
        g.fe.add_mem_region(&region(0x1000, 4096, 0, extra.as_raw_fd()))
            .is_err(),
        "overlaps the guest RAM"
    );
    g.fe.add_mem_region(&region(far, 1 << 20, 0, extra.as_raw_fd()))
        .unwrap();
    assert_eq!(get_id(&mut g), 21);
    g.fe.remove_mem_region(&region(far, 1 << 20, 0, -1))
        .unwrap();
    assert!(g
        .fe
        .remove_mem_region(&region(far, 1 << 20, 0, -1))
        .is_err());
    assert_eq!(get_id(&mut g), 21);
    assert!(daemon.alive());
    drop(g);
    // mmap offset + size overflows: the message itself is invalid (the
    // vhost crate drops the connection); the daemon lives on.
    let fe = Frontend::connect(&sock, 1).unwrap();
    fe.set_owner().unwrap();
    let _ = fe.set_mem_table(&[region(0, 4096, u64::MAX - 4095, small.as_raw_fd())]);
    let _ = fe.get_features();
    drop(fe);
    // GET_VRING_BASE of a queue that does not exist: no answer can be
    // given, so the connection is dropped; the daemon lives on.
    let g = Guest::connect(&sock);
    assert!(g.fe.get_vring_base(7).is_err());
    drop(g);
    assert!(daemon.alive());
    // And a plain front end is served afterwards.
    let mut g = Guest::connect(&sock);
    assert_eq!(get_id(&mut g), 21);
    drop(g);
    assert!(daemon.alive());
}

/// Offsets in one queue region of the inflight buffer.
const IF_VERSION: usize = 8;
const IF_DESC_NUM: usize = 10;
const IF_LAST_BATCH_HEAD: usize = 12;
const IF_USED_IDX: usize = 14;
fn if_desc(head: u16) -> usize {
    16 + 16 * usize::from(head)
}

#[test]
fn inflight_region_round_trip_and_resubmission_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (mut daemon, sock) = start(dir.path(), &img);
    let mut g = Guest::connect_with(&sock, Setup::acked(), |_| {});
    {
        let (info, file) = g.inflight.as_ref().unwrap();
        // One queue of 16: ALIGN_UP(16 * 16 + 2, 64) bytes, as libvhost-user.
        assert_eq!(info.mmap_size, 320);
        assert_eq!(info.mmap_offset, 0);
        assert_eq!(file.metadata().unwrap().len(), 320);
        // SAFETY: fcntl F_GET_SEALS on our own fd.
        let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
        assert!(seals & libc::F_SEAL_SHRINK != 0, "seals {seals:#x}");
    }
    // A region too small for what it claims is refused.
    {
        let (info, file) = g.inflight.as_ref().unwrap();
        let mut bad = *info;
        bad.queue_size = 1024;
        assert!(g.fe.set_inflight_fd(&bad, file.as_raw_fd()).is_err());
    }
    for _ in 0..3 {
        assert_eq!(get_id(&mut g), 21);
    }
    // The back-end tracked the requests: initialized, used_idx follows the
    // used ring, nothing left in flight.
    assert_eq!(g.inflight_get(IF_VERSION, 2), 1);
    assert_eq!(g.inflight_get(IF_DESC_NUM, 2), u64::from(QSIZE));
    assert_eq!(g.inflight_get(IF_USED_IDX, 2), 3);
    for h in 0..QSIZE {
        assert_eq!(g.inflight_get(if_desc(h), 1), 0, "head {h} still in flight");
    }
    // Stop the ring (as QEMU does on a VM stop or a back-end restart).
    assert_eq!(g.fe.get_vring_base(0).unwrap(), 3);

    // Forge the state a crash leaves behind: the driver made heads 3, 1, 2
    // available (avail 3..6). Head 3's used element reached the used ring
    // (used idx 4) but the crash came before the inflight region saw it
    // (used_idx 3, last batch = [3]). Heads 1 and 2 are in flight, 1 the
    // older. On restart the back-end must drop 3 from the in-flight set,
    // resubmit 1 and 2, and continue the avail ring at 4 + 2 = 6.
    let chain = |g: &Guest, head: u16, d: u16, buf: u64| {
        let hdr = 0x50000 + 0x100 * u64::from(head);
        let st = hdr + 0x80;
        g.header(hdr, 0, 1);
        g.put(st, &[0xff]);
        g.put(buf, &[0u8; 512]);
        g.put(
            DESC + 16 * u64::from(head),
            &Guest::desc_bytes(hdr, 16, F_NEXT, d),
        );
        g.put(
            DESC + 16 * u64::from(d),
            &Guest::desc_bytes(buf, 512, F_WRITE | F_NEXT, d + 1),
        );
        g.put(
            DESC + 16 * u64::from(d + 1),
            &Guest::desc_bytes(st, 1, F_WRITE, 0),
        );
        st
    };
    let st1 = chain(&g, 1, 4, 0x60000);
    let st2 = chain(&g, 2, 6, 0x61000);
    for (slot, head) in [(3u16, 3u16), (4, 1), (5, 2)] {
        g.put(AVAIL + 4 + 2 * u64::from(slot), &head.to_le_bytes());
    }
    g.put(AVAIL + 2, &6u16.to_le_bytes());
    g.put(USED + 4 + 8 * 3, &[3, 0, 0, 0, 1, 0, 0, 0]);
    g.put(USED + 2, &4u16.to_le_bytes());
    g.inflight_put(IF_USED_IDX, 3, 2);
    g.inflight_put(IF_LAST_BATCH_HEAD, 3, 2);
    g.inflight_put(if_desc(3), 1, 1);
    g.inflight_put(if_desc(1), 1, 1);
    g.inflight_put(if_desc(1) + 8, 5, 8);
    g.inflight_put(if_desc(2), 1, 1);
    g.inflight_put(if_desc(2) + 8, 10, 8);
    // Restart: the front end's base (3) is stale; the region knows better.
    g.start_ring(3);
    g.ring.used_seen = 4;
    let mut heads = Vec::new();
    for _ in 0..2 {
        let e = USED + 4 + 8 * u64::from(g.ring.used_seen % QSIZE);
        assert!(g.wait_used().is_some(), "inflight requests not resubmitted");
        heads.push(u32::from_le_bytes(g.get(e, 4).try_into().unwrap()));
    }
    heads.sort();
    assert_eq!(heads, vec![1, 2], "resubmitted the wrong heads");
    assert_eq!(g.get(st1, 1), [0]);
    assert_eq!(g.get(st2, 1), [0]);
    assert!(g.get(0x60000, 512).iter().all(|&b| b == 0x5a));
    assert!(g.get(0x61000, 512).iter().all(|&b| b == 0x5a));
    // Head 3 (already used) was not executed again.
    assert_eq!(
        g.wait_used_for(Duration::from_millis(300)),
        None,
        "a completed request was resubmitted"
    );
    // The avail ring continues at 6.
    g.ring.avail_idx = 6;
    assert_eq!(get_id(&mut g), 21);
    assert_eq!(g.u16_at(USED + 2), 7);
    assert_eq!(g.inflight_get(IF_USED_IDX, 2), 7);
    for h in 0..QSIZE {
        assert_eq!(g.inflight_get(if_desc(h), 1), 0, "head {h} still in flight");
    }
    drop(g);
    assert!(daemon.alive());
}

#[test]
fn fifty_connections_leave_no_descriptor_behind() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (mut daemon, sock) = start_with_control(dir.path(), &img, &["--num-queues", "2"]);
    let ctl = daemon.ctl().to_path_buf();
    let session = || {
        let mut g = Guest::connect_with(&sock, Setup::acked(), |_| {});
        assert_eq!(get_id(&mut g), 21);
        drop(g);
    };
    let connections = || -> u64 {
        common::stats(&ctl)["device"]["disconnects"]
            .as_u64()
            .unwrap()
    };
    let settle = |n: u64| {
        let t = Instant::now();
        while connections() < n {
            assert!(t.elapsed() < Duration::from_secs(10), "disconnect not seen");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // Warm up (lazily opened descriptors, thread-local state), then count.
    session();
    session();
    settle(2);
    let before = daemon.open_fds();
    for _ in 0..50 {
        session();
    }
    settle(52);
    let after = daemon.open_fds();
    eprintln!("daemon fds: {before} after 2 connections, {after} after 52");
    assert_eq!(
        after, before,
        "fds: {before} before 50 connections, {after} after"
    );
    assert!(daemon.alive());
}

#[test]
fn a_socket_path_that_is_not_a_socket_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    // The issue-9 typo: --vhost-user names the image itself.
    let out = vblk()
        .args(["serve", "--image"])
        .arg(&img)
        .arg("--vhost-user")
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(
        std::fs::read(&img).unwrap(),
        vec![0x5a; 1 << 20],
        "image damaged"
    );
    // A directory is refused the same way.
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let out = vblk()
        .args(["serve", "--image"])
        .arg(&img)
        .arg("--vhost-user")
        .arg(&sub)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(sub.is_dir());
}

#[test]
fn a_live_socket_is_refused_and_a_stale_one_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (mut first, sock) = start(dir.path(), &img);
    let id = inode(&sock);
    let out = vblk()
        .args(["serve", "--image"])
        .arg(&img)
        .arg("--vhost-user")
        .arg(&sock)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("another process is serving"), "{err}");
    assert_eq!(inode(&sock), id, "the live socket was replaced");
    assert!(first.alive());
    let mut g = Guest::connect(&sock);
    assert_eq!(get_id(&mut g), 21, "the first daemon lost its socket");
    drop(g);
    assert!(first.stop().success());
    assert!(!sock.exists(), "socket left behind");

    // A stale socket: the file of a listener that is gone.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let (mut second, sock) = start(dir.path(), &img);
    let mut g = Guest::connect(&sock);
    assert_eq!(get_id(&mut g), 21);
    drop(g);
    assert!(second.stop().success());
}

#[test]
fn shutdown_does_not_go_through_the_socket_path() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (mut d, sock) = start(dir.path(), &img);
    // Someone else takes the path (an operator's rm + a second daemon):
    // our listener there accepts nothing. SIGTERM must still stop the
    // first daemon promptly, and it must not remove the other's socket.
    std::fs::remove_file(&sock).unwrap();
    let other = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let theirs = inode(&sock);
    let st = d.stop(); // panics if SIGTERM does not stop it
    assert!(st.success(), "{st}");
    assert_eq!(inode(&sock), theirs, "the other socket was removed");
    drop(other);
}

#[test]
fn a_stalled_front_end_does_not_hold_the_shutdown() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (mut d, sock) = start(dir.path(), &img);
    // A SET_VRING_ADDR header announcing a 40-byte body that never comes.
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let mut hdr = Vec::new();
    hdr.extend_from_slice(&9u32.to_le_bytes());
    hdr.extend_from_slice(&1u32.to_le_bytes());
    hdr.extend_from_slice(&40u32.to_le_bytes());
    s.write_all(&hdr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let st = d.stop(); // panics if the stalled front end blocks SIGTERM
    assert!(st.success(), "{st}");
    drop(s);
}

#[test]
fn a_front_end_that_truncates_guest_memory_does_not_kill_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (mut daemon, sock) = start_with_control(dir.path(), &img, &[]);
    // Guest memory is an unsealed memfd: the front end can shrink it under
    // the daemon's mapping.
    let mut g = Guest::connect(&sock);
    assert_eq!(get_id(&mut g), 21);
    g.header(HDR, 8, 0);
    // Cut the file below DATA and STATUS (the rings and HDR stay); from
    // here on this test touches nothing past 0x20000 itself.
    g.ram.truncate(0x20000).unwrap();
    g.publish_raw(
        &[
            (HDR, 16, F_NEXT, 1),
            (DATA, 20, F_WRITE | F_NEXT, 2),
            (STATUS, 1, F_WRITE, 0),
        ],
        None,
    );
    // The write of the ID and status faults in the daemon: contained, the
    // ring is broken, the daemon lives.
    let _ = g.wait_used_for(Duration::from_millis(500));
    std::thread::sleep(Duration::from_millis(100));
    assert!(daemon.alive(), "a truncated memfd killed the daemon");
    let stats = daemon.stats();
    assert_eq!(stats["device"]["needs_reset"], 1, "{stats}");
    drop(g);
    // The next front end is served.
    let mut g = Guest::connect(&sock);
    assert_eq!(get_id(&mut g), 21);
    drop(g);
    assert!(daemon.alive());
}
