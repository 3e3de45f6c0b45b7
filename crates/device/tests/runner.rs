//! The per-queue runner: rings started, kicked, stopped, paused and broken
//! through [`Runners`], with requests served on the runner's own thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vblk_backend::MemBackend;
use vblk_device::runner::{RingSetup, RunnerOptions, Runners};
use vblk_device::{BlkConfig, BlkDevice, InflightLog};
use vblk_interrupt::{InterruptKind, RecordingInterrupt};
use vblk_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

const QSIZE: u16 = 64;
const DESC: u64 = 0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const BUFS: u64 = 0x10_0000;
const DISK: u64 = 1 << 20;

struct Rig {
    mem: GuestMemoryMmap,
    atomic: GuestMemoryAtomic<GuestMemoryMmap>,
    backend: MemBackend,
    runners: Runners,
    irq: Arc<RecordingInterrupt>,
    kick: Arc<EventFd>,
    avail_idx: u16,
    next_desc: u16,
}

fn queue() -> Queue {
    let mut q = Queue::new(QSIZE).unwrap();
    q.set_size(QSIZE);
    q.set_desc_table_address(Some(DESC as u32), Some(0));
    q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    q.set_used_ring_address(Some(USED as u32), Some(0));
    q.set_ready(true);
    q
}

impl Rig {
    fn new(opts: RunnerOptions) -> Rig {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap();
        let atomic = GuestMemoryAtomic::new(mem.clone());
        let backend = MemBackend::new(DISK);
        let dev = Arc::new(BlkDevice::new(
            BlkConfig::new(DISK),
            Arc::new(backend.clone()),
        ));
        let runners = Runners::new(&dev, 0, opts).unwrap();
        Rig {
            mem,
            atomic,
            backend,
            runners,
            irq: Arc::new(RecordingInterrupt::new()),
            kick: Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()),
            avail_idx: 0,
            next_desc: 0,
        }
    }

    fn setup(&self, log: Option<Box<dyn InflightLog>>, resubmit: Vec<u16>) -> RingSetup {
        RingSetup {
            queue: queue(),
            mem: self.atomic.clone(),
            kick: Some(self.kick.clone()),
            irq: self.irq.clone(),
            on_broken: Box::new(|e| panic!("ring broken: {e}")),
            inflight: log,
            resubmit,
        }
    }

    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..16].copy_from_slice(&next.to_le_bytes());
        self.mem
            .write_slice(&b, GuestAddress(DESC + 16 * u64::from(i)))
            .unwrap();
    }

    /// Write a 3-descriptor request (type, sector, 512 data bytes) into the
    /// table; returns (head, status address, data address). Not published.
    fn request(&mut self, t: u32, sector: u64, fill: u8) -> (u16, u64, u64) {
        let head = self.next_desc;
        self.next_desc = (self.next_desc + 3) % (QSIZE - QSIZE % 3);
        let base = BUFS + u64::from(head) * 0x1000;
        let (hdr, data, status) = (base, base + 0x200, base + 0x400);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&t.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(hdr)).unwrap();
        self.mem
            .write_slice(&[fill; 512], GuestAddress(data))
            .unwrap();
        self.mem.write_obj(0xeeu8, GuestAddress(status)).unwrap();
        let wr = if t == 0 { 2 } else { 0 };
        self.desc(head, hdr, 16, 1, head + 1);
        self.desc(head + 1, data, 512, 1 | wr, head + 2);
        self.desc(head + 2, status, 1, 2, 0);
        (head, status, data)
    }

    fn publish(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % QSIZE);
        self.mem
            .write_obj(head, GuestAddress(AVAIL + 4 + 2 * slot))
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx, GuestAddress(AVAIL + 2))
            .unwrap();
    }

    fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(USED + 2)).unwrap()
    }

    fn wait_used(&self, n: u16) {
        let t = Instant::now();
        while self.used_idx() != n {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "used idx {} != {n}",
                self.used_idx()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn status(&self, at: u64) -> u8 {
        self.mem.read_obj(GuestAddress(at)).unwrap()
    }
}

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
