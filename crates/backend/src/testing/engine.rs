//! [`ScriptedEngine`]: the engine of a [`super::ScriptedBackend`]; `submit`
//! hands requests to the fake kernel, `reap` waits for its completions,
//! `cancel_all` abandons them, with the scripted faults applied.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::kernel::{Kernel, Pending, State};
use super::{lock, Outstanding, Shared};
use crate::{IoCompletion, IoEngine, IoRequest};

/// The engine of a [`ScriptedBackend`] (see the module documentation).
///
/// [`ScriptedBackend`]: super::ScriptedBackend
pub struct ScriptedEngine {
    kernel: Arc<Kernel>,
    queued: VecDeque<IoRequest>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedEngine {
    pub(super) fn new(shared: Arc<Shared>) -> io::Result<Self> {
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
