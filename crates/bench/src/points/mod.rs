//! What is measured (the daemon configurations and their points, the
//! quick subset, `--only`/`--filter`) and the run loop: for each run, for
//! each configuration, each daemon started fresh and measured at every
//! point, repeated while other load disturbs the machine.

use std::path::PathBuf;

use crate::options::BenchOptions;

// Where each step lives: the configurations and their points, the quick
// subset and `--only`/`--filter` (`list`), the run loop over runs,
// configurations and daemons (`run`), and one point measured on a running
// daemon, again while other load disturbs it (`measure_point`).
mod list;
mod measure_point;
mod run;

pub use list::{groups, select, Group};
pub use measure_point::{MAX_ATTEMPTS, MAX_OTHER_LOAD};
pub use run::run;

/// Where the files go, and the CPUs.
struct Setup<'a> {
    opts: &'a BenchOptions,
    dir: PathBuf,
    tmpfs_image: PathBuf,
    disk_image: Option<PathBuf>,
    daemon_cpus: Vec<usize>,
    client_cpus: Vec<usize>,
    secs: f64,
}
