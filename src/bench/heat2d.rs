//! heat2d, the hybrid flagship, as a measurement: a 2-D Jacobi heat grid
//! whose rows are split over ranks, in three layouts, each computed in
//! place and compared bit for bit with a serial run on rank 0:
//!
//! - **ranks × team threads** ([`run`], path `heat2d.R{r}xT{t}`): each
//!   rank's block (its rows and one halo row each side) is a [`Team`]'s
//!   phased double buffer; the threads compute their rows in place, and
//!   member 0 — which owns the rows outside the split window — computes
//!   the edge rows first, sends them, computes its share and receives the
//!   halos, all inside one phase: one team barrier a step. With one
//!   thread a rank this is **pure MPI**: halos between all ranks.
//! - **node-shared grid** ([`run_node`], path `heat2d.node.R{r}`): the
//!   ranks of a node compute in place on one [`NodeArray`] holding the
//!   node's block twice; only the ranks at a node's edge exchange halos,
//!   with the neighbouring node; one node barrier a step.
//! - **the machine's limit** ([`limit`], path `limit.heat2d.T{t}`): the
//!   same stencil over plain scoped threads and a spin barrier.
//!
//! No row is copied on any path but the halos' messages. Metric `time_ms`
//! per step (the median over ten parts of the run); size the grid's side.

use std::ops::Range;
use std::time::Instant;

use super::barrier::SpinBarrier;
use super::Record;
use crate::error::{Error, SyncError};
use crate::hybrid::{second_buffer_at, split_range, BufferSplit, HybridWorld, NodeArray, Team};
use crate::sync::affinity::{allowed_cpus, pin_this_thread, AffinityGuard};
use crate::transport::Transport;

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

/// A block of consecutive grid rows (`own`) with a halo row on each side
/// that has a neighbour, as local row numbers of a buffer of `rows` rows.
#[derive(Debug, Clone)]
struct Block {
    /// Global row of local row 0.
    lo: usize,
    /// Rows in the buffer (own rows and halos).
    rows: usize,
    /// The rows computed by the stencil (not the grid's fixed first and
    /// last rows), local.
    interior: Range<usize>,
}

impl Block {
    /// The block holding global rows `own` of an `n`-row grid.
    fn new(n: usize, own: &Range<usize>) -> Block {
        let lo = own.start.saturating_sub(1);
        let hi = (own.end + 1).min(n);
        let start = own.start.max(1);
        let end = own.end.min(n - 1).max(start);
        Block {
            lo,
            rows: hi - lo,
            interior: start - lo..end - lo,
        }
    }
}

/// Who this rank exchanges halos with in a step: for each side, the
/// neighbour's rank, the local row sent (the edge) and the local row
/// received into (the halo).
#[derive(Debug, Clone, Default)]
struct Halos {
    up: Option<(usize, usize, usize)>,
    down: Option<(usize, usize, usize)>,
}

/// Tags: a row sent up travels with `UP`, one sent down with `DOWN`.
const UP: i32 = 1;
const DOWN: i32 = 2;

/// Computes rows `first..` of a block into `rows` (whole rows, every one
/// an interior row) from the whole read buffer `read`: the stencil's loop.
fn compute(read: &[f64], first: usize, rows: &mut [f64], n: usize) {
    for (k, row) in rows.chunks_exact_mut(n).enumerate() {
        step_row(read, row, n, first + k);
    }
}

/// One step of the rows this rank (or team member) writes, from the whole
/// read buffer `read`: the `boundary` rows — (local row, that row of the
/// write buffer): halos, edges the neighbours need, the grid's fixed rows —
/// first, sending each edge as soon as it is computed; then the `bulk`
/// (parts of interior rows, each with its first local row); then the
/// halos are received in place.
fn step_rows<'a>(
    world: &mut HybridWorld,
    (read, n): (&[f64], usize),
    block: &Block,
    halos: &Halos,
    boundary: impl Iterator<Item = (usize, &'a mut [f64])>,
    bulk: &mut [(usize, &mut [f64])],
) -> Result<(), Error> {
    let (mut halo_up, mut halo_down) = (None, None);
    let mut sends = [None, None];
    for (r, row) in boundary {
        let edge_of = |side: &Option<(usize, usize, usize)>| side.filter(|s| s.1 == r);
        let halo_of = |side: &Option<(usize, usize, usize)>| side.is_some_and(|s| s.2 == r);
        if halo_of(&halos.up) {
            halo_up = Some(row);
            continue;
        }
        if halo_of(&halos.down) {
            halo_down = Some(row);
            continue;
        }
        if block.interior.contains(&r) {
            step_row(read, row, n, r);
        }
        let row: &[f64] = row;
        for (k, (side, tag)) in [(&halos.up, UP), (&halos.down, DOWN)]
            .into_iter()
            .enumerate()
        {
            if let Some((peer, _, _)) = edge_of(side) {
                sends[k] = Some(world.isend(peer, tag, bytemuck::cast_slice(row))?);
            }
        }
    }
    for (first, rows) in bulk {
        compute(read, *first, rows, n);
    }
    // A halo from above was sent down by that neighbour, and vice versa.
    for (side, halo, tag) in [(&halos.up, halo_up, DOWN), (&halos.down, halo_down, UP)] {
        if let (Some((peer, _, _)), Some(halo)) = (side, halo) {
            world.recv_into(*peer, tag, bytemuck::cast_slice_mut(halo))?;
        }
    }
    for s in sends.into_iter().flatten() {
        world.wait_send(s)?;
    }
    Ok(())
}

/// Consecutive rows of a write buffer and the local row of the first.
type Rows<'a> = (usize, &'a mut [f64]);

/// The first two and the last two rows of `part` (whole rows of `n`
/// cells, the first being local row `first`) — where a block's halos and
/// edges are — one by one, and the rows between them as one bulk part.
fn edges_and_bulk(
    first: usize,
    part: &mut [f64],
    n: usize,
) -> (impl Iterator<Item = Rows<'_>>, Rows<'_>) {
    let rows = part.len() / n;
    let top_rows = rows.min(2);
    let bottom_rows = (rows - top_rows).min(2);
    let (top, rest) = part.split_at_mut(top_rows * n);
    let (middle, bottom) = rest.split_at_mut(rest.len() - bottom_rows * n);
    let number = move |at: usize| move |(k, row)| (first + at + k, row);
    let edges = top.chunks_exact_mut(n).enumerate().map(number(0)).chain(
        bottom
            .chunks_exact_mut(n)
            .enumerate()
            .map(number(rows - bottom_rows)),
    );
    (edges, (first + top_rows, middle))
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
        if (step + 1) % self.chunk == 0 {
            let ms = self.start.elapsed().as_secs_f64() * 1e3 / self.chunk as f64;
            self.per_step_ms.push(ms);
            self.start = Instant::now();
        }
    }
}

/// Runs `steps` steps on an `n`×`n` grid over `world` with `threads` team
/// threads per rank computing in place (one thread: pure MPI). Collective;
/// the outcome comes back on rank 0.
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
    check_args(n, steps, threads)?;
    let (me, size) = (world.rank(), world.size());
    let own = split_range(n, size, me);
    let block = Block::new(n, &own);
    let (first, last) = (own.start - block.lo, own.end - block.lo);
    let halos = Halos {
        up: (me > 0).then(|| (me - 1, first, 0)),
        down: (me + 1 < size).then(|| (me + 1, last - 1, block.rows - 1)),
    };
    // The rows split among the threads: my interior rows but the edges,
    // which member 0 computes and sends first.
    let start = (first + usize::from(halos.up.is_some())).max(block.interior.start);
    let end = (last - usize::from(halos.down.is_some()))
        .min(block.interior.end)
        .max(start);
    let split = BufferSplit::new(block.rows * n).unit(n).window(start..end);
    let mut team = Team::with_buffers::<f64>(threads, split)?;
    let init = initial(n, block.lo..block.lo + block.rows);
    let (read, write) = team.buffers_mut::<f64>()?;
    read.copy_from_slice(&init);
    write.copy_from_slice(&init);
    let mut clock = StepClock::new(steps);
    let (done, workers) = team.run_funnelled(
        |t| -> Result<(), Error> {
            let mut phase = t.phase::<f64>()?;
            clock.start = Instant::now();
            for step in 0..steps {
                // Head and tail hold the halos and the edges (the window
                // holds neither): row by row, then my window part in bulk.
                let v = phase.views();
                let tail_at = block.rows - v.tail.len() / n;
                let boundary = (v.head.chunks_exact_mut(n).enumerate()).chain(
                    v.tail
                        .chunks_exact_mut(n)
                        .enumerate()
                        .map(|(k, r)| (tail_at + k, r)),
                );
                let mut bulk = [(v.at / n, v.mine)];
                step_rows(world, (v.read, n), &block, &halos, boundary, &mut bulk)?;
                phase = phase.next()?;
                clock.stepped(step);
            }
            Ok(())
        },
        |t| -> Result<(), Error> {
            let mut phase = t.phase::<f64>()?;
            for _ in 0..steps {
                let v = phase.views();
                compute(v.read, v.at / n, v.mine, n);
                phase = phase.next()?;
            }
            Ok(())
        },
    );
    done?;
    workers.into_iter().collect::<Result<(), Error>>()?;
    let grid = team.read_buffer::<f64>()?;
    let mine = grid[first * n..last * n].to_vec();
    let path = format!("heat2d.R{size}xT{threads}");
    let order: Vec<usize> = (0..size).collect();
    conclude(world, &path, n, steps, &order, &mine, &clock.per_step_ms)
}

/// The world's ranks ordered by node (nodes in order of their first rank),
/// then by rank: the order in which [`run_node`] hands out rows, so each
/// node's rows are consecutive.
fn node_order(world: &HybridWorld) -> Vec<usize> {
    let size = world.size();
    let mut nodes: Vec<u64> = Vec::new();
    for r in 0..size {
        let id = world.node_of(r).unwrap_or(u64::MAX);
        if !nodes.contains(&id) {
            nodes.push(id);
        }
    }
    let mut order: Vec<usize> = (0..size).collect();
    order.sort_by_key(|&r| {
        let id = world.node_of(r).unwrap_or(u64::MAX);
        (nodes.iter().position(|&x| x == id), r)
    });
    order
}

/// Runs `steps` steps on an `n`×`n` grid with the ranks of each node
/// computing in place on one node array (the node's block, twice); halos
/// only between nodes. Collective; the outcome comes back on rank 0.
///
/// # Errors
///
/// As [`run`], and the node array's.
pub fn run_node(world: &mut HybridWorld, n: usize, steps: usize) -> Result<Option<Outcome>, Error> {
    check_args(n, steps, 1)?;
    let size = world.size();
    let order = node_order(world);
    let v = order.iter().position(|&r| r == world.rank()).unwrap_or(0);
    let node_ranks: Vec<usize> = (0..size).filter(|&u| world.is_local(order[u])).collect();
    let (v0, v1) = (node_ranks[0], node_ranks[node_ranks.len() - 1] + 1);
    let rows_of = |u: usize| split_range(n, size, u);
    let own = rows_of(v);
    let node_rows = rows_of(v0).start..rows_of(v1 - 1).end;
    let block = Block::new(n, &node_rows);
    let local = |g: usize| g - block.lo;
    let halos = Halos {
        up: (v == v0 && v0 > 0).then(|| (order[v0 - 1], local(own.start), 0)),
        down: (v + 1 == v1 && v1 < size).then(|| (order[v1], local(own.end) - 1, block.rows - 1)),
    };
    // What I write: my rows, and the halo row next to a neighbouring node.
    let write_rows = if halos.up.is_some() {
        0
    } else {
        local(own.start)
    }..if halos.down.is_some() {
        block.rows
    } else {
        local(own.end)
    };
    // The two halves, placed so the stencil's loads and stores do not alias.
    let half = second_buffer_at::<f64>(block.rows * n, n);
    let mut array: NodeArray<f64> = world.node_array(half + block.rows * n)?;
    let mut epoch = array.epoch();
    let init = initial(n, block.lo..block.lo + block.rows);
    for h in 0..2 {
        let rows = h * half + write_rows.start * n..h * half + write_rows.end * n;
        // SAFETY: the node's ranks write disjoint row ranges of each half
        // (their own rows; a halo row only at the node's edge, where one
        // rank is), and nobody reads in this epoch.
        let (_, out) = unsafe { epoch.borrow(0..0, rows)? };
        out.copy_from_slice(&init[write_rows.start * n..write_rows.end * n]);
    }
    let mut epoch = epoch.next(world)?;
    let mut clock = StepClock::new(steps);
    let mut cur = 0;
    for step in 0..steps {
        let read = cur * half..cur * half + block.rows * n;
        let write = (1 - cur) * half;
        let write = write + write_rows.start * n..write + write_rows.end * n;
        // SAFETY: as above for the writes; every rank reads the whole half
        // it does not write, which nobody writes in this epoch.
        let (read, out) = unsafe { epoch.borrow(read, write)? };
        let (boundary, bulk) = edges_and_bulk(write_rows.start, out, n);
        step_rows(world, (read, n), &block, &halos, boundary, &mut [bulk])?;
        epoch = epoch.next(world)?;
        cur = 1 - cur;
        clock.stepped(step);
    }
    let mine = local(own.start) * n + cur * half..local(own.end) * n + cur * half;
    // SAFETY: nobody writes in this last epoch.
    let (mine, _) = unsafe { epoch.borrow(mine, 0..0)? };
    let mine = mine.to_vec();
    let path = format!("heat2d.node.R{size}");
    conclude(world, &path, n, steps, &order, &mine, &clock.per_step_ms)
}

/// Gathers every rank's rows at rank 0 (in `order`: whose rows come
/// first), compares the grid with the serial run and makes the record.
fn conclude(
    world: &mut HybridWorld,
    path: &str,
    n: usize,
    steps: usize,
    order: &[usize],
    mine: &[f64],
    per_step_ms: &[f64],
) -> Result<Option<Outcome>, Error> {
    let all = world.gather(0, mine)?;
    let outcome = all.map(|parts| {
        let grid: Vec<f64> = order
            .iter()
            .flat_map(|&r| parts[r].iter().copied())
            .collect();
        let reference = serial(n, steps);
        let differing = grid.len().abs_diff(reference.len())
            + grid
                .iter()
                .zip(&reference)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
        Outcome {
            record: Record::from_samples(path, "time_ms", n, per_step_ms),
            differing,
            checksum: grid.iter().sum(),
        }
    });
    world.barrier()?;
    Ok(outcome)
}

/// The stencil over `threads` plain scoped threads, one per CPU, and the
/// minimal spin barrier (`limit.barrier`'s) —
/// what this machine does without shmpi, the limit a team is measured
/// against (`limit.heat2d.T{threads}`). Checked against the serial run
/// like the others.
///
/// # Errors
///
/// [`SyncError::InvalidArgument`] as [`run`].
pub fn limit(n: usize, steps: usize, threads: usize) -> Result<Outcome, Error> {
    check_args(n, steps, threads)?;
    // Both grids in one anonymous mapping, placed and advised as a team's
    // buffers are, so the limit differs from a team only in its threads.
    let second = second_buffer_at::<f64>(n * n, n);
    let memory = memmap2::MmapOptions::new()
        .len((second + n * n) * 8)
        .map_anon()
        .map_err(|e| SyncError::Os {
            op: "mmap",
            errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        })?;
    let _ = memory.advise(memmap2::Advice::HugePage);
    let memory = memmap2::MmapRaw::from(memory);
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
