//! Synchronisation primitives that live inside a [`Segment`] and work
//! across processes (and between the threads of one process).
//!
//! - [`Semaphore`]: a POSIX counting semaphore (`sem_init(3)` with
//!   `pshared = 1`); timeouts on the monotonic clock (`sem_clockwait`).
//! - [`RobustMutex`]: a pthread mutex with `PTHREAD_PROCESS_SHARED` and
//!   `PTHREAD_MUTEX_ROBUST` guarding a `Pod` value: when an owner dies
//!   holding it, the next locker is told ([`LockError::OwnerDied`]) and may
//!   repair the value and mark it consistent.
//! - [`Barrier`]: an N-process barrier on a Linux futex, with a timeout form
//!   from which a waiter withdraws cleanly (the barrier stays usable).
//!
//! Each object starts with a tag word written last at creation; opening
//! checks it, so an object that was never created (or was overwritten) is a
//! clear [`SyncError::NotInitialised`], not a call into garbage.
//!
//! # Trust
//!
//! **[`Semaphore`] and [`RobustMutex`] are for trusted peers only.** They
//! are glibc objects (`sem_t`, `pthread_mutex_t`) whose internals cannot be
//! validated: a process that scribbles on them can make them misbehave (a
//! lost wake-up, a mutex that never unlocks) and can make glibc abort the
//! process ("The futex facility returned an unexpected error code"). Share
//! them only with processes you trust to follow the protocol; mode 0600,
//! the default, limits that to your own uid. [`Barrier`] is shmpi's own
//! (one state word, every value handled): a corrupted barrier returns an
//! error or times out, never aborts. The mailboxes' doorbells are futex
//! words shmpi owns for the same reason.
//!
//! Every blocking call has a `_timeout` form and a `try_` form. Every wait
//! in the crate follows one policy — spin, then yield, then block —
//! defined in [`wait`].
//!
//! [`Segment`]: crate::segment::Segment

pub mod affinity;
pub(crate) mod barrier;
pub(crate) mod claims;
mod error;
pub(crate) mod futex;
pub mod membarrier;
mod mutex;
mod semaphore;
pub mod wait;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use barrier::{Barrier, BarrierWaitResult};
pub use mutex::{LockError, MutexGuard, RecoveredGuard, RobustMutex};
pub use semaphore::Semaphore;
pub use wait::{online_cpus, usable_cpus, Pause, WaitPolicy, Waiter};

use crate::segment::Segment;
pub use error::SyncError;

/// Returns a reference to a `C` placed at `offset` of `seg`'s data region,
/// after checking bounds and alignment.
///
/// `C` must be a `#[repr(C)]` type made of atomics, `UnsafeCell`s over C
/// types that are plain bytes (`sem_t`, `pthread_mutex_t`) and `Pod` values,
/// so that every bit pattern is a valid `C`.
fn place_cell<'a, C>(
    seg: &'a Segment,
    offset: usize,
    what: &'static str,
) -> Result<&'a C, SyncError> {
    let ptr = seg.place(
        what,
        offset,
        std::mem::size_of::<C>(),
        std::mem::align_of::<C>(),
    )?;
    // SAFETY: `place` checked that size_of::<C>() bytes at `ptr` lie inside
    // the mapping, which lives as long as `seg` ('a), and that `ptr` is
    // aligned for C. Every bit pattern is a valid C (the contract above), and
    // C's fields are shared through atomics or UnsafeCell only.
    Ok(unsafe { &*ptr.as_ptr().cast::<C>() })
}

/// Checks an object's tag word (acquire: it is written last, with release).
fn check_tag(
    tag: &AtomicU32,
    expected: u32,
    what: &'static str,
    offset: usize,
) -> Result<(), SyncError> {
    let found = tag.load(Ordering::Acquire);
    if found == expected {
        Ok(())
    } else {
        Err(SyncError::NotInitialised {
            expected: what,
            offset,
            found,
        })
    }
}

/// `now + timeout` on `CLOCK_MONOTONIC`, as an absolute `timespec`.
fn monotonic_deadline(timeout: Duration) -> libc::timespec {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
        .unwrap_or_default();
    let at = now.saturating_add(timeout);
    libc::timespec {
        tv_sec: libc::time_t::try_from(at.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: at.subsec_nanos() as libc::c_long,
    }
}

extern "C" {
    // glibc >= 2.30; not (yet) bound by the libc crate.
    fn sem_clockwait(
        sem: *mut libc::sem_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}
