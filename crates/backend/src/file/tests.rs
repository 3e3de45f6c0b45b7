//! Tests of the file backend: both engines, both cache modes, errors that
//! name the file, partly cached ranges, unaligned `O_DIRECT` buffers.

use super::*;
use crate::{IoCompletion, IoOp};

fn iov(buf: &mut [u8]) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut _,
        iov_len: buf.len(),
    }
}

#[test]
fn create_write_read_flush() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.img");
    let b = FileBackend::open(
        &p,
        FileOptions {
            create_size: Some(1 << 20),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(b.capacity(), 1 << 20);
    let mut e = b.engine().unwrap();
    let mut a = vec![0xabu8; 1024];
    let mut c = vec![0xcdu8; 512];
    // SAFETY: buffers outlive the reap below.
    unsafe {
        e.push(IoRequest {
            op: IoOp::Write,
            offset: 4096,
            len: 1536,
            iovecs: vec![iov(&mut a), iov(&mut c)],
            token: 7,
            fua: false,
        });
        e.push(IoRequest {
            op: IoOp::Flush,
            offset: 0,
            len: 0,
            iovecs: vec![],
            token: 8,
            fua: false,
        });
    }
    e.submit().unwrap();
    let mut out: Vec<IoCompletion> = vec![];
    e.reap(&mut out, 2).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].result, Ok(1536));
    let data = std::fs::read(&p).unwrap();
    assert!(data[4096..5120].iter().all(|&x| x == 0xab));
    assert!(data[5120..5632].iter().all(|&x| x == 0xcd));
    assert!(data[..4096].iter().all(|&x| x == 0));
}

#[test]
fn errors_name_the_file() {
    let err = FileBackend::open(Path::new("/nonexistent/x.img"), FileOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/x.img"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let err = FileBackend::open(
        &dir.path().join("y.img"),
        FileOptions {
            create_size: Some(1000),
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("multiple of 512"), "{err}");
}

#[test]
fn io_uring_with_o_direct_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("direct.img");
    let b = match FileBackend::open(
        &p,
        FileOptions {
            create_size: Some(1 << 20),
            cache: CacheMode::None,
            io_uring: true,
            ..Default::default()
        },
    ) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("O_DIRECT unsupported here ({e}); skipped");
            return;
        }
    };
    let mut e = b.engine().unwrap();
    assert_eq!(e.name(), "io_uring");
    let layout = std::alloc::Layout::from_size_align(4096, 512).unwrap();
    // SAFETY: non-zero layout; freed below with the same layout.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!ptr.is_null());
    // SAFETY: `ptr` owns 4096 zeroed bytes until the dealloc below.
    let buf = unsafe { std::slice::from_raw_parts_mut(ptr, 4096) };
    buf.fill(0x3c);
    let c = crate::testutil::one(&mut *e, IoOp::Write, 8192, 4096, &mut [&mut *buf]);
    assert_eq!(c.result, Ok(4096));
    buf.fill(0);
    let c = crate::testutil::one(&mut *e, IoOp::Read, 8192, 4096, &mut [&mut *buf]);
    assert_eq!(c.result, Ok(4096));
    assert!(buf.iter().all(|&x| x == 0x3c));
    let c = crate::testutil::one(&mut *e, IoOp::Flush, 0, 0, &mut []);
    assert_eq!(c.result, Ok(0));
    // SAFETY: allocated above with this layout; `buf` is not used after.
    unsafe { std::alloc::dealloc(ptr, layout) };
}

#[test]
fn read_past_eof_is_eio_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.img");
    std::fs::write(&p, vec![1u8; 1024]).unwrap();
    let b = FileBackend::open(&p, FileOptions::default()).unwrap();
    let mut e = b.engine().unwrap();
    let mut buf = vec![0u8; 512];
    let c = crate::testutil::one(&mut *e, IoOp::Read, 1024, 512, &mut [&mut buf]);
    assert_eq!(c.result, Err(libc::EIO));
}

/// Every engine and cache mode: a 64 KiB read and a 64 KiB write over a
/// range whose middle 16 KiB are not in the page cache complete with
/// `Ok(65536)` and move exactly the right bytes.
#[test]
fn partly_cached_64k_read_and_write_every_engine_and_cache_mode() {
    for io_uring in [false, true] {
        for cache in [CacheMode::Writeback, CacheMode::None] {
            let what = format!("io_uring={io_uring} cache={cache:?}");
            let dir = crate::testutil::real_fs_dir();
            let p = dir.path().join("pc.img");
            let init: Vec<u8> = (0..1usize << 18).map(|i| (i % 253) as u8).collect();
            std::fs::write(&p, &init).unwrap();
            let b = match FileBackend::open(
                &p,
                FileOptions {
                    cache,
                    io_uring,
                    ..Default::default()
                },
            ) {
                Ok(b) => b,
                Err(e) if cache == CacheMode::None => {
                    eprintln!("{what}: O_DIRECT unsupported here ({e}); skipped");
                    continue;
                }
                Err(e) => panic!("{what}: {e}"),
            };
            let mut e = b.engine().unwrap();
            // Aligned buffers, so O_DIRECT takes the direct path.
            let mut buf = crate::AlignedBuf::new(65536, 4096).unwrap();
            crate::testutil::partly_cache(&p, 65536);
            let c =
                crate::testutil::one(&mut *e, IoOp::Read, 65536, 65536, &mut [buf.as_mut_slice()]);
            assert_eq!(c.result, Ok(65536), "{what}: read");
            assert!(buf.as_slice() == &init[65536..131072], "{what}: read bytes");

            let new: Vec<u8> = (0..65536usize).map(|i| (i % 241) as u8 ^ 0xa5).collect();
            buf.as_mut_slice().copy_from_slice(&new);
            crate::testutil::partly_cache(&p, 65536);
            let c = crate::testutil::one(
                &mut *e,
                IoOp::Write,
                65536,
                65536,
                &mut [buf.as_mut_slice()],
            );
            assert_eq!(c.result, Ok(65536), "{what}: write");
            let d = std::fs::read(&p).unwrap();
            assert!(d[65536..131072] == new[..], "{what}: written bytes");
            assert!(d[..65536] == init[..65536] && d[131072..] == init[131072..]);
            assert_eq!(e.in_flight(), 0);
        }
    }
}

#[test]
fn block_sizes_are_probed_and_sane() {
    let dir = crate::testutil::real_fs_dir();
    let p = dir.path().join("bs.img");
    for cache in [CacheMode::Writeback, CacheMode::None] {
        let b = match FileBackend::open(
            &p,
            FileOptions {
                create_size: Some(1 << 20),
                cache,
                ..Default::default()
            },
        ) {
            Ok(b) => b,
            Err(_) => continue,
        };
        let bs = b.block_sizes();
        for v in [bs.logical, bs.physical, bs.dio_offset_align] {
            assert!(v.is_power_of_two() && v >= 512, "{bs:?}");
        }
        assert!(bs.dio_mem_align.is_power_of_two(), "{bs:?}");
        assert!(bs.physical >= bs.logical, "{bs:?}");
        if cache == CacheMode::Writeback {
            assert_eq!(bs.logical, 512, "buffered files address 512-byte sectors");
        } else {
            assert_eq!(bs.logical, bs.dio_offset_align.max(512), "{bs:?}");
        }
    }
}

/// `--cache none` with guest buffers at odd addresses and odd lengths:
/// both engines bounce instead of failing with `EINVAL`.
#[test]
fn cache_none_unaligned_guest_buffers_round_trip_on_both_engines() {
    for io_uring in [false, true] {
        let dir = crate::testutil::real_fs_dir();
        let p = dir.path().join("ua.img");
        let b = match FileBackend::open(
            &p,
            FileOptions {
                create_size: Some(1 << 20),
                cache: CacheMode::None,
                io_uring,
                ..Default::default()
            },
        ) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("O_DIRECT unsupported here ({e}); skipped");
                return;
            }
        };
        let mut e = b.engine().unwrap();
        // 1 byte past an allocation: not even 2-byte aligned.
        let mut backing = vec![0u8; 8192 + 1];
        let data: Vec<u8> = (0..5120usize).map(|i| (i % 199) as u8 + 1).collect();
        backing[1..5121].copy_from_slice(&data);
        let (x, y) = backing[1..5121].split_at_mut(1536);
        let c = crate::testutil::one(&mut *e, IoOp::Write, 3 * 512, 5120, &mut [x, y]);
        assert_eq!(c.result, Ok(5120), "io_uring={io_uring}: write");
        let mut back = vec![0u8; 5121];
        let c = crate::testutil::one(&mut *e, IoOp::Read, 3 * 512, 5120, &mut [&mut back[1..]]);
        assert_eq!(c.result, Ok(5120), "io_uring={io_uring}: read");
        assert!(back[1..] == data[..]);
        let d = std::fs::read(&p).unwrap();
        assert!(d[1536..1536 + 5120] == data[..]);
        assert!(d[..1536].iter().chain(&d[6656..]).all(|&v| v == 0));
    }
}
