//! MPI ping-pong between ranks 0 and 1 through shmpi's MPI layer:
//! one-way latency 8 B … 1 MiB and bandwidth (`shmpi::bench::mpi::pingpong`,
//! the code behind `shmpi bench`'s MPI rows).
//!
//! ```text
//! scripts/mpirun.sh -n 2 target/release/examples/mpi_pingpong [--quick] [--path mpi.tcp] [--thread-level multiple] [--json FILE] [--records]
//! ```

use std::process::ExitCode;

use shmpi::bench::{mpi::pingpong, Config};
use shmpi::mpi::{Mpi, ThreadLevel};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = Config {
        quick: args.iter().any(|a| a == "--quick"),
        ..Config::default()
    };
    let level = match arg(&args, "--thread-level").as_deref() {
        Some("multiple") => ThreadLevel::Multiple,
        _ => ThreadLevel::Single,
    };
    let path = arg(&args, "--path").unwrap_or_else(|| "mpi.sm".to_owned());
    let mpi = Mpi::init(level)?;
    let world = mpi.dup_world()?;
    if world.size() < 2 {
        return Err("mpi_pingpong needs 2 ranks".into());
    }
    if let Some(report) = pingpong(&world, &path, &cfg)? {
        println!(
            "{path} ({}, {})",
            mpi.thread_level().name(),
            report.mpi.as_deref().unwrap_or("")
        );
        println!("{}", report.to_markdown());
        if args.iter().any(|a| a == "--records") {
            // The lines scripts/bench-mpi.sh collects.
            for r in &report.records {
                println!("{}", r.to_line());
            }
        }
        if let Some(file) = arg(&args, "--json") {
            report.write_json(&file)?;
            println!("records written to {file} ({} rows)", report.records.len());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpi_pingpong: {e}");
            ExitCode::FAILURE
        }
    }
}
