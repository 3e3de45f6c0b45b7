//! Tests of the report: spread, paired ratios, the table, the markdown
//! section and the JSON; `row` and `point` build rows for the other
//! modules' tests.

use super::*;
use crate::daemons::Daemon;
use crate::measure::Figures;
use crate::options::{Backend, Point};

/// A row with one run per entry of `vblk` / `qsd` / `qsd_io` (IOPS);
/// CPU per I/O is one core's worth, p50 is 1e6 / IOPS µs.
pub fn row(p: Point, vblk: &[f64], qsd: &[f64], qsd_io: &[f64]) -> Row {
    let f = |iops: &f64| Figures {
        iops: *iops,
        cpu_us_per_io: 1e6 / iops,
        p50_us: 1e6 / iops,
        p99_us: 2e6 / iops,
        ..Default::default()
    };
    Row {
        point: p,
        runs: [
            vblk.iter().map(f).collect(),
            qsd.iter().map(f).collect(),
            qsd_io.iter().map(f).collect(),
        ],
    }
}

pub fn point(backend: Backend, poll: bool, write: bool, qd: usize) -> Point {
    Point {
        backend,
        queues: 1,
        poll,
        write,
        qd,
    }
}

#[test]
fn spread_median_and_range() {
    let s = spread(&[3.0, 1.0, 2.0]);
    assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
    assert_eq!(spread(&[1.0, 4.0]).median, 2.5);
    assert_eq!(spread(&[]).n, 0);
    assert_eq!(spread(&[796.4]).show(0), "796");
    assert_eq!(spread(&[1.0, 1.5, 1.25]).show(2), "1.25 (1.00–1.50)");
}

#[test]
fn ratios_are_paired_per_run() {
    // Run 1: 200 vs 100 (2×); run 2: 100 vs 100 (1×); run 3: 300 vs 200.
    let r = row(
        point(Backend::Null, false, false, 32),
        &[200.0, 100.0, 300.0],
        &[100.0, 100.0, 200.0],
        &[400.0, 400.0, 400.0],
    );
    let s = r.ratio(Daemon::Qsd, IOPS);
    assert_eq!((s.median, s.min, s.max), (1.5, 1.0, 2.0));
    assert_eq!(r.iops_ratio(Daemon::QsdIothread), 0.5);
    assert!((r.cpu_ratio(Daemon::Qsd) - 1.0 / 1.5).abs() < 1e-9);
}

#[test]
fn table_has_every_column() {
    let rows = vec![
        row(
            point(Backend::Null, false, false, 1),
            &[200e3],
            &[100e3],
            &[50e3],
        ),
        row(
            point(Backend::Direct, false, true, 32),
            &[1e3, 2e3],
            &[1e3, 1e3],
            &[1e3, 1e3],
        ),
    ];
    let t = table(&rows);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 4);
    let cols = lines[0].matches('|').count();
    assert!(lines.iter().all(|l| l.matches('|').count() == cols), "{t}");
    assert!(
        lines[2].contains("| 200 | 100 | 50 | **2.00** | **4.00** |"),
        "{t}"
    );
    assert!(lines[3].contains("**1.50 (1.00–2.00)**"), "{t}");
    assert!(lines[3].starts_with("| disk file, O_DIRECT | 1 | event | randwrite | 32 |"));
}

#[test]
fn disturbed_rows_are_marked() {
    let mut r = row(
        point(Backend::Null, false, false, 1),
        &[1.0],
        &[1.0],
        &[1.0],
    );
    assert!(!format_row(&r).contains('⚠'));
    r.runs[Daemon::Qsd.index()][0].other_load = 0.5;
    assert!(format_row(&r).starts_with("| null | 1 | event | randread | 1 ⚠ |"));
}

#[test]
fn failures_are_flagged() {
    let mut r = row(
        point(Backend::Null, false, false, 1),
        &[1.0],
        &[1.0],
        &[1.0],
    );
    r.runs[Daemon::QsdIothread.index()][0].failed = 3;
    assert!(format_row(&r).contains("(3 FAILED on qsd+iothread)"));
}

#[test]
fn markdown_has_command_and_targets() {
    let rep = Report {
        rows: vec![row(
            point(Backend::Null, false, false, 32),
            &[50.0],
            &[100.0],
            &[100.0],
        )],
        invocation: "vblk bench --quick".into(),
        runs: 1,
        commands: vec![(
            "null".into(),
            ["vblk serve".into(), "q1".into(), "q2".into()],
        )],
        ..Default::default()
    };
    let m = rep.markdown();
    assert!(m.contains("```sh\nvblk bench --quick\n```"), "{m}");
    assert!(m.contains("### Targets") && m.contains("vblk serve"), "{m}");
    assert!(
        m.contains("Collapse check (vblk under 0.5× of qsd's IOPS): none"),
        "{m}"
    );
    assert_eq!(rep.json()["rows"][0]["qsd+iothread"][0]["iops"], 100.0);
}
