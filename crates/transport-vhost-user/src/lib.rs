//! vhost-user-blk: the device core behind a vhost-user socket.
//!
//! The front end (QEMU, Cloud Hypervisor, crosvm, libblkio) owns the guest
//! and its rings; it shares guest memory and hands us one kick eventfd and one
//! call eventfd per queue. Here a kick becomes [`QueueWorker::process`] on the
//! queue's own thread, and the core's interrupt decision becomes a write to
//! the call eventfd. The rust-vmm `vhost-user-backend` crate speaks the
//! protocol; this crate only adapts it to the device core.

use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vblk_device::{stats, BlkDevice, QueueWorker};
use vblk_interrupt::{Interrupt, InterruptKind};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::Listener;
pub use vhost_user_backend::ShutdownHandle;
use vhost_user_backend::{VhostUserBackend, VhostUserDaemon, VringRwLock, VringT};
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

/// Errors of the vhost-user front end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {0}: {1}")]
    Listen(PathBuf, vhost::vhost_user::Error),
    #[error("cannot create the vhost-user daemon: {0}")]
    Daemon(vhost_user_backend::Error),
    #[error("cannot create a queue worker: {0}")]
    Worker(io::Error),
}

/// Options of the vhost-user front end.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Busy-poll the avail ring for up to this long after a drain before
    /// going back to sleep on the kick eventfd (0 = off).
    pub poll: Duration,
    /// Worker threads; queue i is served by thread i % threads (0 = one per queue).
    pub threads: usize,
}

/// Maps the core's interrupt requests to a vhost-user call eventfd.
///
/// It holds the raw descriptor of the queue's call eventfd, read while the
/// vring lock is held: `SET_VRING_CALL` needs that lock to replace it, so the
/// descriptor stays open for as long as this value is used.
struct CallFd<'a> {
    fd: Option<RawFd>,
    index: u16,
    device: &'a BlkDevice,
}

impl Interrupt for CallFd<'_> {
    fn trigger(&self, kind: InterruptKind) -> io::Result<()> {
        match kind {
            InterruptKind::Queue(n) if n == self.index => {
                let Some(fd) = self.fd else {
                    // No call eventfd: the front end polls the used ring.
                    return Ok(());
                };
                stats::inc(&self.device.stats().queue(usize::from(n)).eventfd_signals);
                let one: u64 = 1;
                // SAFETY: writes 8 bytes from a live u64 to an eventfd that stays
                // open while the vring lock is held (see above).
                let r = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
                if r == 8 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            }
            InterruptKind::Queue(_) => Ok(()),
            // Config-change interrupts need the backend request channel;
            // vblk's vhost-user device config never changes at run time.
            InterruptKind::Config => Ok(()),
        }
    }
}

struct QueueState {
    worker: QueueWorker,
    /// Current busy-poll window (adaptive, at most `Options::poll`).
    poll_window: Duration,
    /// The ring is broken (the core refused it); ignore kicks until reset.
    broken: bool,
}

struct Inner {
    device: Arc<BlkDevice>,
    opts: Options,
    queues: Vec<Mutex<QueueState>>,
    mem: Mutex<Option<GuestMemoryAtomic<GuestMemoryMmap>>>,
    event_idx: AtomicBool,
    acked: Mutex<u64>,
}

/// The `VhostUserBackend` implementation: one per front-end connection.
#[derive(Clone)]
pub struct BlkBackend {
    inner: Arc<Inner>,
}

impl BlkBackend {
    pub fn new(device: Arc<BlkDevice>, opts: Options) -> Result<Self, Error> {
        let queues = (0..device.num_queues())
            .map(|i| {
                device.worker(i).map(|worker| {
                    Mutex::new(QueueState {
                        worker,
                        poll_window: opts.poll,
                        broken: false,
                    })
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::Worker)?;
        Ok(BlkBackend {
            inner: Arc::new(Inner {
                device,
                opts,
                queues,
                mem: Mutex::new(None),
                event_idx: AtomicBool::new(false),
                acked: Mutex::new(0),
            }),
        })
    }

    /// Serve queue `index`, whose vring is `vring`.
    fn serve_queue(&self, index: usize, vring: &VringRwLock) -> io::Result<()> {
        let inner = &self.inner;
        let Some(qs) = inner.queues.get(index) else {
            return Ok(());
        };
        let Some(atomic) = inner.mem.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            log::warn!("queue {index}: kick before the guest memory table; ignored");
            return Ok(());
        };
        let mem = atomic.memory();
        let mut qs = qs.lock().unwrap_or_else(|e| e.into_inner());
        if qs.broken {
            return Ok(());
        }
        let mut state = vring.get_mut();
        let irq = CallFd {
            fd: state.get_call().as_ref().map(|n| n.as_raw_fd()),
            index: index as u16,
            device: &inner.device,
        };
        let queue = state.get_queue_mut();
        let poll = inner.opts.poll;
        loop {
            if let Err(e) = qs.worker.process(queue, &*mem, &irq) {
                log::error!("{e}; queue {index} stops until the front end resets it");
                stats::inc(&inner.device.stats().device.needs_reset);
                qs.broken = true;
                return Ok(());
            }
            if poll.is_zero() {
                return Ok(());
            }
            // Poll: keep kicks off and watch the avail ring for a while.
            if queue.disable_notification(&*mem).is_err() {
                return Ok(());
            }
            // Adaptive window: a poll that finds work doubles it (up to
            // --poll-us), one that times out halves it (down to 1/16), so an
            // idle queue does not burn a core.
            let deadline = Instant::now() + qs.poll_window;
            let mut found = false;
            while Instant::now() < deadline {
                if vblk_queue::has_pending(queue, &*mem).unwrap_or(false) {
                    found = true;
                    break;
                }
                std::hint::spin_loop();
            }
            qs.poll_window = if found {
                (qs.poll_window * 2).min(poll)
            } else {
                (qs.poll_window / 2).max(poll / 16)
            };
            if !found {
                // Re-arm kicks; a chain that raced in is served at once.
                match queue.enable_notification(&*mem) {
                    Ok(true) => continue,
                    _ => return Ok(()),
                }
            }
        }
    }
}

impl VhostUserBackend for BlkBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        self.inner.queues.len()
    }

    fn max_queue_size(&self) -> usize {
        usize::from(self.inner.device.config().queue_size)
    }

    fn features(&self) -> u64 {
        self.inner.device.features() | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn acked_features(&self, features: u64) {
        *self.inner.acked.lock().unwrap_or_else(|e| e.into_inner()) = features;
        log::debug!("driver accepted features {features:#x}");
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
            | VhostUserProtocolFeatures::REPLY_ACK
    }

    fn reset_device(&self) {
        stats::inc(&self.inner.device.stats().device.resets);
        for q in &self.inner.queues {
            q.lock().unwrap_or_else(|e| e.into_inner()).broken = false;
        }
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        // GET_VRING_BASE stops the ring (a guest reset, a VM stop): when the
        // front end starts it again it is a fresh ring, so a queue refused as
        // broken is served again.
        if let Some(q) = self.inner.queues.get(queue_index as usize) {
            q.lock().unwrap_or_else(|e| e.into_inner()).broken = false;
        }
        Ok(())
    }

    fn set_event_idx(&self, enabled: bool) {
        self.inner.event_idx.store(enabled, Ordering::Relaxed);
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let mut buf = vec![0u8; size.min(4096) as usize];
        self.inner.device.read_config(u64::from(offset), &mut buf);
        buf
    }

    fn set_config(&self, _offset: u32, _buf: &[u8]) -> io::Result<()> {
        // Nothing in virtio_blk_config is writable without CONFIG_WCE.
        stats::inc(&self.inner.device.stats().device.bad_register_writes);
        Ok(())
    }

    fn update_memory(&self, mem: GuestMemoryAtomic<GuestMemoryMmap>) -> io::Result<()> {
        *self.inner.mem.lock().unwrap_or_else(|e| e.into_inner()) = Some(mem);
        Ok(())
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        // Queue i on thread i % threads (default: one thread per queue).
        let n = self.inner.queues.len();
        let t = match self.inner.opts.threads {
            0 => n,
            t => t.min(n),
        };
        (0..t)
            .map(|th| {
                (0..n)
                    .filter(|q| q % t == th)
                    .fold(0u64, |m, q| m | (1u64 << q))
            })
            .collect()
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK).ok()
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock],
        thread_id: usize,
    ) -> io::Result<()> {
        log::trace!("queue event {device_event} {evset:?}");
        if evset != EventSet::IN {
            return Ok(());
        }
        // `device_event` is the position of the vring among this thread's
        // vrings (`vrings`), not the queue index: map it back.
        let Some(index) = queue_of(
            &self.queues_per_thread(),
            thread_id,
            usize::from(device_event),
        ) else {
            return Ok(());
        };
        let Some(vring) = vrings.get(usize::from(device_event)) else {
            return Ok(());
        };
        if index >= self.inner.queues.len() {
            return Ok(());
        }
        stats::inc(&self.inner.device.stats().queue(index).notify_eventfd);
        self.serve_queue(index, vring)
    }
}

/// The queue index of the `nth` vring served by thread `thread` under the
/// `queues_per_thread` masks.
fn queue_of(masks: &[u64], thread: usize, nth: usize) -> Option<usize> {
    let mask = *masks.get(thread)?;
    (0..64).filter(|b| mask & (1u64 << b) != 0).nth(nth)
}

/// Serve `device` on a vhost-user socket until `shutdown` is set. One front
/// end at a time; when it disconnects, the next one is accepted on the same
/// socket. The socket is removed on return.
pub fn serve(
    device: Arc<BlkDevice>,
    socket: &Path,
    opts: Options,
    shutdown: Arc<AtomicBool>,
    handle: Arc<Mutex<Option<ShutdownHandle>>>,
) -> Result<(), Error> {
    let mut listener =
        Listener::new(socket, true).map_err(|e| Error::Listen(socket.to_path_buf(), e))?;
    log::info!("vhost-user-blk: listening on {}", socket.display());
    let result = loop {
        if shutdown.load(Ordering::SeqCst) {
            break Ok(());
        }
        let backend = BlkBackend::new(device.clone(), opts.clone())?;
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let mut daemon =
            VhostUserDaemon::new("vblk".to_string(), backend, mem).map_err(Error::Daemon)?;
        if let Err(e) = daemon.start(&mut listener) {
            if shutdown.load(Ordering::SeqCst) {
                break Ok(());
            }
            log::warn!("vhost-user: accepting a front end failed: {e}");
            continue;
        }
        if shutdown.load(Ordering::SeqCst) {
            break Ok(());
        }
        stats::inc(&device.stats().device.connections);
        log::info!("vhost-user: front end connected");
        *handle.lock().unwrap_or_else(|e| e.into_inner()) = daemon.shutdown_handle();
        if shutdown.load(Ordering::SeqCst) {
            daemon.request_shutdown();
        }
        match daemon.wait() {
            Ok(()) => log::info!("vhost-user: front end disconnected"),
            Err(vhost_user_backend::Error::HandleRequest(
                vhost::vhost_user::Error::Disconnected | vhost::vhost_user::Error::PartialMessage,
            )) => log::info!("vhost-user: front end disconnected"),
            Err(e) => log::warn!("vhost-user: connection ended: {e}"),
        }
        *handle.lock().unwrap_or_else(|e| e.into_inner()) = None;
        stats::inc(&device.stats().device.disconnects);
        // Dropping the daemon stops and joins the queue threads, after any
        // request they were executing has completed.
        drop(daemon);
    };
    let _ = std::fs::remove_file(socket);
    result
}

/// Wake a `serve` loop blocked in accept (used on shutdown).
pub fn wake(socket: &Path) {
    let _ = UnixStream::connect(socket);
}

#[cfg(test)]
mod tests {
    use super::queue_of;

    #[test]
    fn thread_local_event_maps_to_queue() {
        let one_each = [1, 2, 4, 8];
        assert_eq!(queue_of(&one_each, 2, 0), Some(2));
        assert_eq!(queue_of(&one_each, 2, 1), None);
        let shared = [0b0101, 0b1010];
        assert_eq!(queue_of(&shared, 0, 1), Some(2));
        assert_eq!(queue_of(&shared, 1, 1), Some(3));
        assert_eq!(queue_of(&shared, 5, 0), None);
    }
}
