//! `bench.svg`: IOPS and daemon CPU per I/O against queue depth, one pair
//! of panels per backend, for the three daemons (medians over the runs).

use std::fmt::Write as _;

use crate::daemons::Daemon;
use crate::measure::Figures;
use crate::options::Backend;
use crate::report::{spread, Row};

const COLORS: [(Daemon, &str); 3] = [
    (Daemon::Vblk, "#1f77b4"),
    (Daemon::Qsd, "#d62728"),
    (Daemon::QsdIothread, "#ff7f0e"),
];

fn median(r: &Row, d: Daemon, get: fn(&Figures) -> f64) -> f64 {
    spread(&r.figures(d).iter().map(get).collect::<Vec<_>>()).median
}

/// An SVG: for each backend measured, IOPS (left) and daemon CPU µs per
/// I/O (right) against queue depth, the three daemons, single-queue random reads;
/// solid lines event-driven, dashed polling.
pub fn svg(rows: &[Row]) -> String {
    let mut backends: Vec<Backend> = vec![];
    for r in rows {
        if !backends.contains(&r.point.backend) {
            backends.push(r.point.backend);
        }
    }
    let (pw, ph, pad, top) = (380.0, 220.0, 60.0, 40.0);
    let w = 2.0 * pw + 3.0 * pad;
    let h = top + backends.len().max(1) as f64 * (ph + pad) + 30.0;
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n"
    );
    let _ = writeln!(
        s,
        "<text x='{pad}' y='20' font-size='14'>vblk vs qemu-storage-daemon (main loop, iothread), vhost-user-blk, 4 KiB random reads, 1 queue (libblkio client)</text>"
    );
    type Getter = fn(&Figures) -> f64;
    let panels: [(&str, Getter); 2] = [
        ("kIOPS", |f| f.iops / 1e3),
        ("daemon CPU µs per I/O", |f| f.cpu_us_per_io),
    ];
    let qds = [1.0f64, 32.0, 128.0];
    let xpos = |x0: f64, qd: f64| x0 + 10.0 + (pw - 20.0) * (qd.log2() / 7.0).clamp(0.0, 1.0);
    for (bi, &backend) in backends.iter().enumerate() {
        let sel: Vec<&Row> = rows
            .iter()
            .filter(|r| r.point.backend == backend && r.point.queues == 1 && !r.point.write)
            .collect();
        let y0 = top + bi as f64 * (ph + pad) + 20.0;
        for (pi, (title, get)) in panels.iter().enumerate() {
            let x0 = pad + pi as f64 * (pw + pad);
            let max = nice_max(
                sel.iter()
                    .flat_map(|r| Daemon::ALL.map(|d| median(r, d, *get)))
                    .fold(0.0f64, f64::max),
            );
            let _ = writeln!(
                s,
                "<text x='{x0}' y='{}' font-weight='bold'>{}: {title}</text>",
                y0 - 6.0,
                backend.label()
            );
            let _ = writeln!(
                s,
                "<rect x='{x0}' y='{y0}' width='{pw}' height='{ph}' fill='none' stroke='#888'/>"
            );
            for k in 0..=4 {
                let v = max * k as f64 / 4.0;
                let y = y0 + ph - ph * k as f64 / 4.0;
                let _ = writeln!(
                    s,
                    "<line x1='{x0}' x2='{}' y1='{y:.1}' y2='{y:.1}' stroke='#eee'/>",
                    x0 + pw
                );
                let _ = writeln!(
                    s,
                    "<text x='{}' y='{:.1}' text-anchor='end' fill='#555'>{}</text>",
                    x0 - 4.0,
                    y + 4.0,
                    if v == v.round() {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.1}")
                    }
                );
            }
            for qd in qds {
                let _ = writeln!(
                    s,
                    "<text x='{:.1}' y='{}' text-anchor='middle' fill='#555'>QD{qd}</text>",
                    xpos(x0, qd),
                    y0 + ph + 15.0
                );
            }
            for (series, color) in COLORS {
                for poll in [false, true] {
                    let mut pts: Vec<(f64, f64)> = sel
                        .iter()
                        .filter(|r| r.point.poll == poll)
                        .map(|r| (r.point.qd as f64, median(r, series, *get)))
                        .collect();
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    if pts.is_empty() {
                        continue;
                    }
                    let xy: Vec<(f64, f64)> = pts
                        .iter()
                        .map(|&(qd, v)| (xpos(x0, qd), y0 + ph - ph * v / max))
                        .collect();
                    let path: Vec<String> =
                        xy.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                    let dash = if poll { " stroke-dasharray='6,4'" } else { "" };
                    let _ = writeln!(
                        s,
                        "<polyline points='{}' fill='none' stroke='{color}' stroke-width='2'{dash}/>",
                        path.join(" ")
                    );
                    for (x, y) in xy {
                        let _ =
                            writeln!(s, "<circle cx='{x:.1}' cy='{y:.1}' r='3' fill='{color}'/>");
                    }
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "<text x='{pad}' y='{}'><tspan fill='#1f77b4' font-weight='bold'>— vblk</tspan>   <tspan fill='#d62728' font-weight='bold'>— qsd</tspan>   <tspan fill='#ff7f0e' font-weight='bold'>— qsd+iothread</tspan>   solid: event-driven, dashed: polling; x: queue depth (log scale)</text>",
        h - 10.0
    );
    s.push_str("</svg>\n");
    s
}

/// A round axis maximum (four ticks of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5 or 8 × a power of ten)
/// a little above `v`.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let step = v * 1.05 / 4.0;
    let p = 10f64.powf(step.log10().floor());
    let m = [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.5, 8.0, 10.0]
        .into_iter()
        .find(|m| m * p >= step)
        .unwrap_or(10.0);
    4.0 * m * p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{point, row};

    #[test]
    fn renders_three_series() {
        let rows = vec![
            row(
                point(Backend::Null, false, false, 1),
                &[300.0],
                &[100.0],
                &[150.0],
            ),
            row(
                point(Backend::Null, false, false, 32),
                &[600.0],
                &[200.0],
                &[250.0],
            ),
        ];
        let s = svg(&rows);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        // Two panels × three daemons, event-driven only.
        assert_eq!(s.matches("<polyline").count(), 6, "{s}");
        assert!(s.contains("#ff7f0e"));
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(274.0), 300.0);
        assert_eq!(nice_max(190.0), 200.0);
        assert_eq!(nice_max(33.0), 40.0);
        assert!((nice_max(1.2) - 1.6).abs() < 1e-9);
        assert_eq!(nice_max(0.0), 1.0);
    }
}
