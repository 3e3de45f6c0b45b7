//! The per-queue runner: rings started, kicked, stopped, paused and broken
//! through [`Runners`], with requests served on the runner's own thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vblk_device::runner::RunnerOptions;
use vblk_device::InflightLog;
use vblk_interrupt::InterruptKind;
use vblk_queue::QueueT;

mod common;
use common::*;

#[test]
fn a_kick_is_served_on_the_runner_thread() {
    let mut r = Rig::new(RunnerOptions::default());
    r.runners.start(0, r.setup(None, vec![])).unwrap();
    let (h, st, _) = r.request(1, 2, 0x5a);
    r.publish(h);
    r.kick.write(1).unwrap();
    r.wait_used(1);
    assert_eq!(r.status(st), 0);
    assert_eq!(&r.backend.snapshot()[1024..1536], &[0x5a; 512][..]);
    // The interrupt follows the used index.
    let t = Instant::now();
    while r.irq.take() != vec![InterruptKind::Queue(0)] {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
    // Stop hands back the queue where it stopped.
    let s = r.runners.stop(0).unwrap();
    assert_eq!(
        (s.queue.next_avail(), s.queue.next_used(), s.broken),
        (1, 1, false)
    );
    assert!(r.runners.stop(0).is_none(), "stopped twice");
}

#[test]
fn chains_already_available_are_served_at_start_and_on_runners_kick() {
    let mut r = Rig::new(RunnerOptions::default());
    let (h, st, _) = r.request(1, 0, 1);
    r.publish(h);
    r.runners.start(0, r.setup(None, vec![])).unwrap();
    r.wait_used(1);
    assert_eq!(r.status(st), 0);
    // Kicked through Runners::kick (the vfio-user path) instead of the fd.
    let (h, st, _) = r.request(1, 1, 2);
    r.publish(h);
    r.runners.kick(0);
    r.wait_used(2);
    assert_eq!(r.status(st), 0);
}

#[test]
fn pause_holds_every_request_until_the_guard_drops() {
    let mut r = Rig::new(RunnerOptions::default());
    r.runners.start(0, r.setup(None, vec![])).unwrap();
    let guard = r.runners.pause_all();
    let (h, st, _) = r.request(1, 3, 9);
    r.publish(h);
    r.kick.write(1).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(r.used_idx(), 0, "served while paused");
    assert_eq!(r.status(st), 0xee);
    drop(guard);
    r.wait_used(1);
    assert_eq!(r.status(st), 0);
}

#[test]
fn a_broken_ring_is_reported_and_the_queue_stops() {
    let mut r = Rig::new(RunnerOptions::default());
    let broken = Arc::new(AtomicUsize::new(0));
    let b = broken.clone();
    let mut setup = r.setup(None, vec![]);
    setup.on_broken = Box::new(move |_| {
        b.fetch_add(1, Ordering::SeqCst);
    });
    r.runners.start(0, setup).unwrap();
    // A descriptor that links to itself.
    r.desc(0, BUFS, 16, 1, 0);
    r.publish(0);
    r.kick.write(1).unwrap();
    let t = Instant::now();
    while broken.load(Ordering::SeqCst) == 0 {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
    let s = r.runners.stop(0).unwrap();
    assert!(s.broken);
    assert_eq!(r.used_idx(), 0);
    // A fresh start serves again.
    let (h, st, _) = r.request(1, 0, 1);
    let mut q = s.queue;
    q.set_next_avail(r.avail_idx);
    r.publish(h);
    let mut setup = r.setup(None, vec![]);
    setup.queue = q;
    r.runners.start(0, setup).unwrap();
    r.wait_used(1);
    assert_eq!(r.status(st), 0);
    assert_eq!(broken.load(Ordering::SeqCst), 1);
}

#[derive(Default)]
struct Log(Arc<std::sync::Mutex<Vec<String>>>);

impl InflightLog for Log {
    fn popped(&mut self, head: u16) {
        self.0.lock().unwrap().push(format!("pop {head}"));
    }
    fn completing(&mut self, head: u16) {
        self.0.lock().unwrap().push(format!("done {head}"));
    }
    fn published(&mut self, used_idx: u16) {
        self.0.lock().unwrap().push(format!("idx {used_idx}"));
    }
}

#[test]
fn resubmitted_heads_run_first_and_the_inflight_log_sees_every_step() {
    let mut r = Rig::new(RunnerOptions::default());
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    // Head 0 "was in flight" when the previous daemon died: it is not in
    // the avail ring any more; head 3 is new.
    let (h0, st0, _) = r.request(1, 4, 0x11);
    let (h1, st1, _) = r.request(1, 5, 0x22);
    r.publish(h1);
    let mut setup = r.setup(Some(Box::new(Log(events.clone()))), vec![h0]);
    // The avail ring continues after the head already taken.
    setup.queue.set_next_avail(0);
    r.runners.start(0, setup).unwrap();
    r.wait_used(2);
    assert_eq!((r.status(st0), r.status(st1)), (0, 0));
    let ev = events.lock().unwrap().clone();
    assert_eq!(ev[0], format!("pop {h0}"), "{ev:?}");
    assert!(ev.contains(&format!("pop {h1}")), "{ev:?}");
    assert_eq!(ev.last().unwrap(), "idx 2", "{ev:?}");
    let snap = r.backend.snapshot();
    assert_eq!(&snap[4 * 512..5 * 512], &[0x11; 512][..]);
    assert_eq!(&snap[5 * 512..6 * 512], &[0x22; 512][..]);
}

#[test]
fn polling_serves_without_kicks() {
    let mut r = Rig::new(RunnerOptions {
        poll: Duration::from_millis(200),
        ..Default::default()
    });
    r.runners.start(0, r.setup(None, vec![])).unwrap();
    let (h, _, _) = r.request(1, 0, 1);
    r.publish(h);
    r.kick.write(1).unwrap();
    r.wait_used(1);
    // Within the poll window a chain is found without a kick.
    let (h, st, _) = r.request(1, 1, 2);
    r.publish(h);
    r.wait_used(2);
    assert_eq!(r.status(st), 0);
}

#[test]
fn every_runner_thread_runs_the_hook_and_a_failing_hook_fails_creation() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    let opts = RunnerOptions {
        thread_hook: Some(Arc::new(move || {
            r2.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })),
        ..Default::default()
    };
    let r = Rig::new(opts);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    drop(r);
    let opts = RunnerOptions {
        thread_hook: Some(Arc::new(|| Err(std::io::Error::other("no filter")))),
        ..Default::default()
    };
    let dev = Arc::new(vblk_device::BlkDevice::new(
        vblk_device::BlkConfig::new(DISK),
        Arc::new(vblk_backend::MemBackend::new(DISK)),
    ));
    let e = vblk_device::runner::Runners::new(&dev, 0, opts)
        .err()
        .unwrap();
    assert!(e.to_string().contains("no filter"), "{e}");
}
