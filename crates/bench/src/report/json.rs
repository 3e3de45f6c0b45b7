//! The report as JSON (bench.json): every run's figures, per point and
//! daemon.

use super::Report;
use crate::daemons::Daemon;
use crate::measure::Figures;

impl Report {
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
}
