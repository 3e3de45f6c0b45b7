//! What the fake kernel does with one request ([`Outcome`], chosen by the
//! script) and what it holds meanwhile ([`Outstanding`]).

use std::time::Duration;

use crate::{IoOp, Token};

/// What the fake kernel does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Execute it on the in-memory disk `delay` after `submit` and report
    /// the real result.
    Complete { delay: Duration },
    /// Report `Err(errno)` after `delay` without touching disk or buffers.
    Errno { errno: i32, delay: Duration },
    /// Transfer only the first `bytes` bytes (reads and writes) and report
    /// `Ok(bytes)`, after `delay`.
    Short { bytes: u64, delay: Duration },
    /// Never complete until [`IoEngine::cancel_all`]; then `Err(ECANCELED)`.
    ///
    /// [`IoEngine::cancel_all`]: crate::IoEngine::cancel_all
    Stuck,
}

impl Outcome {
    /// Complete right away (during `submit`).
    pub const NOW: Outcome = Outcome::Complete {
        delay: Duration::ZERO,
    };

    /// Complete normally after `delay`.
    pub fn after(delay: Duration) -> Outcome {
        Outcome::Complete { delay }
    }

    pub(super) fn delay(&self) -> Option<Duration> {
        match *self {
            Outcome::Complete { delay }
            | Outcome::Errno { delay, .. }
            | Outcome::Short { delay, .. } => Some(delay),
            Outcome::Stuck => None,
        }
    }
}

/// A request the fake kernel holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outstanding {
    pub op: IoOp,
    pub offset: u64,
    pub len: u64,
    pub token: Token,
}
