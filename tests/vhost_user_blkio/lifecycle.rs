//! Connections and the daemon's life: reconnects, read-only exports, command-line errors, SIGTERM.

use blkio::Blkio;

use super::*;

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
