//! Round trips of every operation, batches larger than the ring, and
//! requests with more iovecs than `readv`/`writev` accept.

use super::*;

#[test]
fn write_read_flush_discard_zeroes_round_trip() {
    for inline in [false, true] {
        let (_d, p, mut e) = engine_with(1 << 16, inline);
        let mut w = vec![0x5au8; 8192];
        let mut r1 = vec![0u8; 512];
        let mut r2 = vec![0u8; 7680];
        assert_eq!(
            one(&mut e, IoOp::Write, 4096, 8192, &mut [&mut w]).result,
            Ok(8192)
        );
        assert_eq!(one(&mut e, IoOp::Flush, 0, 0, &mut []).result, Ok(0));
        assert_eq!(
            one(&mut e, IoOp::Read, 4096, 8192, &mut [&mut r1, &mut r2]).result,
            Ok(8192)
        );
        assert!(r1.iter().chain(r2.iter()).all(|&b| b == 0x5a));
        assert_eq!(
            one(&mut e, IoOp::WriteZeroes, 4096, 1024, &mut []).result,
            Ok(1024)
        );
        assert_eq!(
            one(&mut e, IoOp::Discard, 8192, 4096, &mut []).result,
            Ok(4096)
        );
        let d = std::fs::read(&p).unwrap();
        assert_eq!(d.len(), 1 << 16, "KEEP_SIZE");
        assert!(d[4096..5120].iter().all(|&b| b == 0), "zeroed");
        assert!(d[5120..8192].iter().all(|&b| b == 0x5a), "untouched");
        assert!(
            d[8192..12288].iter().all(|&b| b == 0),
            "punched hole reads zeroes"
        );
        assert_eq!(e.in_flight(), 0);
        if inline {
            assert!(e.inline_done >= 2, "the page-cache path was not taken");
        }
    }
}

#[test]
fn a_batch_of_64_mixed_requests_larger_than_the_ring() {
    let (_d, p, mut e) = engine(1 << 20);
    // Even slots write a pattern, odd slots read what an earlier
    // (separate) batch wrote, plus a flush, a discard and write-zeroes.
    let mut seed: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8 + 100; 4096]).collect();
    for (i, b) in seed.iter_mut().enumerate() {
        push(
            &mut e,
            IoOp::Write,
            (64 + i as u64) * 4096,
            4096,
            &mut [b],
            i as u64,
        );
    }
    e.submit().unwrap();
    let mut out = vec![];
    e.reap(&mut out, 64).unwrap();
    assert!(out.iter().all(|c| c.result == Ok(4096)), "{out:?}");

    let mut bufs: Vec<Vec<u8>> = (0..61).map(|i| vec![i as u8 + 1; 4096]).collect();
    for (i, b) in bufs.iter_mut().enumerate() {
        if i % 2 == 0 {
            push(
                &mut e,
                IoOp::Write,
                i as u64 * 4096,
                4096,
                &mut [b],
                i as u64,
            );
        } else {
            push(
                &mut e,
                IoOp::Read,
                (64 + i as u64) * 4096,
                4096,
                &mut [b],
                i as u64,
            );
        }
    }
    push(&mut e, IoOp::Flush, 0, 0, &mut [], 61);
    push(&mut e, IoOp::Discard, 200 * 4096, 8192, &mut [], 62);
    push(&mut e, IoOp::WriteZeroes, 100 * 4096, 4096, &mut [], 63);
    assert_eq!(e.in_flight(), 64);
    e.submit().unwrap();
    out.clear();
    e.reap(&mut out, 64).unwrap();
    assert_eq!(out.len(), 64);
    assert_eq!(e.in_flight(), 0);
    out.sort_by_key(|c| c.token);
    for (i, c) in out.iter().enumerate() {
        assert_eq!(c.token, i as u64, "every request exactly once");
        let want = match i {
            61 => 0,
            62 => 8192,
            _ => 4096,
        };
        assert_eq!(c.result, Ok(want), "request {i}");
    }
    let data = std::fs::read(&p).unwrap();
    for (i, b) in bufs.iter().enumerate() {
        if i % 2 == 0 {
            assert!(data[i * 4096..(i + 1) * 4096]
                .iter()
                .all(|&x| x == i as u8 + 1));
        } else {
            assert!(b.iter().all(|&x| x == i as u8 + 100), "read {i}");
        }
    }
    assert!(data[100 * 4096..101 * 4096].iter().all(|&x| x == 0));
}

#[test]
fn nothing_to_submit_is_fine() {
    let (_d, _p, mut e) = engine(4096);
    e.submit().unwrap();
    let mut out = vec![];
    e.reap(&mut out, 1).unwrap();
    assert!(out.is_empty());
}

#[test]
fn more_iovecs_than_iov_max_round_trip() {
    // 2000 x 512 bytes fits one bounce buffer; 3000 x 512 is executed
    // synchronously. Both exceed the 1024 iovecs readv/writev accept.
    for inline in [false, true] {
        for count in [2000usize, 3000] {
            let (_d, p, mut e) = engine_with(4 << 20, inline);
            let len = count * 512;
            let want = pattern(len, 0x33);
            let mut w = want.clone();
            let mut chunks: Vec<&mut [u8]> = w.chunks_mut(512).collect();
            let c = one(&mut e, IoOp::Write, 4096, len as u64, &mut chunks);
            assert_eq!(c.result, Ok(len as u64), "write {count} iovecs");
            assert!(std::fs::read(&p).unwrap()[4096..4096 + len] == want[..]);
            let mut r = vec![0u8; len];
            let mut chunks: Vec<&mut [u8]> = r.chunks_mut(512).collect();
            let c = one(&mut e, IoOp::Read, 4096, len as u64, &mut chunks);
            assert_eq!(c.result, Ok(len as u64), "read {count} iovecs");
            assert!(r == want);
            assert_eq!(e.bounced, 2);
        }
    }
}
