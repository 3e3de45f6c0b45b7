//! `O_DIRECT`: aligned requests through the ring, unaligned ones bounced
//! or read-modify-written.

use super::*;

#[test]
fn o_direct_round_trip() {
    let dir = crate::testutil::real_fs_dir();
    let p = dir.path().join("direct.img");
    std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
    use std::os::unix::fs::OpenOptionsExt;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&p)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "O_DIRECT not supported on {}: {e}; skipped",
                dir.path().display()
            );
            return;
        }
    };
    let mut e = UringEngine::new(Arc::new(f), 8, false).unwrap();
    let mut w = Aligned::new(8192, 0xc3);
    let mut r = Aligned::new(8192, 0);
    // 512-aligned like guest buffers: two iovecs of 512 and 7680 bytes.
    let (w1, w2) = w.buf().split_at_mut(512);
    let res = one(&mut e, IoOp::Write, 512 * 9, 8192, &mut [w1, w2]).result;
    assert_eq!(res, Ok(8192));
    assert_eq!(one(&mut e, IoOp::Flush, 0, 0, &mut []).result, Ok(0));
    let res = one(&mut e, IoOp::Read, 512 * 9, 8192, &mut [r.buf()]).result;
    assert_eq!(res, Ok(8192));
    assert!(r.buf().iter().all(|&b| b == 0xc3));
    // Misaligned O_DIRECT (odd offset, length and buffer) is bounced,
    // not refused.
    let mut odd = vec![0u8; 100];
    let res = one(&mut e, IoOp::Read, 4608 + 3, 100, &mut [&mut odd]).result;
    assert_eq!(res, Ok(100));
    assert!(odd.iter().all(|&b| b == 0xc3));
    assert_eq!(e.bounced, 1);
    assert_eq!(e.inline_done, 0, "O_DIRECT always goes through the ring");
    let d = std::fs::read(&p).unwrap();
    assert!(d[4608..4608 + 8192].iter().all(|&b| b == 0xc3));
}

#[test]
fn o_direct_bounces_unaligned_buffers_and_read_modify_writes_partial_blocks() {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let dir = crate::testutil::real_fs_dir();
    let p = dir.path().join("rmw.img");
    let init = pattern(1 << 16, 0x77);
    std::fs::write(&p, &init).unwrap();
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&p)
    else {
        eprintln!("O_DIRECT unsupported here; skipped");
        return;
    };
    let f = Arc::new(f);
    // Stricter than this file system needs (still valid for O_DIRECT),
    // so 512-byte guest I/O must be read-modify-write.
    let sync = SyncFile {
        fd: f.as_raw_fd(),
        direct: Some(Direct::new(512, 4096)),
        rmw: Default::default(),
    };
    let mut e = UringEngine::with_sync(f.clone(), sync, 8, true).unwrap();
    let mut expect = init.clone();

    // Aligned offset and length, buffer 8 bytes off alignment: bounced
    // through the ring.
    let mut raw = Aligned::new(8192 + 8, 0);
    let buf = &mut raw.buf()[8..8 + 8192];
    buf.copy_from_slice(&pattern(8192, 0x01));
    assert_eq!(
        one(&mut e, IoOp::Write, 8192, 8192, &mut [buf]).result,
        Ok(8192)
    );
    expect[8192..16384].copy_from_slice(&pattern(8192, 0x01));
    // 512 bytes at 512 + 1024 bytes at 5120 in 3 iovecs: partial blocks.
    let mut a = vec![0xa1u8; 512];
    let mut b = vec![0xb2u8; 1000];
    let mut c = vec![0xc3u8; 24];
    assert_eq!(
        one(
            &mut e,
            IoOp::Write,
            512,
            1536,
            &mut [&mut a, &mut b, &mut c]
        )
        .result,
        Ok(1536)
    );
    expect[512..1024].fill(0xa1);
    expect[1024..2024].fill(0xb2);
    expect[2024..2048].fill(0xc3);
    // An odd offset and length read back through a misaligned buffer.
    let mut odd = vec![0u8; 3001];
    assert_eq!(
        one(&mut e, IoOp::Read, 333, 3001, &mut [&mut odd]).result,
        Ok(3001)
    );
    assert!(odd[..] == expect[333..3334]);
    let mut all = vec![0u8; 1 << 16];
    f.read_exact_at(&mut all, 0).unwrap_or_else(|_| {
        // O_DIRECT pread with a Vec may be refused: read buffered.
        all = std::fs::read(&p).unwrap();
    });
    assert!(all == expect, "neighbouring bytes preserved");
    assert!(e.bounced >= 3);
    // Write-zeroes fallback under O_DIRECT at an unaligned range.
    assert_eq!(
        exec_sync(
            &e.sync,
            &IoRequest {
                op: IoOp::Write,
                offset: 0,
                len: 0,
                iovecs: vec![],
                token: 0,
                fua: false,
            }
        ),
        Ok(0)
    );
    assert_eq!(
        crate::sync_io::write_zeroes_slow(&e.sync, 1536, 5000),
        Ok(5000)
    );
    expect[1536..6536].fill(0);
    assert!(
        std::fs::read(&p).unwrap() == expect,
        "zeroes written through O_DIRECT"
    );
}
