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
//!
//! One job a file: this one holds the per-client [`Backend`] and its
//! region bounds; `requests` answers each vfio-user request; `dma` keeps
//! the DMA windows and the guest memory built from them; `set_irqs` takes
//! the client's interrupt eventfds; `server` runs the socket.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use vblk_device::stats;
use vblk_vfio_user::{refuse, ServerError};

use crate::function::PciFunction;
use crate::regs::pci::CONFIG_SPACE_SIZE;
use crate::regs::vfio::*;

mod dma;
mod requests;
mod server;
mod set_irqs;

pub use server::{limits, serve};

use dma::DmaEntry;
use set_irqs::FdWatcher;

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
}
