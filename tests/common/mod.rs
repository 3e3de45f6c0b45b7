//! `vblk serve` as a child process, for the integration tests.
//!
//! [`Daemon::vhost_user`] and [`Daemon::vfio_user`] build the command line
//! (`--image`, the transport socket, optionally `--control`, any extra
//! arguments); [`Builder::start`] waits until the sockets are there and
//! fails if the daemon exits first. [`Daemon::stop`] sends SIGTERM and
//! returns the exit status; dropping a `Daemon` kills it. The daemon's
//! stderr goes to a log of its own, printed when the test fails.

// Each test file uses part of this.
#![allow(dead_code)]

pub mod blkio;

use std::ffi::{OsStr, OsString};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long [`Builder::start`] waits for the sockets.
pub const START_LIMIT: Duration = Duration::from_secs(20);
/// How long [`Daemon::stop`] waits for the exit after SIGTERM.
pub const STOP_LIMIT: Duration = Duration::from_secs(20);

/// The `vblk` binary under test.
pub fn vblk() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vblk"))
}

/// `vblk stats --json` from the control socket `ctl`; the command must succeed.
pub fn stats(ctl: &Path) -> serde_json::Value {
    let out = vblk()
        .args(["stats", "--json", "--socket"])
        .arg(ctl)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vblk stats: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The command line of a `vblk serve` to start.
pub struct Builder {
    image: OsString,
    transport: &'static str,
    dir: Option<PathBuf>,
    control: bool,
    args: Vec<OsString>,
}

impl Builder {
    /// Put the sockets in `dir` (`vblk.sock`, `vblk.ctl`) instead of a
    /// temporary directory of the daemon's own.
    pub fn dir(mut self, dir: &Path) -> Builder {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Serve the control socket too (`--control`); `start` waits for it.
    pub fn control(mut self) -> Builder {
        self.control = true;
        self
    }

    /// More `vblk serve` arguments, after the others.
    pub fn args<I, S>(mut self, args: I) -> Builder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Spawn the daemon; wait until its sockets are there (a path that
    /// held a stale socket before: until it answers, the same inode
    /// number may come back). Panics if the daemon exits first.
    pub fn start(self) -> Daemon {
        let own = self.dir.is_none().then(|| tempfile::tempdir().unwrap());
        let dir = match &own {
            Some(t) => t.path().to_path_buf(),
            None => self.dir.clone().unwrap(),
        };
        let sock = dir.join("vblk.sock");
        let ctl = self.control.then(|| dir.join("vblk.ctl"));
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = vblk();
        cmd.arg("serve")
            .arg("--image")
            .arg(&self.image)
            .arg(self.transport)
            .arg(&sock);
        if let Some(c) = &ctl {
            cmd.arg("--control").arg(c);
        }
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stderr(log.reopen().unwrap());
        // (path, something was there before)
        let waits: Vec<(PathBuf, bool)> = std::iter::once(&sock)
            .chain(&ctl)
            .map(|p| (p.clone(), std::fs::symlink_metadata(p).is_ok()))
            .collect();
        let child = cmd.spawn().expect("start vblk serve");
        let mut d = Daemon {
            child,
            sock,
            ctl,
            log,
            _dir: own,
        };
        let ready = |(p, stale): &(PathBuf, bool)| {
            if *stale {
                UnixStream::connect(p).is_ok()
            } else {
                std::fs::symlink_metadata(p).is_ok()
            }
        };
        let t = Instant::now();
        while !waits.iter().all(ready) {
            if let Some(st) = d.child.try_wait().unwrap() {
                panic!("vblk serve exited at start: {st}");
            }
            assert!(
                t.elapsed() < START_LIMIT,
                "vblk serve: no {waits:?} within {START_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        d
    }
}

/// A running `vblk serve`; killed when dropped.
pub struct Daemon {
    child: Child,
    /// The vhost-user or vfio-user socket.
    pub sock: PathBuf,
    ctl: Option<PathBuf>,
    log: tempfile::NamedTempFile,
    _dir: Option<tempfile::TempDir>,
}

impl Daemon {
    /// `vblk serve --image <image> --vhost-user <dir>/vblk.sock`.
    pub fn vhost_user(image: impl AsRef<OsStr>) -> Builder {
        Self::builder(image, "--vhost-user")
    }

    /// `vblk serve --image <image> --vfio-user <dir>/vblk.sock`.
    pub fn vfio_user(image: impl AsRef<OsStr>) -> Builder {
        Self::builder(image, "--vfio-user")
    }

    fn builder(image: impl AsRef<OsStr>, transport: &'static str) -> Builder {
        Builder {
            image: image.as_ref().to_owned(),
            transport,
            dir: None,
            control: false,
            args: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The control socket (started with [`Builder::control`]).
    pub fn ctl(&self) -> &Path {
        self.ctl.as_deref().expect("started without --control")
    }

    /// `vblk stats --json` over the control socket.
    pub fn stats(&self) -> serde_json::Value {
        stats(self.ctl())
    }

    /// The daemon has not exited.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Open file descriptors of the daemon.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// What the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log.path()).unwrap_or_default()).into_owned()
    }

    /// SIGTERM, then the exit status; panics if the daemon is still there
    /// after [`STOP_LIMIT`].
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(st) = self.child.try_wait().unwrap() {
            return st; // already gone (and reaped: its pid may be reused)
        }
        // SAFETY: plain kill(2) on our child, not reaped yet.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                t.elapsed() < STOP_LIMIT,
                "vblk serve did not exit within {STOP_LIMIT:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- vblk serve (pid {}) stderr ----\n{}---- end ----",
                self.pid(),
                self.log()
            );
        }
    }
}
