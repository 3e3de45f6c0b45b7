//! Reaping as the device's runner does (only when the completion fd is
//! readable): no deadlock with a server that answers before it reads on,
//! and no completion left unseen when many replies arrive together. Both
//! hold with today's reply thread; they are the traps of a queue thread
//! reading replies itself (each failed against a broken version of that,
//! see docs/nbd-bench.md). The last two: the reply thread itself never
//! waits to send (a FLUSH that follows a FUA write, the commands sent
//! again after a reconnect), or it stops reading the replies the server
//! waits to deliver.

mod common;

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::double::*;
use common::*;
use vblk_backend::{Backend, IoCompletion, IoEngine, IoOp, IoRequest};
use vblk_backend_nbd::proto::*;
use vblk_backend_nbd::{NbdBackend, NbdOptions};

const MB: usize = 1 << 20;

fn correct_double(size: u64, structured: bool) -> Double {
    Double::start(
        size,
        TF_SEND_FLUSH,
        structured,
        Arc::new(move |r: &Req, disk: &mut Vec<u8>| correct(r, disk, structured)),
    )
}

fn open(d: &Double) -> NbdBackend {
    let _ = env_logger::builder().is_test(true).try_init();
    NbdBackend::open(&d.uri(), NbdOptions::default()).unwrap()
}

/// Push every buffer as one request (token = index), submit.
fn push_all(e: &mut dyn IoEngine, reqs: &mut [(IoOp, u64, Vec<u8>)]) {
    for (i, (op, off, buf)) in reqs.iter_mut().enumerate() {
        // SAFETY: the buffers outlive the requests (reaped by the caller
        // before `reqs` goes away).
        unsafe {
            e.push(IoRequest {
                op: *op,
                offset: *off,
                len: buf.len() as u64,
                iovecs: vec![iov(buf)],
                token: i as u64,
                fua: false,
            })
        };
    }
    e.submit().unwrap();
}

fn readable(fd: RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

/// Reap as the device's runner does: only when the completion fd is
/// readable, never blocking in `reap` itself.
fn reap_like_the_runner(e: &mut dyn IoEngine, n: usize) -> Vec<IoCompletion> {
    let fd = e.completion_fd().unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} of {n} completions after {:?}: one was missed or the engine is stuck",
            out.len(),
            start.elapsed()
        );
        if readable(fd, 100) {
            e.reap(&mut out, 0).unwrap();
        }
    }
    out
}

/// The server (like qemu-nbd with its request limit) answers a request
/// before it reads the next, and the replies are large: a queue thread
/// that blocked in sending 1 MiB writes while it is the only reader of
/// the replies would wait for a server that waits for it.
#[test]
fn big_reads_and_writes_in_one_submit_do_not_deadlock() {
    let d = correct_double(64 << 20, false);
    let b = open(&d);
    let mut e = b.engine().unwrap();
    let mut reqs: Vec<(IoOp, u64, Vec<u8>)> = (0..32)
        .map(|i| {
            if i < 16 {
                (IoOp::Read, (i * MB) as u64, vec![0u8; MB])
            } else {
                (IoOp::Write, (i * MB) as u64, pattern(i as u8, MB))
            }
        })
        .collect();
    push_all(&mut *e, &mut reqs);
    let done = reap_like_the_runner(&mut *e, 32);
    assert!(done.iter().all(|c| c.result == Ok(MB as u64)), "{done:?}");
    // Read the writes back.
    let mut back: Vec<(IoOp, u64, Vec<u8>)> = (16..32)
        .map(|i| (IoOp::Read, (i * MB) as u64, vec![0u8; MB]))
        .collect();
    push_all(&mut *e, &mut back);
    let done = reap_like_the_runner(&mut *e, 16);
    assert!(done.iter().all(|c| c.result == Ok(MB as u64)), "{done:?}");
    for (k, (_, _, buf)) in back.iter().enumerate() {
        assert!(*buf == pattern((16 + k) as u8, MB), "request {k}");
    }
}

/// Many small replies arrive in one piece and are received by one `recv`:
/// every one of them completes although the socket is no longer readable
/// once they are in the engine's buffer (structured and simple replies).
#[test]
fn replies_received_together_all_complete_through_the_fd() {
    for structured in [false, true] {
        let d = correct_double(8 << 20, structured);
        let b = open(&d);
        let mut e = b.engine().unwrap();
        for round in 0..20u8 {
            let mut reqs: Vec<(IoOp, u64, Vec<u8>)> = (0..64)
                .map(|i| {
                    let off = (i * 4096) as u64;
                    if round % 2 == 0 {
                        (IoOp::Write, off, pattern(round.wrapping_add(i as u8), 4096))
                    } else {
                        (IoOp::Read, off, vec![0u8; 4096])
                    }
                })
                .collect();
            push_all(&mut *e, &mut reqs);
            let done = reap_like_the_runner(&mut *e, 64);
            assert!(done.iter().all(|c| c.result == Ok(4096)), "{done:?}");
            if round % 2 == 1 {
                for (i, (_, _, buf)) in reqs.iter().enumerate() {
                    let want = pattern((round - 1).wrapping_add(i as u8), 4096);
                    assert!(
                        *buf == want,
                        "structured {structured} round {round} request {i}"
                    );
                }
            }
        }
        assert_eq!(e.in_flight(), 0);
    }
}

/// A FUA write to a server without NBD_FLAG_SEND_FUA is followed by a
/// FLUSH once the write has completed. That FLUSH must not be sent by the
/// thread that reads the replies: here the queue thread is blocked sending
/// a big write (the server reads nothing more until its replies are read),
/// and the server has big read replies to deliver. A reply thread that
/// waited to send the FLUSH would stop reading them: the server, the
/// queue thread and the reply thread would wait for each other until the
/// 30 s send timeout broke the connection.
#[test]
fn the_flush_after_a_fua_write_never_stops_the_replies() {
    const READS: usize = 8;
    // Replies held back until the last read arrives, then sent at once.
    let held = Arc::new(std::sync::Mutex::new((Vec::<u8>::new(), 0usize)));
    let h2 = held.clone();
    let d = Double::start(
        64 << 20,
        TF_SEND_FLUSH,
        false,
        Arc::new(move |r: &Req, disk: &mut Vec<u8>| {
            let mut h = h2.lock().unwrap();
            let (bytes, reads) = &mut *h;
            let first_write = r.cmd == CMD_WRITE && r.len == 4096;
            if !(first_write || r.cmd == CMD_READ) || *reads == READS {
                return correct(r, disk, false);
            }
            let Answer::Bytes(b) = correct(r, disk, false) else {
                unreachable!()
            };
            bytes.extend_from_slice(&b);
            if r.cmd == CMD_READ {
                *reads += 1;
                if *reads == READS {
                    // By now the queue thread is inside the big write's
                    // `writev`, holding the send side.
                    std::thread::sleep(Duration::from_millis(300));
                    return Answer::Bytes(std::mem::take(bytes));
                }
            }
            Answer::Bytes(Vec::new())
        }),
    );
    let b = open(&d);
    let mut e = b.engine().unwrap();
    let mut small = pattern(7, 4096);
    let mut reads: Vec<Vec<u8>> = (0..READS).map(|_| vec![0u8; MB]).collect();
    let mut big = pattern(9, 16 * MB);
    let mut reqs: Vec<(IoOp, u64, &mut Vec<u8>, bool)> = vec![(IoOp::Write, 0, &mut small, true)];
    for (i, r) in reads.iter_mut().enumerate() {
        reqs.push((IoOp::Read, ((1 + i) * MB) as u64, r, false));
    }
    reqs.push((IoOp::Write, (16 * MB) as u64, &mut big, false));
    let n = reqs.len();
    for (i, (op, off, buf, fua)) in reqs.iter_mut().enumerate() {
        // SAFETY: the buffers outlive the requests (reaped below).
        unsafe {
            e.push(IoRequest {
                op: *op,
                offset: *off,
                len: buf.len() as u64,
                iovecs: vec![iov(buf)],
                token: i as u64,
                fua: *fua,
            })
        };
    }
    e.submit().unwrap();
    let done = reap_like_the_runner(&mut *e, n);
    assert!(done.iter().all(|c| c.result.is_ok()), "{done:?}");
    let log = d.log.lock().unwrap();
    let w = log.iter().position(|r| r.cmd == CMD_WRITE && r.len == 4096);
    let f = log.iter().position(|r| r.cmd == CMD_FLUSH);
    assert!(
        matches!((w, f), (Some(w), Some(f)) if f > w),
        "a FLUSH after the FUA write: {:?}",
        log.iter().map(|r| r.cmd).collect::<Vec<_>>()
    );
}

/// After a reconnect the commands in flight are sent again. Big reads and
/// big writes together: the server answers the first read (1 MiB) before
/// it reads on, so the thread that sends them again must not be the one
/// that reads the replies, or each waits for the other until the send
/// timeout breaks the new connection too (and the requests end in EIO).
#[test]
fn resending_big_reads_and_writes_after_a_reconnect_does_not_deadlock() {
    const N: usize = 8;
    // The first connection reads every request, answers none and hangs
    // up; later ones answer correctly.
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s2 = seen.clone();
    let d = Double::start(
        64 << 20,
        TF_SEND_FLUSH,
        false,
        Arc::new(move |r: &Req, disk: &mut Vec<u8>| {
            let k = s2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match k + 1 {
                k if k < 2 * N => Answer::Bytes(Vec::new()),
                k if k == 2 * N => Answer::Close,
                _ => correct(r, disk, false),
            }
        }),
    );
    let _ = env_logger::builder().is_test(true).try_init();
    let b = NbdBackend::open(
        &d.uri(),
        NbdOptions {
            reconnect_timeout: Duration::from_secs(60),
            ..NbdOptions::default()
        },
    )
    .unwrap();
    let mut e = b.engine().unwrap();
    let mut reqs: Vec<(IoOp, u64, Vec<u8>)> = (0..2 * N)
        .map(|i| {
            if i < N {
                (IoOp::Read, (i * MB) as u64, vec![0u8; MB])
            } else {
                (IoOp::Write, (i * MB) as u64, pattern(i as u8, MB))
            }
        })
        .collect();
    push_all(&mut *e, &mut reqs);
    let done = reap_like_the_runner(&mut *e, 2 * N);
    assert!(done.iter().all(|c| c.result == Ok(MB as u64)), "{done:?}");
}
