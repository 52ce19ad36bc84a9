//! A token travels around all ranks, each adding its rank + 1; after every
//! lap rank 0 checks the checksum. Asserts its own result.
//!
//! ```text
//! scripts/mpirun.sh -n 4 target/release/examples/mpi_ring [LAPS]
//! ```

use shmpi::transport::Wait;
use std::process::ExitCode;

use shmpi::mpi::{Mpi, ThreadLevel};

/// A token around all ranks, checked every lap.
#[derive(clap::Parser)]
struct Args {
    /// Laps around the ring.
    #[arg(default_value_t = 100)]
    laps: u64,
}

fn run() -> shmpi::Result<()> {
    let Args { laps } = clap::Parser::parse();
    let mpi = Mpi::init(ThreadLevel::Single)?;
    let world = mpi.dup_world()?;
    let (me, n) = (world.rank(), world.size());
    let lap_sum = (n * (n + 1) / 2) as u64;
    let (next, prev) = ((me + 1) % n, (me + n - 1) % n);
    for lap in 0..laps {
        if me == 0 {
            world.send_pod(next % n, 1, &[1u64, lap])?;
            let token = world.recv_pod::<u64>(prev, 1, Wait::Forever)?;
            let expect = if n == 1 { 1 } else { lap_sum };
            assert_eq!(token, [expect, lap], "lap {lap}: checksum");
        } else {
            let token = world.recv_pod::<u64>(prev, 1, Wait::Forever)?;
            assert_eq!(token[1], lap, "lap number");
            world.send_pod(next, 1, &[token[0] + me as u64 + 1, lap])?;
        }
    }
    world.barrier()?;
    if me == 0 {
        println!(
            "mpi_ring: {laps} laps around {n} ranks, checksum {lap_sum} every lap ({}; {})",
            mpi.thread_level().name(),
            shmpi::mpi::library_version()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpi_ring: {e}");
            ExitCode::FAILURE
        }
    }
}
