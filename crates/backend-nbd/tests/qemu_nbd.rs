//! The NBD backend against a real qemu-nbd, over a UNIX socket and TCP:
//! reads, writes (checked in the server's backing file), flush, trim,
//! write-zeroes, many requests in flight, and a server killed and
//! restarted under load.

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use common::*;
use vblk_backend::{Backend, IoOp, IoRequest};
use vblk_backend_nbd::{NbdBackend, NbdOptions};

const SIZE: u64 = 16 << 20;

fn image(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("disk.raw");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(SIZE).unwrap();
    p
}

fn file_bytes(p: &std::path::Path, off: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(p).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact(&mut b).unwrap();
    b
}

fn exercise(uri: &str, img: &std::path::Path) {
    let b = NbdBackend::open(uri, NbdOptions::default()).unwrap();
    assert_eq!(b.capacity(), SIZE);
    assert!(!b.read_only());
    assert!(b.supports_discard(), "qemu-nbd can trim");
    assert!(b.info().structured);
    let mut e = b.engine().unwrap();
    assert!(e.completion_fd().is_some());
    // A write split over two iovecs, read back into three.
    let data = pattern(7, 3 * 4096);
    let (mut x, mut y) = (data[..100].to_vec(), data[100..].to_vec());
    let c = one(
        &mut *e,
        IoOp::Write,
        8192,
        data.len() as u64,
        &mut [&mut x, &mut y],
    );
    assert_eq!(c.result, Ok(data.len() as u64));
    assert_eq!(one(&mut *e, IoOp::Flush, 0, 0, &mut []).result, Ok(0));
    assert_eq!(file_bytes(img, 8192, data.len()), data);
    let mut r = vec![vec![0u8; 4096]; 3];
    let [a, bb, cc] = &mut r[..] else {
        unreachable!()
    };
    let c = one(&mut *e, IoOp::Read, 8192, 3 * 4096, &mut [a, bb, cc]);
    assert_eq!(c.result, Ok(3 * 4096));
    assert_eq!(r.concat(), data);
    // Write-zeroes and discard read back as zeroes (qemu-nbd raw).
    assert_eq!(
        one(&mut *e, IoOp::WriteZeroes, 8192, 4096, &mut []).result,
        Ok(4096)
    );
    assert_eq!(
        one(&mut *e, IoOp::Discard, 12288, 4096, &mut []).result,
        Ok(4096)
    );
    let mut r = vec![0u8; 3 * 4096];
    one(&mut *e, IoOp::Read, 8192, r.len() as u64, &mut [&mut r]);
    assert!(r[..4096].iter().all(|&b| b == 0));
    assert_eq!(&r[8192..], &data[8192..]);
    // A read past the end fails without reaching the server.
    assert_eq!(
        one(
            &mut *e,
            IoOp::Read,
            SIZE - 512,
            1024,
            &mut [&mut [0u8; 1024]]
        )
        .result,
        Err(libc::EIO)
    );
    // Many in flight: 64 writes, then 64 reads, out of order.
    let mut bufs: Vec<Vec<u8>> = (0..64).map(|i| pattern(i as u8, 4096)).collect();
    for (i, buf) in bufs.iter_mut().enumerate() {
        // SAFETY: the buffers live until every request is reaped below.
        unsafe {
            e.push(IoRequest {
                op: IoOp::Write,
                offset: (i as u64) * 65536,
                len: 4096,
                iovecs: vec![iov(buf)],
                token: i as u64,
                fua: false,
            })
        };
    }
    e.submit().unwrap();
    let mut out = vec![];
    while out.len() < 64 {
        let want = 64 - out.len();
        e.reap(&mut out, want).unwrap();
    }
    assert!(out.iter().all(|c| c.result == Ok(4096)));
    let mut back: Vec<Vec<u8>> = vec![vec![0u8; 4096]; 64];
    for (i, buf) in back.iter_mut().enumerate() {
        // SAFETY: as above.
        unsafe {
            e.push(IoRequest {
                op: IoOp::Read,
                offset: (i as u64) * 65536,
                len: 4096,
                iovecs: vec![iov(buf)],
                token: 100 + i as u64,
                fua: false,
            })
        };
    }
    e.submit().unwrap();
    let mut out = vec![];
    while out.len() < 64 {
        let want = 64 - out.len();
        e.reap(&mut out, want).unwrap();
    }
    let mut tokens: Vec<u64> = out.iter().map(|c| c.token).collect();
    tokens.sort();
    assert_eq!(tokens, (100..164).collect::<Vec<_>>());
    assert_eq!(back, bufs);
    assert_eq!(e.in_flight(), 0);
    drop(e);
    b.flush().unwrap();
}

#[test]
fn qemu_nbd_over_unix_socket() {
    if !have("qemu-nbd") {
        eprintln!("SKIP: no qemu-nbd");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let q = QemuNbd::start(
        &img,
        "raw",
        "disk",
        Listen::Unix(d.path().join("nbd.sock")),
        &[],
    );
    exercise(&q.uri(), &img);
}

#[test]
fn qemu_nbd_over_tcp() {
    if !have("qemu-nbd") {
        eprintln!("SKIP: no qemu-nbd");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let q = QemuNbd::start(&img, "raw", "", Listen::Tcp(free_port()), &[]);
    exercise(&q.uri(), &img);
}

#[test]
fn a_read_only_export_is_read_only() {
    if !have("qemu-nbd") {
        eprintln!("SKIP: no qemu-nbd");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let q = QemuNbd::start(
        &img,
        "raw",
        "ro",
        Listen::Unix(d.path().join("s")),
        &["--read-only"],
    );
    let b = NbdBackend::open(&q.uri(), NbdOptions::default()).unwrap();
    assert!(b.read_only());
    assert!(!b.supports_discard());
    let mut e = b.engine().unwrap();
    assert_eq!(
        one(&mut *e, IoOp::Write, 0, 512, &mut [&mut [1u8; 512]]).result,
        Err(libc::EROFS)
    );
    assert_eq!(
        one(&mut *e, IoOp::Read, 0, 512, &mut [&mut [1u8; 512]]).result,
        Ok(512)
    );
}

#[test]
fn an_unknown_export_is_an_error() {
    if !have("qemu-nbd") {
        eprintln!("SKIP: no qemu-nbd");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let q = QemuNbd::start(&img, "raw", "disk", Listen::Unix(d.path().join("s")), &[]);
    let uri = q.listen.uri("nope");
    let e = NbdBackend::open(&uri, NbdOptions::default())
        .err()
        .expect("must fail");
    assert!(
        e.to_string().contains("unknown export") || e.to_string().contains("nope"),
        "{e}"
    );
}

/// The server is killed with requests in flight and comes back within the
/// timeout: every request completes successfully, and every acknowledged
/// write is in the image.
#[test]
fn a_restarted_server_loses_nothing() {
    if !have("qemu-nbd") {
        eprintln!("SKIP: no qemu-nbd");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let mut q = QemuNbd::start(&img, "raw", "disk", Listen::Tcp(free_port()), &[]);
    let b = NbdBackend::open(
        &q.uri(),
        NbdOptions {
            reconnect_timeout: Duration::from_secs(20),
            ..NbdOptions::default()
        },
    )
    .unwrap();
    let mut e = b.engine().unwrap();
    let mut bufs: Vec<Vec<u8>> = (0..256).map(|i| pattern(i as u8, 65536)).collect();
    let mut done = 0;
    let mut out = vec![];
    for (round, chunk) in bufs.chunks_mut(32).enumerate() {
        for (i, buf) in chunk.iter_mut().enumerate() {
            let n = round * 32 + i;
            // SAFETY: the buffers outlive every request (all reaped below).
            unsafe {
                e.push(IoRequest {
                    op: IoOp::Write,
                    offset: n as u64 * 65536,
                    len: 65536,
                    iovecs: vec![iov(buf)],
                    token: n as u64,
                    fua: false,
                })
            };
        }
        e.submit().unwrap();
        if round == 3 {
            q.kill();
            std::thread::sleep(Duration::from_millis(500));
            q.restart();
        }
        e.reap(&mut out, 1).unwrap();
    }
    while out.len() < 256 {
        let want = 256 - out.len();
        e.reap(&mut out, want).unwrap();
    }
    for c in &out {
        assert_eq!(c.result, Ok(65536), "request {}", c.token);
        done += 1;
    }
    assert_eq!(done, 256);
    assert_eq!(one(&mut *e, IoOp::Flush, 0, 0, &mut []).result, Ok(0));
    for (n, buf) in bufs.iter().enumerate() {
        assert_eq!(&file_bytes(&img, n as u64 * 65536, 65536), buf, "block {n}");
    }
}

/// The server stays away longer than the timeout: requests fail with EIO
/// (no hang), and the engine can still be dropped.
#[test]
fn a_server_gone_for_good_fails_requests_with_eio() {
    if !have("qemu-nbd") {
        eprintln!("SKIP: no qemu-nbd");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let mut q = QemuNbd::start(&img, "raw", "disk", Listen::Unix(d.path().join("s")), &[]);
    let b = NbdBackend::open(
        &q.uri(),
        NbdOptions {
            reconnect_timeout: Duration::from_millis(800),
            ..NbdOptions::default()
        },
    )
    .unwrap();
    let mut e = b.engine().unwrap();
    q.kill();
    let t = std::time::Instant::now();
    let c = one(&mut *e, IoOp::Read, 0, 4096, &mut [&mut [0u8; 4096]]);
    assert_eq!(c.result, Err(libc::EIO));
    assert!(t.elapsed() < Duration::from_secs(10));
    // Later requests fail at once.
    let t = std::time::Instant::now();
    let c = one(&mut *e, IoOp::Write, 0, 4096, &mut [&mut [0u8; 4096]]);
    assert_eq!(c.result, Err(libc::EIO));
    assert!(t.elapsed() < Duration::from_millis(500));
    // And it recovers when the server is back.
    q.restart();
    let t = std::time::Instant::now();
    loop {
        let c = one(&mut *e, IoOp::Read, 0, 4096, &mut [&mut [0u8; 4096]]);
        if c.result == Ok(4096) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no recovery");
        std::thread::sleep(Duration::from_millis(100));
    }
}
