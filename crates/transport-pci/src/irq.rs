//! Interrupt delivery: the ISR register, MSI-X (table, PBA, masks) and INTx.
//!
//! The device core only says "queue n" or "config"; this maps it, as the
//! driver programmed the function, to an MSI-X vector or the INTx line. The
//! lines themselves are eventfds handed over by the vfio-user client.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use vblk_device::{stats, Stats};
use vblk_interrupt::{Interrupt, InterruptKind};

use crate::regs::{isr, msix};

/// Something that can be signalled: an eventfd, or a recorder in tests.
pub trait Line: Send + Sync {
    fn signal(&self);
}

/// An eventfd from the client.
pub struct EventFdLine(pub File);

impl Line for EventFdLine {
    fn signal(&self) {
        let _ = (&self.0).write_all(&1u64.to_ne_bytes());
    }
}

/// Counts signals, for tests.
#[derive(Default)]
pub struct CountingLine(pub std::sync::atomic::AtomicU64);

impl Line for CountingLine {
    fn signal(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl CountingLine {
    pub fn count(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[derive(Clone, Copy, Default)]
struct Entry {
    addr_lo: u32,
    addr_hi: u32,
    data: u32,
    ctrl: u32,
}

struct Inner {
    isr: u8,
    msix_enabled: bool,
    function_masked: bool,
    table: Vec<Entry>,
    pba: u64,
    /// The client reads/writes our table (QEMU emulates its own and never
    /// does; then masking is its business).
    table_live: bool,
    msix_lines: Vec<Option<Arc<dyn Line>>>,
    config_vector: u16,
    queue_vectors: Vec<u16>,
    intx_line: Option<Arc<dyn Line>>,
    /// vfio INTx is auto-masked after each trigger until the client unmasks.
    intx_masked: bool,
    intx_disabled: bool,
    intx_asserted: bool,
}

/// Interrupt state of one PCI function.
pub struct Irq {
    inner: Mutex<Inner>,
    stats: Arc<Stats>,
}

impl Irq {
    pub fn new(vectors: usize, queues: usize, stats: Arc<Stats>) -> Self {
        Irq {
            inner: Mutex::new(Inner {
                isr: 0,
                msix_enabled: false,
                function_masked: false,
                table: vec![
                    Entry {
                        ctrl: msix::VECTOR_CTRL_MASKED,
                        ..Default::default()
                    };
                    vectors
                ],
                pba: 0,
                table_live: false,
                msix_lines: vec![None; vectors],
                config_vector: msix::NO_VECTOR,
                queue_vectors: vec![msix::NO_VECTOR; queues],
                intx_line: None,
                intx_masked: false,
                intx_disabled: false,
                intx_asserted: false,
            }),
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn vectors(&self) -> usize {
        self.lock().table.len()
    }

    /// Device reset: vectors unassigned, ISR clear, line low. The MSI-X
    /// capability and table belong to PCI, not to the virtio reset.
    pub fn reset(&self) {
        let mut s = self.lock();
        s.isr = 0;
        s.intx_asserted = false;
        s.config_vector = msix::NO_VECTOR;
        s.queue_vectors
            .iter_mut()
            .for_each(|v| *v = msix::NO_VECTOR);
    }

    /// Client reset: everything, lines included.
    pub fn reset_all(&self) {
        let n = self.vectors();
        let q = self.lock().queue_vectors.len();
        let fresh = Irq::new(n, q, self.stats.clone());
        *self.lock() = fresh.inner.into_inner().unwrap_or_else(|e| e.into_inner());
    }

    // ---- ISR ----

    /// Read ISR: returns and clears the bits, de-asserting INTx.
    pub fn read_isr(&self) -> u8 {
        let mut s = self.lock();
        let v = s.isr;
        s.isr = 0;
        s.intx_asserted = false;
        v
    }

    pub fn peek_isr(&self) -> u8 {
        self.lock().isr
    }

    pub fn intx_asserted(&self) -> bool {
        self.lock().intx_asserted
    }

    // ---- vectors programmed by the driver ----

    pub fn config_vector(&self) -> u16 {
        self.lock().config_vector
    }

    /// Set the config vector; out-of-range vectors read back as NO_VECTOR
    /// ("the device MUST ... return NO_VECTOR" on failure, 4.1.5.1.2).
    pub fn set_config_vector(&self, v: u16) {
        let mut s = self.lock();
        s.config_vector = if usize::from(v) < s.table.len() {
            v
        } else {
            msix::NO_VECTOR
        };
    }

    pub fn queue_vector(&self, q: usize) -> u16 {
        self.lock()
            .queue_vectors
            .get(q)
            .copied()
            .unwrap_or(msix::NO_VECTOR)
    }

    pub fn set_queue_vector(&self, q: usize, v: u16) {
        let mut s = self.lock();
        let v = if usize::from(v) < s.table.len() {
            v
        } else {
            msix::NO_VECTOR
        };
        if let Some(slot) = s.queue_vectors.get_mut(q) {
            *slot = v;
        }
    }

    // ---- MSI-X capability, table and PBA ----

    pub fn msix_enabled(&self) -> bool {
        self.lock().msix_enabled
    }

    /// The MSI-X Message Control enable and function-mask bits.
    pub fn set_msix_control(&self, enabled: bool, function_masked: bool) {
        let mut s = self.lock();
        s.msix_enabled = enabled;
        s.function_masked = function_masked;
        self.deliver_unmasked(&mut s);
    }

    pub fn msix_control_bits(&self) -> (bool, bool) {
        let s = self.lock();
        (s.msix_enabled, s.function_masked)
    }

    pub fn table_read(&self, offset: u64) -> u32 {
        let mut s = self.lock();
        s.table_live = true;
        let (i, word) = (
            (offset / msix::ENTRY_SIZE) as usize,
            (offset % msix::ENTRY_SIZE) / 4,
        );
        let Some(e) = s.table.get(i) else { return 0 };
        match word {
            0 => e.addr_lo,
            1 => e.addr_hi,
            2 => e.data,
            _ => e.ctrl,
        }
    }

    pub fn table_write(&self, offset: u64, value: u32) {
        let mut s = self.lock();
        s.table_live = true;
        let (i, word) = (
            (offset / msix::ENTRY_SIZE) as usize,
            (offset % msix::ENTRY_SIZE) / 4,
        );
        let Some(e) = s.table.get_mut(i) else { return };
        match word {
            0 => e.addr_lo = value,
            1 => e.addr_hi = value,
            2 => e.data = value,
            _ => e.ctrl = value & msix::VECTOR_CTRL_MASKED,
        }
        self.deliver_unmasked(&mut s);
    }

    pub fn pba_read(&self, offset: u64) -> u32 {
        let s = self.lock();
        if offset >= 8 {
            return 0;
        }
        (s.pba >> (offset * 8)) as u32
    }

    fn masked(s: &Inner, v: usize) -> bool {
        s.function_masked
            || (s.table_live
                && s.table
                    .get(v)
                    .is_some_and(|e| e.ctrl & msix::VECTOR_CTRL_MASKED != 0))
    }

    /// Fire every pending vector that is no longer masked.
    fn deliver_unmasked(&self, s: &mut Inner) {
        if !s.msix_enabled {
            return;
        }
        for v in 0..s.table.len().min(64) {
            if s.pba & (1 << v) != 0 && !Self::masked(s, v) {
                s.pba &= !(1 << v);
                if let Some(l) = &s.msix_lines[v] {
                    l.signal();
                }
            }
        }
    }

    fn fire_vector(&self, s: &mut Inner, v: u16, queue: Option<u16>) {
        let v = usize::from(v);
        if v >= s.table.len() {
            return;
        }
        if Self::masked(s, v) {
            // "the device MUST ... set the Pending bit" (PCI 3.0, 6.8.2.9)
            if v < 64 {
                s.pba |= 1 << v;
            }
            return;
        }
        if let Some(l) = &s.msix_lines[v] {
            l.signal();
            if let Some(q) = queue {
                stats::inc(&self.stats.queue(usize::from(q)).msix);
            }
        }
    }

    // ---- lines from the client ----

    pub fn set_msix_line(&self, v: usize, line: Option<Arc<dyn Line>>) {
        let mut s = self.lock();
        if let Some(slot) = s.msix_lines.get_mut(v) {
            *slot = line;
        }
    }

    pub fn clear_msix_lines(&self) {
        let mut s = self.lock();
        s.msix_lines.iter_mut().for_each(|l| *l = None);
    }

    pub fn set_intx_line(&self, line: Option<Arc<dyn Line>>) {
        self.lock().intx_line = line;
    }

    /// The client masked or unmasked INTx. On unmask a still-asserted line
    /// fires again.
    pub fn set_intx_masked(&self, masked: bool) {
        let mut s = self.lock();
        s.intx_masked = masked;
        if !masked {
            self.raise_intx(&mut s, None);
        }
    }

    /// PCI command register bit 10.
    pub fn set_intx_disabled(&self, disabled: bool) {
        let mut s = self.lock();
        s.intx_disabled = disabled;
        if !disabled {
            self.raise_intx(&mut s, None);
        }
    }

    fn raise_intx(&self, s: &mut Inner, queue: Option<u16>) {
        if !s.intx_asserted || s.intx_disabled || s.intx_masked {
            return;
        }
        if let Some(l) = &s.intx_line {
            l.signal();
            // vfio INTx is level-triggered emulation: auto-masked until EOI.
            s.intx_masked = true;
            if let Some(q) = queue {
                stats::inc(&self.stats.queue(usize::from(q)).intx);
            }
        }
    }
}

impl Interrupt for Irq {
    fn trigger(&self, kind: InterruptKind) -> std::io::Result<()> {
        let mut s = self.lock();
        let (bit, vector, queue) = match kind {
            InterruptKind::Queue(n) => (
                isr::QUEUE,
                s.queue_vectors
                    .get(usize::from(n))
                    .copied()
                    .unwrap_or(msix::NO_VECTOR),
                Some(n),
            ),
            InterruptKind::Config => {
                stats::inc(&self.stats.device.config_interrupts);
                (isr::CONFIG, s.config_vector, None)
            }
        };
        s.isr |= bit;
        if s.msix_enabled {
            // "VIRTIO_MSI_NO_VECTOR ... no interrupt" (4.1.5.1.2.1)
            if vector != msix::NO_VECTOR {
                self.fire_vector(&mut s, vector, queue);
            }
        } else {
            s.intx_asserted = true;
            self.raise_intx(&mut s, queue);
        }
        Ok(())
    }
}
