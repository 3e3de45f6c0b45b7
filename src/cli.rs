//! The command line: subcommands, `vblk serve`'s options and their parsers.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::control;
use vblk_device::runner::RunnerOptions;
#[derive(Parser)]
#[command(
    name = "vblk",
    version,
    about = "A userspace virtio-blk device: vhost-user-blk backend and virtio-blk PCI over vfio-user",
    long_about = "A userspace virtio-blk device.\n\nLogging goes to stderr and is controlled by RUST_LOG (default: warn; try RUST_LOG=info, or RUST_LOG=debug for every rejected request)."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Serve a disk image as a virtio-blk device.
    Serve(ServeArgs),
    /// Print the counters of a running `vblk serve --control SOCKET`.
    Stats(control::StatsArgs),
    /// Grow or shrink a running export (`vblk serve --control SOCKET`); the guest is notified.
    Resize(control::ResizeArgs),
    /// Benchmark vblk against qemu-storage-daemon over vhost-user-blk (host side, libblkio).
    Bench(vblk_bench::BenchArgs),
    /// Hostile vhost-user messages and rings against any vhost-user-blk back end, each followed by an integrity probe.
    Torture(vblk_torture::Args),
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub(crate) enum Cache {
    /// Host page cache (FLUSH = fdatasync).
    Writeback,
    /// O_DIRECT: bypass the host page cache.
    None,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub(crate) enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub(crate) enum Aio {
    /// Synchronous preadv/pwritev on the queue's thread.
    Threads,
    /// io_uring: one ring per queue, one submission per batch.
    IoUring,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub(crate) enum Seccomp {
    /// A system call outside the thread's allow-list kills the daemon (SIGSYS).
    Kill,
    /// It goes through and the kernel logs it (`dmesg`: `audit: type=1326 ... syscall=N`; auditd: `type=SECCOMP`).
    Log,
    /// No seccomp filter.
    Off,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Disk image: a raw file or block device, `null:SIZE` (reads return
    /// zeroes, writes are dropped), or an NBD export:
    /// `nbd://HOST[:PORT]/EXPORT` or `nbd+unix:///EXPORT?socket=PATH`
    /// (EXPORT may be empty: the server's default export). Capacity,
    /// read-only and discard come from the NBD server.
    #[arg(long, value_name = "PATH")]
    pub(crate) image: String,
    /// NBD: how long the server may be unreachable before the guest's
    /// requests fail with an I/O error. Meanwhile vblk reconnects with
    /// backoff and resends what was in flight; afterwards it keeps
    /// reconnecting and new requests fail at once until it succeeds.
    #[arg(long, value_name = "SECONDS", default_value_t = vblk_backend_nbd::DEFAULT_RECONNECT_TIMEOUT.as_secs_f64())]
    pub(crate) nbd_reconnect_timeout: f64,
    /// Serve over vhost-user on this UNIX socket.
    #[arg(
        long,
        value_name = "SOCKET",
        conflicts_with = "vfio_user",
        required_unless_present = "vfio_user"
    )]
    pub(crate) vhost_user: Option<PathBuf>,
    /// Serve a virtio-blk PCI device over vfio-user on this UNIX socket.
    #[arg(long, value_name = "SOCKET")]
    pub(crate) vfio_user: Option<PathBuf>,
    /// Create a sparse image of this size if PATH does not exist (e.g. 1G, 512M; multiple of 512).
    #[arg(long, value_name = "SIZE")]
    pub(crate) size: Option<String>,
    /// Export read-only: the guest sees VIRTIO_BLK_F_RO and writes fail with IOERR.
    #[arg(long)]
    pub(crate) readonly: bool,
    /// Number of virtqueues (one worker thread each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) num_queues: u16,
    /// Maximum virtqueue size (default: 1024 over vhost-user, as qemu-storage-daemon; 256 over vfio-user).
    #[arg(long, value_parser = parse_queue_size)]
    pub(crate) queue_size: Option<u16>,
    /// Serial number returned by GET_ID (at most 20 bytes; default derived from the image).
    #[arg(long)]
    pub(crate) serial: Option<String>,
    /// Logical block size reported to the guest (default: the host's, at
    /// least 512; with --cache none at least what O_DIRECT needs).
    #[arg(long, value_parser = parse_lbs)]
    pub(crate) logical_block_size: Option<u32>,
    /// Host cache mode for the image file.
    #[arg(long, value_enum, default_value_t = Cache::Writeback)]
    pub(crate) cache: Cache,
    /// I/O engine for the image file (io-uring falls back to threads where unavailable).
    #[arg(long, value_enum, default_value_t = Aio::IoUring)]
    pub(crate) aio: Aio,
    /// Queue threads; queue i is served by thread i % N (default: one per queue).
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<usize>,
    /// Busy-poll the avail ring and the storage completions for up to N
    /// microseconds before a queue thread sleeps (0 = off). Adaptive: the
    /// window halves each time a poll finds nothing (down to N/16) and
    /// doubles when it finds work, so an idle queue costs nothing. Default
    /// 32, like QEMU's iothreads: it hides the driver's wake-up behind the
    /// poll instead of two sleeps per batch (see BENCHMARKS.md).
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub(crate) poll_us: u64,
    /// Requests a queue thread takes from the ring per round before it
    /// submits them and publishes what completed.
    #[arg(long, default_value_t = RunnerOptions::default().max_batch as u16, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) batch: u16,
    /// Do not offer DISCARD / WRITE_ZEROES.
    #[arg(long)]
    pub(crate) no_discard: bool,
    /// Do not offer packed virtqueues (VIRTIO_F_RING_PACKED): drivers use
    /// split rings.
    #[arg(long)]
    pub(crate) no_packed_rings: bool,
    /// The write cache a driver starts with: on = write-back (writes are
    /// durable after FLUSH), off = write-through (every write is durable
    /// before it completes). A guest switches it through
    /// VIRTIO_BLK_F_CONFIG_WCE (/sys/block/vda/cache_type).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub(crate) write_cache: OnOff,
    /// Serve counters on this UNIX socket (read them with `vblk stats
    /// --socket`; `vblk resize --socket` resizes through it).
    #[arg(long, value_name = "SOCKET")]
    pub(crate) control: Option<PathBuf>,
    /// Serve the counters and latency histograms over HTTP in the
    /// Prometheus text format (`GET /metrics`) on ADDR: `PORT` (loopback)
    /// or `HOST:PORT`.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<String>,
    /// seccomp-bpf allow-lists, one per thread kind (control, vhost-user,
    /// vfio-user, queue), installed before the first front end connects.
    /// `log` lets a call outside the list through and logs it (find it with
    /// `dmesg` / `journalctl -k` / `ausearch -m SECCOMP`).
    #[arg(long, value_enum, default_value_t = Seccomp::Kill)]
    pub(crate) seccomp: Seccomp,
}

/// Default largest virtqueue over vhost-user: front ends choose the size
/// (libblkio asks for what it is told, QEMU's `queue-size`), and
/// qemu-storage-daemon accepts up to 1024.
pub(crate) const VHOST_USER_QUEUE_SIZE: u16 = 1024;
/// Default largest virtqueue of the PCI function (QueueNumMax).
pub(crate) const VFIO_USER_QUEUE_SIZE: u16 = 256;

pub(crate) fn parse_lbs(s: &str) -> Result<u32, String> {
    match s {
        "512" => Ok(512),
        "4096" => Ok(4096),
        _ => Err("must be 512 or 4096".into()),
    }
}

pub(crate) fn parse_queue_size(s: &str) -> Result<u16, String> {
    let n: u16 = s.parse().map_err(|_| "not a number".to_string())?;
    if !(2..=32768).contains(&n) || !n.is_power_of_two() {
        return Err("must be a power of two between 2 and 32768".into());
    }
    Ok(n)
}

/// A default serial: stable for the same image path.
pub(crate) fn default_serial(image: &str) -> String {
    let key = std::fs::canonicalize(image)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| image.to_string());
    // FNV-1a, 64 bit.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("vblk-{:015x}", h & 0x0fff_ffff_ffff_ffff)
}
