//! [`ScriptedBackend`]: the in-memory disk, its script and fault knobs,
//! and what a test can ask about the fake kernel.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::engine::ScriptedEngine;
use super::{lock, Faults, Outcome, Outstanding, Shared};
use crate::{Backend, IoEngine, IoOp};

/// An in-memory disk whose engines complete asynchronously, as scripted.
#[derive(Clone)]
pub struct ScriptedBackend {
    shared: Arc<Shared>,
}

impl ScriptedBackend {
    /// A zeroed disk of `size` bytes; every request completes at once
    /// until [`ScriptedBackend::set_script`] says otherwise.
    pub fn new(size: u64) -> Self {
        Self::with_data(vec![0; usize::try_from(size).unwrap_or(0)])
    }

    pub fn with_data(data: Vec<u8>) -> Self {
        ScriptedBackend {
            shared: Arc::new(Shared {
                disk: Mutex::new(data),
                script: Mutex::new(Box::new(|_, _, _| Outcome::NOW)),
                faults: Mutex::new(Faults::default()),
                outstanding: Mutex::new(HashMap::new()),
                seq: AtomicU64::new(0),
                max_in_kernel: AtomicUsize::new(0),
                submitted: AtomicU64::new(0),
                completed: AtomicU64::new(0),
                flushes: AtomicU64::new(0),
            }),
        }
    }

    /// Decide each request's fate from `(op, offset, len)`, called once per
    /// request at `submit`, in submission order (shared by all engines).
    pub fn set_script(&self, script: impl FnMut(IoOp, u64, u64) -> Outcome + Send + 'static) {
        *lock(&self.shared.script) = Box::new(script);
    }

    /// The next `times` calls to `submit` fail with `errno` without handing
    /// anything to the kernel; the requests stay queued.
    pub fn fail_submit(&self, times: u32, errno: i32) {
        self.fail_submit_after(0, times, errno);
    }

    /// The next `times` calls to `submit` hand the first `accept` queued
    /// requests to the kernel, then fail with `errno`; the rest stay queued.
    pub fn fail_submit_after(&self, accept: usize, times: u32, errno: i32) {
        let mut f = lock(&self.shared.faults);
        f.submit_failures = times;
        f.submit_errno = errno;
        f.submit_accept = accept;
    }

    /// The next `times` calls to `reap`/`reap_timeout` fail with `errno`
    /// without returning anything (completions stay for a later call).
    pub fn fail_reap(&self, times: u32, errno: i32) {
        let mut f = lock(&self.shared.faults);
        f.reap_failures = times;
        f.reap_errno = errno;
    }

    /// Requests the fake kernel holds now (submitted, not completed).
    pub fn in_kernel(&self) -> usize {
        lock(&self.shared.outstanding).len()
    }

    /// The most requests the fake kernel ever held at once.
    pub fn max_in_kernel(&self) -> usize {
        self.shared.max_in_kernel.load(Ordering::SeqCst)
    }

    /// What the fake kernel holds now.
    pub fn outstanding(&self) -> Vec<Outstanding> {
        lock(&self.shared.outstanding).values().copied().collect()
    }

    /// Requests handed to the fake kernel so far.
    pub fn submitted(&self) -> u64 {
        self.shared.submitted.load(Ordering::SeqCst)
    }

    /// Requests the fake kernel completed so far (cancelled ones included).
    pub fn completed(&self) -> u64 {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// Flushes executed (including [`Backend::flush`]).
    pub fn flush_count(&self) -> u64 {
        self.shared.flushes.load(Ordering::SeqCst)
    }

    /// A copy of the disk.
    pub fn snapshot(&self) -> Vec<u8> {
        lock(&self.shared.disk).clone()
    }

    /// Overwrite disk bytes at `offset` (clamped to the disk).
    pub fn fill(&self, offset: usize, bytes: &[u8]) {
        let mut d = lock(&self.shared.disk);
        let start = offset.min(d.len());
        let end = offset.saturating_add(bytes.len()).min(d.len());
        d[start..end].copy_from_slice(&bytes[..end - start]);
    }

    /// A scripted engine (what [`Backend::engine`] returns, unboxed).
    pub fn scripted_engine(&self) -> io::Result<ScriptedEngine> {
        ScriptedEngine::new(self.shared.clone())
    }
}

impl Backend for ScriptedBackend {
    fn capacity(&self) -> u64 {
        lock(&self.shared.disk).len() as u64
    }

    fn engine(&self) -> io::Result<Box<dyn IoEngine>> {
        Ok(Box::new(self.scripted_engine()?))
    }

    fn flush(&self) -> io::Result<()> {
        self.shared.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn supports_discard(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("scripted memory ({} bytes)", self.capacity())
    }
}
