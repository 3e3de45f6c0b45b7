//! The results table: one markdown line per point, every daemon's figures
//! and the ratios side by side.

use std::fmt::Write as _;

use super::row::{Row, CPU, IOPS, KIOPS, P50, P99};
use super::spread::spread;
use crate::daemons::Daemon;
use crate::measure::Figures;

const HEADER: &str = "| backend | queues | completion | workload | QD \
| vblk kIOPS | qsd kIOPS | qsd+iothread kIOPS | IOPS ×qsd | IOPS ×qsd+iothread \
| vblk p50 / p99 µs | qsd p50 / p99 µs | qsd+iothread p50 / p99 µs \
| vblk CPU µs/IO | qsd CPU µs/IO | qsd+iothread CPU µs/IO | CPU ×qsd | CPU ×qsd+iothread \
| client CPU % (vblk run) | vblk kicks/IO | vblk irqs/IO |";

/// One table line.
pub fn format_row(r: &Row) -> String {
    let mut s = format!("| {}", r.point.label());
    if r.disturbed() {
        s.push_str(" ⚠");
    }
    for d in Daemon::ALL {
        let n = r.failed(d);
        if n > 0 {
            let _ = write!(s, " ({} FAILED on {})", n, d.name());
        }
    }
    s.push_str(" |");
    let cell = |s: &mut String, x: String| {
        let _ = write!(s, " {x} |");
    };
    for d in Daemon::ALL {
        cell(&mut s, r.stat(d, KIOPS).show(0));
    }
    for d in Daemon::REFERENCES {
        cell(&mut s, format!("**{}**", r.ratio(d, IOPS).show(2)));
    }
    for d in Daemon::ALL {
        cell(
            &mut s,
            format!("{} / {}", r.stat(d, P50).show(1), r.stat(d, P99).show(1)),
        );
    }
    for d in Daemon::ALL {
        cell(&mut s, r.stat(d, CPU).show(2));
    }
    for d in Daemon::REFERENCES {
        cell(&mut s, format!("**{}**", r.ratio(d, CPU).show(2)));
    }
    cell(
        &mut s,
        r.stat(Daemon::Vblk, |f| f.client_util * 100.0).show(0),
    );
    let counter = |get: fn(&Figures) -> Option<f64>| {
        let v: Vec<f64> = r.figures(Daemon::Vblk).iter().filter_map(get).collect();
        if v.is_empty() {
            "-".to_string()
        } else {
            spread(&v).show(2)
        }
    };
    cell(&mut s, counter(|f| f.kicks_per_io));
    cell(&mut s, counter(|f| f.irqs_per_io));
    s
}

/// The markdown table of `rows`.
pub fn table(rows: &[Row]) -> String {
    let cols = HEADER.matches('|').count() - 1;
    let mut s = format!("{HEADER}\n|{}\n", "---|".repeat(cols));
    for r in rows {
        let _ = writeln!(s, "{}", format_row(r));
    }
    s
}
