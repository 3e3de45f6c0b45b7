//! `vblk torture` against a `vblk serve` it starts: every hostile case of
//! the catalogue must leave the daemon alive and serving (the integrity
//! probe after each case reads back what it wrote).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{vblk, Daemon};

/// `vblk serve --size 64M --image <dir>/d.img --vhost-user <dir>/vblk.sock`.
fn serve(dir: &Path) -> Daemon {
    Daemon::vhost_user(dir.join("d.img"))
        .dir(dir)
        .args(["--size", "64M"])
        .start()
}

fn torture(sock: &Path, extra: &[&str]) -> (bool, serde_json::Value) {
    let out = vblk()
        .args(["torture", "--json", "--vhost-user"])
        .arg(sock)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v)
}

#[test]
fn every_torture_case_passes_against_vblk() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = serve(dir.path());
    let sock = d.sock.clone();
    let (ok, v) = torture(&sock, &[]);
    let cases = v["cases"].as_array().unwrap();
    let failed: Vec<_> = cases.iter().filter(|c| c["verdict"] != "PASS").collect();
    assert!(failed.is_empty(), "cases not passed: {failed:#?}");
    assert!(ok, "non-zero exit with every case passed");
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    assert_eq!(v["summary"]["failed"], 0);
    // The catalogue reached every group.
    for group in [
        "proto.",
        "mem.",
        "memreg.",
        "vring.",
        "inflight.",
        "ring.",
        "req.",
        "live.",
        "flood.",
    ] {
        assert!(
            cases
                .iter()
                .any(|c| c["name"].as_str().unwrap().starts_with(group)),
            "no {group} case"
        );
    }
    assert!(d.alive(), "the daemon died");
}

/// The tool itself: a daemon that is gone fails the cases (and the exit
/// code), a pattern selects cases, and nothing hangs.
#[test]
fn torture_fails_when_the_daemon_is_gone_and_selects_cases() {
    let dir = tempfile::tempdir().unwrap();
    let d = serve(dir.path());
    let sock = d.sock.clone();
    let (ok, v) = torture(&sock, &["--cases", "req.bad-type,ring.desc-loop"]);
    assert!(ok);
    let names: Vec<_> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["ring.desc-loop", "req.bad-type"]);
    drop(d);
    let t = Instant::now();
    let out = vblk()
        .args(["torture", "--timeout-ms", "500", "--vhost-user"])
        .arg(&sock)
        .output()
        .unwrap();
    assert!(!out.status.success(), "torture of no daemon succeeded");
    assert!(t.elapsed() < Duration::from_secs(30));
}
