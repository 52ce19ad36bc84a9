//! MPI ping-pong between ranks 0 and 1 through shmpi's MPI layer:
//! one-way latency 8 B … 1 MiB and bandwidth (`shmpi_cli::bench::mpi::pingpong`,
//! the code behind `shmpi bench`'s MPI rows).
//!
//! ```text
//! scripts/mpirun.sh -n 2 target/release/examples/mpi_pingpong [--quick] [--path mpi.tcp] [--thread-level multiple] [--json FILE] [--records]
//! ```

use std::process::ExitCode;

use shmpi::mpi::{Mpi, ThreadLevel};
use shmpi_cli::bench::{mpi::pingpong, Config};

/// Which MPI thread level to ask for.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Level {
    Single,
    Multiple,
}

/// MPI ping-pong between ranks 0 and 1 through shmpi's MPI layer.
#[derive(clap::Parser)]
struct Args {
    /// Fewer iterations and samples.
    #[arg(long)]
    quick: bool,
    /// The records' path (`mpi.sm`, `mpi.tcp`, ...).
    #[arg(long, default_value = "mpi.sm")]
    path: String,
    /// MPI's thread level.
    #[arg(long, value_enum, default_value = "single")]
    thread_level: Level,
    /// Print the records as `shmpi-record` lines (scripts/bench-mpi.sh).
    #[arg(long)]
    records: bool,
    /// Write the records as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<String>,
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Args = clap::Parser::parse();
    let cfg = Config {
        quick: args.quick,
        ..Config::default()
    };
    let level = match args.thread_level {
        Level::Single => ThreadLevel::Single,
        Level::Multiple => ThreadLevel::Multiple,
    };
    let path = args.path.clone();
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
        if args.records {
            // The lines scripts/bench-mpi.sh collects.
            for r in &report.records {
                println!("{}", r.to_line());
            }
        }
        if let Some(file) = &args.json {
            report.write_json(file)?;
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
