//! A POSIX counting semaphore shared between processes.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::errno::Errno;

use super::SyncError;
use super::{check_tag, monotonic_deadline, place_cell, sem_clockwait};
use crate::segment::Segment;

const TAG: u32 = u32::from_le_bytes(*b"SEM1");

/// The semaphore as laid out in shared memory: a tag and a `sem_t`, padded
/// to a cache line.
#[repr(C, align(64))]
pub(crate) struct SemaphoreCell {
    tag: AtomicU32,
    sem: UnsafeCell<libc::sem_t>,
}

/// A counting semaphore inside a segment (`sem_init(3)`, `pshared = 1`).
///
/// **For trusted peers only**: it is glibc's `sem_t`, and glibc aborts the
/// process when another process overwrites its private word (see the
/// [module docs](super#trust)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmpi::segment::{Segment, SegmentName};
/// use shmpi::sync::Semaphore;
/// use shmpi::SyncError;
///
/// let seg = Segment::create(&SegmentName::unique("doc-sem"), Semaphore::SIZE)?;
/// let sem = Semaphore::create_in(&seg, 0, 0)?;
/// assert_eq!(sem.try_wait(), Err(SyncError::WouldBlock));
/// sem.post()?;
/// sem.wait_timeout(Duration::from_secs(1))?;
/// assert!(matches!(sem.wait_timeout(Duration::from_millis(1)), Err(SyncError::Timeout { .. })));
///
/// // Another process (or handle) opens the same semaphore by offset:
/// let again = Semaphore::open_in(&seg, 0)?;
/// again.post()?;
/// assert_eq!(sem.value()?, 1);
/// # Ok::<(), shmpi::Error>(())
/// ```
pub struct Semaphore<'a> {
    cell: &'a SemaphoreCell,
}

// SAFETY: a process-shared sem_t is made for concurrent use by any thread of
// any process; the cell lives in a mapping that outlives 'a.
unsafe impl Send for Semaphore<'_> {}
// SAFETY: as above; every operation goes through sem_* calls.
unsafe impl Sync for Semaphore<'_> {}

impl<'a> Semaphore<'a> {
    /// Bytes a semaphore occupies in a segment.
    pub const SIZE: usize = std::mem::size_of::<SemaphoreCell>();
    /// Alignment it needs.
    pub const ALIGN: usize = std::mem::align_of::<SemaphoreCell>();

    /// Initialises a semaphore with count `initial` at byte `offset` of the
    /// segment's data. Do this before other processes use that memory:
    /// re-initialising a semaphore someone waits on is undefined in POSIX.
    ///
    /// # Errors
    ///
    /// [`SyncError::Placement`] when it does not fit or is misaligned;
    /// [`SyncError::InvalidArgument`] when `initial` exceeds `SEM_VALUE_MAX`.
    pub fn create_in(seg: &'a Segment, offset: usize, initial: u32) -> Result<Self, SyncError> {
        let cell = place_cell::<SemaphoreCell>(seg, offset, "semaphore")?;
        // SAFETY: the cell is inside the mapping (place_cell) and the caller
        // promises no one uses it yet.
        unsafe { Self::init(cell, initial) }?;
        Ok(Semaphore { cell })
    }

    /// Opens the semaphore another handle created at `offset`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Placement`]; [`SyncError::NotInitialised`] when no
    /// semaphore was created there.
    pub fn open_in(seg: &'a Segment, offset: usize) -> Result<Self, SyncError> {
        let cell = place_cell::<SemaphoreCell>(seg, offset, "semaphore")?;
        check_tag(&cell.tag, TAG, "semaphore", offset)?;
        Ok(Semaphore { cell })
    }

    /// # Safety
    ///
    /// No other thread or process may use the semaphore during the call.
    pub(crate) unsafe fn init(cell: &SemaphoreCell, initial: u32) -> Result<(), SyncError> {
        cell.tag.store(0, Ordering::Relaxed);
        // SAFETY: the sem_t is inside a live shared mapping and unused
        // (caller's contract); pshared = 1 because the mapping is shared.
        let rc = unsafe { libc::sem_init(cell.sem.get(), 1, initial) };
        if rc != 0 {
            return Err(match Errno::last() {
                Errno::EINVAL => SyncError::InvalidArgument("semaphore count above SEM_VALUE_MAX"),
                errno => SyncError::Os {
                    op: "sem_init",
                    errno,
                },
            });
        }
        cell.tag.store(TAG, Ordering::Release);
        Ok(())
    }

    fn sem(&self) -> *mut libc::sem_t {
        self.cell.sem.get()
    }

    /// Increments the count, waking one waiter.
    ///
    /// # Errors
    ///
    /// [`SyncError::Os`] with `EOVERFLOW` when the count would exceed
    /// `SEM_VALUE_MAX`, `EINVAL` when the memory is not a semaphore.
    pub fn post(&self) -> Result<(), SyncError> {
        // SAFETY: the sem_t lies in the live mapping and was initialised
        // (tag checked or created by us).
        let rc = unsafe { libc::sem_post(self.sem()) };
        Errno::result(rc).map(drop).map_err(|errno| SyncError::Os {
            op: "sem_post",
            errno,
        })
    }

    /// Waits until the count is positive, then decrements it. Retries on
    /// `EINTR`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Os`] when the memory is not a valid semaphore.
    pub fn wait(&self) -> Result<(), SyncError> {
        // SAFETY: as in `post`.
        self.retry("sem_wait", || unsafe { libc::sem_wait(self.sem()) })
    }

    /// Decrements the count if it is positive.
    ///
    /// # Errors
    ///
    /// [`SyncError::WouldBlock`] when it is zero.
    pub fn try_wait(&self) -> Result<(), SyncError> {
        // SAFETY: as in `post`.
        self.retry("sem_trywait", || unsafe { libc::sem_trywait(self.sem()) })
    }

    /// Like [`wait`](Self::wait), giving up after `timeout` measured on the
    /// monotonic clock (a change of the wall clock does not stretch it).
    ///
    /// # Errors
    ///
    /// [`SyncError::Timeout`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), SyncError> {
        let deadline = monotonic_deadline(timeout);
        self.retry("sem_clockwait", || {
            // SAFETY: as in `post`; `deadline` outlives the call.
            unsafe { sem_clockwait(self.sem(), libc::CLOCK_MONOTONIC, &deadline) }
        })
        .map_err(|e| match e {
            SyncError::Os {
                errno: Errno::ETIMEDOUT,
                ..
            } => SyncError::Timeout { waited: timeout },
            e => e,
        })
    }

    /// The current count (a snapshot).
    ///
    /// # Errors
    ///
    /// [`SyncError::Os`].
    pub fn value(&self) -> Result<u32, SyncError> {
        let mut v: libc::c_int = 0;
        // SAFETY: as in `post`; `v` is a valid out-pointer.
        let rc = unsafe { libc::sem_getvalue(self.sem(), &mut v) };
        Errno::result(rc).map_err(|errno| SyncError::Os {
            op: "sem_getvalue",
            errno,
        })?;
        Ok(v.max(0) as u32)
    }

    fn retry(
        &self,
        op: &'static str,
        mut call: impl FnMut() -> libc::c_int,
    ) -> Result<(), SyncError> {
        loop {
            if call() == 0 {
                return Ok(());
            }
            match Errno::last() {
                Errno::EINTR => continue,
                Errno::EAGAIN => return Err(SyncError::WouldBlock),
                errno => return Err(SyncError::Os { op, errno }),
            }
        }
    }
}

impl std::fmt::Debug for Semaphore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value().ok())
            .finish()
    }
}
