//! The virtio-blk PCI function: config space and BAR routing, device
//! status, reset, and the kick → device core → interrupt path. The register
//! blocks themselves are in `legacy` (BAR0), `msix` (BAR1) and `modern`
//! (BAR4).
//!
//! This is the path QEMU implements as `virtio_ioport_write` /
//! `virtio_pci_common_write` → `virtio_queue_notify` → the device, and
//! `virtio_notify` → `virtio_pci_notify` (MSI-X or INTx) back. Nothing here
//! knows about vfio-user: the tests drive it directly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vblk_device::runner::{PauseGuard, RingSetup, RunnerOptions, Runners};
use vblk_device::{features, stats, BlkDevice};
use vblk_interrupt::{Interrupt, InterruptKind};
use vblk_queue::{Queue, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};

use crate::config_space::ConfigSpace;
use crate::device_cfg::ConfigChange;
use crate::irq::Irq;
use crate::msix::MsixLayout;
use crate::regs::{cap, layout::*, msix, pci, status::*};
use crate::status::{features_ok, transition, VERSION_1};

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

    /// A runner found its ring broken: show DEVICE_NEEDS_RESET from now on
    /// (its configuration interrupt was sent by the runner).
    pub(crate) fn sync_broken(&mut self) {
        if self.broken.swap(false, Ordering::AcqRel) {
            self.mark_needs_reset("a queue's ring is broken", false);
        }
    }

    /// The driver accepted packed rings (modern interface only: a legacy
    /// driver sees 32 feature bits and cannot set bit 34).
    pub(crate) fn packed(&self) -> bool {
        self.driver_features & features::bit(features::VIRTIO_F_RING_PACKED) != 0
    }

    fn start_queues(&mut self) {
        let packed = self.packed();
        for (i, q) in self.queues.iter().enumerate() {
            if !q.queue.ready() {
                continue;
            }
            let queue = match Queue::try_from(q.queue.state()) {
                Ok(queue) => queue,
                Err(e) => {
                    log::error!("virtio-blk PCI: queue {i}: {e}");
                    continue;
                }
            };
            let mut queue = queue;
            if packed {
                // A fresh packed ring: slot 0, both wrap counters 1 (2.8.1).
                vblk_device::set_packed_base(&mut queue, 0x8000_8000);
            }
            let broken = self.broken.clone();
            let irq = self.irq.clone();
            let ring = RingSetup {
                queue,
                mem: self.mem.clone(),
                kick: None,
                irq: self.irq.clone(),
                on_broken: Box::new(move |e| {
                    log::warn!("virtio-blk PCI: {e}; the device needs a reset");
                    broken.store(true, Ordering::Release);
                    // "If DRIVER_OK is set, after it sets DEVICE_NEEDS_RESET,
                    // the device MUST send a device configuration change
                    // notification to the driver." (2.1.2)
                    let _ = irq.trigger(InterruptKind::Config);
                }),
                inflight: None,
                resubmit: Vec::new(),
                packed,
            };
            if let Err(e) = self.runners.start(i as u16, ring) {
                log::error!("virtio-blk PCI: cannot start queue {i}: {e}");
            }
        }
        self.running = true;
    }

    /// Stop every queue; each finishes its in-flight requests first.
    fn stop_queues(&mut self) {
        if !self.running {
            return;
        }
        for i in 0..self.queues.len() {
            self.runners.stop(i as u16);
        }
        self.running = false;
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

    /// Device reset: status 0, legacy QUEUE_PFN 0. "Upon reset, the device
    /// MUST initialize device status to 0" and forget features, queues and
    /// vectors (virtio 1.2, 2.1.2, 4.1.4.3.1). Config space and the
    /// client's eventfds stay: they are PCI's and vfio's.
    pub fn reset(&mut self) {
        self.config_change.set_driver_ok(false);
        self.dev.reset_cache_mode();
        self.stop_queues();
        self.broken.store(false, Ordering::Release);
        self.status = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.queue_select = 0;
        for q in &mut self.queues {
            q.queue.reset();
            q.pfn = 0;
        }
        self.irq.reset();
        stats::inc(&self.dev.stats().device.resets);
    }

    /// Function reset (the vfio-user client's DEVICE_RESET, like a PCI
    /// FLR): the device reset plus config space and every interrupt
    /// eventfd. Guest memory stays mapped: it is the client's to unmap.
    pub fn function_reset(&mut self) {
        self.reset();
        self.cfg = ConfigSpace::new(&self.msix_layout);
        self.irq.reset_all();
    }

    /// "The device SHOULD set DEVICE_NEEDS_RESET when it enters an error
    /// state that a reset is needed. If DRIVER_OK is set, after it sets
    /// DEVICE_NEEDS_RESET, the device MUST send a device configuration
    /// change notification to the driver." (2.1.2). Queues stay stopped
    /// until the reset.
    pub(crate) fn needs_reset(&mut self, why: &str) {
        self.mark_needs_reset(why, true);
    }

    fn mark_needs_reset(&mut self, why: &str, interrupt: bool) {
        if self.status & DEVICE_NEEDS_RESET != 0 {
            return;
        }
        log::warn!("virtio-blk PCI: {why}; the device needs a reset");
        self.status |= DEVICE_NEEDS_RESET;
        self.config_generation = self.config_generation.wrapping_add(1);
        stats::inc(&self.dev.stats().device.needs_reset);
        if interrupt {
            let _ = self.irq.trigger(InterruptKind::Config);
        }
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

    // ------------------------------------------------------------------
    // Configuration space
    // ------------------------------------------------------------------

    fn pci_cfg_data(&self) -> std::ops::Range<usize> {
        CAP_PCI_CFG + cap::PCI_CFG_DATA..CAP_PCI_CFG + cap::PCI_CFG_DATA + 4
    }

    pub fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        let Ok(off) = usize::try_from(offset) else {
            data.fill(0);
            return;
        };
        self.cfg.read(off, data);
        // Live bits: INTx status, MSI-X control, the PCI_CFG data window.
        let status_lo = if self.irq.intx_asserted() {
            pci::STATUS_INTERRUPT as u8
        } else {
            0
        };
        let (en, fm) = self.irq.msix_control_bits();
        let ctrl_at = CAP_MSIX + msix::CAP_CONTROL + 1;
        let ctrl_hi = (self.cfg.u8_at(ctrl_at) & 0x3f)
            | if en {
                (msix::CTRL_ENABLE >> 8) as u8
            } else {
                0
            }
            | if fm {
                (msix::CTRL_FUNCTION_MASK >> 8) as u8
            } else {
                0
            };
        let window = self.pci_cfg_data();
        let mut win = None;
        for (i, b) in data.iter_mut().enumerate() {
            let Some(o) = off.checked_add(i) else { break };
            if o == pci::STATUS {
                *b |= status_lo;
            } else if o == ctrl_at {
                *b = ctrl_hi;
            } else if window.contains(&o) {
                let w = *win.get_or_insert_with(|| {
                    let mut tmp = [0u8; 4];
                    self.pci_cfg_access(&mut tmp, false);
                    tmp
                });
                *b = w[o - window.start];
            }
        }
    }

    pub fn config_write(&mut self, offset: u64, data: &[u8]) {
        let Ok(off) = usize::try_from(offset) else {
            return;
        };
        let window = self.pci_cfg_data();
        if window.contains(&off) {
            let mut tmp = [0u8; 4];
            let n = data.len().min(window.end - off);
            let at = off - window.start;
            tmp[at..at + n].copy_from_slice(&data[..n]);
            self.pci_cfg_access(&mut tmp, true);
            return;
        }
        let touches = |o: usize| (off..off.saturating_add(data.len())).contains(&o);
        self.cfg.write(off, data);
        if touches(pci::COMMAND + 1) {
            let cmd = self.cfg.u16_at(pci::COMMAND);
            self.irq
                .set_intx_disabled(cmd & pci::COMMAND_INTX_DISABLE != 0);
        }
        if touches(CAP_MSIX + msix::CAP_CONTROL + 1) {
            let ctrl = self.cfg.u16_at(CAP_MSIX + msix::CAP_CONTROL);
            self.irq.set_msix_control(
                ctrl & msix::CTRL_ENABLE != 0,
                ctrl & msix::CTRL_FUNCTION_MASK != 0,
            );
        }
    }

    /// VIRTIO_PCI_CAP_PCI_CFG: access BAR `bar` at `offset`, `length` bytes,
    /// through `pci_cfg_data` (4.1.4.9). "The device MUST ignore ... if
    /// length is not 1, 2 or 4 ... or offset is not a multiple of length"
    /// (4.1.4.9.1: the driver MUST NOT, and we do nothing then).
    fn pci_cfg_access(&mut self, data: &mut [u8; 4], write: bool) {
        let bar = usize::from(self.cfg.u8_at(CAP_PCI_CFG + cap::BAR));
        let offset = u64::from(self.cfg.u32_at(CAP_PCI_CFG + cap::OFFSET));
        let length = self.cfg.u32_at(CAP_PCI_CFG + cap::LENGTH) as usize;
        if !matches!(length, 1 | 2 | 4) || offset % length as u64 != 0 {
            return;
        }
        if write {
            self.bar_write(bar, offset, &data[..length]);
        } else {
            self.bar_read(bar, offset, &mut data[..length]);
        }
    }

    // ------------------------------------------------------------------
    // BARs
    // ------------------------------------------------------------------

    fn in_bar(&self, bar: usize, offset: u64, len: usize) -> bool {
        let size = self.bar_size(bar);
        size != 0
            && offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= size)
    }

    /// Read from a BAR. Outside the BAR, and at offsets without a
    /// register, reads return 0.
    pub fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        self.sync_broken();
        data.fill(0);
        if !self.in_bar(bar, offset, data.len()) {
            return;
        }
        match bar {
            LEGACY_BAR => self.legacy_read(offset, data),
            MSIX_BAR => self.msix_read(offset, data),
            MODERN_BAR => self.modern_read(offset, data),
            _ => {}
        }
    }

    /// Write to a BAR. Outside the BAR, and at offsets without a register,
    /// writes are dropped.
    pub fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        self.sync_broken();
        if !self.in_bar(bar, offset, data.len()) {
            self.bad_write("access past a BAR");
            return;
        }
        match bar {
            LEGACY_BAR => self.legacy_write(offset, data),
            MSIX_BAR => self.msix_write(offset, data),
            MODERN_BAR => self.modern_write(offset, data),
            _ => {}
        }
    }

    // ---- BAR1: MSI-X table and PBA, byte accesses merged into dwords ----

    fn msix_dword(&self, o: u64) -> u32 {
        let l = &self.msix_layout;
        if o >= l.pba_offset {
            self.irq.pba_read(o - l.pba_offset)
        } else {
            self.irq.table_read(o - l.table_offset)
        }
    }

    fn msix_read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let o = offset + i as u64;
            *b = self.msix_dword(o & !3).to_le_bytes()[(o % 4) as usize];
        }
    }

    fn msix_write(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        if end > self.msix_layout.pba_offset {
            // "Software should never write ... the PBA" (6.8.2.10): read-only.
            return self.bad_write("write to the MSI-X PBA");
        }
        let mut o = offset & !3;
        while o < end {
            let mut w = self.msix_dword(o).to_le_bytes();
            for (k, byte) in w.iter_mut().enumerate() {
                let a = o + k as u64;
                if (offset..end).contains(&a) {
                    *byte = data[(a - offset) as usize];
                }
            }
            self.irq
                .table_write(o - self.msix_layout.table_offset, u32::from_le_bytes(w));
            o += 4;
        }
    }

    // ------------------------------------------------------------------
    // Status and notify, shared by the legacy and modern interfaces
    // ------------------------------------------------------------------

    pub(crate) fn write_status(&mut self, v: u8, legacy: bool) {
        if v == 0 {
            // "Writing 0 into this field resets the device." (4.1.4.3.1)
            self.reset();
            return;
        }
        let new = match transition(self.status, v, legacy) {
            Ok(s) => s,
            Err(e) => {
                return self.bad_write(&format!(
                    "device status {:#x} -> {v:#x}: {e:?}",
                    self.status
                ))
            }
        };
        let added = new & !self.status;
        if added & FEATURES_OK != 0
            && !features_ok(self.offered_features(legacy), self.driver_features, legacy)
        {
            // "The device MUST NOT ... accept FEATURES_OK" for a subset it
            // cannot support; the driver re-reads status and sees it unset.
            self.bad_write("FEATURES_OK for features that were not offered (or without VERSION_1)");
            self.status = new & !FEATURES_OK;
            return;
        }
        if added & DRIVER_OK != 0 {
            let event_idx =
                self.driver_features & features::bit(features::VIRTIO_RING_F_EVENT_IDX) != 0;
            for q in &mut self.queues {
                q.queue.set_event_idx(event_idx);
            }
            self.status = new;
            let bad = {
                let mem = self.mem.memory();
                // Packed rings have 4-byte event areas where the split
                // layout's checks would ask for whole rings: the worker
                // checks a packed ring as it attaches and as it reads it.
                let packed = self.packed();
                self.queues
                    .iter()
                    .position(|q| q.queue.ready() && !packed && !q.queue.is_valid(&*mem))
            };
            if let Some(i) = bad {
                self.needs_reset(&format!(
                    "queue {i} has a ring outside guest memory at DRIVER_OK"
                ));
                return;
            }
            self.device_config_driver_ok();
            self.start_queues();
            return;
        }
        self.status = new;
    }

    /// A kick: wake the queue's runner thread.
    pub fn notify(&mut self, q: u16, path: NotifyPath) {
        let Some(st) = self.dev.stats().queues.get(usize::from(q)) else {
            return;
        };
        match path {
            NotifyPath::Legacy => stats::inc(&st.notify_legacy),
            NotifyPath::Modern => stats::inc(&st.notify_modern),
        }
        // "The device MUST NOT consume buffers or send any used buffer
        // notifications to the driver before DRIVER_OK." (3.1.2)
        if !self.running || self.status & DEVICE_NEEDS_RESET != 0 {
            return;
        }
        self.runners.kick(q);
    }
}
