//! 2-D heat diffusion, hybrid, computed in place (`shmpi_cli::bench::heat2d`,
//! also behind `shmpi bench`'s heat2d rows). Rows of the grid are split
//! over the MPI ranks, in one of two layouts:
//! - ranks × threads (default): halo rows exchanged through a
//!   `HybridWorld` (mailboxes inside a node, MPI between nodes), each
//!   rank's rows computed by the threads of a `Team` in place on its
//!   phased double buffer (`--threads 1`: pure MPI);
//! - `--node`: the ranks of a node compute in place on one node array;
//!   halos only between nodes;
//! - `--limit`: no MPI — `--threads` plain scoped threads, the machine's
//!   limit the team is measured against.
//!
//! Rank 0 runs the same stencil serially and the example fails unless the
//! distributed result is identical, bit for bit.
//!
//! ```text
//! scripts/mpirun.sh -n 2 --threads 2 target/release/examples/heat2d [N] [STEPS] [--threads T | --node | --limit] [--json FILE]
//! ```

use std::process::ExitCode;

use shmpi::hybrid::HybridWorld;
use shmpi::mpi::{Mpi, ThreadLevel};
use shmpi_cli::bench::{heat2d, Report};

/// 2-D heat diffusion computed in place, checked against a serial run.
#[derive(clap::Parser)]
struct Args {
    /// Grid edge (cells).
    #[arg(default_value_t = 256)]
    n: usize,
    /// Time steps (default: enough for a stable timing at this edge).
    steps: Option<usize>,
    /// Team threads per rank (with --limit: plain threads).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The node's ranks compute in place on one node array.
    #[arg(long, conflicts_with = "limit")]
    node: bool,
    /// No MPI: plain scoped threads, the limit the team is measured against.
    #[arg(long)]
    limit: bool,
    /// Write the record as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<String>,
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let Args {
        n,
        steps,
        threads,
        node,
        limit,
        json,
    } = clap::Parser::parse();
    let steps = steps.unwrap_or_else(|| heat2d::steps_for(n, false));
    let (out, what) = if limit {
        // The machine's limit: plain threads, no MPI.
        let out = heat2d::limit(n, steps, threads)?;
        (Some(out), format!("{threads} plain threads (the limit)"))
    } else {
        let mpi = Mpi::init(ThreadLevel::Multiple)?;
        let mut world = HybridWorld::new(&mpi)?;
        let size = shmpi::transport::Transport::size(&world);
        if node {
            let out = heat2d::run_node(&mut world, n, steps)?;
            (out, format!("{size} ranks in place on node arrays"))
        } else {
            let out = heat2d::run(&mut world, n, steps, threads)?;
            (out, format!("{size} ranks x {threads} threads"))
        }
    };
    if let Some(out) = out {
        let out = heat2d::checked(out)?;
        println!(
            "heat2d {n}x{n}, {steps} steps on {what}: {:.3} ms per step (median of {} parts); identical to the serial run (sum {:.6})",
            out.record.median, out.record.n, out.checksum
        );
        // The record for scripts (scripts/bench-hybrid.sh collects these).
        println!("{}", out.record.to_line());
        if let Some(file) = json {
            let report = Report {
                records: vec![out.record],
                mpi: (!limit).then(shmpi::mpi::library_version),
            };
            report.write_json(&file)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heat2d: {e}");
            ExitCode::FAILURE
        }
    }
}
