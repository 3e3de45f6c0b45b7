//! The qemu-nbd behind both daemons at the NBD points (`--only nbd`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The qemu-nbd both daemons use at the NBD points: the tmpfs image,
/// raw, writeback, default export, on a UNIX socket in the bench's
/// directory; killed when dropped.
pub struct NbdServer {
    child: Child,
    pub sock: PathBuf,
}

impl NbdServer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start(image: &Path, dir: &Path) -> Result<NbdServer, String> {
        let sock = dir.join("qemu-nbd.sock");
        let _ = std::fs::remove_file(&sock);
        let child = Command::new("qemu-nbd")
            .args([
                "--persistent",
                "--shared=16",
                "-f",
                "raw",
                "--cache=writeback",
                "--aio=io_uring",
                "-k",
            ])
            .arg(&sock)
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("qemu-nbd: {e} (scripts/setup-nbd.sh installs it)"))?;
        let s = NbdServer { child, sock };
        let t = std::time::Instant::now();
        while std::os::unix::net::UnixStream::connect(&s.sock).is_err() {
            if t.elapsed() > std::time::Duration::from_secs(10) {
                return Err("qemu-nbd did not start".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(s)
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
