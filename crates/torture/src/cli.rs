//! `vblk torture`'s command line ([`Args`]) and entry point: list the
//! cases, or run them and print the table or the JSON.

use std::path::PathBuf;
use std::time::Duration;

use crate::env::Config;
use crate::report::{header, row, summary, summary_line, to_json};
use crate::run::{catalogue, run, selected};

/// `vblk torture`: prints the table (or JSON); Err if any case failed.
pub fn main(cfg: Config) -> Result<(), String> {
    if cfg.list {
        for c in catalogue().iter().filter(|c| selected(c, &cfg.cases)) {
            println!("{:<40} {}", c.name, c.about);
        }
        return Ok(());
    }
    use std::io::Write;
    if !cfg.json {
        print!("{}", header());
    }
    let out = run(&cfg, |o| {
        if !cfg.json {
            print!("{}", row(o));
            let _ = std::io::stdout().flush();
        }
    })?;
    if cfg.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&cfg.sock, &out)).unwrap_or_default()
        );
    } else {
        print!("{}", summary_line(&out));
    }
    let (_, _, failed, _) = summary(&out);
    if failed > 0 {
        return Err(format!("torture: {failed} case(s) failed"));
    }
    Ok(())
}

/// `vblk torture`'s command line.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The vhost-user-blk back end's socket (vblk, qemu-storage-daemon, SPDK, ...).
    #[arg(long, value_name = "SOCKET")]
    pub vhost_user: PathBuf,
    /// Disk size in bytes, for back ends without a config space (default: from GET_CONFIG).
    #[arg(long, value_name = "BYTES")]
    pub size: Option<u64>,
    /// Run only the cases whose name contains one of these comma-separated words.
    #[arg(long, value_name = "PATTERN")]
    pub cases: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// List the cases and exit.
    #[arg(long)]
    pub list: bool,
    /// Deadline of each wait, in milliseconds.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub timeout_ms: u64,
}

/// `vblk torture ARGS`.
pub fn cli(a: Args) -> Result<(), String> {
    main(Config {
        sock: a.vhost_user,
        size: a.size,
        cases: a.cases,
        json: a.json,
        list: a.list,
        timeout: Duration::from_millis(a.timeout_ms),
    })
}
