//! One NBD connection: the send side (queue threads write request headers
//! and WRITE payloads straight from guest memory), the table of commands in
//! flight, and a thread that reads replies and reconnects.
//!
//! Locks: `send` before `table`, never the other way round. The reply
//! thread takes only `table` while reading replies, so a queue thread that
//! blocks in `writev` on a full socket never stops replies from draining.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cmd::Cmd;
use crate::connect::{open, Target};
use crate::handshake::ExportInfo;
use crate::iov::writev_all;
use crate::proto::{encode_request, CMD_DISC};

/// Reconnect backoff: doubling from MIN to MAX.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

fn shut(fd: &OwnedFd) {
    // SAFETY: shutdown takes no pointers; fd is open (we hold it).
    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
}

#[derive(Default)]
struct SendSide {
    fd: Option<Arc<OwnedFd>>,
    /// The server has been gone longer than the reconnect timeout: new
    /// commands fail at once.
    failed: bool,
}

#[derive(Default)]
pub(crate) struct Table {
    cmds: HashMap<u64, Cmd>,
    next: u64,
    /// Commands of a lost connection, to go out again on the new one (in
    /// the order they were first sent) by the next engine that reaps.
    unsent: Vec<u64>,
}

/// The state shared by the queue threads and the reply thread.
pub struct Inner {
    pub(crate) name: String,
    pub(crate) info: ExportInfo,
    target: Target,
    export: String,
    reconnect_timeout: Duration,
    send: Mutex<SendSide>,
    table: Mutex<Table>,
    pub(crate) stop: AtomicBool,
    /// Since when the server has been unusable, and the current backoff.
    /// A connection that handshakes but then breaks before answering
    /// anything does not end the outage: only a good reply does.
    outage: Mutex<Option<(Instant, Duration)>>,
    in_outage: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// Send a command (or keep it for the reconnect to send). Gives it back
    /// when the server has been gone too long.
    pub fn send(&self, cmd: Cmd) -> Result<(), Cmd> {
        let mut s = lock(&self.send);
        if s.failed {
            return Err(cmd);
        }
        let cookie = {
            let mut t = lock(&self.table);
            let c = t.next;
            t.next = t.next.wrapping_add(1);
            c
        };
        let hdr = cmd.header(cookie);
        let mut iov = Vec::with_capacity(1 + cmd.iovecs.len());
        iov.push(libc::iovec {
            iov_base: hdr.as_ptr() as *mut libc::c_void,
            iov_len: hdr.len(),
        });
        if cmd.has_payload() {
            iov.extend_from_slice(&cmd.iovecs);
        }
        lock(&self.table).cmds.insert(cookie, cmd);
        if let Some(fd) = &s.fd {
            // SAFETY: the header is local; the payload iovecs are guest
            // memory valid until the command completes, which cannot
            // happen before its header is sent (nothing answers it yet).
            if let Err(e) = unsafe { writev_all(fd.as_raw_fd(), &iov) } {
                // Part of a request may be on the wire: this connection is
                // unusable. The reply thread sees it close and reconnects;
                // the command stays in the table to be resent.
                log::warn!("{}: send failed: {e}; reconnecting", self.name);
                shut(fd);
                s.fd = None;
            }
        }
        Ok(())
    }

    /// No command in flight.
    pub(crate) fn idle(&self) -> bool {
        lock(&self.table).cmds.is_empty()
    }

    pub(crate) fn take(&self, cookie: u64) -> Option<Cmd> {
        lock(&self.table).cmds.remove(&cookie)
    }

    pub(crate) fn put_back(&self, cookie: u64, cmd: Cmd) {
        lock(&self.table).cmds.insert(cookie, cmd);
    }

    /// Complete every command in flight with `errno`.
    fn fail_all(&self, errno: i32) {
        let cmds: Vec<Cmd> = lock(&self.table).cmds.drain().map(|(_, c)| c).collect();
        for c in cmds {
            c.finish(Err(errno));
        }
    }

    /// Connect again with backoff until it works (commands in flight are
    /// sent again) or `stop`. After `reconnect_timeout` every command in
    /// flight fails with EIO and new ones fail at once, but attempts go on.
    fn reconnect(&self) -> Option<Arc<OwnedFd>> {
        let (start, mut delay, again) = {
            let mut o = lock(&self.outage);
            let again = o.is_some();
            let (since, delay) = *o.get_or_insert((Instant::now(), BACKOFF_MIN));
            self.in_outage.store(true, Ordering::Release);
            (since, delay, again)
        };
        if again {
            // Connected, then lost before any good reply: back off.
            self.nap(delay);
            delay = (delay * 2).min(BACKOFF_MAX);
        }
        let mut attempts = 0u64;
        loop {
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            let elapsed = start.elapsed();
            if elapsed >= self.reconnect_timeout {
                let mut s = lock(&self.send);
                if !s.failed {
                    s.failed = true;
                    drop(s);
                    log::error!(
                        "{}: server gone for {:?}: failing the requests in flight, still retrying",
                        self.name,
                        self.reconnect_timeout
                    );
                    self.fail_all(libc::EIO);
                }
            }
            attempts += 1;
            match open(&self.target, &self.export, self.reconnect_timeout) {
                Ok((fd, info)) if info.size == self.info.size && info.flags == self.info.flags => {
                    let fd = Arc::new(fd);
                    if self.resend(&fd) {
                        if let Some(o) = lock(&self.outage).as_mut() {
                            o.1 = delay;
                        }
                        log::warn!(
                            "{}: reconnected after {attempts} attempt(s), {:?}",
                            self.name,
                            start.elapsed()
                        );
                        return Some(fd);
                    }
                    shut(&fd);
                }
                Ok((_, info)) => log::error!(
                    "{}: the export changed (size {} flags {:#x}, was {} {:#x}); not using it",
                    self.name,
                    info.size,
                    info.flags,
                    self.info.size,
                    self.info.flags
                ),
                Err(e) => {
                    if attempts == 1 {
                        log::warn!("{}: reconnect failed: {e}; retrying", self.name);
                    }
                }
            }
            self.nap(delay);
            delay = (delay * 2).min(BACKOFF_MAX);
        }
    }

    fn nap(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A good reply arrived: the server is back for real.
    pub(crate) fn healthy(&self) {
        if self.in_outage.load(Ordering::Acquire) {
            self.in_outage.store(false, Ordering::Release);
            *lock(&self.outage) = None;
        }
    }

    /// Install a fresh connection; every command in flight is to be sent
    /// again on it. Not here: this is the reply thread, which must be
    /// reading while they go out (the server may answer the first before
    /// it reads the rest). The engines whose commands they are are woken
    /// and send them ([`Inner::send_unsent`]).
    fn resend(&self, fd: &Arc<OwnedFd>) -> bool {
        let mut s = lock(&self.send);
        // Drop sets `stop` before it takes this lock to shut the socket:
        // either it sees this connection or we see `stop`.
        if self.stop.load(Ordering::Acquire) {
            return false;
        }
        let mut t = lock(&self.table);
        let mut cookies: Vec<u64> = t.cmds.keys().copied().collect();
        cookies.sort_unstable();
        for c in &cookies {
            if let Some(cmd) = t.cmds.get_mut(c) {
                cmd.reset();
                cmd.parent.wake();
            }
        }
        if !cookies.is_empty() {
            log::warn!("{}: {} request(s) to send again", self.name, cookies.len());
        }
        t.unsent = cookies;
        s.fd = Some(fd.clone());
        s.failed = false;
        true
    }

    /// Send the commands a reconnect left to send again (see `resend`);
    /// on a queue thread, never the reply thread.
    pub fn send_unsent(&self) {
        let mut s = lock(&self.send);
        let Some(fd) = s.fd.clone() else {
            return;
        };
        let mut hdrs = Vec::new();
        let mut iov = Vec::new();
        {
            let mut t = lock(&self.table);
            if t.unsent.is_empty() {
                return;
            }
            let cookies = std::mem::take(&mut t.unsent);
            hdrs.reserve(cookies.len());
            // Headers first, so their addresses are stable below.
            for c in &cookies {
                if let Some(cmd) = t.cmds.get(c) {
                    hdrs.push((cmd.header(*c), *c));
                }
            }
            for (h, c) in &hdrs {
                iov.push(libc::iovec {
                    iov_base: h.as_ptr() as *mut libc::c_void,
                    iov_len: h.len(),
                });
                if let Some(cmd) = t.cmds.get(c).filter(|cmd| cmd.has_payload()) {
                    iov.extend_from_slice(&cmd.iovecs);
                }
            }
        }
        // SAFETY: as in `send`: the headers are local, the payloads guest
        // memory their requests keep mapped until they complete.
        if let Err(e) = unsafe { writev_all(fd.as_raw_fd(), &iov) } {
            // The reply thread sees the connection fail and reconnects,
            // which marks every command in flight to be sent again.
            log::warn!("{}: sending again failed: {e}; reconnecting", self.name);
            shut(&fd);
            s.fd = None;
        }
    }
}

/// A connection and its reply thread; dropping it disconnects.
pub struct Conn {
    pub(crate) inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

pub type ThreadHook = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

impl Conn {
    /// Connect, negotiate and start the reply thread `vblk-nbd-<index>`
    /// (which runs `hook` first: its seccomp filter).
    pub fn start(
        target: Target,
        export: &str,
        reconnect_timeout: Duration,
        index: usize,
        hook: Option<ThreadHook>,
    ) -> io::Result<Conn> {
        let (fd, info) = open(&target, export, reconnect_timeout)?;
        let fd = Arc::new(fd);
        let inner = Arc::new(Inner {
            name: format!("nbd connection {index}"),
            info,
            target,
            export: export.to_string(),
            reconnect_timeout,
            send: Mutex::new(SendSide {
                fd: Some(fd.clone()),
                failed: false,
            }),
            table: Mutex::new(Table::default()),
            stop: AtomicBool::new(false),
            outage: Mutex::new(None),
            in_outage: AtomicBool::new(false),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let i2 = inner.clone();
        let thread = std::thread::Builder::new()
            .name(format!("vblk-nbd-{index}"))
            .spawn(move || {
                let r = hook.map(|h| h()).unwrap_or(Ok(()));
                let ok = r.is_ok();
                let _ = tx.send(r);
                if ok {
                    run(i2, fd);
                }
            })?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::Error::other("the NBD thread died at start")),
        }
        Ok(Conn {
            inner,
            thread: Some(thread),
        })
    }

    pub fn info(&self) -> &ExportInfo {
        &self.inner.info
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        {
            let s = lock(&self.inner.send);
            if let Some(fd) = &s.fd {
                // "The client ... SHOULD send NBD_CMD_DISC" before closing.
                let disc = encode_request(0, CMD_DISC, u64::MAX, 0, 0);
                let v = [libc::iovec {
                    iov_base: disc.as_ptr() as *mut libc::c_void,
                    iov_len: disc.len(),
                }];
                // SAFETY: a local buffer.
                let _ = unsafe { writev_all(fd.as_raw_fd(), &v) };
                shut(fd);
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reply thread: read replies until the connection breaks, then
/// reconnect; on stop, fail whatever is left.
fn run(inner: Arc<Inner>, mut fd: Arc<OwnedFd>) {
    loop {
        let e = crate::reader::serve(&inner, fd.as_raw_fd());
        if inner.stop.load(Ordering::Acquire) {
            break;
        }
        log::warn!("{}: connection lost: {e}; reconnecting", inner.name);
        shut(&fd);
        {
            let mut s = lock(&inner.send);
            if s.fd.as_ref().is_some_and(|f| Arc::ptr_eq(f, &fd)) {
                s.fd = None;
            }
        }
        match inner.reconnect() {
            Some(f) => fd = f,
            None => break,
        }
    }
    lock(&inner.send).failed = true;
    inner.fail_all(libc::ESHUTDOWN);
}
