//! Mailbox latency and bandwidth between two processes, one per core, with
//! the hardware's limits measured in the same run (`shmpi_cli::bench::shm`; the
//! same code as the shared-memory rows of `shmpi bench`), and what a group
//! costs as it grows (`shmpi_cli::bench::scale`: 2 to 128 processes). A
//! benchmark, not a test: nothing here passes or fails on time.
//!
//! ```text
//! cargo run --release --example mailbox_bench -- [--quick] [--scale-only] [--json FILE]
//! ```

use std::process::ExitCode;

use shmpi_cli::bench::{scale, shm, Config};

/// Mailbox latency and bandwidth, the hardware's limits, and what a group
/// costs as it grows.
#[derive(clap::Parser)]
struct Args {
    /// Fewer iterations and samples.
    #[arg(long)]
    quick: bool,
    /// Only the memory and start-up of groups of 2 to 128 processes.
    #[arg(long)]
    scale_only: bool,
    /// Write the records as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<String>,
}

fn main() -> ExitCode {
    shm::run_peer_if_requested();
    scale::run_member_if_requested();
    let args: Args = clap::Parser::parse();
    let cfg = Config {
        quick: args.quick,
        ..Config::default()
    };
    let json = args.json.as_deref();
    let mut progress = |what: &str| eprint!("\r{what:<40}");
    let scale_only = args.scale_only;
    let first = if scale_only {
        Ok(shmpi_cli::bench::Report::default())
    } else {
        shm::measure(&cfg, &mut progress)
    };
    let measured = first.and_then(|mut r| {
        r.records
            .extend(scale::measure(cfg.quick, &mut progress)?.records);
        Ok(r)
    });
    let report = match measured {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailbox_bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprint!("\r{:40}\r", "");
    println!("{}", report.to_markdown());
    if !scale_only {
        println!(
            "zero-copy rows time the mechanism only: the payload is neither written nor read.\n"
        );
        println!("{}", shm::target_ratios(&report));
    }
    if let Some(path) = json {
        if let Err(e) = report.write_json(path) {
            eprintln!("mailbox_bench: writing {path}: {e}");
            return ExitCode::FAILURE;
        }
        println!("records written to {path}");
    }
    ExitCode::SUCCESS
}
