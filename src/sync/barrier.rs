//! An N-party barrier for processes, on a futex in shared memory.
//!
//! Not `pthread_barrier_t`: it has no timeout form, and a waiter could not
//! withdraw from it. Here the whole state is one 64-bit word
//! `generation << 32 | arrived`, changed only by compare-and-swap, so
//! "the last party completes the round" and "a timed-out party withdraws"
//! exclude each other: a waiter that times out leaves the barrier exactly
//! as if it had never arrived.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;

use super::wait::{Pause, WaitPolicy, Waiter};
use super::SyncError;
use super::{check_tag, futex, place_cell};
use crate::segment::Segment;

const TAG: u32 = u32::from_le_bytes(*b"BAR1");

/// The barrier's state: in a segment for processes, or in a process's own
/// memory for its threads ([`BarrierCell::private`]).
#[repr(C, align(64))]
pub(crate) struct BarrierCell {
    tag: AtomicU32,
    parties: AtomicU32,
    /// `generation << 32 | arrived`.
    state: AtomicU64,
    /// Futex word, bumped when a round completes.
    wake: AtomicU32,
    /// Parties asleep (or about to sleep) on `wake`: the last arriver
    /// makes the wake-up system call only when it reads non-zero. A hint —
    /// a scribbled value costs a useless system call or, when it hides a
    /// sleeper, a wake-up at the sleeper's next check (the wait policy's
    /// slice), never a hang.
    sleepers: AtomicU32,
}

impl BarrierCell {
    /// A barrier for `parties` threads of this process, in its own memory
    /// (a team's: no other process can map it).
    pub(crate) fn private(parties: u32) -> Box<BarrierCell> {
        Box::new(BarrierCell {
            tag: AtomicU32::new(TAG),
            parties: AtomicU32::new(parties),
            state: AtomicU64::new(0),
            wake: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        })
    }
}

/// A party's arrival at a round, to [`Barrier::complete`].
#[derive(Debug, Clone, Copy)]
#[must_use = "an arrival is completed by Barrier::complete"]
pub(crate) struct Arrival {
    generation: u32,
    /// This arrival completed the round.
    last: bool,
}

/// What [`Barrier::wait`] tells each party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult {
    leader: bool,
}

impl BarrierWaitResult {
    /// True for exactly one party per round: the one that arrived last.
    pub fn is_leader(&self) -> bool {
        self.leader
    }
}

/// A reusable barrier for a fixed number of parties (processes or threads).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmpi::segment::{Segment, SegmentName};
/// use shmpi::sync::Barrier;
/// use shmpi::SyncError;
///
/// let seg = Segment::create(&SegmentName::unique("doc-barrier"), Barrier::SIZE)?;
/// let b = Barrier::create_in(&seg, 0, 2)?;
/// // Alone, the second party never comes: the timeout form withdraws.
/// assert!(matches!(b.wait_timeout(Duration::from_millis(5)), Err(SyncError::Timeout { .. })));
/// std::thread::scope(|s| {
///     s.spawn(|| b.wait().unwrap());
///     b.wait().unwrap();
/// });
/// # Ok::<(), shmpi::Error>(())
/// ```
pub struct Barrier<'a> {
    cell: &'a BarrierCell,
    parties: u32,
    policy: WaitPolicy,
}

impl<'a> Barrier<'a> {
    /// Bytes a barrier occupies in a segment.
    pub const SIZE: usize = std::mem::size_of::<BarrierCell>();
    /// Alignment it needs.
    pub const ALIGN: usize = std::mem::align_of::<BarrierCell>();

    /// Initialises a barrier for `parties` parties at byte `offset`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Placement`]; [`SyncError::InvalidArgument`] for zero
    /// parties.
    pub fn create_in(seg: &'a Segment, offset: usize, parties: u32) -> Result<Self, SyncError> {
        if parties == 0 {
            return Err(SyncError::InvalidArgument(
                "a barrier needs at least one party",
            ));
        }
        let cell = place_cell::<BarrierCell>(seg, offset, "barrier")?;
        cell.tag.store(0, Ordering::Relaxed);
        cell.parties.store(parties, Ordering::Relaxed);
        cell.state.store(0, Ordering::Relaxed);
        cell.wake.store(0, Ordering::Relaxed);
        cell.sleepers.store(0, Ordering::Relaxed);
        cell.tag.store(TAG, Ordering::Release);
        Ok(Barrier {
            cell,
            parties,
            policy: WaitPolicy::for_parties(parties as usize),
        })
    }

    /// Opens the barrier created at `offset`. The party count is read once
    /// here; later changes to shared memory cannot change it.
    ///
    /// # Errors
    ///
    /// [`SyncError::Placement`]; [`SyncError::NotInitialised`] (also for a
    /// corrupt party count of zero).
    pub fn open_in(seg: &'a Segment, offset: usize) -> Result<Self, SyncError> {
        let cell = place_cell::<BarrierCell>(seg, offset, "barrier")?;
        check_tag(&cell.tag, TAG, "barrier", offset)?;
        let parties = cell.parties.load(Ordering::Relaxed);
        if parties == 0 {
            return Err(SyncError::NotInitialised {
                expected: "barrier",
                offset,
                found: TAG,
            });
        }
        Ok(Barrier {
            cell,
            parties,
            policy: WaitPolicy::for_parties(parties as usize),
        })
    }

    /// The barrier over a process-private cell (the party count is the
    /// cell's own, set by [`BarrierCell::private`]).
    pub(crate) fn on(cell: &'a BarrierCell, policy: WaitPolicy) -> Self {
        Barrier {
            cell,
            parties: cell.parties.load(Ordering::Relaxed).max(1),
            policy,
        }
    }

    /// How many rounds have completed (wrapping at 2³²). A party that has
    /// passed round `g` and not yet arrived again reads exactly `g + 1`:
    /// the next round cannot complete without it.
    pub(crate) fn generation(&self) -> u32 {
        (self.cell.state.load(Ordering::Acquire) >> 32) as u32
    }

    /// Spins for up to `spin` before yielding and sleeping in a wait.
    /// Spinning saves the sleep and wake-up — tens of microseconds — when
    /// the parties have cores of their own; when they share cores it takes
    /// time from the party being waited for. The default is
    /// [`WaitPolicy::for_parties`] of the party count, which picks by that
    /// rule.
    pub fn with_spin(mut self, spin: Duration) -> Self {
        self.policy = self.policy.with_spin(spin);
        self
    }

    /// Waits under `policy` (the crate's wait policy, see
    /// [`crate::sync::wait`]).
    pub fn with_policy(mut self, policy: WaitPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// Waits until all parties have arrived.
    ///
    /// # Errors
    ///
    /// [`SyncError::Mismatch`] when the shared state says more parties
    /// arrived than the barrier has (corruption, or a party count that
    /// differs between processes).
    pub fn wait(&self) -> Result<BarrierWaitResult, SyncError> {
        self.wait_until(None)
    }

    /// Like [`wait`](Self::wait), giving up after `timeout`. A party that
    /// times out withdraws: the round still needs all parties.
    ///
    /// # Errors
    ///
    /// [`SyncError::Timeout`], or as [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, SyncError> {
        self.wait_until(Some(timeout))
    }

    /// Arrives, then waits at most `timeout` (counted from the wait's
    /// first look at the clock: a round that completes within the first
    /// spins reads no clock).
    fn wait_until(&self, timeout: Option<Duration>) -> Result<BarrierWaitResult, SyncError> {
        let arrival = self.arrive()?;
        self.complete(arrival, timeout)
    }

    /// The first half of a split-phase wait: counts this party in and
    /// returns at once. [`complete`](Self::complete) waits for the others.
    pub(crate) fn arrive(&self) -> Result<Arrival, SyncError> {
        let state = &self.cell.state;
        loop {
            let cur = state.load(Ordering::Acquire);
            let (generation, arrived) = ((cur >> 32) as u32, cur as u32);
            if arrived >= self.parties {
                return Err(SyncError::Mismatch {
                    what: "barrier parties already arrived",
                    found: arrived.into(),
                    expected: u64::from(self.parties) - 1,
                });
            }
            let last = arrived + 1 == self.parties;
            let next = if last {
                u64::from(generation.wrapping_add(1)) << 32
            } else {
                cur + 1
            };
            if state
                .compare_exchange_weak(cur, next, Ordering::SeqCst, Ordering::Acquire)
                .is_ok()
            {
                if last {
                    // Dekker with the sleepers: the round's completion (the
                    // state RMW) precedes this load in the SeqCst order, and
                    // a sleeper's increment precedes its last look at the
                    // state: either it sees the round done and does not
                    // sleep, or we see it and wake it. The wake word it
                    // read before its increment is older than our bump, so
                    // a sleep that starts after the wake returns at once.
                    if self.cell.sleepers.load(Ordering::SeqCst) != 0 {
                        self.cell.wake.fetch_add(1, Ordering::SeqCst);
                        futex::wake(&self.cell.wake, i32::MAX);
                    }
                }
                return Ok(Arrival { generation, last });
            }
        }
    }

    /// The second half of a split-phase wait: waits at most `timeout` for
    /// the round `arrival` joined to complete. On a timeout the arrival is
    /// withdrawn (unless the round completed first).
    pub(crate) fn complete(
        &self,
        arrival: Arrival,
        timeout: Option<Duration>,
    ) -> Result<BarrierWaitResult, SyncError> {
        if arrival.last {
            return Ok(BarrierWaitResult { leader: true });
        }
        let (state, generation) = (&self.cell.state, arrival.generation);
        let passed = || (state.load(Ordering::SeqCst) >> 32) as u32 != generation;
        let mut waiter = Waiter::new(&self.policy, timeout);
        loop {
            if passed() {
                return Ok(BarrierWaitResult { leader: false });
            }
            match waiter.pause() {
                Pause::Again | Pause::Check => {}
                Pause::Expired => {
                    return self.withdraw(generation, timeout.unwrap_or_default());
                }
                Pause::Block(slice) => self.sleep(slice, &passed)?,
            }
        }
    }

    /// Sleeps on the wake word for at most `slice`, announced in
    /// `sleepers`, unless `passed` already holds.
    fn sleep(&self, slice: Duration, passed: &impl Fn() -> bool) -> Result<(), SyncError> {
        let cell = self.cell;
        let seen = cell.wake.load(Ordering::SeqCst);
        cell.sleepers.fetch_add(1, Ordering::SeqCst);
        let result = if passed() {
            Ok(())
        } else {
            match futex::wait(&cell.wake, seen, Some(slice)) {
                Ok(()) | Err(Errno::EAGAIN | Errno::EINTR | Errno::ETIMEDOUT) => Ok(()),
                Err(errno) => Err(SyncError::Os { op: "futex", errno }),
            }
        };
        cell.sleepers.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Takes this party's arrival back, unless the round completed first.
    fn withdraw(&self, generation: u32, timeout: Duration) -> Result<BarrierWaitResult, SyncError> {
        let state = &self.cell.state;
        loop {
            let cur = state.load(Ordering::Acquire);
            if (cur >> 32) as u32 != generation {
                return Ok(BarrierWaitResult { leader: false });
            }
            if cur as u32 == 0 {
                // Corrupt: our own arrival is missing. Nothing to take back.
                return Err(SyncError::Timeout { waited: timeout });
            }
            if state
                .compare_exchange_weak(cur, cur - 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Err(SyncError::Timeout { waited: timeout });
            }
        }
    }
}

impl std::fmt::Debug for Barrier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .finish()
    }
}
