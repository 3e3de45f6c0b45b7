//! One run of the fuzz body: the input's records become raw vhost-user
//! messages (with memfds and eventfds attached) on one end of a
//! socketpair, the daemon's connection loop serves the other end, and the
//! replies (and, when asked, leaks) are checked.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vblk_backend::MemBackend;
use vblk_device::{BlkConfig, BlkDevice};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

use crate::{Options, StopSignal};

/// Disk size behind the connection.
pub const DISK: u64 = 1 << 20;
/// Largest image copied into a memfd.
pub const MAX_IMAGE: usize = 0x1_0000;
/// At most this many messages and attached fds per input (bounds one run).
pub const MAX_MESSAGES: usize = 96;
pub const MAX_FDS: usize = 64;
/// vhost-user header: request u32, flags u32, size u32.
pub const HEADER_LEN: usize = 12;
/// Bound on reads of a message under way and on replies (the daemon uses
/// 5 s; the stream here is complete before it is served, so any wait is a
/// bug or a message that overstates its size).
const IO_TIMEOUT: Duration = Duration::from_millis(500);

/// What one run saw (for the seed tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Messages written to the socket.
    pub sent: usize,
    /// Replies read back: (request code, payload bytes).
    pub replies: Vec<(u32, Vec<u8>)>,
    /// Bytes the 1 MiB disk holds afterwards, at sectors 0..16.
    pub disk_head: Vec<u8>,
}

fn memfd(pages: u8, image: &[u8], seal: bool, empty: bool) -> Option<File> {
    // SAFETY: a NUL-terminated name; the returned fd, if any, is ours.
    let fd = unsafe {
        libc::memfd_create(
            c"vblk-fuzz".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let mut f = unsafe { File::from_raw_fd(fd) };
    if !empty {
        let size = (u64::from(pages) + 1) * 4096;
        f.set_len(size).ok()?;
        let n = image.len().min(size as usize);
        f.write_all(&image[..n]).ok()?;
    }
    if seal {
        // SAFETY: fcntl on our own fd.
        unsafe {
            libc::fcntl(
                f.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW,
            )
        };
    }
    Some(f)
}

pub use vblk_testkit::fuzz::process_counts;
use vblk_testkit::fuzz::ByteReader as Reader;

/// Wait briefly for the counts to come back to `before`; panic if not.
pub fn assert_no_leak(before: (usize, usize)) {
    vblk_testkit::fuzz::assert_no_leak(before, "the connection");
}

/// The fuzz target: [`run`] with the leak check.
pub fn vhost_user_messages(data: &[u8]) {
    run(data, true);
}

/// Serve the message stream `data` describes (see the `fuzzing` module
/// docs) on one in-process connection; check the replies and, if
/// `check_leaks`, that no thread or fd outlives the connection (only
/// meaningful when nothing else in the process opens fds or threads
/// meanwhile).
pub fn run(data: &[u8], check_leaks: bool) -> Outcome {
    let before = process_counts();
    let out = run_inner(data);
    if check_leaks {
        assert_no_leak(before);
    }
    out
}

fn run_inner(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut r = Reader(data);
    let Some(opts) = r.u8() else {
        return out;
    };
    let Some(image_len) = r.u16() else {
        return out;
    };
    let image = r.take(usize::from(image_len).min(MAX_IMAGE));

    let backend = MemBackend::new(DISK);
    let mut cfg = BlkConfig::new(DISK);
    cfg.read_only = opts & 1 != 0;
    cfg.num_queues = if opts & 2 != 0 { 1 } else { 2 };
    let device = Arc::new(BlkDevice::new(cfg, Arc::new(backend.clone())));

    let Ok((client, server)) = UnixStream::pair() else {
        return out;
    };
    // The client never blocks: a stream that does not fit the socket
    // buffer is cut short (the server has not started reading yet).
    if client.set_nonblocking(true).is_err() {
        return out;
    }
    let mut codes = Vec::new();
    let mut fds_sent = 0usize;
    while out.sent < MAX_MESSAGES {
        let (Some(code), Some(flags), Some(fds), Some(pages), Some(len)) =
            (r.u8(), r.u8(), r.u8(), r.u8(), r.u16())
        else {
            break;
        };
        let payload = r.take(usize::from(len));
        let request = u32::from(code % 48);
        let (hflags, size) = if flags & 0x80 != 0 {
            (u32::from(flags & 0x7f), payload.len() as u32)
        } else {
            let over = if flags & 0x40 != 0 {
                u32::from(pages)
            } else {
                0
            };
            (1 | u32::from(flags & 0x08), payload.len() as u32 + over)
        };
        let mut msg = Vec::with_capacity(HEADER_LEN + payload.len());
        msg.extend_from_slice(&request.to_le_bytes());
        msg.extend_from_slice(&hflags.to_le_bytes());
        msg.extend_from_slice(&size.to_le_bytes());
        msg.extend_from_slice(payload);

        let count = usize::from(fds & 7).min(MAX_FDS - fds_sent);
        let kind = (fds >> 3) & 3;
        let mut files: Vec<File> = Vec::new();
        let mut events: Vec<EventFd> = Vec::new();
        for _ in 0..count {
            match kind {
                1 => {
                    if let Ok(e) = EventFd::new(libc::EFD_NONBLOCK) {
                        events.push(e);
                    }
                }
                k => {
                    if let Some(f) = memfd(pages, image, k == 2, k == 3) {
                        files.push(f);
                    }
                }
            }
        }
        let raw: Vec<RawFd> = files
            .iter()
            .map(|f| f.as_raw_fd())
            .chain(events.iter().map(|e| e.as_raw_fd()))
            .collect();
        fds_sent += raw.len();
        // One sendmsg per message: its fds travel with its first byte, as
        // a front end sends them.
        let sent = if raw.is_empty() {
            (&client).write(&msg).ok()
        } else {
            client.send_with_fds(&[&msg[..]], &raw).ok()
        };
        // Our copies close here; the server holds its own.
        drop(files);
        drop(events);
        match sent {
            Some(n) if n == msg.len() => {
                out.sent += 1;
                codes.push(request);
            }
            // A partial write (socket full): the stream ends mid-message.
            Some(_) => {
                out.sent += 1;
                break;
            }
            None => break,
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Write);

    if server.set_nonblocking(false).is_err()
        || server.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || server.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return out;
    }
    let Ok(stop) = StopSignal::new() else {
        return out;
    };
    let started = Instant::now();
    crate::serve_connection(&device, server, &Options::default(), &stop);
    // Every message is bounded by IO_TIMEOUT at most once (a read that
    // waits for bytes that never come ends the connection).
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the connection took {:?}",
        started.elapsed()
    );

    // The replies: whole, typed as replies, version 1, for a request sent.
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(IO_TIMEOUT));
    let mut bytes = Vec::new();
    let _ = (&client).read_to_end(&mut bytes);
    let mut b = bytes.as_slice();
    while !b.is_empty() {
        assert!(b.len() >= HEADER_LEN, "a partial reply header");
        let word = |i: usize| u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap_or([0; 4]));
        let (code, flags, size) = (word(0), word(1), word(2) as usize);
        assert_eq!(flags, 0x5, "reply flags of request {code}");
        assert!(
            codes.contains(&code),
            "a reply to request {code}, never sent"
        );
        assert!(size <= 0x1000, "reply of {size} bytes");
        assert!(b.len() >= HEADER_LEN + size, "a partial reply");
        out.replies
            .push((code, b[HEADER_LEN..HEADER_LEN + size].to_vec()));
        b = &b[HEADER_LEN + size..];
    }
    assert!(out.replies.len() <= out.sent, "more replies than messages");
    out.disk_head = backend.snapshot()[..16 * 512].to_vec();
    out
}
