//! OSU-style ping-pong between ranks 0 and 1 through shmpi's MPI bindings:
//! one-way latency (half the round trip) and bandwidth (a window of
//! non-blocking sends, then an acknowledgement). Prints a table; `--json
//! FILE` writes the benchmark records of DESIGN.md.
//!
//! ```text
//! scripts/mpirun.sh -n 2 target/release/examples/mpi_pingpong [--quick] [--json FILE]
//!     [--path mpi.sm|mpi.tcp] [--thread-level single|multiple]
//! ```
//! (`--path mpi.tcp` labels a run launched with `--mca btl tcp,self`, e.g.
//! `scripts/mpirun.sh --tcp -n 2 ...`.)

use std::process::ExitCode;
use std::time::Instant;

use shmpi::bench::{Record, Report};
use shmpi::mpi::{Mpi, ThreadLevel};

const LAT_SIZES: [usize; 5] = [8, 64, 1 << 10, 64 << 10, 1 << 20];
const BW_SIZES: [usize; 3] = [64 << 10, 1 << 20, 4 << 20];

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let level = match arg(&args, "--thread-level").as_deref() {
        Some("multiple") => ThreadLevel::Multiple,
        _ => ThreadLevel::Single,
    };
    let path = arg(&args, "--path").unwrap_or_else(|| "mpi.sm".to_owned());
    let mpi = Mpi::init(level)?;
    let world = mpi.world()?;
    let me = world.rank();
    if world.size() < 2 {
        eprintln!("mpi_pingpong needs 2 ranks");
        return Ok(());
    }
    let samples = if quick { 3 } else { 7 };
    let mut buf = vec![0x5Au8; 4 << 20];
    let mut report = Report {
        mpi: Some(shmpi::mpi::library_version()),
        ..Report::default()
    };
    for size in LAT_SIZES {
        let iters: u32 = match size {
            s if s <= 1024 => 10_000,
            s if s <= 64 << 10 => 1_000,
            _ => 100,
        } / if quick { 4 } else { 1 };
        let mut out = Vec::new();
        for _ in 0..=samples {
            world.barrier()?;
            let start = Instant::now();
            for _ in 0..iters {
                if me == 0 {
                    world.send(1, 1, &buf[..size])?;
                    world.recv_into(1, 1, &mut buf)?;
                } else if me == 1 {
                    let st = world.recv_into(0, 1, &mut buf)?;
                    world.send(0, 1, &buf[..st.len])?;
                }
            }
            out.push(start.elapsed().as_secs_f64() * 1e9 / f64::from(iters) / 2.0);
        }
        out.remove(0);
        report
            .records
            .push(Record::from_samples(&path, "latency_ns", size, &out));
    }
    for size in BW_SIZES {
        let window = 64usize.min((64 << 20) / size).max(4);
        let mut out = Vec::new();
        for _ in 0..=samples {
            world.barrier()?;
            let start = Instant::now();
            if me == 0 {
                let reqs: Vec<_> = (0..window)
                    .map(|_| world.isend(1, 2, &buf[..size]))
                    .collect::<Result<_, _>>()?;
                for r in reqs {
                    r.wait()?;
                }
                world.recv(1, 3)?;
            } else if me == 1 {
                let mut rbuf = vec![0u8; size];
                for _ in 0..window {
                    world.recv_into(0, 2, &mut rbuf)?;
                }
                world.send(0, 3, &[])?;
            }
            out.push((window * size) as f64 / start.elapsed().as_secs_f64() / 1e6);
        }
        out.remove(0);
        report
            .records
            .push(Record::from_samples(&path, "bandwidth_mbps", size, &out));
    }
    if me == 0 {
        println!(
            "{} ({}, {})",
            path,
            mpi.thread_level().name(),
            report.mpi.as_deref().unwrap_or("")
        );
        println!("{}", report.to_markdown());
        if let Some(file) = arg(&args, "--json") {
            report.write_json(&file)?;
            println!("records written to {file} ({} rows)", report.records.len());
        }
    }
    world.barrier()?;
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
