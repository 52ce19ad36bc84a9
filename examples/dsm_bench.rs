//! What emulating shared memory on messages costs: the latency of reading
//! one 8-byte element of a distributed array, against one MPI round trip
//! (8 bytes there and back) between the same two ranks, in one run.
//!
//! - `dsm.local.get`: rank 1 reads its own element;
//! - `dsm.owner.get`: rank 1 reads rank 0's element by the owner protocol
//!   while rank 0 waits inside a call on the array (serving);
//! - `dsm.owner.get.progress`: the same while rank 0 is outside the array
//!   (in an `MPI_Barrier`), its progress thread serving;
//! - `dsm.rma.get`: rank 1 reads rank 0's element with one-sided MPI;
//! - `mpi.roundtrip`: send 8 bytes to rank 0 and receive its 8-byte reply.
//!
//! ```text
//! scripts/mpirun.sh -n 2 target/release/examples/dsm_bench [--quick] [--json FILE]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use shmpi::bench::{Record, Report};
use shmpi::dsm::{Backend, DistArray};
use shmpi::mpi::{Comm, Mpi, MpiTransport, ThreadLevel};

/// Median-able samples of `iters` calls of `op`, in ns per call.
fn samples(
    count: usize,
    iters: u32,
    mut op: impl FnMut() -> shmpi::Result<()>,
) -> shmpi::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..=count {
        let start = Instant::now();
        for _ in 0..iters {
            op()?;
        }
        out.push(start.elapsed().as_secs_f64() * 1e9 / f64::from(iters));
    }
    out.remove(0); // warm-up
    Ok(out)
}

/// Rank 1 reads element `index` `iters` times per sample; rank 0 waits in
/// `wait_owner` (inside the array, or outside it).
fn get_latency<B: Backend<u64>>(
    array: &mut DistArray<u64, B>,
    index: usize,
    (count, iters): (usize, u32),
    world: &Comm,
    owner_inside: bool,
) -> shmpi::Result<Option<Vec<f64>>> {
    let me = world.rank();
    let result = if me == 1 {
        let s = samples(count, iters, || array.get(index).map(drop))?;
        Some(s)
    } else {
        None
    };
    if owner_inside {
        array.barrier()?;
    } else {
        world.barrier()?;
        array.barrier()?;
    }
    Ok(result)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1));
    let shape = if quick { (3, 2_000) } else { (7, 20_000) };
    let mpi = Mpi::init(ThreadLevel::Multiple)?;
    let world = mpi.world()?;
    if world.size() != 2 {
        return Err("dsm_bench runs on 2 ranks".into());
    }
    let me = world.rank();
    let mut rows: Vec<(&str, Option<Vec<f64>>)> = Vec::new();

    // The baseline: an 8-byte MPI round trip from rank 1 to rank 0.
    world.barrier()?;
    let (count, iters) = shape;
    let mut buf = [0u8; 8];
    if me == 1 {
        rows.push((
            "mpi.roundtrip",
            Some(samples(count, iters, || {
                world.send(0, 1, &buf)?;
                world.recv_into(0, 1, &mut buf)?;
                Ok(())
            })?),
        ));
    } else {
        for _ in 0..=count {
            for _ in 0..iters {
                world.recv_into(1, 1, &mut buf)?;
                world.send(1, 1, &buf)?;
            }
        }
    }
    // Element 0 is rank 0's, element 1 rank 1's.
    let mut owner = DistArray::<u64, _>::owner(MpiTransport::new(world.dup()?), 2)?;
    rows.push((
        "dsm.local.get",
        get_latency(&mut owner, 1, shape, &world, true)?,
    ));
    rows.push((
        "dsm.owner.get",
        get_latency(&mut owner, 0, shape, &world, true)?,
    ));
    drop(owner);
    let mut progress = DistArray::<u64, _>::with_progress_thread(&world, 2)?;
    let slow = (shape.0, shape.1 / 10);
    rows.push((
        "dsm.owner.get.progress",
        get_latency(&mut progress, 0, slow, &world, false)?,
    ));
    drop(progress);
    let mut rma = DistArray::<u64, _>::rma(&world, 2)?;
    rows.push((
        "dsm.rma.get",
        get_latency(&mut rma, 0, shape, &world, true)?,
    ));
    drop(rma);

    if me == 1 {
        let mut report = Report {
            mpi: Some(shmpi::mpi::library_version()),
            ..Report::default()
        };
        for (path, s) in rows {
            if let Some(s) = s {
                report
                    .records
                    .push(Record::from_samples(path, "latency_ns", 8, &s));
            }
        }
        println!("{}", report.to_markdown());
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
        if let Some(file) = json {
            report.write_json(file)?;
            println!("records written to {file}");
        }
    }
    world.barrier()?;
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
