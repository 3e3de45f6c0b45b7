//! What to run: the `vblk bench` command line ([`BenchArgs`]), the options
//! the harness works from ([`BenchOptions`]), and the names of what is
//! measured ([`Backend`], [`Point`]).

use std::path::PathBuf;

/// The `vblk bench` subcommand's arguments (flattened into the vblk CLI).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct BenchArgs {
    /// Run the short subset (about two minutes; what CI runs).
    #[arg(long)]
    pub quick: bool,
    /// Measure everything N times, each run with freshly started daemons;
    /// the table gives the median and the min–max spread.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: u32,
    /// Only these backends, comma separated: null, file (tmpfs, page
    /// cache), direct (a file on the root file system, O_DIRECT), nbd (the
    /// tmpfs file behind a qemu-nbd the bench starts; both daemons on its
    /// export). Default: $VBLK_BENCH_ONLY, else all but nbd.
    #[arg(long, value_name = "BACKENDS")]
    pub only: Option<String>,
    /// Only points whose label contains TEXT, e.g. "null | 1 | event" or
    /// "randread | 128" (labels as in the table's first columns).
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// Extra `vblk serve` arguments, e.g. "--batch 32" (appended to
    /// $VBLK_BENCH_ARGS).
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub vblk_args: Option<String>,
    /// Print a section that can be pasted into BENCHMARKS.md (command,
    /// machine, method, table, targets) instead of the plain report.
    #[arg(long)]
    pub markdown: bool,
    /// Exit with an error if vblk falls under half of the main-loop
    /// qemu-storage-daemon's IOPS at any point.
    #[arg(long)]
    pub fail_on_collapse: bool,
    /// Seconds measured per point (default 1.5 with --quick, else 3).
    #[arg(long, value_name = "S")]
    pub secs: Option<f64>,
    /// The vblk binary to benchmark (default: this one).
    #[arg(long, value_name = "PATH")]
    pub vblk: Option<PathBuf>,
    /// The qemu-storage-daemon binary.
    #[arg(long, value_name = "PATH", default_value = "qemu-storage-daemon")]
    pub qsd: PathBuf,
    /// Directory for the real-disk image (must not be tmpfs; default
    /// /var/tmp, else the current directory).
    #[arg(long, value_name = "DIR")]
    pub disk_dir: Option<PathBuf>,
    /// Directory for the report (bench.md, bench.json, bench.svg).
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    pub out: PathBuf,
}

/// What the harness runs. The command line fills it in
/// ([`BenchArgs::options`]); tests and the example may build it directly.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The short subset.
    pub quick: bool,
    /// Runs, each with fresh daemons.
    pub runs: usize,
    /// The vblk binary to benchmark.
    pub vblk: PathBuf,
    /// The qemu-storage-daemon binary.
    pub qsd: PathBuf,
    /// Seconds measured per point (after the warm-up).
    pub secs: Option<f64>,
    /// Only these backends (empty: all of the selected set).
    pub backends: Vec<Backend>,
    /// Only points whose label contains this.
    pub filter: Option<String>,
    /// Only these points (empty: every selected one); the collapse check
    /// re-measures with it.
    pub points: Vec<Point>,
    /// CPUs for the daemons and for the client (default: CPU 0 for the
    /// daemon, every other CPU for the client).
    pub daemon_cpus: Option<Vec<usize>>,
    pub client_cpus: Option<Vec<usize>>,
    /// Extra arguments for `vblk serve`.
    pub vblk_args: Vec<String>,
    /// Where the real-disk image goes (None: /var/tmp, else the current
    /// directory; never tmpfs).
    pub disk_dir: Option<PathBuf>,
    /// Progress on stderr.
    pub verbose: bool,
    /// Install qemu-storage-daemon with apt-get if it is missing.
    pub install_qsd: bool,
}

impl BenchOptions {
    pub fn new(vblk: impl Into<PathBuf>) -> Self {
        BenchOptions {
            quick: false,
            runs: 1,
            vblk: vblk.into(),
            qsd: PathBuf::from("qemu-storage-daemon"),
            secs: None,
            backends: Vec::new(),
            filter: None,
            points: Vec::new(),
            daemon_cpus: None,
            client_cpus: None,
            vblk_args: Vec::new(),
            disk_dir: None,
            verbose: true,
            install_qsd: true,
        }
    }
}

impl BenchArgs {
    /// The options these arguments ask for, with `VBLK_BENCH_ONLY` (used
    /// when `--only` is absent) and `VBLK_BENCH_ARGS` (prepended to
    /// `--vblk-args`) from the environment.
    pub fn options(&self, vblk: PathBuf) -> Result<BenchOptions, String> {
        self.options_with_env(
            vblk,
            std::env::var("VBLK_BENCH_ONLY").ok(),
            std::env::var("VBLK_BENCH_ARGS").ok(),
        )
    }

    fn options_with_env(
        &self,
        vblk: PathBuf,
        env_only: Option<String>,
        env_args: Option<String>,
    ) -> Result<BenchOptions, String> {
        let mut o = BenchOptions::new(vblk);
        o.quick = self.quick;
        o.runs = self.runs.max(1) as usize;
        o.qsd = self.qsd.clone();
        o.secs = self.secs;
        o.filter = self.filter.clone();
        o.disk_dir = self.disk_dir.clone();
        if let Some(only) = self.only.clone().or(env_only) {
            o.backends = parse_backends(&only)?;
        }
        for s in [env_args, self.vblk_args.clone()].into_iter().flatten() {
            o.vblk_args.extend(s.split_whitespace().map(String::from));
        }
        if let Some(s) = o.secs {
            if !(s.is_finite() && s > 0.0) {
                return Err(format!("--secs {s}: must be a positive number"));
            }
        }
        Ok(o)
    }
}

/// `null,file,direct` → backends; an unknown name is an error.
pub fn parse_backends(s: &str) -> Result<Vec<Backend>, String> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            Backend::parse(x)
                .ok_or_else(|| format!("unknown backend {x:?} (null, file, direct or nbd)"))
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Backend {
    /// No storage: vblk `null:1G`, qsd `null-co,read-zeroes=on`.
    Null,
    /// A 1 GiB file on tmpfs through the page cache, io_uring.
    File,
    /// A 1 GiB file on the root file system (a real disk), `O_DIRECT`
    /// (vblk `--cache none`, qsd `cache.direct=on`), io_uring.
    Direct,
    /// The tmpfs file served by one qemu-nbd (raw, writeback) that the
    /// bench starts on a UNIX socket; vblk `--image nbd+unix://`, qsd
    /// `--blockdev driver=nbd`. Only with `--only nbd`.
    Nbd,
}

impl Backend {
    pub fn parse(s: &str) -> Option<Backend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "null" => Some(Backend::Null),
            "file" | "writeback" | "tmpfs" => Some(Backend::File),
            "direct" | "none" | "file-direct" | "disk" => Some(Backend::Direct),
            "nbd" | "qemu-nbd" => Some(Backend::Nbd),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Backend::Null => "null",
            Backend::File => "tmpfs file, writeback",
            Backend::Direct => "disk file, O_DIRECT",
            Backend::Nbd => "qemu-nbd (tmpfs raw), UNIX socket",
        }
    }
}

/// One measured configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    pub backend: Backend,
    pub queues: usize,
    pub poll: bool,
    pub write: bool,
    pub qd: usize,
}

impl Point {
    /// The table's first five columns; `--filter` matches against this.
    pub fn label(&self) -> String {
        format!(
            "{} | {} | {} | {} | {}",
            self.backend.label(),
            self.queues,
            if self.poll { "poll" } else { "event" },
            if self.write { "randwrite" } else { "randread" },
            self.qd
        )
    }

    /// The workload and QD alone (for tables whose other columns say the
    /// rest); no `|`, so it fits in a markdown cell.
    pub fn short(&self) -> String {
        format!(
            "{} QD{}",
            if self.write { "randwrite" } else { "randread" },
            self.qd
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_and_flags_combine() {
        let a = BenchArgs {
            vblk_args: Some("--batch 8".into()),
            runs: 3,
            ..Default::default()
        };
        let o = a
            .options_with_env("v".into(), Some("null, direct".into()), Some("-x".into()))
            .unwrap();
        assert_eq!(o.backends, vec![Backend::Null, Backend::Direct]);
        assert_eq!(o.vblk_args, vec!["-x", "--batch", "8"]);
        assert_eq!(o.runs, 3);
        // The flag wins over the environment.
        let a = BenchArgs {
            only: Some("file".into()),
            ..Default::default()
        };
        let o = a
            .options_with_env("v".into(), Some("null".into()), None)
            .unwrap();
        assert_eq!(o.backends, vec![Backend::File]);
        assert_eq!(o.runs, 1);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse_backends("null,floppy").is_err());
        let a = BenchArgs {
            secs: Some(0.0),
            ..Default::default()
        };
        assert!(a.options_with_env("v".into(), None, None).is_err());
    }

    #[test]
    fn labels_match_filters() {
        let p = Point {
            backend: Backend::Direct,
            queues: 1,
            poll: false,
            write: true,
            qd: 128,
        };
        assert_eq!(
            p.label(),
            "disk file, O_DIRECT | 1 | event | randwrite | 128"
        );
    }
}
