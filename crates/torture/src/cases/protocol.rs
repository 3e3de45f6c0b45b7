//! Malformed and out-of-order vhost-user messages.

use super::*;

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

pub(super) fn list() -> Vec<Case> {
    use Need::*;
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
    ]
}
