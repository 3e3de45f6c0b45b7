//! Descriptor chains a hostile driver can write: loops, one chain through
//! the whole table, broken indirect tables, a chain of more than 4 GiB.

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
    ]
}
