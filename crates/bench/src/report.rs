//! The results ([`Row`], [`Report`]) and how they are shown: each figure
//! as the median over the runs with the min–max spread, the markdown
//! table, the paste-ready BENCHMARKS.md section, JSON.

use std::fmt::Write as _;
use std::path::Path;

use crate::daemons::{Daemon, POLL_US};
use crate::measure::{Figures, WARMUP};
use crate::options::Point;
use crate::points::{MAX_ATTEMPTS, MAX_OTHER_LOAD};
use crate::targets;

/// Median and range of one figure over the runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// The spread of `xs` (NaN-free input assumed; empty → zeros, n = 0). The
/// median of an even count is the mean of the middle two.
pub fn spread(xs: &[f64]) -> Spread {
    if xs.is_empty() {
        return Spread {
            median: 0.0,
            min: 0.0,
            max: 0.0,
            n: 0,
        };
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Spread {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    }
}

impl Spread {
    /// `median` alone for one run, else `median (min–max)`.
    pub fn show(&self, decimals: usize) -> String {
        if self.n <= 1 {
            format!("{:.*}", decimals, self.median)
        } else {
            format!(
                "{:.*} ({:.*}–{:.*})",
                decimals, self.median, decimals, self.min, decimals, self.max
            )
        }
    }
}

/// One point: every run's figures for each daemon (indexed by
/// [`Daemon::index`]; the i-th entries of the three lists come from the
/// same run).
#[derive(Clone, Debug)]
pub struct Row {
    pub point: Point,
    pub runs: [Vec<Figures>; 3],
}

pub type Get = fn(&Figures) -> f64;
pub const IOPS: Get = |f| f.iops;
pub const KIOPS: Get = |f| f.iops / 1e3;
pub const CPU: Get = |f| f.cpu_us_per_io;
pub const P50: Get = |f| f.p50_us;
pub const P99: Get = |f| f.p99_us;

impl Row {
    pub fn new(point: Point) -> Row {
        Row {
            point,
            runs: Default::default(),
        }
    }

    pub fn figures(&self, d: Daemon) -> &[Figures] {
        &self.runs[d.index()]
    }

    pub fn stat(&self, d: Daemon, get: Get) -> Spread {
        spread(&self.figures(d).iter().map(get).collect::<Vec<_>>())
    }

    /// vblk / `reference` per run (the daemons of one run are measured
    /// minutes apart, so a run's ratio is the comparable figure), spread
    /// over the runs.
    pub fn ratio(&self, reference: Daemon, get: Get) -> Spread {
        let r: Vec<f64> = self
            .figures(Daemon::Vblk)
            .iter()
            .zip(self.figures(reference))
            .map(|(v, q)| get(v) / get(q).max(1e-9))
            .collect();
        spread(&r)
    }

    pub fn iops_ratio(&self, reference: Daemon) -> f64 {
        self.ratio(reference, IOPS).median
    }

    pub fn cpu_ratio(&self, reference: Daemon) -> f64 {
        self.ratio(reference, CPU).median
    }

    /// Whether any of this row's measurements ran while other processes
    /// used more than [`MAX_OTHER_LOAD`] CPUs (after every retry).
    pub fn disturbed(&self) -> bool {
        self.runs
            .iter()
            .flatten()
            .any(|f| f.other_load > MAX_OTHER_LOAD)
    }

    fn failed(&self, d: Daemon) -> u64 {
        self.figures(d).iter().map(|f| f.failed).sum()
    }
}

/// The result of a benchmark.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    /// CPUs, model, kernel, qemu-storage-daemon version.
    pub machine: String,
    pub daemon_cpus: Vec<usize>,
    pub client_cpus: Vec<usize>,
    pub secs: f64,
    pub quick: bool,
    pub runs: usize,
    /// Per daemon configuration measured: its label and the three command
    /// lines (vblk, qsd, qsd+iothread).
    pub commands: Vec<(String, [String; 3])>,
    /// How the benchmark was invoked (for BENCHMARKS.md).
    pub invocation: String,
    /// Where the real-disk image was (None if not used).
    pub disk_image: Option<String>,
}

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

impl Report {
    fn method(&self) -> String {
        let mut s = format!(
            "Daemons pinned to CPU {:?}, client (libblkio virtio-blk-vhost-user, one thread per queue) \
             to CPU {:?}. 4 KiB random I/O over 1 GiB, {} s per point after a {} ms warm-up{}; \
             {} run{}, each with freshly started daemons{}.\n\n\
             * **qsd**: qemu-storage-daemon as run by default, the export in its main loop (no iothread, no polling).\n\
             * **qsd+iothread**: `--object iothread,id=io0` and `iothread=io0` on the export: QEMU's default adaptive \
             polling on event rows; `poll-max-ns={}` on polling rows.\n\
             * **vblk**: `vblk serve` with its defaults on event rows; `--poll-us {POLL_US}` on polling rows \
             (the client then uses libblkio poll queues).\n\
             * CPU µs/IO: the daemon's CPU time (all threads) over the measured interval / I/Os completed. \
             ×qsd and ×qsd+iothread are vblk / reference, per run.\n",
            self.daemon_cpus,
            self.client_cpus,
            self.secs,
            WARMUP.as_millis(),
            if self.quick { " (quick subset)" } else { "" },
            self.runs,
            if self.runs == 1 { "" } else { "s" },
            if self.runs > 1 {
                "; figures are the median with the min–max over the runs in brackets"
            } else {
                ""
            },
            POLL_US * 1000,
        );
        let disturbed = self.rows.iter().filter(|r| r.disturbed()).count();
        let _ = writeln!(
            s,
            "* ⚠ marks a row where at least one measurement ran while other processes used more than \
             {MAX_OTHER_LOAD:.2} CPUs even after {MAX_ATTEMPTS} attempts (the least disturbed attempt is kept): \
             {disturbed} of {} rows.",
            self.rows.len()
        );
        if let Some(img) = &self.disk_image {
            let _ = writeln!(
                s,
                "* Real-disk rows: a preallocated 1 GiB file written once, `{img}` (not tmpfs); tmpfs rows: a 1 GiB file in /dev/shm."
            );
        }
        s.push_str(
            "\nDaemon command lines (`$IMAGE`, `$SOCK`, `$CTL` are the bench's paths):\n\n```\n",
        );
        for (label, cmds) in &self.commands {
            let _ = writeln!(s, "# {label}");
            for c in cmds {
                let _ = writeln!(s, "{c}");
            }
        }
        s.push_str("```\n");
        s
    }

    /// The plain report: machine, method, table, targets.
    pub fn text(&self) -> String {
        format!(
            "Machine: {}\n\n{}\n{}\n{}",
            self.machine,
            self.method(),
            table(&self.rows),
            targets::render(&self.rows),
        )
    }

    /// A BENCHMARKS.md section: the exact command, machine, method, table,
    /// targets, and the collapse check.
    pub fn markdown(&self) -> String {
        let c = targets::collapses(&self.rows);
        format!(
            "### Command\n\n```sh\n{}\n```\n\n### Machine\n\n{}\n\n### Method\n\n{}\n### Results\n\n{}\n### Targets\n\n{}\nCollapse check (vblk under 0.5× of {}'s IOPS): {}\n",
            self.invocation,
            self.machine,
            self.method(),
            table(&self.rows),
            targets::render(&self.rows),
            targets::COLLAPSE_REFERENCE.name(),
            if c.is_empty() {
                "none".to_string()
            } else {
                c.join("; ")
            }
        )
    }

    /// Every run's figures as JSON.
    pub fn json(&self) -> serde_json::Value {
        let fig = |f: &Figures| {
            serde_json::json!({
                "iops": f.iops, "p50_us": f.p50_us, "p99_us": f.p99_us,
                "cpu_us_per_io": f.cpu_us_per_io, "daemon_util": f.daemon_util,
                "client_util": f.client_util, "kicks_per_io": f.kicks_per_io,
                "irqs_per_io": f.irqs_per_io, "other_load": f.other_load,
                "failed_requests": f.failed, "first_failure": f.first_failure,
            })
        };
        let mut rows = vec![];
        for r in &self.rows {
            let mut o = serde_json::json!({
                "backend": r.point.backend.label(),
                "queues": r.point.queues,
                "poll": r.point.poll,
                "write": r.point.write,
                "qd": r.point.qd,
            });
            for d in Daemon::ALL {
                o[d.name()] = r.figures(d).iter().map(fig).collect();
            }
            rows.push(o);
        }
        serde_json::json!({
            "machine": self.machine,
            "invocation": self.invocation,
            "daemon_cpus": self.daemon_cpus,
            "client_cpus": self.client_cpus,
            "secs": self.secs,
            "runs": self.runs,
            "commands": self.commands,
            "rows": rows,
        })
    }

    /// Write bench.md, bench.svg and bench.json into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let err = |e: std::io::Error| format!("{}: {e}", dir.display());
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::write(dir.join("bench.md"), self.markdown()).map_err(err)?;
        std::fs::write(dir.join("bench.svg"), crate::svg::svg(&self.rows)).map_err(err)?;
        let json = serde_json::to_string_pretty(&self.json()).unwrap_or_default();
        std::fs::write(dir.join("bench.json"), json).map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::options::Backend;

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
}
