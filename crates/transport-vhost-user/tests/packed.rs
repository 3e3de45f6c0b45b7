//! Packed rings over vhost-user, in process: RING_PACKED offered and
//! accepted, the packed areas in SET_VRING_ADDR, the 32-bit vring base both
//! ways (a ring stopped with GET_VRING_BASE continues where it stopped,
//! wrap counters included), an inflight region next to a packed ring, and
//! hostile bases.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Served;
use vblk_backend::MemBackend;
use vblk_device::{BlkConfig, BlkDevice};
use vblk_testkit::blk::{Request, S_OK};
use vblk_testkit::vhost_user::{Driver, Options, RING_PACKED};
use vhost::vhost_user::message::VhostUserInflight;
use vhost::vhost_user::VhostUserFrontend;

const DISK: u64 = 1 << 20;

struct Daemon {
    served: Served,
    backend: MemBackend,
    dev: Arc<BlkDevice>,
}

impl Daemon {
    fn start() -> Daemon {
        let backend = MemBackend::new(DISK);
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

    fn packed_driver(&self, size: u16) -> Driver {
        let opts = Options {
            queue_size: size,
            features: Options::default().features | RING_PACKED,
            ..Options::default()
        };
        let d = Driver::negotiate(&self.served.sock, opts).unwrap();
        assert_ne!(d.offered & RING_PACKED, 0, "RING_PACKED not offered");
        assert_ne!(d.acked & RING_PACKED, 0);
        d.send_mem_table().unwrap();
        d
    }
}

#[test]
fn packed_rings_can_be_turned_off() {
    let mut cfg = BlkConfig::new(DISK);
    cfg.packed_rings = false;
    let dev = Arc::new(BlkDevice::new(cfg, Arc::new(MemBackend::new(DISK))));
    let served = Served::start(dev);
    let opts = Options {
        features: Options::default().features | RING_PACKED,
        ..Options::default()
    };
    let mut d = Driver::connect(&served.sock, opts).unwrap();
    assert_eq!(
        d.offered & RING_PACKED,
        0,
        "RING_PACKED offered although turned off"
    );
    // The split ring serves.
    assert_eq!(d.run(&Request::flush()).unwrap().status, S_OK);
    drop(d);
    served.stop();
}

#[test]
fn a_packed_ring_serves_stops_and_continues_where_it_stopped() {
    let daemon = Daemon::start();
    let mut d = daemon.packed_driver(8);
    let mut p = d.packed_ring();
    d.start_packed_ring(&p, p.base()).unwrap();
    let data: Vec<u8> = (0..4096).map(|i| (i % 241) as u8).collect();
    // 3 descriptors a request: a ring of 8 wraps on the third.
    let w = d.run_packed(&mut p, &Request::write(8, &data), 5).unwrap();
    assert_eq!((w.status, w.len), (S_OK, 1));
    let r = d.run_packed(&mut p, &Request::read(8, 4096), 2).unwrap();
    assert_eq!((r.status, r.len), (S_OK, 4097));
    assert_eq!(r.data, data);
    let r = d.run_packed(&mut p, &Request::read(8, 512), 7).unwrap();
    assert_eq!(r.data, data[..512].to_vec());
    assert_eq!(&daemon.backend.snapshot()[4096..8192], &data[..]);
    // Stop: avail and used both at slot 1 of the second lap (wrap 0).
    let base = d.get_vring_base().unwrap();
    assert_eq!(base, p.base());
    assert_eq!(base, 0x0001_0001);
    // Continue from there, on a fresh kick. A front end that sends only
    // the avail half gets the used position equal to it.
    d.start_packed_ring(&p, base & 0xffff).unwrap();
    for id in 0..6u16 {
        let r = d.run_packed(&mut p, &Request::read(8, 512), id).unwrap();
        assert_eq!((r.status, r.len), (S_OK, 513));
    }
    assert_eq!(d.get_vring_base().unwrap(), p.base());
}

#[test]
fn an_inflight_region_next_to_a_packed_ring_is_left_alone() {
    let daemon = Daemon::start();
    let mut d = daemon.packed_driver(16);
    assert!(d.has_inflight());
    let (info, file) = d
        .fe()
        .get_inflight_fd(&VhostUserInflight {
            mmap_size: 0,
            mmap_offset: 0,
            num_queues: 1,
            queue_size: 16,
        })
        .unwrap();
    d.fe()
        .set_inflight_fd(&info, std::os::fd::AsRawFd::as_raw_fd(&file))
        .unwrap();
    let mut p = d.packed_ring();
    d.start_packed_ring(&p, p.base()).unwrap();
    for id in [3u16, 9, 15] {
        let r = d.run_packed(&mut p, &Request::flush(), id).unwrap();
        assert_eq!(r.status, S_OK);
    }
}

#[test]
fn hostile_packed_bases_are_refused_and_the_daemon_serves_on() {
    let daemon = Daemon::start();
    let mut d = daemon.packed_driver(8);
    let p = d.packed_ring();
    // Past any packed ring (index bits are 15 wide, but 2^15 is the most).
    // Accepted by the message check only when below 2^15; then the ring
    // refuses to attach an index past its own size.
    assert!(d.set_vring_base_raw(0, 0x8000_0008).is_ok());
    let broken = || {
        daemon
            .dev
            .stats()
            .device
            .needs_reset
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(broken(), 0);
    d.start_packed_ring(&p, 0x8000_8009).unwrap();
    // The ring is broken (nothing served); the connection still answers.
    let t = Instant::now();
    while broken() == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the ring did not break"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(d.raw.answers());
    // A good base on a new connection works (a fresh ring given as the
    // avail half only: 0x8000).
    drop(d);
    let mut d = daemon.packed_driver(8);
    let mut p = d.packed_ring();
    d.start_packed_ring(&p, 0x8000).unwrap();
    assert_eq!(
        d.run_packed(&mut p, &Request::flush(), 0).unwrap().status,
        S_OK
    );
}

/// A packed ring that starts fresh (positions 0, wrap counters 1) is a
/// booting guest: the configured write-back mode holds. One that starts
/// mid-stream on a new connection (a migration destination) serves
/// write-through until the guest says (QEMU replays no SET_CONFIG).
#[test]
fn a_fresh_packed_ring_keeps_write_back_and_a_resumed_one_is_write_through() {
    let daemon = Daemon::start();
    let mut d = daemon.packed_driver(8);
    let p = d.packed_ring();
    d.start_packed_ring(&p, p.base()).unwrap();
    assert!(daemon.dev.live().writeback(), "a fresh packed ring");
    drop(d);
    let mut d = daemon.packed_driver(8);
    let p = d.packed_ring();
    d.start_packed_ring(&p, 0x0001_0001).unwrap();
    assert!(
        !daemon.dev.live().writeback(),
        "a packed ring resumed mid-stream"
    );
}
