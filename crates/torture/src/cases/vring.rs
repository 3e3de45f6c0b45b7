//! Ring set-up messages: sizes, indexes, addresses, kick and call fds.

use super::*;

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

pub(super) fn list() -> Vec<Case> {
    use Need::*;
    vec![
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
    ]
}
