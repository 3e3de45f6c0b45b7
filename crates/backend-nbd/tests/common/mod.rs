//! Test helpers: a qemu-nbd started by the test, and request plumbing.
#![allow(dead_code)]

pub mod double;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vblk_backend::{IoCompletion, IoEngine, IoOp, IoRequest};

pub fn have(tool: &str) -> bool {
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

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub enum Listen {
    Unix(PathBuf),
    Tcp(u16),
}

impl Listen {
    pub fn uri(&self, export: &str) -> String {
        match self {
            Listen::Unix(p) => format!("nbd+unix:///{export}?socket={}", p.display()),
            Listen::Tcp(port) => format!("nbd://127.0.0.1:{port}/{export}"),
        }
    }
}

/// qemu-nbd serving `image` (format `fmt`) as export `export`.
pub struct QemuNbd {
    child: Child,
    pub listen: Listen,
    image: PathBuf,
    fmt: String,
    export: String,
    extra: Vec<String>,
}

impl QemuNbd {
    pub fn start(image: &Path, fmt: &str, export: &str, listen: Listen, extra: &[&str]) -> QemuNbd {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = spawn(image, fmt, export, &listen, &extra);
        let q = QemuNbd {
            child,
            listen,
            image: image.into(),
            fmt: fmt.into(),
            export: export.into(),
            extra,
        };
        q.wait_ready();
        q
    }

    fn wait_ready(&self) {
        let t = Instant::now();
        loop {
            let ok = match &self.listen {
                Listen::Unix(p) => std::os::unix::net::UnixStream::connect(p).is_ok(),
                Listen::Tcp(port) => std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok(),
            };
            if ok {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "qemu-nbd did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn uri(&self) -> String {
        self.listen.uri(&self.export)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Listen::Unix(p) = &self.listen {
            let _ = std::fs::remove_file(p);
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(
            &self.image,
            &self.fmt,
            &self.export,
            &self.listen,
            &self.extra,
        );
        self.wait_ready();
    }
}

fn spawn(image: &Path, fmt: &str, export: &str, listen: &Listen, extra: &[String]) -> Child {
    let mut c = Command::new("qemu-nbd");
    c.args([
        "--persistent",
        "--shared=8",
        "-f",
        fmt,
        "-x",
        export,
        "--cache=writeback",
    ]);
    match listen {
        Listen::Unix(p) => {
            c.arg("-k").arg(p);
        }
        Listen::Tcp(port) => {
            c.args(["-b", "127.0.0.1", "-p", &port.to_string()]);
        }
    }
    c.args(extra)
        .arg(image)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c.spawn().expect("qemu-nbd")
}

impl Drop for QemuNbd {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn iov(buf: &mut [u8]) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut _,
        iov_len: buf.len(),
    }
}

/// Push one request, submit, wait for it.
pub fn one(
    e: &mut dyn IoEngine,
    op: IoOp,
    offset: u64,
    len: u64,
    bufs: &mut [&mut [u8]],
) -> IoCompletion {
    let iovecs = bufs.iter_mut().map(|b| iov(b)).collect();
    // SAFETY: the buffers are borrowed until the request is reaped below.
    unsafe {
        e.push(IoRequest {
            op,
            offset,
            len,
            iovecs,
            token: 42,
            fua: false,
        })
    };
    e.submit().unwrap();
    let mut out = vec![];
    e.reap(&mut out, 1).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].token, 42);
    out[0]
}

pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
