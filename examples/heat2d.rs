//! 2-D heat diffusion, hybrid: rows of the grid are split over the MPI
//! ranks (halo rows exchanged through a `HybridWorld` — mailboxes inside a
//! node, MPI between nodes), and each rank's rows over the threads of a
//! `Team` sharing the rank's block in memory (`shmpi::bench::heat2d`, also
//! behind `shmpi bench`'s heat2d rows). Rank 0 runs the same stencil
//! serially and the example fails unless the distributed result is
//! identical, bit for bit.
//!
//! ```text
//! scripts/mpirun.sh -n 2 --threads 2 target/release/examples/heat2d [N] [STEPS] [--threads T] [--json FILE]
//! ```

use std::process::ExitCode;

use shmpi::bench::{heat2d, Report};
use shmpi::hybrid::HybridWorld;
use shmpi::mpi::{Mpi, ThreadLevel};

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut positional = Vec::new();
    let (mut json, mut threads) = (None, 2usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = args.next(),
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|t| t.parse().ok())
                    .ok_or("--threads needs a number")?
            }
            _ => positional.push(a),
        }
    }
    let n: usize = positional.first().map_or(Ok(256), |a| a.parse())?;
    let steps: usize = positional.get(1).map_or(Ok(200), |a| a.parse())?;
    let mpi = Mpi::init(ThreadLevel::Multiple)?;
    let mut world = HybridWorld::new(&mpi)?;
    let size = shmpi::transport::Transport::size(&world);
    if let Some(out) = heat2d::run(&mut world, n, steps, threads)? {
        if out.differing != 0 {
            return Err(format!("{} cells differ from the serial run", out.differing).into());
        }
        println!(
            "heat2d {n}x{n}, {steps} steps on {size} ranks x {threads} threads: {:.3} ms per step (median of {} parts); identical to the serial run (sum {:.6})",
            out.record.median, out.record.n, out.checksum
        );
        if let Some(file) = json {
            let report = Report {
                records: vec![out.record],
                mpi: Some(shmpi::mpi::library_version()),
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
