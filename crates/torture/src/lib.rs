//! `vblk torture --vhost-user SOCK`: a catalogue of hostile vhost-user
//! messages and hostile rings, run one by one against any vhost-user-blk
//! back end (vblk, qemu-storage-daemon, SPDK, ...). After each case an
//! integrity probe on a fresh connection writes a pattern, flushes, reads
//! it back and compares. A case passes when the daemon is still there and
//! the probe reads back what it wrote.
//!
//! Cases the back end cannot be asked (a protocol feature it does not
//! offer) are skipped. Every wait has a deadline, so a daemon that hangs or
//! dies fails cases instead of hanging the tool.

mod cases;
mod migration;
mod packed;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use vblk_testkit::blk::{Request, S_OK};
use vblk_testkit::vhost_user::{Driver, Options};
use vhost::vhost_user::message::VhostUserProtocolFeatures as P;

/// Command-line options of `vblk torture`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The back end's vhost-user socket.
    pub sock: PathBuf,
    /// Disk size in bytes when the back end does not tell (no CONFIG).
    pub size: Option<u64>,
    /// Run only the cases whose name contains one of these (comma-separated).
    pub cases: Option<String>,
    /// JSON instead of a table.
    pub json: bool,
    /// List the cases and exit.
    pub list: bool,
    /// Deadline of every single wait.
    pub timeout: Duration,
}

/// What a case needs from the back end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Nothing,
    Protocol(P),
    Feature(u64),
}

/// One hostile case.
pub struct Case {
    pub name: &'static str,
    pub about: &'static str,
    pub need: Need,
    pub run: fn(&Env) -> String,
}

/// What the back end offers, learnt once at the start.
#[derive(Debug, Clone)]
pub struct Info {
    pub features: u64,
    pub protocol: P,
    pub capacity: u64,
}

/// A case's context: where to connect, how, what the back end offers.
pub struct Env {
    pub sock: PathBuf,
    pub opts: Options,
    pub info: Info,
}

impl Env {
    /// A fully set up connection (memory table, ring 0 running).
    pub fn conn(&self) -> Result<Driver, String> {
        Driver::connect(&self.sock, self.opts.clone())
    }

    /// A negotiated connection without memory table or ring.
    pub fn bare(&self) -> Result<Driver, String> {
        Driver::negotiate(&self.sock, self.opts.clone())
    }

    /// Sectors of the disk.
    pub fn sectors(&self) -> u64 {
        self.info.capacity / 512
    }
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub verdict: &'static str,
    /// What the back end did.
    pub did: String,
    /// The integrity probe's result.
    pub probe: String,
    pub ms: u128,
}

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

fn supported(info: &Info, need: Need) -> Result<(), String> {
    match need {
        Need::Nothing => Ok(()),
        Need::Protocol(p) if info.protocol.contains(p) => Ok(()),
        Need::Protocol(p) => Err(format!("no {p:?}")),
        Need::Feature(f) if info.features & f != 0 => Ok(()),
        Need::Feature(f) => Err(format!("no feature bit {}", f.trailing_zeros())),
    }
}

/// Every case, in order.
pub fn catalogue() -> Vec<Case> {
    let mut all = cases::all();
    all.extend(packed::all());
    all.extend(migration::all());
    all
}

fn selected(c: &Case, pattern: &Option<String>) -> bool {
    match pattern {
        None => true,
        Some(p) => p.split(',').any(|w| !w.is_empty() && c.name.contains(w)),
    }
}

/// Run the selected cases; returns the outcomes.
/// `each` sees every outcome as soon as it is known.
pub fn run(cfg: &Config, mut each: impl FnMut(&Outcome)) -> Result<Vec<Outcome>, String> {
    let opts = Options {
        timeout: cfg.timeout,
        ..Options::default()
    };
    let info = discover(&cfg.sock, &opts, cfg.size)?;
    let env = Env {
        sock: cfg.sock.clone(),
        opts,
        info,
    };
    let mut out = Vec::new();
    // Once the daemon is gone, the remaining cases are not run (failed).
    let mut gone = false;
    for (n, c) in catalogue()
        .iter()
        .filter(|c| selected(c, &cfg.cases))
        .enumerate()
    {
        let t = Instant::now();
        if gone {
            let o = Outcome {
                name: c.name.into(),
                verdict: "FAIL",
                did: "not run: the daemon is gone or accepts no connection".into(),
                probe: "no daemon".into(),
                ms: 0,
            };
            each(&o);
            out.push(o);
            continue;
        }
        if let Err(why) = supported(&env.info, c.need) {
            let o = Outcome {
                name: c.name.into(),
                verdict: "SKIP",
                did: format!("not offered: {why}"),
                probe: "-".into(),
                ms: 0,
            };
            each(&o);
            out.push(o);
            continue;
        }
        let did = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (c.run)(&env)))
            .unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                format!("torture tool error: {msg}")
            });
        let (verdict, did, probe) = if !listening(&cfg.sock, cfg.timeout) {
            gone = true;
            (
                "FAIL",
                format!("{did}; daemon gone or not accepting"),
                "no daemon".to_string(),
            )
        } else {
            match probe(&env, n) {
                Ok(()) => ("PASS", did, "ok".to_string()),
                Err(e) => ("FAIL", did, e),
            }
        };
        let o = Outcome {
            name: c.name.into(),
            verdict,
            did,
            probe,
            ms: t.elapsed().as_millis(),
        };
        each(&o);
        out.push(o);
    }
    Ok(out)
}

/// The counts: (cases, passed, failed, skipped).
pub fn summary(out: &[Outcome]) -> (usize, usize, usize, usize) {
    let count = |v| out.iter().filter(|o| o.verdict == v).count();
    (out.len(), count("PASS"), count("FAIL"), count("SKIP"))
}

/// Width of the case column.
const NAME_W: usize = 38;

/// The table's header line.
pub fn header() -> String {
    format!(
        "{:<NAME_W$}  {:<4}  {:<24}  what the backend did\n",
        "case", "", "probe"
    )
}

/// One table row.
pub fn row(o: &Outcome) -> String {
    format!(
        "{:<NAME_W$}  {:<4}  {:<24}  {}\n",
        o.name, o.verdict, o.probe, o.did
    )
}

/// The summary line.
pub fn summary_line(out: &[Outcome]) -> String {
    let (n, p, f, k) = summary(out);
    format!("torture: {n} cases, {p} passed, {f} failed, {k} skipped\n")
}

/// The whole table and the summary line.
pub fn render(out: &[Outcome]) -> String {
    let mut s = header();
    for o in out {
        s += &row(o);
    }
    s + &summary_line(out)
}

pub fn to_json(sock: &Path, out: &[Outcome]) -> serde_json::Value {
    let (n, p, f, k) = summary(out);
    json!({
        "socket": sock.display().to_string(),
        "cases": out.iter().map(|o| json!({
            "name": o.name, "verdict": o.verdict, "backend": o.did,
            "probe": o.probe, "ms": o.ms,
        })).collect::<Vec<_>>(),
        "summary": {"cases": n, "passed": p, "failed": f, "skipped": k},
    })
}

/// `vblk torture`: prints the table (or JSON); Err if any case failed.
pub fn main(cfg: Config) -> Result<(), String> {
    if cfg.list {
        for c in catalogue().iter().filter(|c| selected(c, &cfg.cases)) {
            println!("{:<40} {}", c.name, c.about);
        }
        return Ok(());
    }
    use std::io::Write;
    if !cfg.json {
        print!("{}", header());
    }
    let out = run(&cfg, |o| {
        if !cfg.json {
            print!("{}", row(o));
            let _ = std::io::stdout().flush();
        }
    })?;
    if cfg.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&cfg.sock, &out)).unwrap_or_default()
        );
    } else {
        print!("{}", summary_line(&out));
    }
    let (_, _, failed, _) = summary(&out);
    if failed > 0 {
        return Err(format!("torture: {failed} case(s) failed"));
    }
    Ok(())
}

/// `vblk torture`'s command line.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The vhost-user-blk back end's socket (vblk, qemu-storage-daemon, SPDK, ...).
    #[arg(long, value_name = "SOCKET")]
    pub vhost_user: PathBuf,
    /// Disk size in bytes, for back ends without a config space (default: from GET_CONFIG).
    #[arg(long, value_name = "BYTES")]
    pub size: Option<u64>,
    /// Run only the cases whose name contains one of these comma-separated words.
    #[arg(long, value_name = "PATTERN")]
    pub cases: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// List the cases and exit.
    #[arg(long)]
    pub list: bool,
    /// Deadline of each wait, in milliseconds.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub timeout_ms: u64,
}

/// `vblk torture ARGS`.
pub fn cli(a: Args) -> Result<(), String> {
    main(Config {
        sock: a.vhost_user,
        size: a.size,
        cases: a.cases,
        json: a.json,
        list: a.list,
        timeout: Duration::from_millis(a.timeout_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_has_unique_names_in_every_group() {
        let all = catalogue();
        assert!(all.len() >= 40);
        let mut names: Vec<_> = all.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "duplicate case names");
        for g in [
            "proto.",
            "mem.",
            "memreg.",
            "vring.",
            "inflight.",
            "config.",
            "ring.",
            "req.",
            "live.",
            "flood.",
        ] {
            assert!(names.iter().any(|n| n.starts_with(g)), "no {g} case");
        }
    }

    #[test]
    fn selection_and_summary() {
        let pick = Some("ring.desc-loop,req.".to_string());
        let n = catalogue().iter().filter(|c| selected(c, &pick)).count();
        assert!(n > 5);
        assert!(!catalogue()
            .iter()
            .filter(|c| selected(c, &pick))
            .any(|c| c.name.starts_with("mem.")));
        let o = |v| Outcome {
            name: "x".into(),
            verdict: v,
            did: String::new(),
            probe: String::new(),
            ms: 0,
        };
        let out = [o("PASS"), o("FAIL"), o("SKIP"), o("PASS")];
        assert_eq!(summary(&out), (4, 2, 1, 1));
        assert!(render(&out).ends_with("torture: 4 cases, 2 passed, 1 failed, 1 skipped\n"));
        assert_eq!(to_json(Path::new("/s"), &out)["summary"]["failed"], 1);
    }
}
