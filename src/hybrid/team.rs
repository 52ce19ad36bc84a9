//! Thread teams: T threads of one rank over memory they all map, with a
//! team barrier.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::error::{Error, PlacementError, SyncError};
use crate::segment::{Segment, SegmentName, SharedSlice};
use crate::sync::wait::{node_processes, unbind_this_thread, usable_cpus};
use crate::sync::{Barrier, BarrierWaitResult, WaitPolicy};

/// Where the team's data starts in its region (after the barrier).
const DATA_AT: usize = 64;

/// How often a thread waiting at the team barrier checks whether a member
/// has left (after which the barrier can never complete).
const LEFT_CHECK: Duration = Duration::from_millis(10);

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
/// `&mut self`, so one thread sends: [`run_funnelled`](Self::run_funnelled)
/// runs member 0 on the calling thread, which may use the world (and MPI)
/// between team barriers while the other members compute or wait — MPI's
/// `FUNNELED` pattern, allowed at every thread level above `SINGLE`. Give
/// each thread its own endpoint instead only with a mailbox group made for
/// it (a ring has one producer).
///
/// A member whose function returns (or panics) leaves the team; members
/// waiting at a barrier it will never reach get
/// [`SyncError::TeamMemberLeft`] within 10 ms instead of hanging.
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
/// let mut team = Team::new(3, 1000 * 8)?;
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
    left: AtomicUsize,
    policy: WaitPolicy,
    /// The process may run on fewer CPUs than the team has threads (a
    /// launcher bound the rank to one core): the workers unbind themselves
    /// rather than timeshare that core.
    unbind_workers: bool,
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
        Ok(Team {
            threads,
            region,
            left: AtomicUsize::new(0),
            policy: WaitPolicy::for_parties(threads * node_processes()),
            unbind_workers: threads > usable_cpus(),
        })
    }

    /// Sets how long a thread spins at the team barrier before it yields
    /// and sleeps. The default ([`WaitPolicy::for_parties`]) spins only
    /// while all the threads of this machine's ranks (`threads` × the
    /// node's rank count the launcher announces) have a CPU each, and
    /// never otherwise.
    pub fn with_spin(mut self, spin: Duration) -> Team {
        self.policy = self.policy.with_spin(spin);
        self
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on every thread of the team (the calling thread is member
    /// 0) and returns their results in member order.
    ///
    /// # Panics
    ///
    /// When a team thread panics (the panic is passed on).
    pub fn run<R: Send>(&mut self, f: impl Fn(&TeamMember<'_>) -> R + Sync) -> Vec<R> {
        let (first, mut rest) = self.run_funnelled(&f, &f);
        rest.insert(0, first);
        rest
    }

    /// Runs `main` as member 0 on the calling thread and `worker` as
    /// members `1..threads()` on threads of their own; returns `main`'s
    /// result and the workers' in member order. `main` need not be `Send`
    /// or `Sync`: it may hold the rank's `HybridWorld` and make the MPI
    /// calls between team barriers (MPI's `FUNNELED` pattern).
    ///
    /// # Panics
    ///
    /// When a team thread panics (the panic is passed on).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmpi::hybrid::Team;
    ///
    /// let mut team = Team::new(2, 8)?;
    /// let mut log = Vec::new();               // not shared with the workers
    /// let (steps, workers) = team.run_funnelled(
    ///     |me| -> shmpi::Result<usize> {
    ///         for step in 0..3 {
    ///             me.shared::<u64>(0, 1)?.set(0, step); // "receive a halo"
    ///             log.push(step);
    ///             me.barrier()?;                       // halo visible
    ///             me.barrier()?;                       // everyone computed
    ///         }
    ///         Ok(log.len())
    ///     },
    ///     |me| -> shmpi::Result<u64> {
    ///         let mut seen = 0;
    ///         for _ in 0..3 {
    ///             me.barrier()?;
    ///             seen += me.shared::<u64>(0, 1)?.get(0).unwrap_or(0);
    ///             me.barrier()?;
    ///         }
    ///         Ok(seen)
    ///     },
    /// );
    /// assert_eq!(steps?, 3);
    /// assert_eq!(workers.into_iter().collect::<shmpi::Result<Vec<_>>>()?, [0 + 1 + 2]);
    /// # Ok::<(), shmpi::Error>(())
    /// ```
    pub fn run_funnelled<R, W: Send>(
        &mut self,
        main: impl FnOnce(&TeamMember<'_>) -> R,
        worker: impl Fn(&TeamMember<'_>) -> W + Sync,
    ) -> (R, Vec<W>) {
        self.left.store(0, Ordering::Relaxed);
        let team = &*self;
        std::thread::scope(|s| {
            let worker = &worker;
            let handles: Vec<_> = (1..team.threads)
                .map(|index| {
                    s.spawn(move || {
                        if team.unbind_workers {
                            unbind_this_thread();
                        }
                        let _leave = LeaveGuard(&team.left);
                        worker(&TeamMember { team, index })
                    })
                })
                .collect();
            let first = {
                let _leave = LeaveGuard(&team.left);
                main(&TeamMember { team, index: 0 })
            };
            let rest = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect();
            (first, rest)
        })
    }
}

/// Counts a member out of the team when its function ends, also by panic.
struct LeaveGuard<'a>(&'a AtomicUsize);

impl Drop for LeaveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
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
    /// [`SyncError::TeamMemberLeft`] when a member left the team, so the
    /// barrier cannot complete; [`SyncError`] from the barrier.
    pub fn barrier(&self) -> Result<BarrierWaitResult, SyncError> {
        self.barrier_until(None)
    }

    /// [`barrier`](Self::barrier) with a timeout.
    ///
    /// # Errors
    ///
    /// [`SyncError::Timeout`], or as [`barrier`](Self::barrier).
    pub fn barrier_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, SyncError> {
        self.barrier_until(Some((Instant::now() + timeout, timeout)))
    }

    /// Waits in slices of [`LEFT_CHECK`]: a slice that times out withdraws
    /// this thread's arrival (unless the round completed), then either
    /// arrives again or reports why it gives up.
    fn barrier_until(
        &self,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<BarrierWaitResult, SyncError> {
        let barrier = Barrier::open_in(&self.team.region, 0)?.with_policy(self.team.policy);
        loop {
            let slice = match deadline {
                None => LEFT_CHECK,
                Some((at, timeout)) => match at.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => r.min(LEFT_CHECK),
                    _ => return Err(SyncError::Timeout { waited: timeout }),
                },
            };
            match barrier.wait_timeout(slice) {
                Err(SyncError::Timeout { .. }) => {
                    let left = self.team.left.load(Ordering::Acquire);
                    if left > 0 {
                        return Err(SyncError::TeamMemberLeft { left });
                    }
                }
                done => return done,
            }
        }
    }
}
