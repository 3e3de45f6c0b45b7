//! Running: the whole catalogue in order, the selection by name, and the
//! loop that runs each selected case and probes after it.

use std::time::Instant;

use vblk_testkit::vhost_user::Options;

use crate::env::{Case, Config, Env, Outcome};
use crate::probe::{discover, listening, probe, supported};
use crate::{cases, migration, packed};

/// Every case, in order.
pub fn catalogue() -> Vec<Case> {
    let mut all = cases::all();
    all.extend(packed::all());
    all.extend(migration::all());
    all
}

pub(crate) fn selected(c: &Case, pattern: &Option<String>) -> bool {
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
