//! A robust, process-shared pthread mutex guarding a `Pod` value
//! (`pthread_mutexattr_setrobust(3)`, POSIX.1-2008).

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytemuck::Pod;
use nix::errno::Errno;

use super::SyncError;
use super::{check_tag, monotonic_deadline, place_cell, pthread_mutex_clocklock};
use crate::segment::Segment;

const TAG: u32 = u32::from_le_bytes(*b"MTX1");

#[repr(C, align(64))]
struct MutexCell<T> {
    tag: AtomicU32,
    value_size: AtomicU32,
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    value: UnsafeCell<T>,
}

/// A mutex inside a segment that survives its owner's death, guarding a
/// value of type `T`.
///
/// Values are copied in and out ([`MutexGuard::get`], [`MutexGuard::set`],
/// [`MutexGuard::update`]), never lent as a reference into shared memory.
///
/// When a process dies holding the lock, the next [`lock`](Self::lock)
/// returns [`LockError::OwnerDied`] with a [`RecoveredGuard`]: inspect and
/// repair the value, then call [`RecoveredGuard::make_consistent`]. Dropping
/// the recovered guard without doing so leaves the mutex permanently
/// unusable ([`SyncError::NotRecoverable`]) until it is created anew — the
/// POSIX rule.
///
/// **For trusted peers only**: a process that can write the segment can
/// corrupt the mutex's glibc internals, and glibc may then abort the process
/// (see the [module docs](super#trust)); share it only with processes you
/// trust to follow the protocol (mode 0600, the default, limits that to
/// your own uid).
///
/// # Examples
///
/// ```
/// use shmpi::segment::{Segment, SegmentName};
/// use shmpi::sync::{LockError, RobustMutex};
///
/// let seg = Segment::create(&SegmentName::unique("doc-mutex"), 256)?;
/// let m = RobustMutex::<u64>::create_in(&seg, 0, 10)?;
/// {
///     let g = m.lock().map_err(LockError::into_sync_error)?;
///     g.update(|v| *v += 1);
/// }
/// // After a crash of the owner, lock() returns OwnerDied; recover like this:
/// let g = match m.lock() {
///     Ok(g) => g,
///     Err(LockError::OwnerDied(r)) => { r.set(0); r.make_consistent()? }
///     Err(e) => return Err(e.into_sync_error().into()),
/// };
/// assert_eq!(g.get(), 11);
/// # Ok::<(), shmpi::Error>(())
/// ```
pub struct RobustMutex<'a, T: Pod> {
    cell: &'a MutexCell<T>,
}

// SAFETY: a process-shared pthread mutex may be used from any thread; the
// value is only accessed by copies while the lock is held.
unsafe impl<T: Pod> Send for RobustMutex<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Pod> Sync for RobustMutex<'_, T> {}

impl<'a, T: Pod> RobustMutex<'a, T> {
    /// Bytes the mutex with its value occupies in a segment.
    pub const SIZE: usize = std::mem::size_of::<MutexCell<T>>();
    /// Alignment it needs.
    pub const ALIGN: usize = std::mem::align_of::<MutexCell<T>>();

    /// Initialises an unlocked mutex guarding `initial` at byte `offset` of
    /// the segment's data (before other processes use that memory; this is
    /// also how a [`SyncError::NotRecoverable`] mutex is reset).
    ///
    /// # Errors
    ///
    /// [`SyncError::Placement`]; [`SyncError::Os`] from the pthread calls.
    pub fn create_in(seg: &'a Segment, offset: usize, initial: T) -> Result<Self, SyncError> {
        let cell = place_cell::<MutexCell<T>>(seg, offset, "robust mutex")?;
        cell.tag.store(0, Ordering::Relaxed);
        let check = |op: &'static str, rc: libc::c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(SyncError::Os {
                    op,
                    errno: Errno::from_raw(rc),
                })
            }
        };
        // SAFETY: all-zero is a valid bit pattern for the attribute object,
        // which pthread_mutexattr_init then initialises.
        let mut attr: libc::pthread_mutexattr_t = unsafe { std::mem::zeroed() };
        // SAFETY: `attr` is a live local; the mutex lies in the mapping and
        // nobody uses it yet (documented precondition); the value cell is in
        // bounds and T is Pod, so a plain write is valid.
        unsafe {
            check(
                "pthread_mutexattr_init",
                libc::pthread_mutexattr_init(&mut attr),
            )?;
            let result = (|| {
                check(
                    "pthread_mutexattr_setpshared",
                    libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                )?;
                check(
                    "pthread_mutexattr_setrobust",
                    libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST),
                )?;
                check(
                    "pthread_mutex_init",
                    libc::pthread_mutex_init(cell.mutex.get(), &attr),
                )
            })();
            libc::pthread_mutexattr_destroy(&mut attr);
            result?;
            cell.value.get().write_volatile(initial);
        }
        cell.value_size
            .store(std::mem::size_of::<T>() as u32, Ordering::Relaxed);
        cell.tag.store(TAG, Ordering::Release);
        Ok(RobustMutex { cell })
    }

    /// Opens the mutex another handle created at `offset`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Placement`]; [`SyncError::NotInitialised`];
    /// [`SyncError::Mismatch`] when it guards a value of another size.
    pub fn open_in(seg: &'a Segment, offset: usize) -> Result<Self, SyncError> {
        let cell = place_cell::<MutexCell<T>>(seg, offset, "robust mutex")?;
        check_tag(&cell.tag, TAG, "robust mutex", offset)?;
        let found = cell.value_size.load(Ordering::Relaxed);
        if found as usize != std::mem::size_of::<T>() {
            return Err(SyncError::Mismatch {
                what: "robust mutex value size",
                found: found.into(),
                expected: std::mem::size_of::<T>() as u64,
            });
        }
        Ok(RobustMutex { cell })
    }

    /// Blocks until the lock is held.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (the lock IS held, see the type docs);
    /// [`LockError::Sync`] with [`SyncError::NotRecoverable`] or
    /// [`SyncError::Os`] (e.g. `EDEADLK` when this thread holds it already).
    pub fn lock(&self) -> Result<MutexGuard<'_, T>, LockError<'_, T>> {
        // SAFETY: the mutex was initialised (tag checked) and lies in the
        // live mapping.
        let rc = unsafe { libc::pthread_mutex_lock(self.cell.mutex.get()) };
        self.outcome("pthread_mutex_lock", rc, None)
    }

    /// Takes the lock if it is free.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock), plus [`SyncError::WouldBlock`].
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, LockError<'_, T>> {
        // SAFETY: as in `lock`.
        let rc = unsafe { libc::pthread_mutex_trylock(self.cell.mutex.get()) };
        self.outcome("pthread_mutex_trylock", rc, None)
    }

    /// Like [`lock`](Self::lock), giving up after `timeout` on the monotonic
    /// clock.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock), plus [`SyncError::Timeout`].
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_, T>, LockError<'_, T>> {
        let deadline = monotonic_deadline(timeout);
        // SAFETY: as in `lock`; `deadline` outlives the call.
        let rc = unsafe {
            pthread_mutex_clocklock(self.cell.mutex.get(), libc::CLOCK_MONOTONIC, &deadline)
        };
        self.outcome("pthread_mutex_clocklock", rc, Some(timeout))
    }

    /// A guard for a lock this thread holds through a guard it forgot
    /// (`mem::forget`): for the C API, where lock and unlock are separate
    /// calls. Dropping it unlocks.
    ///
    /// # Safety
    ///
    /// This thread holds the lock, and no other guard for it exists.
    pub unsafe fn assume_locked(&self) -> MutexGuard<'_, T> {
        MutexGuard {
            cell: self.cell,
            _not_send: PhantomData,
        }
    }

    /// [`assume_locked`](Self::assume_locked) for a lock taken in the
    /// owner-died state and not yet made consistent.
    ///
    /// # Safety
    ///
    /// As [`assume_locked`](Self::assume_locked).
    pub unsafe fn assume_recovered(&self) -> RecoveredGuard<'_, T> {
        RecoveredGuard {
            // SAFETY: the caller's contract.
            guard: unsafe { self.assume_locked() },
        }
    }

    fn outcome(
        &self,
        op: &'static str,
        rc: libc::c_int,
        timeout: Option<Duration>,
    ) -> Result<MutexGuard<'_, T>, LockError<'_, T>> {
        let guard = || MutexGuard {
            cell: self.cell,
            _not_send: PhantomData,
        };
        match Errno::from_raw(rc) {
            _ if rc == 0 => Ok(guard()),
            Errno::EOWNERDEAD => Err(LockError::OwnerDied(RecoveredGuard { guard: guard() })),
            Errno::ENOTRECOVERABLE => Err(LockError::Sync(SyncError::NotRecoverable)),
            Errno::EBUSY => Err(LockError::Sync(SyncError::WouldBlock)),
            Errno::ETIMEDOUT => Err(LockError::Sync(SyncError::Timeout {
                waited: timeout.unwrap_or_default(),
            })),
            errno => Err(LockError::Sync(SyncError::Os { op, errno })),
        }
    }
}

impl<T: Pod> std::fmt::Debug for RobustMutex<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobustMutex").finish_non_exhaustive()
    }
}

/// Proof that the lock is held; unlocks on drop. Not `Send`: a pthread
/// mutex must be unlocked by the thread that locked it.
#[must_use]
pub struct MutexGuard<'a, T: Pod> {
    cell: &'a MutexCell<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> MutexGuard<'_, T> {
    /// A copy of the guarded value.
    pub fn get(&self) -> T {
        // SAFETY: the value cell is in bounds and T is Pod (any bits valid);
        // the lock is held, so well-behaved processes do not write it now.
        unsafe { self.cell.value.get().read_volatile() }
    }

    /// Replaces the guarded value.
    pub fn set(&self, value: T) {
        // SAFETY: as in `get`.
        unsafe { self.cell.value.get().write_volatile(value) }
    }

    /// Copies the value out, lets `f` change the copy, writes it back.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut v = self.get();
        let r = f(&mut v);
        self.set(v);
        r
    }
}

impl<T: Pod> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this thread holds the lock (the guard exists only then).
        // Unlock cannot fail for a held, initialised robust mutex.
        unsafe { libc::pthread_mutex_unlock(self.cell.mutex.get()) };
    }
}

/// The lock, taken from an owner that died holding it. Read and repair the
/// value (through `Deref` to [`MutexGuard`]), then
/// [`make_consistent`](Self::make_consistent). Dropping it without that
/// makes the mutex permanently unusable.
#[must_use]
pub struct RecoveredGuard<'a, T: Pod> {
    guard: MutexGuard<'a, T>,
}

impl<'a, T: Pod> RecoveredGuard<'a, T> {
    /// Marks the state consistent again (`pthread_mutex_consistent`) and
    /// returns an ordinary guard.
    ///
    /// # Errors
    ///
    /// [`SyncError::Os`] when the mutex is not in the owner-died state.
    pub fn make_consistent(self) -> Result<MutexGuard<'a, T>, SyncError> {
        // SAFETY: this thread holds the lock in the EOWNERDEAD state.
        let rc = unsafe { libc::pthread_mutex_consistent(self.guard.cell.mutex.get()) };
        if rc == 0 {
            Ok(self.guard)
        } else {
            Err(SyncError::Os {
                op: "pthread_mutex_consistent",
                errno: Errno::from_raw(rc),
            })
        }
    }
}

impl<'a, T: Pod> std::ops::Deref for RecoveredGuard<'a, T> {
    type Target = MutexGuard<'a, T>;
    fn deref(&self) -> &MutexGuard<'a, T> {
        &self.guard
    }
}

/// Why a lock attempt did not return a plain guard.
pub enum LockError<'a, T: Pod> {
    /// The previous owner died holding the lock. The lock is now held by
    /// the caller, through the guard inside.
    OwnerDied(RecoveredGuard<'a, T>),
    /// The lock was not taken.
    Sync(SyncError),
}

impl<T: Pod> LockError<'_, T> {
    /// Turns this into a [`SyncError`]. For `OwnerDied` this drops the
    /// recovered guard WITHOUT making the state consistent (the mutex becomes
    /// unrecoverable) and returns [`SyncError::NotRecoverable`].
    pub fn into_sync_error(self) -> SyncError {
        match self {
            LockError::OwnerDied(_) => SyncError::NotRecoverable,
            LockError::Sync(e) => e,
        }
    }
}

impl<T: Pod> std::fmt::Debug for LockError<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::Sync(e) => f.debug_tuple("Sync").field(e).finish(),
        }
    }
}

impl<T: Pod> std::fmt::Display for LockError<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::OwnerDied(_) => {
                f.write_str("the previous owner of the robust mutex died holding it")
            }
            LockError::Sync(e) => std::fmt::Display::fmt(e, f),
        }
    }
}

impl<T: Pod> std::error::Error for LockError<'_, T> {}
