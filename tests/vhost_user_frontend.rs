//! A minimal, hand-driven vhost-user front end (rust-vmm `vhost` crate,
//! frontend side) against `vblk serve`: it builds descriptor chains itself,
//! so it can send what libblkio never would — GET_ID, malformed and hostile
//! chains, broken rings — and check that vblk answers and keeps serving.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::EventFd;

const MEM: usize = 4 << 20;
const QSIZE: u16 = 16;
const DESC: u64 = 0x0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

struct Guest {
    base: *mut u8,
    fd: i32,
    fe: Frontend,
    kick: EventFd,
    /// Kept open for the daemon's interrupts; the test polls the used ring.
    _call: EventFd,
    avail_idx: u16,
    used_seen: u16,
}

impl Guest {
    fn connect(sock: &Path) -> Guest {
        // SAFETY: memfd_create with a valid C string; the fd is owned by Guest.
        let fd = unsafe { libc::memfd_create(c"guest".as_ptr(), 0) };
        assert!(fd >= 0);
        // SAFETY: fd is a fresh memfd.
        assert_eq!(unsafe { libc::ftruncate(fd, MEM as i64) }, 0);
        // SAFETY: maps MEM bytes of our memfd; checked against MAP_FAILED.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MEM,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let mut fe = Frontend::connect(sock, 1).expect("connect");
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
        ] {
            assert!(pf.contains(want), "protocol feature {want:?} not offered");
        }
        fe.set_protocol_features(VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::MQ)
            .unwrap();
        fe.set_mem_table(&[VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: MEM as u64,
            userspace_addr: base as u64,
            mmap_offset: 0,
            mmap_handle: fd,
        }])
        .unwrap();
        fe.set_vring_num(0, QSIZE).unwrap();
        fe.set_vring_addr(
            0,
            &VringConfigData {
                queue_max_size: QSIZE,
                queue_size: QSIZE,
                flags: 0,
                desc_table_addr: base as u64 + DESC,
                used_ring_addr: base as u64 + USED,
                avail_ring_addr: base as u64 + AVAIL,
                log_addr: None,
            },
        )
        .unwrap();
        fe.set_vring_base(0, 0).unwrap();
        let kick = EventFd::new(0).unwrap();
        let call = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        fe.set_vring_call(0, &call).unwrap();
        fe.set_vring_kick(0, &kick).unwrap();
        fe.set_vring_enable(0, true).unwrap();
        Guest {
            base: base as *mut u8,
            fd,
            fe,
            kick,
            _call: call,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    fn ring_config(&self) -> VringConfigData {
        VringConfigData {
            queue_max_size: QSIZE,
            queue_size: QSIZE,
            flags: 0,
            desc_table_addr: self.base as u64 + DESC,
            used_ring_addr: self.base as u64 + USED,
            avail_ring_addr: self.base as u64 + AVAIL,
            log_addr: None,
        }
    }

    fn mem_zero_rings(&self) {
        self.put(AVAIL, &[0u8; 0x1000]);
        self.put(USED, &[0u8; 0x1000]);
    }

    fn put(&self, addr: u64, bytes: &[u8]) {
        assert!(addr as usize + bytes.len() <= MEM);
        // SAFETY: in bounds of the MEM-byte shared mapping (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(addr as usize), bytes.len())
        };
    }

    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        assert!(addr as usize + len <= MEM);
        let mut v = vec![0u8; len];
        // SAFETY: in bounds of the MEM-byte shared mapping (checked above).
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(addr as usize), v.as_mut_ptr(), len) };
        v
    }

    fn u16_at(&self, addr: u64) -> u16 {
        u16::from_le_bytes(self.get(addr, 2).try_into().unwrap())
    }

    fn desc_bytes(addr: u64, len: u32, flags: u16, next: u16) -> [u8; 16] {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        d
    }

    /// Write `descs` (addr, len, flags, next) at table index 0.., publish
    /// head 0 in the avail ring and kick. `next` is used verbatim.
    fn publish_raw(&mut self, descs: &[(u64, u32, u16, u16)], new_avail_idx: Option<u16>) {
        for (i, (a, l, f, n)) in descs.iter().enumerate() {
            self.put(DESC + 16 * i as u64, &Self::desc_bytes(*a, *l, *f, *n));
        }
        let slot = AVAIL + 4 + 2 * u64::from(self.avail_idx % QSIZE);
        self.put(slot, &0u16.to_le_bytes());
        self.avail_idx = new_avail_idx.unwrap_or(self.avail_idx.wrapping_add(1));
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.put(AVAIL + 2, &self.avail_idx.to_le_bytes());
        self.kick.write(1).unwrap();
    }

    /// Chain the descriptors with NEXT links in order, publish, wait for the
    /// used entry; returns its length.
    fn submit(&mut self, descs: &[(u64, u32, u16)]) -> u32 {
        let linked: Vec<_> = descs
            .iter()
            .enumerate()
            .map(|(i, (a, l, f))| {
                let last = i + 1 == descs.len();
                (
                    *a,
                    *l,
                    if last { *f } else { *f | F_NEXT },
                    if last { 0 } else { i as u16 + 1 },
                )
            })
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
            let used_idx = self.u16_at(USED + 2);
            if used_idx != self.used_seen {
                let e = USED + 4 + 8 * u64::from(self.used_seen % QSIZE);
                let len = u32::from_le_bytes(self.get(e + 4, 4).try_into().unwrap());
                self.used_seen = self.used_seen.wrapping_add(1);
                return Some(len);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    fn header(&self, addr: u64, t: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&t.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.put(addr, &h);
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping and closing our own fd.
        unsafe {
            libc::munmap(self.base as *mut _, MEM);
            libc::close(self.fd);
        }
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, image: &Path, extra: &[&str]) -> (Daemon, std::path::PathBuf) {
    let sock = dir.join("fe.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_vblk"))
        .arg("serve")
        .arg("--image")
        .arg(image)
        .arg("--vhost-user")
        .arg(&sock)
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !sock.exists() {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    (Daemon(child), sock)
}

const HDR: u64 = 0x10000;
const DATA: u64 = 0x20000;
const STATUS: u64 = 0x30000;

#[test]
fn get_id_config_and_hostile_chains_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.img");
    std::fs::write(&img, vec![0x5a; 1 << 20]).unwrap();
    let ctl = dir.path().join("fe.ctl");
    let (mut daemon, sock) = start(
        dir.path(),
        &img,
        &[
            "--serial",
            "vblk-test-serial-01",
            "--control",
            ctl.to_str().unwrap(),
        ],
    );
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
    // (A chain that loops breaks the ring, like the avail-index jump below:
    // crates/device/tests/mock_queue.rs m14 and crates/queue walk tests.)
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
        Some(g.avail_idx.wrapping_add(1000)),
    );
    assert_eq!(
        g.wait_used_for(Duration::from_millis(500)),
        None,
        "a broken ring was served"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vblk"))
        .args(["stats", "--json", "--socket"])
        .arg(dir.path().join("fe.ctl"))
        .output()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["device"]["needs_reset"], 1, "{stats}");
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
    g.fe.get_vring_base(0).unwrap();
    g.mem_zero_rings();
    g.fe.set_vring_num(0, QSIZE).unwrap();
    g.fe.set_vring_addr(0, &g.ring_config()).unwrap();
    g.fe.set_vring_base(0, 0).unwrap();
    g.fe.set_vring_call(0, &g._call).unwrap();
    g.fe.set_vring_kick(0, &g.kick).unwrap();
    g.fe.set_vring_enable(0, true).unwrap();
    g.avail_idx = 0;
    g.used_seen = 0;
    g.header(HDR, 0, 7);
    g.put(STATUS, &[0xff]);
    assert_eq!(
        g.submit(&[(HDR, 16, 0), (DATA, 512, F_WRITE), (STATUS, 1, F_WRITE)]),
        513,
        "a restarted ring is not served"
    );
    drop(g);
    assert!(
        daemon.0.try_wait().unwrap().is_none(),
        "daemon died on a broken ring"
    );
    let mut g = Guest::connect(&sock);
    g.header(HDR, 0, 7);
    g.put(STATUS, &[0xff]);
    assert_eq!(
        g.submit(&[(HDR, 16, 0), (DATA, 512, F_WRITE), (STATUS, 1, F_WRITE)]),
        513
    );
    assert!(g.get(DATA, 512).iter().all(|&b| b == 0xc3));
    drop(g);
    let _ = daemon.0.kill();
    let _ = daemon.0.wait();
    let _ = std::fs::remove_file(&sock);
}
