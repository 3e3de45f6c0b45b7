//! Many kicks, messages and connections at once.

use super::*;

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

pub(super) fn list() -> Vec<Case> {
    use Need::*;
    vec![
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
