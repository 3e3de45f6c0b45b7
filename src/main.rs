//! `vblk`: a userspace virtio-blk device.
//!
//! `vblk serve` exports a disk image as a virtio-blk device over vhost-user
//! (QEMU `vhost-user-blk-pci`, Cloud Hypervisor, crosvm, libblkio) or as a
//! complete virtio-blk PCI function over vfio-user (QEMU `vfio-user-pci`).
//! `vblk stats` reads a running daemon's counters, `vblk resize` changes
//! its size online. `vblk bench` compares vblk with qemu-storage-daemon.

mod control;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use vblk_backend::{parse_size, Backend, CacheMode, FileBackend, FileOptions, NullBackend};
use vblk_device::runner::RunnerOptions;
use vblk_device::{BlkConfig, BlkDevice, Stats};

#[derive(Parser)]
#[command(
    name = "vblk",
    version,
    about = "A userspace virtio-blk device: vhost-user-blk backend and virtio-blk PCI over vfio-user",
    long_about = "A userspace virtio-blk device.\n\nLogging goes to stderr and is controlled by RUST_LOG (default: warn; try RUST_LOG=info, or RUST_LOG=debug for every rejected request)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
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
enum Cache {
    /// Host page cache (FLUSH = fdatasync).
    Writeback,
    /// O_DIRECT: bypass the host page cache.
    None,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
enum Aio {
    /// Synchronous preadv/pwritev on the queue's thread.
    Threads,
    /// io_uring: one ring per queue, one submission per batch.
    IoUring,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
enum Seccomp {
    /// A system call outside the thread's allow-list kills the daemon (SIGSYS).
    Kill,
    /// It goes through and the kernel logs it (`dmesg`: `audit: type=1326 ... syscall=N`; auditd: `type=SECCOMP`).
    Log,
    /// No seccomp filter.
    Off,
}

#[derive(Args)]
struct ServeArgs {
    /// Disk image: a raw file or block device, or `null:SIZE` (reads return zeroes, writes are dropped).
    #[arg(long, value_name = "PATH")]
    image: String,
    /// Serve over vhost-user on this UNIX socket.
    #[arg(
        long,
        value_name = "SOCKET",
        conflicts_with = "vfio_user",
        required_unless_present = "vfio_user"
    )]
    vhost_user: Option<PathBuf>,
    /// Serve a virtio-blk PCI device over vfio-user on this UNIX socket.
    #[arg(long, value_name = "SOCKET")]
    vfio_user: Option<PathBuf>,
    /// Create a sparse image of this size if PATH does not exist (e.g. 1G, 512M; multiple of 512).
    #[arg(long, value_name = "SIZE")]
    size: Option<String>,
    /// Export read-only: the guest sees VIRTIO_BLK_F_RO and writes fail with IOERR.
    #[arg(long)]
    readonly: bool,
    /// Number of virtqueues (one worker thread each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    num_queues: u16,
    /// Maximum virtqueue size (default: 1024 over vhost-user, as qemu-storage-daemon; 256 over vfio-user).
    #[arg(long, value_parser = parse_queue_size)]
    queue_size: Option<u16>,
    /// Serial number returned by GET_ID (at most 20 bytes; default derived from the image).
    #[arg(long)]
    serial: Option<String>,
    /// Logical block size reported to the guest (default: the host's, at
    /// least 512; with --cache none at least what O_DIRECT needs).
    #[arg(long, value_parser = parse_lbs)]
    logical_block_size: Option<u32>,
    /// Host cache mode for the image file.
    #[arg(long, value_enum, default_value_t = Cache::Writeback)]
    cache: Cache,
    /// I/O engine for the image file (io-uring falls back to threads where unavailable).
    #[arg(long, value_enum, default_value_t = Aio::IoUring)]
    aio: Aio,
    /// Queue threads; queue i is served by thread i % N (default: one per queue).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Busy-poll the avail ring and the storage completions for up to N
    /// microseconds before a queue thread sleeps (0 = off). Adaptive: the
    /// window halves each time a poll finds nothing (down to N/16) and
    /// doubles when it finds work, so an idle queue costs nothing. Default
    /// 32, like QEMU's iothreads: it hides the driver's wake-up behind the
    /// poll instead of two sleeps per batch (see BENCHMARKS.md).
    #[arg(long, default_value_t = 32, value_name = "N")]
    poll_us: u64,
    /// Requests a queue thread takes from the ring per round before it
    /// submits them and publishes what completed.
    #[arg(long, default_value_t = RunnerOptions::default().max_batch as u16, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    batch: u16,
    /// Do not offer DISCARD / WRITE_ZEROES.
    #[arg(long)]
    no_discard: bool,
    /// Do not offer packed virtqueues (VIRTIO_F_RING_PACKED): drivers use
    /// split rings.
    #[arg(long)]
    no_packed_rings: bool,
    /// The write cache a driver starts with: on = write-back (writes are
    /// durable after FLUSH), off = write-through (every write is durable
    /// before it completes). A guest switches it through
    /// VIRTIO_BLK_F_CONFIG_WCE (/sys/block/vda/cache_type).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    write_cache: OnOff,
    /// Serve counters on this UNIX socket (read them with `vblk stats
    /// --socket`; `vblk resize --socket` resizes through it).
    #[arg(long, value_name = "SOCKET")]
    control: Option<PathBuf>,
    /// Serve the counters and latency histograms over HTTP in the
    /// Prometheus text format (`GET /metrics`) on ADDR: `PORT` (loopback)
    /// or `HOST:PORT`.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// seccomp-bpf allow-lists, one per thread kind (control, vhost-user,
    /// vfio-user, queue), installed before the first front end connects.
    /// `log` lets a call outside the list through and logs it (find it with
    /// `dmesg` / `journalctl -k` / `ausearch -m SECCOMP`).
    #[arg(long, value_enum, default_value_t = Seccomp::Kill)]
    seccomp: Seccomp,
}

/// Default largest virtqueue over vhost-user: front ends choose the size
/// (libblkio asks for what it is told, QEMU's `queue-size`), and
/// qemu-storage-daemon accepts up to 1024.
const VHOST_USER_QUEUE_SIZE: u16 = 1024;
/// Default largest virtqueue of the PCI function (QueueNumMax).
const VFIO_USER_QUEUE_SIZE: u16 = 256;

fn parse_lbs(s: &str) -> Result<u32, String> {
    match s {
        "512" => Ok(512),
        "4096" => Ok(4096),
        _ => Err("must be 512 or 4096".into()),
    }
}

fn parse_queue_size(s: &str) -> Result<u16, String> {
    let n: u16 = s.parse().map_err(|_| "not a number".to_string())?;
    if !(2..=32768).contains(&n) || !n.is_power_of_two() {
        return Err("must be a power of two between 2 and 32768".into());
    }
    Ok(n)
}

/// A default serial: stable for the same image path.
fn default_serial(image: &str) -> String {
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

fn open_backend(a: &ServeArgs) -> Result<Arc<dyn Backend>, String> {
    if let Some(size) = a.image.strip_prefix("null:") {
        let size = parse_size(size).map_err(|e| format!("--image {}: {e}", a.image))?;
        vblk_backend::check_size(size).map_err(|e| format!("--image {}: {e}", a.image))?;
        return Ok(Arc::new(NullBackend::new(size)));
    }
    let create_size = match &a.size {
        Some(s) => {
            let n = parse_size(s).map_err(|e| format!("--size: {e}"))?;
            vblk_backend::check_size(n).map_err(|e| format!("--size: {e}"))?;
            Some(n)
        }
        None => None,
    };
    let b = FileBackend::open(
        Path::new(&a.image),
        FileOptions {
            read_only: a.readonly,
            create_size,
            cache: if a.cache == Cache::None {
                CacheMode::None
            } else {
                CacheMode::Writeback
            },
            io_uring: a.aio == Aio::IoUring,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(Arc::new(b))
}

/// Wait for a thread's seccomp filter to be in place.
fn thread_ready(
    rx: std::sync::mpsc::Receiver<std::io::Result<()>>,
    what: &str,
) -> Result<(), String> {
    match rx.recv() {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("the {what} thread died at start")),
    }
}

/// Serve the counters over HTTP for Prometheus: every request, whatever
/// its path, gets the text exposition of the counters and histograms. The
/// listener is bound here, before the process-wide seccomp filter (which
/// allows no `socket` but AF_UNIX); the thread runs under the control list.
fn start_metrics(addr: &str, stats: Arc<Stats>) -> Result<(), String> {
    let addr = if addr.contains(':') {
        addr.to_string()
    } else {
        format!("127.0.0.1:{addr}")
    };
    let listener =
        std::net::TcpListener::bind(&addr).map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
    log::info!("metrics: http://{addr}/metrics");
    spawn_control_thread("metrics", move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            // Read the request (whatever it is) so that closing does not
            // reset the connection under the reply; a silent client
            // gets the reply after a second.
            let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
            let mut req = [0u8; 4096];
            let _ = conn.read(&mut req);
            let body = vblk_device::stats::render_prometheus(&stats.to_json());
            let head = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(body.as_bytes());
        }
    })
}

/// Start thread `vblk-<what>` under the control seccomp list and run
/// `serve` there; returns once the filter is in place (or failed).
pub(crate) fn spawn_control_thread(
    what: &str,
    serve: impl FnOnce() + Send + 'static,
) -> Result<(), String> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("vblk-{what}"))
        .spawn(move || {
            let r = vblk_seccomp::enter(vblk_seccomp::ThreadKind::Control);
            let failed = r.is_err();
            let _ = ready_tx.send(r);
            if !failed {
                serve();
            }
        })
        .map_err(|e| format!("cannot start the {what} thread: {e}"))?;
    thread_ready(ready_rx, what)
}

fn serve(a: ServeArgs) -> Result<(), String> {
    let backend = open_backend(&a)?;
    let capacity = backend.capacity();
    let mut cfg = BlkConfig::new(capacity);
    cfg.read_only = a.readonly || backend.read_only();
    cfg.discard = !a.no_discard && backend.supports_discard();
    cfg.packed_rings = !a.no_packed_rings;
    cfg.num_queues = a.num_queues;
    cfg.write_cache = a.write_cache == OnOff::On;
    cfg.queue_size = a.queue_size.unwrap_or(if a.vhost_user.is_some() {
        VHOST_USER_QUEUE_SIZE
    } else {
        VFIO_USER_QUEUE_SIZE
    });
    // Advertise the host's geometry: "blk_size: the block size of the
    // device" and the topology fields (virtio 1.2, 5.2.4). Under O_DIRECT a
    // smaller block than the host's alignment would make every such request
    // a bounce with read-modify-write.
    let host = backend.block_sizes();
    let natural = host.logical.max(if matches!(a.cache, Cache::None) {
        host.dio_offset_align
    } else {
        512
    });
    let lbs = a
        .logical_block_size
        .unwrap_or(if natural > 512 { 4096 } else { 512 });
    if lbs < natural {
        log::warn!(
            "--logical-block-size {lbs} is smaller than the host's {natural}: unaligned requests are bounced (read-modify-write)"
        );
    }
    cfg.logical_block_size = lbs;
    cfg.physical_block_size = host.physical.max(lbs);
    if capacity % u64::from(lbs) != 0 {
        return Err(format!(
            "{}: size {capacity} is not a multiple of the logical block size {lbs}",
            a.image
        ));
    }
    let serial = a.serial.clone().unwrap_or_else(|| default_serial(&a.image));
    if serial.len() > 20 {
        return Err(format!("--serial '{serial}' is longer than 20 bytes"));
    }
    cfg.set_serial(&serial);
    log::info!(
        "serving {} as {} sectors, {} queue(s), serial {serial}{}",
        backend.describe(),
        capacity / 512,
        a.num_queues,
        if cfg.read_only { ", read-only" } else { "" }
    );
    let device = Arc::new(BlkDevice::new(cfg, backend.clone()));
    vblk_seccomp::configure(match a.seccomp {
        Seccomp::Kill => vblk_seccomp::Mode::Kill,
        Seccomp::Log => vblk_seccomp::Mode::Log,
        Seccomp::Off => vblk_seccomp::Mode::Off,
    })
    .map_err(|e| e.to_string())?;
    let control = match &a.control {
        Some(c) => Some(control::start(c, device.clone())?),
        None => None,
    };
    if let Some(addr) = &a.metrics_listen {
        start_metrics(addr, device.stats().clone())?;
    }

    let shutdown = Arc::new(AtomicBool::new(false));
    // The vhost-user server waits on this eventfd as well as on its socket:
    // stopping never goes through the socket path (another daemon may own
    // the path by then).
    let vu_stop = Arc::new(
        vblk_transport_vhost_user::StopSignal::new()
            .map_err(|e| format!("cannot create the stop eventfd: {e}"))?,
    );
    {
        let shutdown = shutdown.clone();
        let vu_stop = vu_stop.clone();
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        spawn_control_thread("signals", move || {
            if let Some(sig) = signals.forever().next() {
                log::info!("signal {sig}: finishing in-flight requests and shutting down");
                shutdown.store(true, Ordering::SeqCst);
                vu_stop.stop();
            }
        })?;
    }
    // Everything is open: from here on the main thread and every thread it
    // starts run under the main filter (each kind narrows it further).
    vblk_seccomp::enter(vblk_seccomp::ThreadKind::Main).map_err(|e| e.to_string())?;

    let runner = RunnerOptions {
        poll: Duration::from_micros(a.poll_us),
        max_batch: usize::from(a.batch),
        thread_hook: vblk_seccomp::thread_hook(vblk_seccomp::ThreadKind::Queue),
        ..RunnerOptions::default()
    };
    let result = if let Some(sock) = &a.vhost_user {
        let opts = vblk_transport_vhost_user::Options {
            runner: runner.clone(),
            threads: a.threads.unwrap_or(0),
        };
        vblk_transport_vhost_user::serve(device.clone(), sock, opts, vu_stop)
            .map_err(|e| e.to_string())
    } else if let Some(sock) = &a.vfio_user {
        vblk_transport_pci::serve(
            device.clone(),
            sock,
            shutdown.clone(),
            a.threads.unwrap_or(0),
            runner,
        )
        .map_err(|e| e.to_string())
    } else {
        Err("one of --vhost-user and --vfio-user is required".to_string())
    };
    // Nothing lost: make every acknowledged write durable before exiting.
    if let Err(e) = backend.flush() {
        log::error!("final flush of {} failed: {e}", backend.describe());
        return Err(format!("final flush failed: {e}"));
    }
    drop(control);
    result
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Command::Serve(a) => serve(a),
        Command::Stats(a) => control::stats(a),
        Command::Resize(a) => control::resize(a),
        Command::Bench(a) => vblk_bench::main(a),
        Command::Torture(a) => vblk_torture::cli(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vblk: {e}");
            ExitCode::FAILURE
        }
    }
}
