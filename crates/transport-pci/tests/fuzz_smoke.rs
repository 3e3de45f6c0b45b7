//! The `pci_registers` fuzz body on stable Rust, so CI exercises it without
//! a nightly compiler or cargo-fuzz: the well-formed seeds (with what they
//! must do), the corpus kept in `fuzz/corpus/pci_registers` (what the
//! fuzzer found interesting, regressions included), and random and mutated
//! inputs.
//!
//! One `#[test]` only: the body checks that no thread and no fd outlives
//! the function, which needs nothing else running in the process.

use std::sync::atomic::{AtomicBool, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use vblk_transport_pci::fuzzing::{run, seeds, Outcome};

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

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pci_registers");
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
fn pci_registers_smoke() {
    watch_panics();

    // The seeds reach real I/O and interrupts.
    let seeds = seeds();
    for (name, input) in &seeds {
        let out = check(name, input);
        let sector2 = &out.disk_head[1024..1536];
        match *name {
            "modern_msix" => {
                assert_eq!(&out.status_bytes[..2], &[0, 0], "{name}: statuses");
                assert!(sector2.iter().all(|&b| b == 0x5a), "{name}: OUT written");
                assert!(
                    out.msix[1] >= 1 && out.msix[2] >= 1,
                    "{name}: {:?}",
                    out.msix
                );
            }
            "modern_intx_flush" | "legacy_intx" => {
                assert_eq!(out.status_bytes[0], 0, "{name}: status");
                assert!(out.intx >= 1, "{name}: no INTx");
            }
            "legacy_msix" => {
                assert_eq!(out.status_bytes[0], 0, "{name}: status");
                assert!(out.msix[1] >= 1, "{name}: {:?}", out.msix);
            }
            "msix_masking" | "unmap_running" => {
                assert_eq!(out.status_bytes[0], 0, "{name}: status")
            }
            "refill" => {
                assert_eq!(&out.status_bytes[..2], &[0, 0], "{name}: statuses");
                assert!(sector2.iter().all(|&b| b == 0x5a), "{name}: OUT written");
            }
            "sweep" => assert!(out.reads.contains(&0x1001_1af4)),
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
                let keep = cut.index(input.len() + 1);
                input.truncate(keep.max(input.len() * 3 / 4));
                check("mutated", &input);
                Ok(())
            },
        )
        .unwrap();
}

/// Write the seeds into `fuzz/corpus/pci_registers` (by hand:
/// `cargo test -p vblk-transport-pci --test fuzz_smoke -- --ignored write_seeds`).
#[test]
#[ignore]
fn write_seeds() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pci_registers");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, input) in seeds() {
        std::fs::write(dir.join(format!("seed-{name}")), input).unwrap();
    }
}
