//! One point's results ([`Row`]): every run's figures per daemon, the
//! figure getters, the paired vblk / reference ratios.

use super::spread::{spread, Spread};
use crate::daemons::Daemon;
use crate::measure::Figures;
use crate::options::Point;
use crate::points::MAX_OTHER_LOAD;

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

    pub(super) fn failed(&self, d: Daemon) -> u64 {
        self.figures(d).iter().map(|f| f.failed).sum()
    }
}
