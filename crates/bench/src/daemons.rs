//! The daemons under test: their command lines, starting them pinned to
//! the daemon CPUs, waiting for their socket, and stopping them.

use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::options::{Backend, BenchOptions};

/// The device size (every backend).
pub const DISK: u64 = 1 << 30;
/// vblk `--poll-us` and qsd iothread `poll-max-ns` on polling rows (the
/// same busy-poll budget for both).
pub const POLL_US: u64 = 50;

/// vblk and the two references.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Daemon {
    Vblk,
    /// qemu-storage-daemon as users run it by default: the export in the
    /// main loop (no iothread, no polling).
    Qsd,
    /// qemu-storage-daemon with `--object iothread,id=io0` and the export
    /// on it: QEMU's adaptive polling (default `poll-max-ns` on event
    /// rows, the matched budget on polling rows).
    QsdIothread,
}

impl Daemon {
    pub const ALL: [Daemon; 3] = [Daemon::Vblk, Daemon::Qsd, Daemon::QsdIothread];
    pub const REFERENCES: [Daemon; 2] = [Daemon::Qsd, Daemon::QsdIothread];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Daemon::Vblk => "vblk",
            Daemon::Qsd => "qsd",
            Daemon::QsdIothread => "qsd+iothread",
        }
    }
}

/// One daemon configuration: what changes between the daemons started in
/// a run (the workload and QD change per point, on the same daemon).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Config {
    pub backend: Backend,
    pub queues: usize,
    pub poll: bool,
}

/// The arguments `daemon` is started with (after the program name).
/// `image` is the backing file (unused for null), `sock` the vhost-user
/// socket, `ctl` vblk's control socket.
pub fn args(
    daemon: Daemon,
    c: Config,
    image: &str,
    sock: &str,
    ctl: &str,
    extra: &[String],
) -> Vec<String> {
    let mut a: Vec<String> = vec![];
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    match daemon {
        Daemon::Vblk => {
            // vblk's own defaults otherwise (threads, queue size, batch,
            // polling on event rows).
            push(&["serve", "--vhost-user", sock, "--control", ctl]);
            push(&["--num-queues", &c.queues.to_string()]);
            match c.backend {
                Backend::Null => push(&["--image", &format!("null:{DISK}")]),
                Backend::File => push(&[
                    "--image",
                    image,
                    "--aio",
                    "io-uring",
                    "--cache",
                    "writeback",
                ]),
                Backend::Direct => {
                    push(&["--image", image, "--aio", "io-uring", "--cache", "none"])
                }
                Backend::Nbd => push(&["--image", &format!("nbd+unix:///?socket={image}")]),
            }
            if c.poll {
                push(&["--poll-us", &POLL_US.to_string()]);
            }
            a.extend(extra.iter().cloned());
        }
        Daemon::Qsd | Daemon::QsdIothread => {
            let iothread = daemon == Daemon::QsdIothread;
            if iothread {
                let obj = if c.poll {
                    format!("iothread,id=io0,poll-max-ns={}", POLL_US * 1000)
                } else {
                    "iothread,id=io0".to_string()
                };
                push(&["--object", &obj]);
            }
            let node = match c.backend {
                Backend::Null => {
                    format!("driver=null-co,node-name=n0,size={DISK},read-zeroes=on")
                }
                Backend::Nbd => {
                    format!("driver=nbd,node-name=n0,server.type=unix,server.path={image}")
                }
                Backend::File | Backend::Direct => format!(
                    "driver=file,node-name=n0,filename={image},aio=io_uring,cache.direct={}",
                    if c.backend == Backend::Direct {
                        "on"
                    } else {
                        "off"
                    }
                ),
            };
            push(&["--blockdev", &node]);
            push(&[
                "--export",
                &format!(
                    "type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path={sock},writable=on,num-queues={}{}",
                    c.queues,
                    if iothread { ",iothread=io0" } else { "" }
                ),
            ]);
        }
    }
    a
}

/// `program args...` with placeholders for the paths, for the report.
pub fn command_line(opts: &BenchOptions, daemon: Daemon, c: Config) -> String {
    let prog = match daemon {
        Daemon::Vblk => "vblk".to_string(),
        _ => "qemu-storage-daemon".to_string(),
    };
    let a = args(daemon, c, "$IMAGE", "$SOCK", "$CTL", &opts.vblk_args);
    format!("{prog} {}", a.join(" "))
}

pub fn pin_self(cpus: &[usize]) -> bool {
    // SAFETY: cpu_set_t is plain data, zero is a valid (empty) set;
    // sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// A started daemon; dropping it stops it (SIGTERM, then SIGKILL after 5 s).
pub struct Running {
    pub daemon: Daemon,
    /// A server process behind the daemon (qemu-nbd), measured apart.
    pub helper: Option<u32>,
    child: Child,
    pub sock: PathBuf,
    pub ctl: Option<PathBuf>,
    log: PathBuf,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the daemon's stderr, for error messages.
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n    ")
    }

    pub fn check_alive(&mut self) -> Result<(), String> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return Err(format!(
                "{} exited ({st}); its log:\n    {}",
                self.daemon.name(),
                self.log_tail()
            ));
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_file(&self.sock);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.sock);
    }
}

/// Start `daemon` in configuration `c`, pinned to `cpus`, with its sockets
/// in `dir`, and wait until it listens.
pub fn start(
    opts: &BenchOptions,
    dir: &Path,
    image: &Path,
    cpus: &[usize],
    daemon: Daemon,
    c: Config,
) -> Result<Running, String> {
    let sock = dir.join(format!("{}.sock", daemon.name()));
    let ctl = dir.join("vblk.ctl");
    let log = dir.join(format!("{}.log", daemon.name()));
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&ctl);
    let prog = match daemon {
        Daemon::Vblk => &opts.vblk,
        _ => &opts.qsd,
    };
    let mut cmd = Command::new(prog);
    cmd.args(args(
        daemon,
        c,
        &image.display().to_string(),
        &sock.display().to_string(),
        &ctl.display().to_string(),
        &opts.vblk_args,
    ));
    let logf = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let cpus = cpus.to_vec();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(logf));
    // SAFETY: pre_exec runs in the forked child before exec; it only calls
    // sched_setaffinity (async-signal-safe) on a set built on the stack
    // from a vector allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            pin_self(&cpus);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", prog.display()))?;
    let mut r = Running {
        helper: None,
        daemon,
        child,
        sock: sock.clone(),
        ctl: (daemon == Daemon::Vblk).then_some(ctl),
        log,
    };
    let t = Instant::now();
    while UnixStream::connect(&sock).is_err() {
        r.check_alive()?;
        if t.elapsed() > Duration::from_secs(10) {
            return Err(format!(
                "{} did not listen on {} within 10 s; its log:\n    {}",
                daemon.name(),
                sock.display(),
                r.log_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // qsd (like most vhost-user back-ends) serves one front-end and may
    // need a moment after that probing connection closes.
    std::thread::sleep(Duration::from_millis(50));
    Ok(r)
}

fn have(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Make sure qemu-storage-daemon runs; install it with apt-get if allowed.
pub fn ensure_qsd(opts: &BenchOptions) -> Result<(), String> {
    if have(&opts.qsd) {
        return Ok(());
    }
    if !opts.install_qsd {
        return Err(format!("{} not found", opts.qsd.display()));
    }
    // Debian: bookworm-backports' qemu-utils ships it; plain bookworm has
    // it in qemu-system-common.
    eprintln!("bench: qemu-storage-daemon missing: installing it with apt-get");
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    for pkg in ["qemu-utils", "qemu-system-common"] {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", pkg])
            .status();
        if have(&opts.qsd) {
            return Ok(());
        }
    }
    Err("qemu-storage-daemon is not installed and apt-get could not install it (qemu-utils, qemu-system-common)".into())
}

/// qemu-storage-daemon's version line.
pub fn qsd_version(qsd: &Path) -> String {
    Command::new(qsd)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(backend: Backend, poll: bool) -> Config {
        Config {
            backend,
            queues: 1,
            poll,
        }
    }

    #[test]
    fn event_rows_use_defaults() {
        let v = args(Daemon::Vblk, cfg(Backend::Null, false), "i", "s", "c", &[]).join(" ");
        assert!(!v.contains("--poll-us") && !v.contains("--threads"), "{v}");
        let q = args(
            Daemon::QsdIothread,
            cfg(Backend::Null, false),
            "i",
            "s",
            "c",
            &[],
        )
        .join(" ");
        assert!(q.contains("--object iothread,id=io0 "), "{q}");
        assert!(
            !q.contains("poll-max-ns") && q.ends_with(",iothread=io0"),
            "{q}"
        );
        let m = args(Daemon::Qsd, cfg(Backend::Null, false), "i", "s", "c", &[]).join(" ");
        assert!(!m.contains("iothread"), "{m}");
    }

    #[test]
    fn polling_rows_match_budgets() {
        let v = args(Daemon::Vblk, cfg(Backend::File, true), "i", "s", "c", &[]).join(" ");
        assert!(v.contains("--poll-us 50"), "{v}");
        let q = args(
            Daemon::QsdIothread,
            cfg(Backend::File, true),
            "i",
            "s",
            "c",
            &[],
        )
        .join(" ");
        assert!(q.contains("poll-max-ns=50000"), "{q}");
    }

    #[test]
    fn direct_is_o_direct_io_uring_on_both() {
        let extra = vec!["--batch".to_string(), "8".to_string()];
        let v = args(
            Daemon::Vblk,
            cfg(Backend::Direct, false),
            "img",
            "s",
            "c",
            &extra,
        )
        .join(" ");
        assert!(v.contains("--image img --aio io-uring --cache none"), "{v}");
        assert!(v.ends_with("--batch 8"), "{v}");
        let q = args(
            Daemon::Qsd,
            cfg(Backend::Direct, false),
            "img",
            "s",
            "c",
            &extra,
        )
        .join(" ");
        assert!(q.contains("driver=file,node-name=n0,filename=img,aio=io_uring,cache.direct=on"));
        assert!(!q.contains("--batch"));
    }
}
