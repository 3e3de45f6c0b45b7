//! The vfio-user server: a thin adapter from vfio-user messages (rust-vmm
//! `vfio_user` 0.1.7) to [`PciFunction`].
//!
//! * regions: BAR0..BAR5 and config space route to the function; ROM and
//!   VGA do not exist (size 0). Nothing is mmap-able: every access is a
//!   message, so every register access is seen.
//! * DMA_MAP / DMA_UNMAP: guest RAM, mmap'ed from the client's fds into a
//!   `GuestMemoryAtomic` (maps and unmaps may come at any time).
//! * SET_IRQS: MSI-X and INTx eventfds; INTx mask/unmask, also through an
//!   eventfd (KVM's resample fd, which QEMU hands over when it runs INTx
//!   through a KVM irqfd).
//! * DEVICE_RESET: a function reset.
//!
//! Requests complete synchronously inside the REGION_WRITE of the kick, on
//! the server thread.
//!
//! Quirks met on the way:
//! * `vfio_user` 0.1.7: `Server::run` blocks in `accept` and then in
//!   `recvmsg` with no way to stop it. We hand it our own non-blocking,
//!   polled listener (`Server::from_owned_fd`) and, at shutdown, interrupt
//!   the server thread's `recvmsg` with a do-nothing real-time signal
//!   installed without SA_RESTART. It advertises `max_msg_fds: 1`, so QEMU
//!   sends one MSI-X eventfd per SET_IRQS; it rejects DATA_BOOL; it
//!   allocates a region access's `count` before we see it (we refuse
//!   accesses outside the region before touching the buffer); and it can
//!   panic on malformed messages (caught per connection).
//! * QEMU (`hw/vfio-user`, `hw/vfio/pci.c`): it emulates the MSI-X table and
//!   masking itself and only forwards PBA reads and Message Control writes;
//!   an eventfd of "-1" arrives as a SET_IRQS with a count and no fds; ROMs
//!   are DMA-mapped without an fd (unreachable, and harmless); under KVM it
//!   unmasks INTx through KVM's resample eventfd (SET_IRQS INTx
//!   ACTION_UNMASK with DATA_EVENTFD), which we watch on a thread; with no
//!   ERR irq it warns "Could not enable error recovery" at every start.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::thread::JoinHandleExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use vblk_device::{stats, BlkDevice};
use vfio_bindings::bindings::vfio::vfio_region_info;
use vfio_user::{DmaMapFlags, DmaUnmapFlags, IrqInfo, Server, ServerBackend, ServerRegion};
use vm_memory::{
    FileOffset, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap,
    GuestRegionMmap, MmapRegion,
};
use vmm_sys_util::eventfd::EventFd;

use crate::function::PciFunction;
use crate::irq::{EventFdLine, Irq, Line};
use crate::regs::pci::CONFIG_SPACE_SIZE;
use crate::regs::vfio::*;

/// Errors of the vfio-user front end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: cannot listen: {1}")]
    Listen(PathBuf, String),
    #[error("cannot create the PCI function: {0}")]
    Device(io::Error),
    #[error("the vfio-user server thread: {0}")]
    Thread(String),
}

fn einval(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

// ----------------------------------------------------------------------
// Eventfds the client asks us to watch (INTx unmask / mask)
// ----------------------------------------------------------------------

/// A thread that runs `action` each time the client signals `fd`, until
/// dropped.
struct FdWatcher {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl FdWatcher {
    fn spawn(name: &str, mut fd: File, action: impl Fn() + Send + 'static) -> io::Result<Self> {
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        let stop_rx = stop.try_clone()?;
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || loop {
                let mut fds = [
                    libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: stop_rx.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                // SAFETY: `fds` is a valid array of two pollfds for the call.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                if n < 0 {
                    if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return;
                }
                if fds[1].revents != 0 {
                    return;
                }
                if fds[0].revents & libc::POLLIN != 0 {
                    let mut b = [0u8; 8];
                    match fd.read(&mut b) {
                        Ok(0) | Err(_) => return, // not an eventfd after all, or closed
                        Ok(_) => action(),
                    }
                } else if fds[0].revents != 0 {
                    return; // POLLHUP / POLLERR / POLLNVAL
                }
            })?;
        Ok(FdWatcher {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for FdWatcher {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ----------------------------------------------------------------------
// The ServerBackend
// ----------------------------------------------------------------------

/// One client's view of the function.
pub struct Backend {
    func: PciFunction,
    /// Held while a message is handled, so shutdown can wait for it.
    busy: Arc<Mutex<()>>,
    /// Counted in `connections` yet.
    counted: bool,
    intx_unmask: Option<FdWatcher>,
    intx_mask: Option<FdWatcher>,
    /// The client's error eventfd (VFIO_PCI_ERR_IRQ_INDEX). Held, never
    /// signalled: nothing here is an unrecoverable PCI error, and QEMU would
    /// stop the VM on it. Offering it keeps QEMU from warning "Could not
    /// enable error recovery for the device" at every start.
    _err_eventfd: Option<File>,
}

impl Backend {
    pub fn new(func: PciFunction, busy: Arc<Mutex<()>>) -> Self {
        Backend {
            func,
            busy,
            counted: false,
            intx_unmask: None,
            intx_mask: None,
            _err_eventfd: None,
        }
    }

    pub fn function(&mut self) -> &mut PciFunction {
        &mut self.func
    }

    /// Count the connection on its first message that reaches us.
    fn touch(&mut self) {
        if !self.counted {
            self.counted = true;
            stats::inc(&self.func.device().stats().device.connections);
        }
    }

    /// The connection ended.
    fn finish(&mut self) {
        self.touch();
        stats::inc(&self.func.device().stats().device.disconnects);
        self.intx_unmask = None;
        self.intx_mask = None;
        self._err_eventfd = None;
    }

    fn region_size(&self, region: u32) -> u64 {
        match region {
            REGION_BAR0..=REGION_BAR5 => self.func.bar_size(region as usize),
            REGION_CONFIG => CONFIG_SPACE_SIZE as u64,
            _ => 0,
        }
    }

    /// Accesses must lie inside the region: a huge count from a confused
    /// client is refused before its buffer is touched.
    fn check_access(&self, region: u32, offset: u64, len: usize) -> io::Result<()> {
        let size = self.region_size(region);
        match offset.checked_add(len as u64) {
            Some(end) if end <= size => Ok(()),
            _ => Err(einval(format!(
                "region {region}: access of {len} bytes at {offset:#x} outside its {size:#x} bytes"
            ))),
        }
    }

    fn watch_intx(&self, fd: File, unmask: bool) -> io::Result<FdWatcher> {
        let irq: Arc<Irq> = self.func.irq().clone();
        let name = if unmask {
            "vfio-intx-unmask"
        } else {
            "vfio-intx-mask"
        };
        FdWatcher::spawn(name, fd, move || irq.set_intx_masked(!unmask))
    }

    fn set_intx(&mut self, flags: u32, count: u32, fds: Vec<File>) -> io::Result<()> {
        let irq = self.func.irq().clone();
        let data_none = flags & IRQ_SET_DATA_NONE != 0;
        let data_eventfd = flags & IRQ_SET_DATA_EVENTFD != 0;
        let fd = fds.into_iter().next();
        if flags & IRQ_SET_ACTION_TRIGGER != 0 {
            if data_eventfd && count == 1 {
                // No fd: QEMU's way of sending "-1", i.e. none.
                irq.set_intx_line(fd.map(|f| Arc::new(EventFdLine(f)) as Arc<dyn Line>));
                // A fresh trigger starts unmasked (vfio_pci_set_intx_trigger).
                irq.set_intx_masked(false);
            } else if count == 0 && (data_none || data_eventfd) {
                // INTx off: the unmask/mask eventfds go with it.
                irq.set_intx_line(None);
                self.intx_unmask = None;
                self.intx_mask = None;
            } else {
                log::debug!("vfio-user: INTx trigger {flags:#x} count {count} ignored");
            }
        } else if flags & (IRQ_SET_ACTION_MASK | IRQ_SET_ACTION_UNMASK) != 0 {
            let unmask = flags & IRQ_SET_ACTION_UNMASK != 0;
            if data_none {
                if count == 1 {
                    irq.set_intx_masked(!unmask);
                }
            } else if data_eventfd {
                // Mask / unmask whenever the client signals this eventfd: KVM
                // signals its resample fd at the guest's EOI.
                let w = match fd {
                    Some(fd) => Some(self.watch_intx(fd, unmask)?),
                    None => None,
                };
                if unmask {
                    self.intx_unmask = w;
                } else {
                    self.intx_mask = w;
                }
            }
        }
        Ok(())
    }

    fn set_msix(&mut self, flags: u32, start: u32, count: u32, fds: Vec<File>) -> io::Result<()> {
        let irq = self.func.irq().clone();
        if flags & IRQ_SET_ACTION_TRIGGER == 0 {
            // Per-vector masking is in the MSI-X table (the irq info does not
            // say MASKABLE), as for kernel vfio-pci.
            return Err(einval("MSI-X mask/unmask through SET_IRQS"));
        }
        if flags & IRQ_SET_DATA_NONE != 0 {
            if count == 0 {
                irq.clear_msix_lines();
            }
            return Ok(());
        }
        if flags & IRQ_SET_DATA_EVENTFD == 0 {
            return Err(einval("MSI-X trigger without eventfds"));
        }
        // QEMU sends runs of "-1" (no eventfd) as messages with no fds.
        if !fds.is_empty() && fds.len() != count as usize {
            return Err(einval(format!(
                "MSI-X: {} eventfds for {count} vectors",
                fds.len()
            )));
        }
        let mut fds = fds.into_iter();
        for v in start..start + count {
            let line = fds
                .next()
                .map(|f| Arc::new(EventFdLine(f)) as Arc<dyn Line>);
            irq.set_msix_line(v as usize, line);
        }
        Ok(())
    }
}

impl ServerBackend for Backend {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let busy = self.busy.clone();
        let _busy = busy.lock().unwrap_or_else(|e| e.into_inner());
        self.touch();
        self.check_access(region, offset, data.len())?;
        match region {
            REGION_CONFIG => self.func.config_read(offset, data),
            _ => self.func.bar_read(region as usize, offset, data),
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        let busy = self.busy.clone();
        let _busy = busy.lock().unwrap_or_else(|e| e.into_inner());
        self.touch();
        self.check_access(region, offset, data.len())?;
        match region {
            REGION_CONFIG => self.func.config_write(offset, data),
            _ => self.func.bar_write(region as usize, offset, data),
        }
        Ok(())
    }

    fn dma_map(
        &mut self,
        flags: DmaMapFlags,
        offset: u64,
        address: u64,
        size: u64,
        fd: Option<File>,
    ) -> io::Result<()> {
        let busy = self.busy.clone();
        let _busy = busy.lock().unwrap_or_else(|e| e.into_inner());
        self.touch();
        let Some(fd) = fd else {
            // Without a file descriptor the memory is only reachable through
            // DMA_READ/WRITE messages, which the crate does not offer. QEMU
            // maps its ROMs this way; guest RAM must come from a shared
            // memory backend.
            let msg =
                format!("vfio-user: DMA region {address:#x}+{size:#x} has no fd; not reachable");
            if size >= 16 << 20 {
                log::warn!("{msg} (guest RAM needs -object memory-backend-memfd,share=on)");
            } else {
                log::debug!("{msg}");
            }
            return Ok(());
        };
        if size == 0 {
            return Ok(());
        }
        let len = usize::try_from(size).map_err(|_| einval("DMA region too large"))?;
        address
            .checked_add(size - 1)
            .ok_or_else(|| einval("DMA region wraps"))?;
        // A region the device may only read is mapped private: a write from a
        // misbehaving driver then lands in a private copy instead of
        // faulting on a read-only mapping.
        let map_flags = if flags.contains(DmaMapFlags::WRITE) {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        let region = MmapRegion::build(
            Some(FileOffset::new(fd, offset)),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            map_flags,
        )
        .map_err(|e| io::Error::other(format!("mmap of DMA region {address:#x}+{size:#x}: {e}")))?;
        let region = GuestRegionMmap::new(region, GuestAddress(address))
            .ok_or_else(|| einval("DMA region wraps"))?;
        let atomic = self.func.memory().clone();
        let guard = atomic
            .lock()
            .map_err(|_| io::Error::other("guest memory lock poisoned"))?;
        let current = atomic.memory();
        let new = current
            .insert_region(Arc::new(region))
            .map_err(|e| einval(format!("DMA region {address:#x}+{size:#x}: {e}")))?;
        guard.replace(new);
        log::debug!("vfio-user: mapped guest memory {address:#x}+{size:#x}");
        Ok(())
    }

    fn dma_unmap(&mut self, flags: DmaUnmapFlags, address: u64, size: u64) -> io::Result<()> {
        let busy = self.busy.clone();
        let _busy = busy.lock().unwrap_or_else(|e| e.into_inner());
        self.touch();
        // No request may still point into memory the client takes back: the
        // queue threads finish their I/O first and wait until we are done.
        let _paused = self.func.pause();
        let atomic = self.func.memory().clone();
        let guard = atomic
            .lock()
            .map_err(|_| io::Error::other("guest memory lock poisoned"))?;
        if flags.contains(DmaUnmapFlags::UNMAP_ALL) {
            guard.replace(GuestMemoryMmap::new());
            return Ok(());
        }
        let current = atomic.memory();
        match current.remove_region(GuestAddress(address), size) {
            Ok((new, _)) => guard.replace(new),
            // Regions we did not map (no fd) are unmapped too.
            Err(e) => log::debug!("vfio-user: unmap of {address:#x}+{size:#x}: {e}"),
        }
        Ok(())
    }

    fn reset(&mut self) -> io::Result<()> {
        let busy = self.busy.clone();
        let _busy = busy.lock().unwrap_or_else(|e| e.into_inner());
        self.touch();
        self.intx_unmask = None;
        self.intx_mask = None;
        self._err_eventfd = None;
        self.func.function_reset();
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> io::Result<()> {
        let busy = self.busy.clone();
        let _busy = busy.lock().unwrap_or_else(|e| e.into_inner());
        self.touch();
        let available = match index {
            IRQ_INTX | IRQ_ERR => 1,
            IRQ_MSIX => self.func.msix_layout().vectors as u64,
            _ => 0,
        };
        if u64::from(start) + u64::from(count) > available {
            return Err(einval(format!(
                "SET_IRQS index {index}: vectors {start}+{count} of {available}"
            )));
        }
        match index {
            IRQ_INTX => self.set_intx(flags, count, fds),
            IRQ_MSIX => self.set_msix(flags, start, count, fds),
            IRQ_ERR => {
                if flags & IRQ_SET_ACTION_TRIGGER != 0 {
                    self._err_eventfd = fds.into_iter().next();
                }
                Ok(())
            }
            _ => Ok(()), // MSI and REQ have no vectors: only "disable" gets here
        }
    }
}

// ----------------------------------------------------------------------
// The server
// ----------------------------------------------------------------------

fn region(index: u32, size: u64) -> ServerRegion {
    ServerRegion {
        region_info: vfio_region_info {
            argsz: std::mem::size_of::<vfio_region_info>() as u32,
            flags: if size > 0 {
                REGION_FLAG_READ | REGION_FLAG_WRITE
            } else {
                0
            },
            index,
            cap_offset: 0,
            size,
            offset: 0,
        },
        sparse_areas: Vec::new(),
        mmap_fd: None,
    }
}

/// The regions and irqs a client is told about.
fn describe(func: &PciFunction) -> (Vec<ServerRegion>, Vec<IrqInfo>) {
    let regions = (0..NUM_REGIONS)
        .map(|i| match i {
            REGION_BAR0..=REGION_BAR5 => region(i, func.bar_size(i as usize)),
            REGION_CONFIG => region(i, CONFIG_SPACE_SIZE as u64),
            _ => region(i, 0), // ROM, VGA
        })
        .collect();
    let irq = |index, flags, count| IrqInfo {
        index,
        flags,
        count,
    };
    let irqs = vec![
        irq(
            IRQ_INTX,
            IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE | IRQ_INFO_AUTOMASKED,
            1,
        ),
        irq(IRQ_MSI, IRQ_INFO_EVENTFD, 0),
        irq(
            IRQ_MSIX,
            IRQ_INFO_EVENTFD | IRQ_INFO_NORESIZE,
            func.msix_layout().vectors as u32,
        ),
        irq(IRQ_ERR, IRQ_INFO_EVENTFD, 1),
        irq(IRQ_REQ, IRQ_INFO_EVENTFD, 0),
    ];
    (regions, irqs)
}

/// Bind the socket; a stale socket file from an earlier run is replaced, a
/// live one is an error.
fn listen(socket: &Path) -> Result<UnixListener, Error> {
    let err = |e: String| Error::Listen(socket.to_path_buf(), e);
    if socket.exists() {
        if UnixStream::connect(socket).is_ok() {
            return Err(err("another process is serving this socket".into()));
        }
        std::fs::remove_file(socket)
            .map_err(|e| err(format!("cannot remove the stale socket: {e}")))?;
    }
    let l = UnixListener::bind(socket).map_err(|e| err(e.to_string()))?;
    l.set_nonblocking(true).map_err(|e| err(e.to_string()))?;
    Ok(l)
}

/// Wait up to `timeout` for a client to knock. False on timeout or signal.
fn wait_readable(fd: i32, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
    n > 0
}

/// The signal that interrupts the server thread's blocking `recvmsg` at
/// shutdown: the `vfio_user` crate gives no other way to stop `run()` while
/// a client is attached.
fn wake_signal() -> libc::c_int {
    libc::SIGRTMIN() + 7
}

extern "C" fn on_wake_signal(_: libc::c_int) {}

/// Install a do-nothing handler for [`wake_signal`] without SA_RESTART, so
/// that a blocked `recvmsg`/`poll` in the thread it is sent to returns
/// EINTR. Once per process.
fn install_wake_handler() -> io::Result<()> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let r = INSTALLED.get_or_init(|| {
        // SAFETY: an all-zero sigaction is a valid value to fill in.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_wake_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = 0;
        // SAFETY: sa_mask is a sigset_t inside `sa`, which we own.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: a valid sigaction for a real-time signal; the handler does
        // nothing, so it is async-signal-safe.
        if unsafe { libc::sigaction(wake_signal(), &sa, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        Ok(())
    });
    r.map_err(io::Error::from_raw_os_error)
}

fn is_accept_error(
    r: &Result<Result<(), vfio_user::Error>, Box<dyn std::any::Any + Send>>,
) -> bool {
    matches!(r, Ok(Err(vfio_user::Error::SocketAccept(_))))
}

/// Accept clients one at a time until `shutdown`.
fn accept_loop(
    server: Server,
    listen_fd: i32,
    device: Arc<BlkDevice>,
    shutdown: Arc<AtomicBool>,
    busy: Arc<Mutex<()>>,
) -> Result<(), Error> {
    while !shutdown.load(Ordering::SeqCst) {
        if !wait_readable(listen_fd, Duration::from_millis(100)) || shutdown.load(Ordering::SeqCst)
        {
            continue;
        }
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let func = PciFunction::new(device.clone(), mem).map_err(Error::Device)?;
        let mut backend = Backend::new(func, busy.clone());
        // The vfio_user crate can panic on malformed client messages; a bad
        // client must not take the daemon down.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.run(&mut backend)));
        if is_accept_error(&r) {
            continue; // the client left between poll and accept
        }
        backend.finish();
        drop(backend); // guest memory, queues and eventfds of this client
        match r {
            _ if shutdown.load(Ordering::SeqCst) => {
                log::info!("vfio-user: shutting down; client connection closed")
            }
            Ok(Ok(())) => log::info!("vfio-user: client disconnected"),
            Ok(Err(e)) => log::warn!("vfio-user: client connection ended: {e}"),
            Err(_) => log::error!(
                "vfio-user: the client sent a message that crashed its handler; dropped it"
            ),
        }
    }
    Ok(())
}

/// Serve `device` as a virtio-blk PCI function on a vfio-user socket until
/// `shutdown` is set (checked every 50 ms). One client at a time; when it
/// disconnects its guest memory, queues and eventfds are dropped and the
/// next client is accepted with a fresh function. A client still attached
/// at shutdown is disconnected after the message in hand is handled (its
/// requests complete inside it). The socket is removed on return.
pub fn serve(
    device: Arc<BlkDevice>,
    socket: &Path,
    shutdown: Arc<AtomicBool>,
) -> Result<(), Error> {
    let probe = PciFunction::new(
        device.clone(),
        GuestMemoryAtomic::new(GuestMemoryMmap::new()),
    )
    .map_err(Error::Device)?;
    let (regions, irqs) = describe(&probe);
    drop(probe);
    install_wake_handler().map_err(|e| Error::Thread(format!("signal handler: {e}")))?;
    let listener = listen(socket)?;
    let listen_fd = listener.as_raw_fd();
    // Our listener (non-blocking, polled) instead of Server::new's, so
    // that waiting for a client can be interrupted.
    let server = Server::from_owned_fd(OwnedFd::from(listener), true, irqs, regions);
    log::info!(
        "vfio-user: serving a virtio-blk PCI function on {}",
        socket.display()
    );
    let busy = Arc::new(Mutex::new(()));
    let thread = {
        let (device, shutdown, busy) = (device.clone(), shutdown.clone(), busy.clone());
        std::thread::Builder::new()
            .name("vfio-user".into())
            .spawn(move || accept_loop(server, listen_fd, device, shutdown, busy))
            .map_err(|e| Error::Thread(e.to_string()))?
    };
    while !thread.is_finished() {
        if shutdown.load(Ordering::SeqCst) {
            // Between two messages (we hold `busy`), interrupt the thread's
            // blocking receive. Repeated until it has left: a signal that
            // lands outside a blocking call is simply lost.
            let _held = busy.lock().unwrap_or_else(|e| e.into_inner());
            if !thread.is_finished() {
                // SAFETY: the thread is not joined yet, so its pthread_t is
                // valid; the signal's handler does nothing.
                unsafe { libc::pthread_kill(thread.as_pthread_t(), wake_signal()) };
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = thread
        .join()
        .map_err(|_| Error::Thread("panicked".into()))
        .and_then(|r| r);
    let _ = std::fs::remove_file(socket);
    r
}
