//! What emulating shared memory on messages costs: the latency of reading
//! one 8-byte element of a distributed array, against one MPI round trip
//! between the same two ranks, in one run (`shmpi_cli::bench::mpi::dsm`):
//! `dsm.local.get`, `dsm.owner.get` (the owner inside a call on the array),
//! `dsm.owner.get.progress` (the owner elsewhere, its progress thread
//! serving), `dsm.rma.get`, and the baseline `mpi.roundtrip`.
//!
//! With `--single` MPI runs at `MPI_THREAD_SINGLE`, the level the owner
//! protocol without a progress thread needs, and the round trip is measured
//! at that level too (the progress-thread row needs MULTIPLE and is left
//! out).
//!
//! ```text
//! scripts/mpirun.sh -n 2 --threads 2 target/release/examples/dsm_bench [--quick] [--single] [--json FILE] [--records]
//! ```

use std::process::ExitCode;

use shmpi::mpi::{Mpi, ThreadLevel};
use shmpi_cli::bench::{mpi::dsm, Config};

/// What emulating shared memory on messages costs.
#[derive(clap::Parser)]
struct Args {
    /// Fewer iterations and samples.
    #[arg(long)]
    quick: bool,
    /// MPI_THREAD_SINGLE (the owner protocol's level; no progress-thread
    /// row) instead of MULTIPLE.
    #[arg(long)]
    single: bool,
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
    let level = if args.single {
        ThreadLevel::Single
    } else {
        ThreadLevel::Multiple
    };
    let mpi = Mpi::init(level)?;
    println!("MPI thread level: {}", mpi.thread_level().name());
    let world = mpi.dup_world()?;
    if world.size() != 2 {
        return Err("dsm_bench runs on 2 ranks".into());
    }
    if let Some(report) = dsm(&world, &cfg)? {
        println!("{}", report.to_markdown());
        if args.records {
            // The lines scripts/bench-mpi.sh collects.
            for r in &report.records {
                println!("{}", r.to_line());
            }
        }
        if let Some(base) = report
            .find("mpi.roundtrip", "latency_ns", 8)
            .map(|r| r.median)
        {
            for path in [
                "dsm.local.get",
                "dsm.owner.get",
                "dsm.owner.get.progress",
                "dsm.rma.get",
            ] {
                if let Some(r) = report.find(path, "latency_ns", 8) {
                    println!("{path}: {:.3}x one MPI round trip", r.median / base);
                }
            }
        }
        if let Some(file) = &args.json {
            report.write_json(file)?;
            println!("records written to {file}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dsm_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
