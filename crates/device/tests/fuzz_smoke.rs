//! The fuzz target bodies (`vblk_device::fuzzing`) on stable Rust, so CI
//! exercises them without a nightly compiler: over random inputs, and over
//! the well-formed seeds (the real fuzzing runs with `cargo fuzz` in
//! `fuzz/`).

use proptest::prelude::*;
use vblk_device::fuzzing::{chain_process, chain_process_seeds, request_validate};

/// The seeds reach real I/O: their used entries are the expected ones.
#[test]
fn chain_process_seeds_complete() {
    for (name, input, used) in chain_process_seeds() {
        assert_eq!(chain_process(&input), used, "seed {name}");
    }
}

/// Write the seeds into `fuzz/corpus/chain_process` (run by hand:
/// `cargo test -p vblk-device --test fuzz_smoke -- --ignored write_seeds`).
#[test]
#[ignore]
fn write_seeds() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/chain_process");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, input, _) in chain_process_seeds() {
        std::fs::write(dir.join(format!("seed-{name}")), input).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, .. ProptestConfig::default() })]

    #[test]
    fn request_validate_never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
        request_validate(&data);
    }

    #[test]
    fn chain_process_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        chain_process(&data);
    }

    /// Seeds with a few bytes flipped: mostly well-formed, so the deeper
    /// paths are reached often.
    #[test]
    fn mutated_seeds_never_panic(
        seed in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let seeds = chain_process_seeds();
        let mut input = seeds[seed.index(seeds.len())].1.clone();
        for (at, x) in flips {
            let i = at.index(input.len());
            input[i] ^= x;
        }
        chain_process(&input);
    }

    /// Structured chains: plausible descriptors pointing at plausible and
    /// implausible places, so the interesting paths are reached often.
    #[test]
    fn structured_chains_never_panic(
        descs in proptest::collection::vec((0u64..0x5_0000, 0u32..0x3000, 0u16..8, 0u16..10), 1..8),
        avail_idx in 0u16..12,
        hdr_type in prop_oneof![Just(0u32), Just(1), Just(4), Just(8), Just(11), Just(13), any::<u32>()],
        sector in prop_oneof![0u64..200, Just(u64::MAX)],
        flags in any::<u8>(),
    ) {
        let mut data = vec![flags];
        data.resize(16 * 8, 0);
        for (i, (addr, len, fl, next)) in descs.iter().enumerate() {
            let d = &mut data[16 * i..16 * i + 16];
            d[0..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            d[12..14].copy_from_slice(&(fl & 7).to_le_bytes());
            d[14..16].copy_from_slice(&next.to_le_bytes());
        }
        data[0] = flags; // first byte doubles as the option flags
        let mut avail = vec![0u8, 0];
        avail.extend_from_slice(&avail_idx.to_le_bytes());
        for i in 0..8u16 { avail.extend_from_slice(&(i % 3).to_le_bytes()); }
        data.extend_from_slice(&avail);
        let mut hdr = vec![0u8; 16];
        hdr[0..4].copy_from_slice(&hdr_type.to_le_bytes());
        hdr[8..16].copy_from_slice(&sector.to_le_bytes());
        data.extend_from_slice(&hdr);
        chain_process(&data);
    }
}
