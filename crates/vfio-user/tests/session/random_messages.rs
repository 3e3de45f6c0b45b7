//! Random message sequences and the fuzz body on stable: no panic, replies whole and well-formed.

use proptest::prelude::*;
use vblk_vfio_user::proto::{self, cmd, flags};
use vblk_vfio_user::{Limits, Session};

use crate::{replies, version_payload, Mock};

fn arb_offset() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..0x5000, any::<u64>(), Just(u64::MAX - 3)]
}

fn arb_message() -> impl Strategy<Value = Vec<u8>> {
    let hflags = prop_oneof![Just(0u32), Just(0u32), Just(flags::NO_REPLY), any::<u32>()];
    let access = |o: u64, r: u32, c: u32| {
        let mut p = o.to_le_bytes().to_vec();
        p.extend_from_slice(&r.to_le_bytes());
        p.extend_from_slice(&c.to_le_bytes());
        p
    };
    let body = prop_oneof![
        // Anything.
        (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..48)),
        // REGION_READ in plausible shapes.
        (
            arb_offset(),
            0u32..5,
            prop_oneof![0u32..0x5000, any::<u32>()]
        )
            .prop_map(move |(o, r, c)| (cmd::REGION_READ, access(o, r, c))),
        // REGION_WRITE with data matching its count, or off by one.
        (arb_offset(), 0u32..5, 0u32..64, -1i32..=1).prop_map(move |(o, r, c, d)| {
            let mut p = access(o, r, c);
            p.extend(std::iter::repeat_n(0x11, (c as i32 + d).max(0) as usize));
            (cmd::REGION_WRITE, p)
        }),
        // SET_IRQS: any flags, small ranges.
        (
            prop_oneof![any::<u32>(), 0u32..64],
            0u32..3,
            0u32..6,
            0u32..6
        )
            .prop_map(|(f, i, st, c)| {
                let mut p = 20u32.to_le_bytes().to_vec();
                for v in [f, i, st, c] {
                    p.extend_from_slice(&v.to_le_bytes());
                }
                (cmd::DEVICE_SET_IRQS, p)
            }),
        // DMA_MAP / DMA_UNMAP over a small address space.
        (0u32..4, 0u64..8, 0u64..4, any::<bool>()).prop_map(|(f, a, sz, map)| {
            let mut p = if map { 32u32 } else { 24 }.to_le_bytes().to_vec();
            p.extend_from_slice(&f.to_le_bytes());
            if map {
                p.extend_from_slice(&0u64.to_le_bytes());
            }
            p.extend_from_slice(&(a << 20).to_le_bytes());
            p.extend_from_slice(&(sz << 20).to_le_bytes());
            (if map { cmd::DMA_MAP } else { cmd::DMA_UNMAP }, p)
        }),
        // Fixed-size queries, right or wrong sizes.
        (
            4u16..8,
            0u32..12,
            prop_oneof![Just(16usize), Just(32), 0usize..40]
        )
            .prop_map(|(c, idx, len)| {
                let mut p = vec![0u8; len];
                if len >= 12 {
                    p[0..4].copy_from_slice(&(len as u32).to_le_bytes());
                    p[8..12].copy_from_slice(&idx.to_le_bytes());
                }
                (c, p)
            }),
        Just((cmd::DEVICE_RESET, vec![])),
    ];
    (any::<u16>(), hflags, body).prop_map(|(id, f, (c, p))| proto::message(id, c, f, &p))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn random_message_sequences_never_panic(
        msgs in proptest::collection::vec(arb_message(), 1..24),
        version_first in any::<bool>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut s = Session::new(Limits::default());
        let mut m = Mock::default();
        let mut stream = Vec::new();
        if version_first {
            stream.extend(proto::message(0, cmd::VERSION, 0, &version_payload()));
        }
        let mut sent = 0usize;
        for msg in &msgs {
            stream.extend_from_slice(msg);
            sent += 1;
        }
        stream.extend_from_slice(&garbage);
        let (out, _err) = s.feed(&mut m, &stream);
        // Replies are whole, at most one per message (+ VERSION).
        let r = replies(&out);
        prop_assert!(r.len() <= sent + usize::from(version_first) + garbage.len() / 16 + 1);
        for (h, _) in r {
            prop_assert_eq!(h.flags & flags::TYPE_MASK, flags::TYPE_REPLY);
            if h.flags & flags::ERROR != 0 {
                prop_assert!(h.error != 0);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]
    /// The `cargo fuzz` body on stable: raw bytes, and byte soup built
    /// from real headers.
    #[test]
    fn fuzz_body_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        vblk_vfio_user::fuzzing::session_stream(&data);
    }

    #[test]
    fn fuzz_body_on_message_soup(msgs in proptest::collection::vec(arb_message(), 0..16), v in any::<u8>()) {
        let mut data = vec![v];
        for m in msgs {
            data.extend(m);
        }
        vblk_vfio_user::fuzzing::session_stream(&data);
    }
}
