//! The report as text: the Method paragraph (pinning, durations, the
//! references, the daemon command lines), the plain report and the
//! paste-ready BENCHMARKS.md section.

use std::fmt::Write as _;

use super::table::table;
use super::Report;
use crate::daemons::POLL_US;
use crate::measure::WARMUP;
use crate::points::{MAX_ATTEMPTS, MAX_OTHER_LOAD};
use crate::targets;

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
}
