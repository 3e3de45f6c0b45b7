//! The `vhost_user_messages` fuzz body on stable Rust, so CI exercises it
//! without a nightly compiler or cargo-fuzz: the well-formed seeds (with
//! what they must do), the corpus kept in `fuzz/corpus/vhost_user_messages`
//! (what the fuzzer found interesting, regressions included), and random
//! and mutated inputs.
//!
//! One `#[test]` only: the body checks that no thread and no fd outlives
//! the connection, which needs nothing else running in the process.

use std::sync::atomic::{AtomicBool, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use vblk_transport_vhost_user::fuzzing::{req, run, seeds, Outcome};

static PANICKED: AtomicBool = AtomicBool::new(false);

/// A panic on any thread (a queue runner's too) fails the test, as it
/// aborts the fuzzer.
fn watch_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        default(info);
    }));
}

fn check(name: &str, input: &[u8]) -> Outcome {
    let out = run(input, true);
    assert!(
        !PANICKED.load(Ordering::SeqCst),
        "{name}: a thread panicked"
    );
    out
}

/// The avail index GET_VRING_BASE reported for `q` last.
fn base(out: &Outcome, q: u32) -> Option<u32> {
    out.replies
        .iter()
        .rev()
        .filter(|(c, p)| *c == u32::from(req::GET_VRING_BASE) && p.len() == 8)
        .map(|(_, p)| {
            let w = |i: usize| u32::from_le_bytes(p[4 * i..4 * i + 4].try_into().unwrap());
            (w(0), w(1))
        })
        .find(|(i, _)| *i == q)
        .map(|(_, n)| n)
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus/vhost_user_messages");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            Some((
                p.file_name()?.to_string_lossy().into_owned(),
                std::fs::read(&p).ok()?,
            ))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn vhost_user_messages_smoke() {
    watch_panics();

    // The seeds reach real I/O.
    let seeds = seeds();
    for (name, input) in &seeds {
        let out = check(name, input);
        eprintln!(
            "{name}: {} sent, replies {:?}",
            out.sent,
            out.replies
                .iter()
                .map(|(c, p)| (c, p.len()))
                .collect::<Vec<_>>()
        );
        assert!(out.sent > 5, "{name}: {} messages sent", out.sent);
        match *name {
            "read" | "write_reply_ack" | "inflight_read" | "polled_read_only" => {
                assert_eq!(base(&out, 0), Some(1), "{name}: one chain consumed")
            }
            "two_queues" => {
                assert_eq!(base(&out, 0), Some(1), "{name}: queue 0");
                assert_eq!(base(&out, 1), Some(1), "{name}: queue 1");
            }
            "add_rem_mem_reg" => assert_eq!(base(&out, 0), Some(1), "{name}"),
            _ => {}
        }
        match *name {
            "write_reply_ack" => {
                assert!(
                    out.disk_head[512..1024].iter().all(|&b| b == 0xa5),
                    "{name}"
                );
                // REPLY_ACK: an ack (0) for every NEED_REPLY message.
                assert!(out
                    .replies
                    .iter()
                    .any(|(c, p)| *c == u32::from(req::SET_MEM_TABLE) && p == &[0; 8]));
            }
            "two_queues" => {
                assert!(
                    out.disk_head[1536..2048].iter().all(|&b| b == 0xa5),
                    "{name}"
                )
            }
            "polled_read_only" => {
                assert!(
                    out.disk_head.iter().all(|&b| b == 0),
                    "{name}: read-only disk written"
                )
            }
            "handshake_config" => {
                // GET_CONFIG answered with 60 bytes (+ its 12-byte header);
                // SET_CONFIG refused (a non-zero ack).
                assert!(out
                    .replies
                    .iter()
                    .any(|(c, p)| *c == u32::from(req::GET_CONFIG) && p.len() == 72));
                assert!(out
                    .replies
                    .iter()
                    .any(|(c, p)| *c == u32::from(req::SET_CONFIG) && p != &[0; 8]));
            }
            _ => {}
        }
    }

    // What the fuzzer kept (and the regressions among it).
    for (name, input) in corpus() {
        check(&name, &input);
    }

    // Random bytes, and seeds with a few bytes flipped or cut short.
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..400), |data| {
            check("random", &data);
            Ok(())
        })
        .unwrap();
    let n = seeds.len();
    runner
        .run(
            &(
                0..n,
                proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
                any::<prop::sample::Index>(),
            ),
            |(s, flips, cut)| {
                let mut input = seeds[s].1.clone();
                for (at, x) in flips {
                    let i = at.index(input.len());
                    input[i] ^= x;
                }
                if input.len() > 8 {
                    let keep = 8 + cut.index(input.len() - 8);
                    input.truncate(keep.max(input.len() * 3 / 4));
                }
                check("mutated", &input);
                Ok(())
            },
        )
        .unwrap();
}

/// Write the seeds into `fuzz/corpus/vhost_user_messages` (by hand:
/// `cargo test -p vblk-transport-vhost-user --test fuzz_smoke -- --ignored write_seeds`).
#[test]
#[ignore]
fn write_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus/vhost_user_messages");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, input) in seeds() {
        std::fs::write(dir.join(format!("seed-{name}")), input).unwrap();
    }
}
