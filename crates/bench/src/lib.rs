//! `vblk bench`: vblk against qemu-storage-daemon, side by side in one
//! run, over vhost-user-blk, driven from the host by libblkio (no VM).
//!
//! Two references in every row: qemu-storage-daemon as users run it by
//! default (main loop) and with an iothread (adaptive polling). For each
//! point (backend, queues, completion mode, read/write, queue depth) every
//! daemon is started fresh, 4 KiB random I/O runs, and IOPS, p50/p99
//! latency, the daemon's CPU time per I/O and (vblk) kicks and interrupts
//! per I/O are recorded; `--runs N` repeats everything and reports the
//! median with the spread.
//!
//! Modules, one job each:
//! * [`options`]: the command line and what to run;
//! * [`daemons`]: the daemons' command lines, starting, pinning, stopping;
//! * [`images`]: the tmpfs and real-disk backing files;
//! * [`measure`]: the libblkio client and CPU accounting;
//! * [`points`]: what is measured and the run loop;
//! * [`report`]: spread over runs, the table, markdown and JSON;
//! * [`targets`]: the issue's targets and the collapse check;
//! * [`svg`]: the plot.

pub mod daemons;
pub mod images;
pub mod measure;
pub mod nbd_server;
pub mod options;
pub mod points;
pub mod report;
pub mod svg;
pub mod targets;

use std::path::Path;

pub use daemons::Daemon;
pub use measure::Figures;
pub use options::{Backend, BenchArgs, BenchOptions, Point};
pub use report::{Report, Row};
pub use targets::collapses;

/// Run the benchmark with `opts`; `invocation` is the command line shown in
/// the report.
pub fn run(opts: &BenchOptions, invocation: String) -> Result<Report, String> {
    points::run(opts, invocation)
}

/// The `vblk bench` command: run, print the report (plain or `--markdown`),
/// write it to `--out`, and fail on a collapse if asked to.
pub fn main(args: BenchArgs) -> Result<(), String> {
    let vblk = match &args.vblk {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?,
    };
    let opts = args.options(vblk)?;
    let report = run(&opts, invocation())?;
    if args.markdown {
        println!("{}", report.markdown());
    } else {
        println!("{}", report.text());
    }
    report.write(&args.out)?;
    let c = report.collapses();
    if !c.is_empty() {
        eprintln!(
            "bench: vblk under half of {} (the collapse reference) at:\n  {}",
            targets::COLLAPSE_REFERENCE.name(),
            c.join("\n  ")
        );
        if args.fail_on_collapse {
            // Fail only if it happens again with fresh daemons: one
            // disturbed measurement on a shared machine is not a collapse.
            eprintln!("bench: measuring those points again with fresh daemons");
            let mut again = opts.clone();
            again.points = targets::collapsed_points(&report.rows);
            let second = run(&again, invocation())?;
            let confirmed = targets::confirmed_collapses(&report.rows, &second.rows);
            if !confirmed.is_empty() {
                eprintln!(
                    "bench: collapse confirmed at:\n  {}",
                    confirmed.join("\n  ")
                );
                return Err(format!("{} collapsed point(s)", confirmed.len()));
            }
            eprintln!("bench: not confirmed on the second measurement; not a collapse");
        }
    }
    eprintln!(
        "bench: report in {}/bench.md, bench.svg and bench.json",
        args.out.display()
    );
    Ok(())
}

impl Report {
    /// Where vblk fell under half of the main-loop qsd's IOPS.
    pub fn collapses(&self) -> Vec<String> {
        targets::collapses(&self.rows)
    }
}

/// This process's command line, shell-quoted where needed, with the
/// environment variables the bench reads.
fn invocation() -> String {
    let mut parts: Vec<String> = ["VBLK_BENCH_ONLY", "VBLK_BENCH_ARGS"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={}", quote(&v))))
        .collect();
    parts.extend(std::env::args().map(|a| quote(&a)));
    parts.join(" ")
}

fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// CPUs, model, memory, kernel, qemu-storage-daemon version.
pub(crate) fn machine(qsd: &Path) -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        info.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(String::new(), |kb| {
            format!(", {:.0} GiB", kb as f64 / (1 << 20) as f64)
        });
    let hyp = if info.contains(" hypervisor") {
        " (virtual machine)"
    } else {
        ""
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "{cpus} CPUs ({}, {} MHz{hyp}){mem}, Linux {}, {}",
        field("model name"),
        field("cpu MHz"),
        kernel.trim(),
        daemons::qsd_version(qsd)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("--quick"), "--quick");
        assert_eq!(quote("null | 1"), "'null | 1'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}
