//! The catalogue. Each case runs on its own connection(s) and returns what
//! the back end did, in a few words; the verdict comes from the probe.
//! One file per topic, each with its cases' list; this file has the
//! helpers they share and the whole list in order.

use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use vblk_testkit::blk::{self, features as vf, Request, STATUS_UNSET};
use vblk_testkit::mem::memfd;
use vblk_testkit::ring::{Desc, Seg, SplitRing, F_INDIRECT, F_NEXT, F_WRITE};
use vblk_testkit::vhost_user::{
    mem_table_bytes, region_bytes, req, state_bytes, vring_addr_bytes, Driver, Reply,
    FLAG_NEED_REPLY, FLAG_REPLY, FLAG_VERSION,
};
use vhost::vhost_user::message::VhostUserProtocolFeatures as P;
use vhost::vhost_user::VhostUserFrontend;
use vhost::VhostBackend;
use vmm_sys_util::eventfd::EventFd;

use crate::{Case, Env, Need};

/// How long a case waits for a completion it may never get.
const SHORT: Duration = Duration::from_millis(600);

macro_rules! conn {
    ($env:expr) => {
        match $env.conn() {
            Ok(d) => d,
            Err(e) => return format!("refused the set-up: {e}"),
        }
    };
}

macro_rules! bare {
    ($env:expr) => {
        match $env.bare() {
            Ok(d) => d,
            Err(e) => return format!("refused the negotiation: {e}"),
        }
    };
}

fn status_name(s: u8) -> String {
    match s {
        blk::S_OK => "OK".into(),
        blk::S_IOERR => "IOERR".into(),
        blk::S_UNSUPP => "UNSUPP".into(),
        STATUS_UNSET => "unwritten".into(),
        x => format!("{x:#x}"),
    }
}

/// "connection kept" / "connection dropped", by asking GET_FEATURES.
fn kept(d: &Driver) -> &'static str {
    if d.raw.answers() {
        "connection kept"
    } else {
        "connection dropped"
    }
}

/// What an answer to a raw message says.
fn answer(code: u32, r: Option<Reply>) -> String {
    match r {
        None => "no reply asked".into(),
        Some(Reply::Closed) => "dropped the connection".into(),
        Some(Reply::Timeout) => "no reply".into(),
        Some(Reply::Msg { code: c, body, .. })
            if c == code
                && matches!(
                    code,
                    req::GET_VRING_BASE
                        | req::GET_CONFIG
                        | req::GET_INFLIGHT_FD
                        | req::GET_QUEUE_NUM
                        | req::GET_PROTOCOL_FEATURES
                ) =>
        {
            format!("answered ({} bytes)", body.len())
        }
        Some(r @ Reply::Msg { .. }) => {
            let v = r.u64();
            match r {
                Reply::Msg { code: c, .. } if c != code => format!("answered request {c}"),
                Reply::Msg { body, .. } if body.len() == 8 => match v {
                    Some(0) => "accepted".into(),
                    Some(x) if code == req::GET_FEATURES || code == req::GET_MAX_MEM_SLOTS => {
                        format!("answered {x:#x}")
                    }
                    Some(x) => format!("refused ({x:#x})"),
                    None => "answered".into(),
                },
                Reply::Msg { body, .. } => format!("answered {} bytes", body.len()),
                _ => unreachable!(),
            }
        }
    }
}

/// Send a raw message (NEED_REPLY when REPLY_ACK is on), report the answer
/// and whether the connection still answers.
fn hostile(d: &Driver, code: u32, body: &[u8], fds: &[RawFd]) -> String {
    let r = d.raw.call(code, d.acks(), body, fds);
    let closed = matches!(r, Some(Reply::Closed));
    let a = answer(code, r);
    if closed {
        return a;
    }
    format!("{a}, {}", kept(d))
}

/// The used entry within SHORT: "completed (len L, status S)" or "no completion".
fn observe(d: &mut Driver, status: Option<u64>) -> String {
    match d.wait_used_for(SHORT) {
        Some((_, len)) => match status {
            Some(s) => format!(
                "completed (len {len}, status {})",
                status_name(d.ram.u8_at(s))
            ),
            None => format!("completed (len {len})"),
        },
        None => "no completion".into(),
    }
}

/// Write `segs` as a chain at index 0, publish, kick, observe.
fn chain(env: &Env, build: impl FnOnce(&mut Driver) -> (Vec<Seg>, Option<u64>)) -> String {
    let mut d = conn!(env);
    let (segs, status) = build(&mut d);
    d.submit_segs(&segs);
    observe(&mut d, status)
}

/// Write descriptors verbatim at 0.., publish head 0, kick, observe.
fn table(env: &Env, build: impl FnOnce(&mut Driver) -> (Vec<Desc>, Option<u64>)) -> String {
    let mut d = conn!(env);
    let (descs, status) = build(&mut d);
    d.ring.descs(&d.ram.mem, 0, &descs);
    d.ring.publish(&d.ram.mem, 0);
    d.kick();
    observe(&mut d, status)
}

/// A request placed in scratch memory: its segments and status address.
fn placed(d: &mut Driver, r: &Request) -> (Vec<Seg>, u64) {
    let at = d.scratch(r.footprint());
    let p = r.place(&d.ram.mem, at);
    (p.segs, p.status)
}

/// Run a request whose segments `edit` may change; report status.
fn request(env: &Env, r: Request, edit: impl FnOnce(&mut Vec<Seg>)) -> String {
    chain(env, |d| {
        let (mut segs, st) = placed(d, &r);
        edit(&mut segs);
        (segs, Some(st))
    })
}

/// The user address the memory-table cases give their regions.
const UVA: u64 = 0x7e00_0000_0000;

/// A guest address far above any RAM of the cases (ADD_MEM_REG, live).
const FAR: u64 = 1 << 36;

/// ADD_MEM_REG / REM_MEM_REG with one region (padding word first).
fn reg_msg(d: &Driver, code: u32, r: [u8; 32], fds: &[RawFd]) -> String {
    let mut body = 0u64.to_le_bytes().to_vec();
    body.extend_from_slice(&r);
    hostile(d, code, &body, fds)
}

macro_rules! case {
    ($name:expr, $need:expr, $f:ident, $about:expr) => {
        Case {
            name: $name,
            about: $about,
            need: $need,
            run: $f,
        }
    };
}

mod chains;
mod config;
mod floods;
mod inflight;
mod mem_regions;
mod mem_table;
mod placement;
mod protocol;
mod requests;
mod under_io;
mod vring;

pub fn all() -> Vec<Case> {
    [
        protocol::list(),
        mem_table::list(),
        mem_regions::list(),
        vring::list(),
        inflight::list(),
        config::list(),
        chains::list(),
        placement::list(),
        requests::list(),
        under_io::list(),
        floods::list(),
    ]
    .into_iter()
    .flatten()
    .collect()
}
