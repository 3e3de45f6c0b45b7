//! The table of registered guest mappings that the fault handler looks
//! fault addresses up in: fixed size, lock-free, async-signal-safe.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// How many guest mappings can be registered at once, process-wide.
pub const MAX_MAPPINGS: usize = 4096;

// ----------------------------------------------------------------------
// The registry the signal handler reads: fixed size, atomics only.
// ----------------------------------------------------------------------

const FREE: u8 = 0;
const CLAIMED: u8 = 1;
const ACTIVE: u8 = 2;

pub(crate) struct Slot {
    state: AtomicU8,
    start: AtomicUsize,
    len: AtomicUsize,
    pub(crate) faults: AtomicU32,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            state: AtomicU8::new(FREE),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            faults: AtomicU32::new(0),
        }
    }
}

pub(crate) static TABLE: [Slot; MAX_MAPPINGS] = [const { Slot::new() }; MAX_MAPPINGS];
pub(crate) static CONTAINED: AtomicU64 = AtomicU64::new(0);

/// Faults contained so far, process-wide (for counters and tests; a cheap
/// "did anything happen" check before [`faulted_within`]).
pub fn contained_faults() -> u64 {
    CONTAINED.load(Ordering::Relaxed)
}

/// Whether a registered mapping lying inside the host range
/// `[start, start + len)` has contained a fault: tells one device's guest
/// memory from another's.
pub fn faulted_within(start: usize, len: usize) -> bool {
    TABLE.iter().any(|s| {
        s.state.load(Ordering::Acquire) == ACTIVE && s.faults.load(Ordering::Relaxed) != 0 && {
            let at = s.start.load(Ordering::Relaxed);
            at >= start && at - start < len
        }
    })
}

pub(crate) fn claim() -> Option<usize> {
    TABLE.iter().position(|s| {
        s.state
            .compare_exchange(FREE, CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

pub(crate) fn activate(i: usize, start: usize, len: usize) {
    if let Some(s) = TABLE.get(i) {
        s.start.store(start, Ordering::Relaxed);
        s.len.store(len, Ordering::Relaxed);
        s.faults.store(0, Ordering::Relaxed);
        s.state.store(ACTIVE, Ordering::Release);
    }
}

pub(crate) fn release(i: usize) {
    if let Some(s) = TABLE.get(i) {
        s.state.store(FREE, Ordering::Release);
    }
}

/// Async-signal-safe: atomics only.
pub(crate) fn find(addr: usize) -> Option<&'static Slot> {
    TABLE.iter().find(|s| {
        s.state.load(Ordering::Acquire) == ACTIVE && {
            let start = s.start.load(Ordering::Relaxed);
            let len = s.len.load(Ordering::Relaxed);
            addr >= start && addr - start < len
        }
    })
}
