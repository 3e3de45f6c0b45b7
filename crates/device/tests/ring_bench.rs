//! Split vs packed: the device's cost per request for each ring layout,
//! host only (no VM, no socket): one thread plays the driver and runs the
//! device worker (`QueueWorker::process`) over a null engine, `DEPTH`
//! 4 KiB reads a round. It measures what the layout changes — walking the
//! chain, writing the used entry, the notification decisions — and
//! nothing of the storage.
//!
//! `libblkio` (the `vblk bench` client) asks for split rings only, so this
//! is the split/packed comparison:
//!
//!   cargo test --release -p vblk-device --test ring_bench -- --ignored --nocapture
//!
//! The quick form (not ignored) runs a few rounds of each to keep the
//! harness honest.

use std::sync::Arc;
use std::time::Instant;

use vblk_backend::NullBackend;
use vblk_device::{set_packed_base, BlkConfig, BlkDevice, QueueWorker};
use vblk_queue::{Queue, QueueT};
use vblk_testkit::blk::{Request, S_OK};
use vblk_testkit::packed::PackedDriver;
use vblk_testkit::{RecordingInterrupt, SplitRing};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const QSIZE: u16 = 256;
const DEPTH: u16 = 32;
const BUFS: u64 = 0x10_0000;

fn setup() -> (GuestMemoryMmap, QueueWorker) {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap();
    let dev = BlkDevice::new(BlkConfig::new(1 << 30), Arc::new(NullBackend::new(1 << 30)));
    (mem, dev.worker(0).unwrap())
}

fn queue(desc: u64, avail: u64, used: u64) -> Queue {
    let mut q = Queue::new(QSIZE).unwrap();
    q.set_size(QSIZE);
    q.set_desc_table_address(Some(desc as u32), Some(0));
    q.set_avail_ring_address(Some(avail as u32), Some(0));
    q.set_used_ring_address(Some(used as u32), Some(0));
    q.set_event_idx(true);
    q.set_ready(true);
    q
}

/// One request: its segments and where its status lands.
type Placed = (Vec<vblk_testkit::ring::Seg>, u64);

/// The requests of one round, placed once and reused.
fn requests(mem: &GuestMemoryMmap) -> Vec<Placed> {
    (0..DEPTH)
        .map(|i| {
            let p = Request::read(u64::from(i) * 8, 4096).place(mem, BUFS + 0x2000 * u64::from(i));
            (p.segs, p.status)
        })
        .collect()
}

/// Nanoseconds per request over `rounds` rounds of `DEPTH` requests.
fn split(rounds: u32) -> f64 {
    let (mem, mut w) = setup();
    let mut ring = SplitRing::packed(0, QSIZE);
    let mut q = queue(ring.desc, ring.avail, ring.used);
    w.attach(&q);
    let irq = RecordingInterrupt::new();
    let reqs = requests(&mem);
    let t = Instant::now();
    for _ in 0..rounds {
        let mut heads = Vec::with_capacity(usize::from(DEPTH));
        for (segs, _) in &reqs {
            let h = ring.chain(&mem, segs);
            ring.stage(&mem, h);
            heads.push(h);
        }
        ring.flush_avail(&mem);
        assert_eq!(w.process(&mut q, &mem, &irq).unwrap(), usize::from(DEPTH));
        for _ in 0..DEPTH {
            ring.take_used(&mem).unwrap();
        }
        let _ = irq.take();
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(rounds * u32::from(DEPTH));
    assert_eq!(mem.read_obj::<u8>(GuestAddress(reqs[0].1)).unwrap(), S_OK);
    ns
}

fn packed(rounds: u32) -> f64 {
    let (mem, mut w) = setup();
    let mut drv = PackedDriver::new(0, QSIZE);
    let mut q = queue(drv.desc, drv.driver_area, drv.device_area);
    set_packed_base(&mut q, drv.base());
    w.attach_ring(&q, true).unwrap();
    let irq = RecordingInterrupt::new();
    let reqs = requests(&mem);
    let t = Instant::now();
    for _ in 0..rounds {
        for (i, (segs, _)) in reqs.iter().enumerate() {
            drv.add(&mem, segs, i as u16);
        }
        assert_eq!(w.process(&mut q, &mem, &irq).unwrap(), usize::from(DEPTH));
        for _ in 0..DEPTH {
            drv.take_used(&mem).unwrap();
        }
        let _ = irq.take();
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(rounds * u32::from(DEPTH));
    assert_eq!(mem.read_obj::<u8>(GuestAddress(reqs[0].1)).unwrap(), S_OK);
    ns
}

#[test]
fn both_layouts_run_the_bench_loop() {
    split(4);
    packed(4);
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn split_vs_packed_ns_per_request() {
    // Warm up, then alternate: five samples of each.
    split(2000);
    packed(2000);
    let (mut s, mut p) = (vec![], vec![]);
    for _ in 0..5 {
        s.push(split(20_000));
        p.push(packed(20_000));
    }
    s.sort_by(f64::total_cmp);
    p.sort_by(f64::total_cmp);
    // On a shared machine the minimum is the least disturbed sample.
    println!(
        "ring bench, 4 KiB reads, depth {DEPTH}, queue {QSIZE}, null engine: split {:.0} ns/request (median; min {:.0}, max {:.0}), packed {:.0} ns/request (median; min {:.0}, max {:.0}); packed/split {:.2} (medians), {:.2} (minima)",
        s[2], s[0], s[4], p[2], p[0], p[4], p[2] / s[2], p[0] / s[0]
    );
}
