//! `vblk serve --image nbd://...` end to end on the host: qemu-nbd (and
//! nbdkit when installed, scripts/setup-nbd.sh) started by the test over
//! TCP on 127.0.0.1 and over a UNIX socket, vblk under `--seccomp kill`,
//! libblkio as the vhost-user front end; the bytes are checked in the
//! server's backing file; a qcow2 overlay passes `qemu-img check` with its
//! backing file untouched; a server killed and restarted mid-workload
//! loses nothing, one gone for good gives the front end an error.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::blkio::{pattern, Client};
use common::Daemon;

const SIZE: u64 = 16 << 20;

fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    // CI installs the servers (scripts/setup-nbd.sh) and sets
    // VBLK_REQUIRE_NBD_SERVERS=1: there, a missing one fails instead of
    // skipping (a skipped test proves nothing).
    assert!(
        found || std::env::var_os("VBLK_REQUIRE_NBD_SERVERS").is_none(),
        "{tool} is required (VBLK_REQUIRE_NBD_SERVERS is set): run scripts/setup-nbd.sh"
    );
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An NBD server process (qemu-nbd or nbdkit) and how to restart it.
struct Server {
    child: Child,
    cmd: Vec<String>,
    probe: Probe,
}

enum Probe {
    Unix(PathBuf),
    Tcp(u16),
}

impl Server {
    fn start(cmd: Vec<String>, probe: Probe) -> Server {
        let child = Self::spawn(&cmd, &probe);
        let s = Server { child, cmd, probe };
        s.wait_ready();
        s
    }

    fn spawn(cmd: &[String], probe: &Probe) -> Child {
        if let Probe::Unix(p) = probe {
            let _ = std::fs::remove_file(p);
        }
        Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the NBD server")
    }

    fn wait_ready(&self) {
        let t = Instant::now();
        loop {
            let ok = match &self.probe {
                Probe::Unix(p) => std::os::unix::net::UnixStream::connect(p).is_ok(),
                Probe::Tcp(port) => std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok(),
            };
            if ok {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{:?} did not start",
                self.cmd
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(&self.cmd, &self.probe);
        self.wait_ready();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn qemu_nbd(image: &Path, fmt: &str, probe: Probe) -> Server {
    let mut cmd: Vec<String> = [
        "qemu-nbd",
        "--persistent",
        "--shared=8",
        "-f",
        fmt,
        "-x",
        "disk",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match &probe {
        Probe::Unix(p) => cmd.extend(["-k".into(), p.display().to_string()]),
        Probe::Tcp(port) => cmd.extend([
            "-b".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ]),
    }
    cmd.push(image.display().to_string());
    Server::start(cmd, probe)
}

fn uri(probe: &Probe, export: &str) -> String {
    match probe {
        Probe::Unix(p) => format!("nbd+unix:///{export}?socket={}", p.display()),
        Probe::Tcp(port) => format!("nbd://127.0.0.1:{port}/{export}"),
    }
}

fn raw_image(dir: &Path) -> PathBuf {
    let p = dir.join("disk.raw");
    std::fs::File::create(&p).unwrap().set_len(SIZE).unwrap();
    p
}

const OFFSETS: [u64; 4] = [0, 4096 * 100, SIZE / 2 + 512, SIZE - 8192];

/// `vblk serve --seccomp kill` of `image_uri` over vhost-user.
fn serve(image_uri: &str, extra: &[&str]) -> Daemon {
    Daemon::vhost_user(image_uri)
        .args(["--seccomp", "kill"])
        .args(extra)
        .start()
}

/// Write, read back, flush through vblk; stop it; the bytes are in `img`.
fn round_trip(image_uri: &str, img: &Path) {
    let mut d = serve(image_uri, &["--num-queues", "2"]);
    let mut c = Client::with(&d.sock).timeout(30).connect();
    assert_eq!(c.b.get_u64("capacity").unwrap(), SIZE);
    for (i, off) in OFFSETS.iter().enumerate() {
        assert_eq!(c.write(*off, &pattern(i as u8, 8192)), 0, "write at {off}");
    }
    for (i, off) in OFFSETS.iter().enumerate() {
        assert_eq!(
            c.read(*off, 8192).unwrap(),
            pattern(i as u8, 8192),
            "read at {off}"
        );
    }
    assert_eq!(c.flush(), 0);
    assert!(c.read(SIZE, 512).is_err(), "read past the end succeeded");
    drop(c);
    let st = d.stop();
    assert!(st.success(), "vblk exited with {st}");
    let bytes = std::fs::read(img).unwrap();
    for (i, off) in OFFSETS.iter().enumerate() {
        assert_eq!(
            &bytes[*off as usize..*off as usize + 8192],
            &pattern(i as u8, 8192)[..],
            "image bytes at {off}"
        );
    }
}

#[test]
fn qemu_nbd_over_unix_and_tcp() {
    if !have("qemu-nbd") {
        eprintln!("SKIP: no qemu-nbd");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = raw_image(dir.path());
    let probe = Probe::Unix(dir.path().join("nbd.sock"));
    let u = uri(&probe, "disk");
    let s = qemu_nbd(&img, "raw", probe);
    round_trip(&u, &img);
    drop(s);
    let img2 = dir.path().join("disk2.raw");
    std::fs::File::create(&img2).unwrap().set_len(SIZE).unwrap();
    let probe = Probe::Tcp(free_port());
    let u = uri(&probe, "disk");
    let _s = qemu_nbd(&img2, "raw", probe);
    round_trip(&u, &img2);
}

#[test]
fn nbdkit_file_plugin_over_unix_and_tcp() {
    if !have("nbdkit") {
        eprintln!("SKIP: no nbdkit (scripts/setup-nbd.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = raw_image(dir.path());
    let sock = dir.path().join("kit.sock");
    let cmd = [
        "nbdkit",
        "-f",
        "-U",
        sock.to_str().unwrap(),
        "file",
        img.to_str().unwrap(),
    ];
    let s = Server::start(
        cmd.iter().map(|s| s.to_string()).collect(),
        Probe::Unix(sock.clone()),
    );
    round_trip(&uri(&Probe::Unix(sock), ""), &img);
    drop(s);
    let port = free_port();
    let cmd = [
        "nbdkit",
        "-f",
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "file",
        img.to_str().unwrap(),
    ];
    let _s = Server::start(
        cmd.iter().map(|s| s.to_string()).collect(),
        Probe::Tcp(port),
    );
    round_trip(&uri(&Probe::Tcp(port), ""), &img);
}

fn run(cmd: &[&str]) -> String {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn qcow2_overlay_with_a_backing_file() {
    if !have("qemu-nbd") || !have("qemu-img") {
        eprintln!("SKIP: no qemu-nbd / qemu-img");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    std::fs::write(&base, pattern(99, SIZE as usize)).unwrap();
    let top = dir.path().join("top.qcow2");
    let (b, t) = (base.to_str().unwrap(), top.to_str().unwrap());
    run(&[
        "qemu-img", "create", "-q", "-f", "qcow2", "-b", b, "-F", "raw", t,
    ]);
    let probe = Probe::Unix(dir.path().join("nbd.sock"));
    let u = uri(&probe, "disk");
    let s = qemu_nbd(&top, "qcow2", probe);
    let mut d = serve(&u, &[]);
    let mut c = Client::with(&d.sock).timeout(30).connect();
    // Unwritten ranges come from the backing file.
    assert_eq!(
        c.read(65536, 4096).unwrap(),
        pattern(99, SIZE as usize)[65536..65536 + 4096]
    );
    for (i, off) in OFFSETS.iter().enumerate() {
        assert_eq!(c.write(*off, &pattern(i as u8, 8192)), 0);
    }
    assert_eq!(c.flush(), 0);
    drop(c);
    assert!(d.stop().success());
    drop(s);
    run(&["qemu-img", "check", "-q", t]);
    assert_eq!(
        std::fs::read(&base).unwrap(),
        pattern(99, SIZE as usize),
        "backing file changed"
    );
    let flat = dir.path().join("flat.raw");
    run(&[
        "qemu-img",
        "convert",
        "-O",
        "raw",
        t,
        flat.to_str().unwrap(),
    ]);
    let mut want = pattern(99, SIZE as usize);
    for (i, off) in OFFSETS.iter().enumerate() {
        want[*off as usize..*off as usize + 8192].copy_from_slice(&pattern(i as u8, 8192));
    }
    assert!(
        std::fs::read(&flat).unwrap() == want,
        "qcow2 contents differ"
    );
}

#[test]
fn server_restart_loses_nothing_and_a_server_gone_for_good_is_an_error() {
    if !have("qemu-nbd") {
        eprintln!("SKIP: no qemu-nbd");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = raw_image(dir.path());
    let probe = Probe::Tcp(free_port());
    let u = uri(&probe, "disk");
    let mut s = qemu_nbd(&img, "raw", probe);
    let mut d = serve(&u, &["--nbd-reconnect-timeout", "4"]);
    let mut c = Client::with(&d.sock).timeout(30).connect();
    assert_eq!(c.write(0, &pattern(1, 4096)), 0);
    // Killed with a write on the way; back after a second: the write
    // completes successfully and is in the image.
    s.kill();
    c.start_write(4096, &pattern(2, 4096));
    std::thread::sleep(Duration::from_millis(1000));
    s.restart();
    assert_eq!(c.wait(), 0, "write across a server restart");
    assert_eq!(c.read(4096, 4096).unwrap(), pattern(2, 4096));
    assert_eq!(c.flush(), 0);
    let bytes = std::fs::read(&img).unwrap();
    assert_eq!(&bytes[..4096], &pattern(1, 4096)[..]);
    assert_eq!(&bytes[4096..8192], &pattern(2, 4096)[..]);
    // Gone for good: an error after the timeout, not a hang.
    s.kill();
    let t = Instant::now();
    assert!(
        c.read(0, 4096).is_err(),
        "read with the server gone succeeded"
    );
    assert!(t.elapsed() < Duration::from_secs(20));
    drop(c);
    // SIGTERM still ends the daemon (the final flush reports the server gone).
    let _ = d.stop();
}
