//! Hostile replies: bad magic, unknown cookies, bad chunks, server errors, hang-ups.

use std::sync::Arc;

use vblk_backend::Backend;
use vblk_backend_nbd::proto::*;

use crate::common::double::*;
use crate::{guarded_read, hostile_read, open, ALL, SIZE};

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
