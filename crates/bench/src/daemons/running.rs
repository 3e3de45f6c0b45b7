//! Starting a daemon pinned to the daemon CPUs, waiting until it listens,
//! and the [`Running`] handle that stops it when dropped.

use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::command_line::args;
use super::{Config, Daemon};
use crate::options::BenchOptions;

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
