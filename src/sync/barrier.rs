//! An N-party barrier for processes, on a futex in shared memory.
//!
//! Not `pthread_barrier_t`: it has no timeout form, and a waiter could not
//! withdraw from it. Here the whole state is one 64-bit word
//! `generation << 32 | arrived`, changed only by compare-and-swap, so
//! "the last party completes the round" and "a timed-out party withdraws"
//! exclude each other: a waiter that times out leaves the barrier exactly
//! as if it had never arrived.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::{check_tag, futex, place_cell};
use crate::error::SyncError;
use crate::segment::Segment;

const TAG: u32 = u32::from_le_bytes(*b"BAR1");

/// Spins before sleeping: short, because the parties may share a core.
const SPINS: u32 = 200;

#[repr(C, align(64))]
struct BarrierCell {
    tag: AtomicU32,
    parties: AtomicU32,
    /// `generation << 32 | arrived`.
    state: AtomicU64,
    /// Futex word, bumped when a round completes.
    wake: AtomicU32,
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
    spin: Duration,
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
        cell.tag.store(TAG, Ordering::Release);
        Ok(Barrier {
            cell,
            parties,
            spin: Duration::ZERO,
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
            spin: Duration::ZERO,
        })
    }

    /// Spins for up to `spin` before sleeping in a wait (default: a few
    /// hundred polls only). Spinning saves the sleep and wake-up — tens of
    /// microseconds — when the parties have cores of their own; when they
    /// share cores it takes time from the party being waited for
    /// ([`crate::mailbox::default_spin`] picks by that rule).
    pub fn with_spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
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
        self.wait_until(Some((Instant::now() + timeout, timeout)))
    }

    fn wait_until(
        &self,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<BarrierWaitResult, SyncError> {
        let state = &self.cell.state;
        let generation = loop {
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
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                if last {
                    self.cell.wake.fetch_add(1, Ordering::Release);
                    futex::wake(&self.cell.wake, i32::MAX);
                    return Ok(BarrierWaitResult { leader: true });
                }
                break generation;
            }
        };
        let passed = || (state.load(Ordering::Acquire) >> 32) as u32 != generation;
        let spin_start = Instant::now();
        let mut polls = 0u32;
        while polls < SPINS || (polls % 64 != 0 || spin_start.elapsed() < self.spin) {
            if passed() {
                return Ok(BarrierWaitResult { leader: false });
            }
            std::hint::spin_loop();
            polls = polls.wrapping_add(1);
        }
        loop {
            let seen = self.cell.wake.load(Ordering::Acquire);
            if passed() {
                return Ok(BarrierWaitResult { leader: false });
            }
            let remaining = match deadline {
                None => None,
                Some((at, timeout)) => match at.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return self.withdraw(generation, timeout),
                },
            };
            match futex::wait(&self.cell.wake, seen, remaining) {
                Ok(()) | Err(Errno::EAGAIN | Errno::EINTR | Errno::ETIMEDOUT) => {}
                Err(errno) => return Err(SyncError::Os { op: "futex", errno }),
            }
        }
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
