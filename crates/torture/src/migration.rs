//! Live-migration misuse: hostile dirty logs (SET_LOG_BASE with
//! `VHOST_USER_PROTOCOL_F_LOG_SHMFD`) and logging turned on under I/O.
//! A back end must refuse a log it cannot map, and must never write a log
//! past the size it was given, whatever guest addresses it writes.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;

use vblk_testkit::blk::{header, Request, T_IN};
use vblk_testkit::mem::memfd;
use vblk_testkit::ring::F_WRITE;
use vblk_testkit::vhost_user::{req, Driver, Reply};
use vhost::vhost_user::message::VhostUserProtocolFeatures as P;
use vhost::{VhostBackend, VhostUserDirtyLogRegion};

use crate::{Case, Env, Need};

/// `VHOST_F_LOG_ALL` (feature bit 26).
const LOG_ALL: u64 = 1 << 26;

/// A connection with LOG_SHMFD negotiated and ring 0 running.
fn conn(env: &Env) -> Result<Driver, String> {
    let mut o = env.opts.clone();
    o.protocol |= P::LOG_SHMFD;
    Driver::connect(&env.sock, o)
}

macro_rules! conn {
    ($env:expr) => {
        match conn($env) {
            Ok(d) => d,
            Err(e) => return format!("refused the set-up: {e}"),
        }
    };
}

fn log_body(size: u64, offset: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&size.to_le_bytes());
    b[8..].copy_from_slice(&offset.to_le_bytes());
    b
}

/// Send SET_LOG_BASE with `body` and `fds` (a reply is due: LOG_SHMFD);
/// if the back end takes the log, turn logging on and read: a back end
/// that accepted a log it cannot write must not crash on the first write.
fn bad_log(env: &Env, body: &[u8], fds: &[RawFd]) -> String {
    let mut d = conn!(env);
    if d.raw.send(req::SET_LOG_BASE, false, body, fds).is_err() {
        return "dropped the connection".into();
    }
    match d.raw.recv() {
        Reply::Msg { code, .. } if code == req::SET_LOG_BASE => {}
        Reply::Msg { code, .. } => return format!("answered request {code}"),
        Reply::Closed => return "dropped the connection".into(),
        Reply::Timeout => return "no reply".into(),
    }
    if let Err(e) = d.fe().set_features(d.acked | LOG_ALL) {
        return format!("accepted the log; VHOST_F_LOG_ALL then failed: {e}");
    }
    match d.run(&Request::read(0, 4096)) {
        Ok(_) => "accepted the log; a logged read completed".into(),
        Err(e) => format!("accepted the log; a logged read failed: {e}"),
    }
}

fn past_eof(env: &Env) -> String {
    let f = memfd(c"torture-log", 4096).expect("memfd");
    bad_log(env, &log_body(1 << 20, 0), &[f.as_raw_fd()])
}

fn offset_overflow(env: &Env) -> String {
    let f = memfd(c"torture-log", 4096).expect("memfd");
    bad_log(env, &log_body(4096, u64::MAX - 4095), &[f.as_raw_fd()])
}

fn not_a_file(env: &Env) -> String {
    let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    bad_log(env, &log_body(4096, 0), &[a.as_raw_fd()])
}

fn no_fd(env: &Env) -> String {
    bad_log(env, &log_body(4096, 0), &[])
}

/// Logging on with a log of `size` bytes in a memfd of 4096, the used
/// ring logged at `used_log`; `n` reads scattered over guest RAM. Returns
/// what happened and how many bytes past `size` were written.
fn logged_reads(env: &Env, size: u64, used_log: u64, n: u64) -> String {
    let mut d = conn!(env);
    let f: File = memfd(c"torture-log", 4096).expect("memfd");
    let r = d.fe().set_log_base(
        0,
        Some(VhostUserDirtyLogRegion {
            mmap_size: size,
            mmap_offset: 0,
            mmap_handle: f.as_raw_fd(),
        }),
    );
    if let Err(e) = r {
        return format!("SET_LOG_BASE refused: {e}");
    }
    if let Err(e) = d.fe().set_features(d.acked | LOG_ALL) {
        return format!("VHOST_F_LOG_ALL refused: {e}");
    }
    let mut c = d.vring_config();
    c.flags = 1; // VHOST_VRING_F_LOG
    c.log_addr = Some(used_log);
    if let Err(e) = d.fe().set_vring_addr(0, &c) {
        return format!("VHOST_VRING_F_LOG refused: {e}");
    }
    let mut done = 0;
    let ram = d.ram.size;
    for i in 0..n {
        let at = d.scratch(64);
        // Data pages in the upper half of guest RAM (clear of the ring and
        // the scratch area), spread over all of it.
        let data = (ram / 2 + (ram / 2 / n) * i) & !0xfff;
        let data = data.min(ram - 4096);
        d.ram.write(at, &header(T_IN, 0));
        d.submit_segs(&[(at, 16, 0), (data, 4096, F_WRITE), (at + 32, 1, F_WRITE)]);
        if d.wait_used().is_some() {
            done += 1;
        }
    }
    let mut buf = vec![0u8; 4096];
    let past = match f.read_exact_at(&mut buf, 0) {
        Ok(()) => buf[size.min(4096) as usize..]
            .iter()
            .filter(|b| **b != 0)
            .count(),
        Err(_) => 0,
    };
    let set: u32 = buf[..size.min(4096) as usize]
        .iter()
        .map(|b| b.count_ones())
        .sum();
    if past > 0 {
        return format!("{done}/{n} reads completed; WROTE {past} bytes past the {size}-byte log");
    }
    format!("{done}/{n} reads completed, {set} pages logged, nothing past the {size}-byte log")
}

fn log_too_small(env: &Env) -> String {
    let ring_used = conn(env).map(|d| d.ring.used).unwrap_or(0);
    logged_reads(env, 1, ring_used, 16)
}

fn used_log_addr_huge(env: &Env) -> String {
    logged_reads(env, 64, u64::MAX - 16, 8)
}

fn replaced_under_io(env: &Env) -> String {
    let mut d = conn!(env);
    if let Err(e) = d.fe().set_features(d.acked | LOG_ALL) {
        return format!("VHOST_F_LOG_ALL refused: {e}");
    }
    let mut done = 0;
    for i in 0..32u64 {
        let f = memfd(c"torture-log", 4096).expect("memfd");
        let r = d.fe().set_log_base(
            0,
            Some(VhostUserDirtyLogRegion {
                mmap_size: 1 + (i * 97) % 4096,
                mmap_offset: 0,
                mmap_handle: f.as_raw_fd(),
            }),
        );
        if let Err(e) = r {
            return format!("SET_LOG_BASE {i} refused: {e}");
        }
        // The fd (and our mapping of nothing) goes at once: the back end's
        // mapping must keep the log alive on its own.
        drop(f);
        let at = d.scratch(64);
        let data = d.scratch(4096);
        d.ram.write(at, &header(T_IN, 8 * i));
        d.submit_segs(&[(at, 16, 0), (data, 4096, F_WRITE), (at + 32, 1, F_WRITE)]);
        if d.wait_used().is_some() {
            done += 1;
        }
    }
    format!("{done}/32 reads completed across 32 logs")
}

/// The migration cases, in order.
pub fn all() -> Vec<Case> {
    let log = Need::Protocol(P::LOG_SHMFD);
    vec![
        Case {
            name: "log.past-eof",
            about: "SET_LOG_BASE claiming 1 MiB of a 4 KiB memfd",
            need: log,
            run: past_eof,
        },
        Case {
            name: "log.offset-overflow",
            about: "SET_LOG_BASE offset near 2^64",
            need: log,
            run: offset_overflow,
        },
        Case {
            name: "log.not-a-file",
            about: "SET_LOG_BASE with a socket as the log",
            need: log,
            run: not_a_file,
        },
        Case {
            name: "log.no-fd",
            about: "SET_LOG_BASE without a descriptor",
            need: log,
            run: no_fd,
        },
        Case {
            name: "log.too-small",
            about: "a 1-byte log (32 KiB covered), reads all over guest RAM",
            need: log,
            run: log_too_small,
        },
        Case {
            name: "log.used-addr-huge",
            about: "VHOST_VRING_F_LOG with log_guest_addr near 2^64",
            need: log,
            run: used_log_addr_huge,
        },
        Case {
            name: "log.replaced-under-io",
            about: "32 logs of random sizes, one per read, fds closed at once",
            need: log,
            run: replaced_under_io,
        },
    ]
}
