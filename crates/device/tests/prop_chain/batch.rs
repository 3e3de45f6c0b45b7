//! A batch of valid requests (`random_batch_matches_model`): disjoint
//! sectors, data scattered over random pieces, storage failures injected;
//! checked against a model of the disk.

use proptest::prelude::*;
use vblk_interrupt::InterruptKind;
use vblk_testkit::RecordingInterrupt;

use super::*;

#[derive(Debug, Clone)]
struct Req {
    kind: u8, // 0 IN, 1 OUT, 2 FLUSH, 3 DISCARD, 4 WRITE_ZEROES, 5 GET_ID
    /// First sector inside its 8-sector slot, and count (1..=8-first).
    first: u64,
    count: u64,
    /// Cut points splitting the data into pieces.
    cuts: Vec<u16>,
    fill: u8,
}

fn req() -> impl Strategy<Value = Req> {
    (
        prop_oneof![3 => Just(0u8), 3 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8), 1 => Just(4u8), 1 => Just(5u8)],
        prop_oneof![Just((0u64, 8u64)), (0u64..8).prop_flat_map(|f| (Just(f), 1..=8 - f))],
        proptest::collection::vec(any::<u16>(), 0..6),
        any::<u8>(),
    )
        .prop_map(|(kind, (first, count), cuts, fill)| Req {
            kind,
            first,
            count,
            cuts,
            fill,
        })
}

fn check_batch(
    reqs: &[Req],
    slots: &[usize],
    straddle: bool,
    failures: u64,
) -> Result<(), TestCaseError> {
    let mem = guest_memory();
    let mut ring = Ring::new(&mem, false);
    let (backend, dev) = device(false);
    let mut worker = dev.worker(0).unwrap();
    let irq = RecordingInterrupt::new();
    let mut want_disk = pristine();
    // Per request: its data pieces, its byte range on disk.
    let mut layout = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let off = (slots[i] as u64 * 8 + r.first) * 512;
        let n = (r.count * 512) as usize;
        let area = if straddle && i == 0 {
            REG - 0x900
        } else {
            0x4_8000 + 0x2000 * i as u64
        };
        let hdr = HDR + 16 * i as u64;
        let status = 0x7_0000 + i as u64;
        let t: u32 = [0, 1, 4, 11, 13, 8][usize::from(r.kind)];
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&t.to_le_bytes());
        h[8..16].copy_from_slice(&(off / 512).to_le_bytes());
        mem.write_slice(&h, GuestAddress(hdr)).unwrap();
        mem.write_obj(0xeeu8, GuestAddress(status)).unwrap();
        let data_len = match r.kind {
            0 | 1 => n,
            3 | 4 => 16,
            5 => 20,
            _ => 0,
        };
        let payload: Vec<u8> = match r.kind {
            1 => (0..n).map(|k| r.fill ^ (k as u8)).collect(),
            3 | 4 => {
                let mut s = [0u8; 16];
                s[0..8].copy_from_slice(&(off / 512).to_le_bytes());
                s[8..12].copy_from_slice(&(r.count as u32).to_le_bytes());
                s.to_vec()
            }
            _ => vec![0x5a; data_len],
        };
        // Split into pieces at the cut points, 32 bytes apart in guest RAM
        // (at most 4096 + 7 * 32 bytes: inside the request's 8 KiB area).
        let mut cuts: Vec<usize> = r
            .cuts
            .iter()
            .map(|&c| usize::from(c) % (data_len + 1))
            .collect();
        cuts.push(0);
        cuts.push(data_len);
        cuts.sort();
        cuts.dedup();
        let mut pieces = Vec::new();
        let mut at = area;
        for w in cuts.windows(2) {
            let len = w[1] - w[0];
            mem.write_slice(&payload[w[0]..w[1]], GuestAddress(at))
                .unwrap();
            pieces.push((at, len as u32));
            at += len as u64 + 32;
        }
        let write = matches!(r.kind, 0 | 5);
        let mut descs = vec![(hdr, 16, false)];
        descs.extend(pieces.iter().map(|&(a, l)| (a, l, write)));
        descs.push((status, 1, true));
        let tlen = ring.indirect(TABLE + 0x400 * i as u64, &descs);
        ring.desc(i as u16, TABLE + 0x400 * i as u64, tlen, F_INDIRECT, 0);
        ring.publish(i as u16);
        layout.push((off as usize, n, pieces, status, payload));
    }
    backend.fail_next(failures, libc::EIO);
    let done = worker.process(&mut ring.queue, &mem, &irq);
    prop_assert!(matches!(done, Ok(k) if k == reqs.len()), "{:?}", done);
    prop_assert_eq!(irq.take(), vec![InterruptKind::Queue(0)]);
    let mut used = ring.used_entries();
    used.sort();
    let mut errors = 0;
    for (i, r) in reqs.iter().enumerate() {
        let (off, n, pieces, status_at, payload) = &layout[i];
        let status: u8 = mem.read_obj(GuestAddress(*status_at)).unwrap();
        prop_assert!(
            status == 0 || status == 1,
            "request {} status {}",
            i,
            status
        );
        let used_len = used[i].1;
        prop_assert_eq!(used[i].0, i as u32);
        if status == 1 {
            errors += 1;
            prop_assert_eq!(used_len, 1);
            prop_assert!(r.kind != 5, "GET_ID never reaches storage");
            continue;
        }
        let read_back = || {
            let mut v = Vec::new();
            for &(a, l) in pieces {
                let mut b = vec![0u8; l as usize];
                mem.read_slice(&mut b, GuestAddress(a)).unwrap();
                v.extend(b);
            }
            v
        };
        match r.kind {
            0 => {
                prop_assert_eq!(used_len as usize, n + 1);
                prop_assert!(read_back() == want_disk[*off..off + n], "IN {} data", i);
            }
            1 => {
                prop_assert_eq!(used_len, 1);
                want_disk[*off..off + n].copy_from_slice(payload);
            }
            3 | 4 => {
                prop_assert_eq!(used_len, 1);
                want_disk[*off..off + n].fill(0);
            }
            5 => {
                prop_assert_eq!(used_len, 21);
                prop_assert!(read_back() == SERIAL[..], "GET_ID");
            }
            _ => prop_assert_eq!(used_len, 1),
        }
    }
    prop_assert!(
        errors <= failures,
        "{} errors from {} failures",
        errors,
        failures
    );
    prop_assert!(
        backend.snapshot() == want_disk,
        "backing store differs from the model"
    );
    prop_assert_eq!(counter(&dev, "chains_popped"), reqs.len() as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn random_batch_matches_model(
        (reqs, slots) in proptest::collection::vec(req(), 1..=QSIZE as usize)
            .prop_flat_map(|reqs| {
                let n = reqs.len();
                (Just(reqs), Just((0..SECTORS as usize / 8).collect::<Vec<_>>()).prop_shuffle().prop_map(move |s| s[..n].to_vec()))
            }),
        straddle: bool,
        failures in prop_oneof![3 => Just(0u64), 1 => 1u64..4],
    ) {
        check_batch(&reqs, &slots, straddle, failures)?;
    }
}
