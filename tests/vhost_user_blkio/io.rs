//! The data path: bytes round-trip and land in the image, with every engine and cache mode.

use super::*;

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
