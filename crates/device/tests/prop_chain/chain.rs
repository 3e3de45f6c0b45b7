//! One random chain (`random_chain_is_contained`): the case, the model of
//! what the device may do with it, and the property test.
//!
//! proptest keeps this file's failure seeds in
//! `tests/proptest-regressions/chain.txt` (its default place for a source
//! file under a `main.rs`).

use proptest::prelude::*;
use vblk_device::QueueError;
use vblk_interrupt::InterruptKind;
use vblk_queue::BrokenChain;
use vblk_testkit::RecordingInterrupt;

use super::chain_strategy::{plausible_descs, random_descs, request_type, sector};
use super::*;

#[derive(Debug, Clone)]
struct ChainCase {
    /// Descriptors after the header ones: (addr, len, writable).
    descs: Vec<(u64, u32, bool)>,
    /// Guest memory to fill before the run (data for readable buffers).
    writes: Vec<(u64, Vec<u8>)>,
    /// 0: no header descriptor; 16: one; 1..15: split in two.
    header_split: u8,
    request_type: u32,
    ioprio: u32,
    sector: u64,
    indirect: bool,
    read_only: bool,
    event_idx: bool,
    seed: u8,
}

fn chain_case() -> impl Strategy<Value = ChainCase> {
    let head = (
        prop_oneof![1 => Just(0u8), 6 => Just(16u8), 3 => 1u8..16],
        request_type(),
        any::<u32>(),
        sector(),
    );
    let opts = (
        any::<bool>(),
        prop::bool::weighted(0.2),
        any::<bool>(),
        any::<u8>(),
    );
    (head, opts)
        .prop_flat_map(|(head, opts)| {
            let descs = prop_oneof![
                1 => random_descs().boxed(),
                3 => plausible_descs(head.1).boxed(),
            ];
            (Just(head), Just(opts), descs)
        })
        .prop_map(
            |(
                (header_split, request_type, ioprio, sector),
                (indirect, read_only, event_idx, seed),
                (descs, writes),
            )| ChainCase {
                descs,
                writes,
                header_split,
                request_type,
                ioprio,
                sector,
                indirect,
                read_only,
                event_idx,
                seed,
            },
        )
}

/// The chain as virtio-queue will walk it: stops where the byte count
/// would overflow a u32.
fn walked(descs: &[(u64, u32, bool)]) -> Vec<(u64, u32, bool)> {
    let mut total = 0u32;
    let mut out = Vec::new();
    for &d in descs {
        match total.checked_add(d.1) {
            Some(t) => total = t,
            None => break,
        }
        out.push(d);
    }
    out
}

fn check_chain(c: &ChainCase) -> Result<(), TestCaseError> {
    let mem = guest_memory();
    // Noisy guest RAM (so any stray write shows), then the header.
    let noise = noise(c.seed);
    mem.write_slice(&noise[0x8000..], GuestAddress(0x8000))
        .unwrap();
    mem.write_slice(&noise[..REG as usize], GuestAddress(REGION3))
        .unwrap();
    let mut hdr = [0u8; 16];
    hdr[0..4].copy_from_slice(&c.request_type.to_le_bytes());
    hdr[4..8].copy_from_slice(&c.ioprio.to_le_bytes());
    hdr[8..16].copy_from_slice(&c.sector.to_le_bytes());
    mem.write_slice(&hdr, GuestAddress(HDR)).unwrap();
    for (at, b) in &c.writes {
        mem.write_slice(b, GuestAddress(*at)).unwrap();
    }

    let mut descs = Vec::new();
    match c.header_split {
        0 => {}
        16 => descs.push((HDR, 16, false)),
        k => {
            descs.push((HDR, u32::from(k), false));
            descs.push((HDR + u64::from(k), 16 - u32::from(k), false));
        }
    }
    descs.extend_from_slice(&c.descs);
    if descs.is_empty() {
        descs.push((HDR, 0, false));
    }

    let mut ring = Ring::new(&mem, c.event_idx);
    let (backend, dev) = device(c.read_only);
    let mut worker = dev.worker(0).unwrap();
    let irq = RecordingInterrupt::new();
    if c.indirect {
        let n = ring.indirect(TABLE, &descs);
        ring.desc(0, TABLE, n, F_INDIRECT, 0);
    } else {
        for (k, &(a, l, w)) in descs.iter().enumerate() {
            let last = k + 1 == descs.len();
            let flags = if w { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            ring.desc(k as u16, a, l, flags, k as u16 + 1);
        }
    }
    ring.publish(0);
    let before = snapshot(&mem);

    let done = worker.process(&mut ring.queue, &mem, &irq);
    // A chain over 4 GiB breaks the ring ("Drivers MUST NOT add a
    // descriptor chain longer than 2^32 bytes", virtio 1.2, 2.7.5.2):
    // nothing executed, nothing written.
    let total: u64 = descs.iter().map(|d| u64::from(d.1)).sum();
    if total > u64::from(u32::MAX) {
        prop_assert!(
            matches!(done, Err(QueueError::Chain(0, 0, BrokenChain::TooLong))),
            "chain over 4 GiB: {:?}",
            done
        );
        prop_assert!(ring.used_entries().is_empty());
        prop_assert!(irq.take().is_empty());
        // Only the used ring's notification fields may change.
        let after = snapshot(&mem);
        let mut expect = before.clone();
        allow(&mut expect, &after, USED, 0x100);
        prop_assert!(expect == after, "guest memory written by a broken chain");
        return Ok(());
    }
    prop_assert!(matches!(done, Ok(1)), "process on a sane ring: {:?}", done);
    prop_assert_eq!(irq.take(), vec![InterruptKind::Queue(0)]);
    let used = ring.used_entries();
    prop_assert_eq!(used.len(), 1);
    prop_assert_eq!(used[0].0, 0);
    let used_len = used[0].1;
    let after = snapshot(&mem);

    // The model: the chain as walked, zero-length descriptors dropped.
    let walk: Vec<_> = walked(&descs).into_iter().filter(|d| d.1 > 0).collect();
    let readable: Vec<_> = walk.iter().filter(|d| !d.2).copied().collect();
    let writable: Vec<_> = walk.iter().filter(|d| d.2).copied().collect();
    let readable_len: u64 = readable.iter().map(|d| u64::from(d.1)).sum();
    let writable_len: u64 = writable.iter().map(|d| u64::from(d.1)).sum();
    let status_addr = writable
        .last()
        .and_then(|d| d.0.checked_add(u64::from(d.1) - 1))
        .filter(|&a| byte_at(&before, a).is_some());
    let malformed = readable_len < 16 || status_addr.is_none();

    // 1. The used length never exceeds the writable bytes.
    prop_assert!(
        u64::from(used_len) <= writable_len,
        "used {} > writable {}",
        used_len,
        writable_len
    );

    // 2. Guest memory changes only inside writable buffers and the used ring.
    let mut expect = before.clone();
    for d in &writable {
        allow(&mut expect, &after, d.0, u64::from(d.1));
    }
    allow(&mut expect, &after, USED, 0x100);
    if expect != after {
        let first = (0..2 * REG as usize)
            .find(|&i| expect.0[i] != after.0[i])
            .map(|i| i as u64)
            .or_else(|| {
                (0..REG as usize)
                    .find(|&i| expect.1[i] != after.1[i])
                    .map(|i| REGION3 + i as u64)
            });
        return Err(TestCaseError::fail(format!(
            "guest memory written outside the chain at {first:x?}"
        )));
    }

    // 3. Status byte and used length.
    let header: Option<[u8; 16]> = {
        // The first 16 readable bytes, if they are all guest RAM.
        let mut h = Vec::new();
        'o: for d in &readable {
            for i in 0..u64::from(d.1) {
                if h.len() == 16 {
                    break 'o;
                }
                match d.0.checked_add(i).and_then(|a| byte_at(&before, a)) {
                    Some(b) => h.push(b),
                    None => break 'o,
                }
            }
        }
        h.try_into().ok()
    };
    let disk = backend.snapshot();
    let orig = pristine();
    if malformed {
        prop_assert_eq!(used_len, 0, "malformed chain used");
        prop_assert!(disk == orig, "malformed chain executed");
        prop_assert_eq!(counter(&dev, "malformed_chains"), 1);
        return Ok(());
    }
    let status_addr = status_addr.unwrap();
    let status = byte_at(&after, status_addr).unwrap();
    prop_assert!(used_len >= 1, "a chain with a status byte used 0");
    prop_assert!(status <= 2, "status {}", status);
    let t = header.map(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
    let sector = header.map(|h| u64::from_le_bytes(h[8..16].try_into().unwrap()));
    if used_len > 1 {
        prop_assert_eq!(status, 0);
        prop_assert!(
            t == Some(0) || t == Some(8),
            "type {:?} used {}",
            t,
            used_len
        );
    }
    if status == 0 && t == Some(0) {
        // An IN fills every data byte.
        prop_assert_eq!(u64::from(used_len), writable_len);
    }
    if status == 0 && t == Some(8) {
        prop_assert_eq!(u64::from(used_len), (writable_len - 1).min(20) + 1);
    }

    // Data read into the guest is the disk's, when the buffers do not overlap.
    let disjoint = {
        let mut w = writable.clone();
        w.sort();
        w.windows(2).all(|p| {
            p[0].0
                .checked_add(u64::from(p[0].1))
                .is_some_and(|e| e <= p[1].0)
        })
    };
    if status == 0 && t == Some(0) && disjoint {
        let off = sector.unwrap() * 512;
        let mut got = Vec::new();
        for d in &writable {
            for i in 0..u64::from(d.1) {
                got.push(byte_at(&after, d.0 + i).unwrap());
            }
        }
        got.pop(); // the status byte
        prop_assert!(
            got[..] == orig[off as usize..off as usize + got.len()],
            "IN returned the wrong bytes"
        );
    }

    // 4. The backing store changes only as a valid OUT / DISCARD /
    //    WRITE_ZEROES of this chain would.
    if c.read_only || status != 0 || !matches!(t, Some(1) | Some(11) | Some(13)) {
        prop_assert!(
            disk == orig,
            "backing store changed (type {:?}, status {})",
            t,
            status
        );
        return Ok(());
    }
    match t {
        Some(1) => {
            let mut stream = Vec::new();
            for d in &readable {
                for i in 0..u64::from(d.1) {
                    stream.push(byte_at(&before, d.0 + i).unwrap());
                }
            }
            let off = (sector.unwrap() * 512) as usize;
            let data = &stream[16..];
            let mut want = orig.clone();
            want[off..off + data.len()].copy_from_slice(data);
            prop_assert!(disk == want, "OUT wrote something else");
        }
        _ => {
            prop_assert!(
                disk.iter().zip(&orig).all(|(d, o)| d == o || *d == 0),
                "DISCARD / WRITE_ZEROES wrote non-zero bytes"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn random_chain_is_contained(c in chain_case()) {
        check_chain(&c)?;
    }
}
