//! The packed-ring fuzz body (`vblk_device::fuzzing_packed`) on stable
//! Rust: its seeds complete real requests, and random or mutated inputs
//! never break its promises (the real fuzzing: `cargo fuzz run
//! packed_process` in `fuzz/`).

use proptest::prelude::*;
use vblk_device::fuzzing_packed::{packed_process, packed_process_seeds};

#[test]
fn packed_process_seeds_complete() {
    for (name, input, done) in packed_process_seeds() {
        assert_eq!(packed_process(&input), done, "seed {name}");
    }
}

/// Write the seeds into `fuzz/corpus/packed_process` (run by hand).
#[test]
#[ignore]
fn write_packed_seeds() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/packed_process");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, input, _) in packed_process_seeds() {
        std::fs::write(dir.join(format!("seed-{name}")), input).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, .. ProptestConfig::default() })]

    #[test]
    fn packed_process_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        packed_process(&data);
    }

    #[test]
    fn mutated_packed_seeds_never_panic(
        seed in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let seeds = packed_process_seeds();
        let mut input = seeds[seed.index(seeds.len())].1.clone();
        for (at, x) in flips {
            let i = at.index(input.len());
            input[i] ^= x;
        }
        packed_process(&input);
    }
}
