//! Strategies for one random chain (`chain::random_chain_is_contained`):
//! addresses inside and outside guest memory, lengths, request types,
//! sectors, and descriptor lists either fully random or plausible with at
//! most one thing broken.

use proptest::prelude::*;

use super::*;

fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0x1_0000u64..0x3_8000,
        2 => (0x1_0000u64..0x3_8000).prop_map(|a| a & !15),
        2 => REG - 0x1000..REG + 0x1000,
        2 => HOLE - 0x1000..HOLE + 0x1000,
        1 => REGION3 + REG - 0x1000..REGION3 + REG + 0x1000,
        1 => u64::MAX - 0x1000..=u64::MAX,
        1 => any::<u64>(),
    ]
}

fn len() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => (0u32..=8).prop_map(|k| k * 512),
        2 => Just(16u32),
        2 => Just(1u32),
        3 => 0u32..3000,
        1 => 0xffff_0000u32..=u32::MAX,
        1 => any::<u32>(),
    ]
}

pub(crate) fn request_type() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(4),
        Just(8),
        Just(11),
        Just(13),
        any::<u32>()
    ]
}

pub(crate) fn sector() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0..SECTORS + 4,
        1 => u64::MAX / 512 - 2..=u64::MAX / 512 + 2,
        1 => any::<u64>(),
    ]
}

/// Data descriptors (after the header) and the bytes to place in guest
/// memory for them: either fully random, or a plausible request (data in
/// the right direction, whole sectors or segments, a status byte) with at
/// most one thing broken.
type Descs = (Vec<(u64, u32, bool)>, Vec<(u64, Vec<u8>)>);

pub(crate) fn random_descs() -> impl Strategy<Value = Descs> {
    proptest::collection::vec((addr(), len(), any::<bool>()), 0..13).prop_map(|d| (d, Vec::new()))
}

#[derive(Debug, Clone)]
enum Mutation {
    None,
    FlipDirection(prop::sample::Index),
    Address(prop::sample::Index, u64),
    Length(prop::sample::Index, u32),
    Remove(prop::sample::Index),
    Swap(prop::sample::Index),
    Duplicate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    use prop::sample::Index;
    prop_oneof![
        6 => Just(Mutation::None),
        1 => any::<Index>().prop_map(Mutation::FlipDirection),
        1 => (any::<Index>(), addr()).prop_map(|(i, a)| Mutation::Address(i, a)),
        1 => (any::<Index>(), len()).prop_map(|(i, l)| Mutation::Length(i, l)),
        1 => any::<Index>().prop_map(Mutation::Remove),
        1 => any::<Index>().prop_map(Mutation::Swap),
        1 => any::<Index>().prop_map(Mutation::Duplicate),
    ]
}

pub(crate) fn plausible_descs(t: u32) -> impl Strategy<Value = Descs> {
    (
        0u32..=8,
        proptest::collection::vec(
            (
                0..SECTORS + 2,
                0u32..10,
                prop_oneof![4 => Just(0u32), 1 => 0u32..3],
            ),
            1..4,
        ),
        proptest::collection::vec(any::<u16>(), 0..4),
        Just((0u64..20).collect::<Vec<_>>()).prop_shuffle(),
        prop::bool::weighted(0.2),
        0u64..0x1000,
        mutation(),
        any::<u8>(),
    )
        .prop_map(
            move |(k, segs, cuts, slots, straddle, status_off, m, fill)| {
                let (len, write, payload): (usize, bool, Vec<u8>) = match t {
                    0 => (512 * k as usize, true, Vec::new()),
                    1 => {
                        let n = 512 * k as usize;
                        (n, false, (0..n).map(|i| fill ^ (i as u8)).collect())
                    }
                    8 => (4 * k as usize + 1, true, Vec::new()),
                    11 | 13 => {
                        let mut b = Vec::new();
                        for (sector, n, flags) in &segs {
                            b.extend_from_slice(&sector.to_le_bytes());
                            b.extend_from_slice(&n.to_le_bytes());
                            b.extend_from_slice(&flags.to_le_bytes());
                        }
                        (b.len(), false, b)
                    }
                    _ => (0, false, Vec::new()),
                };
                let mut cuts: Vec<usize> =
                    cuts.iter().map(|&c| usize::from(c) % (len + 1)).collect();
                cuts.extend([0, len]);
                cuts.sort();
                cuts.dedup();
                let mut descs = Vec::new();
                let mut writes = Vec::new();
                for (p, w) in cuts.windows(2).enumerate() {
                    let at = if straddle && p == 0 {
                        REG - 0x800
                    } else {
                        0x1_0000 + 0x2000 * slots[p]
                    };
                    descs.push((at, (w[1] - w[0]) as u32, write));
                    if !write {
                        writes.push((at, payload[w[0]..w[1]].to_vec()));
                    }
                }
                descs.push((0x3_a000 + status_off, 1, true));
                let pick = |i: &prop::sample::Index, d: &Vec<_>| i.index(d.len());
                match m {
                    Mutation::None => {}
                    Mutation::FlipDirection(i) => {
                        let i = pick(&i, &descs);
                        descs[i].2 = !descs[i].2;
                    }
                    Mutation::Address(i, a) => {
                        let i = pick(&i, &descs);
                        descs[i].0 = a;
                    }
                    Mutation::Length(i, l) => {
                        let i = pick(&i, &descs);
                        descs[i].1 = l;
                    }
                    Mutation::Remove(i) => {
                        let i = pick(&i, &descs);
                        descs.remove(i);
                    }
                    Mutation::Swap(i) => {
                        let i = pick(&i, &descs);
                        let j = (i + 1) % descs.len();
                        descs.swap(i, j);
                    }
                    Mutation::Duplicate(i) => {
                        let i = pick(&i, &descs);
                        descs.insert(i, descs[i]);
                    }
                }
                (descs, writes)
            },
        )
}
