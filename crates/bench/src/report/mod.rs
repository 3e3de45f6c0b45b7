//! The results ([`Row`], [`Report`]) and how they are shown: each figure
//! as the median over the runs with the min–max spread, the markdown
//! table, the paste-ready BENCHMARKS.md section, JSON.

use std::path::Path;

// Where each step lives: the median and range of one figure over the runs
// (`spread`), a point's figures per daemon and the ratios (`row`), the
// results table (`table`), the Method text, the plain report and the
// BENCHMARKS.md section (`markdown`), and the JSON (`json`). Writing the
// three files is here.
mod json;
mod markdown;
mod row;
mod spread;
mod table;
#[cfg(test)]
pub(crate) mod tests;

pub use row::{Get, Row, CPU, IOPS, KIOPS, P50, P99};
pub use spread::{spread, Spread};
pub use table::{format_row, table};

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

impl Report {
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
