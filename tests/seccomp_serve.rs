//! `vblk serve --seccomp kill` (the default) for real: every thread runs
//! under its filters (read back from /proc), a libblkio front end reads,
//! writes, flushes, discards and zeroes with both engines and both cache
//! modes, the counters are served, and SIGTERM still ends in exit 0. A
//! system call missing from a list would kill the daemon (SIGSYS) and fail
//! these tests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use blkio::ReqFlags;

mod common;
use common::blkio::{pattern, Client};
use common::{vblk, Daemon};

/// Thread name -> (seccomp mode, number of filters), from /proc.
fn threads(d: &Daemon) -> BTreeMap<String, Vec<(u32, u32)>> {
    let mut out: BTreeMap<String, Vec<(u32, u32)>> = BTreeMap::new();
    let dir = format!("/proc/{}/task", d.pid());
    for t in std::fs::read_dir(dir).unwrap().flatten() {
        let Ok(comm) = std::fs::read_to_string(t.path().join("comm")) else {
            continue; // the thread just exited
        };
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().parse::<u32>().unwrap())
                .unwrap_or(0)
        };
        out.entry(comm.trim().to_string())
            .or_default()
            .push((field("Seccomp:"), field("Seccomp_filters:")));
    }
    out
}

/// Wait until a thread named `name` shows up.
fn wait_thread(d: &Daemon, name: &str) -> BTreeMap<String, Vec<(u32, u32)>> {
    let t = Instant::now();
    loop {
        let th = threads(d);
        if th.contains_key(name) {
            return th;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no {name}: {th:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every thread named `name` has seccomp mode `mode` (2: filter) and
/// `filters` filters stacked.
fn expect(th: &BTreeMap<String, Vec<(u32, u32)>>, name: &str, mode: u32, filters: u32) {
    let v = th
        .get(name)
        .unwrap_or_else(|| panic!("no thread {name}: {th:?}"));
    for &(m, f) in v {
        assert_eq!((m, f), (mode, filters), "{name}: {th:?}");
    }
}

#[test]
fn vhost_user_under_kill_every_engine_and_cache_mode() {
    for (aio, cache) in [
        ("io-uring", "writeback"),
        ("io-uring", "none"),
        ("threads", "writeback"),
        ("threads", "none"),
    ] {
        let what = format!("--aio {aio} --cache {cache}");
        // /var/tmp: a disk file system (O_DIRECT needs one; tmpfs has none).
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let img = dir.path().join("disk.img");
        let mut d = Daemon::vhost_user(&img)
            .control()
            .args([
                "--size",
                "8M",
                "--num-queues",
                "2",
                "--aio",
                aio,
                "--cache",
                cache,
                "--seccomp",
                "kill",
            ])
            .start();
        // Before any front end: the main thread under main + vhost-user,
        // the control and signal threads under theirs.
        let th = threads(&d);
        expect(&th, "vblk", 2, 2);
        expect(&th, "vblk-control", 2, 1);
        expect(&th, "vblk-signals", 2, 1);

        let mut c = Client::with(&d.sock).queues(2).connect();
        // The queue threads, started for this front end, add their own.
        let th = wait_thread(&d, "vblk-queue-1");
        expect(&th, "vblk-queue-0", 2, 3);
        expect(&th, "vblk-queue-1", 2, 3);

        for i in 0..8u64 {
            assert_eq!(c.write(i * 65536, &pattern(i as u8, 8192)), 0, "{what}");
        }
        c.q.flush(0, ReqFlags::empty());
        assert_eq!(c.wait(), 0, "flush, {what}");
        c.q.discard(65536, 8192, 0, ReqFlags::empty());
        assert_eq!(c.wait(), 0, "discard, {what}");
        c.q.write_zeroes(2 * 65536, 4096, 0, ReqFlags::empty());
        assert_eq!(c.wait(), 0, "write zeroes, {what}");
        assert_eq!(c.read(0, 8192).unwrap(), pattern(0, 8192), "{what}");
        assert_eq!(c.read(65536, 8192).unwrap(), vec![0u8; 8192], "{what}");
        let mut z = pattern(2, 8192);
        z[..4096].fill(0);
        assert_eq!(c.read(2 * 65536, 8192).unwrap(), z, "{what}");
        for i in 3..8u64 {
            assert_eq!(
                c.read(i * 65536, 8192).unwrap(),
                pattern(i as u8, 8192),
                "{what}"
            );
        }
        let s = d.stats();
        assert!(s["queues"][0]["req_out"].as_u64().unwrap() >= 8, "{what}");

        // SIGTERM with the front end connected: exit 0, files removed.
        let st = d.stop();
        assert!(st.success(), "{what}: exit status {st}");
        assert!(!d.sock.exists(), "{what}");
        assert!(!d.ctl().exists(), "{what}");
        drop(c);
        let bytes = std::fs::read(&img).unwrap();
        assert_eq!(&bytes[7 * 65536..7 * 65536 + 8192], &pattern(7, 8192)[..]);
    }
}

#[test]
fn vhost_user_reconnect_under_kill() {
    let mut d = Daemon::vhost_user("null:4M").control().start();
    for round in 0..3u8 {
        let mut c = Client::connect(&d.sock);
        assert_eq!(c.write(4096, &pattern(round, 4096)), 0);
        drop(c);
    }
    let th = threads(&d);
    expect(&th, "vblk", 2, 2);
    assert!(d.stop().success());
}

#[test]
fn vfio_user_under_kill_filters_every_thread_and_exits_zero() {
    let mut d = Daemon::vfio_user("null:4M")
        .control()
        .args(["--num-queues", "2"])
        .start();
    let th = wait_thread(&d, "vfio-user");
    expect(&th, "vblk", 2, 1);
    expect(&th, "vfio-user", 2, 2);
    expect(&th, "vblk-control", 2, 1);
    expect(&th, "vblk-signals", 2, 1);
    // A client: the server makes the PCI function and its queue threads.
    let conn = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    let th = wait_thread(&d, "vblk-queue-1");
    expect(&th, "vblk-queue-0", 2, 3);
    expect(&th, "vblk-queue-1", 2, 3);
    drop(conn);
    let st = d.stop();
    assert!(st.success(), "exit status {st}");
    assert!(!d.sock.exists());
}

#[test]
fn off_installs_nothing_and_log_installs_the_same_filters() {
    let mut d = Daemon::vhost_user("null:4M")
        .control()
        .args(["--seccomp", "off"])
        .start();
    let th = threads(&d);
    for name in ["vblk", "vblk-control", "vblk-signals"] {
        expect(&th, name, 0, 0);
    }
    assert!(d.stop().success());

    let mut d = Daemon::vhost_user("null:4M")
        .control()
        .args(["--seccomp", "log"])
        .start();
    let mut c = Client::connect(&d.sock);
    assert_eq!(c.write(0, &pattern(1, 512)), 0);
    let th = wait_thread(&d, "vblk-queue-0");
    expect(&th, "vblk", 2, 2);
    expect(&th, "vblk-queue-0", 2, 3);
    assert!(d.stop().success());
}

#[test]
fn bad_mode_is_refused() {
    let out = vblk()
        .args([
            "serve",
            "--image",
            "null:1M",
            "--vhost-user",
            "/nonexistent/x",
            "--seccomp",
            "allow",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seccomp"));
}
