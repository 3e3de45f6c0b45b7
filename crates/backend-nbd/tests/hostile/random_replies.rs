//! Seeded random replies: per seed, concurrent reads (into buffers between
//! canaries), writes and a flush, answered by a script that mixes correct
//! replies (fragmented, reordered) with random mutations. For every seed:
//! each request completes once, within 15 s, with `Ok(len)` or an errno >
//! 0; canaries and WRITE payloads stay intact; a read whose command only
//! got correct answers holds the disk's bytes; no thread panics. Seeds
//! 1..=`SEEDS` (+ `VBLK_NBD_FUZZ_SEEDS=N` more) per reply mode, ~0.1 s each
//! (debug); a seed fixes the batch and each reply (by cookie and attempt),
//! up to the connection threads' interleaving. Messages name the seed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use vblk_backend::{Backend, IoOp, IoRequest};
use vblk_backend_nbd::proto::*;

use crate::common::{double::*, iov};
use crate::{open, ALL, SIZE};

const SEEDS: u64 = 64;
const SLOT: u64 = SIZE / 16;
const CANARY: usize = 64;
const CANARY_BYTE: u8 = 0xC5;
const PER_SEED: Duration = Duration::from_secs(15);

struct Rng(u64); // splitmix64
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Up to `max - 1` random bytes.
    fn junk(&mut self, max: u64) -> Vec<u8> {
        (0..self.below(max)).map(|_| self.next() as u8).collect()
    }
}

/// The disk's initial bytes (reads never overlap writes in a batch, so
/// these stay what a correct read returns).
fn pattern(seed: u64, at: u64) -> u8 {
    (Rng(seed ^ (at >> 3).wrapping_mul(0xA24B_AED4_963E_E407)).next() >> ((at & 7) * 8)) as u8
}

/// What the script knows: each command by cookie (cmd, offset, length;
/// times answered), the cookies given anything but a correct answer, and
/// the mutations (bits 0-12), reorders (13), fragmented reads (14) sent.
#[derive(Default)]
struct State {
    seen: BTreeMap<u64, ((u16, u64, u32), u64)>,
    poisoned: BTreeSet<u64>,
    held: Option<Vec<u8>>,
    commands: usize,
    kinds: u32,
    structured: bool,
}

/// `[0, len)` in up to `most` pieces, in order.
fn cut(g: &mut Rng, len: u64, most: u64) -> Vec<(u64, u64)> {
    let mut cuts: Vec<u64> = (0..g.below(most)).map(|_| g.below(len)).collect();
    cuts.extend([0, len]);
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2).map(|w| (w[0], w[1])).collect()
}

/// A correct answer; reads with structured replies come in 1-4 chunks in
/// random order, the last with DONE or followed by a NONE chunk.
fn good(r: &Req, disk: &mut [u8], st: &mut State, g: &mut Rng) -> Vec<u8> {
    if !(st.structured && r.cmd == CMD_READ) {
        let Answer::Bytes(b) = correct(r, disk, st.structured) else {
            panic!()
        };
        return b;
    }
    let mut pieces = cut(g, r.len.into(), 4);
    st.kinds |= u32::from(pieces.len() > 1) << 14;
    let k = g.below(pieces.len() as u64) as usize;
    pieces.rotate_left(k);
    let none = g.below(4) == 0;
    let mut b = Vec::new();
    for (i, &(s, e)) in pieces.iter().enumerate() {
        let flags = u16::from(i + 1 == pieces.len() && !none) * REPLY_FLAG_DONE;
        let at = (r.offset + s) as usize..(r.offset + e) as usize;
        b.extend(offset_data(r.cookie, flags, r.offset + s, &disk[at]));
    }
    if none {
        b.extend(chunk(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE_NONE, &[]));
    }
    b
}

fn error_chunk(c: u64, errno: u32, msg_len: u16, msg: &[u8], len: Option<u32>) -> Vec<u8> {
    let mut p = errno.to_be_bytes().to_vec();
    p.extend_from_slice(&msg_len.to_be_bytes());
    p.extend_from_slice(msg);
    let len = len.unwrap_or(p.len() as u32);
    chunk_len(c, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, len, &p)
}

/// The script for one seed: mostly correct answers, some held back and
/// sent after the next one (reordered), the rest mutated. Every reply
/// writes well under 64 KiB.
fn answer(seed: u64, mutate_pct: u64, st: &mut State, r: &Req, disk: &mut [u8]) -> Answer {
    if st.seen.is_empty() {
        disk.copy_from_slice(&(0..SIZE).map(|a| pattern(seed, a)).collect::<Vec<_>>());
    }
    let structured = st.structured;
    let seen = st
        .seen
        .entry(r.cookie)
        .or_insert(((r.cmd, r.offset, r.len), 0));
    seen.1 += 1;
    let mut g = Rng(seed ^ r.cookie.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ (seen.1 << 48));
    let later = st.held.take().unwrap_or_default();
    let ok = good(r, disk, st, &mut g);
    let roll = g.below(100);
    if roll >= mutate_pct {
        // Held back while more commands are to come: the next releases it.
        if roll.is_multiple_of(5) && later.is_empty() && st.seen.len() < st.commands {
            st.kinds |= 1 << 13;
            st.held = Some(ok);
            return Answer::Bytes(vec![]);
        }
        return Answer::Bytes([ok, later].concat());
    }
    let k = g.below(13);
    st.kinds |= 1 << k;
    let was_poisoned = !st.poisoned.insert(r.cookie); // by another's mutation 2, say
    let (c, off, len, done) = (r.cookie, r.offset, r.len.clamp(1, 8192), REPLY_FLAG_DONE);
    let send = |b: Vec<u8>, close: bool| match close {
        true => Answer::BytesThenClose(b),
        false => Answer::Bytes([b, later.clone()].concat()),
    };
    match k {
        // Wrong magic.
        0 => {
            let mut b = ok;
            b[g.below(4) as usize] ^= 1 + g.below(255) as u8;
            send(b, false)
        }
        // A cookie never sent.
        1 => send(
            [simple(g.next() | 1 << 63, 0), g.junk(8192)].concat(),
            false,
        ),
        // A reply (junk data) for any command seen, then the right one.
        2 => {
            let k = g.below(st.seen.len() as u64) as usize;
            let (&o, &((cmd, ooff, olen), _)) = st.seen.iter().nth(k).unwrap();
            st.poisoned.insert(o);
            let junk = g.bytes(olen as usize);
            let b = match (structured, cmd) {
                (false, CMD_READ) => [simple(o, 0), junk].concat(),
                (true, CMD_READ) => offset_data(o, done, ooff, &junk),
                _ => simple(o, 0),
            };
            send([b, ok].concat(), false)
        }
        // Cut anywhere (header or payload), then hang up.
        3 => send(
            ok[..1 + g.below(ok.len() as u64 - 1) as usize].to_vec(),
            true,
        ),
        // An error with any errno (0 and huge ones too).
        4 => match g.pick(&[0, 1, 5, 12, 22, 28, 75, 95, 108, seed as u32, u32::MAX]) {
            e if structured && g.below(2) == 0 => send(error_chunk(c, e, 3, b"bad", None), false),
            // Error 0 on a READ says "data follows": none does.
            e => send(simple(c, e), e == 0 && r.cmd == CMD_READ),
        },
        // Data or a hole outside the request (before, after, wrapping).
        5 => {
            let (a, b) = (g.below(4096), g.below(len.into()));
            let at = g.pick(&[off.wrapping_sub(1 + a), off + 1 + b, u64::MAX - a % 16]);
            let hole = [at, u64::from(len + 1 + a as u32) << 32]
                .map(u64::to_be_bytes)
                .concat();
            let data = offset_data(c, done, at, &g.bytes(len as usize));
            let hole = chunk(c, done, REPLY_TYPE_OFFSET_HOLE, &hole[..12]);
            send(if g.below(2) == 0 { data } else { hole }, false)
        }
        // Overlapping chunks.
        6 => {
            let a = 1 + g.below(len.into());
            let s = g.below(a);
            let first = offset_data(c, 0, off, &g.bytes(a as usize));
            let second = offset_data(c, done, off + s, &g.bytes((u64::from(len) - s) as usize));
            send([first, second].concat(), false)
        }
        // A length field far beyond what follows (up to u32::MAX).
        7 => {
            let kind = g.pick(&[1, 2, REPLY_TYPE_ERROR, REPLY_TYPE_NONE]);
            let p = [off.to_be_bytes().to_vec(), g.junk(4096)].concat();
            let l = u32::MAX - g.below(1 << 20) as u32;
            send(chunk_len(c, done, kind, l, &p), g.below(2) == 0)
        }
        // An error chunk with a huge message (length consistent or not).
        8 => {
            let m = 4097 + g.below(65535 - 4097) as u16;
            let l = g.pick(&[None, Some(6 + u32::from(m))]);
            send(error_chunk(c, 5, m, &g.junk(64), l), true)
        }
        // No DONE: the next reply, a hang-up or the reply timeout ends it.
        9 => {
            let data = &disk[off as usize..(off + u64::from(r.len)) as usize];
            send(offset_data(c, 0, off, data), g.below(2) == 0)
        }
        // Unknown chunk types (errors and not).
        10 => match g.pick(&[3, 77, 0x7fff, 0x8003, 0xffff]) {
            k if k & 0x8000 != 0 => send(error_chunk(c, 5, 0, &[], None), false),
            k => send(chunk(c, done, k, &g.junk(64)), false),
        },
        // Garbage (never a magic: it starts with 0) after a correct reply;
        // the cookie stays poisoned if an earlier answer poisoned it.
        11 => {
            if !was_poisoned {
                st.poisoned.remove(&c);
            }
            send([ok, vec![0], g.junk(256)].concat(), false)
        }
        // Hang up.
        _ => Answer::Close,
    }
}

/// Panics on connection threads (the client's `vblk-nbd-*`, the double's
/// unnamed ones) would otherwise go unnoticed.
static THREAD_PANICS: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();

fn count_thread_panics() {
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().map(str::to_owned);
            let ours = name.is_none_or(|n| n.starts_with("vblk-nbd"));
            THREAD_PANICS.fetch_add(usize::from(ours), Ordering::SeqCst);
            prev(info)
        }));
    });
}

/// A request of the batch: op, offset, length, its buffers (each between
/// canaries), and a WRITE's payload.
type Planned = (IoOp, u64, u64, Vec<Vec<u8>>, Vec<u8>);

fn plan(g: &mut Rng, slot: u64) -> Planned {
    let len = 1 + g.below(8192);
    let offset = slot * SLOT + g.below(SLOT - len + 1);
    let (op, data) = match g.below(2) {
        0 => (IoOp::Write, g.bytes(len as usize)),
        _ => (IoOp::Read, vec![0x3C; len as usize]),
    };
    let canary = [CANARY_BYTE; CANARY];
    let seg = |(s, e)| [&canary[..], &data[s as usize..e as usize], &canary].concat();
    let segs = cut(g, len, 3).into_iter().map(seg).collect();
    (op, offset, len, segs, data)
}

/// One seed: (reads whose content was checked, requests Ok, requests
/// Err, the script's `kinds`).
fn run_seed(seed: u64, structured: bool) -> [usize; 4] {
    let mut g = Rng(seed);
    let n = 4 + g.below(13) as usize;
    let mutate_pct = g.pick(&[5, 15, 30, 50]);
    // Distinct 64 KiB slots (odd stride): reads never overlap writes.
    let (first, stride) = (g.below(16), 1 + 2 * g.below(8));
    let slot = |i: u64| (first + i * stride) % 16;
    let mut reqs: Vec<Planned> = (0..n as u64).map(|i| plan(&mut g, slot(i))).collect();
    reqs[g.below(n as u64) as usize] = (IoOp::Flush, 0, 0, vec![], vec![]);
    let mut st = State::default();
    (st.commands, st.structured) = (n, structured);
    let st = Arc::new(Mutex::new(st));
    let st2 = st.clone();
    let script: Script = Arc::new(move |r: &Req, disk: &mut Vec<u8>| {
        answer(seed, mutate_pct, &mut st2.lock().unwrap(), r, disk)
    });
    let d = Double::start(SIZE, ALL | TF_SEND_FUA, structured, script);
    let b = open(&d);
    let mut e = b.engine().unwrap();
    for (i, (op, offset, len, segs, _)) in reqs.iter_mut().enumerate() {
        let inner = |s: &mut Vec<u8>| {
            let l = s.len();
            iov(&mut s[CANARY..l - CANARY])
        };
        let iovecs = segs.iter_mut().map(inner).collect();
        let (op, offset, len, token, fua) = (*op, *offset, *len, i as u64, g.below(4) == 0);
        // SAFETY: the buffers live in `reqs`, untouched until every
        // request has been reaped (or leaked with the engine on a hang).
        unsafe {
            e.push(IoRequest {
                op,
                offset,
                len,
                iovecs,
                token,
                fua,
            })
        };
    }
    e.submit().unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    while out.len() < n && start.elapsed() < PER_SEED {
        let (want, left) = (n - out.len(), PER_SEED.saturating_sub(start.elapsed()));
        e.reap_timeout(&mut out, want, left).unwrap();
    }
    std::thread::sleep(Duration::from_millis(20)); // Late duplicates?
    e.reap_timeout(&mut out, 0, Duration::ZERO).unwrap();
    let per_token = |t| out.iter().filter(|c| c.token == t).count();
    let count: Vec<_> = (0..n as u64).map(per_token).collect();
    if count.iter().any(|&k| k != 1) || out.len() != n {
        // Dropping the engine would wait for the missing ones for ever.
        std::mem::forget((e, reqs));
        let t = start.elapsed();
        panic!("seed {seed}: completions per token {count:?} after {t:?}: each must be 1");
    }
    drop((e, b));

    let st = st.lock().unwrap();
    let (mut checked, mut oks) = (0, 0);
    for c in &out {
        let (op, offset, len, segs, data) = &reqs[c.token as usize];
        let what = format!("seed {seed}: {op:?} {offset}+{len} (token {})", c.token);
        let r = c.result;
        assert!(r.map_or_else(|e| e > 0, |l| l == *len), "{what}: {r:?}");
        oks += usize::from(c.result.is_ok());
        for s in segs {
            let mut outside = s[..CANARY].iter().chain(&s[s.len() - CANARY..]);
            assert!(outside.all(|&b| b == CANARY_BYTE), "{what}: canary hit");
        }
        let got: Vec<&[u8]> = segs.iter().map(|s| &s[CANARY..s.len() - CANARY]).collect();
        if *op == IoOp::Write {
            assert!(got.concat() == *data, "{what}: WRITE payload changed");
        }
        if *op != IoOp::Read || c.result.is_err() {
            continue;
        }
        let me = (CMD_READ, *offset, *len as u32);
        let cookies: Vec<_> = st
            .seen
            .iter()
            .filter(|e| e.1 .0 == me)
            .map(|e| e.0)
            .collect();
        assert!(!cookies.is_empty(), "{what}: Ok, never sent");
        if cookies.iter().any(|k| st.poisoned.contains(k)) {
            continue; // Some answer was not correct: its content is anything.
        }
        let want: Vec<u8> = (*offset..offset + len).map(|a| pattern(seed, a)).collect();
        assert!(got.concat() == want, "{what}: wrong bytes, correct replies");
        checked += 1;
    }
    [checked, oks, n - oks, st.kinds as usize]
}

fn run(structured: bool) {
    count_thread_panics();
    let t = Instant::now();
    let mut total = [0usize; 4];
    let extra = std::env::var("VBLK_NBD_FUZZ_SEEDS").map_or(0, |s| s.parse().expect("a number"));
    for seed in 1..=SEEDS + extra {
        let before = THREAD_PANICS.load(Ordering::SeqCst);
        let r = run_seed(seed, structured);
        (0..3).for_each(|i| total[i] += r[i]);
        total[3] |= r[3];
        let panics = THREAD_PANICS.load(Ordering::SeqCst) - before;
        assert_eq!(panics, 0, "seed {seed}: a connection thread panicked");
    }
    let [checked, oks, errs, kinds] = total;
    let t = t.elapsed();
    eprintln!("{oks} Ok, {errs} Err, {checked} reads content-checked, kinds {kinds:#x}, {t:?}");
    assert!(checked > 0, "no read had its content checked");
    // Every mutation, reordering, and (structured) fragmented reads ran.
    let all = if structured { 0x7fff } else { 0x3fff };
    assert_eq!(kinds, all, "not every kind of reply was tried: {kinds:#x}");
}

#[test]
fn simple_replies_keep_the_engine_contract() {
    run(false);
}

#[test]
fn structured_replies_keep_the_engine_contract() {
    run(true);
}
