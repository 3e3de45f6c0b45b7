//! The vfio-user server: a thin adapter from vfio-user messages (rust-vmm
//! `vfio_user`) to [`PciFunction`]. Regions are the BARs and config space;
//! DMA maps become guest memory; SET_IRQS hands over MSI-X and INTx eventfds.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vblk_device::{stats, BlkDevice};
use vfio_bindings::bindings::vfio::vfio_region_info;
use vfio_user::{DmaMapFlags, DmaUnmapFlags, IrqInfo, Server, ServerBackend, ServerRegion};
use vm_memory::{
    FileOffset, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap,
    GuestRegionMmap, MmapRegion,
};

use crate::device::PciFunction;
use crate::irq::{EventFdLine, Line};
use crate::regs::vfio::*;

/// Errors of the vfio-user front end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: cannot listen: {1}")]
    Listen(PathBuf, String),
    #[error("cannot create the PCI function: {0}")]
    Device(io::Error),
}

struct Backend {
    func: PciFunction,
    /// Held while a message is handled, so shutdown can wait for it.
    busy: Arc<std::sync::Mutex<()>>,
}

fn einval(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

impl ServerBackend for Backend {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        let busy = self.busy.clone();
        let _busy = busy.lock().unwrap_or_else(|e| e.into_inner());
        match region {
            REGION_CONFIG => self.func.config_read(offset, data),
            r if r < 6 => self.func.bar_read(r as usize, offset, data),
            _ => data.fill(0),
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        let busy = self.busy.clone();
        let _busy = busy.lock().unwrap_or_else(|e| e.into_inner());
        match region {
            REGION_CONFIG => self.func.config_write(offset, data),
            r if r < 6 => self.func.bar_write(r as usize, offset, data),
            _ => {}
        }
        Ok(())
    }

    fn dma_map(
        &mut self,
        _flags: DmaMapFlags,
        offset: u64,
        address: u64,
        size: u64,
        fd: Option<File>,
    ) -> io::Result<()> {
        let Some(fd) = fd else {
            // Without a file descriptor the memory is only reachable through
            // DMA messages, which this device does not use.
            log::warn!(
                "vfio-user: DMA region {address:#x}+{size:#x} without a file descriptor ignored"
            );
            return Ok(());
        };
        let len = usize::try_from(size).map_err(|_| einval("DMA region too large"))?;
        address
            .checked_add(size)
            .ok_or_else(|| einval("DMA region wraps"))?;
        let region = MmapRegion::build(
            Some(FileOffset::new(fd, offset)),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
        .map_err(|e| io::Error::other(format!("mmap of DMA region failed: {e}")))?;
        let region = GuestRegionMmap::new(region, GuestAddress(address))
            .ok_or_else(|| einval("DMA region wraps"))?;
        let atomic = self.func.memory();
        let guard = atomic
            .lock()
            .map_err(|_| io::Error::other("memory lock poisoned"))?;
        let current = atomic.memory();
        let new = current
            .insert_region(Arc::new(region))
            .map_err(|e| einval(&format!("DMA region {address:#x}+{size:#x}: {e}")))?;
        guard.replace(new);
        log::debug!("vfio-user: mapped guest memory {address:#x}+{size:#x}");
        Ok(())
    }

    fn dma_unmap(&mut self, _flags: DmaUnmapFlags, address: u64, size: u64) -> io::Result<()> {
        let atomic = self.func.memory();
        let guard = atomic
            .lock()
            .map_err(|_| io::Error::other("memory lock poisoned"))?;
        let current = atomic.memory();
        match current.remove_region(GuestAddress(address), size) {
            Ok((new, _)) => {
                guard.replace(new);
                Ok(())
            }
            Err(e) => {
                log::debug!("vfio-user: unmap of {address:#x}+{size:#x}: {e}");
                Ok(())
            }
        }
    }

    fn reset(&mut self) -> io::Result<()> {
        self.func.reset();
        self.func.irq().reset_all();
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
        let irq = self.func.irq().clone();
        let data_none = flags & IRQ_SET_DATA_NONE != 0;
        let data_eventfd = flags & IRQ_SET_DATA_EVENTFD != 0;
        match index {
            IRQ_INTX => {
                if flags & IRQ_SET_ACTION_MASK != 0 {
                    irq.set_intx_masked(true);
                } else if flags & IRQ_SET_ACTION_UNMASK != 0 {
                    irq.set_intx_masked(false);
                } else if flags & IRQ_SET_ACTION_TRIGGER != 0 {
                    if data_eventfd {
                        let line = fds
                            .into_iter()
                            .next()
                            .map(|f| Arc::new(EventFdLine(f)) as Arc<dyn Line>);
                        irq.set_intx_line(line);
                        irq.set_intx_masked(false);
                    } else if data_none && count == 0 {
                        irq.set_intx_line(None);
                    }
                }
            }
            IRQ_MSIX => {
                if flags & IRQ_SET_ACTION_TRIGGER == 0 {
                    return Ok(()); // per-vector masking is done through the table
                }
                if data_none && count == 0 {
                    irq.clear_msix_lines();
                    return Ok(());
                }
                if data_eventfd {
                    let mut fds = fds.into_iter();
                    for v in start..start.saturating_add(count) {
                        let line = fds
                            .next()
                            .map(|f| Arc::new(EventFdLine(f)) as Arc<dyn Line>);
                        irq.set_msix_line(v as usize, line);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The vfio_user server blocks on its client's socket; if a client is still
/// attached a moment after shutdown was asked for, wait for the message being
/// handled (requests complete synchronously inside it), flush, remove the
/// socket and exit 0.
fn spawn_shutdown_watch(
    device: Arc<BlkDevice>,
    socket: PathBuf,
    shutdown: Arc<AtomicBool>,
    busy: Arc<std::sync::Mutex<()>>,
) {
    let _ = std::thread::Builder::new()
        .name("vfio-user-shutdown".into())
        .spawn(move || {
            while !shutdown.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
            let _held = busy.lock().unwrap_or_else(|e| e.into_inner());
            log::info!("vfio-user: client still attached at shutdown; closing it");
            let code = match device.backend().flush() {
                Ok(()) => 0,
                Err(e) => {
                    log::error!("final flush failed: {e}");
                    1
                }
            };
            let _ = std::fs::remove_file(&socket);
            std::process::exit(code);
        });
}

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

/// Serve `device` as a virtio-blk PCI function on a vfio-user socket until
/// `shutdown` is set. One client at a time; when it disconnects the device
/// is reset and the next one accepted. The socket is removed on return.
pub fn serve(
    device: Arc<BlkDevice>,
    socket: &Path,
    shutdown: Arc<AtomicBool>,
) -> Result<(), Error> {
    if socket.exists() {
        // A stale socket from an earlier run (a live one would answer).
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(Error::Listen(
                socket.to_path_buf(),
                "another process is serving this socket".into(),
            ));
        }
        let _ = std::fs::remove_file(socket);
    }
    let probe = PciFunction::new(
        device.clone(),
        GuestMemoryAtomic::new(GuestMemoryMmap::new()),
    )
    .map_err(Error::Device)?;
    let regions: Vec<ServerRegion> = (0..NUM_REGIONS)
        .map(|i| match i {
            0..=5 => region(i, probe.bar_size(i as usize)),
            REGION_CONFIG => region(i, crate::regs::pci::CONFIG_SPACE_SIZE as u64),
            _ => region(i, 0),
        })
        .collect();
    let vectors = probe.irq().vectors() as u32;
    drop(probe);
    let irqs = vec![
        IrqInfo {
            index: IRQ_INTX,
            flags: IRQ_INFO_EVENTFD | IRQ_INFO_MASKABLE | IRQ_INFO_AUTOMASKED,
            count: 1,
        },
        IrqInfo {
            index: IRQ_MSI,
            flags: IRQ_INFO_EVENTFD,
            count: 0,
        },
        IrqInfo {
            index: IRQ_MSIX,
            flags: IRQ_INFO_EVENTFD | IRQ_INFO_NORESIZE,
            count: vectors,
        },
        IrqInfo {
            index: IRQ_ERR,
            flags: IRQ_INFO_EVENTFD,
            count: 0,
        },
        IrqInfo {
            index: IRQ_REQ,
            flags: IRQ_INFO_EVENTFD,
            count: 0,
        },
    ];
    let server = Server::new(socket, true, irqs, regions)
        .map_err(|e| Error::Listen(socket.to_path_buf(), e.to_string()))?;
    log::info!(
        "vfio-user: serving a virtio-blk PCI function on {}",
        socket.display()
    );
    let busy = Arc::new(std::sync::Mutex::new(()));
    spawn_shutdown_watch(
        device.clone(),
        socket.to_path_buf(),
        shutdown.clone(),
        busy.clone(),
    );
    while !shutdown.load(Ordering::SeqCst) {
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let func = PciFunction::new(device.clone(), mem).map_err(Error::Device)?;
        let mut backend = Backend {
            func,
            busy: busy.clone(),
        };
        // The vfio_user crate can panic on malformed client messages; a bad
        // client must not take the daemon down.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.run(&mut backend)));
        if shutdown.load(Ordering::SeqCst) {
            break;
        }
        stats::inc(&device.stats().device.connections);
        stats::inc(&device.stats().device.disconnects);
        match r {
            Ok(Ok(())) => log::info!("vfio-user: client disconnected"),
            Ok(Err(e)) => log::warn!("vfio-user: client connection ended: {e}"),
            Err(_) => log::error!(
                "vfio-user: the client sent a message that crashed its handler; dropped it"
            ),
        }
    }
    drop(server);
    let _ = std::fs::remove_file(socket);
    Ok(())
}
