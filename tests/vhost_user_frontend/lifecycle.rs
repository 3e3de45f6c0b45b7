//! Connections and shutdown: leaked descriptors, the socket path, a stalled front end.

use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

use super::common::vblk;
use super::*;

/// (st_dev, st_ino) of `p`, if it exists.
fn inode(p: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(p)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

#[test]
fn fifty_connections_leave_no_descriptor_behind() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (mut daemon, sock) = start_with_control(dir.path(), &img, &["--num-queues", "2"]);
    let ctl = daemon.ctl().to_path_buf();
    let session = || {
        let mut g = Guest::connect_with(&sock, Setup::acked(), |_| {});
        assert_eq!(get_id(&mut g), 21);
        drop(g);
    };
    let connections = || -> u64 {
        common::stats(&ctl)["device"]["disconnects"]
            .as_u64()
            .unwrap()
    };
    let settle = |n: u64| {
        let t = Instant::now();
        while connections() < n {
            assert!(t.elapsed() < Duration::from_secs(10), "disconnect not seen");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // Warm up (lazily opened descriptors, thread-local state), then count.
    session();
    session();
    settle(2);
    let before = daemon.open_fds();
    for _ in 0..50 {
        session();
    }
    settle(52);
    let after = daemon.open_fds();
    eprintln!("daemon fds: {before} after 2 connections, {after} after 52");
    assert_eq!(
        after, before,
        "fds: {before} before 50 connections, {after} after"
    );
    assert!(daemon.alive());
}

#[test]
fn a_socket_path_that_is_not_a_socket_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    // The issue-9 typo: --vhost-user names the image itself.
    let out = vblk()
        .args(["serve", "--image"])
        .arg(&img)
        .arg("--vhost-user")
        .arg(&img)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(
        std::fs::read(&img).unwrap(),
        vec![0x5a; 1 << 20],
        "image damaged"
    );
    // A directory is refused the same way.
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let out = vblk()
        .args(["serve", "--image"])
        .arg(&img)
        .arg("--vhost-user")
        .arg(&sub)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(sub.is_dir());
}

#[test]
fn a_live_socket_is_refused_and_a_stale_one_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (mut first, sock) = start(dir.path(), &img);
    let id = inode(&sock);
    let out = vblk()
        .args(["serve", "--image"])
        .arg(&img)
        .arg("--vhost-user")
        .arg(&sock)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("another process is serving"), "{err}");
    assert_eq!(inode(&sock), id, "the live socket was replaced");
    assert!(first.alive());
    let mut g = Guest::connect(&sock);
    assert_eq!(get_id(&mut g), 21, "the first daemon lost its socket");
    drop(g);
    assert!(first.stop().success());
    assert!(!sock.exists(), "socket left behind");

    // A stale socket: the file of a listener that is gone.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let (mut second, sock) = start(dir.path(), &img);
    let mut g = Guest::connect(&sock);
    assert_eq!(get_id(&mut g), 21);
    drop(g);
    assert!(second.stop().success());
}

#[test]
fn shutdown_does_not_go_through_the_socket_path() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (mut d, sock) = start(dir.path(), &img);
    // Someone else takes the path (an operator's rm + a second daemon):
    // our listener there accepts nothing. SIGTERM must still stop the
    // first daemon promptly, and it must not remove the other's socket.
    std::fs::remove_file(&sock).unwrap();
    let other = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let theirs = inode(&sock);
    let st = d.stop(); // panics if SIGTERM does not stop it
    assert!(st.success(), "{st}");
    assert_eq!(inode(&sock), theirs, "the other socket was removed");
    drop(other);
}

#[test]
fn a_stalled_front_end_does_not_hold_the_shutdown() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (mut d, sock) = start(dir.path(), &img);
    // A SET_VRING_ADDR header announcing a 40-byte body that never comes.
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let mut hdr = Vec::new();
    hdr.extend_from_slice(&9u32.to_le_bytes());
    hdr.extend_from_slice(&1u32.to_le_bytes());
    hdr.extend_from_slice(&40u32.to_le_bytes());
    s.write_all(&hdr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let st = d.stop(); // panics if the stalled front end blocks SIGTERM
    assert!(st.success(), "{st}");
    drop(s);
}
