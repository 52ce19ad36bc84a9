//! The doorbell protocol: a waiter announces that it sleeps, a waker rings
//! only when someone announced it — so the fast path makes no system call.
//!
//! It is Dekker's pattern. The waker does "publish work; read the flag", the
//! sleeper "set the flag; re-check for work". With a plain store and load on
//! each side, each could miss the other's store (x86 reorders a store with a
//! later load) and the sleeper would sleep on work that is already there: a
//! lost wake-up. Each side needs a StoreLoad barrier. Here both sides use a
//! read-modify-write on the flag itself — the waker `swap(0)`, the sleeper
//! `swap(1)`, both acquire-release. RMWs on one location are totally ordered:
//! if the waker's swap comes first, the sleeper's swap reads from it and
//! synchronises with it, so the sleeper's re-check sees the work; if the
//! sleeper's comes first, the waker reads 1 and rings. The argument needs
//! only acquire/release; `tests/loom_ring.rs` checks this very code under
//! loom, with a loom condition variable as the doorbell. The waker's swap
//! also clears the flag, so one sleep gets one wake-up.

use std::sync::atomic::Ordering;

/// A 32-bit atomic flag: `std`'s in shared memory, loom's in the models.
pub trait WakeFlag {
    /// Atomic store.
    fn store(&self, value: u32, order: Ordering);
    /// Atomic swap.
    fn swap(&self, value: u32, order: Ordering) -> u32;
}

impl WakeFlag for std::sync::atomic::AtomicU32 {
    fn store(&self, value: u32, order: Ordering) {
        std::sync::atomic::AtomicU32::store(self, value, order)
    }
    fn swap(&self, value: u32, order: Ordering) -> u32 {
        std::sync::atomic::AtomicU32::swap(self, value, order)
    }
}

/// The waker's half, called after the work (a record, freed space) has been
/// published: rings `doorbell` when, and only when, the peer announced that
/// it sleeps.
#[inline]
pub fn notify<F: WakeFlag>(sleeping: &F, doorbell: impl FnOnce()) {
    if sleeping.swap(0, Ordering::AcqRel) != 0 {
        doorbell();
    }
}

/// The sleeper's half: announces the sleep, re-checks `has_work`, and only
/// if there is still none calls `wait` (which sleeps on the doorbell until
/// rung or a time slice ends). Returns what `has_work` found, or `None`
/// after a wait; the caller polls again in any case.
#[inline]
pub fn sleep<F: WakeFlag, T>(
    sleeping: &F,
    has_work: impl FnOnce() -> Option<T>,
    wait: impl FnOnce(),
) -> Option<T> {
    sleeping.swap(1, Ordering::AcqRel);
    if let Some(found) = has_work() {
        sleeping.store(0, Ordering::Relaxed);
        return Some(found);
    }
    wait();
    sleeping.store(0, Ordering::Relaxed);
    None
}
