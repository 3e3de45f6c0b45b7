//! A hostile (or broken) NBD server: bad magic, unknown cookies, short
//! replies, chunks outside the request, oversize lengths, error replies.
//! Each ends in an error for the request — never a crash, a hang, or a
//! byte written outside the request's buffer.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::double::*;
use common::*;
use vblk_backend::{Backend, IoEngine, IoOp, IoRequest};
use vblk_backend_nbd::proto::*;
use vblk_backend_nbd::{NbdBackend, NbdOptions};

const SIZE: u64 = 1 << 20;
const ALL: u16 = TF_SEND_FLUSH | TF_SEND_TRIM | TF_SEND_WRITE_ZEROES;

fn open(d: &Double) -> NbdBackend {
    let _ = env_logger::builder().is_test(true).try_init();
    NbdBackend::open(
        &d.uri(),
        NbdOptions {
            reconnect_timeout: Duration::from_millis(300),
            ..NbdOptions::default()
        },
    )
    .unwrap()
}

/// Read 4096 bytes at 4096 into the middle of a canary buffer; the
/// result, and whether the canary around it survived.
fn guarded_read(e: &mut dyn IoEngine) -> (Result<u64, i32>, bool) {
    let mut buf = vec![0xAAu8; 3 * 4096];
    let t = Instant::now();
    let c = one(e, IoOp::Read, 4096, 4096, &mut [&mut buf[4096..8192]]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    let intact = buf[..4096].iter().chain(&buf[8192..]).all(|&b| b == 0xAA);
    (c.result, intact)
}

fn hostile_read(
    structured: bool,
    script: impl Fn(&Req) -> Vec<u8> + Send + Sync + 'static,
) -> (Result<u64, i32>, bool) {
    let d = Double::start(
        SIZE,
        ALL,
        structured,
        Arc::new(move |r: &Req, disk: &mut Vec<u8>| {
            if r.cmd == CMD_READ {
                Answer::Bytes(script(r))
            } else {
                correct(r, disk, false)
            }
        }),
    );
    let b = open(&d);
    let mut e = b.engine().unwrap();
    guarded_read(&mut *e)
}

#[test]
fn a_correct_double_works_and_the_canary_check_can_fail() {
    let (r, intact) = hostile_read(true, |r| {
        offset_data(
            r.cookie,
            REPLY_FLAG_DONE,
            r.offset,
            &vec![1u8; r.len as usize],
        )
    });
    assert_eq!(r, Ok(4096));
    assert!(intact);
    // Data in two chunks (out of order) and a hole.
    let (r, _) = hostile_read(true, |r| {
        let mut b = offset_data(r.cookie, 0, r.offset + 2048, &[2u8; 1024]);
        let mut hole = r.offset.to_be_bytes().to_vec();
        hole.extend_from_slice(&2048u32.to_be_bytes());
        b.extend(chunk(r.cookie, 0, REPLY_TYPE_OFFSET_HOLE, &hole));
        b.extend(offset_data(
            r.cookie,
            REPLY_FLAG_DONE,
            r.offset + 3072,
            &[3u8; 1024],
        ));
        b
    });
    assert_eq!(r, Ok(4096));
}

#[test]
fn bad_magic_unknown_cookie_and_short_replies_fail_the_request() {
    for (what, script) in [
        (
            "bad magic",
            Box::new(|r: &Req| {
                let mut b = simple(r.cookie, 0);
                b[0] ^= 1;
                b
            }) as Box<dyn Fn(&Req) -> Vec<u8> + Send + Sync>,
        ),
        (
            "unknown cookie",
            Box::new(|r: &Req| {
                let mut b = simple(r.cookie ^ 0x55, 0);
                b.extend(vec![0u8; r.len as usize]);
                b
            }),
        ),
        (
            "short simple reply",
            Box::new(|r: &Req| {
                let mut b = simple(r.cookie, 0);
                b.extend(vec![0u8; 100]);
                b
            }),
        ),
        (
            "short header",
            Box::new(|r: &Req| simple(r.cookie, 0)[..10].to_vec()),
        ),
    ] {
        let (r, intact) = hostile_read(false, script);
        assert_eq!(r, Err(libc::EIO), "{what}");
        assert!(intact, "{what}: bytes outside the buffer were written");
    }
}

#[test]
fn structured_chunks_outside_the_request_never_touch_guest_memory() {
    type S = Box<dyn Fn(&Req) -> Vec<u8> + Send + Sync>;
    let cases: Vec<(&str, S)> = vec![
        (
            "data before the range",
            Box::new(|r: &Req| {
                offset_data(r.cookie, REPLY_FLAG_DONE, r.offset - 512, &vec![9u8; 4096])
            }),
        ),
        (
            "data past the range",
            Box::new(|r: &Req| {
                offset_data(r.cookie, REPLY_FLAG_DONE, r.offset + 512, &vec![9u8; 4096])
            }),
        ),
        (
            "oversize length",
            Box::new(|r: &Req| {
                chunk_len(
                    r.cookie,
                    REPLY_FLAG_DONE,
                    REPLY_TYPE_OFFSET_DATA,
                    u32::MAX,
                    &r.offset.to_be_bytes(),
                )
            }),
        ),
        (
            "hole past the range",
            Box::new(|r: &Req| {
                let mut p = r.offset.to_be_bytes().to_vec();
                p.extend_from_slice(&8192u32.to_be_bytes());
                chunk(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_HOLE, &p)
            }),
        ),
        (
            "offset overflow",
            Box::new(|r: &Req| {
                let mut p = u64::MAX.to_be_bytes().to_vec();
                p.extend_from_slice(&8192u32.to_be_bytes());
                chunk(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_HOLE, &p)
            }),
        ),
        (
            "overlapping chunks",
            Box::new(|r: &Req| {
                let mut b = offset_data(r.cookie, 0, r.offset, &[1u8; 2048]);
                b.extend(offset_data(
                    r.cookie,
                    REPLY_FLAG_DONE,
                    r.offset + 1024,
                    &[1u8; 3072],
                ));
                b
            }),
        ),
        (
            "huge error message",
            Box::new(|r: &Req| {
                chunk_len(
                    r.cookie,
                    REPLY_FLAG_DONE,
                    REPLY_TYPE_ERROR,
                    1 << 30,
                    &[0, 0, 0, 5],
                )
            }),
        ),
        (
            "error zero",
            Box::new(|r: &Req| {
                chunk(
                    r.cookie,
                    REPLY_FLAG_DONE,
                    REPLY_TYPE_ERROR,
                    &[0, 0, 0, 0, 0, 0],
                )
            }),
        ),
        (
            "unknown chunk type",
            Box::new(|r: &Req| chunk(r.cookie, REPLY_FLAG_DONE, 77, &[])),
        ),
        (
            "NONE with a length",
            Box::new(|r: &Req| chunk(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_NONE, &[0; 4])),
        ),
    ];
    for (what, script) in cases {
        let (r, intact) = hostile_read(true, script);
        assert_eq!(r, Err(libc::EIO), "{what}");
        assert!(intact, "{what}: bytes outside the buffer were written");
    }
}

#[test]
fn done_with_bytes_missing_is_an_error_not_a_silent_hole() {
    let (r, intact) = hostile_read(true, |r| {
        offset_data(r.cookie, REPLY_FLAG_DONE, r.offset, &[1u8; 1024])
    });
    assert_eq!(r, Err(libc::EIO));
    assert!(intact);
    let (r, _) = hostile_read(true, |r| {
        chunk(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_NONE, &[])
    });
    assert_eq!(r, Err(libc::EIO));
}

#[test]
fn server_errors_map_to_errnos() {
    let (r, _) = hostile_read(false, |r| simple(r.cookie, 28));
    assert_eq!(r, Err(libc::ENOSPC));
    let (r, _) = hostile_read(true, |r| {
        let mut p = 5u32.to_be_bytes().to_vec();
        p.extend_from_slice(&3u16.to_be_bytes());
        p.extend_from_slice(b"bad");
        chunk(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, &p)
    });
    assert_eq!(r, Err(libc::EIO));
    let (r, _) = hostile_read(false, |r| simple(r.cookie, 9999));
    assert_eq!(r, Err(libc::EIO));
}

/// A server that closes the connection on every request: the request
/// fails after the reconnect timeout (no hang), and the engine drops.
#[test]
fn a_server_that_always_hangs_up_ends_in_eio() {
    let d = Double::start(
        SIZE,
        ALL,
        true,
        Arc::new(|_: &Req, _: &mut Vec<u8>| Answer::Close),
    );
    let b = open(&d);
    let mut e = b.engine().unwrap();
    let (r, intact) = guarded_read(&mut *e);
    assert_eq!(r, Err(libc::EIO));
    assert!(intact);
    // It was resent on each reconnect in between.
    assert!(d.log.lock().unwrap().len() >= 2);
}

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
