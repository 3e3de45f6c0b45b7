//! What an interrupt finally signals: a client's eventfd (MSI-X vector,
//! INTx), or a counter in tests. Used by `msix`, `intx` and `irq`, which
//! depend on it and not on each other.

use std::fs::File;
use std::io::Write;
#[cfg(any(test, feature = "test-util"))]
use std::sync::atomic::{AtomicU64, Ordering};

/// Something that can be signalled: an eventfd, or a counter in tests.
pub trait Line: Send + Sync {
    fn signal(&self);
}

/// An eventfd from the client.
pub struct EventFdLine(pub File);

impl Line for EventFdLine {
    fn signal(&self) {
        // An eventfd write only fails when the counter would overflow,
        // i.e. when the reader has stopped: nothing to do about it here.
        let _ = (&self.0).write_all(&1u64.to_ne_bytes());
    }
}

/// Counts signals, for tests (feature `test-util`: not in the release binary).
#[cfg(any(test, feature = "test-util"))]
#[derive(Default)]
pub struct CountingLine(pub AtomicU64);

#[cfg(any(test, feature = "test-util"))]
impl Line for CountingLine {
    fn signal(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(any(test, feature = "test-util"))]
impl CountingLine {
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
