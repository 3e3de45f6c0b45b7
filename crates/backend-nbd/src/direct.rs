//! Replies read by the queue thread itself (no reply thread on the hot
//! path): the socket is polled together with the engine's eventfd, and
//! `reap` receives whatever is readable without blocking (`MSG_DONTWAIT`),
//! many replies per `recv`, and completes every whole reply in the buffer.
//!
//! A reply is taken only once all of it is in the buffer, so a command
//! never has half an answer in guest memory while it waits, and a broken
//! connection loses no state: the command is still in the table, to be
//! sent again. After [`drain`] the buffer holds at most the start of one
//! reply whose rest has not arrived: that rest makes the socket readable
//! again, so no completion can sit unseen in user space.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::complete::Sink;
use crate::conn::{lock, shut, Inner};
use crate::connect::SEND_TIMEOUT;
use crate::iov::{advance, IOV_MAX};
use crate::proto::*;
use crate::reader::{reply, SliceSrc};

/// Bytes asked of the kernel per `recv`, at least.
const CHUNK: usize = 64 << 10;
/// Most bytes one `drain` takes before it returns (the socket stays
/// readable, so the runner comes back): a flooding server cannot keep a
/// queue thread in here.
const BUDGET: usize = 4 << 20;

/// The socket the engines read, and what they have received of it.
pub(crate) struct Reader {
    pub fd: Option<Arc<OwnedFd>>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Reader {
    pub fn new(fd: Option<Arc<OwnedFd>>) -> Self {
        Reader {
            fd,
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// A new socket (or none): what the old one left is dropped.
    pub fn reset(&mut self, fd: Option<Arc<OwnedFd>>) {
        self.fd = fd;
        self.start = 0;
        self.end = 0;
    }
}

fn broken(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The whole length of the reply at the start of `b`, once its header is
/// there. Bounded before anything waits for it.
fn needed(inner: &Inner, b: &[u8]) -> io::Result<Option<usize>> {
    let Some(m) = b.get(..4) else {
        return Ok(None);
    };
    let magic = be32(m, 0);
    match reply_kind(magic) {
        Some(ReplyKind::Simple) => {
            let Some(rest) = b.get(4..SIMPLE_REPLY_LEN) else {
                return Ok(None);
            };
            let mut h = [0u8; 12];
            h.copy_from_slice(rest);
            let r = decode_simple(&h);
            // A successful READ carries exactly the length we asked for.
            let payload = if r.error == 0 {
                inner.read_len(r.cookie)
            } else {
                0
            };
            Ok(Some(SIMPLE_REPLY_LEN + payload as usize))
        }
        Some(ReplyKind::Structured) => {
            let Some(rest) = b.get(4..STRUCTURED_HEADER_LEN) else {
                return Ok(None);
            };
            let mut h = [0u8; 16];
            h.copy_from_slice(rest);
            let h = decode_chunk(&h);
            // No chunk is longer than a payload plus its offset, or an
            // error chunk (checked in detail by `reply`).
            let max =
                u64::from(inner.info.max_payload()) + 8 + 6 + u64::from(MAX_ERROR_MESSAGE) + 8;
            if u64::from(h.len) > max {
                return Err(broken(format!("reply chunk of {} bytes", h.len)));
            }
            Ok(Some(STRUCTURED_HEADER_LEN + h.len as usize))
        }
        None => Err(broken(format!("bad reply magic {magic:#x}"))),
    }
}

/// Receive and complete whatever replies the socket has, without
/// blocking. An error means the connection is unusable.
pub(crate) fn drain(inner: &Inner, r: &mut Reader) -> io::Result<()> {
    let Some(fd) = r.fd.clone() else {
        return Ok(());
    };
    let mut total = 0usize;
    loop {
        // Every whole reply in the buffer first.
        let want = loop {
            let avail = &r.buf[r.start..r.end];
            match needed(inner, avail)? {
                Some(n) if n <= avail.len() => {
                    let mut magic = [0u8; 4];
                    magic.copy_from_slice(&avail[..4]);
                    let mut src = SliceSrc(&avail[4..n]);
                    let whole = reply(inner, &mut src, magic)?;
                    if !src.0.is_empty() {
                        return Err(broken("reply shorter than its header says".into()));
                    }
                    if whole {
                        inner.healthy();
                    }
                    r.start += n;
                }
                Some(n) => break n,
                None => break STRUCTURED_HEADER_LEN,
            }
        };
        if total >= BUDGET {
            return Ok(());
        }
        // Room for the rest of this reply, and more.
        if r.start == r.end {
            r.start = 0;
            r.end = 0;
        }
        let need = want.max(CHUNK);
        if r.buf.len() - r.start < need || r.buf.len() - r.end < CHUNK / 4 {
            r.buf.copy_within(r.start..r.end, 0);
            r.end -= r.start;
            r.start = 0;
            if r.buf.len() < need {
                r.buf.resize(need, 0);
            }
        }
        let space = r.buf.len() - r.end;
        // SAFETY: receives into our own buffer, at most `space` bytes past
        // `end`, which lie inside it.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                r.buf.as_mut_ptr().add(r.end) as *mut libc::c_void,
                space,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(()),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let n = n as usize;
        r.end += n;
        total += n;
        inner.received(n);
        if n < space {
            // The socket had no more: complete what arrived, then stop
            // (anything arriving later makes the socket readable again).
            total = BUDGET;
        }
    }
}

/// How often the connection thread looks at a connection in direct mode.
const TICK: Duration = Duration::from_millis(100);

impl Inner {
    /// Direct mode: tell the connection thread to reconnect.
    pub(crate) fn notify_lost(&self) {
        *lock(&self.lost) = true;
        self.lost_cv.notify_all();
    }

    pub(crate) fn received(&self, n: usize) {
        self.rx.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The socket engines read is unusable: nobody reads it any more (what
    /// it holds is dropped; the commands stay in the table to be resent),
    /// and the connection thread reconnects.
    pub(crate) fn lose(&self, r: &mut Reader, why: &io::Error) {
        if let Some(fd) = r.fd.take() {
            log::warn!("{}: connection lost: {why}; reconnecting", self.name);
            // Senders see the shut socket fail (this may run inside
            // `send`, with its lock held: no `send` lock here).
            shut(&fd);
            r.reset(None);
            self.gen.fetch_add(1, Ordering::AcqRel);
            self.notify_watchers();
        }
        self.notify_lost();
    }

    /// A new socket for the engines to read.
    fn install(&self, fd: Arc<OwnedFd>) {
        {
            let mut r = lock(&self.reader);
            r.reset(Some(fd));
            self.gen.fetch_add(1, Ordering::AcqRel);
        }
        self.notify_watchers();
    }

    /// An engine reading this connection: woken when the socket changes.
    pub(crate) fn watch(&self, sink: &Arc<Sink>) {
        let mut w = lock(&self.watchers);
        w.retain(|s| s.strong_count() > 0);
        w.push(Arc::downgrade(sink));
    }

    fn notify_watchers(&self) {
        let w: Vec<Arc<Sink>> = lock(&self.watchers)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for s in w {
            s.signal();
        }
    }
}

/// The connection thread in direct mode: reconnect when an engine (or a
/// failed send) says the connection broke, and treat a server that leaves
/// commands unanswered for the reconnect timeout as gone (as the reply
/// thread's receive timeout does).
pub(crate) fn run(inner: Arc<Inner>, _first: Arc<OwnedFd>) {
    let reply_timeout = inner.reconnect_timeout.max(Duration::from_secs(1));
    let mut last_rx = inner.rx.load(Ordering::Relaxed);
    let mut silent_since: Option<Instant> = None;
    loop {
        let lost = {
            let g = lock(&inner.lost);
            let (g, _) = inner
                .lost_cv
                .wait_timeout_while(g, TICK, |l| !*l && !inner.stop.load(Ordering::Acquire))
                .unwrap_or_else(|e| e.into_inner());
            *g
        };
        if inner.stop.load(Ordering::Acquire) {
            break;
        }
        if !lost {
            let rx = inner.rx.load(Ordering::Relaxed);
            if rx != last_rx || inner.idle() {
                last_rx = rx;
                silent_since = None;
            } else if silent_since.get_or_insert_with(Instant::now).elapsed() >= reply_timeout {
                silent_since = None;
                let e = io::Error::new(io::ErrorKind::TimedOut, "no reply in time");
                inner.lose(&mut lock(&inner.reader), &e);
            }
            continue;
        }
        silent_since = None;
        {
            // Nobody reads the old socket from here on.
            let mut r = lock(&inner.reader);
            if r.fd.is_some() {
                let e = io::Error::new(io::ErrorKind::BrokenPipe, "send failed");
                inner.lose(&mut r, &e);
            }
        }
        *lock(&inner.lost) = false;
        match inner.reconnect() {
            Some(fd) => inner.install(fd),
            None => break,
        }
        last_rx = inner.rx.load(Ordering::Relaxed);
    }
    inner.end();
}

/// Write all of `iovs` without blocking while replies wait (direct mode:
/// the server may stop reading requests until its replies are read, and
/// the thread sending may be the only one reading them). Fails after
/// [`SEND_TIMEOUT`] without progress.
///
/// # Safety
/// Every iovec must point to readable memory of its length.
pub(crate) unsafe fn send_all(inner: &Inner, fd: RawFd, iovs: &[libc::iovec]) -> io::Result<()> {
    let mut left: Vec<libc::iovec> = iovs.iter().copied().filter(|v| v.iov_len > 0).collect();
    let mut stuck: Option<Instant> = None;
    while !left.is_empty() {
        let n = left.len().min(IOV_MAX);
        // SAFETY: a zeroed msghdr is valid; it points at our iovecs.
        let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
        m.msg_iov = left.as_mut_ptr();
        m.msg_iovlen = n as _;
        // SAFETY: the caller guarantees the iovecs are readable.
        let r = unsafe { libc::sendmsg(fd, &m, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if r > 0 {
            advance(&mut left, r as usize);
            stuck = None;
            continue;
        }
        let e = if r == 0 {
            io::Error::from(io::ErrorKind::WriteZero)
        } else {
            io::Error::last_os_error()
        };
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => {}
            _ => return Err(e),
        }
        if stuck.get_or_insert_with(Instant::now).elapsed() >= SEND_TIMEOUT {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the server stopped reading",
            ));
        }
        // Read what the server has answered (unless someone else is at
        // it), then wait for room or for more replies.
        let mut events = libc::POLLOUT;
        if let Ok(mut rd) = inner.reader.try_lock() {
            if let Err(e) = drain(inner, &mut rd) {
                inner.lose(&mut rd, &e);
            }
            events |= libc::POLLIN;
        }
        let mut p = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one pollfd on the stack.
        unsafe { libc::poll(&mut p, 1, 10) };
    }
    Ok(())
}
