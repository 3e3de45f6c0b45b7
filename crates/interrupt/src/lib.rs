//! The interrupt interface between the device core and a transport.
//!
//! The device core decides *whether* the driver must be told (EVENT_IDX /
//! NO_INTERRUPT suppression happens in the core, once, for every transport).
//! The transport decides *how*: an MSI-X vector, the INTx line plus the ISR
//! register, or a vhost-user call eventfd.
//!
//! The test double (`RecordingInterrupt`) lives in `vblk-testkit`, outside
//! the release binary.

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

impl<T: Interrupt + ?Sized> Interrupt for std::sync::Arc<T> {
    fn trigger(&self, kind: InterruptKind) -> io::Result<()> {
        (**self).trigger(kind)
    }
}
