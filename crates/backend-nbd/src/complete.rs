//! Where completions go: each engine has a [`Sink`] (a list and an
//! eventfd); each guest request is a [`Parent`] of one or more NBD
//! commands and completes when the last of them has.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use vblk_backend::{IoCompletion, Token};

/// An engine's completions, filled by the connection threads.
pub struct Sink {
    done: Mutex<Vec<IoCompletion>>,
    /// Requests whose parts are done and that now need their FLUSH sent
    /// (see [`Parent::flush_after`]), by the engine's own thread.
    flush_wanted: Mutex<Vec<Arc<Parent>>>,
    efd: OwnedFd,
    /// Guest requests handed to a connection and not yet in `done`.
    outstanding: AtomicUsize,
}

impl Sink {
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Sink {
            done: Mutex::new(Vec::new()),
            flush_wanted: Mutex::new(Vec::new()),
            // SAFETY: `fd` was just created and is owned by nobody else.
            efd: unsafe { OwnedFd::from_raw_fd(fd) },
            outstanding: AtomicUsize::new(0),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }

    /// Signals the eventfd only when the list was empty: a non-empty list
    /// has been signalled already and not harvested yet (`reap` clears the
    /// fd before it harvests, so whatever joins the list in between is
    /// taken by that same harvest).
    pub fn complete(&self, c: IoCompletion) {
        let was_empty = {
            let mut d = self.done.lock().unwrap_or_else(|e| e.into_inner());
            d.push(c);
            d.len() == 1
        };
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
        if was_empty {
            self.signal();
        }
    }

    pub fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a local array to our eventfd. A full
        // counter (EAGAIN) still leaves the fd readable.
        let _ = unsafe { libc::write(self.efd.as_raw_fd(), one.as_ptr() as *const _, 8) };
    }

    /// Clear the eventfd (before harvesting, see the engine contract).
    pub fn clear(&self) {
        let mut b = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a local array; non-blocking.
        let _ = unsafe { libc::read(self.efd.as_raw_fd(), b.as_mut_ptr() as *mut _, 8) };
    }

    pub fn harvest(&self, out: &mut Vec<IoCompletion>) -> usize {
        let mut d = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let n = d.len();
        out.append(&mut d);
        n
    }

    /// The requests that wait for their FLUSH to be sent.
    pub fn take_flush_wanted(&self) -> Vec<Arc<Parent>> {
        std::mem::take(&mut *self.flush_wanted.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn started(&self) {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Acquire)
    }
}

/// One guest request, split into `remaining` NBD commands.
pub struct Parent {
    token: Token,
    len: u64,
    sink: Arc<Sink>,
    remaining: AtomicUsize,
    err: AtomicI32,
    /// A FUA write to a server without NBD_FLAG_SEND_FUA: once every part
    /// has succeeded, a FLUSH on the same connection, then the completion.
    then_flush: AtomicBool,
}

impl Parent {
    /// A request of `parts` commands (at least one).
    pub fn new(token: Token, len: u64, sink: Arc<Sink>, parts: usize) -> Arc<Self> {
        sink.started();
        Arc::new(Parent {
            token,
            len,
            sink,
            remaining: AtomicUsize::new(parts.max(1)),
            err: AtomicI32::new(0),
            then_flush: AtomicBool::new(false),
        })
    }

    /// Wake the engine this request belongs to (it has work: commands to
    /// send again after a reconnect).
    pub fn wake(&self) {
        self.sink.signal();
    }

    /// Complete only after a FLUSH, sent once the parts are done.
    pub fn flush_after(&self) {
        self.then_flush.store(true, Ordering::Release);
    }

    /// One command finished; the last one completes the request (with the
    /// first error any of them had, else the full length).
    pub fn part_done(self: &Arc<Self>, r: Result<(), i32>) {
        if let Err(e) = r {
            let _ = self
                .err
                .compare_exchange(0, e.max(1), Ordering::AcqRel, Ordering::Acquire);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let e = self.err.load(Ordering::Acquire);
            if e == 0 && self.then_flush.swap(false, Ordering::AcqRel) {
                // NBD does not order commands: the FLUSH goes out only
                // after the write has completed, so it covers it. The
                // engine's thread sends it (`NbdEngine::send_flushes`):
                // this may be the reply thread, which must never wait on
                // the send side, or the server could be waiting for it to
                // read while a queue thread waits for the server to read.
                self.remaining.store(1, Ordering::Release);
                self.sink
                    .flush_wanted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(self.clone());
                self.sink.signal();
                return;
            }
            self.sink.complete(IoCompletion {
                token: self.token,
                result: if e == 0 { Ok(self.len) } else { Err(e) },
            });
        }
    }
}
