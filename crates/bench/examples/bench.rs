//! Run the benchmark without the vblk CLI (for working on the harness);
//! the same flags as `vblk bench`:
//!
//! ```text
//! cargo run --release -p vblk-bench --example bench -- \
//!     --vblk target/release/vblk [--quick] [--runs N] [--only null,file,direct] \
//!     [--filter 'null | 1 | event'] [--vblk-args '--batch 32'] [--markdown]
//! ```

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: vblk_bench::BenchArgs,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if cli.args.vblk.is_none() {
        cli.args.vblk = Some("target/release/vblk".into());
    }
    match vblk_bench::main(cli.args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
