//! Ping-pong between rank 0 and every other rank through a `HybridWorld`:
//! one-way latency to ranks on the same node (shared-memory mailbox,
//! `hybrid.intranode`) and on other nodes (MPI, `hybrid.internode`).
//! At 8 B also with rank 0 receiving from any source (`.any`), which must
//! watch the mailbox and MPI at once. Asserts every reply.
//!
//! ```text
//! SHMPI_RANKS_PER_NODE=2 scripts/mpirun.sh -n 4 target/release/examples/hybrid_pingpong [--json FILE]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use shmpi::bench::{Record, Report};
use shmpi::hybrid::HybridWorld;
use shmpi::mpi::{Mpi, ThreadLevel};
use shmpi::transport::{Source, Transport};

const SIZES: [usize; 3] = [8, 1 << 10, 64 << 10];

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mpi = Mpi::init(ThreadLevel::Multiple)?;
    let mut world = HybridWorld::new(&mpi)?;
    let (me, n) = (world.rank(), world.size());
    let mut report = Report {
        mpi: Some(shmpi::mpi::library_version()),
        ..Report::default()
    };
    for peer in 1..n {
        let path = if world.is_local(peer) {
            "hybrid.intranode"
        } else {
            "hybrid.internode"
        };
        // Each size with a receive from the peer; 8 B also with a receive
        // from any source, which has to watch both paths (`.any`).
        for (size, any) in SIZES.iter().map(|&s| (s, false)).chain([(8, true)]) {
            let from = if any { Source::Any } else { Source::Rank(peer) };
            let iters = if size <= 1024 { 2000 } else { 200 };
            let mut samples = Vec::new();
            for _ in 0..4 {
                world.barrier()?;
                let start = Instant::now();
                for k in 0..iters {
                    let payload = vec![(k % 251) as u8; size];
                    if me == 0 {
                        world.send(peer, 1, &payload)?;
                        let back = world.recv(from, 1)?;
                        assert_eq!(back.data, payload, "reply {k} from {peer}");
                    } else if me == peer {
                        let m = world.recv(0, 1)?;
                        world.send(0, 1, &m.data)?;
                    }
                }
                samples.push(start.elapsed().as_secs_f64() * 1e9 / f64::from(iters) / 2.0);
            }
            samples.remove(0);
            if me == 0 {
                let mut r = Record::from_samples(path, "latency_ns", size, &samples);
                r.path = format!("{path}{}.r{peer}", if any { ".any" } else { "" });
                report.records.push(r);
            }
        }
    }
    if me == 0 {
        println!("{}", report.to_markdown());
        if let Some(i) = args.iter().position(|a| a == "--json") {
            if let Some(file) = args.get(i + 1) {
                report.write_json(file)?;
            }
        }
    }
    world.barrier()?;
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
