//! One point on a running daemon, measured again while other load
//! disturbs the machine; the least disturbed attempt is kept.

use std::time::Duration;

use super::Setup;
use crate::daemons;
use crate::measure::{self, Figures};
use crate::options::Point;

/// A point measured while other work used more than this many CPUs is
/// measured again (other engineers' builds and tests share the machine).
pub const MAX_OTHER_LOAD: f64 = 0.10;
pub const MAX_ATTEMPTS: usize = 4;

/// One point on a running daemon: measured again (up to MAX_ATTEMPTS) while
/// other load is high; the least disturbed attempt is kept, failed requests
/// of every attempt are counted.
pub(super) fn measure_point(
    s: &Setup,
    d: &mut daemons::Running,
    p: Point,
) -> Result<Figures, String> {
    let name = d.daemon.name();
    let mut best: Option<Figures> = None;
    let mut failed = 0;
    for attempt in 1..=MAX_ATTEMPTS {
        let f = measure::measure(&s.client_cpus, d, p, s.secs)
            .and_then(|f| d.check_alive().map(|()| f))
            .map_err(|e| {
                format!(
                    "{name} at {}: {e}\n  the daemon's log ends with:\n    {}",
                    p.label(),
                    d.log_tail()
                )
            })?;
        if f.failed > 0 {
            eprintln!(
                "bench: {name} at {}: {} requests FAILED ({}); the daemon's log ends with:\n    {}",
                p.label(),
                f.failed,
                f.first_failure.as_deref().unwrap_or(""),
                d.log_tail()
            );
        }
        failed += f.failed;
        let quiet = f.other_load <= MAX_OTHER_LOAD;
        if !quiet && s.opts.verbose {
            eprintln!(
                "bench: {name} at {}: other processes used {:.2} CPUs (attempt {attempt}){}",
                p.label(),
                f.other_load,
                if attempt < MAX_ATTEMPTS {
                    "; measuring again"
                } else {
                    ""
                }
            );
        }
        if best.as_ref().is_none_or(|b| f.other_load < b.other_load) {
            best = Some(f);
        }
        if quiet {
            break;
        }
        std::thread::sleep(Duration::from_millis(500 * attempt as u64));
    }
    let mut f = best.unwrap_or_default();
    f.failed = failed;
    Ok(f)
}
