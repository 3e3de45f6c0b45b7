//! The vfio-user front end: [`Backend`] adapts vfio-user requests (served
//! by our own `vblk-vfio-user` layer) to [`PciFunction`], and [`serve`]
//! runs the server.
//!
//! * regions: BAR0..BAR5 and config space route to the function; ROM and
//!   VGA do not exist (size 0). Nothing is mmap-able: every access is a
//!   message, so every register access is seen.
//! * DMA_MAP / DMA_UNMAP: guest RAM, mapped from the client's fds through
//!   `vblk_memory::map_guest_region` (size checked against the file, fd
//!   seals read, read-only regions `MAP_SHARED` + `PROT_READ`, faults
//!   contained) into a `GuestMemoryAtomic`. Maps may come at any time;
//!   overlapping ones are refused (EEXIST) and an unmap must name exactly
//!   one earlier map (EINVAL otherwise), as the spec says.
//! * SET_IRQS: MSI-X and INTx eventfds; INTx mask/unmask, also through an
//!   eventfd (KVM's resample fd, which QEMU hands over when it runs INTx
//!   through a KVM irqfd).
//! * DEVICE_RESET: a function reset.
//!
//! Requests complete synchronously inside the REGION_WRITE of the kick, on
//! the server thread.
//!
//! Quirks met on the way:
//! * QEMU (`hw/vfio-user`, `hw/vfio/pci.c`): it emulates the MSI-X table and
//!   masking itself and only forwards PBA reads and Message Control writes;
//!   an eventfd of "-1" arrives as a SET_IRQS with a count and no fds; ROMs
//!   are DMA-mapped without an fd (unreachable, and harmless); under KVM it
//!   unmasks INTx through KVM's resample eventfd (SET_IRQS INTx
//!   ACTION_UNMASK with DATA_EVENTFD), which we watch on a thread; with no
//!   ERR irq it warns "Could not enable error recovery" at every start. It
//!   sends up to `max_msg_fds` eventfds per SET_IRQS (we offer 16, its
//!   maximum) and never sends DEVICE_GET_REGION_IO_FDS (hw/vfio-user has no
//!   caller), so kicks arrive as REGION_WRITEs.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use vblk_device::runner::RunnerOptions;
use vblk_device::{stats, BlkDevice};
use vblk_memory::{map_guest_region, GuestMapping};
use vblk_socket::BoundSocket;
use vblk_vfio_user::proto::{DEVICE_FLAGS_PCI, DEVICE_FLAGS_RESET};
use vblk_vfio_user::{
    refuse, DeviceInfo, DmaMapFlags, DmaUnmapFlags, IrqInfo, Limits, RegionInfo, Server,
    ServerError,
};
use vm_memory::{GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use crate::function::PciFunction;
use crate::irq::{EventFdLine, Irq, Line};
use crate::regs::pci::CONFIG_SPACE_SIZE;
use crate::regs::status::{DEVICE_NEEDS_RESET, DRIVER_OK};
use crate::regs::vfio::*;

/// Errors of the vfio-user front end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: cannot listen: {1}")]
    Listen(PathBuf, String),
    #[error(transparent)]
    Socket(#[from] vblk_socket::SocketError),
    #[error("cannot create the PCI function: {0}")]
    Device(io::Error),
    #[error("the vfio-user server thread: {0}")]
    Thread(String),
}

impl From<ServerError> for Error {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::Listen(p, m) => Error::Listen(p, m),
            ServerError::Backend(e) => Error::Device(e),
            e @ ServerError::Io(..) => Error::Thread(e.to_string()),
        }
    }
}

fn einval(msg: impl Into<String>) -> io::Error {
    refuse(libc::EINVAL, msg)
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
// The backend
// ----------------------------------------------------------------------

/// One DMA window the client mapped.
struct DmaEntry {
    address: u64,
    size: u64,
    /// None: mapped without an fd (not reachable; kept so that its unmap
    /// matches).
    mapping: Option<GuestMapping>,
}

/// One client's view of the function.
pub struct Backend {
    func: PciFunction,
    /// Counted in `connections` yet.
    counted: bool,
    dma: Vec<DmaEntry>,
    intx_unmask: Option<FdWatcher>,
    intx_mask: Option<FdWatcher>,
    /// The client's error eventfd (VFIO_PCI_ERR_IRQ_INDEX). Held, never
    /// signalled: nothing here is an unrecoverable PCI error, and QEMU would
    /// stop the VM on it. Offering it keeps QEMU from warning "Could not
    /// enable error recovery for the device" at every start.
    _err_eventfd: Option<File>,
}

impl Backend {
    pub fn new(func: PciFunction) -> Self {
        Backend {
            func,
            counted: false,
            dma: Vec::new(),
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

    /// Accesses must lie inside the region (the session checks this too;
    /// the adapter does not rely on it).
    fn check_access(&self, region: u32, offset: u64, len: usize) -> io::Result<()> {
        let size = self.region_size(region);
        match offset.checked_add(len as u64) {
            Some(end) if end <= size => Ok(()),
            _ => Err(einval(format!(
                "region {region}: access of {len} bytes at {offset:#x} outside its {size:#x} bytes"
            ))),
        }
    }

    /// A guest mapping broke under the device (its file shrank, or the
    /// device wrote a read-only region): the fault was contained, the
    /// bytes the device saw or wrote are scratch. "The device SHOULD set
    /// DEVICE_NEEDS_RESET when it enters an error state that a reset is
    /// needed" — and again after each re-initialisation while the client
    /// keeps the broken mapping.
    ///
    /// The queue threads make the same check after each round (a contained
    /// fault breaks their ring, which raises DEVICE_NEEDS_RESET with a
    /// configuration interrupt); this one covers accesses from this thread
    /// and names the mapping.
    fn check_guest_memory(&mut self) {
        let status = self.func.status();
        if status & DRIVER_OK == 0 || status & DEVICE_NEEDS_RESET != 0 {
            return;
        }
        let broken = self.dma.iter().find_map(|e| {
            let m = e.mapping.as_ref()?;
            let f = m.faults();
            (!f.none()).then(|| format!("guest memory {:#x}+{:#x}: {f}", e.address, e.size))
        });
        if let Some(why) = broken {
            self.func.needs_reset(&why);
        }
    }

    /// Replace the guest memory with `f(current)`.
    fn update_memory(
        &self,
        f: impl FnOnce(&GuestMemoryMmap) -> io::Result<GuestMemoryMmap>,
    ) -> io::Result<()> {
        let atomic = self.func.memory().clone();
        let guard = atomic
            .lock()
            .map_err(|_| io::Error::other("guest memory lock poisoned"))?;
        let current = atomic.memory();
        let new = f(&current)?;
        guard.replace(new);
        // `current` (the old snapshot) drops here, before the caller drops
        // any GuestMapping: its region is then no longer referenced.
        Ok(())
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

impl vblk_vfio_user::Backend for Backend {
    fn device_info(&self) -> DeviceInfo {
        DeviceInfo {
            flags: DEVICE_FLAGS_PCI | DEVICE_FLAGS_RESET,
            num_regions: NUM_REGIONS,
            num_irqs: IRQ_REQ + 1,
        }
    }

    fn region_info(&self, index: u32) -> Option<RegionInfo> {
        if index >= NUM_REGIONS {
            return None;
        }
        let size = self.region_size(index);
        Some(RegionInfo {
            flags: if size > 0 {
                REGION_FLAG_READ | REGION_FLAG_WRITE
            } else {
                0
            },
            size,
        })
    }

    fn irq_info(&self, index: u32) -> Option<IrqInfo> {
        let (flags, count) = match index {
            IRQ_INTX => (
                IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE | IRQ_INFO_AUTOMASKED,
                1,
            ),
            IRQ_MSI => (IRQ_INFO_EVENTFD, 0),
            IRQ_MSIX => (
                IRQ_INFO_EVENTFD | IRQ_INFO_NORESIZE,
                self.func.msix_layout().vectors as u32,
            ),
            IRQ_ERR => (IRQ_INFO_EVENTFD, 1),
            IRQ_REQ => (IRQ_INFO_EVENTFD, 0),
            _ => return None,
        };
        Some(IrqInfo { flags, count })
    }

    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        self.touch();
        self.check_access(region, offset, data.len())?;
        if data.is_empty() {
            return Ok(()); // nothing to read (and no read side effect, e.g. ISR)
        }
        match region {
            REGION_CONFIG => self.func.config_read(offset, data),
            _ => self.func.bar_read(region as usize, offset, data),
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        self.touch();
        self.check_access(region, offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        match region {
            REGION_CONFIG => self.func.config_write(offset, data),
            _ => self.func.bar_write(region as usize, offset, data),
        }
        // A kick may have run into a broken guest mapping.
        self.check_guest_memory();
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
        self.touch();
        let end = address
            .checked_add(size)
            .filter(|_| size > 0)
            .ok_or_else(|| einval("DMA region empty or wrapping"))?;
        // "A command to map over an existing region must be failed by the
        // server with EEXIST set in error field in the reply."
        if let Some(e) = self
            .dma
            .iter()
            .find(|e| address < e.address.saturating_add(e.size) && e.address < end)
        {
            return Err(refuse(
                libc::EEXIST,
                format!(
                    "DMA region {address:#x}+{size:#x} overlaps {:#x}+{:#x}",
                    e.address, e.size
                ),
            ));
        }
        let Some(fd) = fd else {
            // Without a file descriptor the memory is only reachable through
            // DMA_READ/WRITE messages, which we do not use. QEMU maps its
            // ROMs this way; guest RAM must come from a shared memory
            // backend.
            let msg =
                format!("vfio-user: DMA region {address:#x}+{size:#x} has no fd; not reachable");
            if size >= 16 << 20 {
                log::warn!("{msg} (guest RAM needs -object memory-backend-memfd,share=on)");
            } else {
                log::debug!("{msg}");
            }
            self.dma.push(DmaEntry {
                address,
                size,
                mapping: None,
            });
            return Ok(());
        };
        // Read-only regions are mapped MAP_SHARED + PROT_READ: the device
        // sees the client's current bytes and can never write them (a
        // device write is a contained fault; see check_guest_memory).
        let writable = flags.contains(DmaMapFlags::WRITE);
        let mapping = map_guest_region(fd, offset, size, GuestAddress(address), writable)
            .map_err(|e| refuse(e.errno(), format!("DMA region {address:#x}+{size:#x}: {e}")))?;
        let region = mapping.region();
        self.update_memory(|cur| {
            cur.insert_region(region).map_err(|e| {
                refuse(
                    libc::EEXIST,
                    format!("DMA region {address:#x}+{size:#x}: {e}"),
                )
            })
        })?;
        log::debug!(
            "vfio-user: mapped guest memory {address:#x}+{size:#x}{}{}",
            if writable { "" } else { " read-only" },
            if mapping.sealed() {
                ""
            } else {
                " (fd not sealed)"
            }
        );
        self.dma.push(DmaEntry {
            address,
            size,
            mapping: Some(mapping),
        });
        self.func.memory_added();
        Ok(())
    }

    fn dma_unmap(&mut self, flags: DmaUnmapFlags, address: u64, size: u64) -> io::Result<()> {
        self.touch();
        // "if the file descriptor is mapped then the server must release
        // all references to that DMA region before replying, which
        // potentially includes in-flight DMA transactions": the queue
        // threads finish their I/O, drop their memory snapshot and wait
        // until the memory table has changed.
        let _paused = self.func.pause();
        if flags.contains(DmaUnmapFlags::UNMAP_ALL) {
            self.update_memory(|_| Ok(GuestMemoryMmap::new()))?;
            self.dma.clear(); // munmap, now that nothing references them
            return Ok(());
        }
        // "The address and size of the DMA region being unmapped must match
        // exactly a previous mapping."
        let i = self
            .dma
            .iter()
            .position(|e| e.address == address && e.size == size)
            .ok_or_else(|| {
                einval(format!(
                    "DMA_UNMAP {address:#x}+{size:#x} does not match a mapping exactly"
                ))
            })?;
        if self.dma.get(i).is_some_and(|e| e.mapping.is_some()) {
            self.update_memory(|cur| {
                cur.remove_region(GuestAddress(address), size)
                    .map(|(new, _)| new)
                    .map_err(|e| einval(format!("DMA_UNMAP {address:#x}+{size:#x}: {e}")))
            })?;
        }
        self.dma.remove(i); // munmap, now that nothing references it
        Ok(())
    }

    fn reset(&mut self) -> io::Result<()> {
        self.touch();
        // The function reset stops the queue threads (each finishes its
        // in-flight requests) before queues, vectors and eventfds go.
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

    fn disconnected(&mut self) {
        self.finish();
    }
}

// ----------------------------------------------------------------------
// The server
// ----------------------------------------------------------------------

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
