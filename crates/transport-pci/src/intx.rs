//! INTx: the level-triggered INTA# pin, emulated over a vfio eventfd.
//!
//! PCI side: the line is asserted while an ISR bit is set; "the device MUST
//! reset ISR status to 0 on driver read" (virtio 1.2, 4.1.4.5.1), which
//! de-asserts it. COMMAND bit 10 (Interrupt Disable) keeps the pin from
//! being driven but not the Interrupt Status bit: "Only when the Interrupt
//! Disable bit in the command register is a 0 and this Interrupt Status bit
//! is a 1, will the function's INTx# signal be asserted" (PCI 3.0, 6.2.3).
//!
//! vfio side: an eventfd carries edges, not levels. vfio INTx is
//! "automasked" (VFIO_IRQ_INFO_AUTOMASKED): after one signal the line is
//! masked until the client unmasks it — QEMU does so at the guest's EOI
//! (SET_IRQS ACTION_UNMASK), or under KVM KVM's resample eventfd does it.
//! A line still asserted at unmask fires again: that is how a level is
//! rebuilt from edges.

use std::sync::Arc;

use crate::line::Line;

#[derive(Default)]
pub struct Intx {
    line: Option<Arc<dyn Line>>,
    asserted: bool,
    /// Auto-masked after a signal, or masked by the client.
    masked: bool,
    /// PCI COMMAND.INTX_DISABLE.
    disabled: bool,
}

impl Intx {
    /// The line's level (PCI STATUS bit 3).
    pub fn asserted(&self) -> bool {
        self.asserted
    }

    pub fn masked(&self) -> bool {
        self.masked
    }

    /// Raise the level; true if a signal went out.
    pub fn assert(&mut self) -> bool {
        self.asserted = true;
        self.fire()
    }

    pub fn deassert(&mut self) {
        self.asserted = false;
    }

    /// The client masks or unmasks; true if unmasking fired the line.
    pub fn set_masked(&mut self, masked: bool) -> bool {
        self.masked = masked;
        !masked && self.fire()
    }

    /// COMMAND.INTX_DISABLE changed; true if enabling fired the line.
    pub fn set_disabled(&mut self, disabled: bool) -> bool {
        self.disabled = disabled;
        !disabled && self.fire()
    }

    /// The client's trigger eventfd (None: INTx off).
    pub fn set_line(&mut self, line: Option<Arc<dyn Line>>) {
        self.line = line;
    }

    fn fire(&mut self) -> bool {
        if !self.asserted || self.disabled || self.masked {
            return false;
        }
        let Some(l) = &self.line else { return false };
        l.signal();
        self.masked = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::CountingLine;

    #[test]
    fn level_from_edges() {
        let line = Arc::new(CountingLine::default());
        let mut i = Intx::default();
        i.set_line(Some(line.clone()));
        assert!(i.assert());
        assert!(!i.assert(), "auto-masked until unmasked");
        assert!(i.set_masked(false), "still asserted: fires again");
        i.deassert();
        assert!(!i.set_masked(false), "de-asserted: quiet");
        assert!(!i.set_disabled(true));
        assert!(!i.assert(), "disabled");
        assert!(i.asserted(), "status bit still set");
        assert!(i.set_disabled(false));
        assert_eq!(line.count(), 3);
    }
}
