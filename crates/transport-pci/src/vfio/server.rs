//! The vfio-user server: its limits, the socket, the server thread (one
//! client at a time, each with a fresh [`super::Backend`]) and shutdown.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use vblk_device::runner::RunnerOptions;
use vblk_device::BlkDevice;
use vblk_socket::BoundSocket;
use vblk_vfio_user::{Limits, Server, ServerError};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use super::{Backend, Error};
use crate::function::PciFunction;

/// What the server advertises and enforces (VERSION capabilities).
pub fn limits() -> Limits {
    Limits::default()
}

/// Serve `device` as a virtio-blk PCI function on a vfio-user socket until
/// `shutdown` is set (checked every 50 ms). One client at a time; when it
/// disconnects its guest memory, queues and eventfds are dropped and the
/// next client is accepted with a fresh function. A client still attached
/// at shutdown is disconnected after the message in hand is handled (its
/// requests complete inside it): the server thread waits on a stop eventfd
/// next to every socket wait. The socket is removed on return.
pub fn serve(
    device: Arc<BlkDevice>,
    socket: &Path,
    shutdown: Arc<AtomicBool>,
    threads: usize,
    runner: RunnerOptions,
) -> Result<(), Error> {
    // Fail early on a device the function cannot serve.
    drop(
        PciFunction::new(
            device.clone(),
            GuestMemoryAtomic::new(GuestMemoryMmap::new()),
        )
        .map_err(Error::Device)?,
    );
    // Only a stale socket is replaced; anything else at the path (a disk
    // image typed by mistake, a live daemon's socket) is refused.
    let bound = BoundSocket::bind(socket)?;
    let listener = bound
        .listener()
        .try_clone()
        .map_err(|e| Error::Listen(socket.to_path_buf(), e.to_string()))?;
    let server = Server::new(listener, limits())?;
    let stopper = server.stopper();
    log::info!(
        "vfio-user: serving a virtio-blk PCI function on {}",
        socket.display()
    );
    let thread: JoinHandle<Result<(), ServerError>> = std::thread::Builder::new()
        .name("vfio-user".into())
        .spawn(move || {
            vblk_seccomp::enter(vblk_seccomp::ThreadKind::VfioUser)
                .map_err(|e| ServerError::Io("seccomp", e))?;
            server.run(|| {
                let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
                PciFunction::with_runners(device.clone(), mem, threads, runner.clone())
                    .map(Backend::new)
            })
        })
        .map_err(|e| Error::Thread(e.to_string()))?;
    while !thread.is_finished() {
        if shutdown.load(Ordering::SeqCst) {
            stopper.stop();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = thread
        .join()
        .map_err(|_| Error::Thread("panicked".into()))
        .and_then(|r| r.map_err(Error::from));
    // The socket file goes with `bound`, if it is still ours.
    drop(bound);
    r
}
