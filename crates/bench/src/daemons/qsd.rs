//! qemu-storage-daemon on this machine: installed with apt-get if missing
//! and allowed, and its version for the report.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::options::BenchOptions;

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
