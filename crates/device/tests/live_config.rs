//! The configuration that changes while the device runs, through the
//! queue runners: an online resize moves the end of the disk for every
//! request planned afterwards, and write-through mode (CONFIG_WCE) makes
//! every write reach the engine as force-unit-access.

use std::sync::{Arc, Mutex};

use vblk_backend::{Backend, IoEngine, IoOp, IoRequest, MemBackend, SyncEngine};
use vblk_device::features::{bit, VIRTIO_BLK_F_CONFIG_WCE};
use vblk_device::runner::RunnerOptions;

mod common;
use common::*;

const OK: u8 = 0;
const IOERR: u8 = 1;
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const SECTORS: u64 = DISK / 512;

/// Submit one request and wait for it; returns its status.
fn run<B: Backend + 'static>(r: &mut Rig<B>, t: u32, sector: u64, done: &mut u16) -> u8 {
    let (head, status, _) = r.request(t, sector, 0x5a);
    r.publish(head);
    r.kick.write(1).unwrap();
    *done += 1;
    r.wait_used(*done);
    r.status(status)
}

#[test]
fn a_request_past_the_new_end_fails_after_a_shrink_and_succeeds_after_a_grow() {
    let mut r = Rig::new(RunnerOptions::default());
    r.runners.start(0, r.setup(None, vec![])).unwrap();
    let mut n = 0;
    let last = SECTORS - 1;
    let half = SECTORS / 2;
    assert_eq!(run(&mut r, T_OUT, last, &mut n), OK);
    r.dev.resize(DISK / 2, false).unwrap();
    // Past the new end: refused, for writes and reads alike.
    assert_eq!(run(&mut r, T_OUT, last, &mut n), IOERR);
    assert_eq!(run(&mut r, T_IN, half, &mut n), IOERR);
    assert_eq!(run(&mut r, T_IN, half - 1, &mut n), OK);
    assert_eq!(run(&mut r, T_OUT, half - 1, &mut n), OK);
    // The storage was not touched: growing back serves the old end again.
    assert_eq!(r.backend.capacity(), DISK);
    r.dev.resize(DISK, false).unwrap();
    assert_eq!(run(&mut r, T_OUT, last, &mut n), OK);
    assert_eq!(run(&mut r, T_IN, half, &mut n), OK);
    // Growing the storage too: the new sectors are served at once.
    r.dev.resize(2 * DISK, true).unwrap();
    assert_eq!(r.backend.capacity(), 2 * DISK);
    assert_eq!(run(&mut r, T_OUT, 2 * SECTORS - 1, &mut n), OK);
    assert_eq!(run(&mut r, T_OUT, 2 * SECTORS, &mut n), IOERR);
    r.runners.stop(0);
}

/// Writes as the engine saw them: (op, offset, len, fua).
type Seen = Arc<Mutex<Vec<(IoOp, u64, u64, bool)>>>;

/// A disk of zeroes that records every request its engines get.
struct Recording {
    inner: MemBackend,
    seen: Seen,
}

impl Backend for Recording {
    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }
    fn engine(&self) -> std::io::Result<Box<dyn IoEngine>> {
        let seen = self.seen.clone();
        Ok(Box::new(SyncEngine::new(move |req: &IoRequest| {
            seen.lock()
                .unwrap()
                .push((req.op, req.offset, req.len, req.fua));
            Ok(req.len)
        })))
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        "recording".into()
    }
}

#[test]
fn writes_in_write_through_mode_reach_the_engine_as_force_unit_access() {
    let seen: Seen = Default::default();
    let backend = Recording {
        inner: MemBackend::new(DISK),
        seen: seen.clone(),
    };
    let mut r = Rig::with_backend(backend, RunnerOptions::default());
    r.runners.start(0, r.setup(None, vec![])).unwrap();
    let features = r.dev.features();
    assert_ne!(features & bit(VIRTIO_BLK_F_CONFIG_WCE), 0);
    let mut n = 0;
    let writes = |seen: &Seen| -> Vec<bool> {
        let mut v = seen.lock().unwrap();
        let w = v
            .iter()
            .filter(|x| x.0 == IoOp::Write)
            .map(|x| x.3)
            .collect();
        v.clear();
        w
    };
    // Write-back (the default): plain writes.
    assert_eq!(run(&mut r, T_OUT, 8, &mut n), OK);
    assert_eq!(writes(&seen), vec![false]);
    // The driver writes writeback = 0: every write is durable before it
    // completes, also a merged one.
    r.dev.write_config(32, &[0], features).unwrap();
    assert_eq!(run(&mut r, T_OUT, 16, &mut n), OK);
    let (a, _, _) = r.request(T_OUT, 100, 1);
    let (b, _, _) = r.request(T_OUT, 101, 2);
    r.publish(a);
    r.publish(b);
    r.kick.write(1).unwrap();
    n += 2;
    r.wait_used(n);
    let w = writes(&seen);
    assert!(!w.is_empty() && w.iter().all(|&f| f), "{w:?}");
    assert_eq!(run(&mut r, T_IN, 16, &mut n), OK);
    assert!(
        seen.lock().unwrap().iter().all(|x| !x.3),
        "reads are never FUA"
    );
    assert_eq!(r.dev_stat("fua_writes"), 3);
    // Back to write-back.
    r.dev.write_config(32, &[1], features).unwrap();
    assert_eq!(run(&mut r, T_OUT, 24, &mut n), OK);
    assert_eq!(writes(&seen), vec![false]);
    r.runners.stop(0);
}

#[test]
fn shrinking_the_file_waits_for_the_io_planned_under_the_old_size() {
    use std::time::{Duration, Instant};
    use vblk_backend::testing::{Outcome, ScriptedBackend};
    let backend = ScriptedBackend::new(DISK);
    // A write near the end that the storage holds for 300 ms.
    backend.set_script(|_, off, _| {
        if off >= DISK / 2 {
            Outcome::after(Duration::from_millis(300))
        } else {
            Outcome::NOW
        }
    });
    let mut r = Rig::with_backend(backend, RunnerOptions::default());
    r.runners.start(0, r.setup(None, vec![])).unwrap();
    let (head, status, _) = r.request(T_OUT, SECTORS - 1, 3);
    r.publish(head);
    r.kick.write(1).unwrap();
    let t = Instant::now();
    while r.backend.in_kernel() == 0 {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
    // The scripted storage cannot be resized: the shrink fails after the
    // wait, and the export is back at its old size.
    let e = r.dev.resize(DISK / 2, true).unwrap_err();
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.backend.in_kernel(), 0, "the old write finished first");
    assert!(
        e.contains("cannot be resized") && e.contains("back at"),
        "{e}"
    );
    assert_eq!(r.dev.live().capacity(), DISK);
    r.wait_used(1);
    assert_eq!(r.status(status), OK);
    r.runners.stop(0);
}
