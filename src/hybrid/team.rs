//! Thread teams: T threads of one rank over memory they all map, with a
//! team barrier.

use std::ops::Range;
use std::time::Duration;

use bytemuck::Pod;

use crate::error::{Error, PlacementError, SyncError};
use crate::segment::{Segment, SegmentName, SharedSlice};
use crate::sync::{Barrier, BarrierWaitResult};

/// Where the team's data starts in its region (after the barrier).
const DATA_AT: usize = 64;

/// `len` items split into `parts` nearly equal ranges; the range of part
/// `index` (the first `len % parts` parts get one more item).
///
/// # Examples
///
/// ```
/// use shmpi::hybrid::split_range;
///
/// assert_eq!(split_range(10, 3, 0), 0..4);
/// assert_eq!(split_range(10, 3, 1), 4..7);
/// assert_eq!(split_range(10, 3, 2), 7..10);
/// assert_eq!(split_range(2, 4, 3), 2..2);
/// ```
pub fn split_range(len: usize, parts: usize, index: usize) -> Range<usize> {
    let parts = parts.max(1);
    let (base, extra) = (len / parts, len % parts);
    let start = index * base + index.min(extra);
    let end = start + base + usize::from(index < extra);
    start.min(len)..end.min(len)
}

/// A team of threads of this rank sharing a region of memory (a segment
/// unlinked at once: private to the process, gone when it ends).
///
/// How threads communicate beyond the team: a `HybridWorld` takes
/// `&mut self`, so one thread at a time sends — the team computes, then one
/// thread (typically the caller of [`run`](Self::run), after it returns)
/// exchanges halos ("funnelled", which every MPI thread level allows). Give
/// each thread its own endpoint instead only with a mailbox group made for
/// it (a ring has one producer).
///
/// # Memory model
///
/// A team barrier orders memory: everything a thread wrote to the region
/// before [`TeamMember::barrier`] is visible to every thread after it (the
/// barrier's compare-and-swap and futex are acquire-release).
///
/// # Examples
///
/// ```
/// use shmpi::hybrid::Team;
///
/// let team = Team::new(3, 1000 * 8)?;
/// let sums = team.run(|me| -> shmpi::Result<u64> {
///     let data = me.shared::<u64>(0, 1000)?;
///     for i in me.range(1000) {
///         data.set(i, i as u64);
///     }
///     me.barrier()?;                     // everyone's writes are visible now
///     Ok(data.to_vec().iter().sum())
/// });
/// for s in sums {
///     assert_eq!(s?, 999 * 1000 / 2);
/// }
/// # Ok::<(), shmpi::Error>(())
/// ```
#[derive(Debug)]
pub struct Team {
    threads: usize,
    region: Segment,
}

impl Team {
    /// A team of `threads` threads over `shared_bytes` bytes of shared
    /// memory (zeroed).
    ///
    /// # Errors
    ///
    /// [`SyncError::InvalidArgument`] for zero threads, or the region's
    /// creation errors.
    pub fn new(threads: usize, shared_bytes: usize) -> Result<Team, Error> {
        let parties =
            u32::try_from(threads)
                .ok()
                .filter(|&t| t > 0)
                .ok_or(SyncError::InvalidArgument(
                    "a team needs 1 to u32::MAX threads",
                ))?;
        let mut region = Segment::builder(SegmentName::unique("team").as_str())
            .size(DATA_AT + shared_bytes.max(1))
            .create_init(|seg| Ok(Barrier::create_in(seg, 0, parties).map(drop)?))?;
        region.unlink()?;
        Ok(Team { threads, region })
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on every thread of the team (the calling thread waits) and
    /// returns their results in thread order.
    ///
    /// # Panics
    ///
    /// When a team thread panics (the panic is passed on).
    pub fn run<R: Send>(&self, f: impl Fn(&TeamMember<'_>) -> R + Sync) -> Vec<R> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..self.threads)
                .map(|index| {
                    let f = &f;
                    s.spawn(move || f(&TeamMember { team: self, index }))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }
}

/// One thread of a [`Team`].
#[derive(Debug)]
pub struct TeamMember<'a> {
    team: &'a Team,
    index: usize,
}

impl TeamMember<'_> {
    /// This thread's index, `0..size()`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Number of threads in the team.
    pub fn size(&self) -> usize {
        self.team.threads
    }

    /// This thread's share of `len` items ([`split_range`]).
    pub fn range(&self, len: usize) -> Range<usize> {
        split_range(len, self.team.threads, self.index)
    }

    /// A view of `len` elements of `T` at byte `offset` of the team's
    /// shared memory.
    ///
    /// # Errors
    ///
    /// [`PlacementError`] when it does not fit or is misaligned.
    pub fn shared<T: Pod>(
        &self,
        offset: usize,
        len: usize,
    ) -> Result<SharedSlice<'_, T>, PlacementError> {
        let at = offset.checked_add(DATA_AT).ok_or(PlacementError {
            what: "team view",
            offset,
            size: len,
            align: std::mem::align_of::<T>(),
            segment_len: self.team.region.len() - DATA_AT,
        })?;
        self.team.region.slice(at, len)
    }

    /// Waits for every thread of the team (spins briefly, then sleeps: the
    /// threads may share a core).
    ///
    /// # Errors
    ///
    /// [`SyncError`] from the barrier.
    pub fn barrier(&self) -> Result<BarrierWaitResult, SyncError> {
        Barrier::open_in(&self.team.region, 0)?.wait()
    }

    /// [`barrier`](Self::barrier) with a timeout.
    ///
    /// # Errors
    ///
    /// [`SyncError::Timeout`], or as [`barrier`](Self::barrier).
    pub fn barrier_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, SyncError> {
        Barrier::open_in(&self.team.region, 0)?.wait_timeout(timeout)
    }
}
