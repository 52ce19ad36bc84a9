//! The doorbell protocol: a waiter announces that it sleeps, a waker rings
//! only when someone announced it — so the fast path makes no system call.
//!
//! It is Dekker's pattern. The waker does "publish work; read the flag", the
//! sleeper "set the flag; re-check for work". With a plain store and load on
//! each side, each could miss the other's store (x86 reorders a store with a
//! later load) and the sleeper would sleep on work that is already there: a
//! lost wake-up. Each side needs a StoreLoad barrier. Two ways to pay it:
//!
//! **Fenced (symmetric)**: [`notify`] and [`sleep`]. Both sides use a
//! read-modify-write on the flag itself — the waker `swap(0)`, the sleeper
//! `swap(1)`, both acquire-release. RMWs on one location are totally
//! ordered: if the waker's swap comes first, the sleeper's swap reads from
//! it and synchronises with it, so the sleeper's re-check sees the work; if
//! the sleeper's comes first, the waker reads 1 and rings. The argument
//! needs only acquire/release; `tests/loom_ring.rs` checks this very code
//! under loom, with a loom condition variable as the doorbell. The waker's
//! swap also clears the flag, so one sleep gets one wake-up.
//!
//! **Asymmetric (the sleeper pays)**: [`notify_light`] and [`sleep`] with
//! a heavy barrier. The waker publishes, then — after only a compiler
//! fence — loads the flag: no fence, no RMW on a send that finds the peer
//! awake. The sleeper sets the flag, then runs `membarrier(2)`
//! ([`crate::sync::membarrier::heavy`]), which makes every CPU running a
//! thread of a registered process execute a full barrier before it returns,
//! then re-checks. Proof, for one waker thread W (registered) and the
//! sleeper S: the barrier hits W at some instruction boundary b of W's
//! stream, between S's flag store (before the call) and S's re-check
//! (after it returns); a W that is not running has passed a context
//! switch, which is a full barrier, so the same holds with b there.
//! - If W's flag load comes after b, it follows S's flag store, which was
//!   globally visible before the call: W reads 1 and rings.
//! - If W's flag load comes before b, so does W's publishing store
//!   (program order, kept by the compiler fence); the full barrier at b
//!   drains W's store buffer before the call returns, so S's re-check,
//!   after the return, sees the work and S does not sleep.
//!
//! Either way no wake-up is lost. A waker that could not register uses the
//! fenced [`notify`], which is sound against either sleeper (its swap is a
//! full barrier on the flag), so the choice is per waker. Loom cannot model
//! `membarrier`; the protocol's two halves are this module's few lines,
//! and the lost-wake-up counter
//! ([`MailboxGroup::lost_wakeups`](super::MailboxGroup::lost_wakeups))
//! checks it in the stress and kill tests.

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
    #[inline]
    fn load(&self, order: Ordering) -> u32 {
        std::sync::atomic::AtomicU32::load(self, order)
    }
    #[inline]
    fn store(&self, value: u32, order: Ordering) {
        std::sync::atomic::AtomicU32::store(self, value, order)
    }
    #[inline]
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

/// The asymmetric waker's half, called after the work has been
/// published: a compiler fence and a plain load of the flag; only a waker
/// that reads "sleeping" swaps it back (so one sleep gets one ring) and
/// rings. Sound only while the sleeper runs the heavy barrier (see the
/// module's proof) and this process is registered for it.
#[inline]
pub fn notify_light<F: WakeFlag>(sleeping: &F, doorbell: impl FnOnce()) {
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    if sleeping.load(Ordering::Relaxed) != 0 && sleeping.swap(0, Ordering::AcqRel) != 0 {
        doorbell();
    }
}

/// How a [`sleep`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Slept<T> {
    /// The look before sleeping found this: no sleep.
    Found(T),
    /// A waker rang (the doorbell changed); the caller looks again.
    Rung,
    /// The sleep ended without a ring (its time slice, a signal) and there
    /// is still no work.
    Unrung,
    /// The sleep ended without a ring, yet the look after it — made while
    /// the flag still said "sleeping" — found this, and no ring came within
    /// the grace `late_ring` allowed: a waker published while this side was
    /// announced and did not ring. A lost wake-up — or a waker that died
    /// between publishing and ringing.
    Lost(T),
}

/// The sleeper's half: announces the sleep, runs `barrier` (the heavy
/// barrier for asymmetric wakers; nothing for fenced ones), looks for work
/// (`look`), and only if there is none calls `wait`, which sleeps on the
/// doorbell until rung or a time slice ends and says whether it was rung.
/// After an unrung sleep it looks once more before withdrawing the
/// announcement, so that work found then was published while the flag was
/// up. Such work is a lost wake-up unless its waker is merely late — it
/// published and was preempted before it could ring, which the scheduler
/// makes common when processes outnumber cores — so `late_ring` (called
/// with the flag still up, so a late waker does ring) waits a grace time
/// for that ring and says whether it came: if not, [`Slept::Lost`].
#[inline]
pub fn sleep<F: WakeFlag, T>(
    sleeping: &F,
    barrier: impl FnOnce(),
    mut look: impl FnMut() -> Option<T>,
    wait: impl FnOnce() -> bool,
    late_ring: impl FnOnce() -> bool,
) -> Slept<T> {
    sleeping.swap(1, Ordering::AcqRel);
    barrier();
    let slept = match look() {
        Some(found) => Slept::Found(found),
        None if wait() => Slept::Rung,
        None => match look() {
            None => Slept::Unrung,
            Some(found) if late_ring() => Slept::Found(found),
            Some(found) => Slept::Lost(found),
        },
    };
    sleeping.store(0, Ordering::Relaxed);
    slept
}
