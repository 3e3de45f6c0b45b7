//! Ring indexes and buffer placement a hostile driver can write: heads,
//! nexts and avail indexes past the ring or going back, one head twice,
//! a request's header, data and status in the wrong descriptors or
//! outside memory, and EVENT_IDX with a used_event far ahead.

use super::*;

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

pub(super) fn list() -> Vec<Case> {
    use Need::*;
    vec![
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
    ]
}
