//! The virtio-blk PCI function: config space and BAR routing, device
//! status, reset, and the kick → device core → interrupt path. The register
//! blocks themselves are in `legacy` (BAR0), `msix` (BAR1) and `modern`
//! (BAR4).
//!
//! This is the path QEMU implements as `virtio_ioport_write` /
//! `virtio_pci_common_write` → `virtio_queue_notify` → the device, and
//! `virtio_notify` → `virtio_pci_notify` (MSI-X or INTx) back. Nothing here
//! knows about vfio-user: the tests drive it directly.
//!
//! One job a file: this one holds the function's state and what it is made
//! of; `config_access` serves configuration space; `bars` routes BAR
//! accesses (and serves BAR1, MSI-X); `device_status` takes status writes,
//! resets and DEVICE_NEEDS_RESET; `queues` starts and stops the queue
//! threads and passes kicks on.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use vblk_device::runner::{PauseGuard, RunnerOptions, Runners};
use vblk_device::{features, stats, BlkDevice};
use vblk_queue::{Queue, QueueT};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use crate::config_space::ConfigSpace;
use crate::device_cfg::ConfigChange;
use crate::irq::Irq;
use crate::msix::MsixLayout;
use crate::regs::layout::*;
use crate::status::VERSION_1;

mod bars;
mod config_access;
mod device_status;
mod queues;

/// Which register path a notify came through (for the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyPath {
    Legacy,
    Modern,
}

pub(crate) struct QueueSlot {
    /// The queue as the driver configures it; a copy goes to its runner
    /// at DRIVER_OK.
    pub(crate) queue: Queue,
    /// Legacy page frame number (0 = not set up).
    pub(crate) pfn: u32,
}

/// One emulated virtio-blk PCI function.
pub struct PciFunction {
    pub(crate) dev: Arc<BlkDevice>,
    pub(crate) cfg: ConfigSpace,
    pub(crate) msix_layout: MsixLayout,
    pub(crate) irq: Arc<Irq>,
    pub(crate) mem: GuestMemoryAtomic<GuestMemoryMmap>,
    pub(crate) status: u8,
    pub(crate) device_feature_select: u32,
    pub(crate) driver_feature_select: u32,
    pub(crate) driver_features: u64,
    pub(crate) queue_select: u16,
    pub(crate) queues: Vec<QueueSlot>,
    pub(crate) config_generation: u8,
    /// The queue threads (data plane): requests never run on the thread
    /// that handles register accesses.
    runners: Runners,
    /// Queues are running (between DRIVER_OK and the next reset).
    running: bool,
    /// Set by a runner that found its ring broken; turned into
    /// DEVICE_NEEDS_RESET at the next register access.
    broken: Arc<AtomicBool>,
    /// Device-side configuration changes (resize) → config interrupt.
    pub(crate) config_change: ConfigChange,
}

impl PciFunction {
    /// A function for `dev`, reaching the guest through `mem` (which the
    /// vfio-user DMA messages fill in).
    pub fn new(
        dev: Arc<BlkDevice>,
        mem: GuestMemoryAtomic<GuestMemoryMmap>,
    ) -> std::io::Result<Self> {
        Self::with_runners(dev, mem, 0, RunnerOptions::default())
    }

    /// Like [`PciFunction::new`], with `threads` queue threads (0: one per
    /// queue) working as `opts` says.
    pub fn with_runners(
        dev: Arc<BlkDevice>,
        mem: GuestMemoryAtomic<GuestMemoryMmap>,
        threads: usize,
        opts: RunnerOptions,
    ) -> std::io::Result<Self> {
        let nq = dev.num_queues();
        if nq == 0 || nq > MAX_QUEUES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("a virtio-blk PCI function has 1 to {MAX_QUEUES} queues, not {nq}"),
            ));
        }
        let msix_layout = MsixLayout::for_queues(nq);
        let irq = Arc::new(Irq::new(
            msix_layout.vectors,
            usize::from(nq),
            dev.stats().clone(),
        ));
        let queues = (0..nq)
            .map(|_| {
                Ok(QueueSlot {
                    queue: Queue::new(dev.config().queue_size)
                        .map_err(|e| std::io::Error::other(e.to_string()))?,
                    pfn: 0,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let runners = Runners::new(&dev, threads, opts)?;
        let config_change = ConfigChange::new(&dev, irq.clone());
        Ok(PciFunction {
            config_change,
            runners,
            running: false,
            broken: Arc::new(AtomicBool::new(false)),
            cfg: ConfigSpace::new(&msix_layout),
            msix_layout,
            irq,
            mem,
            status: 0,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            queue_select: 0,
            queues,
            config_generation: 0,
            dev,
        })
    }

    pub fn irq(&self) -> &Arc<Irq> {
        &self.irq
    }

    pub fn memory(&self) -> &GuestMemoryAtomic<GuestMemoryMmap> {
        &self.mem
    }

    pub fn device(&self) -> &Arc<BlkDevice> {
        &self.dev
    }

    /// The device status register.
    pub fn status(&mut self) -> u8 {
        self.sync_broken();
        self.status
    }

    /// Quiesce every queue (no request in flight, no guest memory access)
    /// until the guard is dropped: around a DMA unmap or any other change
    /// of guest memory.
    pub fn pause(&self) -> PauseGuard {
        self.runners.pause_all()
    }

    /// Guest memory was added: a ring that waited for its memory (see
    /// `QueueWorker::ring_in_memory`) is served again.
    pub fn memory_added(&self) {
        self.runners.kick_all();
    }

    /// Return once the queue threads have served every kick written so far.
    pub fn settle(&mut self) {
        self.runners.settle();
        self.sync_broken();
    }

    /// The driver accepted packed rings (modern interface only: a legacy
    /// driver sees 32 feature bits and cannot set bit 34).
    pub(crate) fn packed(&self) -> bool {
        self.driver_features & features::bit(features::VIRTIO_F_RING_PACKED) != 0
    }

    pub fn bar_size(&self, bar: usize) -> u64 {
        self.cfg.bar(bar).size
    }

    pub fn msix_layout(&self) -> MsixLayout {
        self.msix_layout
    }

    pub(crate) fn bad_write(&self, what: &str) {
        log::debug!("virtio-blk PCI: register write refused: {what}");
        stats::inc(&self.dev.stats().device.bad_register_writes);
    }

    /// Features offered: the device's, with VERSION_1 on the modern
    /// interface only; a legacy driver sees the low 32 bits.
    pub(crate) fn offered_features(&self, legacy: bool) -> u64 {
        let mut f = self.dev.features() | VERSION_1;
        if self.dev.config().packed_rings {
            // Bit 34: the modern interface only (a legacy driver sees 32 bits).
            f |= features::bit(features::VIRTIO_F_RING_PACKED);
        }
        if legacy {
            f & 0xffff_ffff
        } else {
            f
        }
    }
}
