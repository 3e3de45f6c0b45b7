//! Guest memory outlives every I/O that points into it: a memory-table
//! change (SET_MEM_TABLE, REM_MEM_REG) that arrives while a slow request
//! is in flight is answered only after that request completed (into the
//! old mapping), so nothing touches the memory after the front end takes
//! it back.

mod common;

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Served;
use vblk_backend::testing::{Outcome, ScriptedBackend};
use vblk_device::{BlkConfig, BlkDevice};
use vblk_testkit::blk::Request;
use vblk_testkit::mem::memfd;
use vblk_testkit::vhost_user::{Driver, Options};
use vhost::vhost_user::VhostUserFrontend;

const DISK: u64 = 1 << 20;
const SLOW: Duration = Duration::from_millis(300);

struct Daemon {
    served: Served,
    backend: ScriptedBackend,
}

impl Daemon {
    fn start() -> Daemon {
        let backend = ScriptedBackend::new(DISK);
        backend.fill(0, &[0x5a; 4096]);
        backend.set_script(|_, _, _| Outcome::after(SLOW));
        let dev = Arc::new(BlkDevice::new(
            BlkConfig::new(DISK),
            Arc::new(backend.clone()),
        ));
        Daemon {
            served: Served::start(dev),
            backend,
        }
    }

    fn wait_in_flight(&self) {
        let t = Instant::now();
        while self.backend.in_kernel() == 0 {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "the read never started"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn set_mem_table_waits_for_the_read_in_flight() {
    let d = Daemon::start();
    let mut g = Driver::connect(&d.served.sock, Options::default()).unwrap();
    let (head, placed) = g.submit(&Request::read(0, 4096));
    d.wait_in_flight();
    let t = Instant::now();
    // The same table again: every memory change quiesces the rings first.
    g.send_mem_table().unwrap();
    assert_eq!(d.backend.in_kernel(), 0, "answered with I/O in flight");
    assert!(t.elapsed() >= SLOW / 2, "SET_MEM_TABLE did not wait");
    let (id, len) = g.wait_used().expect("the read completed");
    assert_eq!((id, len), (u32::from(head), 4097));
    assert_eq!(g.ram.u8_at(placed.status), 0);
    assert_eq!(g.ram.read(placed.data, 4096), vec![0x5a; 4096]);
}

#[test]
fn rem_mem_reg_waits_for_a_read_into_that_region() {
    let d = Daemon::start();
    let mut g = Driver::connect(&d.served.sock, Options::default()).unwrap();
    // A second region far away, and a read whose data lands in it.
    let far = 1u64 << 36;
    let f = memfd(c"far", 1 << 20).unwrap();
    let region = Driver::region_of(far, 1 << 20, 0x7000_0000_0000, 0, f.as_raw_fd());
    g.fe().add_mem_region(&region).unwrap();
    let at = g.scratch(64);
    g.ram
        .write(at, &vblk_testkit::blk::header(vblk_testkit::blk::T_IN, 0));
    g.ram.write(at + 32, &[0xee]);
    let head = g.submit_segs(&[
        (at, 16, 0),
        (far, 4096, vblk_testkit::ring::F_WRITE),
        (at + 32, 1, vblk_testkit::ring::F_WRITE),
    ]);
    d.wait_in_flight();
    let t = Instant::now();
    g.fe().remove_mem_region(&region).unwrap();
    assert_eq!(d.backend.in_kernel(), 0, "answered with I/O in flight");
    assert!(t.elapsed() >= SLOW / 2, "REM_MEM_REG did not wait");
    let (id, len) = g.wait_used().expect("the read completed");
    assert_eq!((id, len), (u32::from(head), 4097));
    assert_eq!(g.ram.u8_at(at + 32), 0);
    // The data went into the region before it was removed.
    let mut got = vec![0u8; 4096];
    use std::os::unix::fs::FileExt;
    f.read_exact_at(&mut got, 0).unwrap();
    assert_eq!(got, vec![0x5a; 4096]);
}
