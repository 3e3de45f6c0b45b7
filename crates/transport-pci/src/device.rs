//! The virtio-blk PCI function: config space, the legacy I/O block (BAR0),
//! the MSI-X BAR (BAR1) and the modern virtio structures (BAR4), on top of
//! the transport-independent device core.
//!
//! This is the path QEMU implements as `virtio_ioport_write` /
//! `virtio_pci_common_write` → `virtio_queue_notify` → the device, and
//! `virtio_notify` → `virtio_pci_notify` (MSI-X or INTx) back.

use std::sync::Arc;

use vblk_device::{stats, BlkDevice, QueueWorker};
use vblk_interrupt::{Interrupt, InterruptKind};
use vblk_queue::{Queue, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};

use crate::config_space::ConfigSpace;
use crate::irq::Irq;
use crate::regs::{common, layout::*, legacy, msix, pci, status::*};
use crate::status::transition;

/// Which register path a notify came through (for the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyPath {
    Legacy,
    Modern,
}

struct QueueSlot {
    queue: Queue,
    worker: QueueWorker,
    /// Legacy page frame number (0 = not set up).
    pfn: u32,
}

/// One emulated virtio-blk PCI function.
pub struct PciFunction {
    dev: Arc<BlkDevice>,
    cfg: ConfigSpace,
    irq: Arc<Irq>,
    mem: GuestMemoryAtomic<GuestMemoryMmap>,
    status: u8,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    queue_select: u16,
    queues: Vec<QueueSlot>,
    config_generation: u8,
    /// The driver has used the legacy register block since the last reset.
    legacy: bool,
}

/// Field layout of a register block: (offset, size).
const LEGACY_FIELDS: &[(u64, u64)] = &[
    (legacy::HOST_FEATURES, 4),
    (legacy::GUEST_FEATURES, 4),
    (legacy::QUEUE_PFN, 4),
    (legacy::QUEUE_NUM, 2),
    (legacy::QUEUE_SEL, 2),
    (legacy::QUEUE_NOTIFY, 2),
    (legacy::STATUS, 1),
    (legacy::ISR, 1),
];
const LEGACY_MSIX_FIELDS: &[(u64, u64)] = &[
    (legacy::MSI_CONFIG_VECTOR, 2),
    (legacy::MSI_QUEUE_VECTOR, 2),
];
const COMMON_FIELDS: &[(u64, u64)] = &[
    (common::DEVICE_FEATURE_SELECT, 4),
    (common::DEVICE_FEATURE, 4),
    (common::DRIVER_FEATURE_SELECT, 4),
    (common::DRIVER_FEATURE, 4),
    (common::MSIX_CONFIG, 2),
    (common::NUM_QUEUES, 2),
    (common::DEVICE_STATUS, 1),
    (common::CONFIG_GENERATION, 1),
    (common::QUEUE_SELECT, 2),
    (common::QUEUE_SIZE, 2),
    (common::QUEUE_MSIX_VECTOR, 2),
    (common::QUEUE_ENABLE, 2),
    (common::QUEUE_NOTIFY_OFF, 2),
    (common::QUEUE_DESC_LO, 4),
    (common::QUEUE_DESC_HI, 4),
    (common::QUEUE_DRIVER_LO, 4),
    (common::QUEUE_DRIVER_HI, 4),
    (common::QUEUE_DEVICE_LO, 4),
    (common::QUEUE_DEVICE_HI, 4),
];

/// Split an access into the fields it touches: (field offset, field size,
/// first byte of the field touched, byte index in the access, bytes).
fn fields_touched(
    fields: &[(u64, u64)],
    offset: u64,
    len: usize,
) -> Vec<(u64, u64, usize, usize, usize)> {
    let mut out = Vec::new();
    let end = offset.saturating_add(len as u64);
    for &(f, sz) in fields {
        let (fs, fe) = (f, f + sz);
        if fe <= offset || fs >= end {
            continue;
        }
        let start = fs.max(offset);
        let stop = fe.min(end);
        out.push((
            f,
            sz,
            (start - fs) as usize,
            (start - offset) as usize,
            (stop - start) as usize,
        ));
    }
    out
}

impl PciFunction {
    pub fn new(
        dev: Arc<BlkDevice>,
        mem: GuestMemoryAtomic<GuestMemoryMmap>,
    ) -> std::io::Result<Self> {
        let nq = dev.num_queues();
        let vectors = nq + 1;
        let irq = Arc::new(Irq::new(
            usize::from(vectors),
            usize::from(nq),
            dev.stats().clone(),
        ));
        let queues = (0..nq)
            .map(|i| {
                Ok(QueueSlot {
                    queue: Queue::new(dev.config().queue_size)
                        .map_err(|e| std::io::Error::other(e.to_string()))?,
                    worker: dev.worker(i)?,
                    pfn: 0,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(PciFunction {
            cfg: ConfigSpace::new(vectors),
            irq,
            mem,
            status: 0,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            queue_select: 0,
            queues,
            config_generation: 0,
            legacy: false,
            dev,
        })
    }

    pub fn irq(&self) -> &Arc<Irq> {
        &self.irq
    }

    pub fn memory(&self) -> &GuestMemoryAtomic<GuestMemoryMmap> {
        &self.mem
    }

    pub fn status(&self) -> u8 {
        self.status
    }

    pub fn bar_size(&self, bar: usize) -> u64 {
        self.cfg.bars.get(bar).map_or(0, |b| b.size)
    }

    fn bad_write(&self, what: &str) {
        log::debug!("register write refused: {what}");
        stats::inc(&self.dev.stats().device.bad_register_writes);
    }

    /// Device reset (status 0, legacy QUEUE_PFN 0, or the client's reset).
    pub fn reset(&mut self) {
        self.status = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.queue_select = 0;
        self.legacy = false;
        for q in &mut self.queues {
            q.queue.reset();
            q.pfn = 0;
        }
        self.irq.reset();
        stats::inc(&self.dev.stats().device.resets);
    }

    /// "The device SHOULD set DEVICE_NEEDS_RESET when it enters an error
    /// state that a reset is needed", then notify the driver (2.1.2).
    fn needs_reset(&mut self, why: &str) {
        if self.status & DEVICE_NEEDS_RESET != 0 {
            return;
        }
        log::warn!("virtio-blk PCI: {why}; device needs a reset");
        self.status |= DEVICE_NEEDS_RESET;
        self.config_generation = self.config_generation.wrapping_add(1);
        stats::inc(&self.dev.stats().device.needs_reset);
        let _ = self.irq.trigger(InterruptKind::Config);
    }

    fn offered_features(&self) -> u64 {
        self.dev.features()
    }

    // ------------------------------------------------------------------
    // Configuration space
    // ------------------------------------------------------------------

    pub fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        let Ok(off) = usize::try_from(offset) else {
            data.fill(0);
            return;
        };
        self.cfg.read(off, data);
        // Live bits: INTx status, MSI-X control, the PCI_CFG data window.
        let status_bit = if self.irq.intx_asserted() {
            pci::STATUS_INTERRUPT
        } else {
            0
        };
        let (en, fm) = self.irq.msix_control_bits();
        let ctrl_hi = (((en as u16) << 15 | (fm as u16) << 14) >> 8) as u8
            | self.cfg.bytes[CAP_MSIX + 3] & 0x3f;
        for (i, b) in data.iter_mut().enumerate() {
            let o = off.saturating_add(i);
            if o == pci::STATUS {
                *b |= status_bit as u8;
            } else if o == CAP_MSIX + 3 {
                *b = ctrl_hi;
            }
        }
        let window = CAP_PCI_CFG + 16..CAP_PCI_CFG + 20;
        if window.contains(&off) {
            let mut tmp = [0u8; 4];
            self.pci_cfg_window(&mut tmp, None);
            for (i, b) in data.iter_mut().enumerate() {
                if let Some(v) = off
                    .checked_add(i)
                    .filter(|o| window.contains(o))
                    .map(|o| tmp[o - window.start])
                {
                    *b = v;
                }
            }
        }
    }

    pub fn config_write(&mut self, offset: u64, data: &[u8]) {
        let Ok(off) = usize::try_from(offset) else {
            return;
        };
        let window = CAP_PCI_CFG + 16..CAP_PCI_CFG + 20;
        if window.contains(&off) {
            let mut tmp = [0u8; 4];
            let n = data.len().min(window.end - off);
            tmp[..n].copy_from_slice(&data[..n]);
            self.pci_cfg_window(&mut tmp, Some(n));
            return;
        }
        self.cfg.write(off, data);
        let cmd = self.cfg.u16_at(pci::COMMAND);
        self.irq
            .set_intx_disabled(cmd & pci::COMMAND_INTX_DISABLE != 0);
        let ctrl = self.cfg.u16_at(CAP_MSIX + 2);
        if (off..off.saturating_add(data.len())).contains(&(CAP_MSIX + 3)) {
            self.irq.set_msix_control(
                ctrl & msix::CTRL_ENABLE != 0,
                ctrl & msix::CTRL_FUNCTION_MASK != 0,
            );
        }
    }

    /// The VIRTIO_PCI_CAP_PCI_CFG window: access BAR `bar` at `offset` for
    /// `length` bytes through config space (4.1.4.9).
    fn pci_cfg_window(&mut self, data: &mut [u8; 4], write: Option<usize>) {
        let bar = usize::from(self.cfg.bytes[CAP_PCI_CFG + 4]);
        let offset = u64::from(self.cfg.u32_at(CAP_PCI_CFG + 8));
        let length = self.cfg.u32_at(CAP_PCI_CFG + 12) as usize;
        // "length ... 1, 2 or 4 ... offset aligned to length" (4.1.4.9.1)
        if !matches!(length, 1 | 2 | 4) || offset % length as u64 != 0 {
            return;
        }
        match write {
            Some(_) => self.bar_write(bar, offset, &data[..length]),
            None => self.bar_read(bar, offset, &mut data[..length]),
        }
    }

    // ------------------------------------------------------------------
    // BARs
    // ------------------------------------------------------------------

    pub fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let size = self.bar_size(bar);
        if size == 0 || offset >= size || offset.saturating_add(data.len() as u64) > size {
            return; // past the BAR: reads zero
        }
        match bar {
            LEGACY_BAR => self.legacy_read(offset, data),
            MSIX_BAR => self.msix_read(offset, data),
            MODERN_BAR => self.modern_read(offset, data),
            _ => {}
        }
    }

    pub fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        let size = self.bar_size(bar);
        if size == 0 || offset >= size || offset.saturating_add(data.len() as u64) > size {
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

    // ---- MSI-X BAR ----

    fn msix_read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let o = offset + i as u64;
            let word = if o >= MSIX_PBA_OFFSET {
                self.irq.pba_read((o - MSIX_PBA_OFFSET) & !3)
            } else {
                self.irq.table_read(o & !3)
            };
            *b = word.to_le_bytes()[(o % 4) as usize];
        }
    }

    fn msix_write(&mut self, offset: u64, data: &[u8]) {
        if offset >= MSIX_PBA_OFFSET {
            return; // PBA is read-only
        }
        // Merge into whole dwords.
        let mut o = offset & !3;
        while o < offset + data.len() as u64 {
            let mut w = self.irq.table_read(o).to_le_bytes();
            for (k, byte) in w.iter_mut().enumerate() {
                let a = o + k as u64;
                if a >= offset && a < offset + data.len() as u64 {
                    *byte = data[(a - offset) as usize];
                }
            }
            self.irq.table_write(o, u32::from_le_bytes(w));
            o += 4;
        }
    }

    // ---- legacy I/O block (BAR0) ----

    fn legacy_config_start(&self) -> u64 {
        if self.irq.msix_enabled() {
            legacy::CONFIG_MSIX
        } else {
            legacy::CONFIG_NO_MSIX
        }
    }

    fn legacy_fields(&self) -> Vec<(u64, u64)> {
        let mut f = LEGACY_FIELDS.to_vec();
        if self.irq.msix_enabled() {
            f.extend_from_slice(LEGACY_MSIX_FIELDS);
        }
        f
    }

    fn legacy_read(&mut self, offset: u64, data: &mut [u8]) {
        let cfg_start = self.legacy_config_start();
        for (f, _sz, fbyte, dbyte, n) in fields_touched(&self.legacy_fields(), offset, data.len()) {
            let v = self.legacy_field_read(f);
            data[dbyte..dbyte + n].copy_from_slice(&v.to_le_bytes()[fbyte..fbyte + n]);
        }
        // Device config after the header.
        let end = offset + data.len() as u64;
        if end > cfg_start {
            let start = offset.max(cfg_start);
            let skip = (start - offset) as usize;
            self.dev.read_config(start - cfg_start, &mut data[skip..]);
        }
    }

    fn legacy_field_read(&mut self, f: u64) -> u64 {
        self.legacy = true;
        let q = usize::from(self.queue_select);
        match f {
            legacy::HOST_FEATURES => self.offered_features() & 0xffff_ffff,
            legacy::GUEST_FEATURES => self.driver_features & 0xffff_ffff,
            legacy::QUEUE_PFN => self.queues.get(q).map_or(0, |s| u64::from(s.pfn)),
            legacy::QUEUE_NUM => self
                .queues
                .get(q)
                .map_or(0, |s| u64::from(s.queue.max_size())),
            legacy::QUEUE_SEL => u64::from(self.queue_select),
            legacy::QUEUE_NOTIFY => 0,
            legacy::STATUS => u64::from(self.status),
            legacy::ISR => u64::from(self.irq.read_isr()),
            legacy::MSI_CONFIG_VECTOR => u64::from(self.irq.config_vector()),
            legacy::MSI_QUEUE_VECTOR => u64::from(self.irq.queue_vector(q)),
            _ => 0,
        }
    }

    fn legacy_write(&mut self, offset: u64, data: &[u8]) {
        self.legacy = true;
        for (f, sz, fbyte, dbyte, n) in fields_touched(&self.legacy_fields(), offset, data.len()) {
            let mut bytes = match f {
                legacy::GUEST_FEATURES
                | legacy::QUEUE_PFN
                | legacy::QUEUE_SEL
                | legacy::STATUS
                | legacy::MSI_CONFIG_VECTOR
                | legacy::MSI_QUEUE_VECTOR => self.legacy_peek(f).to_le_bytes(),
                _ => [0u8; 8],
            };
            bytes[fbyte..fbyte + n].copy_from_slice(&data[dbyte..dbyte + n]);
            let mut v = [0u8; 8];
            v[..sz as usize].copy_from_slice(&bytes[..sz as usize]);
            self.legacy_field_write(f, u64::from_le_bytes(v));
        }
    }

    fn legacy_peek(&self, f: u64) -> u64 {
        let q = usize::from(self.queue_select);
        match f {
            legacy::GUEST_FEATURES => self.driver_features & 0xffff_ffff,
            legacy::QUEUE_PFN => self.queues.get(q).map_or(0, |s| u64::from(s.pfn)),
            legacy::QUEUE_SEL => u64::from(self.queue_select),
            legacy::STATUS => u64::from(self.status),
            legacy::MSI_CONFIG_VECTOR => u64::from(self.irq.config_vector()),
            legacy::MSI_QUEUE_VECTOR => u64::from(self.irq.queue_vector(q)),
            _ => 0,
        }
    }

    fn legacy_field_write(&mut self, f: u64, v: u64) {
        let q = usize::from(self.queue_select);
        match f {
            legacy::GUEST_FEATURES => {
                if self.status & DRIVER_OK != 0 {
                    return self.bad_write("GUEST_FEATURES after DRIVER_OK");
                }
                // Only what was offered sticks.
                self.driver_features = v & self.offered_features() & 0xffff_ffff;
            }
            legacy::QUEUE_PFN => {
                if v == 0 {
                    // The driver tears the queue down: reset the device.
                    self.reset();
                    return;
                }
                self.legacy_setup_queue(q, v as u32);
            }
            legacy::QUEUE_SEL => {
                // Values past the queue count are ignored.
                if v < self.queues.len() as u64 {
                    self.queue_select = v as u16;
                } else {
                    self.bad_write("QUEUE_SEL out of range");
                }
            }
            legacy::QUEUE_NOTIFY => {
                if v < self.queues.len() as u64 {
                    self.notify(v as u16, NotifyPath::Legacy);
                } else {
                    self.bad_write("QUEUE_NOTIFY out of range");
                }
            }
            legacy::STATUS => self.write_status(v as u8, true),
            legacy::MSI_CONFIG_VECTOR => self.irq.set_config_vector(v as u16),
            legacy::MSI_QUEUE_VECTOR => self.irq.set_queue_vector(q, v as u16),
            _ => {}
        }
    }

    /// Legacy ring layout from a page frame number: descriptors at
    /// pfn * 4096, avail right after, used at the next 4096 boundary.
    fn legacy_setup_queue(&mut self, q: usize, pfn: u32) {
        let Some(slot) = self.queues.get_mut(q) else {
            return;
        };
        let size = u64::from(slot.queue.max_size());
        let layout = (|| {
            let desc = u64::from(pfn).checked_shl(legacy::PFN_SHIFT)?;
            let avail = desc.checked_add(16 * size)?;
            let used_unaligned = avail.checked_add(6 + 2 * size)?;
            let used =
                used_unaligned.checked_add(legacy::VRING_ALIGN - 1)? & !(legacy::VRING_ALIGN - 1);
            used.checked_add(6 + 8 * size)?;
            Some((desc, avail, used))
        })();
        let Some((desc, avail, used)) = layout else {
            return self.bad_write("QUEUE_PFN overflows");
        };
        slot.pfn = pfn;
        let qq = &mut slot.queue;
        qq.set_size(size as u16);
        qq.set_desc_table_address(Some(desc as u32), Some((desc >> 32) as u32));
        qq.set_avail_ring_address(Some(avail as u32), Some((avail >> 32) as u32));
        qq.set_used_ring_address(Some(used as u32), Some((used >> 32) as u32));
        qq.set_ready(true);
    }

    // ---- modern structures (BAR4) ----

    fn modern_read(&mut self, offset: u64, data: &mut [u8]) {
        if (COMMON_OFFSET..COMMON_OFFSET + COMMON_SIZE).contains(&offset) {
            let off = offset - COMMON_OFFSET;
            for (f, _sz, fbyte, dbyte, n) in fields_touched(COMMON_FIELDS, off, data.len()) {
                let v = self.common_read(f);
                data[dbyte..dbyte + n].copy_from_slice(&v.to_le_bytes()[fbyte..fbyte + n]);
            }
        } else if (ISR_OFFSET..ISR_OFFSET + ISR_SIZE).contains(&offset) {
            if offset == ISR_OFFSET {
                data[0] = self.irq.read_isr();
            }
        } else if (DEVICE_OFFSET..DEVICE_OFFSET + DEVICE_SIZE).contains(&offset) {
            self.dev.read_config(offset - DEVICE_OFFSET, data);
        }
    }

    fn modern_write(&mut self, offset: u64, data: &[u8]) {
        if (COMMON_OFFSET..COMMON_OFFSET + COMMON_SIZE).contains(&offset) {
            let off = offset - COMMON_OFFSET;
            for (f, sz, fbyte, dbyte, n) in fields_touched(COMMON_FIELDS, off, data.len()) {
                let mut bytes = self.common_read_pure(f).to_le_bytes();
                bytes[fbyte..fbyte + n].copy_from_slice(&data[dbyte..dbyte + n]);
                let mut v = [0u8; 8];
                v[..sz as usize].copy_from_slice(&bytes[..sz as usize]);
                self.common_write(f, u64::from_le_bytes(v));
            }
        } else if (NOTIFY_OFFSET..NOTIFY_OFFSET + NOTIFY_SIZE).contains(&offset) {
            let q = (offset - NOTIFY_OFFSET) / u64::from(NOTIFY_OFF_MULTIPLIER);
            if q < self.queues.len() as u64 {
                self.notify(q as u16, NotifyPath::Modern);
            } else {
                self.bad_write("notify for a queue that does not exist");
            }
        } else {
            // ISR and device config are read-only.
            self.bad_write("write to a read-only virtio structure");
        }
    }

    fn common_read(&mut self, f: u64) -> u64 {
        if f == common::CONFIG_GENERATION {
            return u64::from(self.config_generation);
        }
        self.common_read_pure(f)
    }

    fn common_read_pure(&self, f: u64) -> u64 {
        let q = self.queues.get(usize::from(self.queue_select));
        match f {
            common::DEVICE_FEATURE_SELECT => u64::from(self.device_feature_select),
            common::DEVICE_FEATURE => match self.device_feature_select {
                0 => self.offered_features() & 0xffff_ffff,
                1 => self.offered_features() >> 32,
                _ => 0,
            },
            common::DRIVER_FEATURE_SELECT => u64::from(self.driver_feature_select),
            common::DRIVER_FEATURE => match self.driver_feature_select {
                0 => self.driver_features & 0xffff_ffff,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            common::MSIX_CONFIG => u64::from(self.irq.config_vector()),
            common::NUM_QUEUES => self.queues.len() as u64,
            common::DEVICE_STATUS => u64::from(self.status),
            common::CONFIG_GENERATION => u64::from(self.config_generation),
            common::QUEUE_SELECT => u64::from(self.queue_select),
            common::QUEUE_SIZE => q.map_or(0, |s| u64::from(s.queue.size())),
            common::QUEUE_MSIX_VECTOR => {
                u64::from(self.irq.queue_vector(usize::from(self.queue_select)))
            }
            common::QUEUE_ENABLE => q.map_or(0, |s| u64::from(s.queue.ready())),
            common::QUEUE_NOTIFY_OFF => u64::from(self.queue_select),
            common::QUEUE_DESC_LO => q.map_or(0, |s| s.queue.desc_table() & 0xffff_ffff),
            common::QUEUE_DESC_HI => q.map_or(0, |s| s.queue.desc_table() >> 32),
            common::QUEUE_DRIVER_LO => q.map_or(0, |s| s.queue.avail_ring() & 0xffff_ffff),
            common::QUEUE_DRIVER_HI => q.map_or(0, |s| s.queue.avail_ring() >> 32),
            common::QUEUE_DEVICE_LO => q.map_or(0, |s| s.queue.used_ring() & 0xffff_ffff),
            common::QUEUE_DEVICE_HI => q.map_or(0, |s| s.queue.used_ring() >> 32),
            _ => 0,
        }
    }

    fn common_write(&mut self, f: u64, v: u64) {
        let qi = usize::from(self.queue_select);
        let driver_ok = self.status & DRIVER_OK != 0;
        match f {
            common::DEVICE_FEATURE_SELECT => self.device_feature_select = v as u32,
            common::DRIVER_FEATURE_SELECT => self.driver_feature_select = v as u32,
            common::DRIVER_FEATURE => {
                // "The driver MUST NOT accept a feature ... after FEATURES_OK" (3.1.1)
                if self.status & FEATURES_OK != 0 {
                    return self.bad_write("driver features after FEATURES_OK");
                }
                match self.driver_feature_select {
                    0 => {
                        self.driver_features =
                            (self.driver_features & !0xffff_ffff) | (v & 0xffff_ffff)
                    }
                    1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (v << 32),
                    _ => self.bad_write("driver feature select past 63"),
                }
            }
            common::MSIX_CONFIG => self.irq.set_config_vector(v as u16),
            common::DEVICE_STATUS => self.write_status(v as u8, false),
            common::QUEUE_SELECT => {
                if v < self.queues.len() as u64 {
                    self.queue_select = v as u16;
                } else {
                    // Reads of the queue fields then return 0 (size 0 = no queue).
                    self.queue_select = v as u16;
                }
            }
            common::QUEUE_MSIX_VECTOR => self.irq.set_queue_vector(qi, v as u16),
            _ if driver_ok && f != common::QUEUE_ENABLE => {
                self.bad_write("queue configuration after DRIVER_OK");
            }
            common::QUEUE_SIZE => {
                let Some(s) = self.queues.get_mut(qi) else {
                    return self.bad_write("QUEUE_SIZE for no queue");
                };
                let n = v as u16;
                if n == 0 || n > s.queue.max_size() || !n.is_power_of_two() {
                    return self.bad_write("QUEUE_SIZE not a power of two up to the maximum");
                }
                s.queue.set_size(n);
            }
            common::QUEUE_ENABLE => {
                let Some(s) = self.queues.get_mut(qi) else {
                    return self.bad_write("QUEUE_ENABLE for no queue");
                };
                // "The driver MUST NOT write a 0 to queue_enable." (4.1.4.3.2)
                if v == 1 {
                    s.queue.set_ready(true);
                } else {
                    self.bad_write("queue_enable not 1");
                }
            }
            common::QUEUE_DESC_LO
            | common::QUEUE_DESC_HI
            | common::QUEUE_DRIVER_LO
            | common::QUEUE_DRIVER_HI
            | common::QUEUE_DEVICE_LO
            | common::QUEUE_DEVICE_HI => {
                let Some(s) = self.queues.get_mut(qi) else {
                    return self.bad_write("queue address for no queue");
                };
                let (lo, hi) = if f.is_multiple_of(8) {
                    (Some(v as u32), None)
                } else {
                    (None, Some(v as u32))
                };
                match f {
                    common::QUEUE_DESC_LO | common::QUEUE_DESC_HI => {
                        s.queue.set_desc_table_address(lo, hi)
                    }
                    common::QUEUE_DRIVER_LO | common::QUEUE_DRIVER_HI => {
                        s.queue.set_avail_ring_address(lo, hi)
                    }
                    _ => s.queue.set_used_ring_address(lo, hi),
                }
            }
            _ => self.bad_write("write to a read-only common config field"),
        }
    }

    // ---- status, features, notify ----

    fn write_status(&mut self, v: u8, legacy: bool) {
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
        if added & FEATURES_OK != 0 {
            let offered = self.offered_features();
            // "The device MUST NOT offer a feature which requires another..."; and
            // FEATURES_OK is refused if the driver accepted what was not offered
            // (3.1.1: "...re-read device status to ensure the FEATURES_OK bit is
            // still set: otherwise, the device does not support our subset").
            let bad = self.driver_features & !offered != 0;
            let no_v1 = !legacy && self.driver_features & (1 << 32) == 0;
            if bad || no_v1 {
                self.bad_write(
                    "FEATURES_OK with features that were not offered (or without VERSION_1)",
                );
                self.status = new & !FEATURES_OK;
                return;
            }
        }
        if added & DRIVER_OK != 0 {
            let event_idx = self.driver_features & (1 << 29) != 0;
            let mem = self.mem.memory();
            for (i, s) in self.queues.iter_mut().enumerate() {
                s.queue.set_event_idx(event_idx);
                if s.queue.ready() && !s.queue.is_valid(&*mem) {
                    drop(mem);
                    self.status = new;
                    self.needs_reset(&format!("queue {i} has an invalid ring at DRIVER_OK"));
                    return;
                }
            }
        }
        self.status = new;
    }

    /// A kick: drain the queue through the device core.
    pub fn notify(&mut self, q: u16, path: NotifyPath) {
        let st = self.dev.stats().queue(usize::from(q));
        match path {
            NotifyPath::Legacy => stats::inc(&st.notify_legacy),
            NotifyPath::Modern => stats::inc(&st.notify_modern),
        }
        if self.status & DRIVER_OK == 0 || self.status & DEVICE_NEEDS_RESET != 0 {
            return;
        }
        let Some(slot) = self.queues.get_mut(usize::from(q)) else {
            return;
        };
        if !slot.queue.ready() {
            return;
        }
        let mem = self.mem.memory();
        if !slot.queue.is_valid(&*mem) {
            drop(mem);
            return self.needs_reset(&format!("queue {q}: ring outside guest memory"));
        }
        let result = slot.worker.process(&mut slot.queue, &*mem, &*self.irq);
        drop(mem);
        if let Err(e) = result {
            self.needs_reset(&e.to_string());
        }
    }
}
