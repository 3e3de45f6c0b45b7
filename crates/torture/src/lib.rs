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
//!
//! One job a file: `env` (the options, a case and its context), `probe`
//! (listening, the integrity probe, discovery), `run` (the catalogue, the
//! selection, the run), `report` (table, JSON) and `cli` (the command
//! line); the cases themselves are in `cases/`, `packed` and `migration`.

mod cases;
mod cli;
mod env;
mod migration;
mod packed;
mod probe;
mod report;
mod run;

pub use cli::{cli, main, Args};
pub use env::{Case, Config, Env, Info, Need, Outcome};
pub use probe::{discover, listening, probe};
pub use report::{header, render, row, summary, summary_line, to_json};
pub use run::{catalogue, run};

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::run::selected;

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
