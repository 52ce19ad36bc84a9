//! heat2d, the hybrid flagship, as a measurement: a 2-D Jacobi heat grid
//! whose rows are split over ranks, in three layouts, each computed in
//! place and compared bit for bit with a serial run on rank 0:
//!
//! - **ranks × team threads** (`run`, feature `mpi`; path `heat2d.R{r}xT{t}`): each
//!   rank's block (its rows and one halo row each side) is a [`Team`](shmpi::hybrid::Team)'s
//!   phased double buffer; the threads compute their rows in place, and
//!   member 0 — which owns the rows outside the split window — computes
//!   the edge rows first, sends them, computes its share and receives the
//!   halos, all inside one phase: one team barrier a step. With one
//!   thread a rank this is **pure MPI**: halos between all ranks.
//! - **node-shared grid** (`run_node`, feature `mpi`; path `heat2d.node.R{r}`): the
//!   ranks of a node compute in place on one `NodeArray` holding the
//!   node's block twice; only the ranks at a node's edge exchange halos,
//!   with the neighbouring node; one split node barrier a step (a rank
//!   arrives once its edge rows are written and computes the rest late).
//! - **the machine's limit** ([`limit`], path `limit.heat2d.T{t}`): the
//!   same stencil over plain scoped threads and a spin barrier.
//!
//! No row is copied on any path but the halos' messages. Metric `time_ms`
//! per step (the median over ten parts of the run); size the grid's side.

use std::ops::Range;
use std::time::Instant;

use super::barrier::SpinBarrier;
use super::Record;
use shmpi::error::{Error, SyncError};
use shmpi::hybrid::{second_buffer_at, split_range};
use shmpi::sync::affinity::{allowed_cpus, pin_this_thread, AffinityGuard};

#[cfg(feature = "mpi")]
mod layouts;
#[cfg(feature = "mpi")]
pub use layouts::{run, run_node};

/// The grid edges `shmpi bench` measures: two that fit in cache, two that
/// do not.
pub const EDGES: &[usize] = &[128, 256, 1024, 2048];

/// Steps for a run of about 0.6 s (quick: 0.15 s) at one thread, at 1.5 ns
/// a cell, within 10..=20,000.
pub fn steps_for(n: usize, quick: bool) -> usize {
    let seconds = if quick { 0.15 } else { 0.6 };
    ((seconds / (n * n) as f64 / 1.5e-9) as usize).clamp(10, 20_000)
}

/// `out`, when its grid equals the serial run's bit for bit.
///
/// # Errors
///
/// How many cells differ, when any does.
pub fn checked(out: Outcome) -> Result<Outcome, String> {
    if out.differing == 0 {
        Ok(out)
    } else {
        Err(format!(
            "{} at {}²: {} cells differ from the serial run",
            out.record.path, out.record.size, out.differing
        ))
    }
}

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

/// One Jacobi step of the 5-point stencil for row `row` of `cur` (rows `n`
/// wide; the first and last columns held fixed), into `next` (that row).
fn step_row(cur: &[f64], next: &mut [f64], n: usize, row: usize) {
    let (above, here, below) = (
        &cur[(row - 1) * n..row * n],
        &cur[row * n..(row + 1) * n],
        &cur[(row + 1) * n..(row + 2) * n],
    );
    next[0] = here[0];
    next[n - 1] = here[n - 1];
    for c in 1..n - 1 {
        next[c] = 0.25 * (above[c] + below[c] + here[c - 1] + here[c + 1]);
    }
}

/// The whole grid, serially: the reference.
fn serial(n: usize, steps: usize) -> Vec<f64> {
    let mut cur = initial(n, 0..n);
    let mut next = cur.clone();
    for _ in 0..steps {
        for (r, row) in next.chunks_exact_mut(n).enumerate().take(n - 1).skip(1) {
            step_row(&cur, row, n, r);
        }
        std::mem::swap(&mut cur, &mut next);
    }
    cur
}

/// Rows `rows` of the initial grid: the top edge hot, the rest cold.
fn initial(n: usize, rows: Range<usize>) -> Vec<f64> {
    rows.flat_map(|r| (0..n).map(move |_| if r == 0 { 1.0 } else { 0.0 }))
        .collect()
}

fn check_args(n: usize, steps: usize, threads: usize) -> Result<(), Error> {
    if n < 3 || steps == 0 || threads == 0 {
        return Err(SyncError::InvalidArgument(
            "heat2d needs a grid of at least 3x3, a step and a thread",
        )
        .into());
    }
    Ok(())
}

/// Computes rows `first..` of a block into `rows` (whole rows, every one
/// an interior row) from the whole read buffer `read`: the stencil's loop.
fn compute(read: &[f64], first: usize, rows: &mut [f64], n: usize) {
    for (k, row) in rows.chunks_exact_mut(n).enumerate() {
        step_row(read, row, n, first + k);
    }
}

/// Times each tenth of a run of `steps` steps.
struct StepClock {
    chunk: usize,
    start: Instant,
    per_step_ms: Vec<f64>,
}

impl StepClock {
    fn new(steps: usize) -> Self {
        StepClock {
            chunk: (steps / 10).max(1),
            start: Instant::now(),
            per_step_ms: Vec::new(),
        }
    }

    fn stepped(&mut self, step: usize) {
        if (step + 1).is_multiple_of(self.chunk) {
            let ms = self.start.elapsed().as_secs_f64() * 1e3 / self.chunk as f64;
            self.per_step_ms.push(ms);
            self.start = Instant::now();
        }
    }
}

/// The stencil over `threads` plain scoped threads, one per CPU, and the
/// minimal spin barrier (`limit.barrier`'s) —
/// what this machine does without shmpi, the limit a team is measured
/// against (`limit.heat2d.T{threads}`). Checked against the serial run
/// like the others.
///
/// # Errors
///
/// [`SyncError::InvalidArgument`] as `run`.
pub fn limit(n: usize, steps: usize, threads: usize) -> Result<Outcome, Error> {
    check_args(n, steps, threads)?;
    // Both grids in one anonymous mapping, placed and advised as a team's
    // buffers are, so the limit differs from a team only in its threads.
    let second = second_buffer_at::<f64>(n * n, n);
    let memory = private_memory((second + n * n) * 8)?;
    let base = memory.as_mut_ptr().cast::<f64>();
    let pointers = [Shared(base), Shared(base.wrapping_add(second))];
    let init = initial(n, 0..n);
    for p in &pointers {
        // SAFETY: each grid holds n * n f64 inside the mapping (sized
        // above), which no thread uses yet.
        unsafe { std::slice::from_raw_parts_mut(p.0, n * n) }.copy_from_slice(&init);
    }
    let barrier = SpinBarrier::new(threads as u32);
    // One CPU each, as a team takes them.
    let allowed = allowed_cpus();
    let _restore = AffinityGuard::save();
    let work = |t: usize, mut clock: Option<&mut StepClock>| {
        if threads <= allowed.len() {
            pin_this_thread(allowed[t]);
        }
        let mine = split_range(n - 2, threads, t);
        for step in 0..steps {
            let (cur, next) = (&pointers[step % 2], &pointers[1 - step % 2]);
            // SAFETY: in step `step` every thread reads grid `step % 2` and
            // writes only its own rows (split_range: disjoint) of the other;
            // the spin barrier (acquire-release) separates steps, so no
            // element is written while another thread reads it. Both grids
            // lie inside the mapping, which outlives the threads.
            let (cur, next) = unsafe {
                (
                    std::slice::from_raw_parts(cur.0, n * n),
                    std::slice::from_raw_parts_mut(
                        next.0.add((1 + mine.start) * n),
                        mine.len() * n,
                    ),
                )
            };
            compute(cur, 1 + mine.start, next, n);
            barrier.wait();
            if let Some(c) = clock.as_deref_mut() {
                c.stepped(step);
            }
        }
    };
    let mut per_step_ms = Vec::new();
    std::thread::scope(|s| {
        for t in 1..threads {
            let work = &work;
            s.spawn(move || work(t, None));
        }
        let mut clock = StepClock::new(steps);
        work(0, Some(&mut clock));
        per_step_ms = clock.per_step_ms;
    });
    // SAFETY: the threads are done; the grid lies inside the mapping.
    let grid = unsafe { std::slice::from_raw_parts(pointers[steps % 2].0, n * n) };
    let reference = serial(n, steps);
    Ok(Outcome {
        record: Record::from_samples(
            &format!("limit.heat2d.T{threads}"),
            "time_ms",
            n,
            &per_step_ms,
        ),
        differing: grid
            .iter()
            .zip(&reference)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count(),
        checksum: grid.iter().sum(),
    })
}

/// A grid's base pointer, shared by the limit's threads.
struct Shared(*mut f64);

// SAFETY: the threads touch the grids only as the limit's step protocol
// allows (see the SAFETY comment there).
unsafe impl Sync for Shared {}

/// `bytes` of zeroed memory only this process maps, advised for
/// transparent huge pages as a team's buffers are (THP in `madvise` mode,
/// Debian's default).
fn private_memory(bytes: usize) -> Result<memmap2::MmapRaw, SyncError> {
    let memory = memmap2::MmapOptions::new()
        .len(bytes.max(1))
        .map_anon()
        .map(memmap2::MmapRaw::from)
        .map_err(|e| SyncError::Os {
            op: "mmap",
            errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        })?;
    // Best effort, as for a team: without huge pages the grid still works.
    let _ = memory.advise(memmap2::Advice::HugePage);
    Ok(memory)
}
