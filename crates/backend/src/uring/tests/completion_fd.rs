//! The completion eventfd: registered from creation, signalled for ring
//! and inline completions, cleared by `reap`.

use super::*;

#[test]
fn completion_eventfd_signals() {
    let (_d, _p, mut e) = engine(1 << 16);
    let fd = e.completion_fd().expect("eventfd");
    assert_eq!(e.completion_fd(), Some(fd), "one eventfd per engine");
    let mut buf = vec![1u8; 4096];
    push(&mut e, IoOp::Write, 0, 4096, &mut [&mut buf], 7);
    e.submit().unwrap();
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
    assert_eq!(n, 1, "eventfd readable after the completion");
    let mut out = vec![];
    e.reap(&mut out, 0).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].result, Ok(4096));
    // Reaping cleared it.
    pfd.revents = 0;
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0);
}

#[test]
fn completion_eventfd_signals_inline_completions_too() {
    let (_d, _p, mut e) = engine_with(1 << 16, true);
    let fd = e.completion_fd().expect("eventfd");
    let mut buf = vec![1u8; 4096];
    push(&mut e, IoOp::Read, 0, 4096, &mut [&mut buf], 7);
    e.submit().unwrap();
    assert_eq!(e.inline_done, 1, "a page-cache hit completes inline");
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 1);
    let mut out = vec![];
    e.reap(&mut out, 0).unwrap();
    assert_eq!(out.len(), 1);
}

#[test]
fn completion_fd_is_registered_from_creation() {
    // Asking for the fd only after the CQE was posted still works.
    let (_d, _p, mut e) = engine(1 << 16);
    let mut buf = vec![0u8; 4096];
    push(&mut e, IoOp::Read, 0, 4096, &mut [&mut buf], 1);
    e.submit().unwrap();
    let fd = e.completion_fd().expect("eventfd");
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1);
    let mut out = vec![];
    e.reap(&mut out, 1).unwrap();
    assert_eq!(out[0].result, Ok(4096));
}
