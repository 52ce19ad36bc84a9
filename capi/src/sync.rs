//! Semaphores, robust mutexes and barriers through the C API. Each handle
//! keeps its segment mapped; the object itself lives in the segment, at a
//! byte offset of its data: `shmpi_semaphore_layout`, `shmpi_mutex_layout`
//! and `shmpi_barrier_layout` give the bytes each takes and the alignment
//! its offset needs (the data starts 128-byte aligned).

use std::ffi::c_int;
use std::sync::Arc;

use super::{arg, arg_ref, call, give, millis, take, write_opt, Failure, SegmentHandle};
use super::{SHMPI_E_OWNER_DIED, SHMPI_E_STATE};
use shmpi::segment::Segment;
use shmpi::sync::{Barrier, LockError, MutexGuard, RobustMutex, Semaphore};

/// An object at `offset` in a segment kept mapped by this handle.
struct Placed {
    seg: Arc<Segment>,
    offset: usize,
}

/// A process-shared semaphore (opaque). Freed by `shmpi_semaphore_free`.
pub struct SemaphoreHandle(Placed);

/// A robust process-shared mutex guarding a 64-bit value (opaque). Freed
/// by `shmpi_mutex_free`.
pub struct MutexHandle {
    placed: Placed,
    /// Locked through this handle: `None`, or whether in owner-died state.
    held: Option<bool>,
}

/// A process-shared barrier (opaque). Freed by `shmpi_barrier_free`.
pub struct BarrierHandle(Placed);

/// Places a new object (`init`) or opens an existing one (`open`) and
/// hands out its handle.
fn place<H>(
    seg: *const SegmentHandle,
    offset: usize,
    out: *mut *mut H,
    check: impl FnOnce(&Segment) -> Result<(), Failure>,
    wrap: impl FnOnce(Placed) -> H,
) -> c_int {
    call(|| {
        // SAFETY: NULL or live handles and writable out-pointers (the
        // contract of every public function that calls this).
        let (seg, out) = unsafe { (arg_ref(seg, "segment")?, arg(out, "out")?) };
        check(&seg.0)?;
        give(
            out,
            wrap(Placed {
                seg: Arc::clone(&seg.0),
                offset,
            }),
        );
        Ok(())
    })
}

/// Initialises a semaphore with `value` at `offset` of the segment's data.
///
/// # Safety
///
/// `seg` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_semaphore_init(
    seg: *const SegmentHandle,
    offset: usize,
    value: u32,
    out: *mut *mut SemaphoreHandle,
) -> c_int {
    place(
        seg,
        offset,
        out,
        |s| Ok(Semaphore::create_in(s, offset, value).map(drop)?),
        SemaphoreHandle,
    )
}

/// Opens the semaphore another process initialised at `offset`.
///
/// # Safety
///
/// As [`shmpi_semaphore_init`].
#[no_mangle]
pub unsafe extern "C" fn shmpi_semaphore_open(
    seg: *const SegmentHandle,
    offset: usize,
    out: *mut *mut SemaphoreHandle,
) -> c_int {
    place(
        seg,
        offset,
        out,
        |s| Ok(Semaphore::open_in(s, offset).map(drop)?),
        SemaphoreHandle,
    )
}

/// Runs `f` on the semaphore behind `sem`.
fn with_semaphore(
    sem: *const SemaphoreHandle,
    f: impl FnOnce(&Semaphore<'_>) -> Result<(), shmpi::SyncError>,
) -> c_int {
    call(|| {
        // SAFETY: NULL or a live handle (the public functions' contract).
        let h = unsafe { arg_ref(sem, "semaphore")? };
        Ok(f(&Semaphore::open_in(&h.0.seg, h.0.offset)?)?)
    })
}

/// Increments the semaphore (`sem_post`).
///
/// # Safety
///
/// `sem` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmpi_semaphore_post(sem: *const SemaphoreHandle) -> c_int {
    with_semaphore(sem, |s| s.post())
}

/// Waits until the semaphore can be decremented.
///
/// # Safety
///
/// `sem` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmpi_semaphore_wait(sem: *const SemaphoreHandle) -> c_int {
    with_semaphore(sem, |s| s.wait())
}

/// Decrements the semaphore if it is positive, else `SHMPI_E_WOULD_BLOCK`.
///
/// # Safety
///
/// `sem` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmpi_semaphore_try_wait(sem: *const SemaphoreHandle) -> c_int {
    with_semaphore(sem, |s| s.try_wait())
}

/// Waits at most `timeout_ms` milliseconds, else `SHMPI_E_TIMEOUT`.
///
/// # Safety
///
/// `sem` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmpi_semaphore_wait_timeout(
    sem: *const SemaphoreHandle,
    timeout_ms: u64,
) -> c_int {
    with_semaphore(sem, |s| s.wait_timeout(millis(timeout_ms)))
}

/// Frees the handle (the semaphore stays in the segment). NULL: nothing.
///
/// # Safety
///
/// `sem` is NULL or a live handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn shmpi_semaphore_free(sem: *mut SemaphoreHandle) -> c_int {
    // SAFETY: the caller's contract.
    drop(unsafe { take(sem) });
    super::SHMPI_OK
}

/// Writes an object's size and alignment through required out-pointers.
///
/// # Safety
///
/// The pointers are NULL or writable.
unsafe fn layout(size: *mut usize, align: *mut usize, of: (usize, usize)) -> c_int {
    call(|| {
        // SAFETY: NULL-checked; writable (the callers' contract).
        unsafe {
            super::out(size, "size", of.0)?;
            super::out(align, "align", of.1)
        }
    })
}

/// The bytes a semaphore takes in a segment (`size`) and the alignment its
/// offset needs (`align`, a power of two).
///
/// # Safety
///
/// `size` and `align` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_semaphore_layout(size: *mut usize, align: *mut usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { layout(size, align, (Semaphore::SIZE, Semaphore::ALIGN)) }
}

/// The bytes a robust mutex (with its 64-bit value) takes in a segment and
/// the alignment its offset needs.
///
/// # Safety
///
/// `size` and `align` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mutex_layout(size: *mut usize, align: *mut usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        layout(
            size,
            align,
            (RobustMutex::<u64>::SIZE, RobustMutex::<u64>::ALIGN),
        )
    }
}

/// The bytes a barrier takes in a segment and the alignment its offset
/// needs.
///
/// # Safety
///
/// `size` and `align` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_barrier_layout(size: *mut usize, align: *mut usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { layout(size, align, (Barrier::SIZE, Barrier::ALIGN)) }
}

/// Initialises a robust mutex guarding the value `value` at `offset`.
///
/// # Safety
///
/// As [`shmpi_semaphore_init`].
#[no_mangle]
pub unsafe extern "C" fn shmpi_mutex_init(
    seg: *const SegmentHandle,
    offset: usize,
    value: u64,
    out: *mut *mut MutexHandle,
) -> c_int {
    place(
        seg,
        offset,
        out,
        |s| Ok(RobustMutex::create_in(s, offset, value).map(drop)?),
        |placed| MutexHandle { placed, held: None },
    )
}

/// Opens the mutex another process initialised at `offset`.
///
/// # Safety
///
/// As [`shmpi_semaphore_init`].
#[no_mangle]
pub unsafe extern "C" fn shmpi_mutex_open(
    seg: *const SegmentHandle,
    offset: usize,
    out: *mut *mut MutexHandle,
) -> c_int {
    place(
        seg,
        offset,
        out,
        |s| Ok(RobustMutex::<u64>::open_in(s, offset).map(drop)?),
        |placed| MutexHandle { placed, held: None },
    )
}

/// How to take a lock.
enum How {
    Block,
    Try,
    Within(std::time::Duration),
}

/// Locks as `how` says and records the state in the handle.
fn lock_with(m: *mut MutexHandle, how: How) -> c_int {
    call(|| {
        // SAFETY: NULL or a live handle (the public functions' contract).
        let h = unsafe { arg(m, "mutex")? };
        if h.held.is_some() {
            return Err(Failure::new(
                SHMPI_E_STATE,
                "already locked through this handle",
            ));
        }
        let mutex = RobustMutex::<u64>::open_in(&h.placed.seg, h.placed.offset)?;
        let outcome = match how {
            How::Block => mutex.lock(),
            How::Try => mutex.try_lock(),
            How::Within(t) => mutex.lock_timeout(t),
        };
        match outcome {
            Ok(guard) => {
                std::mem::forget(guard); // unlocked by shmpi_mutex_unlock
                h.held = Some(false);
                Ok(())
            }
            Err(LockError::OwnerDied(recovered)) => {
                std::mem::forget(recovered);
                h.held = Some(true);
                Err(Failure::new(
                    SHMPI_E_OWNER_DIED,
                    "the previous owner died holding the mutex; it is locked now: repair the data, then call shmpi_mutex_consistent",
                ))
            }
            Err(LockError::Sync(e)) => Err(e.into()),
        }
    })
}

/// Locks the mutex. `SHMPI_E_OWNER_DIED`: the previous owner died holding
/// it — the caller holds it now, repairs the data, then calls
/// `shmpi_mutex_consistent` (unlocking without that makes it unusable:
/// `SHMPI_E_NOT_RECOVERABLE` for everyone after). Unlock from the thread
/// that locked.
///
/// # Safety
///
/// `m` is NULL or a live handle used by no other thread now.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mutex_lock(m: *mut MutexHandle) -> c_int {
    lock_with(m, How::Block)
}

/// Locks if free, else `SHMPI_E_WOULD_BLOCK` (otherwise as `shmpi_mutex_lock`).
///
/// # Safety
///
/// As [`shmpi_mutex_lock`].
#[no_mangle]
pub unsafe extern "C" fn shmpi_mutex_try_lock(m: *mut MutexHandle) -> c_int {
    lock_with(m, How::Try)
}

/// Locks within `timeout_ms` milliseconds, else `SHMPI_E_TIMEOUT`.
///
/// # Safety
///
/// As [`shmpi_mutex_lock`].
#[no_mangle]
pub unsafe extern "C" fn shmpi_mutex_lock_timeout(m: *mut MutexHandle, timeout_ms: u64) -> c_int {
    lock_with(m, How::Within(millis(timeout_ms)))
}

/// Runs `f` with the guard of a mutex locked through `m`.
fn with_held(
    m: *mut MutexHandle,
    f: impl FnOnce(&mut MutexHandle, &RobustMutex<'_, u64>, bool) -> Result<(), Failure>,
) -> c_int {
    call(|| {
        // SAFETY: NULL or a live handle (the public functions' contract).
        let h = unsafe { arg(m, "mutex")? };
        let recovered = h.held.ok_or_else(|| {
            Failure::new(SHMPI_E_STATE, "the mutex is not locked through this handle")
        })?;
        let seg = Arc::clone(&h.placed.seg);
        let mutex = RobustMutex::<u64>::open_in(&seg, h.placed.offset)?;
        f(h, &mutex, recovered)
    })
}

/// Runs `f` on the guard of a lock held through a handle (inside
/// `with_held`), and keeps the lock held.
fn on_held_guard<R>(mutex: &RobustMutex<'_, u64>, f: impl FnOnce(&MutexGuard<'_, u64>) -> R) -> R {
    // SAFETY: called inside `with_held`, so this thread holds the lock
    // through the handle and the guard that took it was forgotten.
    let guard = unsafe { mutex.assume_locked() };
    let r = f(&guard);
    std::mem::forget(guard); // still held: unlocked by shmpi_mutex_unlock
    r
}

/// The guarded value (while locked through `m`).
///
/// # Safety
///
/// `m` is NULL or a live handle; `value` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mutex_get(m: *mut MutexHandle, value: *mut u64) -> c_int {
    with_held(m, |_, mutex, _| {
        // SAFETY: NULL or writable (the caller's contract); NULL is checked.
        *unsafe { arg(value, "value")? } = on_held_guard(mutex, |g| g.get());
        Ok(())
    })
}

/// Replaces the guarded value (while locked through `m`).
///
/// # Safety
///
/// `m` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mutex_set(m: *mut MutexHandle, value: u64) -> c_int {
    with_held(m, |_, mutex, _| {
        on_held_guard(mutex, |g| g.set(value));
        Ok(())
    })
}

/// After `SHMPI_E_OWNER_DIED` and repairs: marks the mutex consistent (it
/// stays locked).
///
/// # Safety
///
/// `m` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mutex_consistent(m: *mut MutexHandle) -> c_int {
    with_held(m, |h, mutex, recovered| {
        if !recovered {
            return Err(Failure::new(
                SHMPI_E_STATE,
                "the mutex is not in the owner-died state",
            ));
        }
        // SAFETY: locked through this handle in the owner-died state, its
        // guard forgotten; the consistent guard is forgotten again (held).
        std::mem::forget(unsafe { mutex.assume_recovered() }.make_consistent()?);
        h.held = Some(false);
        Ok(())
    })
}

/// Unlocks the mutex (from the thread that locked it).
///
/// # Safety
///
/// `m` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mutex_unlock(m: *mut MutexHandle) -> c_int {
    with_held(m, |h, mutex, _| {
        h.held = None;
        // SAFETY: locked through this handle, its guard forgotten; dropping
        // this one unlocks (in the owner-died state that leaves the mutex
        // unrecoverable, as documented on shmpi_mutex_lock).
        drop(unsafe { mutex.assume_locked() });
        Ok(())
    })
}

/// Frees the handle (unlocking first if locked through it). NULL: nothing.
///
/// # Safety
///
/// `m` is NULL or a live handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mutex_free(m: *mut MutexHandle) -> c_int {
    // SAFETY: NULL or live (the caller's contract).
    if unsafe { m.as_ref() }.is_some_and(|h| h.held.is_some()) {
        // SAFETY: as above.
        unsafe { shmpi_mutex_unlock(m) };
    }
    // SAFETY: the caller's contract.
    drop(unsafe { take(m) });
    super::SHMPI_OK
}

/// Initialises a barrier for `parties` parties at `offset`.
///
/// # Safety
///
/// As [`shmpi_semaphore_init`].
#[no_mangle]
pub unsafe extern "C" fn shmpi_barrier_init(
    seg: *const SegmentHandle,
    offset: usize,
    parties: u32,
    out: *mut *mut BarrierHandle,
) -> c_int {
    place(
        seg,
        offset,
        out,
        |s| Ok(Barrier::create_in(s, offset, parties).map(drop)?),
        BarrierHandle,
    )
}

/// Opens the barrier another process initialised at `offset`.
///
/// # Safety
///
/// As [`shmpi_semaphore_init`].
#[no_mangle]
pub unsafe extern "C" fn shmpi_barrier_open(
    seg: *const SegmentHandle,
    offset: usize,
    out: *mut *mut BarrierHandle,
) -> c_int {
    place(
        seg,
        offset,
        out,
        |s| Ok(Barrier::open_in(s, offset).map(drop)?),
        BarrierHandle,
    )
}

/// Waits for every party; `*leader` (if not NULL) is set to 1 for exactly
/// one party of each round.
///
/// # Safety
///
/// `b` is NULL or a live handle; `leader` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_barrier_wait(b: *const BarrierHandle, leader: *mut c_int) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { barrier_wait(b, leader, None) }
}

/// Like `shmpi_barrier_wait`, giving up (and withdrawing) after
/// `timeout_ms` milliseconds with `SHMPI_E_TIMEOUT`.
///
/// # Safety
///
/// As [`shmpi_barrier_wait`].
#[no_mangle]
pub unsafe extern "C" fn shmpi_barrier_wait_timeout(
    b: *const BarrierHandle,
    timeout_ms: u64,
    leader: *mut c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { barrier_wait(b, leader, Some(timeout_ms)) }
}

/// # Safety
///
/// As [`shmpi_barrier_wait`].
unsafe fn barrier_wait(
    b: *const BarrierHandle,
    leader: *mut c_int,
    timeout_ms: Option<u64>,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let h = unsafe { arg_ref(b, "barrier")? };
        let barrier = Barrier::open_in(&h.0.seg, h.0.offset)?;
        let r = match timeout_ms {
            None => barrier.wait()?,
            Some(ms) => barrier.wait_timeout(millis(ms))?,
        };
        // SAFETY: NULL or writable (caller's contract).
        unsafe { write_opt(leader, c_int::from(r.is_leader())) };
        Ok(())
    })
}

/// Frees the handle (the barrier stays in the segment). NULL: nothing.
///
/// # Safety
///
/// `b` is NULL or a live handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn shmpi_barrier_free(b: *mut BarrierHandle) -> c_int {
    // SAFETY: the caller's contract.
    drop(unsafe { take(b) });
    super::SHMPI_OK
}
