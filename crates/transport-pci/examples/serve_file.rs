//! Serve an image file as a virtio-blk PCI function over vfio-user, without
//! the vblk CLI (for testing the transport on its own).
//!
//! ```text
//! cargo run -p vblk-transport-pci --example serve_file -- disk.img /tmp/vblk-pci.sock [SIZE_MiB] [QUEUES]
//! qemu-system-x86_64 ... -object memory-backend-memfd,id=mem,size=512M,share=on \
//!     -machine memory-backend=mem \
//!     -device '{"driver":"vfio-user-pci","socket":{"path":"/tmp/vblk-pci.sock","type":"unix"}}'
//! ```
//! The image is created (sparse, SIZE_MiB, default 64) if missing. Ctrl-C or
//! SIGTERM stops it: the socket is removed and the image flushed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vblk_backend::{Backend, FileBackend, FileOptions};
use vblk_device::{BlkConfig, BlkDevice};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        return Err("usage: serve_file IMAGE SOCKET [SIZE_MiB] [QUEUES]".into());
    }
    let (image, socket) = (PathBuf::from(&args[0]), PathBuf::from(&args[1]));
    let size_mib: u64 = args
        .get(2)
        .map_or(Ok(64), |s| s.parse())
        .map_err(|e| format!("SIZE_MiB: {e}"))?;
    let queues: u16 = args
        .get(3)
        .map_or(Ok(1), |s| s.parse())
        .map_err(|e| format!("QUEUES: {e}"))?;
    let backend = FileBackend::open(
        &image,
        FileOptions {
            create_size: Some(size_mib << 20),
            io_uring: true,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let mut cfg = BlkConfig::new(backend.capacity());
    cfg.num_queues = queues;
    cfg.set_serial("vblk-example");
    let device = Arc::new(BlkDevice::new(cfg, backend.clone()));

    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
    let shutdown = Arc::new(AtomicBool::new(false));
    {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || loop {
            if STOP.load(Ordering::SeqCst) {
                shutdown.store(true, Ordering::SeqCst);
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        });
    }
    eprintln!(
        "serving {} ({} MiB, {queues} queue(s)) on {}",
        image.display(),
        backend.capacity() >> 20,
        socket.display()
    );
    vblk_transport_pci::serve(device.clone(), &socket, shutdown, 0, Default::default())
        .map_err(|e| e.to_string())?;
    backend.flush().map_err(|e| format!("final flush: {e}"))?;
    let s = device.stats();
    eprintln!(
        "done: {} connection(s), {} legacy / {} modern kicks",
        s.device.connections.load(Ordering::Relaxed),
        s.queues
            .iter()
            .map(|q| q.notify_legacy.load(Ordering::Relaxed))
            .sum::<u64>(),
        s.queues
            .iter()
            .map(|q| q.notify_modern.load(Ordering::Relaxed))
            .sum::<u64>(),
    );
    Ok(())
}
