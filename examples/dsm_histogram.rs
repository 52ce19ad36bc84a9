//! A global histogram in a distributed array: every rank draws random
//! values and adds each to its bin with `fetch_add` (a message to the bin's
//! owner, or a one-sided MPI operation); rank 0 then reads the histogram
//! and checks it against a local computation of every rank's draws. Exits
//! non-zero on a mismatch.
//!
//! ```text
//! scripts/mpirun.sh -n 4 target/release/examples/dsm_histogram [--bins B] [--draws N] [--backend owner|progress|hybrid|rma|all]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use shmpi::dsm::{Backend, DistArray};
use shmpi::hybrid::HybridWorld;
use shmpi::mpi::{Mpi, MpiTransport, ThreadLevel};

/// xorshift64*: rank `r`'s draws can be replayed by any rank.
fn draws(rank: usize, n: usize, bins: usize) -> impl Iterator<Item = usize> {
    let mut x = (rank as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n).map(move |_| {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        // A skewed distribution: low bins are hot (contention on owners).
        let u = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u) * bins as f64) as usize % bins
    })
}

fn histogram<B: Backend<u64>>(
    name: &str,
    mut hist: DistArray<u64, B>,
    draws_per_rank: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let (me, n, bins) = (hist.backend().rank(), hist.backend().size(), hist.len());
    let start = Instant::now();
    for bin in draws(me, draws_per_rank, bins) {
        hist.fetch_add(bin, 1)?;
    }
    hist.barrier()?;
    let took = start.elapsed();
    if me == 0 {
        let mut global = vec![0u64; bins];
        hist.get_range(0, &mut global)?;
        let mut local = vec![0u64; bins];
        for r in 0..n {
            for bin in draws(r, draws_per_rank, bins) {
                local[bin] += 1;
            }
        }
        if global != local {
            let first = (0..bins).find(|&b| global[b] != local[b]).unwrap_or(0);
            return Err(format!(
                "{name}: bin {first} holds {} instead of {}",
                global[first], local[first]
            )
            .into());
        }
        println!(
            "dsm_histogram [{name}]: {} draws on {n} ranks into {bins} bins in {:.1} ms ({:.2} µs per fetch_add); identical to the local computation",
            draws_per_rank * n,
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e6 / draws_per_rank as f64
        );
    }
    hist.barrier()?;
    Ok(())
}

/// Which backends to run.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Which {
    All,
    Owner,
    Progress,
    Hybrid,
    Rma,
}

/// A global histogram on a distributed array, checked against a local one.
#[derive(clap::Parser)]
struct Args {
    /// Bins of the histogram (elements of the array).
    #[arg(long, default_value_t = 64)]
    bins: usize,
    /// Draws per rank.
    #[arg(long, default_value_t = 20_000)]
    draws: usize,
    /// Which backend (default: every one, in turn).
    #[arg(long, value_enum, default_value = "all")]
    backend: Which,
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Args = clap::Parser::parse();
    let (bins, n) = (args.bins, args.draws);
    let mpi = Mpi::init(ThreadLevel::Multiple)?;
    let world = mpi.dup_world()?;
    let wants = |b| args.backend == Which::All || args.backend == b;
    if wants(Which::Owner) {
        histogram(
            "owner protocol, MPI",
            DistArray::owner(MpiTransport::new(world.dup()?), bins)?,
            n,
        )?;
    }
    if wants(Which::Progress) {
        histogram(
            "owner protocol, MPI, progress thread",
            DistArray::with_progress_thread(&world, bins)?,
            n,
        )?;
    }
    if wants(Which::Hybrid) {
        let hybrid = HybridWorld::new(&mpi)?;
        histogram(
            "owner protocol, hybrid world",
            DistArray::owner(hybrid.dup()?, bins)?,
            n,
        )?;
    }
    if wants(Which::Rma) {
        histogram("one-sided MPI", DistArray::rma(&world, bins)?, n)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dsm_histogram: {e}");
            ExitCode::FAILURE
        }
    }
}
