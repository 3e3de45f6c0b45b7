//! Asking the back end: whether it still listens, the integrity probe
//! after each case, what it offers (learnt once) and whether that covers
//! what a case needs.

use std::path::Path;
use std::time::{Duration, Instant};

use vblk_testkit::blk::{Request, S_OK};
use vblk_testkit::vhost_user::{Driver, Options};

use crate::env::{Env, Info, Need};

/// Whether anything accepts connections on `sock` (within `limit`).
pub fn listening(sock: &Path, limit: Duration) -> bool {
    vblk_testkit::vhost_user::connect_timeout(sock, limit).is_ok()
}

/// Write a pattern, FLUSH, read it back and compare, on a fresh
/// connection. `n` varies the pattern and the place.
pub fn probe(env: &Env, n: usize) -> Result<(), String> {
    // The previous connection may still be closing: retry the connect a little.
    let t = Instant::now();
    let mut d = loop {
        match env.conn() {
            Ok(d) => break d,
            Err(e) if t.elapsed() > env.opts.timeout => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let span = (env.sectors() / 8).saturating_sub(1).max(1);
    let sector = 8 * ((n as u64 * 37 + 3) % span);
    let pattern: Vec<u8> = (0..4096usize)
        .map(|i| (i as u8).wrapping_mul(7) ^ (n as u8).wrapping_mul(31) ^ (i >> 8) as u8)
        .collect();
    let w = d.run(&Request::write(sector, &pattern))?;
    if w.status != S_OK {
        return Err(format!("write status {}", w.status));
    }
    if d.acked & vblk_testkit::blk::features::FLUSH != 0 {
        let f = d.run(&Request::flush())?;
        if f.status != S_OK {
            return Err(format!("flush status {}", f.status));
        }
    }
    let r = d.run(&Request::read(sector, 4096))?;
    if r.status != S_OK {
        return Err(format!("read status {}", r.status));
    }
    if r.data != pattern {
        return Err("read back differs from what was written".into());
    }
    Ok(())
}

/// Learn what the back end offers.
pub fn discover(sock: &Path, opts: &Options, size: Option<u64>) -> Result<Info, String> {
    let mut d = Driver::connect(sock, opts.clone())
        .map_err(|e| format!("{}: cannot set up a connection: {e}", sock.display()))?;
    let capacity = d
        .capacity()
        .or(size)
        .ok_or("the back end has no config space (CONFIG): give --size")?;
    Ok(Info {
        features: d.offered,
        protocol: d.offered_protocol,
        capacity,
    })
}

pub(crate) fn supported(info: &Info, need: Need) -> Result<(), String> {
    match need {
        Need::Nothing => Ok(()),
        Need::Protocol(p) if info.protocol.contains(p) => Ok(()),
        Need::Protocol(p) => Err(format!("no {p:?}")),
        Need::Feature(f) if info.features & f != 0 => Ok(()),
        Need::Feature(f) => Err(format!("no feature bit {}", f.trailing_zeros())),
    }
}
