//! Live migration: with `VHOST_F_LOG_ALL` on and a log set by SET_LOG_BASE
//! (`VHOST_USER_PROTOCOL_F_LOG_SHMFD`), every guest page the device writes
//! (IN data, the status byte, the used ring at `log_guest_addr`) has its bit
//! set, and no other; with logging off nothing is set; a hostile log (too
//! small, not a file, an overflowing offset, past the end of its file) is
//! never written out of bounds, and the daemon keeps serving.

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Served;
use vblk_backend::testing::{Outcome, ScriptedBackend};
use vblk_device::{BlkConfig, BlkDevice};
use vblk_testkit::blk::{header, T_IN, T_OUT};
use vblk_testkit::mem::memfd;
use vblk_testkit::ring::F_WRITE;
use vblk_testkit::vhost_user::{Driver, Options, RING_PACKED};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::{VhostBackend, VhostUserDirtyLogRegion, VringConfigData};

const DISK: u64 = 1 << 20;
const PAGE: u64 = 0x1000;
const LOG_ALL: u64 = VhostUserVirtioFeatures::LOG_ALL.bits();

struct Daemon {
    served: Served,
    backend: ScriptedBackend,
    dev: Arc<BlkDevice>,
}

impl Daemon {
    fn start() -> Daemon {
        let backend = ScriptedBackend::new(DISK);
        backend.fill(0, &[0x5a; 16384]);
        let dev = Arc::new(BlkDevice::new(
            BlkConfig::new(DISK),
            Arc::new(backend.clone()),
        ));
        Daemon {
            served: Served::start(dev.clone()),
            backend,
            dev,
        }
    }

    fn connect(&self) -> Driver {
        let mut o = Options::default();
        o.protocol |= VhostUserProtocolFeatures::LOG_SHMFD;
        let g = Driver::connect(&self.served.sock, o).unwrap();
        assert!(g.has(VhostUserProtocolFeatures::LOG_SHMFD));
        assert_ne!(g.offered & LOG_ALL, 0, "VHOST_F_LOG_ALL not offered");
        g
    }
}

fn set_log(g: &Driver, f: &File, size: u64, offset: u64) -> Result<(), String> {
    g.fe()
        .set_log_base(
            0,
            Some(VhostUserDirtyLogRegion {
                mmap_size: size,
                mmap_offset: offset,
                mmap_handle: f.as_raw_fd(),
            }),
        )
        .map_err(|e| e.to_string())
}

/// SET_FEATURES with or without VHOST_F_LOG_ALL, and ring 0's addresses
/// again with or without VHOST_VRING_F_LOG at the used ring (what QEMU
/// sends when migration starts and ends).
fn logging(g: &Driver, on: bool) {
    let f = if on { g.acked | LOG_ALL } else { g.acked };
    g.fe().set_features(f).unwrap();
    let mut c: VringConfigData = g.vring_config();
    if on {
        c.flags = 1; // VHOST_VRING_F_LOG
        c.log_addr = Some(g.ring.used);
    }
    g.fe().set_vring_addr(0, &c).unwrap();
}

fn dirty_pages(f: &File, offset: u64, len: usize) -> BTreeSet<u64> {
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, offset).unwrap();
    (0..len as u64 * 8)
        .filter(|p| b[(p / 8) as usize] & (1 << (p % 8)) != 0)
        .collect()
}

fn clear(f: &File, offset: u64, len: usize) {
    f.write_all_at(&vec![0u8; len], offset).unwrap();
}

fn pages(gpa: u64, len: u64) -> impl Iterator<Item = u64> {
    gpa / PAGE..=(gpa + len - 1) / PAGE
}

/// A read of 8 KiB at sector 0 into `data` (spanning three pages when not
/// page aligned), header and status byte on pages of their own. Returns the
/// pages the device writes (data and status).
fn read(g: &mut Driver, hdr: u64, data: u64, status: u64) -> BTreeSet<u64> {
    g.ram.write(hdr, &header(T_IN, 0));
    g.ram.write(status, &[0xee]);
    g.submit_segs(&[(hdr, 16, 0), (data, 8192, F_WRITE), (status, 1, F_WRITE)]);
    let (_, len) = g.wait_used().expect("the read completed");
    assert_eq!(len, 8193);
    assert_eq!(g.ram.u8_at(status), 0, "status");
    assert_eq!(g.ram.read(data, 8192), vec![0x5a; 8192]);
    pages(data, 8192).chain(pages(status, 1)).collect()
}

fn used_ring_pages(g: &Driver) -> BTreeSet<u64> {
    pages(g.ring.used, 6 + 8 * u64::from(g.ring.size)).collect()
}

#[test]
fn reads_log_their_data_status_and_used_ring_pages_only() {
    let d = Daemon::start();
    let mut g = d.connect();
    let log = memfd(c"log", 2 * PAGE).unwrap();
    // 8 MiB of guest RAM: 2048 pages, 256 bytes of log, at offset 4096.
    set_log(&g, &log, 256, PAGE).unwrap();
    logging(&g, true);
    clear(&log, 0, 2 * PAGE as usize);
    let (hdr, data, status) = (0x20_0000, 0x30_0800, 0x40_0010);
    let mut want = read(&mut g, hdr, data, status);
    want.extend(used_ring_pages(&g));
    assert_eq!(want.len(), 3 + 1 + used_ring_pages(&g).len());
    assert_eq!(dirty_pages(&log, PAGE, 256), want);
    assert!(!want.contains(&(hdr / PAGE)), "a read-only page was logged");
    assert!(
        dirty_pages(&log, 0, PAGE as usize).is_empty(),
        "before the offset"
    );

    // A write only logs its status byte (and the used ring).
    clear(&log, 0, 2 * PAGE as usize);
    g.ram.write(hdr, &header(T_OUT, 8));
    g.submit_segs(&[(hdr, 16, 0), (data, 4096, 0), (status, 1, F_WRITE)]);
    g.wait_used().expect("the write completed");
    let mut want: BTreeSet<u64> = pages(status, 1).collect();
    want.extend(used_ring_pages(&g));
    assert_eq!(dirty_pages(&log, PAGE, 256), want);

    // GET_ID (answered at once, written by the device itself).
    clear(&log, 0, 2 * PAGE as usize);
    g.ram.write(hdr, &header(8, 0));
    g.submit_segs(&[(hdr, 16, 0), (0x50_0ff0, 20, F_WRITE), (status, 1, F_WRITE)]);
    g.wait_used().expect("GET_ID completed");
    let mut want: BTreeSet<u64> = pages(0x50_0ff0, 20).chain(pages(status, 1)).collect();
    want.extend(used_ring_pages(&g));
    assert_eq!(dirty_pages(&log, PAGE, 256), want);

    // The stop before migration's last copy (GET_VRING_BASE) logs the used
    // ring as it stops (avail_event included).
    clear(&log, 0, 2 * PAGE as usize);
    g.fe().get_vring_base(0).unwrap();
    assert_eq!(dirty_pages(&log, PAGE, 256), used_ring_pages(&g));
}

#[test]
fn nothing_is_logged_while_logging_is_off() {
    let d = Daemon::start();
    let mut g = d.connect();
    let log = memfd(c"log", PAGE).unwrap();
    set_log(&g, &log, PAGE, 0).unwrap();
    read(&mut g, 0x20_0000, 0x30_0000, 0x40_0000);
    assert!(dirty_pages(&log, 0, PAGE as usize).is_empty(), "never on");
    logging(&g, true);
    read(&mut g, 0x20_0000, 0x30_0000, 0x40_0000);
    assert!(!dirty_pages(&log, 0, PAGE as usize).is_empty(), "on");
    logging(&g, false);
    clear(&log, 0, PAGE as usize);
    read(&mut g, 0x20_0000, 0x30_0000, 0x40_0000);
    g.fe().get_vring_base(0).unwrap();
    assert!(dirty_pages(&log, 0, PAGE as usize).is_empty(), "off again");
}

#[test]
fn turning_logging_on_waits_for_requests_popped_before() {
    let d = Daemon::start();
    d.backend
        .set_script(|_, _, _| Outcome::after(Duration::from_millis(300)));
    let mut g = d.connect();
    let log = memfd(c"log", PAGE).unwrap();
    set_log(&g, &log, PAGE, 0).unwrap();
    g.ram.write(0x20_0000, &header(T_IN, 0));
    g.submit_segs(&[
        (0x20_0000, 16, 0),
        (0x30_0000, 4096, F_WRITE),
        (0x40_0000, 1, F_WRITE),
    ]);
    let t = Instant::now();
    while d.backend.in_kernel() == 0 {
        assert!(t.elapsed() < Duration::from_secs(5), "never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The read was popped with logging off: it would complete unlogged
    // after logging is on. SET_FEATURES is answered once it is done.
    logging(&g, true);
    assert_eq!(d.backend.in_kernel(), 0, "answered with I/O in flight");
    g.wait_used().expect("the read completed");
}

#[test]
fn a_log_too_small_is_not_written_past_its_end() {
    let d = Daemon::start();
    let mut g = d.connect();
    let log = memfd(c"log", PAGE).unwrap();
    // Two bytes of log: pages 0..16 (64 KiB) only; the ring is in there.
    set_log(&g, &log, 2, 0).unwrap();
    logging(&g, true);
    clear(&log, 0, PAGE as usize);
    read(&mut g, 0x20_0000, 0x30_0000, 0x40_0000);
    assert_eq!(dirty_pages(&log, 0, PAGE as usize), used_ring_pages(&g));
    // And a used-ring logging address far outside the log.
    let mut c = g.vring_config();
    c.flags = 1;
    c.log_addr = Some(u64::MAX - 8);
    g.fe().set_vring_addr(0, &c).unwrap();
    clear(&log, 0, PAGE as usize);
    read(&mut g, 0x20_0000, 0x30_0000, 0x40_0000);
    assert!(dirty_pages(&log, 0, PAGE as usize).is_empty());
}

#[test]
fn hostile_log_bases_drop_the_front_end_and_the_daemon_serves_on() {
    let d = Daemon::start();
    let f = memfd(c"log", 2 * PAGE).unwrap();
    let (sock, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let sock = File::from(std::os::fd::OwnedFd::from(sock));
    let cases: [(&str, &File, u64, u64); 6] = [
        ("past the end of the file", &f, 4 * PAGE, 0),
        ("offset past the end", &f, PAGE, 2 * PAGE),
        ("offset overflows", &f, PAGE, u64::MAX - 100),
        ("unaligned offset", &f, PAGE, 10),
        ("empty", &f, 0, 0),
        ("not a file", &sock, PAGE, 0),
    ];
    for (what, file, size, offset) in cases {
        let g = d.connect();
        assert!(set_log(&g, file, size, offset).is_err(), "{what}: accepted");
        // The daemon is still there and serves the next front end.
        let mut g = d.connect();
        read(&mut g, 0x20_0000, 0x30_0000, 0x40_0000);
    }
    // Without the fd at all: the message is malformed.
    let g = d.connect();
    let _ = g.fe().set_log_base(0, None);
    let mut g = d.connect();
    read(&mut g, 0x20_0000, 0x30_0000, 0x40_0000);
}

#[test]
fn merged_reads_log_each_request_and_a_failed_read_logs_its_pages() {
    let d = Daemon::start();
    let mut g = d.connect();
    let log = memfd(c"log", PAGE).unwrap();
    set_log(&g, &log, 256, 0).unwrap();
    logging(&g, true);
    clear(&log, 0, PAGE as usize);
    // Two adjacent reads made available together: one merged operation
    // with the storage, two requests each logging its own pages.
    let mut want: BTreeSet<u64> = used_ring_pages(&g);
    for (i, (hdr, data, status)) in [
        (0x20_0000, 0x30_0000, 0x40_0000),
        (0x20_1000, 0x50_0000, 0x60_0000),
    ]
    .into_iter()
    .enumerate()
    {
        g.ram.write(hdr, &header(T_IN, 8 * i as u64));
        let h = g.ring.chain(
            &g.ram.mem,
            &[(hdr, 16, 0), (data, 4096, F_WRITE), (status, 1, F_WRITE)],
        );
        g.ring.stage(&g.ram.mem, h);
        want.extend(pages(data, 4096).chain(pages(status, 1)));
    }
    g.ring.flush_avail(&g.ram.mem);
    g.kick();
    assert!(g.wait_used().is_some() && g.wait_used().is_some());
    let merged = d.dev.stats().queue(0).merged.load(Ordering::Relaxed);
    assert_eq!(merged, 1, "the two reads were not merged");
    assert_eq!(dirty_pages(&log, 0, 256), want);

    // A read the storage fails: the status byte (IOERR) is logged, and the
    // data pages with it (the kernel may have written part of them).
    clear(&log, 0, PAGE as usize);
    d.backend.set_script(|_, _, _| Outcome::Errno {
        errno: libc::EIO,
        delay: Duration::ZERO,
    });
    g.ram.write(0x20_0000, &header(T_IN, 0));
    g.submit_segs(&[
        (0x20_0000, 16, 0),
        (0x70_0000, 4096, F_WRITE),
        (0x40_0000, 1, F_WRITE),
    ]);
    g.wait_used().expect("the read completed");
    assert_eq!(g.ram.u8_at(0x40_0000), 1, "IOERR");
    let mut want: BTreeSet<u64> = pages(0x70_0000, 4096).chain(pages(0x40_0000, 1)).collect();
    want.extend(used_ring_pages(&g));
    assert_eq!(dirty_pages(&log, 0, 256), want);
}

#[test]
fn packed_rings_log_data_status_the_descriptor_ring_and_the_device_area() {
    let d = Daemon::start();
    let mut o = Options::default();
    o.features |= RING_PACKED;
    o.protocol |= VhostUserProtocolFeatures::LOG_SHMFD;
    let mut g = Driver::negotiate(&d.served.sock, o).unwrap();
    assert_ne!(g.acked & RING_PACKED, 0);
    g.send_mem_table().unwrap();
    let mut p = g.packed_ring();
    g.start_packed_ring(&p, p.base()).unwrap();
    let log = memfd(c"log", PAGE).unwrap();
    set_log(&g, &log, 256, 0).unwrap();
    g.fe().set_features(g.acked | LOG_ALL).unwrap();
    let uva = |gpa| g.ram.host_addr(gpa);
    let c = VringConfigData {
        queue_max_size: p.size,
        queue_size: p.size,
        flags: 1, // VHOST_VRING_F_LOG
        desc_table_addr: uva(p.desc),
        used_ring_addr: uva(p.device_area),
        avail_ring_addr: uva(p.driver_area),
        log_addr: Some(p.device_area),
    };
    g.fe().set_vring_addr(0, &c).unwrap();
    clear(&log, 0, PAGE as usize);
    let (hdr, data, status) = (0x20_0000, 0x30_0800, 0x40_0000);
    g.ram.write(hdr, &header(T_IN, 0));
    p.add(
        &g.ram.mem,
        &[(hdr, 16, 0), (data, 4096, F_WRITE), (status, 1, F_WRITE)],
        7,
    );
    g.kick();
    assert_eq!(g.wait_packed_used(&mut p), Some((7, 4097)));
    assert_eq!(g.ram.u8_at(status), 0);
    let mut want: BTreeSet<u64> = pages(data, 4096).chain(pages(status, 1)).collect();
    want.extend(pages(p.desc, 16 * u64::from(p.size)));
    want.extend(pages(p.device_area, 4));
    assert_eq!(dirty_pages(&log, 0, 256), want);
}
