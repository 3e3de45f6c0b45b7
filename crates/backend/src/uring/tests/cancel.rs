//! `reap_timeout`, `cancel_all` and `Drop` with requests still in the
//! kernel.

use super::*;

#[test]
fn drop_with_nothing_in_flight() {
    let (_d, _p, mut e) = engine(4096);
    let mut b = vec![0u8; 4096];
    assert_eq!(
        one(&mut e, IoOp::Read, 0, 4096, &mut [&mut b]).result,
        Ok(4096)
    );
    assert_eq!(e.in_flight(), 0);
    drop(e);
}

#[test]
fn drop_waits_for_requests_in_flight() {
    let (_d, _p, mut e) = engine(1 << 16);
    let mut b = vec![0u8; 1 << 16];
    push(&mut e, IoOp::Read, 0, 1 << 16, &mut [&mut b], 1);
    e.submit().unwrap();
    drop(e);
    drop(b);
}

#[test]
fn reap_timeout_bounds_the_wait_and_cancel_all_frees_a_stuck_read() {
    let (mut e, _w) = pipe_engine();
    let mut buf = vec![0u8; 512];
    push(&mut e, IoOp::Read, 0, 512, &mut [&mut buf], 77);
    // A second request pushed but never submitted.
    let mut buf2 = vec![0u8; 512];
    e.submit().unwrap();
    push(&mut e, IoOp::Read, 0, 512, &mut [&mut buf2], 78);
    let mut out = vec![];
    let t = Instant::now();
    e.reap_timeout(&mut out, 1, Duration::from_millis(100))
        .unwrap();
    let waited = t.elapsed();
    assert!(out.is_empty(), "nothing can complete: {out:?}");
    assert!(
        waited >= Duration::from_millis(90),
        "returned early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "timeout ignored: {waited:?}"
    );
    assert_eq!(e.in_flight(), 2);
    e.cancel_all();
    e.reap_timeout(&mut out, 2, Duration::from_secs(5)).unwrap();
    out.sort_by_key(|c| c.token);
    assert_eq!(
        out,
        vec![
            IoCompletion {
                token: 77,
                result: Err(libc::ECANCELED)
            },
            IoCompletion {
                token: 78,
                result: Err(libc::ECANCELED)
            },
        ]
    );
    assert_eq!(e.in_flight(), 0);
}

#[test]
fn drop_cancels_and_waits_for_a_stuck_read() {
    let (mut e, _w) = pipe_engine();
    let mut buf = vec![0u8; 512];
    push(&mut e, IoOp::Read, 0, 512, &mut [&mut buf], 1);
    e.submit().unwrap();
    // Without the cancellation this would wait forever.
    drop(e);
}
