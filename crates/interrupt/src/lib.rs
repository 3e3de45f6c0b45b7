//! The interrupt interface between the device core and a transport.
//!
//! The device core decides *whether* the driver must be told (EVENT_IDX /
//! NO_INTERRUPT suppression happens in the core, once, for every transport).
//! The transport decides *how*: an MSI-X vector, the INTx line plus the ISR
//! register, or a vhost-user call eventfd.

use std::io;

/// What needs the driver's attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InterruptKind {
    /// The device configuration changed (or the device needs a reset).
    Config,
    /// Queue `n` has new entries in its used ring.
    Queue(u16),
}

/// Delivers an interrupt to the driver. Implemented by each transport.
pub trait Interrupt: Send + Sync {
    /// Deliver `kind`. Errors are for logging: the device keeps serving.
    fn trigger(&self, kind: InterruptKind) -> io::Result<()>;
}

/// An [`Interrupt`] that records what was triggered, for tests.
#[derive(Debug, Default)]
pub struct RecordingInterrupt {
    events: std::sync::Mutex<Vec<InterruptKind>>,
}

impl RecordingInterrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Take every interrupt recorded so far.
    pub fn take(&self) -> Vec<InterruptKind> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Interrupt for RecordingInterrupt {
    fn trigger(&self, kind: InterruptKind) -> io::Result<()> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(kind);
        Ok(())
    }
}

impl<T: Interrupt + ?Sized> Interrupt for std::sync::Arc<T> {
    fn trigger(&self, kind: InterruptKind) -> io::Result<()> {
        (**self).trigger(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_interrupt_records_in_order() {
        let r = RecordingInterrupt::new();
        r.trigger(InterruptKind::Queue(1)).unwrap();
        r.trigger(InterruptKind::Config).unwrap();
        assert_eq!(
            r.take(),
            vec![InterruptKind::Queue(1), InterruptKind::Config]
        );
        assert!(r.take().is_empty());
    }
}
