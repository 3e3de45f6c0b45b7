//! The asynchronous pipeline against a scripted engine: out-of-order
//! completion, injected engine failures, stuck I/O, and memory changes
//! (pause) while I/O is in flight. Nothing is published while its I/O is
//! still with the engine; every request gets a status; nothing hangs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vblk_backend::testing::{Outcome, ScriptedBackend};
use vblk_backend::{IoOp, MemBackend};
use vblk_device::runner::RunnerOptions;
use vblk_queue::QueueT;

mod common;
use common::*;

const MS: Duration = Duration::from_millis(1);
const OK: u8 = 0;
const IOERR: u8 = 1;

/// Sector `s * 16`: requests never touch (so never merge with) each other.
fn far(s: u64) -> u64 {
    s * 16
}

fn scripted(script: impl FnMut(IoOp, u64, u64) -> Outcome + Send + 'static) -> ScriptedBackend {
    let b = ScriptedBackend::new(DISK);
    b.set_script(script);
    b
}

/// Watch the used ring until `n` entries are published; at each new entry,
/// check that no I/O of that request (identified by its disk offset) is
/// still with the engine. Returns the used entries (head, len) in order.
fn watch_used(r: &Rig<ScriptedBackend>, n: u16, offset_of: &HashMap<u16, u64>) -> Vec<(u16, u32)> {
    let t = Instant::now();
    let mut seen = 0u16;
    let mut out = Vec::new();
    while seen < n {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "used idx {} < {n}",
            r.used_idx()
        );
        let idx = r.used_idx();
        // Read the engine's state after the index: anything published by
        // now must be out of the kernel already.
        let in_kernel: Vec<u64> = r.backend.outstanding().iter().map(|o| o.offset).collect();
        while seen != idx {
            let (id, len) = r.used_elem(seen);
            let head = id as u16;
            if let Some(off) = offset_of.get(&head) {
                assert!(
                    !in_kernel.contains(off),
                    "head {head} published while its I/O at {off} is with the engine"
                );
            }
            out.push((head, len));
            seen = seen.wrapping_add(1);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    out
}

#[test]
fn a_fast_request_completes_while_a_slow_one_is_outstanding() {
    let backend = scripted(|_, off, _| {
        if off == 0 {
            Outcome::after(400 * MS)
        } else {
            Outcome::after(MS)
        }
    });
    backend.fill(0, &[0x77; 512]);
    backend.fill(far(1) as usize * 512, &[0x88; 512]);
    let mut r = Rig::with_backend(backend, RunnerOptions::default());
    r.runners.start(0, r.setup(None, vec![])).unwrap();
    let (slow, st_slow, buf_slow) = r.request(0, 0, 0);
    let (fast, st_fast, buf_fast) = r.request(0, far(1), 0);
    let offsets = HashMap::from([(slow, 0), (fast, far(1) * 512)]);
    r.publish(slow);
    r.publish(fast);
    r.kick.write(1).unwrap();
    let first = watch_used(&r, 1, &offsets);
    assert_eq!(
        first,
        vec![(fast, 513)],
        "the fast read first, 512 bytes + status"
    );
    assert_eq!(r.status(st_fast), OK);
    assert_eq!(
        r.backend.in_kernel(),
        1,
        "the slow read is still outstanding"
    );
    assert_eq!(
        r.status(st_slow),
        0xee,
        "no status before its I/O completes"
    );
    let all = watch_used(&r, 2, &offsets);
    assert_eq!(all[1], (slow, 513));
    assert_eq!(r.status(st_slow), OK);
    let read = |at: u64| {
        let mut b = [0u8; 512];
        vm_memory::Bytes::read_slice(&r.mem, &mut b, vm_memory::GuestAddress(at)).unwrap();
        b
    };
    assert_eq!(read(buf_slow), [0x77; 512]);
    assert_eq!(read(buf_fast), [0x88; 512]);
}

#[test]
fn depth_is_bounded_by_the_ring_not_by_a_batch() {
    // Every request takes 100 ms: kicks that arrive while others are in
    // flight are submitted at once, so the engine holds them together.
    let backend = scripted(|_, _, _| Outcome::after(100 * MS));
    let mut r = Rig::with_backend(backend, RunnerOptions::default());
    r.runners.start(0, r.setup(None, vec![])).unwrap();
    let mut offsets = HashMap::new();
    for i in 0..8 {
        let (h, _, _) = r.request(1, far(i), i as u8);
        offsets.insert(h, far(i) * 512);
        r.publish(h);
        r.kick.write(1).unwrap();
        std::thread::sleep(5 * MS);
    }
    watch_used(&r, 8, &offsets);
    assert_eq!(r.backend.max_in_kernel(), 8, "all eight in flight together");
}

#[test]
fn injected_engine_failures_give_every_request_a_status_and_nothing_hangs() {
    let backend = scripted(|_, off, len| match off / 512 / 16 {
        1 => Outcome::Errno {
            errno: libc::EIO,
            delay: MS,
        },
        2 => Outcome::Errno {
            errno: libc::ENOSPC,
            delay: 20 * MS,
        },
        3 => Outcome::Errno {
            errno: libc::EAGAIN,
            delay: MS,
        },
        4 => Outcome::Errno {
            errno: libc::EINTR,
            delay: MS,
        },
        5 => Outcome::Short {
            bytes: len / 2,
            delay: MS,
        },
        _ => Outcome::after(10 * MS),
    });
    // The first submit fails outright, a later one after taking one
    // request; the first two reaps fail: nothing may be lost.
    backend.fail_submit(1, libc::EBUSY);
    backend.fail_reap(2, libc::EINTR);
    let mut r = Rig::with_backend(backend, RunnerOptions::default());
    r.runners.start(0, r.setup(None, vec![])).unwrap();
    let mut want = Vec::new();
    let mut offsets = HashMap::new();
    for i in 0..7u64 {
        let (h, st, _) = r.request(1, far(i), 0x40 + i as u8);
        offsets.insert(h, far(i) * 512);
        want.push((st, if (1..=5).contains(&i) { IOERR } else { OK }));
        r.publish(h);
    }
    r.kick.write(1).unwrap();
    let used = watch_used(&r, 7, &offsets);
    for (st, status) in &want {
        assert_eq!(r.status(*st), *status, "status at {st:#x}");
    }
    // Used length of a write is the status byte alone.
    assert!(used.iter().all(|&(_, len)| len == 1), "{used:?}");
    let disk = r.backend.snapshot();
    for i in [0u64, 6] {
        let at = (far(i) * 512) as usize;
        assert_eq!(&disk[at..at + 512], &[0x40 + i as u8; 512][..]);
    }
    // Still serving.
    r.backend.fail_submit_after(0, 0, 0);
    let (h, st, _) = r.request(1, far(7), 1);
    r.publish(h);
    r.kick.write(1).unwrap();
    r.wait_used(8);
    assert_eq!(r.status(st), OK);
}

#[test]
fn stuck_io_is_reported_then_cancelled_never_abandoned() {
    let backend = scripted(|_, off, _| {
        if off == far(3) * 512 {
            Outcome::Stuck
        } else {
            Outcome::after(MS)
        }
    });
    let mut r = Rig::with_backend(
        backend,
        RunnerOptions {
            stuck_after: 50 * MS,
            cancel_after: 200 * MS,
            ..Default::default()
        },
    );
    r.runners.start(0, r.setup(None, vec![])).unwrap();
    let (stuck, st_stuck, _) = r.request(0, far(3), 0);
    let (ok, st_ok, _) = r.request(0, far(4), 0);
    let offsets = HashMap::from([(stuck, far(3) * 512), (ok, far(4) * 512)]);
    r.publish(stuck);
    r.publish(ok);
    r.kick.write(1).unwrap();
    assert_eq!(watch_used(&r, 1, &offsets), vec![(ok, 513)]);
    assert_eq!(r.status(st_ok), OK);
    // Stopping the ring waits for the stuck request: the engine is asked
    // to cancel it, and only when it comes back is it answered.
    let t = Instant::now();
    let stopped = r.runners.stop(0).unwrap();
    assert!(t.elapsed() >= 200 * MS, "stop returned before the cancel");
    assert_eq!(r.backend.in_kernel(), 0);
    assert_eq!(r.used_idx(), 2);
    assert_eq!(r.status(st_stuck), IOERR);
    assert_eq!(stopped.queue.next_used(), 2);
}

#[test]
fn pause_waits_for_in_flight_io_before_memory_may_change() {
    let backend = scripted(|_, _, _| Outcome::after(300 * MS));
    let mut r = Rig::with_backend(backend, RunnerOptions::default());
    r.runners.start(0, r.setup(None, vec![])).unwrap();
    let (h, st, _) = r.request(0, far(2), 0);
    r.publish(h);
    r.kick.write(1).unwrap();
    let t = Instant::now();
    while r.backend.in_kernel() == 0 {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(MS);
    }
    let guard = r.runners.pause_all();
    // When pause returns, nothing is with the engine and the request is
    // answered: the caller may unmap the memory it pointed into.
    assert_eq!(r.backend.in_kernel(), 0);
    assert_eq!(r.used_idx(), 1);
    assert_eq!(r.status(st), OK);
    drop(guard);
}

/// A request is published in the round its I/O completes; the used ring
/// order follows completion order, whatever the avail order.
#[test]
fn completion_order_follows_the_engine() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    let backend = scripted(move |_, off, _| {
        let i = off / 512 / 16;
        o.lock().unwrap().push(i);
        Outcome::after(Duration::from_millis(60 - 10 * i))
    });
    let mut r = Rig::with_backend(backend, RunnerOptions::default());
    r.runners.start(0, r.setup(None, vec![])).unwrap();
    let mut heads = Vec::new();
    let mut offsets = HashMap::new();
    for i in 0..5 {
        let (h, _, _) = r.request(0, far(i), 0);
        offsets.insert(h, far(i) * 512);
        heads.push(h);
        r.publish(h);
    }
    r.kick.write(1).unwrap();
    let used: Vec<u16> = watch_used(&r, 5, &offsets)
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    heads.reverse();
    assert_eq!(used, heads, "the shortest delay (last request) first");
    assert_eq!(order.lock().unwrap().len(), 5);
}

#[test]
fn the_memory_backend_still_completes_in_the_same_round() {
    let mut r = Rig::with_backend(MemBackend::new(DISK), RunnerOptions::default());
    r.runners.start(0, r.setup(None, vec![])).unwrap();
    for i in 0..20 {
        let (h, _, _) = r.request(1, far(i), i as u8);
        r.publish(h);
    }
    r.kick.write(1).unwrap();
    r.wait_used(20);
}

/// The bug real guests hit: a read (and a write) whose range is only partly
/// in the host page cache must complete with OK, the exact used length and
/// the right bytes, for every engine and cache mode.
#[test]
fn a_partly_cached_range_completes_whole_for_every_engine_and_cache_mode() {
    use vblk_backend::pagecache::{partly_cache, real_fs_dir};
    use vblk_backend::{CacheMode, FileBackend, FileOptions};
    let dir = real_fs_dir();
    for (name, cache, io_uring) in [
        ("sync", CacheMode::Writeback, false),
        ("io_uring", CacheMode::Writeback, true),
        ("io_uring O_DIRECT", CacheMode::None, true),
        ("sync O_DIRECT", CacheMode::None, false),
    ] {
        let path = dir.path().join(format!("{}.img", name.replace(' ', "_")));
        let pattern: Vec<u8> = (0..DISK as usize).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &pattern).unwrap();
        let backend = FileBackend::open(
            &path,
            FileOptions {
                cache,
                io_uring,
                ..Default::default()
            },
        )
        .unwrap();
        let mut r = Rig::with_backend(backend, RunnerOptions::default());
        r.runners.start(0, r.setup(None, vec![])).unwrap();
        // 64 KiB at 128 KiB: the first and last 24 KiB cached, the middle not.
        let off = 128 * 1024u64;
        partly_cache(&path, off);
        let (h, st, buf) = r.request_len(0, off / 512, 0, 65536);
        r.publish(h);
        r.kick.write(1).unwrap();
        r.wait_used(1);
        assert_eq!(r.status(st), OK, "{name}: read status");
        assert_eq!(r.used_elem(0), (u32::from(h), 65537), "{name}: used length");
        let mut got = vec![0u8; 65536];
        vm_memory::Bytes::read_slice(&r.mem, &mut got, vm_memory::GuestAddress(buf)).unwrap();
        assert!(
            got == pattern[off as usize..off as usize + 65536],
            "{name}: bytes read"
        );
        // And a write over a partly cached range.
        partly_cache(&path, off);
        let (h, st, _) = r.request_len(1, off / 512, 0xa5, 65536);
        r.publish(h);
        r.kick.write(1).unwrap();
        r.wait_used(2);
        assert_eq!(r.status(st), OK, "{name}: write status");
        assert_eq!(r.used_elem(1), (u32::from(h), 1), "{name}: used length");
        drop(r);
        let disk = std::fs::read(&path).unwrap();
        assert!(
            disk[off as usize..off as usize + 65536]
                .iter()
                .all(|&b| b == 0xa5),
            "{name}: bytes written"
        );
    }
}

/// Bounded work per round: a round stops taking chains once its data
/// reaches the byte cap, and submits what it has.
#[test]
fn a_round_stops_at_the_byte_cap() {
    let backend = scripted(|_, _, _| Outcome::after(MS));
    let mut r = Rig::with_backend(
        backend,
        RunnerOptions {
            max_round_bytes: 128 * 1024,
            ..Default::default()
        },
    );
    r.runners.start(0, r.setup(None, vec![])).unwrap();
    for i in 0..8u64 {
        let (h, _, _) = r.request_len(1, i * 128, i as u8, 65536);
        r.publish(h);
    }
    r.kick.write(1).unwrap();
    r.wait_used(8);
    // 8 × 64 KiB under a 128 KiB cap: at least four submissions.
    let submits = r.dev_stat("submits");
    assert!(submits >= 4, "{submits} submissions");
    assert_eq!(r.dev_stat("chains_popped"), 8);
}
