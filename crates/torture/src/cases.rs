//! The catalogue. Each case runs on its own connection(s) and returns what
//! the back end did, in a few words; the verdict comes from the probe.

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

// ---------------------------------------------------------------- protocol

fn unknown_request(env: &Env) -> String {
    let d = conn!(env);
    hostile(&d, 0x3f3f, &[1, 2, 3, 4, 5, 6, 7, 8], &[])
}

fn bad_version(env: &Env) -> String {
    let d = conn!(env);
    let _ = d.raw.send_sized(req::GET_FEATURES, 0x2, 0, &[], &[]);
    answer(req::GET_FEATURES, Some(d.raw.recv()))
}

fn reply_flag_from_front_end(env: &Env) -> String {
    let d = conn!(env);
    let body = d.acked.to_le_bytes();
    let _ = d.raw.send_sized(
        req::SET_FEATURES,
        FLAG_VERSION | FLAG_REPLY | FLAG_NEED_REPLY,
        8,
        &body,
        &[],
    );
    let r = d.raw.recv();
    let c = matches!(r, Reply::Closed);
    let a = answer(req::SET_FEATURES, Some(r));
    if c {
        a
    } else {
        format!("{a}, {}", kept(&d))
    }
}

fn short_body(env: &Env) -> String {
    let d = conn!(env);
    let flags = FLAG_VERSION | if d.acks() { FLAG_NEED_REPLY } else { 0 };
    let _ = d
        .raw
        .send_sized(req::SET_VRING_NUM, flags, 4, &[0, 0, 0, 0], &[]);
    let r = d.acks().then(|| d.raw.recv());
    let c = matches!(r, Some(Reply::Closed));
    let a = answer(req::SET_VRING_NUM, r);
    if c {
        a
    } else {
        format!("{a}, {}", kept(&d))
    }
}

fn long_body(env: &Env) -> String {
    let d = conn!(env);
    let mut body = state_bytes(0, 64).to_vec();
    body.resize(300, 0xa5);
    hostile(&d, req::SET_VRING_NUM, &body, &[])
}

fn huge_size_field(env: &Env) -> String {
    let d = conn!(env);
    let _ = d.raw.send_sized(
        req::SET_VRING_NUM,
        FLAG_VERSION,
        0x7fff_fff0,
        &[0u8; 64],
        &[],
    );
    // The daemon waits for a body that never comes (or drops us); we hang up.
    std::thread::sleep(Duration::from_millis(200));
    "sent, hung up".into()
}

fn truncated_header(env: &Env) -> String {
    let d = conn!(env);
    use std::io::Write;
    let _ = d.raw.stream().write_all(&[2, 0, 0, 0, 1, 0]);
    std::thread::sleep(Duration::from_millis(100));
    "sent 6 bytes, hung up".into()
}

fn features_not_offered(env: &Env) -> String {
    let d = conn!(env);
    hostile(&d, req::SET_FEATURES, &u64::MAX.to_le_bytes(), &[])
}

fn protocol_features_not_offered(env: &Env) -> String {
    let d = conn!(env);
    hostile(&d, req::SET_PROTOCOL_FEATURES, &u64::MAX.to_le_bytes(), &[])
}

fn set_owner_twice(env: &Env) -> String {
    let mut d = conn!(env);
    let a = hostile(&d, req::SET_OWNER, &[], &[]);
    let (segs, st) = placed(&mut d, &Request::get_id(20));
    d.submit_segs(&segs);
    format!("{a}; then I/O: {}", observe(&mut d, Some(st)))
}

fn reset_owner_under_io(env: &Env) -> String {
    let mut d = conn!(env);
    for _ in 0..16 {
        d.submit(&Request::read(0, 65536));
    }
    let a = hostile(&d, req::RESET_OWNER, &[], &[]);
    format!("{a}; {}", observe(&mut d, None))
}

fn ring_before_mem_table(env: &Env) -> String {
    let mut d = bare!(env);
    let r = d.start_ring(0);
    let (segs, _) = placed(&mut d, &Request::get_id(20));
    d.submit_segs(&segs);
    let io = observe(&mut d, None);
    match r {
        Ok(()) => format!("accepted the ring; I/O: {io}"),
        Err(e) => format!("refused ({e}); I/O: {io}"),
    }
}

fn kick_before_ring(env: &Env) -> String {
    let d = bare!(env);
    if let Err(e) = d.send_mem_table() {
        return format!("refused the table: {e}");
    }
    let r = d.fe().set_vring_kick(0, &d.kick);
    for _ in 0..4 {
        d.kick();
    }
    std::thread::sleep(Duration::from_millis(100));
    format!(
        "{}, {}",
        if r.is_ok() { "accepted" } else { "refused" },
        kept(&d)
    )
}

fn log_base_without_feature(env: &Env) -> String {
    let d = conn!(env);
    let f = memfd(c"torture-log", 4096).expect("memfd");
    let mut body = 4096u64.to_le_bytes().to_vec();
    body.extend_from_slice(&0u64.to_le_bytes());
    hostile(&d, req::SET_LOG_BASE, &body, &[f.as_raw_fd()])
}

fn vring_err_not_eventfd(env: &Env) -> String {
    let mut d = conn!(env);
    let f = memfd(c"torture-err", 4096).expect("memfd");
    let a = hostile(
        &d,
        req::SET_VRING_ERR,
        &0u64.to_le_bytes(),
        &[f.as_raw_fd()],
    );
    let (segs, st) = placed(&mut d, &Request::get_id(20));
    d.submit_segs(&segs);
    format!("{a}; I/O: {}", observe(&mut d, Some(st)))
}

// ---------------------------------------------------------------- memory table

fn table_msg(d: &Driver, num: u32, regions: &[[u8; 32]], fds: &[RawFd]) -> String {
    hostile(d, req::SET_MEM_TABLE, &mem_table_bytes(num, regions), fds)
}

const UVA: u64 = 0x7e00_0000_0000;

fn mem_overlap(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    let r = [
        region_bytes(0, 8192, UVA, 0),
        region_bytes(4096, 8192, UVA + 0x10_0000, 0),
    ];
    table_msg(&d, 2, &r, &[f.as_raw_fd(), f.as_raw_fd()])
}

fn mem_past_eof(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    table_msg(&d, 1, &[region_bytes(0, 4 << 20, UVA, 0)], &[f.as_raw_fd()])
}

fn mem_offset_past_eof(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    table_msg(
        &d,
        1,
        &[region_bytes(0, 4096, UVA, 1 << 20)],
        &[f.as_raw_fd()],
    )
}

fn mem_offset_overflow(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    table_msg(
        &d,
        1,
        &[region_bytes(0, 8192, UVA, u64::MAX - 4095)],
        &[f.as_raw_fd()],
    )
}

fn mem_gpa_overflow(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    table_msg(
        &d,
        1,
        &[region_bytes(u64::MAX - 4095, 8192, UVA, 0)],
        &[f.as_raw_fd()],
    )
}

fn mem_uva_overflow(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    table_msg(
        &d,
        1,
        &[region_bytes(0, 8192, u64::MAX - 4095, 0)],
        &[f.as_raw_fd()],
    )
}

fn mem_zero_size(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    table_msg(&d, 1, &[region_bytes(0, 0, UVA, 0)], &[f.as_raw_fd()])
}

fn mem_empty_table(env: &Env) -> String {
    let d = bare!(env);
    table_msg(&d, 0, &[], &[])
}

fn mem_too_many_regions(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    let regions: Vec<_> = (0..9u64)
        .map(|i| region_bytes(i << 20, 4096, UVA + (i << 20), 0))
        .collect();
    let fds = vec![f.as_raw_fd(); 9];
    table_msg(&d, 9, &regions, &fds)
}

fn mem_count_mismatch(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    table_msg(&d, 4, &[region_bytes(0, 4096, UVA, 0)], &[f.as_raw_fd()])
}

fn mem_no_fd(env: &Env) -> String {
    let d = bare!(env);
    table_msg(&d, 1, &[region_bytes(0, 4096, UVA, 0)], &[])
}

fn mem_fd_not_mappable(env: &Env) -> String {
    let d = bare!(env);
    let e = EventFd::new(0).expect("eventfd");
    table_msg(&d, 1, &[region_bytes(0, 4096, UVA, 0)], &[e.as_raw_fd()])
}

fn mem_read_only_fd(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    let ro = std::fs::File::open(format!("/proc/self/fd/{}", f.as_raw_fd())).expect("reopen");
    table_msg(
        &d,
        1,
        &[region_bytes(0, 1 << 20, UVA, 0)],
        &[ro.as_raw_fd()],
    )
}

fn mem_same_uva_twice(env: &Env) -> String {
    let mut d = bare!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    let main = d.region();
    let r = [
        region_bytes(0, d.ram.size, main.userspace_addr, 0),
        region_bytes(1 << 32, 1 << 20, main.userspace_addr, 0),
    ];
    let a = table_msg(&d, 2, &r, &[d.ram.fd(), f.as_raw_fd()]);
    let s = d.start_ring(0).map_or_else(
        |e| format!("ring refused: {e}"),
        |()| {
            let (segs, st) = placed(&mut d, &Request::get_id(20));
            d.submit_segs(&segs);
            observe(&mut d, Some(st))
        },
    );
    format!("{a}; {s}")
}

// ---------------------------------------------------------------- ADD/REM_MEM_REG

fn reg_msg(d: &Driver, code: u32, r: [u8; 32], fds: &[RawFd]) -> String {
    let mut body = 0u64.to_le_bytes().to_vec();
    body.extend_from_slice(&r);
    hostile(d, code, &body, fds)
}

const FAR: u64 = 1 << 36;

fn reg_add_overlap(env: &Env) -> String {
    let d = conn!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    reg_msg(
        &d,
        req::ADD_MEM_REG,
        region_bytes(0x1000, 4096, UVA, 0),
        &[f.as_raw_fd()],
    )
}

fn reg_add_past_eof(env: &Env) -> String {
    let d = conn!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    reg_msg(
        &d,
        req::ADD_MEM_REG,
        region_bytes(FAR, 2 << 20, UVA, 0),
        &[f.as_raw_fd()],
    )
}

fn reg_add_no_fd(env: &Env) -> String {
    let d = conn!(env);
    reg_msg(&d, req::ADD_MEM_REG, region_bytes(FAR, 4096, UVA, 0), &[])
}

fn reg_rem_unknown(env: &Env) -> String {
    let d = conn!(env);
    reg_msg(&d, req::REM_MEM_REG, region_bytes(FAR, 4096, UVA, 0), &[])
}

fn reg_rem_twice(env: &Env) -> String {
    let d = conn!(env);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    let r = region_bytes(FAR, 1 << 20, UVA, 0);
    let a = reg_msg(&d, req::ADD_MEM_REG, r, &[f.as_raw_fd()]);
    let b = reg_msg(&d, req::REM_MEM_REG, r, &[]);
    let c = reg_msg(&d, req::REM_MEM_REG, r, &[]);
    format!("add: {a}; remove: {b}; again: {c}")
}

fn reg_past_max_slots(env: &Env) -> String {
    let mut d = conn!(env);
    let max = d.fe().get_max_mem_slots().unwrap_or(0).min(1024);
    let f = memfd(c"torture", 4096).expect("memfd");
    let mut refused_at = None;
    for i in 1..=max {
        let mut body = 0u64.to_le_bytes().to_vec();
        body.extend_from_slice(&region_bytes(FAR + i * 4096, 4096, UVA + i * 4096, 0));
        match d
            .raw
            .call(req::ADD_MEM_REG, d.acks(), &body, &[f.as_raw_fd()])
        {
            Some(Reply::Closed) => return format!("dropped the connection at region {}", i + 1),
            Some(r) if r.u64() != Some(0) => {
                refused_at = Some(i + 1);
                break;
            }
            _ => {}
        }
    }
    let what = match refused_at {
        Some(n) => format!("{max} slots, region {n} refused"),
        None => format!("{max} slots, all {} regions accepted", max + 1),
    };
    let (segs, st) = placed(&mut d, &Request::get_id(20));
    d.submit_segs(&segs);
    format!("{what}; I/O: {}", observe(&mut d, Some(st)))
}

fn reg_remove_ram_under_ring(env: &Env) -> String {
    let mut d = conn!(env);
    let r = d.region();
    let a = reg_msg(
        &d,
        req::REM_MEM_REG,
        region_bytes(r.guest_phys_addr, r.memory_size, r.userspace_addr, 0),
        &[],
    );
    let (segs, st) = placed(&mut d, &Request::get_id(20));
    d.submit_segs(&segs);
    format!("{a}; I/O: {}", observe(&mut d, Some(st)))
}

// ---------------------------------------------------------------- vring setup

fn vring_msg(env: &Env, code: u32, body: &[u8]) -> String {
    let d = bare!(env);
    if let Err(e) = d.send_mem_table() {
        return format!("refused the table: {e}");
    }
    hostile(&d, code, body, &[])
}

fn num_not_pow2(env: &Env) -> String {
    vring_msg(env, req::SET_VRING_NUM, &state_bytes(0, 24))
}
fn num_too_big(env: &Env) -> String {
    vring_msg(env, req::SET_VRING_NUM, &state_bytes(0, 0x10000))
}
fn num_zero(env: &Env) -> String {
    vring_msg(env, req::SET_VRING_NUM, &state_bytes(0, 0))
}
fn num_index_out_of_range(env: &Env) -> String {
    vring_msg(env, req::SET_VRING_NUM, &state_bytes(1000, 64))
}
fn base_index_out_of_range(env: &Env) -> String {
    vring_msg(env, req::SET_VRING_BASE, &state_bytes(0xffff_ffff, 0))
}
fn get_base_out_of_range(env: &Env) -> String {
    vring_msg(env, req::GET_VRING_BASE, &state_bytes(1000, 0))
}
fn enable_out_of_range(env: &Env) -> String {
    vring_msg(env, req::SET_VRING_ENABLE, &state_bytes(1000, 1))
}
fn get_base_never_started(env: &Env) -> String {
    vring_msg(env, req::GET_VRING_BASE, &state_bytes(0, 0))
}

fn enable_bad_value(env: &Env) -> String {
    let mut d = conn!(env);
    let a = hostile(&d, req::SET_VRING_ENABLE, &state_bytes(0, 7), &[]);
    let (segs, st) = placed(&mut d, &Request::get_id(20));
    d.submit_segs(&segs);
    format!("{a}; I/O: {}", observe(&mut d, Some(st)))
}

/// Ring 0 with hostile addresses, then a request.
fn ring_addr(env: &Env, f: impl FnOnce(&Driver) -> (u64, u64, u64)) -> String {
    let mut d = bare!(env);
    if let Err(e) = d.send_mem_table() {
        return format!("refused the table: {e}");
    }
    let _ = d.fe().set_vring_num(0, d.ring.size);
    let (desc, used, avail) = f(&d);
    let a = hostile(
        &d,
        req::SET_VRING_ADDR,
        &vring_addr_bytes(0, desc, used, avail),
        &[],
    );
    let _ = d.fe().set_vring_base(0, 0);
    let _ = d.fe().set_vring_call(0, &d.call);
    let _ = d.fe().set_vring_kick(0, &d.kick);
    if d.acked & vf::PROTOCOL_FEATURES != 0 {
        let _ = d.fe().set_vring_enable(0, true);
    }
    let (segs, st) = placed(&mut d, &Request::get_id(20));
    d.submit_segs(&segs);
    format!("{a}; I/O: {}", observe(&mut d, Some(st)))
}

fn addr_outside_memory(env: &Env) -> String {
    ring_addr(env, |_| (0x10_0000, 0x20_0000, 0x30_0000))
}

fn addr_misaligned(env: &Env) -> String {
    ring_addr(env, |d| {
        let c = d.vring_config();
        (
            c.desc_table_addr + 1,
            c.used_ring_addr + 2,
            c.avail_ring_addr + 1,
        )
    })
}

fn addr_straddles_end(env: &Env) -> String {
    ring_addr(env, |d| {
        let c = d.vring_config();
        let end = d.ram.host_addr(0) + d.ram.size;
        (c.desc_table_addr, end - 64, c.avail_ring_addr)
    })
}

fn base_huge(env: &Env) -> String {
    let mut d = conn!(env);
    let _ = d.fe().get_vring_base(0);
    let a = hostile(&d, req::SET_VRING_BASE, &state_bytes(0, 0x1_2345), &[]);
    let _ = d.fe().set_vring_kick(0, &d.kick);
    if d.acked & vf::PROTOCOL_FEATURES != 0 {
        let _ = d.fe().set_vring_enable(0, true);
    }
    let (segs, st) = placed(&mut d, &Request::get_id(20));
    d.submit_segs(&segs);
    format!("{a}; I/O: {}", observe(&mut d, Some(st)))
}

fn kick_fd(env: &Env, code: u32, fd: Option<RawFd>, flags: u64, kick: impl FnOnce()) -> String {
    let mut d = conn!(env);
    let fds: Vec<RawFd> = fd.into_iter().collect();
    let a = hostile(&d, code, &flags.to_le_bytes(), &fds);
    let (segs, st) = placed(&mut d, &Request::get_id(20));
    d.submit_segs(&segs);
    kick();
    format!("{a}; I/O: {}", observe(&mut d, Some(st)))
}

fn kick_is_a_file(env: &Env) -> String {
    let f = memfd(c"torture", 4096).expect("memfd");
    kick_fd(env, req::SET_VRING_KICK, Some(f.as_raw_fd()), 0, || {})
}

fn kick_is_a_pipe(env: &Env) -> String {
    let mut p = [0; 2];
    // SAFETY: pipe(2) fills two fds we close below.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    let s = kick_fd(env, req::SET_VRING_KICK, Some(p[0]), 0, || {
        // SAFETY: a write to our own pipe.
        unsafe { libc::write(p[1], b"12345678".as_ptr().cast(), 8) };
    });
    // SAFETY: closing our own fds.
    unsafe {
        libc::close(p[0]);
        libc::close(p[1]);
    }
    s
}

fn call_is_a_pipe_read_end(env: &Env) -> String {
    let mut p = [0; 2];
    // SAFETY: pipe(2) fills two fds we close below.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    let s = kick_fd(env, req::SET_VRING_CALL, Some(p[0]), 0, || {});
    // SAFETY: closing our own fds.
    unsafe {
        libc::close(p[0]);
        libc::close(p[1]);
    }
    s
}

fn kick_missing_fd(env: &Env) -> String {
    kick_fd(env, req::SET_VRING_KICK, None, 0, || {})
}

fn kick_polling_flag(env: &Env) -> String {
    kick_fd(env, req::SET_VRING_KICK, None, 0x100, || {})
}

fn kick_index_out_of_range(env: &Env) -> String {
    let e = EventFd::new(0).expect("eventfd");
    kick_fd(env, req::SET_VRING_KICK, Some(e.as_raw_fd()), 0xff, || {})
}

// ---------------------------------------------------------------- inflight

fn inflight_body(mmap_size: u64, offset: u64, queues: u16, size: u16) -> Vec<u8> {
    let mut b = mmap_size.to_le_bytes().to_vec();
    b.extend_from_slice(&offset.to_le_bytes());
    b.extend_from_slice(&queues.to_le_bytes());
    b.extend_from_slice(&size.to_le_bytes());
    b.extend_from_slice(&[0u8; 4]);
    b
}

fn inflight_short_memfd(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture-inflight", 4096).expect("memfd");
    hostile(
        &d,
        req::SET_INFLIGHT_FD,
        &inflight_body(1 << 20, 0, 1, d.ring.size),
        &[f.as_raw_fd()],
    )
}

fn inflight_offset_past_eof(env: &Env) -> String {
    let d = bare!(env);
    let f = memfd(c"torture-inflight", 1 << 16).expect("memfd");
    hostile(
        &d,
        req::SET_INFLIGHT_FD,
        &inflight_body(4096, u64::MAX - 4095, 1, d.ring.size),
        &[f.as_raw_fd()],
    )
}

fn inflight_no_fd(env: &Env) -> String {
    let d = bare!(env);
    hostile(
        &d,
        req::SET_INFLIGHT_FD,
        &inflight_body(4096, 0, 1, d.ring.size),
        &[],
    )
}

fn inflight_garbage(env: &Env) -> String {
    use vhost::vhost_user::message::VhostUserInflight;
    let mut d = bare!(env);
    let asked = VhostUserInflight {
        mmap_size: 0,
        mmap_offset: 0,
        num_queues: 1,
        queue_size: d.ring.size,
    };
    let (info, file) = match d.fe().get_inflight_fd(&asked) {
        Ok(x) => x,
        Err(e) => return format!("GET_INFLIGHT_FD refused: {e}"),
    };
    // Every byte 0xa5: every head "in flight", counters and the batch
    // head nonsense, a version that is not 1.
    let len = info.mmap_size as usize;
    let _ = std::os::unix::fs::FileExt::write_all_at(&file, &vec![0xa5u8; len], info.mmap_offset);
    let a = match d.fe().set_inflight_fd(&info, file.as_raw_fd()) {
        Ok(()) => "accepted the region".to_string(),
        Err(e) => format!("refused the region ({e})"),
    };
    if let Err(e) = d.send_mem_table() {
        return format!("{a}; refused the table: {e}");
    }
    // Descriptors all garbage too.
    d.ram.fill(0, 0xa5, 16 * usize::from(d.ring.size));
    let s = match d.start_ring(0) {
        Ok(()) => observe(&mut d, None),
        Err(e) => format!("ring refused ({e})"),
    };
    format!("{a}; {s}")
}

// ---------------------------------------------------------------- config

fn config_msg(offset: u32, size: u32, flags: u32) -> Vec<u8> {
    let mut b = offset.to_le_bytes().to_vec();
    b.extend_from_slice(&size.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b.resize(12 + size as usize, 0);
    b
}

fn config_oversized(env: &Env) -> String {
    let d = conn!(env);
    hostile(&d, req::GET_CONFIG, &config_msg(0, 4096, 0), &[])
}

fn config_offset_past_end(env: &Env) -> String {
    let d = conn!(env);
    hostile(&d, req::GET_CONFIG, &config_msg(0x1000, 8, 0), &[])
}

fn config_size_mismatch(env: &Env) -> String {
    let d = conn!(env);
    let mut b = config_msg(0, 256, 0);
    b.truncate(12 + 8);
    hostile(&d, req::GET_CONFIG, &b, &[])
}

fn config_write_capacity(env: &Env) -> String {
    let d = conn!(env);
    let mut b = config_msg(0, 8, 0);
    b[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    hostile(&d, req::SET_CONFIG, &b, &[])
}

// ---------------------------------------------------------------- rings

fn desc_loop(env: &Env) -> String {
    table(env, |d| {
        let at = d.scratch(1024);
        d.ram.write(at, &blk::header(blk::T_IN, 0));
        (
            vec![
                Desc::new(at, 16, F_NEXT, 1),
                Desc::new(at + 64, 512, F_WRITE | F_NEXT, 0),
            ],
            None,
        )
    })
}

fn self_loop(env: &Env) -> String {
    table(env, |d| {
        let at = d.scratch(64);
        d.ram.write(at, &blk::header(blk::T_IN, 0));
        (vec![Desc::new(at, 16, F_NEXT, 0)], None)
    })
}

fn whole_table_chain(env: &Env) -> String {
    chain(env, |d| {
        let n = d.ring.size;
        let at = d.scratch(16 + 4 * u64::from(n) + 1);
        d.ram.write(at, &blk::header(blk::T_IN, 0));
        let mut segs = vec![(at, 16, 0)];
        for i in 0..u64::from(n - 2) {
            segs.push((at + 16 + 4 * i, 4, F_WRITE));
        }
        let st = at + 16 + 4 * u64::from(n);
        d.ram.write(st, &[STATUS_UNSET]);
        segs.push((st, 1, F_WRITE));
        (segs, Some(st))
    })
}

/// An IN request whose chain is one indirect descriptor; `edit` breaks it.
fn indirect(env: &Env, edit: impl FnOnce(&mut Driver, u64, Seg) -> Seg) -> String {
    chain(env, |d| {
        let (segs, st) = placed(d, &Request::read(0, 512));
        let t = d.scratch(64 * 16);
        let ind = SplitRing::indirect_table(&d.ram.mem, t, &segs);
        let ind = edit(d, t, ind);
        (vec![ind], Some(st))
    })
}

fn indirect_nested(env: &Env) -> String {
    indirect(env, |d, t, ind| {
        // Entry 1 is itself an indirect table (pointing at the table).
        let e = Desc::new(t, 48, F_INDIRECT | F_NEXT, 2);
        d.ram.write(t + 16, &e.to_bytes());
        ind
    })
}

fn indirect_bad_length(env: &Env) -> String {
    indirect(env, |_, _, (a, _, f)| (a, 17, f))
}

fn indirect_zero_length(env: &Env) -> String {
    indirect(env, |_, _, (a, _, f)| (a, 0, f))
}

fn indirect_outside_memory(env: &Env) -> String {
    indirect(env, |_, _, (_, l, f)| (1 << 40, l, f))
}

fn indirect_huge(env: &Env) -> String {
    indirect(env, |_, _, (a, _, f)| (a, 0xffff_fff0, f))
}

fn indirect_with_next(env: &Env) -> String {
    table(env, |d| {
        let (segs, st) = placed(d, &Request::read(0, 512));
        let t = d.scratch(64 * 16);
        let (a, l, _) = SplitRing::indirect_table(&d.ram.mem, t, &segs);
        let s2 = d.scratch(64);
        (
            vec![
                Desc::new(a, l, F_INDIRECT | F_NEXT, 1),
                Desc::new(s2, 1, F_WRITE, 0),
            ],
            Some(st),
        )
    })
}

fn indirect_loop(env: &Env) -> String {
    indirect(env, |d, t, ind| {
        d.ram.write(
            t + 16,
            &Desc::new(t + 512, 512, F_WRITE | F_NEXT, 0).to_bytes(),
        );
        ind
    })
}

fn indirect_next_out_of_table(env: &Env) -> String {
    indirect(env, |d, t, ind| {
        d.ram.write(
            t + 16,
            &Desc::new(t + 512, 512, F_WRITE | F_NEXT, 50).to_bytes(),
        );
        ind
    })
}

fn chain_over_4g(env: &Env) -> String {
    chain(env, |d| {
        let (mut segs, st) = placed(d, &Request::write(0, &[0u8; 512]));
        // Three 2 GiB buffers: the chain's length passes 4 GiB.
        segs.splice(1..2, [(0, 0x8000_0000, 0); 3]);
        (segs, Some(st))
    })
}

fn head_past_size(env: &Env) -> String {
    let mut d = conn!(env);
    let (segs, st) = placed(&mut d, &Request::get_id(20));
    d.ring.chain_at(&d.ram.mem, 0, &segs);
    d.ring.publish(&d.ram.mem, 1000);
    d.kick();
    observe(&mut d, Some(st))
}

fn next_past_size(env: &Env) -> String {
    table(env, |d| {
        let (segs, st) = placed(d, &Request::get_id(20));
        (vec![Desc::new(segs[0].0, 16, F_NEXT, 5000)], Some(st))
    })
}

fn avail_jump(env: &Env) -> String {
    let mut d = conn!(env);
    let (segs, st) = placed(&mut d, &Request::get_id(20));
    let h = d.ring.chain(&d.ram.mem, &segs);
    d.ring.stage(&d.ram.mem, h);
    let idx = d.ring.avail_idx.wrapping_add(1000);
    d.ring.set_avail_idx(&d.ram.mem, idx);
    d.kick();
    observe(&mut d, Some(st))
}

fn avail_backwards(env: &Env) -> String {
    let mut d = conn!(env);
    let first = d.run(&Request::get_id(20)).map(|_| ());
    let (segs, st) = placed(&mut d, &Request::get_id(20));
    let h = d.ring.chain(&d.ram.mem, &segs);
    d.ring.put_avail_entry(&d.ram.mem, 1, h);
    d.ring.set_avail_idx(&d.ram.mem, 0);
    d.kick();
    let s = observe(&mut d, Some(st));
    match first {
        Ok(()) => s,
        Err(e) => format!("first request failed ({e}); {s}"),
    }
}

fn status_readable(env: &Env) -> String {
    request(env, Request::read(0, 512), |s| {
        s.last_mut().expect("status").2 = 0
    })
}

fn zero_length_descs(env: &Env) -> String {
    request(env, Request::read(0, 512), |s| {
        let z = (s[1].0, 0, F_WRITE);
        s.insert(1, z);
        s.insert(3, z);
    })
}

fn readable_after_writable(env: &Env) -> String {
    request(env, Request::write(0, &[0u8; 512]), |s| {
        // header readable, data writable, then a readable descriptor.
        s[1].2 = F_WRITE;
        let st = s.pop().expect("status");
        s.push((s[0].0, 16, 0));
        s.push(st);
    })
}

fn data_outside_memory(env: &Env) -> String {
    request(env, Request::read(0, 512), |s| s[1].0 = 1 << 40)
}

fn data_straddles_end(env: &Env) -> String {
    let size = env.opts.mem_size;
    request(env, Request::read(0, 4096), move |s| s[1].0 = size - 512)
}

fn data_wraps_address_space(env: &Env) -> String {
    request(env, Request::read(0, 4096), |s| s[1].0 = u64::MAX - 511)
}

fn header_short(env: &Env) -> String {
    request(env, Request::read(0, 512), |s| s[0].1 = 8)
}

fn header_split(env: &Env) -> String {
    request(env, Request::read(0, 512), |s| {
        let (a, _, f) = s[0];
        s.splice(0..1, [(a, 8, f), (a + 8, 8, f)]);
    })
}

fn header_writable(env: &Env) -> String {
    request(env, Request::get_id(20), |s| s[0].2 = F_WRITE)
}

fn no_status(env: &Env) -> String {
    request(env, Request::flush(), |s| {
        s.pop();
    })
}

fn data_over_used_ring(env: &Env) -> String {
    chain(env, |d| {
        let used = d.ring.used;
        let (mut segs, st) = placed(d, &Request::read(0, 512));
        segs[1].0 = used;
        (segs, Some(st))
    })
}

fn same_head_twice(env: &Env) -> String {
    let mut d = conn!(env);
    let (segs, st) = placed(&mut d, &Request::read(0, 4096));
    let h = d.ring.chain(&d.ram.mem, &segs);
    d.ring.stage(&d.ram.mem, h);
    d.ring.stage(&d.ram.mem, h);
    d.ring.flush_avail(&d.ram.mem);
    d.kick();
    let a = observe(&mut d, Some(st));
    let b = observe(&mut d, Some(st));
    format!("{a}; {b}")
}

fn event_idx_garbage(env: &Env) -> String {
    let mut o = env.opts.clone();
    o.features |= vf::EVENT_IDX;
    let mut d = match vblk_testkit::vhost_user::Driver::connect(&env.sock, o) {
        Ok(d) => d,
        Err(e) => return format!("refused the set-up: {e}"),
    };
    d.ring.set_used_event(&d.ram.mem, 0x8000);
    let (segs, st) = placed(&mut d, &Request::get_id(20));
    d.submit_segs(&segs);
    observe(&mut d, Some(st))
}

// ---------------------------------------------------------------- requests

fn bad_type(env: &Env) -> String {
    request(env, Request::new(0x1234, 0), |_| {})
}

fn sector_past_end(env: &Env) -> String {
    request(env, Request::read(env.sectors(), 512), |_| {})
}

fn sector_overflow(env: &Env) -> String {
    request(env, Request::read(u64::MAX, 512), |_| {})
}

fn sector_end_overflow(env: &Env) -> String {
    request(env, Request::write(u64::MAX / 512, &[0u8; 1024]), |_| {})
}

fn odd_length(env: &Env) -> String {
    request(env, Request::read(0, 513), |_| {})
}

fn get_id_short(env: &Env) -> String {
    request(env, Request::get_id(4), |_| {})
}

fn get_id_no_buffer(env: &Env) -> String {
    request(env, Request::get_id(0), |_| {})
}

fn discard_bad_flags(env: &Env) -> String {
    request(env, Request::discard(&[(0, 8, 0xffff_fffe)]), |_| {})
}

fn discard_unmap_flag(env: &Env) -> String {
    request(env, Request::discard(&[(0, 8, 1)]), |_| {})
}

fn write_zeroes_bad_flags(env: &Env) -> String {
    request(env, Request::write_zeroes(&[(0, 8, 0xffff_fffe)]), |_| {})
}

fn discard_too_many_segments(env: &Env) -> String {
    let segs: Vec<_> = (0..1000).map(|i| (i * 8, 8, 0)).collect();
    request(env, Request::discard(&segs), |_| {})
}

fn discard_past_end(env: &Env) -> String {
    request(env, Request::discard(&[(env.sectors() - 1, 64, 0)]), |_| {})
}

fn discard_sector_overflow(env: &Env) -> String {
    request(env, Request::write_zeroes(&[(u64::MAX - 3, 8, 0)]), |_| {})
}

fn discard_odd_payload(env: &Env) -> String {
    let mut r = Request::discard(&[(0, 8, 0)]);
    r.out.push(0);
    request(env, r, |_| {})
}

fn flush_with_data(env: &Env) -> String {
    let mut r = Request::flush();
    r.sector = 12345;
    r.out = vec![0x11; 512];
    r.in_len = 512;
    request(env, r, |_| {})
}

fn in_with_readable_data(env: &Env) -> String {
    request(env, Request::read(0, 512), |s| s[1].2 = 0)
}

fn out_with_writable_data(env: &Env) -> String {
    request(env, Request::write(0, &[0x22; 512]), |s| s[1].2 = F_WRITE)
}

fn huge_read(env: &Env) -> String {
    request(env, Request::read(0, 512), |s| s[1].1 = 0xffff_fe00)
}

// ---------------------------------------------------------------- memory under I/O

/// Start `n` 64 KiB reads (not waited for); their status addresses.
fn in_flight(d: &mut Driver, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| d.submit(&Request::read(8 * i as u64, 65536)).1.status)
        .collect()
}

fn completions(d: &mut Driver, n: usize) -> String {
    let mut got = 0;
    while got < n && d.wait_used_for(SHORT).is_some() {
        got += 1;
    }
    format!("{got}/{n} completed")
}

fn set_mem_table_under_io(env: &Env) -> String {
    let mut d = conn!(env);
    let st = in_flight(&mut d, 32);
    let a = hostile(
        &d,
        req::SET_MEM_TABLE,
        &mem_table_bytes(
            1,
            &[region_bytes(0, d.ram.size, d.region().userspace_addr, 0)],
        ),
        &[d.ram.fd()],
    );
    format!("{a}; {}", completions(&mut d, st.len()))
}

fn new_table_under_io(env: &Env) -> String {
    let mut d = conn!(env);
    let st = in_flight(&mut d, 32);
    let f = memfd(c"torture", 1 << 20).expect("memfd");
    let a = hostile(
        &d,
        req::SET_MEM_TABLE,
        &mem_table_bytes(1, &[region_bytes(0, 1 << 20, UVA, 0)]),
        &[f.as_raw_fd()],
    );
    format!("{a}; {}", completions(&mut d, st.len()))
}

fn rem_mem_reg_under_io(env: &Env) -> String {
    let mut d = conn!(env);
    let f = memfd(c"torture", 4 << 20).expect("memfd");
    let r = region_bytes(FAR, 4 << 20, UVA, 0);
    let a = reg_msg(&d, req::ADD_MEM_REG, r, &[f.as_raw_fd()]);
    // 32 reads of 64 KiB into the added region (headers and status in RAM).
    for i in 0..32u64 {
        let at = d.scratch(64);
        d.ram.write(at, &blk::header(blk::T_IN, 8 * i));
        d.ram.write(at + 32, &[STATUS_UNSET]);
        d.submit_segs(&[
            (at, 16, 0),
            (FAR + i * 65536, 65536, F_WRITE),
            (at + 32, 1, F_WRITE),
        ]);
    }
    let b = reg_msg(&d, req::REM_MEM_REG, r, &[]);
    format!(
        "add: {a}; remove under I/O: {b}; {}",
        completions(&mut d, 32)
    )
}

fn memfd_shrunk_under_data(env: &Env) -> String {
    let mut d = conn!(env);
    let keep = d.scratch(0);
    // Headers and status bytes stay in the first part; data beyond the cut.
    let mut sts = Vec::new();
    for i in 0..16u64 {
        let at = d.scratch(64);
        d.ram.write(at, &blk::header(blk::T_IN, 8 * i));
        d.ram.write(at + 32, &[STATUS_UNSET]);
        sts.push(at + 32);
        let segs = [
            (at, 16, 0),
            (0x40_0000 + i * 65536, 65536, F_WRITE),
            (at + 32, 1, F_WRITE),
        ];
        let h = d.ring.chain(&d.ram.mem, &segs);
        d.ring.stage(&d.ram.mem, h);
    }
    let _ = keep;
    // Cut everything from 4 MiB on, then publish.
    if let Err(e) = d.ram.truncate(0x40_0000) {
        return format!("cannot truncate: {e}");
    }
    d.ring.flush_avail(&d.ram.mem);
    d.kick();
    let c = completions(&mut d, 16);
    let ok = sts.iter().filter(|&&s| d.ram.u8_at(s) == blk::S_OK).count();
    format!("{c}, {ok} with status OK, {}", kept(&d))
}

fn memfd_shrunk_under_rings(env: &Env) -> String {
    let mut d = conn!(env);
    for i in 0..8u64 {
        let (segs, _) = placed(&mut d, &Request::read(8 * i, 4096));
        let h = d.ring.chain(&d.ram.mem, &segs);
        d.ring.stage(&d.ram.mem, h);
    }
    d.ring.flush_avail(&d.ram.mem);
    if let Err(e) = d.ram.truncate(0) {
        return format!("cannot truncate: {e}");
    }
    // From here on nothing of the guest RAM may be touched by us.
    d.kick();
    std::thread::sleep(Duration::from_millis(300));
    kept(&d).to_string()
}

fn disconnect_under_io(env: &Env) -> String {
    let mut d = conn!(env);
    in_flight(&mut d, 64);
    drop(d);
    "hung up with 64 reads in flight".into()
}

fn get_vring_base_under_io(env: &Env) -> String {
    let mut d = conn!(env);
    in_flight(&mut d, 32);
    let a = hostile(&d, req::GET_VRING_BASE, &state_bytes(0, 0), &[]);
    format!("{a}; {}", completions(&mut d, 32))
}

fn reset_device_under_io(env: &Env) -> String {
    let mut d = conn!(env);
    in_flight(&mut d, 32);
    let a = hostile(&d, req::RESET_DEVICE, &[], &[]);
    format!("{a}; {}", completions(&mut d, 32))
}

// ---------------------------------------------------------------- floods

fn flood_kicks(env: &Env) -> String {
    let mut d = conn!(env);
    for _ in 0..20_000 {
        d.kick();
    }
    match d.run(&Request::get_id(20)) {
        Ok(r) => format!("then served (status {})", status_name(r.status)),
        Err(e) => format!("then not served: {e}"),
    }
}

fn flood_ring_full(env: &Env) -> String {
    let mut d = conn!(env);
    let n = usize::from(d.ring.size / 3);
    for i in 0..n {
        let (segs, _) = placed(&mut d, &Request::read(8 * i as u64, 4096));
        let h = d.ring.chain(&d.ram.mem, &segs);
        d.ring.stage(&d.ram.mem, h);
    }
    d.ring.flush_avail(&d.ram.mem);
    d.kick();
    let mut got = 0;
    while got < n && d.wait_used().is_some() {
        got += 1;
    }
    format!("{got}/{n} completed")
}

fn flood_messages(env: &Env) -> String {
    let d = conn!(env);
    // 50 batches of 100 requests sent back to back, each batch's answers
    // read after it (a daemon's answers must not fill the socket both ways).
    let mut got = 0;
    'outer: for _ in 0..50 {
        for _ in 0..100 {
            if d.raw.send(req::GET_FEATURES, false, &[], &[]).is_err() {
                break 'outer;
            }
        }
        for _ in 0..100 {
            match d.raw.recv() {
                Reply::Msg { .. } => got += 1,
                _ => break 'outer,
            }
        }
    }
    format!("{got}/5000 answered")
}

fn flood_connections(env: &Env) -> String {
    let mut held = Vec::new();
    for _ in 0..64 {
        match vblk_testkit::vhost_user::connect_timeout(&env.sock, env.opts.timeout) {
            Ok(s) => {
                let raw = vblk_testkit::vhost_user::RawConn::new(s);
                let _ = raw.send(req::SET_OWNER, false, &[], &[]);
                held.push(raw);
            }
            Err(_) => break,
        }
    }
    let n = held.len();
    drop(held);
    format!("{n}/64 connections opened")
}

fn flood_reconnects(env: &Env) -> String {
    let mut ok = 0;
    for _ in 0..50 {
        if let Ok(mut d) = env.conn() {
            if d.run(&Request::get_id(20)).is_ok() {
                ok += 1;
            }
        }
    }
    format!("{ok}/50 sessions served")
}

fn flood_mem_tables(env: &Env) -> String {
    let mut d = conn!(env);
    let mut acc = 0;
    for _ in 0..100 {
        if d.send_mem_table().is_ok() {
            acc += 1;
        }
    }
    match d.run(&Request::get_id(20)) {
        Ok(r) => format!(
            "{acc}/100 tables accepted, then status {}",
            status_name(r.status)
        ),
        Err(e) => format!("{acc}/100 tables accepted, then not served: {e}"),
    }
}

// ---------------------------------------------------------------- the list

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

pub fn all() -> Vec<Case> {
    use Need::*;
    let slots = Protocol(P::CONFIGURE_MEM_SLOTS);
    let inflight = Protocol(P::INFLIGHT_SHMFD);
    let config = Protocol(P::CONFIG);
    vec![
        case!(
            "proto.unknown-request",
            Nothing,
            unknown_request,
            "request code 0x3f3f"
        ),
        case!(
            "proto.bad-version",
            Nothing,
            bad_version,
            "header flags without version 1"
        ),
        case!(
            "proto.reply-flag-from-frontend",
            Nothing,
            reply_flag_from_front_end,
            "a request flagged as a reply"
        ),
        case!(
            "proto.short-body",
            Nothing,
            short_body,
            "SET_VRING_NUM with a 4-byte body"
        ),
        case!(
            "proto.long-body",
            Nothing,
            long_body,
            "SET_VRING_NUM with a 300-byte body"
        ),
        case!(
            "proto.huge-size-field",
            Nothing,
            huge_size_field,
            "size field 2 GiB, body never sent"
        ),
        case!(
            "proto.truncated-header",
            Nothing,
            truncated_header,
            "6 bytes of a header, then hang up"
        ),
        case!(
            "proto.features-not-offered",
            Nothing,
            features_not_offered,
            "SET_FEATURES with all 64 bits"
        ),
        case!(
            "proto.protocol-features-not-offered",
            Nothing,
            protocol_features_not_offered,
            "SET_PROTOCOL_FEATURES with all 64 bits"
        ),
        case!(
            "proto.set-owner-twice",
            Nothing,
            set_owner_twice,
            "SET_OWNER on a running device"
        ),
        case!(
            "proto.reset-owner-under-io",
            Nothing,
            reset_owner_under_io,
            "RESET_OWNER with reads in flight"
        ),
        case!(
            "proto.ring-before-mem-table",
            Nothing,
            ring_before_mem_table,
            "vring set-up and a kick before any memory table"
        ),
        case!(
            "proto.kick-before-ring",
            Nothing,
            kick_before_ring,
            "SET_VRING_KICK and kicks before NUM/ADDR"
        ),
        case!(
            "proto.log-base-not-negotiated",
            Nothing,
            log_base_without_feature,
            "SET_LOG_BASE without LOG_SHMFD"
        ),
        case!(
            "proto.vring-err-not-eventfd",
            Nothing,
            vring_err_not_eventfd,
            "SET_VRING_ERR with a memfd"
        ),
        case!(
            "mem.overlap",
            Nothing,
            mem_overlap,
            "two regions overlapping in guest space"
        ),
        case!(
            "mem.past-eof",
            Nothing,
            mem_past_eof,
            "a 4 MiB region of a 1 MiB memfd"
        ),
        case!(
            "mem.offset-past-eof",
            Nothing,
            mem_offset_past_eof,
            "mmap offset at the end of the file"
        ),
        case!(
            "mem.offset-overflow",
            Nothing,
            mem_offset_overflow,
            "mmap offset + size overflows"
        ),
        case!(
            "mem.gpa-overflow",
            Nothing,
            mem_gpa_overflow,
            "guest address + size overflows"
        ),
        case!(
            "mem.uva-overflow",
            Nothing,
            mem_uva_overflow,
            "user address + size overflows"
        ),
        case!(
            "mem.zero-size",
            Nothing,
            mem_zero_size,
            "a zero-size region"
        ),
        case!(
            "mem.empty-table",
            Nothing,
            mem_empty_table,
            "a table of no regions"
        ),
        case!(
            "mem.too-many-regions",
            Nothing,
            mem_too_many_regions,
            "9 regions (the message holds 8)"
        ),
        case!(
            "mem.count-mismatch",
            Nothing,
            mem_count_mismatch,
            "num_regions 4, one region sent"
        ),
        case!(
            "mem.no-fd",
            Nothing,
            mem_no_fd,
            "a region without a file descriptor"
        ),
        case!(
            "mem.fd-not-mappable",
            Nothing,
            mem_fd_not_mappable,
            "an eventfd as guest memory"
        ),
        case!(
            "mem.read-only-fd",
            Nothing,
            mem_read_only_fd,
            "a read-only descriptor of the memfd"
        ),
        case!(
            "mem.same-uva-twice",
            Nothing,
            mem_same_uva_twice,
            "two regions at one user address, then I/O"
        ),
        case!(
            "memreg.add-overlap",
            slots,
            reg_add_overlap,
            "ADD_MEM_REG overlapping the RAM"
        ),
        case!(
            "memreg.add-past-eof",
            slots,
            reg_add_past_eof,
            "ADD_MEM_REG past the end of its file"
        ),
        case!(
            "memreg.add-no-fd",
            slots,
            reg_add_no_fd,
            "ADD_MEM_REG without a descriptor"
        ),
        case!(
            "memreg.remove-unknown",
            slots,
            reg_rem_unknown,
            "REM_MEM_REG of a region never added"
        ),
        case!(
            "memreg.remove-twice",
            slots,
            reg_rem_twice,
            "add, remove, remove again"
        ),
        case!(
            "memreg.past-max-slots",
            slots,
            reg_past_max_slots,
            "ADD_MEM_REG until GET_MAX_MEM_SLOTS + 1"
        ),
        case!(
            "memreg.remove-ram-under-ring",
            slots,
            reg_remove_ram_under_ring,
            "REM_MEM_REG of the RAM holding the ring, then a kick"
        ),
        case!(
            "vring.num-not-power-of-two",
            Nothing,
            num_not_pow2,
            "SET_VRING_NUM 24"
        ),
        case!(
            "vring.num-too-big",
            Nothing,
            num_too_big,
            "SET_VRING_NUM 65536"
        ),
        case!("vring.num-zero", Nothing, num_zero, "SET_VRING_NUM 0"),
        case!(
            "vring.num-index-out-of-range",
            Nothing,
            num_index_out_of_range,
            "SET_VRING_NUM on queue 1000"
        ),
        case!(
            "vring.base-index-out-of-range",
            Nothing,
            base_index_out_of_range,
            "SET_VRING_BASE on queue 2^32-1"
        ),
        case!(
            "vring.get-base-out-of-range",
            Nothing,
            get_base_out_of_range,
            "GET_VRING_BASE on queue 1000"
        ),
        case!(
            "vring.get-base-never-started",
            Nothing,
            get_base_never_started,
            "GET_VRING_BASE on a ring never set up"
        ),
        case!(
            "vring.enable-out-of-range",
            Nothing,
            enable_out_of_range,
            "SET_VRING_ENABLE on queue 1000"
        ),
        case!(
            "vring.enable-bad-value",
            Nothing,
            enable_bad_value,
            "SET_VRING_ENABLE 7, then I/O"
        ),
        case!(
            "vring.addr-outside-memory",
            Nothing,
            addr_outside_memory,
            "ring addresses in no region, then I/O"
        ),
        case!(
            "vring.addr-misaligned",
            Nothing,
            addr_misaligned,
            "odd ring addresses, then I/O"
        ),
        case!(
            "vring.addr-straddles-end",
            Nothing,
            addr_straddles_end,
            "used ring running past the RAM, then I/O"
        ),
        case!(
            "vring.base-huge",
            Nothing,
            base_huge,
            "SET_VRING_BASE 0x12345, then I/O"
        ),
        case!(
            "vring.kick-is-a-file",
            Nothing,
            kick_is_a_file,
            "a memfd as kick fd"
        ),
        case!(
            "vring.kick-is-a-pipe",
            Nothing,
            kick_is_a_pipe,
            "a pipe as kick fd, 8 bytes written to it"
        ),
        case!(
            "vring.call-is-a-pipe-read-end",
            Nothing,
            call_is_a_pipe_read_end,
            "the read end of a pipe as call fd"
        ),
        case!(
            "vring.kick-missing-fd",
            Nothing,
            kick_missing_fd,
            "SET_VRING_KICK without fd nor NOFD flag"
        ),
        case!(
            "vring.kick-polling-flag",
            Nothing,
            kick_polling_flag,
            "SET_VRING_KICK with the NOFD flag"
        ),
        case!(
            "vring.kick-index-out-of-range",
            Nothing,
            kick_index_out_of_range,
            "SET_VRING_KICK on queue 255"
        ),
        case!(
            "inflight.short-memfd",
            inflight,
            inflight_short_memfd,
            "SET_INFLIGHT_FD claiming 1 MiB of a 4 KiB memfd"
        ),
        case!(
            "inflight.offset-past-eof",
            inflight,
            inflight_offset_past_eof,
            "SET_INFLIGHT_FD offset near 2^64"
        ),
        case!(
            "inflight.no-fd",
            inflight,
            inflight_no_fd,
            "SET_INFLIGHT_FD without a descriptor"
        ),
        case!(
            "inflight.garbage",
            inflight,
            inflight_garbage,
            "an inflight region and a descriptor table of 0xa5"
        ),
        case!(
            "config.oversized-read",
            config,
            config_oversized,
            "GET_CONFIG of 4096 bytes"
        ),
        case!(
            "config.offset-past-end",
            config,
            config_offset_past_end,
            "GET_CONFIG at offset 4096"
        ),
        case!(
            "config.size-mismatch",
            config,
            config_size_mismatch,
            "GET_CONFIG size 256 with an 8-byte payload"
        ),
        case!(
            "config.write-capacity",
            config,
            config_write_capacity,
            "SET_CONFIG of the capacity"
        ),
        case!("ring.desc-loop", Nothing, desc_loop, "a chain 0 -> 1 -> 0"),
        case!("ring.self-loop", Nothing, self_loop, "descriptor 0 -> 0"),
        case!(
            "ring.whole-table-chain",
            Nothing,
            whole_table_chain,
            "one chain through every descriptor"
        ),
        case!(
            "ring.indirect-nested",
            Nothing,
            indirect_nested,
            "an indirect table inside an indirect table"
        ),
        case!(
            "ring.indirect-bad-length",
            Nothing,
            indirect_bad_length,
            "indirect table of 17 bytes"
        ),
        case!(
            "ring.indirect-zero-length",
            Nothing,
            indirect_zero_length,
            "indirect table of 0 bytes"
        ),
        case!(
            "ring.indirect-outside-memory",
            Nothing,
            indirect_outside_memory,
            "indirect table at 1 TiB"
        ),
        case!(
            "ring.indirect-huge",
            Nothing,
            indirect_huge,
            "indirect table of 4 GiB"
        ),
        case!(
            "ring.indirect-with-next",
            Nothing,
            indirect_with_next,
            "INDIRECT together with NEXT"
        ),
        case!(
            "ring.indirect-loop",
            Nothing,
            indirect_loop,
            "a loop inside an indirect table"
        ),
        case!(
            "ring.indirect-next-out-of-table",
            Nothing,
            indirect_next_out_of_table,
            "an indirect entry's next past the table"
        ),
        case!(
            "ring.chain-over-4g",
            Nothing,
            chain_over_4g,
            "a chain of more than 4 GiB"
        ),
        case!(
            "ring.head-past-size",
            Nothing,
            head_past_size,
            "avail head 1000 in a ring of 128"
        ),
        case!(
            "ring.next-past-size",
            Nothing,
            next_past_size,
            "next index 5000"
        ),
        case!(
            "ring.avail-jump",
            Nothing,
            avail_jump,
            "avail index jumps by 1000"
        ),
        case!(
            "ring.avail-backwards",
            Nothing,
            avail_backwards,
            "avail index goes back"
        ),
        case!(
            "ring.same-head-twice",
            Nothing,
            same_head_twice,
            "one head made available twice"
        ),
        case!(
            "ring.status-readable",
            Nothing,
            status_readable,
            "the status byte in a readable descriptor"
        ),
        case!(
            "ring.zero-length-descs",
            Nothing,
            zero_length_descs,
            "zero-length data descriptors"
        ),
        case!(
            "ring.readable-after-writable",
            Nothing,
            readable_after_writable,
            "a readable descriptor after a writable one"
        ),
        case!(
            "ring.data-outside-memory",
            Nothing,
            data_outside_memory,
            "a data buffer at 1 TiB"
        ),
        case!(
            "ring.data-straddles-end",
            Nothing,
            data_straddles_end,
            "a data buffer running past the RAM"
        ),
        case!(
            "ring.data-wraps-address-space",
            Nothing,
            data_wraps_address_space,
            "a data buffer at 2^64 - 512"
        ),
        case!(
            "ring.data-over-used-ring",
            Nothing,
            data_over_used_ring,
            "a read into the used ring itself"
        ),
        case!(
            "ring.header-short",
            Nothing,
            header_short,
            "an 8-byte header"
        ),
        case!(
            "ring.header-split",
            Nothing,
            header_split,
            "the header in two descriptors (valid)"
        ),
        case!(
            "ring.header-writable",
            Nothing,
            header_writable,
            "the header in a writable descriptor"
        ),
        case!(
            "ring.no-status",
            Nothing,
            no_status,
            "a chain without a status byte"
        ),
        case!(
            "ring.event-idx-garbage",
            Feature(vf::EVENT_IDX),
            event_idx_garbage,
            "EVENT_IDX with used_event far ahead"
        ),
        case!("req.bad-type", Nothing, bad_type, "request type 0x1234"),
        case!(
            "req.sector-past-end",
            Nothing,
            sector_past_end,
            "a read at the capacity"
        ),
        case!(
            "req.sector-overflow",
            Nothing,
            sector_overflow,
            "sector 2^64 - 1"
        ),
        case!(
            "req.sector-end-overflow",
            Nothing,
            sector_end_overflow,
            "a write whose end overflows"
        ),
        case!("req.odd-length", Nothing, odd_length, "a read of 513 bytes"),
        case!(
            "req.huge-read",
            Nothing,
            huge_read,
            "a read of 4 GiB into 8 MiB of RAM"
        ),
        case!(
            "req.get-id-short",
            Nothing,
            get_id_short,
            "GET_ID into 4 bytes"
        ),
        case!(
            "req.get-id-no-buffer",
            Nothing,
            get_id_no_buffer,
            "GET_ID with only a status byte"
        ),
        case!(
            "req.in-readable-data",
            Nothing,
            in_with_readable_data,
            "a read into a readable buffer"
        ),
        case!(
            "req.out-writable-data",
            Nothing,
            out_with_writable_data,
            "a write from a writable buffer"
        ),
        case!(
            "req.flush-with-data",
            Nothing,
            flush_with_data,
            "FLUSH with a sector and data"
        ),
        case!(
            "req.discard-bad-flags",
            Feature(vf::DISCARD),
            discard_bad_flags,
            "DISCARD with reserved flag bits"
        ),
        case!(
            "req.discard-unmap-flag",
            Feature(vf::DISCARD),
            discard_unmap_flag,
            "DISCARD with the unmap flag"
        ),
        case!(
            "req.discard-too-many-segments",
            Feature(vf::DISCARD),
            discard_too_many_segments,
            "DISCARD of 1000 segments"
        ),
        case!(
            "req.discard-past-end",
            Feature(vf::DISCARD),
            discard_past_end,
            "DISCARD across the end"
        ),
        case!(
            "req.discard-odd-payload",
            Feature(vf::DISCARD),
            discard_odd_payload,
            "DISCARD payload of 17 bytes"
        ),
        case!(
            "req.write-zeroes-bad-flags",
            Feature(vf::WRITE_ZEROES),
            write_zeroes_bad_flags,
            "WRITE_ZEROES with reserved flag bits"
        ),
        case!(
            "req.write-zeroes-overflow",
            Feature(vf::WRITE_ZEROES),
            discard_sector_overflow,
            "WRITE_ZEROES at sector 2^64 - 4"
        ),
        case!(
            "live.set-mem-table-under-io",
            Nothing,
            set_mem_table_under_io,
            "the same table again with 32 reads in flight"
        ),
        case!(
            "live.new-table-under-io",
            Nothing,
            new_table_under_io,
            "a different, smaller table with 32 reads in flight"
        ),
        case!(
            "live.rem-mem-reg-under-io",
            slots,
            rem_mem_reg_under_io,
            "REM_MEM_REG of the region 32 reads target"
        ),
        case!(
            "live.memfd-shrunk-under-data",
            Nothing,
            memfd_shrunk_under_data,
            "the memfd cut under 16 reads' buffers"
        ),
        case!(
            "live.memfd-shrunk-under-rings",
            Nothing,
            memfd_shrunk_under_rings,
            "the memfd cut to 0 under the rings, then a kick"
        ),
        case!(
            "live.disconnect-under-io",
            Nothing,
            disconnect_under_io,
            "hang up with 64 reads in flight"
        ),
        case!(
            "live.get-vring-base-under-io",
            Nothing,
            get_vring_base_under_io,
            "stop the ring with 32 reads in flight"
        ),
        case!(
            "live.reset-device-under-io",
            Protocol(P::RESET_DEVICE),
            reset_device_under_io,
            "RESET_DEVICE with 32 reads in flight"
        ),
        case!(
            "flood.kicks",
            Nothing,
            flood_kicks,
            "20000 kicks, then a request"
        ),
        case!(
            "flood.ring-full",
            Nothing,
            flood_ring_full,
            "a ring full of reads, one kick"
        ),
        case!(
            "flood.messages",
            Nothing,
            flood_messages,
            "5000 GET_FEATURES without reading"
        ),
        case!(
            "flood.connections",
            Nothing,
            flood_connections,
            "64 connections at once"
        ),
        case!(
            "flood.reconnects",
            Nothing,
            flood_reconnects,
            "50 sessions one after another"
        ),
        case!(
            "flood.mem-tables",
            Nothing,
            flood_mem_tables,
            "100 SET_MEM_TABLE on one connection"
        ),
    ]
}
