//! Ping-pong between rank 0 and every other rank through a `HybridWorld`:
//! one-way latency to ranks on the same node (shared-memory mailbox,
//! `hybrid.intranode`) and on other nodes (MPI, `hybrid.internode`), and at
//! 8 B with a receive from any source (`.any`), which must watch both paths
//! (`shmpi_cli::bench::mpi::hybrid`). Every reply is checked.
//!
//! ```text
//! SHMPI_RANKS_PER_NODE=2 scripts/mpirun.sh -n 4 target/release/examples/hybrid_pingpong [--quick] [--json FILE]
//! ```

use std::process::ExitCode;

use shmpi::hybrid::HybridWorld;
use shmpi::mpi::{Mpi, ThreadLevel};
use shmpi_cli::bench::{mpi::hybrid, Config};

/// Hybrid-world ping-pong from rank 0 to every other rank.
#[derive(clap::Parser)]
struct Args {
    /// Fewer iterations and samples.
    #[arg(long)]
    quick: bool,
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
    let mpi = Mpi::init(ThreadLevel::Multiple)?;
    let mut world = HybridWorld::new(&mpi)?;
    if let Some(report) = hybrid(&mut world, &cfg)? {
        println!("{}", report.to_markdown());
        if let Some(file) = &args.json {
            report.write_json(file)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hybrid_pingpong: {e}");
            ExitCode::FAILURE
        }
    }
}
