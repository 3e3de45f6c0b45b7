//! Reporting the outcomes: the counts, the table (header, rows, summary
//! line) and the JSON.

use std::path::Path;

use serde_json::json;

use crate::env::Outcome;

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
