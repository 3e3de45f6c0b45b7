//! Descriptor chains and ring indexes a hostile driver can write.

use super::*;

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

pub(super) fn list() -> Vec<Case> {
    use Need::*;
    vec![
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
    ]
}
