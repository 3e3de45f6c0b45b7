//! The commands sent for the server's flags: FUA, emulation, multi-conn, cancel.

use std::sync::Arc;

use vblk_backend::{Backend, IoEngine, IoOp, IoRequest};
use vblk_backend_nbd::proto::*;
use vblk_backend_nbd::{NbdBackend, NbdOptions};

use crate::common::double::*;
use crate::common::*;
use crate::{open, ALL, SIZE};

fn fua_write(e: &mut dyn IoEngine) -> Result<u64, i32> {
    let mut buf = vec![5u8; 4096];
    // SAFETY: `buf` lives until the request is reaped.
    unsafe {
        e.push(IoRequest {
            op: IoOp::Write,
            offset: 0,
            len: 4096,
            iovecs: vec![iov(&mut buf)],
            token: 1,
            fua: true,
        })
    };
    e.submit().unwrap();
    let mut out = vec![];
    e.reap(&mut out, 1).unwrap();
    out[0].result
}

#[test]
fn fua_is_the_flag_when_offered_else_a_flush_after_the_write() {
    let script: Script = Arc::new(|r: &Req, disk: &mut Vec<u8>| correct(r, disk, false));
    let d = Double::start(SIZE, ALL | TF_SEND_FUA, false, script.clone());
    let b = open(&d);
    assert_eq!(fua_write(&mut *b.engine().unwrap()), Ok(4096));
    let log: Vec<(u16, u16)> = d
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.cmd, r.flags))
        .collect();
    assert_eq!(log, vec![(CMD_WRITE, CMD_FLAG_FUA)]);

    let d = Double::start(SIZE, ALL, false, script);
    let b = open(&d);
    assert_eq!(fua_write(&mut *b.engine().unwrap()), Ok(4096));
    let log: Vec<(u16, u16)> = d
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.cmd, r.flags))
        .collect();
    assert_eq!(log, vec![(CMD_WRITE, 0), (CMD_FLUSH, 0)]);
}

#[test]
fn without_trim_or_write_zeroes_the_backend_says_so_and_emulates() {
    let d = Double::start(
        SIZE,
        TF_SEND_FLUSH,
        false,
        Arc::new(|r: &Req, disk: &mut Vec<u8>| correct(r, disk, false)),
    );
    let b = open(&d);
    assert!(!b.supports_discard());
    assert!(!b.supports_write_zeroes());
    let mut e = b.engine().unwrap();
    assert_eq!(
        one(&mut *e, IoOp::WriteZeroes, 0, 200 << 10, &mut []).result,
        Ok(200 << 10)
    );
    assert_eq!(
        one(&mut *e, IoOp::Discard, 0, 4096, &mut []).result,
        Ok(4096)
    );
    let log = d.log.lock().unwrap();
    assert!(log
        .iter()
        .all(|r| r.cmd == CMD_WRITE && r.data.iter().all(|&b| b == 0)));
    assert_eq!(log.iter().map(|r| r.len as u64).sum::<u64>(), 200 << 10);
}

#[test]
fn one_connection_per_queue_only_with_can_multi_conn() {
    let script: Script = Arc::new(|r: &Req, disk: &mut Vec<u8>| correct(r, disk, false));
    for (flags, want) in [(ALL, 1), (ALL | TF_CAN_MULTI_CONN, 4)] {
        let d = Double::start(SIZE, flags, false, script.clone());
        let b = NbdBackend::open(
            &d.uri(),
            NbdOptions {
                connections: 4,
                ..NbdOptions::default()
            },
        )
        .unwrap();
        assert_eq!(b.connections(), want, "flags {flags:#x}");
        // Every queue's engine works, whichever connection it got.
        for i in 0..4u8 {
            let mut e = b.engine().unwrap();
            let mut w = vec![i; 512];
            assert_eq!(
                one(&mut *e, IoOp::Write, u64::from(i) * 512, 512, &mut [&mut w]).result,
                Ok(512)
            );
            let mut r = vec![0u8; 512];
            assert_eq!(
                one(&mut *e, IoOp::Read, u64::from(i) * 512, 512, &mut [&mut r]).result,
                Ok(512)
            );
            assert_eq!(r, w);
        }
    }
}

#[test]
fn cancel_all_completes_unsubmitted_requests_and_the_fd_is_signalled() {
    let d = Double::start(
        SIZE,
        ALL,
        false,
        Arc::new(|r: &Req, disk: &mut Vec<u8>| correct(r, disk, false)),
    );
    let b = open(&d);
    let mut e = b.engine().unwrap();
    let fd = e.completion_fd().unwrap();
    let mut buf = vec![0u8; 512];
    // SAFETY: `buf` lives until the request is reaped.
    unsafe {
        e.push(IoRequest {
            op: IoOp::Read,
            offset: 0,
            len: 512,
            iovecs: vec![iov(&mut buf)],
            token: 9,
            fua: false,
        })
    };
    e.cancel_all();
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack.
    assert_eq!(
        unsafe { libc::poll(&mut p, 1, 1000) },
        1,
        "completion fd not signalled"
    );
    let mut out = vec![];
    e.reap(&mut out, 1).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].token, out[0].result), (9, Err(libc::ECANCELED)));
    assert_eq!(e.in_flight(), 0);
    assert!(
        d.log.lock().unwrap().is_empty(),
        "a cancelled request reached the server"
    );
}

#[test]
fn write_zeroes_keeps_the_range_allocated_and_trim_is_trim() {
    let d = Double::start(
        SIZE,
        ALL,
        false,
        Arc::new(|r: &Req, disk: &mut Vec<u8>| correct(r, disk, false)),
    );
    let b = open(&d);
    let mut e = b.engine().unwrap();
    assert_eq!(
        one(&mut *e, IoOp::WriteZeroes, 4096, 8192, &mut []).result,
        Ok(8192)
    );
    assert_eq!(
        one(&mut *e, IoOp::Discard, 0, 4096, &mut []).result,
        Ok(4096)
    );
    assert_eq!(one(&mut *e, IoOp::Flush, 0, 0, &mut []).result, Ok(0));
    let log: Vec<(u16, u16, u64, u32)> = d
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.cmd, r.flags, r.offset, r.len))
        .collect();
    assert_eq!(
        log,
        vec![
            (CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, 4096, 8192),
            (CMD_TRIM, 0, 0, 4096),
            (CMD_FLUSH, 0, 0, 0)
        ]
    );
}
