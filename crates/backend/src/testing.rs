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

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Backend, IoCompletion, IoEngine, IoOp, IoRequest, Token};

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

    fn delay(&self) -> Option<Duration> {
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

/// Execute `req` on the disk, moving at most `limit` bytes.
fn execute(shared: &Shared, req: &IoRequest, limit: u64) -> Result<u64, i32> {
    let mut data = lock(&shared.disk);
    let size = data.len() as u64;
    let end = req.offset.checked_add(req.len).ok_or(libc::EINVAL)?;
    if end > size {
        return Err(libc::EIO);
    }
    // Both fit in usize: end <= size = a Vec length.
    let (start, end) = (req.offset as usize, end as usize);
    match req.op {
        IoOp::Flush => {
            shared.flushes.fetch_add(1, Ordering::SeqCst);
            Ok(0)
        }
        IoOp::Discard | IoOp::WriteZeroes => {
            data[start..end].fill(0);
            Ok(req.len)
        }
        IoOp::Read | IoOp::Write => {
            let limit = limit.min(req.len);
            let mut done = 0u64;
            for v in &req.iovecs {
                if done >= limit {
                    break;
                }
                // Both bounded by `limit - done` <= len, so they fit.
                let n = (v.iov_len as u64).min(limit - done) as usize;
                let pos = start + done as usize;
                if req.op == IoOp::Read {
                    // SAFETY: the iovec points to `iov_len` >= n writable bytes
                    // that stay valid until the completion is reaped
                    // (IoEngine::push contract).
                    let dst = unsafe { std::slice::from_raw_parts_mut(v.iov_base as *mut u8, n) };
                    dst.copy_from_slice(&data[pos..pos + n]);
                } else {
                    // SAFETY: as above, readable bytes.
                    let src = unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, n) };
                    data[pos..pos + n].copy_from_slice(src);
                }
                done += n as u64;
            }
            Ok(done)
        }
    }
}

struct Pending {
    seq: u64,
    req: IoRequest,
    outcome: Outcome,
    /// `None`: stuck.
    due: Option<Instant>,
}

#[derive(Default)]
struct State {
    pending: Vec<Pending>,
    ready: Vec<IoCompletion>,
    stop: bool,
}

struct Kernel {
    shared: Arc<Shared>,
    state: Mutex<State>,
    cv: Condvar,
    evfd: OwnedFd,
}

impl Kernel {
    fn signal(&self) {
        let v = 1u64;
        // SAFETY: writes 8 bytes from `v` to an eventfd we own.
        unsafe {
            libc::write(
                self.evfd.as_raw_fd(),
                &v as *const u64 as *const libc::c_void,
                8,
            )
        };
    }

    /// Complete one request: touch its buffers (the only time), then make
    /// it reapable and signal.
    fn finish(&self, st: &mut State, p: Pending, cancelled: bool) {
        let result = if cancelled {
            Err(libc::ECANCELED)
        } else {
            match p.outcome {
                Outcome::Complete { .. } => execute(&self.shared, &p.req, u64::MAX),
                Outcome::Short { bytes, .. } => execute(&self.shared, &p.req, bytes),
                Outcome::Errno { errno, .. } => Err(errno),
                Outcome::Stuck => Err(libc::ECANCELED),
            }
        };
        lock(&self.shared.outstanding).remove(&p.seq);
        self.shared.completed.fetch_add(1, Ordering::SeqCst);
        st.ready.push(IoCompletion {
            token: p.req.token,
            result,
        });
        self.signal();
        self.cv.notify_all();
    }

    /// The helper thread: complete pending requests when they are due.
    fn run(self: Arc<Self>) {
        let mut st = lock(&self.state);
        loop {
            let now = Instant::now();
            let next = st
                .pending
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.due.map(|d| (i, d)))
                .min_by_key(|&(_, d)| d);
            match next {
                Some((i, due)) if due <= now => {
                    let p = st.pending.swap_remove(i);
                    self.finish(&mut st, p, false);
                }
                Some((_, due)) => {
                    st = self
                        .cv
                        .wait_timeout(st, due - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None if st.stop => return,
                None => st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// The engine of a [`ScriptedBackend`] (see the module documentation).
pub struct ScriptedEngine {
    kernel: Arc<Kernel>,
    queued: VecDeque<IoRequest>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedEngine {
    fn new(shared: Arc<Shared>) -> io::Result<Self> {
        // SAFETY: plain syscall; the new descriptor is owned below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let evfd = unsafe { OwnedFd::from_raw_fd(raw) };
        let kernel = Arc::new(Kernel {
            shared,
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            evfd,
        });
        let k = kernel.clone();
        let thread = std::thread::Builder::new()
            .name("scripted-kernel".into())
            .spawn(move || k.run())?;
        Ok(ScriptedEngine {
            kernel,
            queued: VecDeque::new(),
            thread: Some(thread),
        })
    }

    /// Hand one request to the fake kernel.
    fn start(&mut self, req: IoRequest) {
        let shared = &self.kernel.shared;
        let outcome = (lock(&shared.script))(req.op, req.offset, req.len);
        let seq = shared.seq.fetch_add(1, Ordering::SeqCst);
        shared.submitted.fetch_add(1, Ordering::SeqCst);
        {
            let mut o = lock(&shared.outstanding);
            o.insert(
                seq,
                Outstanding {
                    op: req.op,
                    offset: req.offset,
                    len: req.len,
                    token: req.token,
                },
            );
            shared.max_in_kernel.fetch_max(o.len(), Ordering::SeqCst);
        }
        let due = outcome.delay().map(|d| Instant::now() + d);
        let p = Pending {
            seq,
            req,
            outcome,
            due,
        };
        let mut st = lock(&self.kernel.state);
        if outcome.delay() == Some(Duration::ZERO) {
            self.kernel.finish(&mut st, p, false);
        } else {
            st.pending.push(p);
            self.kernel.cv.notify_all();
        }
    }

    fn clear(&self) {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into `v` from a non-blocking eventfd we own.
        unsafe {
            libc::read(
                self.kernel.evfd.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }

    fn reap_until(
        &mut self,
        out: &mut Vec<IoCompletion>,
        min: usize,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        self.clear();
        let mut st = lock(&self.kernel.state);
        {
            let mut f = lock(&self.kernel.shared.faults);
            if f.reap_failures > 0 {
                f.reap_failures -= 1;
                if !st.ready.is_empty() {
                    self.kernel.signal();
                }
                return Err(io::Error::from_raw_os_error(f.reap_errno));
            }
        }
        loop {
            // `reap` does not wait for stuck requests (nothing on this
            // thread could ever cancel them); `reap_timeout` waits for them
            // until its deadline, like a real stuck engine.
            let can_complete = if deadline.is_some() {
                !st.pending.is_empty()
            } else {
                st.pending.iter().any(|p| p.due.is_some())
            };
            if st.ready.len() >= min || !can_complete {
                break;
            }
            match deadline {
                None => st = self.kernel.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break;
                    }
                    st = self
                        .kernel
                        .cv
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        out.append(&mut st.ready);
        Ok(())
    }
}

impl IoEngine for ScriptedEngine {
    unsafe fn push(&mut self, req: IoRequest) {
        self.queued.push_back(req);
    }

    fn submit(&mut self) -> io::Result<()> {
        let fault = {
            let mut f = lock(&self.kernel.shared.faults);
            if f.submit_failures > 0 {
                f.submit_failures -= 1;
                Some((f.submit_accept, f.submit_errno))
            } else {
                None
            }
        };
        let accept = fault.map_or(usize::MAX, |(a, _)| a);
        let mut n = 0;
        while n < accept {
            let Some(req) = self.queued.pop_front() else {
                break;
            };
            self.start(req);
            n += 1;
        }
        match fault {
            Some((_, errno)) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    /// Waits for `min` completions, or until no pending request can
    /// complete any more (stuck ones cannot, until `cancel_all`; unlike a
    /// real engine, `reap` returns rather than hang on them, while
    /// `reap_timeout` waits for them until its timeout).
    fn reap(&mut self, out: &mut Vec<IoCompletion>, min: usize) -> io::Result<()> {
        self.reap_until(out, min, None)
    }

    fn reap_timeout(
        &mut self,
        out: &mut Vec<IoCompletion>,
        min: usize,
        timeout: Duration,
    ) -> io::Result<()> {
        self.reap_until(out, min, Instant::now().checked_add(timeout))
    }

    /// Everything not yet complete (queued, delayed or stuck) completes
    /// with `ECANCELED`, without touching its buffers.
    fn cancel_all(&mut self) {
        let mut st = lock(&self.kernel.state);
        while let Some(req) = self.queued.pop_front() {
            st.ready.push(IoCompletion {
                token: req.token,
                result: Err(libc::ECANCELED),
            });
        }
        for p in std::mem::take(&mut st.pending) {
            self.kernel.finish(&mut st, p, true);
        }
        self.kernel.signal();
        self.kernel.cv.notify_all();
    }

    fn in_flight(&self) -> usize {
        let st = lock(&self.kernel.state);
        self.queued.len() + st.pending.len() + st.ready.len()
    }

    fn completion_fd(&self) -> Option<RawFd> {
        Some(self.kernel.evfd.as_raw_fd())
    }

    fn name(&self) -> &'static str {
        "scripted"
    }
}

impl Drop for ScriptedEngine {
    fn drop(&mut self) {
        // Stuck requests never touch their buffers: drop them. Delayed ones
        // complete first, so no buffer is written after the engine is gone.
        {
            let mut st = lock(&self.kernel.state);
            st.pending.retain(|p| {
                if p.due.is_none() {
                    lock(&self.kernel.shared.outstanding).remove(&p.seq);
                }
                p.due.is_some()
            });
            st.stop = true;
            self.kernel.cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::iov;

    fn push(e: &mut ScriptedEngine, op: IoOp, offset: u64, bufs: &mut [&mut [u8]], token: u64) {
        let iovecs: Vec<libc::iovec> = bufs.iter_mut().map(|b| iov(b)).collect();
        let len = iovecs.iter().map(|v| v.iov_len as u64).sum();
        // SAFETY: every caller reaps before its buffers go away.
        unsafe {
            e.push(IoRequest {
                op,
                offset,
                len,
                iovecs,
                token,
                fua: false,
            })
        };
    }

    fn readable(fd: RawFd, ms: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) == 1 }
    }

    #[test]
    fn delays_complete_out_of_order_and_signal_the_eventfd() {
        let b = ScriptedBackend::new(1 << 16);
        b.fill(0, &[7; 4096]);
        b.set_script(|_, offset, _| {
            Outcome::after(Duration::from_millis(if offset == 0 { 150 } else { 10 }))
        });
        let mut e = b.scripted_engine().unwrap();
        let fd = e.completion_fd().unwrap();
        let mut slow = vec![0u8; 4096];
        let mut fast = vec![1u8; 4096];
        push(&mut e, IoOp::Read, 0, &mut [&mut slow], 1);
        push(&mut e, IoOp::Write, 8192, &mut [&mut fast], 2);
        e.submit().unwrap();
        assert_eq!(b.in_kernel(), 2);
        assert!(!readable(fd, 0), "nothing is complete yet");
        assert!(readable(fd, 2000), "the fast one signals");
        let mut out = vec![];
        e.reap(&mut out, 1).unwrap();
        assert_eq!(
            out,
            vec![IoCompletion {
                token: 2,
                result: Ok(4096)
            }]
        );
        assert_eq!(b.in_kernel(), 1);
        assert_eq!(b.outstanding()[0].token, 1);
        assert!(
            slow.iter().all(|&x| x == 0),
            "not written before its completion"
        );
        e.reap(&mut out, 2).unwrap();
        assert_eq!(
            out[1],
            IoCompletion {
                token: 1,
                result: Ok(4096)
            }
        );
        assert!(slow.iter().all(|&x| x == 7));
        assert_eq!((b.in_kernel(), b.max_in_kernel(), e.in_flight()), (0, 2, 0));
        assert_eq!(&b.snapshot()[8192..12288], &[1u8; 4096][..]);
    }

    #[test]
    fn injected_results() {
        let b = ScriptedBackend::new(1 << 16);
        b.set_script(|op, offset, _| match (op, offset) {
            (IoOp::Read, 0) => Outcome::Errno {
                errno: libc::EIO,
                delay: Duration::ZERO,
            },
            (IoOp::Read, 512) => Outcome::Errno {
                errno: libc::EAGAIN,
                delay: Duration::ZERO,
            },
            (IoOp::Read, 1024) => Outcome::Errno {
                errno: libc::EINTR,
                delay: Duration::ZERO,
            },
            (IoOp::Write, _) => Outcome::Short {
                bytes: 100,
                delay: Duration::from_millis(5),
            },
            _ => Outcome::Errno {
                errno: libc::ENOSPC,
                delay: Duration::ZERO,
            },
        });
        let mut e = b.scripted_engine().unwrap();
        let mut bufs: Vec<Vec<u8>> = (0..5).map(|_| vec![9u8; 512]).collect();
        for (i, buf) in bufs.iter_mut().enumerate().take(3) {
            push(&mut e, IoOp::Read, i as u64 * 512, &mut [buf], i as u64);
        }
        push(&mut e, IoOp::Write, 4096, &mut [&mut bufs[3]], 3);
        push(&mut e, IoOp::Flush, 0, &mut [], 4);
        e.submit().unwrap();
        let mut out = vec![];
        e.reap(&mut out, 5).unwrap();
        out.sort_by_key(|c| c.token);
        let got: Vec<_> = out.iter().map(|c| c.result).collect();
        assert_eq!(
            got,
            vec![
                Err(libc::EIO),
                Err(libc::EAGAIN),
                Err(libc::EINTR),
                Ok(100),
                Err(libc::ENOSPC)
            ]
        );
        let d = b.snapshot();
        assert!(
            d[4096..4196].iter().all(|&x| x == 9) && d[4196] == 0,
            "short write"
        );
    }

    #[test]
    fn submit_failures_lose_nothing() {
        let b = ScriptedBackend::new(1 << 16);
        let mut e = b.scripted_engine().unwrap();
        let mut bufs: Vec<Vec<u8>> = (0..4).map(|_| vec![0u8; 512]).collect();
        for (i, buf) in bufs.iter_mut().enumerate() {
            push(&mut e, IoOp::Read, 0, &mut [buf], i as u64);
        }
        b.fail_submit(1, libc::EAGAIN);
        assert_eq!(e.submit().unwrap_err().raw_os_error(), Some(libc::EAGAIN));
        assert_eq!((b.submitted(), e.in_flight()), (0, 4));
        b.fail_submit_after(1, 1, libc::ENOMEM);
        assert!(e.submit().is_err());
        assert_eq!((b.submitted(), e.in_flight()), (1, 4));
        e.submit().unwrap();
        let mut out = vec![];
        e.reap(&mut out, 4).unwrap();
        let mut tokens: Vec<_> = out.iter().map(|c| c.token).collect();
        tokens.sort();
        assert_eq!(tokens, vec![0, 1, 2, 3], "each exactly once");
        assert_eq!(e.in_flight(), 0);
    }

    #[test]
    fn reap_failures_keep_completions_and_resignal() {
        let b = ScriptedBackend::new(4096);
        let mut e = b.scripted_engine().unwrap();
        let mut buf = vec![0u8; 512];
        push(&mut e, IoOp::Read, 0, &mut [&mut buf], 5);
        e.submit().unwrap();
        b.fail_reap(1, libc::EIO);
        let mut out = vec![];
        assert!(e.reap(&mut out, 1).is_err());
        assert!(out.is_empty());
        assert!(readable(e.completion_fd().unwrap(), 0), "signalled again");
        e.reap(&mut out, 1).unwrap();
        assert_eq!(
            out,
            vec![IoCompletion {
                token: 5,
                result: Ok(512)
            }]
        );
    }

    #[test]
    fn stuck_until_cancel_all() {
        let b = ScriptedBackend::new(4096);
        b.set_script(|_, _, _| Outcome::Stuck);
        let mut e = b.scripted_engine().unwrap();
        let mut buf = vec![3u8; 512];
        push(&mut e, IoOp::Read, 0, &mut [&mut buf], 1);
        e.submit().unwrap();
        let mut out = vec![];
        let t = Instant::now();
        e.reap_timeout(&mut out, 1, Duration::from_millis(50))
            .unwrap();
        assert!(out.is_empty() && t.elapsed() >= Duration::from_millis(45));
        e.reap(&mut out, 1).unwrap();
        assert!(
            out.is_empty(),
            "reap does not wait for what cannot complete"
        );
        assert_eq!((b.in_kernel(), e.in_flight()), (1, 1));
        e.cancel_all();
        e.reap(&mut out, 1).unwrap();
        assert_eq!(
            out,
            vec![IoCompletion {
                token: 1,
                result: Err(libc::ECANCELED)
            }]
        );
        assert!(
            buf.iter().all(|&x| x == 3),
            "a cancelled read writes nothing"
        );
        assert_eq!(b.in_kernel(), 0);
    }
}
