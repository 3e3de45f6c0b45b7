//! An [`Interrupt`] that records what was triggered.

use std::io;
use std::sync::Mutex;

use vblk_interrupt::{Interrupt, InterruptKind};

/// Records every interrupt, in order, for a test to take.
#[derive(Debug, Default)]
pub struct RecordingInterrupt {
    events: Mutex<Vec<InterruptKind>>,
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
