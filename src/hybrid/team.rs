//! Thread teams: T threads of one rank over memory they all map, with a
//! team barrier.

use std::cell::Cell;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;
use memmap2::MmapRaw;

use super::phase::{BufferSplit, Buffers, Phase};
use crate::error::{Error, PlacementError, SyncError};
use crate::partition::split_range;
use crate::segment::SharedSlice;
use crate::sync::affinity::{pin_this_thread, unbind_this_thread, AffinityGuard};
use crate::sync::barrier::BarrierCell;
use crate::sync::wait::{node_processes, online_cpus};
use crate::sync::{Barrier, BarrierWaitResult, WaitPolicy};

/// How often a thread waiting at the team barrier checks whether a member
/// has left (after which the barrier can never complete).
const LEFT_CHECK: Duration = Duration::from_millis(10);

/// A team of threads of this rank sharing memory no other process can map
/// (anonymous private mappings; the barrier on the heap).
///
/// Two ways to share it:
/// - **in place, phased** ([`Team::with_buffers`], [`TeamMember::phase`]):
///   two buffers of `T`; in each phase every thread borrows the whole of
///   one (`&[T]`) and its own part of the other (`&mut [T]`), and the
///   barrier that ends the phase swaps their roles. The borrow checker
///   keeps the threads apart: see [`Phase`].
/// - **copies** ([`TeamMember::shared`]): [`SharedSlice`] views of a byte
///   region, read and written element by element or in copies.
///
/// How threads communicate beyond the team: a `HybridWorld` takes
/// `&mut self`, so one thread sends: [`run_funnelled`](Self::run_funnelled)
/// runs member 0 on the calling thread, which may use the world (and MPI)
/// between team barriers while the other members compute or wait — MPI's
/// `FUNNELED` pattern, allowed at every thread level above `SINGLE`. Give
/// each thread its own endpoint instead only with a mailbox group made for
/// it (a ring has one producer).
///
/// Placement: when the process has a CPU for each member (the launcher
/// bound it to that many, or it is alone on the machine), a run pins
/// member `i` to the `i`-th CPU of the caller's set and restores the
/// caller's set afterwards — so run one team at a time per process; with
/// fewer CPUs than members, the workers unbind themselves instead.
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
pub struct Team {
    threads: usize,
    /// The byte region of [`TeamMember::shared`] (`region_len` bytes).
    region: MmapRaw,
    region_len: usize,
    /// The phased double buffer, when the team was made with one.
    pub(super) buffers: Option<Buffers>,
    barrier: Box<BarrierCell>,
    left: AtomicUsize,
    policy: WaitPolicy,
}

/// Where a run puts its members.
enum Placement {
    /// Member `i` on CPU `cpus[i]`: the process has a CPU for each member
    /// to itself (the launcher bound it to at least that many, or it is
    /// alone on the machine). Left to the scheduler, a new thread starts on
    /// its parent's CPU and is moved only after milliseconds — measured:
    /// heat2d's first 160 steps took 73 µs each instead of 9, the barrier's
    /// spin starving the member it waited for on the same CPU. (Two teams
    /// running at once in one process would be pinned to the same CPUs:
    /// run one team at a time, or give each its own threads' CPU set.)
    Pinned(Vec<usize>),
    /// The process may run on fewer CPUs than the team has threads (a
    /// launcher bound the rank to one core): the workers unbind themselves
    /// rather than timeshare that core.
    Unbound,
    /// The scheduler's choice.
    Free,
}

impl Placement {
    fn for_team(threads: usize) -> Placement {
        let allowed = crate::sync::affinity::allowed_cpus();
        let own = allowed.len() < online_cpus() || node_processes() == 1;
        if threads > allowed.len() {
            Placement::Unbound
        } else if threads > 1 && own {
            Placement::Pinned(allowed[..threads].to_vec())
        } else {
            Placement::Free
        }
    }

    /// Places the calling thread as member `index`.
    fn apply(&self, index: usize) {
        match self {
            Placement::Pinned(cpus) => pin_this_thread(cpus[index]),
            Placement::Unbound if index > 0 => unbind_this_thread(),
            _ => {}
        }
    }
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
        Ok(Team {
            threads,
            region: private_memory(shared_bytes, false)?,
            region_len: shared_bytes,
            buffers: None,
            barrier: BarrierCell::private(parties),
            left: AtomicUsize::new(0),
            policy: WaitPolicy::for_parties(threads * node_processes()),
        })
    }

    /// A team of `threads` threads over two buffers of `split.len()`
    /// elements of `T` (zeroed), computed on in place in phases
    /// ([`TeamMember::phase`]); `split` says which part of the buffer being
    /// written each member owns. No [`shared`](TeamMember::shared) bytes.
    ///
    /// # Errors
    ///
    /// [`SyncError::InvalidArgument`] for zero threads or a split that
    /// does not fit its length; the mappings' errors.
    ///
    /// # Examples
    ///
    /// Each element of the new buffer is the sum of its neighbours in the
    /// old one, computed by 3 threads in place, 10 times:
    ///
    /// ```
    /// use shmpi::hybrid::{BufferSplit, Team};
    ///
    /// let mut team = Team::with_buffers::<u64>(3, BufferSplit::new(100))?;
    /// team.buffers_mut::<u64>()?.0.fill(1);       // what the first phase reads
    /// team.run(|me| -> shmpi::Result<()> {
    ///     let mut phase = me.phase::<u64>()?;
    ///     for _ in 0..10 {
    ///         let v = phase.views();
    ///         for (k, out) in v.mine.iter_mut().enumerate() {
    ///             let i = v.at + k;
    ///             *out = v.read[i.saturating_sub(1)] + v.read[(i + 1).min(99)];
    ///         }
    ///         phase = phase.next()?;                 // barrier: roles swap
    ///     }
    ///     Ok(())
    /// });
    /// assert_eq!(team.read_buffer::<u64>()?[50], 1024);
    /// # Ok::<(), shmpi::Error>(())
    /// ```
    pub fn with_buffers<T: Pod>(threads: usize, split: BufferSplit) -> Result<Team, Error> {
        let buffers = Buffers::new::<T>(split)?;
        let mut team = Team::new(threads, 0)?;
        team.buffers = Some(buffers);
        Ok(team)
    }

    /// The two buffers between runs: the one the next phase reads (the
    /// last phase's result, or what you set up before the first), and the
    /// one it writes.
    ///
    /// # Errors
    ///
    /// [`SyncError::InvalidArgument`] when the team has no buffers of `T`.
    pub fn buffers_mut<T: Pod>(&mut self) -> Result<(&mut [T], &mut [T]), SyncError> {
        let read = self.read_index();
        let buffers = Buffers::of::<T>(&self.buffers)?;
        // SAFETY: &mut self: no run is in progress, so no phase (and no view)
        // exists; the two buffers are disjoint.
        Ok(unsafe { (buffers.whole_mut(read), buffers.whole_mut(1 - read)) })
    }

    /// The buffer the next phase reads: after a run, its last phase's
    /// result.
    ///
    /// # Errors
    ///
    /// [`SyncError::InvalidArgument`] when the team has no buffers of `T`.
    pub fn read_buffer<T: Pod>(&self) -> Result<&[T], SyncError> {
        let read = self.read_index();
        let buffers = Buffers::of::<T>(&self.buffers)?;
        // SAFETY: shared borrow of the team: no run (which needs &mut self)
        // can write the buffers while it lives.
        Ok(unsafe { buffers.whole(read) })
    }

    /// Which buffer phases of the barrier's current generation read.
    pub(super) fn read_index(&self) -> usize {
        (self.barrier().generation() % 2) as usize
    }

    fn barrier(&self) -> Barrier<'_> {
        Barrier::on(&self.barrier, self.policy)
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
        let placement = &Placement::for_team(team.threads);
        // The caller's own placement comes back after the run.
        let _restore = AffinityGuard::save();
        placement.apply(0);
        std::thread::scope(|s| {
            let worker = &worker;
            let handles: Vec<_> = (1..team.threads)
                .map(|index| {
                    s.spawn(move || {
                        placement.apply(index);
                        let _leave = LeaveGuard(&team.left);
                        worker(&TeamMember::new(team, index))
                    })
                })
                .collect();
            let first = {
                let _leave = LeaveGuard(&team.left);
                main(&TeamMember::new(team, 0))
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

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team")
            .field("threads", &self.threads)
            .field("shared_bytes", &self.region_len)
            .field("buffers", &self.buffers)
            .finish_non_exhaustive()
    }
}

/// `bytes` (at least one page) of zeroed memory only this process maps.
/// With `huge_pages`, advised for transparent huge pages where the kernel
/// gives them on request (THP in `madvise` mode, Debian's default): fewer
/// TLB misses on large grids.
pub(crate) fn private_memory(bytes: usize, huge_pages: bool) -> Result<MmapRaw, SyncError> {
    let memory = memmap2::MmapOptions::new()
        .len(bytes.max(1))
        .map_anon()
        .map(MmapRaw::from)
        .map_err(|e| SyncError::Os {
            op: "mmap",
            errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        })?;
    if huge_pages {
        let _ = memory.advise(memmap2::Advice::HugePage);
    }
    Ok(memory)
}

/// One thread of a [`Team`]. Not `Sync`: it stays on its thread, so each
/// barrier round has exactly one arrival per member.
///
/// ```compile_fail
/// # use shmpi::hybrid::Team;
/// let mut team = Team::new(2, 8).unwrap();
/// team.run(|me| {
///     std::thread::scope(|s| {
///         s.spawn(|| me.barrier()); // a member cannot lend itself to another thread
///     });
/// });
/// ```
#[derive(Debug)]
pub struct TeamMember<'a> {
    team: &'a Team,
    index: usize,
    /// A [`Phase`] of this member is alive.
    in_phase: Cell<bool>,
}

impl<'a> TeamMember<'a> {
    fn new(team: &'a Team, index: usize) -> Self {
        TeamMember {
            team,
            index,
            in_phase: Cell::new(false),
        }
    }

    /// This member's phase over the team's buffers: it reads the whole of
    /// one buffer and writes its own part of the other (see [`Phase`]).
    ///
    /// # Errors
    ///
    /// [`SyncError::PhaseOpen`] while this member holds a phase;
    /// [`SyncError::InvalidArgument`] when the team has no buffers of `T`.
    pub fn phase<T: Pod>(&self) -> Result<Phase<'_, T>, SyncError> {
        let buffers = Buffers::of::<T>(&self.team.buffers)?;
        if self.in_phase.replace(true) {
            return Err(SyncError::PhaseOpen);
        }
        Ok(Phase::begin(self, buffers, self.team.read_index()))
    }

    /// Ends this member's phase (its views are gone: the phase was
    /// consumed or dropped).
    pub(super) fn end_phase(&self) {
        self.in_phase.set(false);
    }

    /// The barrier that ends a phase: like [`barrier`](Self::barrier)
    /// without the check that no phase is open.
    pub(super) fn phase_barrier(
        &self,
        timeout: Option<Duration>,
    ) -> Result<BarrierWaitResult, SyncError> {
        self.barrier_until(timeout.map(|t| (Instant::now() + t, t)))
    }

    /// The team this member belongs to.
    pub(super) fn team(&self) -> &'a Team {
        self.team
    }

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
        let region = self.team.region_len;
        let fits = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|bytes| offset.checked_add(bytes))
            .is_some_and(|end| end <= region)
            && offset.is_multiple_of(std::mem::align_of::<T>());
        if !fits {
            return Err(PlacementError {
                what: "team view",
                offset,
                size: len.saturating_mul(std::mem::size_of::<T>()),
                align: std::mem::align_of::<T>(),
                segment_len: region,
            });
        }
        let ptr = NonNull::new(
            self.team
                .region
                .as_mut_ptr()
                .wrapping_add(offset)
                .cast::<T>(),
        )
        .expect("a mapping is not at address 0");
        // SAFETY: checked above: `len` elements at `offset` lie inside the
        // region (page-aligned, so `offset`'s alignment is the pointer's),
        // which lives as long as the team, borrowed for '_.
        Ok(unsafe { SharedSlice::from_raw(ptr, len) })
    }

    /// Waits for every thread of the team (spins briefly, then sleeps: the
    /// threads may share a core).
    ///
    /// # Errors
    ///
    /// [`SyncError::TeamMemberLeft`] when a member left the team, so the
    /// barrier cannot complete; [`SyncError::PhaseOpen`] while this member
    /// holds a phase (end it with [`Phase::next`]); [`SyncError`] from the
    /// barrier.
    pub fn barrier(&self) -> Result<BarrierWaitResult, SyncError> {
        self.plain_barrier(None)
    }

    /// [`barrier`](Self::barrier) with a timeout.
    ///
    /// # Errors
    ///
    /// [`SyncError::Timeout`], or as [`barrier`](Self::barrier).
    pub fn barrier_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, SyncError> {
        self.plain_barrier(Some((Instant::now() + timeout, timeout)))
    }

    fn plain_barrier(
        &self,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<BarrierWaitResult, SyncError> {
        if self.in_phase.get() {
            return Err(SyncError::PhaseOpen);
        }
        self.barrier_until(deadline)
    }

    /// Waits in slices of [`LEFT_CHECK`]: a slice that times out withdraws
    /// this thread's arrival (unless the round completed), then either
    /// arrives again or reports why it gives up.
    fn barrier_until(
        &self,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<BarrierWaitResult, SyncError> {
        let barrier = self.team.barrier();
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
