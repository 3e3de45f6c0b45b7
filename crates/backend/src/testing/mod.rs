//! Test helpers for the device's tests (feature `test-util`, off by
//! default): a scripted, asynchronous engine over an in-memory disk.
//!
//! [`ScriptedBackend`] hands out [`ScriptedEngine`]s that behave like an
//! asynchronous engine (io_uring): `submit` hands requests to a fake
//! "kernel", which completes each one after a delay chosen by a script
//! closure on `(op, offset, len)`, from a helper thread, out of order when
//! the delays say so, signalling a real eventfd ([`IoEngine::completion_fd`])
//! for every completion. Faults can be injected:
//!
//! * per request ([`Outcome`]): an errno (`EIO`, `ENOSPC`, `EAGAIN`,
//!   `EINTR`, ...), a short transfer (`Ok(n)` with `n < len`), or a request
//!   that never completes until [`IoEngine::cancel_all`];
//! * per call: `submit` failing ([`ScriptedBackend::fail_submit`],
//!   optionally after accepting part of the batch — nothing is lost: the
//!   rest stays queued for the next `submit`), `reap` failing
//!   ([`ScriptedBackend::fail_reap`] — completions stay for the next call).
//!
//! The fake kernel touches a request's guest buffers exactly once, when the
//! request completes, and before the completion can be reaped; never
//! afterwards. [`ScriptedBackend::in_kernel`] and
//! [`ScriptedBackend::outstanding`] say what the kernel still holds, so a
//! device test can assert that nothing is published while its I/O is
//! outstanding.
//!
//! [`IoEngine::completion_fd`]: crate::IoEngine::completion_fd
//! [`IoEngine::cancel_all`]: crate::IoEngine::cancel_all

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Mutex, MutexGuard};

use crate::IoOp;

// Where each step lives: what a script decides for a request (`outcome`),
// the in-memory disk and its knobs (`backend`), the fake kernel that
// completes requests from a helper thread (`kernel`), and the engine a
// queue worker drives (`engine`).
mod backend;
mod engine;
mod kernel;
mod outcome;
#[cfg(test)]
mod tests;

pub use backend::ScriptedBackend;
pub use engine::ScriptedEngine;
pub use outcome::{Outcome, Outstanding};

type Script = Box<dyn FnMut(IoOp, u64, u64) -> Outcome + Send>;

#[derive(Default)]
struct Faults {
    submit_failures: u32,
    submit_errno: i32,
    /// Requests a failing `submit` accepts before it fails.
    submit_accept: usize,
    reap_failures: u32,
    reap_errno: i32,
}

struct Shared {
    disk: Mutex<Vec<u8>>,
    script: Mutex<Script>,
    faults: Mutex<Faults>,
    /// Held by the kernel, keyed by a unique sequence number.
    outstanding: Mutex<HashMap<u64, Outstanding>>,
    seq: AtomicU64,
    max_in_kernel: AtomicUsize,
    submitted: AtomicU64,
    completed: AtomicU64,
    flushes: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
