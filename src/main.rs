//! `vblk`: a userspace virtio-blk device.
//!
//! `vblk serve` exports a disk image as a virtio-blk device over vhost-user
//! (QEMU `vhost-user-blk-pci`, Cloud Hypervisor, crosvm, libblkio) or as a
//! complete virtio-blk PCI function over vfio-user (QEMU `vfio-user-pci`).
//! `vblk stats` reads a running daemon's counters, `vblk resize` changes
//! its size online. `vblk bench` compares vblk with qemu-storage-daemon.

mod cli;
mod control;

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use cli::{
    default_serial, Aio, Cache, Cli, Command, OnOff, Seccomp, ServeArgs, VFIO_USER_QUEUE_SIZE,
    VHOST_USER_QUEUE_SIZE,
};
use vblk_backend::{parse_size, Backend, CacheMode, FileBackend, FileOptions, NullBackend};
use vblk_device::runner::RunnerOptions;
use vblk_device::{BlkConfig, BlkDevice, Stats};

fn open_backend(a: &ServeArgs) -> Result<Arc<dyn Backend>, String> {
    if vblk_backend_nbd::is_nbd_uri(&a.image) {
        if a.size.is_some() {
            return Err("--size cannot be used with an NBD export".into());
        }
        if !(a.nbd_reconnect_timeout.is_finite() && a.nbd_reconnect_timeout >= 0.0) {
            return Err("--nbd-reconnect-timeout must be a number of seconds ≥ 0".into());
        }
        let b = vblk_backend_nbd::NbdBackend::open(
            &a.image,
            vblk_backend_nbd::NbdOptions {
                reconnect_timeout: Duration::from_secs_f64(a.nbd_reconnect_timeout),
                connections: usize::from(a.num_queues),
                thread_hook: vblk_seccomp::thread_hook(vblk_seccomp::ThreadKind::Nbd),
            },
        )
        .map_err(|e| e.to_string())?;
        return Ok(Arc::new(b));
    }
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
    // Compiled first: backends that start threads (NBD) install their
    // thread kind's filter in them.
    vblk_seccomp::configure(match a.seccomp {
        Seccomp::Kill => vblk_seccomp::Mode::Kill,
        Seccomp::Log => vblk_seccomp::Mode::Log,
        Seccomp::Off => vblk_seccomp::Mode::Off,
    })
    .map_err(|e| e.to_string())?;
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
