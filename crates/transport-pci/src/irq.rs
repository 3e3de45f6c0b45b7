//! Interrupt routing: the device core says "queue n" or "config"; this
//! sets the ISR bit and, as the driver programmed the function, sends the
//! queue's MSI-X vector or raises INTx (QEMU: `virtio_notify` →
//! `virtio_pci_notify`).
//!
//! * MSI-X enabled: the vector the driver wrote to `msix_config` /
//!   `queue_msix_vector` (legacy: MSI_CONFIG_VECTOR / MSI_QUEUE_VECTOR);
//!   "VIRTIO_MSI_NO_VECTOR ... no interrupt" (virtio 1.2, 4.1.5.1.2).
//! * Otherwise INTx, with the ISR telling the driver why.

use std::sync::{Arc, Mutex, MutexGuard};

use vblk_device::{stats, Stats};
use vblk_interrupt::{Interrupt, InterruptKind};

use crate::intx::Intx;
use crate::msix::{Msix, Sent};
use crate::regs::{isr, msix::NO_VECTOR};

pub use crate::line::*;

struct State {
    isr: u8,
    msix: Msix,
    intx: Intx,
    config_vector: u16,
    queue_vectors: Vec<u16>,
}

impl State {
    fn new(vectors: usize, queues: usize) -> Self {
        State {
            isr: 0,
            msix: Msix::new(vectors),
            intx: Intx::default(),
            config_vector: NO_VECTOR,
            queue_vectors: vec![NO_VECTOR; queues],
        }
    }

    /// "the device MUST ... return NO_VECTOR" for a vector it cannot use
    /// (virtio 1.2, 4.1.5.1.2.1): out-of-range vectors become NO_VECTOR.
    fn checked(&self, v: u16) -> u16 {
        if usize::from(v) < self.msix.vectors() {
            v
        } else {
            NO_VECTOR
        }
    }
}

/// Interrupt state of one PCI function. Shared between the register
/// handlers and the device core (which calls [`Interrupt::trigger`]).
pub struct Irq {
    state: Mutex<State>,
    stats: Arc<Stats>,
}

impl Irq {
    pub fn new(vectors: usize, queues: usize, stats: Arc<Stats>) -> Self {
        Irq {
            state: Mutex::new(State::new(vectors, queues)),
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn vectors(&self) -> usize {
        self.lock().msix.vectors()
    }

    /// Device (virtio) reset: vectors unassigned, ISR clear, line low. The
    /// MSI-X capability, table and the client's eventfds belong to PCI and
    /// vfio, not to the virtio reset.
    pub fn reset(&self) {
        let mut s = self.lock();
        s.isr = 0;
        s.intx.deassert();
        s.config_vector = NO_VECTOR;
        s.queue_vectors.iter_mut().for_each(|v| *v = NO_VECTOR);
    }

    /// Function reset (the client's DEVICE_RESET): everything, eventfds too.
    pub fn reset_all(&self) {
        let mut s = self.lock();
        let (n, q) = (s.msix.vectors(), s.queue_vectors.len());
        *s = State::new(n, q);
    }

    // ---- ISR ----

    /// Read ISR: returns and clears the bits, de-asserting INTx
    /// ("... reset ISR status to 0 on driver read", 4.1.4.5.1).
    pub fn read_isr(&self) -> u8 {
        let mut s = self.lock();
        s.intx.deassert();
        std::mem::take(&mut s.isr)
    }

    pub fn peek_isr(&self) -> u8 {
        self.lock().isr
    }

    // ---- vectors programmed by the driver ----

    pub fn config_vector(&self) -> u16 {
        self.lock().config_vector
    }

    pub fn set_config_vector(&self, v: u16) {
        let mut s = self.lock();
        s.config_vector = s.checked(v);
    }

    pub fn queue_vector(&self, q: usize) -> u16 {
        self.lock()
            .queue_vectors
            .get(q)
            .copied()
            .unwrap_or(NO_VECTOR)
    }

    pub fn set_queue_vector(&self, q: usize, v: u16) {
        let mut s = self.lock();
        let v = s.checked(v);
        if let Some(slot) = s.queue_vectors.get_mut(q) {
            *slot = v;
        }
    }

    // ---- MSI-X capability, table and PBA ----

    pub fn msix_enabled(&self) -> bool {
        self.lock().msix.enabled()
    }

    /// (enable, function mask) of the MSI-X Message Control register.
    pub fn msix_control_bits(&self) -> (bool, bool) {
        let s = self.lock();
        (s.msix.enabled(), s.msix.function_masked())
    }

    pub fn set_msix_control(&self, enabled: bool, function_masked: bool) {
        self.lock().msix.set_control(enabled, function_masked);
    }

    pub fn table_read(&self, offset: u64) -> u32 {
        self.lock().msix.table_read(offset)
    }

    pub fn table_write(&self, offset: u64, value: u32) {
        self.lock().msix.table_write(offset, value);
    }

    pub fn pba_read(&self, offset: u64) -> u32 {
        self.lock().msix.pba_read(offset)
    }

    // ---- INTx ----

    /// INTx level (PCI STATUS.INTERRUPT).
    pub fn intx_asserted(&self) -> bool {
        self.lock().intx.asserted()
    }

    pub fn intx_masked(&self) -> bool {
        self.lock().intx.masked()
    }

    /// The client masked or unmasked INTx (SET_IRQS, or its unmask eventfd).
    pub fn set_intx_masked(&self, masked: bool) {
        self.lock().intx.set_masked(masked);
    }

    /// PCI COMMAND.INTX_DISABLE.
    pub fn set_intx_disabled(&self, disabled: bool) {
        self.lock().intx.set_disabled(disabled);
    }

    // ---- eventfds from the client ----

    pub fn set_msix_line(&self, v: usize, line: Option<Arc<dyn Line>>) {
        self.lock().msix.set_line(v, line);
    }

    pub fn clear_msix_lines(&self) {
        self.lock().msix.clear_lines();
    }

    pub fn set_intx_line(&self, line: Option<Arc<dyn Line>>) {
        self.lock().intx.set_line(line);
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
                    .unwrap_or(NO_VECTOR),
                Some(usize::from(n)),
            ),
            InterruptKind::Config => {
                stats::inc(&self.stats.device.config_interrupts);
                (isr::CONFIG, s.config_vector, None)
            }
        };
        s.isr |= bit;
        if s.msix.enabled() {
            if vector != NO_VECTOR && s.msix.fire(usize::from(vector)) == Sent::Delivered {
                if let Some(q) = queue {
                    stats::inc(&self.stats.queue(q).msix);
                }
            }
        } else if s.intx.assert() {
            if let Some(q) = queue {
                stats::inc(&self.stats.queue(q).intx);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn irq() -> (Irq, Arc<CountingLine>, Vec<Arc<CountingLine>>) {
        let irq = Irq::new(3, 2, Arc::new(Stats::new(2)));
        let intx = Arc::new(CountingLine::default());
        irq.set_intx_line(Some(intx.clone()));
        let msix: Vec<_> = (0..3).map(|_| Arc::new(CountingLine::default())).collect();
        for (i, l) in msix.iter().enumerate() {
            irq.set_msix_line(i, Some(l.clone()));
        }
        (irq, intx, msix)
    }

    #[test]
    fn intx_until_msix_is_enabled() {
        let (irq, intx, msix) = irq();
        irq.trigger(InterruptKind::Queue(0)).unwrap();
        assert_eq!(intx.count(), 1);
        assert!(irq.intx_asserted());
        assert_eq!(irq.read_isr(), isr::QUEUE);
        assert!(!irq.intx_asserted());
        irq.set_msix_control(true, false);
        irq.set_queue_vector(1, 2);
        irq.trigger(InterruptKind::Queue(1)).unwrap();
        assert_eq!(msix[2].count(), 1);
        // Config on NO_VECTOR: only the ISR bit.
        irq.trigger(InterruptKind::Config).unwrap();
        assert_eq!(irq.peek_isr(), isr::QUEUE | isr::CONFIG);
        assert_eq!(msix.iter().map(|l| l.count()).sum::<u64>(), 1);
        assert_eq!(intx.count(), 1);
    }

    #[test]
    fn reset_unassigns_vectors_and_reset_all_drops_lines() {
        let (irq, intx, _) = irq();
        irq.set_config_vector(0);
        irq.set_queue_vector(0, 7);
        assert_eq!(irq.queue_vector(0), NO_VECTOR, "past the table");
        irq.reset();
        assert_eq!(irq.config_vector(), NO_VECTOR);
        irq.reset_all();
        irq.trigger(InterruptKind::Queue(0)).unwrap();
        assert_eq!(intx.count(), 0);
    }
}
