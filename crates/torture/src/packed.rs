//! Hostile packed rings (`VIRTIO_F_RING_PACKED`), for back ends that offer
//! them: ids past the ring, chains longer than the ring, flags the spec
//! forbids inside and around indirect tables, descriptors of the wrong
//! lap, an id used twice, a saved position past the ring. Each case runs on
//! its own connection; the integrity probe afterwards uses split rings on a
//! fresh one.

use std::time::{Duration, Instant};

use vblk_testkit::blk::{self, Request, STATUS_UNSET};
use vblk_testkit::packed::{avail_bits, PDesc, PackedDriver, P_INDIRECT, P_NEXT, P_WRITE};
use vblk_testkit::vhost_user::{Driver, Options, RING_PACKED};

use crate::{Case, Env, Need};

const SHORT: Duration = Duration::from_millis(600);

/// A connection with a packed ring 0 at `base` (the fresh base if `None`).
fn packed_conn(env: &Env, base: Option<u32>) -> Result<(Driver, PackedDriver), String> {
    let opts = Options {
        features: env.opts.features | RING_PACKED,
        ..env.opts.clone()
    };
    let mut d = Driver::negotiate(&env.sock, opts)?;
    if d.acked & RING_PACKED == 0 {
        return Err("RING_PACKED not accepted".into());
    }
    d.send_mem_table()?;
    let p = d.packed_ring();
    d.start_packed_ring(&p, base.unwrap_or(p.base()))?;
    Ok((d, p))
}

macro_rules! packed {
    ($env:expr) => {
        match packed_conn($env, None) {
            Ok(x) => x,
            Err(e) => return format!("refused the set-up: {e}"),
        }
    };
}

/// What came back within SHORT, and whether the connection still answers.
fn observe(d: &mut Driver, p: &mut PackedDriver, status: u64) -> String {
    let t = Instant::now();
    let mut got = None;
    while t.elapsed() < SHORT {
        if let Some(u) = p.take_used(&d.ram.mem) {
            got = Some(u);
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let st = match d.ram.u8_at(status) {
        blk::S_OK => "OK".to_string(),
        blk::S_IOERR => "IOERR".into(),
        blk::S_UNSUPP => "UNSUPP".into(),
        STATUS_UNSET => "unwritten".into(),
        x => format!("{x:#x}"),
    };
    let kept = if d.raw.answers() {
        "connection kept"
    } else {
        "connection dropped"
    };
    match got {
        Some((id, len)) => format!("used id {id} (len {len}, status {st}), {kept}"),
        None => format!("nothing used (status {st}), {kept}"),
    }
}

/// A FLUSH request placed in scratch memory: (header, status) addresses.
fn flush(d: &mut Driver) -> (u64, u64) {
    let r = Request::flush();
    let at = d.scratch(r.footprint());
    let placed = r.place(&d.ram.mem, at);
    (placed.hdr, placed.status)
}

fn id_past_ring(env: &Env) -> String {
    let (mut d, mut p) = packed!(env);
    let (hdr, st) = flush(&mut d);
    p.add(&d.ram.mem, &[(hdr, 16, 0), (st, 1, P_WRITE)], p.size);
    d.kick();
    observe(&mut d, &mut p, st)
}

fn chain_longer_than_ring(env: &Env) -> String {
    let (mut d, mut p) = packed!(env);
    let (hdr, st) = flush(&mut d);
    for i in 0..p.size {
        let flags = P_NEXT | avail_bits(true);
        p.put(
            &d.ram.mem,
            i,
            PDesc {
                addr: hdr,
                len: 16,
                id: 0,
                flags,
            },
        );
    }
    d.kick();
    observe(&mut d, &mut p, st)
}

fn indirect_with(env: &Env, bad: u16) -> String {
    let (mut d, mut p) = packed!(env);
    let (hdr, st) = flush(&mut d);
    let table = d.scratch(64);
    p.add_indirect(&d.ram.mem, table, &[(hdr, 16, bad), (st, 1, P_WRITE)], 0);
    d.kick();
    observe(&mut d, &mut p, st)
}

fn next_in_indirect(env: &Env) -> String {
    indirect_with(env, P_NEXT)
}

fn indirect_in_indirect(env: &Env) -> String {
    indirect_with(env, P_INDIRECT)
}

fn indirect_in_chain(env: &Env) -> String {
    let (mut d, mut p) = packed!(env);
    let (hdr, st) = flush(&mut d);
    let table = d.scratch(32);
    let t = PDesc {
        addr: st,
        len: 1,
        id: 0,
        flags: P_WRITE,
    };
    d.ram.write(table, &t.to_bytes());
    p.add(&d.ram.mem, &[(hdr, 16, 0), (table, 16, P_INDIRECT)], 0);
    d.kick();
    observe(&mut d, &mut p, st)
}

fn wrong_lap(env: &Env) -> String {
    let (mut d, mut p) = packed!(env);
    let (hdr, st) = flush(&mut d);
    // The second descriptor carries the next lap's bits.
    let second = PDesc {
        addr: st,
        len: 1,
        id: 0,
        flags: P_WRITE | avail_bits(false),
    };
    p.put(&d.ram.mem, 1, second);
    let first = PDesc {
        addr: hdr,
        len: 16,
        id: 0,
        flags: P_NEXT | avail_bits(true),
    };
    p.put(&d.ram.mem, 0, first);
    d.kick();
    observe(&mut d, &mut p, st)
}

fn id_twice(env: &Env) -> String {
    let (mut d, mut p) = packed!(env);
    let (hdr, st) = flush(&mut d);
    let (hdr2, st2) = flush(&mut d);
    p.add(&d.ram.mem, &[(hdr, 16, 0), (st, 1, P_WRITE)], 3);
    p.add(&d.ram.mem, &[(hdr2, 16, 0), (st2, 1, P_WRITE)], 3);
    d.kick();
    let first = observe(&mut d, &mut p, st);
    format!("{first}; second buffer: status {:#x}", d.ram.u8_at(st2))
}

fn base_past_ring(env: &Env) -> String {
    let (mut d, mut p) = match packed_conn(env, Some(0x8000_8000 | 0x7ff0)) {
        Ok(x) => x,
        Err(e) => return format!("refused: {e}"),
    };
    let (hdr, st) = flush(&mut d);
    p.add(&d.ram.mem, &[(hdr, 16, 0), (st, 1, P_WRITE)], 0);
    d.kick();
    observe(&mut d, &mut p, st)
}

macro_rules! case {
    ($name:expr, $f:ident, $about:expr) => {
        Case {
            name: $name,
            about: $about,
            need: Need::Feature(RING_PACKED),
            run: $f,
        }
    };
}

/// The packed-ring cases.
pub fn all() -> Vec<Case> {
    vec![
        case!(
            "packed.id-past-ring",
            id_past_ring,
            "buffer id = queue size"
        ),
        case!(
            "packed.chain-longer-than-ring",
            chain_longer_than_ring,
            "every descriptor of the ring says NEXT"
        ),
        case!(
            "packed.next-in-indirect",
            next_in_indirect,
            "NEXT inside an indirect table"
        ),
        case!(
            "packed.indirect-in-indirect",
            indirect_in_indirect,
            "an indirect table inside an indirect table"
        ),
        case!(
            "packed.indirect-in-chain",
            indirect_in_chain,
            "an indirect descriptor linked by NEXT"
        ),
        case!(
            "packed.wrong-lap",
            wrong_lap,
            "a chain continues into a descriptor of the next lap"
        ),
        case!(
            "packed.id-twice",
            id_twice,
            "two buffers in flight with one id"
        ),
        case!(
            "packed.base-past-ring",
            base_past_ring,
            "SET_VRING_BASE avail index 0x7ff0 on a small ring"
        ),
    ]
}
