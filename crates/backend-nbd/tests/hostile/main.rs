//! A hostile (or broken) NBD server: bad magic, unknown cookies, short
//! replies, chunks outside the request, oversize lengths, error replies.
//! Each ends in an error for the request — never a crash, a hang, or a
//! byte written outside the request's buffer.

#[path = "../common/mod.rs"]
mod common;

// The tests, by theme: the server's replies (`replies`); the commands the
// client sends for the flags the server offers (`requests`).
mod random_replies; // seeded random replies: the engine's contract per seed
mod replies;
mod requests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::double::*;
use common::*;
use vblk_backend::{Backend, IoEngine, IoOp};
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
