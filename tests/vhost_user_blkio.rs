//! Host-side integration: a real vhost-user front end (libblkio's
//! `virtio-blk-vhost-user` driver, no VM) against `vblk serve`.

use std::mem::MaybeUninit;
use std::path::Path;
use std::time::Duration;

use blkio::{Blkio, Completion, ReqFlags};

mod common;
use common::blkio::{pattern, Client};
use common::{vblk, Daemon};

/// `vblk serve --image <image> --vhost-user ... --control ... <extra>`.
fn serve(image: &Path, extra: &[&str]) -> Daemon {
    Daemon::vhost_user(image).control().args(extra).start()
}

const SIZE: u64 = 16 << 20;

#[test]
fn write_read_flush_and_bytes_land_in_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let mut d = serve(&img, &["--size", "16M", "--num-queues", "2"]);
    let mut c = Client::connect(&d.sock);
    assert_eq!(c.b.get_u64("capacity").unwrap(), SIZE);
    assert_eq!(c.b.get_i32("max-queues").unwrap(), 2);
    let offsets = [0u64, 4096 * 100, SIZE / 2 + 512, SIZE - 8192, SIZE - 512];
    for (i, off) in offsets.iter().enumerate() {
        let len = if *off == SIZE - 512 { 512 } else { 4096 };
        assert_eq!(c.write(*off, &pattern(i as u8, len)), 0, "write at {off}");
    }
    for (i, off) in offsets.iter().enumerate() {
        let len = if *off == SIZE - 512 { 512 } else { 4096 };
        assert_eq!(
            c.read(*off, len).unwrap(),
            pattern(i as u8, len),
            "read back at {off}"
        );
    }
    assert_eq!(c.flush(), 0);
    // Past the end: must fail, and the device keeps serving.
    assert!(c.read(SIZE, 512).is_err(), "read past the end succeeded");
    assert!(
        c.read(SIZE - 512, 1024).is_err(),
        "read straddling the end succeeded"
    );
    assert!(
        c.write(SIZE, &[1u8; 512]) != 0,
        "write past the end succeeded"
    );
    assert_eq!(c.read(0, 512).unwrap(), pattern(0, 512));

    let s = d.stats();
    let q0 = &s["queues"][0];
    assert!(q0["req_out"].as_u64().unwrap() >= 5);
    assert!(q0["status_ioerr"].as_u64().unwrap() >= 3);
    assert_eq!(q0["req_flush"].as_u64().unwrap(), 1);
    assert!(q0["notify_eventfd"].as_u64().unwrap() > 0);
    drop(c);

    let st = d.stop();
    assert!(st.success(), "vblk exited with {st}");
    assert!(!d.sock.exists(), "socket not removed");
    let bytes = std::fs::read(&img).unwrap();
    assert_eq!(bytes.len() as u64, SIZE);
    for (i, off) in offsets.iter().enumerate() {
        let len = if *off == SIZE - 512 { 512 } else { 4096 };
        assert_eq!(
            &bytes[*off as usize..*off as usize + len],
            &pattern(i as u8, len)[..],
            "image bytes at {off}"
        );
    }
    assert!(bytes[4096..8192].iter().all(|&b| b == 0));
}

#[test]
fn reconnect_without_restart_and_readonly() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::write(&img, pattern(7, 1 << 20)).unwrap();
    let mut d = serve(&img, &[]);
    for round in 0..3 {
        let mut c = Client::connect(&d.sock);
        assert_eq!(
            c.read(4096, 4096).unwrap(),
            pattern(7, 1 << 20)[4096..8192].to_vec(),
            "round {round}"
        );
        assert_eq!(c.write(0, &pattern(round, 512)), 0);
        drop(c);
    }
    let s = d.stats();
    assert_eq!(s["device"]["connections"].as_u64().unwrap(), 3);
    assert!(d.stop().success());

    let mut d = serve(&img, &["--readonly"]);
    // libblkio sees VIRTIO_BLK_F_RO and refuses a read-write start.
    let mut b = Blkio::new("virtio-blk-vhost-user").unwrap();
    b.set_str("path", d.sock.to_str().unwrap()).unwrap();
    b.connect().unwrap();
    let err = b
        .start()
        .err()
        .expect("read-write start of a read-only export succeeded");
    assert!(err.message().contains("read-only"), "{}", err.message());
    drop(b);
    let mut c = Client::with(&d.sock).read_only(true).connect();
    let before = std::fs::read(&img).unwrap();
    assert_eq!(c.read(0, 512).unwrap(), pattern(2, 512));
    drop(c);
    assert!(d.stop().success());
    assert_eq!(
        std::fs::read(&img).unwrap(),
        before,
        "read-only image changed"
    );
}

#[test]
fn clear_errors_for_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = vblk().args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let img = dir.path().join("x.img");
    let sock = dir.path().join("s.sock");
    let (ok, err) = run(&[
        "serve",
        "--image",
        img.to_str().unwrap(),
        "--vhost-user",
        sock.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("x.img") && err.contains("--size"),
        "{err}"
    );
    let (ok, err) = run(&[
        "serve",
        "--image",
        img.to_str().unwrap(),
        "--size",
        "1000",
        "--vhost-user",
        sock.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("multiple of 512"), "{err}");
    let (ok, err) = run(&["serve", "--image", img.to_str().unwrap()]);
    assert!(!ok && err.contains("--vhost-user"), "{err}");
    let (ok, _) = run(&["serve", "--help"]);
    assert!(ok);
}

#[test]
fn two_queues_with_polling_and_a_batch_of_32() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let mut d = serve(
        &img,
        &[
            "--size",
            "16M",
            "--num-queues",
            "2",
            "--poll-us",
            "200",
            "--threads",
            "1",
        ],
    );
    let mut b = Blkio::new("virtio-blk-vhost-user").unwrap();
    b.set_str("path", d.sock.to_str().unwrap()).unwrap();
    b.connect().unwrap();
    b.set_i32("num-queues", 2).unwrap();
    b.set_i32("queue-size", 128).unwrap();
    let mut out = b.start().unwrap();
    let region = b.alloc_mem_region(64 * 4096).unwrap();
    b.map_mem_region(&region).unwrap();
    let base = region.addr as *mut u8;
    // SAFETY: the region is mapped and 64 * 4096 bytes long.
    let mem = unsafe { std::slice::from_raw_parts_mut(base, 64 * 4096) };
    for (i, chunk) in mem[..32 * 4096].chunks_mut(4096).enumerate() {
        chunk.copy_from_slice(&pattern(i as u8, 4096));
    }
    // 32 adjacent writes in one batch on queue 0 (merging candidates).
    let q0 = &mut out.queues[0];
    for i in 0..32usize {
        // SAFETY: pointer inside the mapped region.
        q0.write(
            (i * 4096) as u64,
            unsafe { base.add(i * 4096) },
            4096,
            i,
            ReqFlags::empty(),
        );
    }
    let mut c: Vec<MaybeUninit<Completion>> = (0..32).map(|_| MaybeUninit::uninit()).collect();
    let mut got = 0;
    while got < 32 {
        let mut t = Duration::from_secs(10);
        let n = q0.do_io(&mut c[got..], 1, Some(&mut t), None).unwrap();
        assert!(n > 0, "writes did not complete");
        for x in &c[got..got + n] {
            // SAFETY: do_io initialised n completions.
            assert_eq!(unsafe { x.assume_init_ref() }.ret, 0);
        }
        got += n;
    }
    // Read everything back through queue 1.
    let q1 = &mut out.queues[1];
    for i in 0..32usize {
        // SAFETY: pointer inside the mapped region.
        q1.read(
            (i * 4096) as u64,
            unsafe { base.add((32 + i) * 4096) },
            4096,
            i,
            ReqFlags::empty(),
        );
    }
    got = 0;
    while got < 32 {
        let mut t = Duration::from_secs(10);
        let n = q1.do_io(&mut c[got..], 1, Some(&mut t), None).unwrap();
        assert!(n > 0, "reads did not complete");
        got += n;
    }
    assert_eq!(&mem[32 * 4096..], &mem[..32 * 4096].to_vec()[..]);
    let s = d.stats();
    assert_eq!(s["queues"][0]["req_out"], 32, "{s}");
    assert_eq!(s["queues"][1]["req_in"], 32, "{s}");
    assert_eq!(s["queues"][0]["status_ok"], 32, "{s}");
    assert!(d.stop().success());
    let bytes = std::fs::read(&img).unwrap();
    for i in 0..32 {
        assert_eq!(
            &bytes[i * 4096..(i + 1) * 4096],
            &pattern(i as u8, 4096)[..]
        );
    }
}

#[test]
fn sigterm_with_a_connected_front_end_flushes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let mut d = serve(&img, &["--size", "4M"]);
    let mut c = Client::connect(&d.sock);
    assert_eq!(c.write(8192, &pattern(9, 4096)), 0);
    // The front end is still connected when the signal arrives.
    let st = d.stop();
    assert!(st.success(), "exit status {st}");
    assert!(!d.sock.exists());
    assert!(!d.ctl().exists());
    drop(c);
    assert_eq!(
        &std::fs::read(&img).unwrap()[8192..12288],
        &pattern(9, 4096)[..]
    );
}

#[test]
fn every_engine_and_cache_mode_round_trips() {
    // io_uring through the ring (O_DIRECT), io_uring with page-cache I/O in
    // the queue thread, and the synchronous engine.
    for args in [
        &["--aio", "io-uring", "--cache", "none"][..],
        &["--aio", "io-uring", "--cache", "writeback"][..],
        &["--aio", "threads", "--cache", "none"][..],
        &["--aio", "threads", "--cache", "writeback"][..],
    ] {
        // /var/tmp: a disk file system (O_DIRECT needs one; tmpfs has none).
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let img = dir.path().join("disk.img");
        let mut all = vec!["--size", "8M"];
        all.extend_from_slice(args);
        let mut d = serve(&img, &all);
        let mut c = Client::connect(&d.sock);
        for i in 0..16u64 {
            assert_eq!(c.write(i * 65536, &pattern(i as u8, 8192)), 0, "{args:?}");
        }
        assert_eq!(c.flush(), 0);
        for i in (0..16u64).rev() {
            assert_eq!(
                c.read(i * 65536, 8192).unwrap(),
                pattern(i as u8, 8192),
                "{args:?}"
            );
        }
        assert!(c.read(8 << 20, 4096).is_err());
        drop(c);
        assert!(d.stop().success());
        let bytes = std::fs::read(&img).unwrap();
        for i in 0..16usize {
            assert_eq!(
                &bytes[i * 65536..i * 65536 + 8192],
                &pattern(i as u8, 8192)[..],
                "{args:?}"
            );
        }
    }
}

#[test]
fn queues_of_512_and_1024_entries_are_accepted() {
    // qemu-storage-daemon accepts up to 1024; so does vblk by default.
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let mut d = serve(&img, &["--size", "4M"]);
    for qs in [512, 1024] {
        let mut b = Blkio::new("virtio-blk-vhost-user").unwrap();
        b.set_str("path", d.sock.to_str().unwrap()).unwrap();
        b.connect().unwrap();
        b.set_i32("queue-size", qs).unwrap();
        let mut out = b
            .start()
            .unwrap_or_else(|e| panic!("queue size {qs} refused: {}", e.message()));
        let region = b.alloc_mem_region(1 << 20).unwrap();
        b.map_mem_region(&region).unwrap();
        let base = region.addr as *mut u8;
        let q = &mut out.queues[0];
        // More requests than the old 256-entry limit, in one batch.
        let n = 300usize;
        for i in 0..n {
            // SAFETY: each 512-byte target lies inside the 1 MiB region.
            q.read(
                (i * 512) as u64,
                unsafe { base.add(i * 512) },
                512,
                i,
                ReqFlags::empty(),
            );
        }
        let mut c: Vec<MaybeUninit<Completion>> = (0..n).map(|_| MaybeUninit::uninit()).collect();
        let mut got = 0;
        while got < n {
            let mut t = Duration::from_secs(10);
            let k = q.do_io(&mut c[got..], 1, Some(&mut t), None).unwrap();
            assert!(k > 0, "queue size {qs}: reads did not complete");
            for x in &c[got..got + k] {
                // SAFETY: do_io initialised k completions.
                assert_eq!(unsafe { x.assume_init_ref() }.ret, 0);
            }
            got += k;
        }
    }
    assert!(d.stop().success());

    // An explicit smaller maximum is enforced.
    let mut d = serve(&img, &["--queue-size", "256"]);
    let mut b = Blkio::new("virtio-blk-vhost-user").unwrap();
    b.set_str("path", d.sock.to_str().unwrap()).unwrap();
    b.connect().unwrap();
    b.set_i32("queue-size", 512).unwrap();
    assert!(
        b.start().is_err(),
        "a 512-entry queue passed --queue-size 256"
    );
    drop(b);
    assert!(d.stop().success());
}

/// The counters and the per-queue latency histogram reach Prometheus two
/// ways: `vblk stats --prometheus` and `--metrics-listen` over HTTP (under
/// the default seccomp filter).
#[test]
fn metrics_in_the_prometheus_format_over_the_control_socket_and_http() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    // A free port: bind :0, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut d = serve(
        &img,
        &["--size", "16M", "--metrics-listen", &port.to_string()],
    );
    let mut c = Client::connect(&d.sock);
    for i in 0..10u64 {
        assert_eq!(c.write(i * 4096, &pattern(i as u8, 4096)), 0);
    }
    let out = vblk()
        .args(["stats", "--prometheus", "--socket"])
        .arg(d.ctl())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("# TYPE vblk_req_out_total counter"), "{text}");
    assert!(
        text.contains("vblk_req_out_total{queue=\"0\"} 10"),
        "{text}"
    );
    assert!(text.contains("# TYPE vblk_request_latency_seconds histogram"));
    // Ten requests timed, every one inside the +Inf bucket and the count.
    assert!(text.contains("vblk_request_latency_seconds_bucket{queue=\"0\",le=\"+Inf\"} 10"));
    assert!(text.contains("vblk_request_latency_seconds_count{queue=\"0\"} 10"));
    // The same over HTTP.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.0 200 OK\r\n"), "{reply}");
    assert!(reply.contains("Content-Type: text/plain; version=0.0.4"));
    assert!(reply.contains("vblk_request_latency_seconds_count{queue=\"0\"} 10"));
    drop(c);
    assert!(d.stop().success());
}
