//! `team.barrier` against `limit.barrier`: the team barrier of
//! [`shmpi::hybrid::Team`] (shmpi's process-shared, timeout-capable barrier
//! under the crate's wait policy) beside the least a barrier can cost on
//! this machine — fixed code written here: one `fetch_add` on an arrival
//! counter, the last arriver bumps a generation word on its own cache line,
//! the others spin on it. Size = threads.

use std::sync::atomic::{AtomicU32, Ordering};

use super::{ns_per_op, Config, Record, Report};
use shmpi::hybrid::Team;
use shmpi::sync::affinity::pin_this_thread as pin;

/// Threads of both barriers (the machine's two cores here).
const THREADS: usize = 2;

/// A word alone on its cache line.
#[repr(align(64))]
struct Line(AtomicU32);

/// The minimal spin barrier: the machine's limit for a barrier.
pub(super) struct SpinBarrier {
    arrived: Line,
    generation: Line,
    parties: u32,
}

impl SpinBarrier {
    pub(super) fn new(parties: u32) -> SpinBarrier {
        SpinBarrier {
            arrived: Line(AtomicU32::new(0)),
            generation: Line(AtomicU32::new(0)),
            parties,
        }
    }

    pub(super) fn wait(&self) {
        let generation = self.generation.0.load(Ordering::Acquire);
        if self.arrived.0.fetch_add(1, Ordering::AcqRel) + 1 == self.parties {
            self.arrived.0.store(0, Ordering::Relaxed);
            self.generation
                .0
                .store(generation.wrapping_add(1), Ordering::Release);
        } else {
            while self.generation.0.load(Ordering::Acquire) == generation {
                std::hint::spin_loop();
            }
        }
    }
}

/// Barriers per sample.
fn rounds(cfg: &Config) -> usize {
    if cfg.quick {
        20_000
    } else {
        200_000
    }
}

/// Adds `limit.barrier` and `team.barrier` (latency_ns per barrier, size =
/// threads), `samples` samples each. The caller runs on CPU 0 (as
/// [`super::shm::measure`] pins it); the other threads are pinned to CPUs
/// 1, 2, …
///
/// # Errors
///
/// The team's errors, as text.
pub fn measure(cfg: &Config, samples: usize, report: &mut Report) -> Result<(), String> {
    let rounds = rounds(cfg);
    let limit = SpinBarrier::new(THREADS as u32);
    let limit_ns = ns_per_op(samples, rounds as u64, || {
        std::thread::scope(|s| {
            for cpu in 1..THREADS {
                let limit = &limit;
                s.spawn(move || {
                    pin(cpu);
                    (0..rounds).for_each(|_| limit.wait());
                });
            }
            (0..rounds).for_each(|_| limit.wait());
        });
        Ok::<(), String>(())
    })?;
    report.records.push(Record::from_samples(
        "limit.barrier",
        "latency_ns",
        THREADS,
        &limit_ns,
    ));
    let mut team = Team::new(THREADS, 64).map_err(|e| e.to_string())?;
    let team_ns = ns_per_op(samples, rounds as u64, || {
        let results = team.run(|me| {
            if me.index() > 0 {
                pin(me.index());
            }
            (0..rounds).try_for_each(|_| me.barrier().map(drop))
        });
        results
            .into_iter()
            .try_for_each(|r| r.map_err(|e| e.to_string()))
    })?;
    report.records.push(Record::from_samples(
        "team.barrier",
        "latency_ns",
        THREADS,
        &team_ns,
    ));
    Ok(())
}
