//! Tests of the scripted engine: delays, injected results, `submit` and
//! `reap` failures, stuck requests and `cancel_all`.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::*;
use crate::testutil::iov;
use crate::{IoCompletion, IoEngine, IoOp, IoRequest};

fn push(e: &mut ScriptedEngine, op: IoOp, offset: u64, bufs: &mut [&mut [u8]], token: u64) {
    let iovecs: Vec<libc::iovec> = bufs.iter_mut().map(|b| iov(b)).collect();
    let len = iovecs.iter().map(|v| v.iov_len as u64).sum();
    // SAFETY: every caller reaps before its buffers go away.
    unsafe {
        e.push(IoRequest {
            op,
            offset,
            len,
            iovecs,
            token,
            fua: false,
        })
    };
}

fn readable(fd: RawFd, ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) == 1 }
}

#[test]
fn delays_complete_out_of_order_and_signal_the_eventfd() {
    let b = ScriptedBackend::new(1 << 16);
    b.fill(0, &[7; 4096]);
    b.set_script(|_, offset, _| {
        Outcome::after(Duration::from_millis(if offset == 0 { 150 } else { 10 }))
    });
    let mut e = b.scripted_engine().unwrap();
    let fd = e.completion_fd().unwrap();
    let mut slow = vec![0u8; 4096];
    let mut fast = vec![1u8; 4096];
    push(&mut e, IoOp::Read, 0, &mut [&mut slow], 1);
    push(&mut e, IoOp::Write, 8192, &mut [&mut fast], 2);
    e.submit().unwrap();
    assert_eq!(b.in_kernel(), 2);
    assert!(!readable(fd, 0), "nothing is complete yet");
    assert!(readable(fd, 2000), "the fast one signals");
    let mut out = vec![];
    e.reap(&mut out, 1).unwrap();
    assert_eq!(
        out,
        vec![IoCompletion {
            token: 2,
            result: Ok(4096)
        }]
    );
    assert_eq!(b.in_kernel(), 1);
    assert_eq!(b.outstanding()[0].token, 1);
    assert!(
        slow.iter().all(|&x| x == 0),
        "not written before its completion"
    );
    e.reap(&mut out, 2).unwrap();
    assert_eq!(
        out[1],
        IoCompletion {
            token: 1,
            result: Ok(4096)
        }
    );
    assert!(slow.iter().all(|&x| x == 7));
    assert_eq!((b.in_kernel(), b.max_in_kernel(), e.in_flight()), (0, 2, 0));
    assert_eq!(&b.snapshot()[8192..12288], &[1u8; 4096][..]);
}

#[test]
fn injected_results() {
    let b = ScriptedBackend::new(1 << 16);
    b.set_script(|op, offset, _| match (op, offset) {
        (IoOp::Read, 0) => Outcome::Errno {
            errno: libc::EIO,
            delay: Duration::ZERO,
        },
        (IoOp::Read, 512) => Outcome::Errno {
            errno: libc::EAGAIN,
            delay: Duration::ZERO,
        },
        (IoOp::Read, 1024) => Outcome::Errno {
            errno: libc::EINTR,
            delay: Duration::ZERO,
        },
        (IoOp::Write, _) => Outcome::Short {
            bytes: 100,
            delay: Duration::from_millis(5),
        },
        _ => Outcome::Errno {
            errno: libc::ENOSPC,
            delay: Duration::ZERO,
        },
    });
    let mut e = b.scripted_engine().unwrap();
    let mut bufs: Vec<Vec<u8>> = (0..5).map(|_| vec![9u8; 512]).collect();
    for (i, buf) in bufs.iter_mut().enumerate().take(3) {
        push(&mut e, IoOp::Read, i as u64 * 512, &mut [buf], i as u64);
    }
    push(&mut e, IoOp::Write, 4096, &mut [&mut bufs[3]], 3);
    push(&mut e, IoOp::Flush, 0, &mut [], 4);
    e.submit().unwrap();
    let mut out = vec![];
    e.reap(&mut out, 5).unwrap();
    out.sort_by_key(|c| c.token);
    let got: Vec<_> = out.iter().map(|c| c.result).collect();
    assert_eq!(
        got,
        vec![
            Err(libc::EIO),
            Err(libc::EAGAIN),
            Err(libc::EINTR),
            Ok(100),
            Err(libc::ENOSPC)
        ]
    );
    let d = b.snapshot();
    assert!(
        d[4096..4196].iter().all(|&x| x == 9) && d[4196] == 0,
        "short write"
    );
}

#[test]
fn submit_failures_lose_nothing() {
    let b = ScriptedBackend::new(1 << 16);
    let mut e = b.scripted_engine().unwrap();
    let mut bufs: Vec<Vec<u8>> = (0..4).map(|_| vec![0u8; 512]).collect();
    for (i, buf) in bufs.iter_mut().enumerate() {
        push(&mut e, IoOp::Read, 0, &mut [buf], i as u64);
    }
    b.fail_submit(1, libc::EAGAIN);
    assert_eq!(e.submit().unwrap_err().raw_os_error(), Some(libc::EAGAIN));
    assert_eq!((b.submitted(), e.in_flight()), (0, 4));
    b.fail_submit_after(1, 1, libc::ENOMEM);
    assert!(e.submit().is_err());
    assert_eq!((b.submitted(), e.in_flight()), (1, 4));
    e.submit().unwrap();
    let mut out = vec![];
    e.reap(&mut out, 4).unwrap();
    let mut tokens: Vec<_> = out.iter().map(|c| c.token).collect();
    tokens.sort();
    assert_eq!(tokens, vec![0, 1, 2, 3], "each exactly once");
    assert_eq!(e.in_flight(), 0);
}

#[test]
fn reap_failures_keep_completions_and_resignal() {
    let b = ScriptedBackend::new(4096);
    let mut e = b.scripted_engine().unwrap();
    let mut buf = vec![0u8; 512];
    push(&mut e, IoOp::Read, 0, &mut [&mut buf], 5);
    e.submit().unwrap();
    b.fail_reap(1, libc::EIO);
    let mut out = vec![];
    assert!(e.reap(&mut out, 1).is_err());
    assert!(out.is_empty());
    assert!(readable(e.completion_fd().unwrap(), 0), "signalled again");
    e.reap(&mut out, 1).unwrap();
    assert_eq!(
        out,
        vec![IoCompletion {
            token: 5,
            result: Ok(512)
        }]
    );
}

#[test]
fn stuck_until_cancel_all() {
    let b = ScriptedBackend::new(4096);
    b.set_script(|_, _, _| Outcome::Stuck);
    let mut e = b.scripted_engine().unwrap();
    let mut buf = vec![3u8; 512];
    push(&mut e, IoOp::Read, 0, &mut [&mut buf], 1);
    e.submit().unwrap();
    let mut out = vec![];
    let t = Instant::now();
    e.reap_timeout(&mut out, 1, Duration::from_millis(50))
        .unwrap();
    assert!(out.is_empty() && t.elapsed() >= Duration::from_millis(45));
    e.reap(&mut out, 1).unwrap();
    assert!(
        out.is_empty(),
        "reap does not wait for what cannot complete"
    );
    assert_eq!((b.in_kernel(), e.in_flight()), (1, 1));
    e.cancel_all();
    e.reap(&mut out, 1).unwrap();
    assert_eq!(
        out,
        vec![IoCompletion {
            token: 1,
            result: Err(libc::ECANCELED)
        }]
    );
    assert!(
        buf.iter().all(|&x| x == 3),
        "a cancelled read writes nothing"
    );
    assert_eq!(b.in_kernel(), 0);
}
