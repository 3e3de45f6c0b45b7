//! Run the benchmark without the vblk CLI (for working on the harness):
//!
//! ```text
//! cargo run --release -p vblk-bench --example bench -- \
//!     [--quick] [--vblk PATH] [--out DIR] [--secs S] [--only null,file,direct] [--qsd-main-loop]
//!     [--filter 'writeback | 1 | poll'] [--vblk-args '...']
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut opts = vblk_bench::BenchOptions::new("target/release/vblk");
    let mut out = PathBuf::from("target/bench");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("{name} needs a value");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--qsd-main-loop" => opts.qsd_iothread = false,
            "--vblk" => opts.vblk = val("--vblk").into(),
            "--out" => out = val("--out").into(),
            "--secs" => opts.secs = val("--secs").parse().ok(),
            "--filter" => opts.filter = Some(val("--filter")),
            "--only" => {
                opts.backends = val("--only")
                    .split(',')
                    .filter_map(vblk_bench::Backend::parse)
                    .collect()
            }
            "--vblk-args" => {
                opts.vblk_args = val("--vblk-args")
                    .split_whitespace()
                    .map(String::from)
                    .collect()
            }
            _ => {
                eprintln!("unknown argument {a}");
                return ExitCode::from(2);
            }
        }
    }
    match vblk_bench::run(opts) {
        Ok(r) => {
            println!("{}", r.markdown());
            if let Err(e) = r.write(&out) {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
            let c = r.collapses();
            if !c.is_empty() {
                eprintln!("collapsed:\n  {}", c.join("\n  "));
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
