//! The doorbell protocol: a waiter announces that it sleeps, a waker rings
//! only when someone announced it — so the fast path makes no system call.
//!
//! It is Dekker's pattern. The waker does "publish work; read the flag", the
//! sleeper "set the flag; re-check for work". Without a StoreLoad barrier on
//! both sides each could miss the other's store (x86 reorders a store with a
//! later load), and the sleeper would sleep on work that is already there:
//! a lost wake-up. Both sides therefore run a sequentially consistent fence
//! between their store and their load. The protocol is generic over the
//! flag, the fence and the doorbell so that `tests/loom_ring.rs` checks this
//! very code under loom, with a loom condition variable as the doorbell.

use std::sync::atomic::Ordering;

/// A 32-bit atomic flag: `std`'s in shared memory, loom's in the models.
pub trait WakeFlag {
    /// Atomic load.
    fn load(&self, order: Ordering) -> u32;
    /// Atomic store.
    fn store(&self, value: u32, order: Ordering);
    /// Atomic swap.
    fn swap(&self, value: u32, order: Ordering) -> u32;
}

impl WakeFlag for std::sync::atomic::AtomicU32 {
    fn load(&self, order: Ordering) -> u32 {
        std::sync::atomic::AtomicU32::load(self, order)
    }
    fn store(&self, value: u32, order: Ordering) {
        std::sync::atomic::AtomicU32::store(self, value, order)
    }
    fn swap(&self, value: u32, order: Ordering) -> u32 {
        std::sync::atomic::AtomicU32::swap(self, value, order)
    }
}

/// The waker's half, called after the work (a record, freed space) has been
/// published: rings `doorbell` when, and only when, the peer announced that
/// it sleeps. Clearing the flag with a swap makes one wake-up per sleep.
#[inline]
pub fn notify<F: WakeFlag>(sleeping: &F, fence: impl Fn(), doorbell: impl FnOnce()) {
    fence();
    if sleeping.load(Ordering::Relaxed) != 0 && sleeping.swap(0, Ordering::Relaxed) != 0 {
        doorbell();
    }
}

/// The sleeper's half: announces the sleep, re-checks `has_work`, and only
/// if there is still none calls `wait` (which sleeps on the doorbell until
/// rung or a time slice ends). Returns what `has_work` found or `None` after
/// a wait; the caller polls again in any case.
#[inline]
pub fn sleep<F: WakeFlag, T>(
    sleeping: &F,
    fence: impl Fn(),
    has_work: impl FnOnce() -> Option<T>,
    wait: impl FnOnce(),
) -> Option<T> {
    sleeping.store(1, Ordering::Relaxed);
    fence();
    if let Some(found) = has_work() {
        sleeping.store(0, Ordering::Relaxed);
        return Some(found);
    }
    wait();
    sleeping.store(0, Ordering::Relaxed);
    None
}

/// The fence both halves use in production.
#[inline]
pub fn seq_cst_fence() {
    std::sync::atomic::fence(Ordering::SeqCst);
}
