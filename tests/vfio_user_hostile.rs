//! A hostile vfio-user client must not take the daemon down: malformed
//! messages end that client's connection, the next client is served.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn header(id: u16, command: u16, size: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..2].copy_from_slice(&id.to_le_bytes());
    h[2..4].copy_from_slice(&command.to_le_bytes());
    h[4..8].copy_from_slice(&size.to_le_bytes());
    h
}

#[test]
fn malformed_messages_do_not_kill_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("v.sock");
    let ctl = dir.path().join("v.ctl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vblk"))
        .args(["serve", "--image", "null:1M", "--vfio-user"])
        .arg(&sock)
        .arg("--control")
        .arg(&ctl)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !sock.exists() {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    let attacks: Vec<Vec<u8>> = vec![
        // VERSION whose size is smaller than its own header.
        header(1, 1, 4).to_vec(),
        // An unknown command.
        header(2, 0x7777, 16).to_vec(),
        // A region read of 4 GiB - 1 from a region that does not exist.
        [
            header(3, 9, 32).to_vec(),
            0xffu32.to_le_bytes().to_vec(),
            vec![0; 4],
            0u64.to_le_bytes().to_vec(),
            0xffff_ffffu32.to_le_bytes().to_vec(),
        ]
        .concat(),
        // Half a header, then hang up.
        vec![1, 2, 3],
        // Garbage.
        (0..200u32).map(|i| (i * 37 % 251) as u8).collect(),
    ];
    for (i, a) in attacks.iter().enumerate() {
        let mut s = UnixStream::connect(&sock)
            .unwrap_or_else(|e| panic!("attack {i}: cannot connect: {e}"));
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let _ = s.write_all(a);
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        drop(s);
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            child.try_wait().unwrap().is_none(),
            "daemon died on attack {i}"
        );
    }
    // Still serving: a fresh client is accepted and the counters answer.
    let s = UnixStream::connect(&sock).expect("no longer accepting clients");
    drop(s);
    let out = Command::new(env!("CARGO_BIN_EXE_vblk"))
        .args(["stats", "--json", "--socket"])
        .arg(&ctl)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["device"]["connections"].as_u64().unwrap() >= attacks.len() as u64,
        "{v}"
    );
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert!(st.success(), "exit status {st}");
    assert!(!sock.exists(), "socket left behind");
}
