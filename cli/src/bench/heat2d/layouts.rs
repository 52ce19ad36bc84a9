//! The layouts that need MPI: ranks × team threads (pure MPI with one
//! thread) and the node-shared grid.

use shmpi::transport::Wait;
use std::ops::Range;
use std::time::Instant;

use super::{check_args, compute, initial, serial, step_row, Outcome, StepClock};
use crate::bench::Record;
use shmpi::error::Error;
use shmpi::hybrid::{second_buffer_at, split_range, BufferSplit, HybridWorld, NodeArray, Team};
use shmpi::transport::Transport;

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
            world.recv_into(*peer, tag, bytemuck::cast_slice_mut(halo), Wait::Forever)?;
        }
    }
    for s in sends.into_iter().flatten() {
        world.wait_send(s)?;
    }
    Ok(())
}

/// Runs `steps` steps on an `n`×`n` grid over `world` with `threads` team
/// threads per rank computing in place (one thread: pure MPI). Collective;
/// the outcome comes back on rank 0.
///
/// # Errors
///
/// [`SyncError::InvalidArgument`](shmpi::SyncError::InvalidArgument) for a grid smaller than 3×3, no steps or
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
    // The rows at each end of mine (two: the edge a neighbour reads, the
    // one beside it) are computed first; the rows between them late, after
    // this rank has arrived at the epoch's barrier — a neighbour waits
    // only for my edges, as it would for a halo message.
    let top = write_rows.len().min(2);
    let bottom = (write_rows.len() - top).min(2);
    let late_rows = write_rows.start + top..write_rows.end - bottom;
    let near = write_rows.start.saturating_sub(1)..(write_rows.end + 1).min(block.rows);
    let halo_rows = [halos.up.map(|h| (h, DOWN)), halos.down.map(|h| (h, UP))];
    let mut clock = StepClock::new(steps);
    let mut cur = 0;
    for step in 0..steps {
        let (a, b) = (cur * half, (1 - cur) * half);
        let rows = |base: usize, r: &Range<usize>| base + r.start * n..base + r.end * n;
        // Copies of my edge rows for the next node (halos that cross a
        // node are messages).
        let mut outgoing: [Vec<f64>; 2] = Default::default();
        {
            // SAFETY: nobody writes the half being read in this epoch; each
            // rank writes only its own rows (and the halo row at its node's
            // edge, where it is the only rank) of the other half.
            let (read, out) = unsafe { epoch.borrow(rows(a, &near), rows(b, &write_rows))? };
            let ends = (write_rows.start..write_rows.start + top)
                .chain(write_rows.end - bottom..write_rows.end);
            for r in ends {
                let is_halo = halo_rows.iter().flatten().any(|((_, _, h), _)| *h == r);
                if block.interior.contains(&r) && !is_halo {
                    let at = (r - write_rows.start) * n;
                    step_row(read, &mut out[at..at + n], n, r - near.start);
                }
            }
            for (k, side) in [halos.up, halos.down].into_iter().enumerate() {
                if let Some((_, edge, _)) = side {
                    let at = (edge - write_rows.start) * n;
                    outgoing[k] = out[at..at + n].to_vec();
                }
            }
        }
        let mut sends = Vec::new();
        for (side, data, tag) in [
            (halos.up, &outgoing[0], UP),
            (halos.down, &outgoing[1], DOWN),
        ] {
            if let Some((peer, _, _)) = side {
                sends.push(world.isend(peer, tag, bytemuck::cast_slice(data))?);
            }
        }
        let mut late = epoch.arrive()?;
        if !late_rows.is_empty() {
            let around = late_rows.start - 1..late_rows.end + 1;
            // SAFETY: the rows between my ends: only I read or write them in
            // this epoch and the next (the neighbours read my edges, which
            // are not among them), and `around` holds my own rows only.
            let (read, out) = unsafe { late.borrow(rows(a, &around), rows(b, &late_rows))? };
            compute(read, 1, out, n);
        }
        for ((peer, _, halo), tag) in halo_rows.iter().flatten() {
            // SAFETY: the halo row at my node's edge is mine alone.
            let (_, row) = unsafe { late.borrow(0..0, rows(b, &(*halo..halo + 1)))? };
            world.recv_into(*peer, *tag, bytemuck::cast_slice_mut(row), Wait::Forever)?;
        }
        for s in sends {
            world.wait_send(s)?;
        }
        epoch = late.wait(world)?;
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
