//! The targets, evaluated at every measured point against both
//! references, and the collapse check CI fails on.

use std::fmt::Write as _;

use crate::daemons::Daemon;
use crate::options::{Backend, Point};
use crate::report::{Get, Row, CPU, IOPS, P50};

/// What a target compares: vblk / reference of `get` (median over the
/// runs' paired ratios) must be at least or at most `bound`.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub name: &'static str,
    pub applies: fn(&Point) -> bool,
    pub get: Get,
    pub at_least: bool,
    pub bound: f64,
}

fn null_event_1q(p: &Point) -> bool {
    p.backend == Backend::Null && p.queues == 1 && !p.poll
}

fn disk_event_1q(p: &Point) -> bool {
    p.backend == Backend::Direct && p.queues == 1 && !p.poll
}

/// The targets of issue 8.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "null, 1 queue, event, QD32/128: IOPS ≥ 1.3×",
            applies: |p| null_event_1q(p) && p.qd >= 32,
            get: IOPS,
            at_least: true,
            bound: 1.3,
        },
        Target {
            name: "null, 1 queue, event, QD32/128: CPU/IO ≤ 0.5×",
            applies: |p| null_event_1q(p) && p.qd >= 32,
            get: CPU,
            at_least: false,
            bound: 0.5,
        },
        Target {
            name: "null, 1 queue, event, QD1: p50 latency ≤ 1.0×",
            applies: |p| null_event_1q(p) && p.qd == 1,
            get: P50,
            at_least: false,
            bound: 1.0,
        },
        Target {
            name: "disk file O_DIRECT, event: IOPS ≥ 1.0×",
            applies: disk_event_1q,
            get: IOPS,
            at_least: true,
            bound: 1.0,
        },
        Target {
            name: "disk file O_DIRECT, event: CPU/IO ≤ 0.6×",
            applies: disk_event_1q,
            get: CPU,
            at_least: false,
            bound: 0.6,
        },
    ]
}

/// One check: a target at a point against a reference.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub target: &'static str,
    pub point: Point,
    pub reference: Daemon,
    pub ratio: f64,
    pub met: bool,
}

pub fn evaluate(rows: &[Row]) -> Vec<Verdict> {
    let mut v = vec![];
    for t in targets() {
        for r in rows.iter().filter(|r| (t.applies)(&r.point)) {
            for reference in Daemon::REFERENCES {
                let ratio = r.ratio(reference, t.get).median;
                let met = if t.at_least {
                    ratio >= t.bound
                } else {
                    ratio <= t.bound
                };
                v.push(Verdict {
                    target: t.name,
                    point: r.point,
                    reference,
                    ratio,
                    met,
                });
            }
        }
    }
    v
}

/// `ratio` with two decimals, or three where two would print the bound
/// itself for a value on the other side of it.
fn show_ratio(ratio: f64, bound: f64) -> String {
    let two = format!("{ratio:.2}");
    if ratio != bound && two == format!("{bound:.2}") {
        format!("{ratio:.3}")
    } else {
        two
    }
}

/// The targets table: one line per (target, point), a column per
/// reference with the ratio and met / not met; targets without a measured
/// point are listed as such.
pub fn render(rows: &[Row]) -> String {
    let verdicts = evaluate(rows);
    let mut s = String::from("| target | point | vs qsd | vs qsd+iothread |\n|---|---|---|---|\n");
    for t in targets() {
        let mine: Vec<&Verdict> = verdicts.iter().filter(|v| v.target == t.name).collect();
        if mine.is_empty() {
            let _ = writeln!(s, "| {} | not measured in this run | - | - |", t.name);
        }
        for pair in mine.chunks(Daemon::REFERENCES.len()) {
            let cell = |v: &Verdict| {
                format!(
                    "{}× {}",
                    show_ratio(v.ratio, t.bound),
                    if v.met { "met" } else { "**not met**" }
                )
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                t.name,
                pair[0].point.short(),
                cell(pair[0]),
                pair.get(1).map_or("-".into(), |v| cell(v))
            );
        }
    }
    for reference in Daemon::REFERENCES {
        let of: Vec<&Verdict> = verdicts
            .iter()
            .filter(|v| v.reference == reference)
            .collect();
        let _ = writeln!(
            s,
            "\nAgainst {}: {} of {} checks met.",
            reference.name(),
            of.iter().filter(|v| v.met).count(),
            of.len()
        );
    }
    s
}

/// The reference the collapse check uses: qemu-storage-daemon's main loop.
/// It does not poll, so its figures are steady from run to run on a shared
/// machine; qsd+iothread busy-polls (adaptively) on the same CPU as
/// everything else the machine runs, and a check against it would fail on
/// other people's load rather than on vblk.
pub const COLLAPSE_REFERENCE: Daemon = Daemon::Qsd;

fn collapsed(r: &Row) -> bool {
    r.iops_ratio(COLLAPSE_REFERENCE) < 0.5
}

/// The points where vblk fell under half of [`COLLAPSE_REFERENCE`]'s IOPS
/// (the median of the per-run ratios).
pub fn collapsed_points(rows: &[Row]) -> Vec<Point> {
    rows.iter()
        .filter(|r| collapsed(r))
        .map(|r| r.point)
        .collect()
}

/// The collapses of `again` (a re-measurement of [`collapsed_points`] with
/// fresh daemons) at points that also collapsed in `first`: what CI fails
/// on, so that one disturbed measurement on a shared machine does not.
pub fn confirmed_collapses(first: &[Row], again: &[Row]) -> Vec<String> {
    let before = collapsed_points(first);
    let rows: Vec<Row> = again
        .iter()
        .filter(|r| before.contains(&r.point))
        .cloned()
        .collect();
    collapses(&rows)
}

/// Where vblk fell under half of [`COLLAPSE_REFERENCE`]'s IOPS, described.
pub fn collapses(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .filter(|r| collapsed(r))
        .map(|r| {
            format!(
                "{}: vblk {:.0} vs {} {:.0} IOPS ({:.2}×)",
                r.point.label(),
                r.stat(Daemon::Vblk, IOPS).median,
                COLLAPSE_REFERENCE.name(),
                r.stat(COLLAPSE_REFERENCE, IOPS).median,
                r.iops_ratio(COLLAPSE_REFERENCE)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{point, row};

    #[test]
    fn collapse_only_below_half_of_main_loop_qsd() {
        let p = point(Backend::Null, false, false, 32);
        // qsd+iothread far ahead: not a collapse (it is not the reference).
        assert!(collapses(&[row(p, &[51.0], &[100.0], &[1000.0])]).is_empty());
        let c = collapses(&[row(p, &[49.0], &[100.0], &[10.0])]);
        assert_eq!(c.len(), 1);
        assert!(c[0].contains("vblk 49 vs qsd 100"), "{c:?}");
        // The median run decides: one bad run out of three is not a collapse.
        assert!(collapses(&[row(p, &[10.0, 90.0, 95.0], &[100.0; 3], &[100.0; 3])]).is_empty());
        assert_eq!(
            collapses(&[row(p, &[10.0, 20.0, 95.0], &[100.0; 3], &[100.0; 3])]).len(),
            1
        );
    }

    #[test]
    fn a_collapse_must_repeat() {
        let p = point(Backend::Null, false, false, 32);
        let q = point(Backend::Null, false, false, 1);
        let first = [
            row(p, &[10.0], &[100.0], &[100.0]),
            row(q, &[10.0], &[100.0], &[100.0]),
        ];
        assert_eq!(collapsed_points(&first), vec![p, q]);
        // p recovered on the re-measurement, q did not.
        let again = [
            row(p, &[90.0], &[100.0], &[100.0]),
            row(q, &[40.0], &[100.0], &[100.0]),
        ];
        let c = confirmed_collapses(&first, &again);
        assert_eq!(c.len(), 1);
        assert!(c[0].contains("randread | 1:"), "{c:?}");
        // A point that was fine at first is not a confirmed collapse.
        assert!(confirmed_collapses(&first[..1], &again[1..]).is_empty());
    }

    #[test]
    fn ratios_at_the_bound_are_not_rounded_onto_it() {
        assert_eq!(show_ratio(0.998, 1.0), "0.998");
        assert_eq!(show_ratio(1.0, 1.0), "1.00");
        assert_eq!(show_ratio(1.234, 1.0), "1.23");
    }

    #[test]
    fn targets_against_both_references() {
        let rows = vec![
            // 1.5× qsd, 1.2× qsd+iothread in IOPS; CPU 0.67× / 0.83×.
            row(
                point(Backend::Null, false, false, 32),
                &[150.0],
                &[100.0],
                &[125.0],
            ),
            // QD1: vblk's p50 is lower than qsd's (faster), higher than qsd+iothread's.
            row(
                point(Backend::Null, false, false, 1),
                &[100.0],
                &[90.0],
                &[110.0],
            ),
            // Disk: 1.0× exactly is met; CPU 1.0× is not.
            row(
                point(Backend::Direct, false, true, 128),
                &[100.0],
                &[100.0],
                &[50.0],
            ),
            // Polling and 2-queue rows are not under any target.
            row(
                point(Backend::Null, true, false, 32),
                &[1.0],
                &[100.0],
                &[100.0],
            ),
        ];
        let v = evaluate(&rows);
        let find = |name: &str, qd: usize, d: Daemon| {
            v.iter()
                .find(|x| x.target.starts_with(name) && x.point.qd == qd && x.reference == d)
                .unwrap_or_else(|| panic!("{name} {qd} {d:?} in {v:?}"))
                .met
        };
        let iops = "null, 1 queue, event, QD32/128: IOPS";
        let cpu = "null, 1 queue, event, QD32/128: CPU";
        let lat = "null, 1 queue, event, QD1";
        assert!(find(iops, 32, Daemon::Qsd));
        assert!(!find(iops, 32, Daemon::QsdIothread));
        assert!(!find(cpu, 32, Daemon::Qsd));
        assert!(find(lat, 1, Daemon::Qsd));
        assert!(!find(lat, 1, Daemon::QsdIothread));
        assert!(find("disk file O_DIRECT, event: IOPS", 128, Daemon::Qsd));
        assert!(!find("disk file O_DIRECT, event: CPU", 128, Daemon::Qsd));
        // 0.5× of qsd+iothread (which did half the IOPS on one core's worth of CPU).
        assert!(find(
            "disk file O_DIRECT, event: CPU",
            128,
            Daemon::QsdIothread
        ));
        assert!(v.iter().all(|x| !x.point.poll));
        // 2 points × 2 refs for QD32 (IOPS, CPU), QD1 latency, disk IOPS + CPU.
        assert_eq!(v.len(), 10);
        let t = render(&rows);
        assert!(t.contains("1.50× met | 1.20× **not met**"), "{t}");
        // Every line has the table's four columns.
        let lines: Vec<&str> = t.lines().take_while(|l| !l.is_empty()).collect();
        assert!(lines.iter().all(|l| l.matches('|').count() == 5), "{t}");
        assert!(t.contains("| randwrite QD128 |"), "{t}");
        assert!(t.contains("Against qsd: 3 of 5 checks met."), "{t}");
    }

    #[test]
    fn unmeasured_targets_are_listed() {
        let t = render(&[]);
        assert_eq!(t.matches("not measured").count(), targets().len(), "{t}");
    }
}
