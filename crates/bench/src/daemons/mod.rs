//! The daemons under test: their command lines, starting them pinned to
//! the daemon CPUs, waiting for their socket, and stopping them.

use crate::options::Backend;

// Where each step lives: the arguments each daemon is started with and
// their report form (`command_line`), starting one pinned to the daemon
// CPUs and stopping it (`running`), and finding or installing
// qemu-storage-daemon (`qsd`).
mod command_line;
mod qsd;
mod running;

pub use command_line::{args, command_line};
pub use qsd::{ensure_qsd, qsd_version};
pub use running::{pin_self, start, Running};

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
