//! heat2d, the hybrid flagship, as a measurement: a 2-D Jacobi heat grid
//! whose rows are split over the ranks of a [`HybridWorld`] (halo rows
//! exchanged through it — mailboxes inside a node, MPI between nodes) and
//! each rank's rows over the threads of a [`Team`] sharing the rank's block.
//! Rank 0 also runs the stencil serially and compares the two grids bit for
//! bit. Path `heat2d.R{ranks}xT{threads}`, metric `time_ms` per step, size
//! the grid's side.

use std::time::Instant;

use super::Record;
use crate::error::{Error, SyncError};
use crate::hybrid::{split_range, HybridWorld, Team, TeamMember};
use crate::transport::Transport;

/// What rank 0 learns from a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Time per step, the median over ten parts of the run.
    pub record: Record,
    /// Cells that differ from the serial computation (0: identical).
    pub differing: usize,
    /// Sum of the final grid (a checksum to print).
    pub checksum: f64,
}

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

/// The part of `buf` (resized to fit) of `len` elements that starts at the
/// same offset within a 4 KiB page as `dst`. Copying between buffers whose
/// page offsets differ by a little makes the CPU see false dependencies
/// between loads and earlier stores ("4K aliasing"): measured here, copying
/// a thread's rows back into the shared region took 3× longer than the
/// stencil itself for one of two threads, and the team no faster than one
/// thread. With matching offsets it is a plain streaming copy.
fn page_matched(buf: &mut Vec<f64>, len: usize, dst: *const f64) -> std::ops::Range<usize> {
    const PAGE: usize = 4096;
    buf.resize(len + PAGE / 8, 0.0);
    let skip = (dst as usize % PAGE + PAGE - buf.as_ptr() as usize % PAGE) % PAGE / 8;
    skip..skip + len
}

/// Updates this thread's share of the interior rows (`interior`, local row
/// numbers) from buffer `src` into buffer `dst` of a block of `rows` rows:
/// the rows it needs are copied out of the shared region once, computed,
/// and copied back in one piece (through `scratch`, kept between steps).
fn update_rows(
    t: &TeamMember<'_>,
    (src, dst): (usize, usize),
    rows: usize,
    n: usize,
    interior: &std::ops::Range<usize>,
    (cur, next): &mut (Vec<f64>, Vec<f64>),
) -> Result<(), Error> {
    let part = t.range(interior.len());
    if part.is_empty() {
        return Ok(());
    }
    let (first, last) = (interior.start + part.start, interior.start + part.end);
    // Rows first-1 ..= last of the source, and rows first..last of the result.
    let input = t.shared::<f64>(
        src * rows * n * 8 + (first - 1) * n * 8,
        (last - first + 2) * n,
    )?;
    let output = t.shared::<f64>(dst * rows * n * 8 + first * n * 8, (last - first) * n)?;
    let (in_range, out_range) = (
        page_matched(cur, input.len(), input.as_ptr()),
        page_matched(next, output.len(), output.as_ptr()),
    );
    let (cur, next) = (&mut cur[in_range], &mut next[out_range]);
    input.copy_to_slice(cur);
    for (k, out) in next.chunks_exact_mut(n).enumerate() {
        step_row(cur, out, n, k + 1);
    }
    output.copy_from_slice(next);
    Ok(())
}

/// Runs `steps` steps on an `n`×`n` grid over `world` with `threads` threads
/// per rank. Collective; the outcome comes back on rank 0.
///
/// # Errors
///
/// [`SyncError::InvalidArgument`] for a grid smaller than 3×3, no steps or
/// no threads; the world's and the team's errors.
pub fn run(
    world: &mut HybridWorld,
    n: usize,
    steps: usize,
    threads: usize,
) -> Result<Option<Outcome>, Error> {
    if n < 3 || steps == 0 || threads == 0 {
        return Err(SyncError::InvalidArgument(
            "heat2d needs a grid of at least 3x3, a step and a thread",
        )
        .into());
    }
    let (me, size) = (world.rank(), world.size());
    // My rows of the global grid, and the block with one halo row each side.
    let mine = split_range(n, size, me);
    let lo = mine.start.saturating_sub(1);
    let hi = (mine.end + 1).min(n);
    let rows = hi - lo;
    // The block lives in the team's shared memory: buffers 0 and 1.
    let mut team = Team::new(threads, 2 * rows * n * 8)?;
    let init = initial(n, lo..hi);
    let up = (me > 0).then(|| me - 1);
    let down = (me + 1 < size).then(|| me + 1);
    // The interior rows I update (global rows 1..n-1 only), as local rows.
    let interior = (mine.start.max(1) - lo)..(mine.end.min(n - 1).max(mine.start.max(1)) - lo);
    // Byte offset of row `r` of buffer `buf`.
    let row_at = |buf: usize, r: usize| (buf * rows + r) * n * 8;
    // Time per step, measured over each tenth of the run.
    let mut per_step_ms = Vec::new();
    let chunk = (steps / 10).max(1);
    // Member 0 (this thread) exchanges the halos through the world between
    // team barriers (funnelled); every member updates its share of rows.
    let (done, workers) = team.run_funnelled(
        |t| -> Result<usize, Error> {
            t.shared::<f64>(0, rows * n)?.copy_from_slice(&init);
            t.shared::<f64>(rows * n * 8, rows * n)?
                .copy_from_slice(&init);
            let (mut cur, mut scratch) = (0, Default::default());
            let mut start = Instant::now();
            for step in 0..steps {
                for (peer, send_row, halo_row, tag_out, tag_in) in [
                    (up, mine.start - lo, 0, 1, 2),
                    (down, mine.end - 1 - lo, rows - 1, 2, 1),
                ] {
                    let Some(peer) = peer else { continue };
                    let edge = t.shared::<f64>(row_at(cur, send_row), n)?.to_vec();
                    let req = world.isend(peer, tag_out, bytemuck::cast_slice(&edge))?;
                    let halo = world.recv_pod::<f64>(peer, tag_in)?.data;
                    world.wait_send(req)?;
                    t.shared::<f64>(row_at(cur, halo_row), n)?
                        .copy_from_slice(&halo);
                }
                t.barrier()?; // halos in place
                update_rows(t, (cur, 1 - cur), rows, n, &interior, &mut scratch)?;
                t.barrier()?; // the new buffer complete
                cur = 1 - cur;
                if (step + 1) % chunk == 0 {
                    per_step_ms.push(start.elapsed().as_secs_f64() * 1e3 / chunk as f64);
                    start = Instant::now();
                }
            }
            Ok(cur)
        },
        |t| -> Result<(), Error> {
            let (mut cur, mut scratch) = (0, Default::default());
            for _ in 0..steps {
                t.barrier()?;
                update_rows(t, (cur, 1 - cur), rows, n, &interior, &mut scratch)?;
                t.barrier()?;
                cur = 1 - cur;
            }
            Ok(())
        },
    );
    let cur = done?;
    workers.into_iter().collect::<Result<(), Error>>()?;
    // Gather my rows at rank 0 and compare with the serial run.
    let (block, _) = team.run_funnelled(
        |t| {
            t.shared::<f64>(cur * rows * n * 8, rows * n)
                .map(|v| v.to_vec())
        },
        |_| (),
    );
    let block = block?;
    let my_rows = block[(mine.start - lo) * n..(mine.end - lo) * n].to_vec();
    let all = world.gather(0, &my_rows)?;
    let outcome = all.map(|parts| {
        let grid: Vec<f64> = parts.concat();
        let reference = serial(n, steps);
        let differing = grid.len().abs_diff(reference.len())
            + grid
                .iter()
                .zip(&reference)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
        Outcome {
            record: Record::from_samples(
                &format!("heat2d.R{size}xT{threads}"),
                "time_ms",
                n,
                &per_step_ms,
            ),
            differing,
            checksum: grid.iter().sum(),
        }
    });
    world.barrier()?;
    Ok(outcome)
}
