//! 2-D heat diffusion, hybrid: rows of the grid are split over the MPI
//! ranks (halo rows exchanged through a `HybridWorld` — mailboxes inside a
//! node, MPI between nodes), and each rank's rows over the threads of a
//! `Team` sharing the rank's block in memory. Rank 0 also runs the same
//! stencil serially and asserts that the distributed result is identical,
//! cell for cell.
//!
//! ```text
//! scripts/mpirun.sh -n 2 --threads 2 target/release/examples/heat2d [N] [STEPS] [THREADS] [--json FILE]
//! ```

use std::process::ExitCode;
use std::time::Instant;

use shmpi::bench::{Record, Report};
use shmpi::hybrid::{split_range, HybridWorld, Team};
use shmpi::mpi::{Mpi, ThreadLevel};
use shmpi::transport::Transport;

/// One Jacobi step of the 5-point stencil on rows `rows` of `cur` (each
/// row `n` wide, row 0 and `n - 1` columns held fixed), into `next`.
fn step_row(cur: &[f64], next: &mut [f64], n: usize, row: usize) {
    for (c, cell) in next.iter_mut().enumerate().take(n - 1).skip(1) {
        let i = row * n + c;
        *cell = 0.25 * (cur[i - n] + cur[i + n] + cur[i - 1] + cur[i + 1]);
    }
    next[0] = cur[row * n];
    next[n - 1] = cur[row * n + n - 1];
}

/// The whole grid, serially: the reference.
fn serial(n: usize, steps: usize) -> Vec<f64> {
    let mut cur = initial(n, 0..n);
    let mut next = cur.clone();
    for _ in 0..steps {
        for r in 1..n - 1 {
            let (a, b) = (r * n, r * n + n);
            step_row(&cur, &mut next[a..b], n, r);
        }
        std::mem::swap(&mut cur, &mut next);
    }
    cur
}

/// Rows `rows` of the initial grid: the top edge hot, the rest cold.
fn initial(n: usize, rows: std::ops::Range<usize>) -> Vec<f64> {
    rows.flat_map(|r| (0..n).map(move |_| if r == 0 { 1.0 } else { 0.0 }))
        .collect()
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let json = std::env::args().skip_while(|a| a != "--json").nth(1);
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(256);
    let steps: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let threads: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(2);
    let mpi = Mpi::init(ThreadLevel::Multiple)?;
    let mut world = HybridWorld::new(&mpi)?;
    let (me, size) = (world.rank(), world.size());
    // My rows of the global grid, and the block with one halo row each side.
    let mine = split_range(n, size, me);
    let lo = mine.start.saturating_sub(1);
    let hi = (mine.end + 1).min(n);
    let rows = hi - lo;
    let team = Team::new(threads, 2 * rows * n * 8)?;
    // The block lives in the team's shared memory: buffer 0 and buffer 1.
    let load = |team: &Team| -> shmpi::Result<()> {
        let init = initial(n, lo..hi);
        let r = team.run(|t| -> shmpi::Result<()> {
            if t.index() == 0 {
                t.shared::<f64>(0, rows * n)?.copy_from_slice(&init);
                t.shared::<f64>(rows * n * 8, rows * n)?
                    .copy_from_slice(&init);
            }
            Ok(())
        });
        r.into_iter().collect()
    };
    load(&team)?;
    let up = (me > 0).then(|| me - 1);
    let down = (me + 1 < size).then(|| me + 1);
    let start = Instant::now();
    let mut cur = 0usize;
    for _ in 0..steps {
        // Halo exchange on this thread (funnelled), from buffer `cur`.
        let block = team.run(|t| {
            (t.index() == 0).then(|| {
                t.shared::<f64>(cur * rows * n * 8, rows * n)
                    .map(|v| v.to_vec())
            })
        });
        let mut block = block
            .into_iter()
            .flatten()
            .next()
            .expect("thread 0 reads")?;
        let first_mine = (mine.start - lo) * n;
        let last_mine = (mine.end - 1 - lo) * n;
        if let Some(u) = up {
            let req = world.isend(
                u,
                1,
                bytemuck::cast_slice(&block[first_mine..first_mine + n]),
            )?;
            let halo = world.recv_pod::<f64>(u, 2)?.data;
            world.wait_send(req)?;
            block[..n].copy_from_slice(&halo);
        }
        if let Some(d) = down {
            let req = world.isend(d, 2, bytemuck::cast_slice(&block[last_mine..last_mine + n]))?;
            let halo = world.recv_pod::<f64>(d, 1)?.data;
            world.wait_send(req)?;
            let at = (rows - 1) * n;
            block[at..at + n].copy_from_slice(&halo);
        }
        // The threads update my interior rows (global rows 1..n-1 only).
        let interior: Vec<usize> = mine.clone().filter(|&g| g > 0 && g < n - 1).collect();
        let results = team.run(|t| -> shmpi::Result<()> {
            let dst = t.shared::<f64>((1 - cur) * rows * n * 8, rows * n)?;
            let part = split_range(interior.len(), t.size(), t.index());
            let mut out = vec![0.0; n];
            for &g in &interior[part] {
                let local = g - lo;
                step_row(&block, &mut out, n, local);
                for (c, v) in out.iter().enumerate() {
                    dst.set(local * n + c, *v);
                }
            }
            Ok(())
        });
        results.into_iter().collect::<shmpi::Result<()>>()?;
        cur = 1 - cur;
    }
    let elapsed = start.elapsed();
    // Gather my rows at rank 0 and compare with the serial run.
    let block = team.run(|t| {
        (t.index() == 0).then(|| {
            t.shared::<f64>(cur * rows * n * 8, rows * n)
                .map(|v| v.to_vec())
        })
    });
    let block = block
        .into_iter()
        .flatten()
        .next()
        .expect("thread 0 reads")?;
    let my_rows = block[(mine.start - lo) * n..(mine.end - lo) * n].to_vec();
    let all = world.gather(0, &my_rows)?;
    if let Some(parts) = all {
        let grid: Vec<f64> = parts.concat();
        let reference = serial(n, steps);
        assert_eq!(grid.len(), reference.len());
        let differing = grid
            .iter()
            .zip(&reference)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differing, 0, "distributed grid differs from the serial one");
        let ms = elapsed.as_secs_f64() * 1e3 / steps as f64;
        println!(
            "heat2d {n}x{n}, {steps} steps on {size} ranks x {threads} threads: {ms:.3} ms per step; identical to the serial run (sum {:.6})",
            grid.iter().sum::<f64>()
        );
        if let Some(file) = json {
            let report = Report {
                records: vec![Record::from_samples(
                    &format!("heat2d.R{size}xT{threads}"),
                    "time_ms",
                    n,
                    &[ms],
                )],
                mpi: Some(shmpi::mpi::library_version()),
            };
            report.write_json(&file)?;
        }
    }
    world.barrier()?;
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
