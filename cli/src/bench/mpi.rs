//! MPI, hybrid and distributed-array measurements (feature `mpi`), run by
//! every rank of a job under `mpirun`; the records come back on rank 0.
//!
//! - [`pingpong`]: one-way latency at 8 B … 1 MiB and bandwidth between
//!   ranks 0 and 1 over a communicator (`mpi.sm`, or `mpi.tcp` when the job
//!   was forced onto TCP);
//! - [`hybrid`]: the same through a [`HybridWorld`] from rank 0 to every
//!   other rank (`hybrid.intranode`, `hybrid.internode`, and `.any` with a
//!   receive from any source);
//! - [`dsm`]: reading one element of a distributed array, against an MPI
//!   round trip between the same ranks.

use shmpi::transport::Wait;
use std::time::Instant;

use super::{Config, Record, Report};
use shmpi::dsm::{Backend, DistArray};
use shmpi::error::Error;
use shmpi::hybrid::HybridWorld;
use shmpi::mpi::{Comm, MpiTransport};
use shmpi::transport::{Source, Transport};

/// Message sizes of the latency rows.
pub const LATENCY_SIZES: [usize; 5] = [8, 64, 1 << 10, 64 << 10, 1 << 20];
/// Message sizes of the bandwidth rows.
pub const BANDWIDTH_SIZES: [usize; 3] = [64 << 10, 1 << 20, 4 << 20];

/// `count` samples (after one warm-up) of `iters` calls of `op`, in ns per
/// call.
fn samples(
    count: usize,
    iters: u32,
    mut op: impl FnMut() -> Result<(), Error>,
) -> Result<Vec<f64>, Error> {
    super::ns_per_op(count, u64::from(iters), || {
        (0..iters).try_for_each(|_| op())
    })
}

fn sample_count(cfg: &Config) -> usize {
    if cfg.quick {
        3
    } else {
        7
    }
}

fn report() -> Report {
    Report {
        mpi: Some(shmpi::mpi::library_version()),
        ..Report::default()
    }
}

/// Latency (half the round trip) and bandwidth (a window of non-blocking
/// sends) between ranks 0 and 1 of `world`, recorded under `path`. Other
/// ranks only take part in the barriers.
///
/// # Errors
///
/// MPI's errors.
pub fn pingpong(world: &Comm, path: &str, cfg: &Config) -> Result<Option<Report>, Error> {
    let me = world.rank();
    let count = sample_count(cfg);
    let mut buf = vec![0x5Au8; 4 << 20];
    let mut out = report();
    for size in cfg.latency_sizes(&LATENCY_SIZES) {
        let by_size: u32 = match size {
            s if s <= 1024 => 10_000,
            s if s <= 64 << 10 => 1_000,
            _ => 100,
        } / if cfg.quick { 4 } else { 1 };
        let iters = u32::try_from(cfg.iterations_or(u64::from(by_size))).unwrap_or(u32::MAX);
        if buf.len() < size {
            buf.resize(size, 0x5A);
        }
        world.barrier()?;
        let s = samples(count, iters, || {
            if me == 0 {
                world.send(1, 1, &buf[..size])?;
                world.recv_into(1, 1, &mut buf, Wait::Forever)?;
            } else if me == 1 {
                let st = world.recv_into(0, 1, &mut buf, Wait::Forever)?;
                world.send(0, 1, &buf[..st.len])?;
            }
            Ok(())
        })?;
        let one_way: Vec<f64> = s.iter().map(|v| v / 2.0).collect();
        out.records
            .push(Record::from_samples(path, "latency_ns", size, &one_way));
    }
    for size in BANDWIDTH_SIZES {
        let window = 64usize.min((64 << 20) / size).max(4);
        let mut rates = Vec::new();
        for _ in 0..=count {
            world.barrier()?;
            let start = Instant::now();
            if me == 0 {
                let reqs: Vec<_> = (0..window)
                    .map(|_| world.isend(1, 2, &buf[..size]))
                    .collect::<Result<_, _>>()?;
                for r in reqs {
                    r.wait()?;
                }
                world.recv(1, 3, Wait::Forever)?;
            } else if me == 1 {
                let mut rbuf = vec![0u8; size];
                for _ in 0..window {
                    world.recv_into(0, 2, &mut rbuf, Wait::Forever)?;
                }
                world.send(0, 3, &[])?;
            }
            rates.push((window * size) as f64 / start.elapsed().as_secs_f64() / 1e6);
        }
        rates.remove(0);
        out.records
            .push(Record::from_samples(path, "bandwidth_mbps", size, &rates));
    }
    world.barrier()?;
    Ok((me == 0).then_some(out))
}

/// One-way latency from rank 0 to every other rank through the hybrid
/// world, at 8 B, 1 KiB and 64 KiB, and at 8 B with a receive from any
/// source (`.any`): paths `hybrid.intranode` or `hybrid.internode`, with
/// `.r{peer}` appended in jobs of more than 2 ranks. Every reply is
/// checked.
///
/// # Errors
///
/// The world's errors; a wrong reply is [`shmpi::TransportError::OutOfSequence`].
pub fn hybrid(world: &mut HybridWorld, cfg: &Config) -> Result<Option<Report>, Error> {
    let (me, n) = (world.rank(), world.size());
    let mut out = report();
    for peer in 1..n {
        let path = if world.is_local(peer) {
            "hybrid.intranode"
        } else {
            "hybrid.internode"
        };
        for (size, any) in [(8, false), (1 << 10, false), (64 << 10, false), (8, true)] {
            let from = if any { Source::Any } else { Source::Rank(peer) };
            let iters: u32 = if size <= 1024 { 2000 } else { 200 } / if cfg.quick { 4 } else { 1 };
            let mut times = Vec::new();
            // Preallocated buffers and receives into them, as the mailbox
            // rows do: the row measures the world, not the allocator.
            let (mut payload, mut back) = (vec![0u8; size], vec![0u8; size]);
            for _ in 0..=sample_count(cfg) {
                world.barrier()?;
                let start = Instant::now();
                for k in 0..iters {
                    if me == 0 {
                        payload[0] = (k % 251) as u8;
                        world.send(peer, 1, &payload)?;
                        let (source, _, len) =
                            world.recv_into(from, 1, &mut back, Wait::Forever)?;
                        if source != peer || len != size || back[0] != payload[0] {
                            return Err(shmpi::TransportError::OutOfSequence {
                                source_rank: source,
                                found: u64::from(back[0]),
                                expected: u64::from(k % 251),
                            }
                            .into());
                        }
                    } else if me == peer {
                        let (_, _, len) = world.recv_into(0, 1, &mut back, Wait::Forever)?;
                        world.send(0, 1, &back[..len])?;
                    }
                }
                times.push(start.elapsed().as_secs_f64() * 1e9 / f64::from(iters) / 2.0);
            }
            times.remove(0);
            // DESIGN.md's fixed names when there is one peer; `.r{peer}`
            // tells peers apart in larger jobs.
            let name = format!(
                "{path}{}{}",
                if any { ".any" } else { "" },
                if n > 2 {
                    format!(".r{peer}")
                } else {
                    String::new()
                }
            );
            out.records
                .push(Record::from_samples(&name, "latency_ns", size, &times));
        }
    }
    world.barrier()?;
    Ok((me == 0).then_some(out))
}

/// Same-node 8 B ping-pong with the machine oversubscribed: ranks pair up
/// (0–1, 2–3, …) and every pair ping-pongs at once, so that ranks outnumber
/// cores (4 ranks on 2 cores here). Rank 0 records receiving by name
/// (`hybrid.intranode.over`) and from any source
/// (`hybrid.intranode.any.over`). Needs an even number of ranks, all on one
/// node.
///
/// # Errors
///
/// The world's errors; [`shmpi::TransportError::OutOfSequence`] for a
/// wrong echo.
pub fn hybrid_oversubscribed(
    world: &mut HybridWorld,
    cfg: &Config,
) -> Result<Option<Report>, Error> {
    let (me, n) = (world.rank(), world.size());
    let peer = me ^ 1;
    let mut out = report();
    if n % 2 != 0 || (0..n).any(|r| !world.is_local(r)) {
        return Ok(None);
    }
    let iters: u32 = if cfg.quick { 2000 } else { 10_000 };
    for any in [false, true] {
        let from = if any { Source::Any } else { Source::Rank(peer) };
        let mut times = Vec::new();
        let mut back = [0u8; 8];
        for _ in 0..=sample_count(cfg) {
            world.barrier()?;
            let start = Instant::now();
            for k in 0..iters {
                if me % 2 == 0 {
                    let payload = u64::from(k).to_le_bytes();
                    world.send(peer, 1, &payload)?;
                    let (source, _, _) = world.recv_into(from, 1, &mut back, Wait::Forever)?;
                    if back != payload || source != peer {
                        return Err(shmpi::TransportError::OutOfSequence {
                            source_rank: source,
                            found: u64::from_le_bytes(back),
                            expected: u64::from(k),
                        }
                        .into());
                    }
                } else {
                    let (_, _, len) = world.recv_into(from, 1, &mut back, Wait::Forever)?;
                    world.send(peer, 1, &back[..len])?;
                }
            }
            times.push(start.elapsed().as_secs_f64() * 1e9 / f64::from(iters) / 2.0);
        }
        times.remove(0);
        let name = if any {
            "hybrid.intranode.any.over"
        } else {
            "hybrid.intranode.over"
        };
        out.records
            .push(Record::from_samples(name, "latency_ns", 8, &times));
    }
    world.barrier()?;
    Ok((me == 0).then_some(out))
}

/// Rank 1 reads element `index` of `array`; rank 0 waits inside the
/// array (`owner_inside`) or outside it, in an MPI barrier.
fn get_latency<B: Backend<u64>>(
    array: &mut DistArray<u64, B>,
    index: usize,
    (count, iters): (usize, u32),
    world: &Comm,
    owner_inside: bool,
) -> Result<Option<Vec<f64>>, Error> {
    let result = if world.rank() == 1 {
        Some(samples(count, iters, || array.get(index).map(drop))?)
    } else {
        None
    };
    if !owner_inside {
        world.barrier()?;
    }
    array.barrier()?;
    Ok(result)
}

/// The cost of emulating shared memory on messages, between ranks 0 and 1
/// (8-byte elements): `dsm.local.get`, `dsm.owner.get` (the owner inside a
/// call on the array), `dsm.owner.get.progress` (the owner elsewhere, its
/// progress thread serving), `dsm.rma.get`, and the baseline
/// `mpi.roundtrip` (8 bytes there and back), all at the thread level MPI
/// granted, so each is measured at the level it needs: below
/// `MPI_THREAD_MULTIPLE` the progress-thread row is left out (it needs
/// MULTIPLE). Needs at least 2 ranks; the records come back on rank 1's
/// behalf at rank 0.
///
/// # Errors
///
/// MPI's errors, the arrays' errors.
pub fn dsm(world: &Comm, cfg: &Config) -> Result<Option<Report>, Error> {
    let me = world.rank();
    let shape = (sample_count(cfg), if cfg.quick { 2_000 } else { 20_000 });
    let mut rows: Vec<(&str, Option<Vec<f64>>)> = Vec::new();
    world.barrier()?;
    let mut buf = [0u8; 8];
    if me == 1 {
        rows.push((
            "mpi.roundtrip",
            Some(samples(shape.0, shape.1, || {
                world.send(0, 1, &buf)?;
                world.recv_into(0, 1, &mut buf, Wait::Forever)?;
                Ok(())
            })?),
        ));
    } else {
        if me == 0 {
            for _ in 0..=shape.0 {
                for _ in 0..shape.1 {
                    world.recv_into(1, 1, &mut buf, Wait::Forever)?;
                    world.send(1, 1, &buf)?;
                }
            }
        }
        rows.push(("mpi.roundtrip", None));
    }
    // Element 0 is rank 0's, element 1 rank 1's (2 elements on 2 ranks).
    let len = world.size();
    let mut owner = DistArray::<u64, _>::owner(MpiTransport::new(world.dup()?), len)?;
    rows.push((
        "dsm.local.get",
        get_latency(&mut owner, 1, shape, world, true)?,
    ));
    rows.push((
        "dsm.owner.get",
        get_latency(&mut owner, 0, shape, world, true)?,
    ));
    drop(owner);
    if shmpi::mpi::ThreadLevel::current()? == shmpi::mpi::ThreadLevel::Multiple {
        let mut progress = DistArray::<u64, _>::with_progress_thread(world, len)?;
        let slow = (shape.0, shape.1 / 10);
        rows.push((
            "dsm.owner.get.progress",
            get_latency(&mut progress, 0, slow, world, false)?,
        ));
        drop(progress);
    }
    let mut rma = DistArray::<u64, _>::rma(world, len)?;
    rows.push(("dsm.rma.get", get_latency(&mut rma, 0, shape, world, true)?));
    drop(rma);
    // Rank 1 measured; rank 0 reports.
    let mut out = report();
    for (path, s) in rows {
        let mut flat = s.unwrap_or_default();
        if me == 1 {
            world.send_pod(0, 9, &flat)?;
        } else if me == 0 {
            flat = world.recv_pod::<f64>(1, 9, Wait::Forever)?;
            out.records
                .push(Record::from_samples(path, "latency_ns", 8, &flat));
        }
    }
    world.barrier()?;
    Ok((me == 0).then_some(out))
}
