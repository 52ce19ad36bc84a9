//! Initialising MPI, or attaching to an MPI someone else initialised.

use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use rsmpi::ffi;

use super::{check, ensure_usable, is_finalized, is_initialized, Comm};
use crate::error::MpiError;

/// MPI thread support levels (MPI 4.0 §11.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ThreadLevel {
    /// Only one thread.
    Single,
    /// Only the thread that initialised MPI calls it.
    Funneled,
    /// Any thread, one at a time.
    Serialized,
    /// Any thread, concurrently.
    Multiple,
}

impl ThreadLevel {
    fn raw(self) -> i32 {
        // SAFETY: reading rsmpi's constant statics (initialised by its C
        // shim at load time, never written).
        unsafe {
            match self {
                ThreadLevel::Single => ffi::RSMPI_THREAD_SINGLE,
                ThreadLevel::Funneled => ffi::RSMPI_THREAD_FUNNELED,
                ThreadLevel::Serialized => ffi::RSMPI_THREAD_SERIALIZED,
                ThreadLevel::Multiple => ffi::RSMPI_THREAD_MULTIPLE,
            }
        }
    }

    fn from_raw(raw: i32) -> ThreadLevel {
        [
            ThreadLevel::Multiple,
            ThreadLevel::Serialized,
            ThreadLevel::Funneled,
        ]
        .into_iter()
        .find(|l| l.raw() == raw)
        .unwrap_or(ThreadLevel::Single)
    }

    /// The MPI name (`MPI_THREAD_MULTIPLE`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ThreadLevel::Single => "MPI_THREAD_SINGLE",
            ThreadLevel::Funneled => "MPI_THREAD_FUNNELED",
            ThreadLevel::Serialized => "MPI_THREAD_SERIALIZED",
            ThreadLevel::Multiple => "MPI_THREAD_MULTIPLE",
        }
    }

    /// The level MPI runs at now (`MPI_Query_thread`).
    ///
    /// # Errors
    ///
    /// [`MpiError::NotInitialized`] / [`MpiError::Finalized`].
    pub fn current() -> Result<ThreadLevel, MpiError> {
        ensure_usable()?;
        let mut provided = 0;
        // SAFETY: MPI is initialised (checked); out-pointer to a local.
        check("MPI_Query_thread", unsafe {
            ffi::MPI_Query_thread(&mut provided)
        })?;
        Ok(ThreadLevel::from_raw(provided))
    }
}

/// The process's one use of MPI, shared by every [`Mpi`] handle.
#[derive(Debug, Clone, Copy)]
struct Shared {
    /// Live handles.
    holders: usize,
    /// shmpi initialised MPI (and finalises it after the last holder).
    owned: bool,
    granted: ThreadLevel,
}

static STATE: Mutex<Option<Shared>> = Mutex::new(None);

fn state() -> std::sync::MutexGuard<'static, Option<Shared>> {
    // A panic while holding the lock leaves the count as it was: usable.
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// This process's use of MPI, reference-counted: a library, rsmpi-using
/// code and the C API can each hold a handle ([`Mpi::init`] again, or
/// `clone`). MPI is finalised after the last handle is dropped, and only
/// if shmpi initialised it; never when shmpi attached to the caller's MPI.
///
/// # Examples
///
/// ```no_run
/// use shmpi::mpi::{Mpi, ThreadLevel};
/// use shmpi::transport::Wait;
///
/// let mpi = Mpi::init(ThreadLevel::Multiple)?;
/// println!("granted {}", mpi.thread_level().name());
/// let also = Mpi::init(ThreadLevel::Multiple)?; // another holder, same MPI
/// assert_eq!(also.thread_level(), mpi.thread_level());
/// let world = mpi.dup_world()?;                // collective: every rank calls it
/// if world.rank() == 0 {
///     world.send(1, 7, b"hello")?;
/// } else if world.rank() == 1 {
///     assert_eq!(world.recv(0, 7, Wait::Forever)?.data, b"hello");
/// }
/// # Ok::<(), shmpi::Error>(())
/// ```
#[derive(Debug)]
pub struct Mpi {
    owned: bool,
    granted: ThreadLevel,
    _not_send: PhantomData<*const ()>,
}

impl Mpi {
    /// Initialises MPI asking for `level`, or — when MPI is already
    /// initialised, by shmpi or by the caller — becomes another holder of
    /// it. The level is the one granted first: see
    /// [`thread_level`](Self::thread_level), and check it when you need
    /// more than an earlier holder asked for.
    ///
    /// # Errors
    ///
    /// [`MpiError::Finalized`], or MPI's error from `MPI_Init_thread`.
    pub fn init(level: ThreadLevel) -> Result<Mpi, MpiError> {
        let mut state = state();
        if let Some(shared) = state.as_mut() {
            shared.holders += 1;
            return Ok(Mpi::holding(*shared));
        }
        if is_finalized() {
            return Err(MpiError::Finalized);
        }
        let owned = !is_initialized();
        if owned {
            let mut provided = 0;
            // SAFETY: MPI is not initialised (checked); null argc/argv are
            // allowed; out-pointer to a local.
            let rc = unsafe {
                ffi::MPI_Init_thread(
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    level.raw(),
                    &mut provided,
                )
            };
            check("MPI_Init_thread", rc)?;
            super::OWNED_BY_SHMPI.store(true, Ordering::Release);
        }
        let shared = Shared {
            holders: 1,
            owned,
            granted: ThreadLevel::current()?,
        };
        *state = Some(shared);
        Ok(Mpi::holding(shared))
    }

    fn holding(shared: Shared) -> Mpi {
        Mpi {
            owned: shared.owned,
            granted: shared.granted,
            _not_send: PhantomData,
        }
    }

    /// Attaches to the MPI the caller initialised (or shares shmpi's);
    /// shmpi will not finalise an MPI it did not initialise.
    ///
    /// # Errors
    ///
    /// [`MpiError::NotInitialized`] when nobody initialised MPI,
    /// [`MpiError::Finalized`].
    pub fn attach() -> Result<Mpi, MpiError> {
        ensure_usable()?;
        Mpi::init(ThreadLevel::Single)
    }

    /// Handles alive in this process (this one included).
    pub fn holders() -> usize {
        state().map_or(0, |s| s.holders)
    }

    /// True when shmpi initialised MPI (and will finalise it after the
    /// last handle).
    pub fn owns_mpi(&self) -> bool {
        self.owned
    }

    /// The thread level MPI granted.
    pub fn thread_level(&self) -> ThreadLevel {
        self.granted
    }

    /// A new duplicate of `MPI_COMM_WORLD` with `MPI_ERRORS_RETURN`.
    ///
    /// # Collective
    ///
    /// `MPI_Comm_dup`: every rank of `MPI_COMM_WORLD` calls it, in the same
    /// order as its other collective calls on the world; one rank alone
    /// waits for the others.
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn dup_world(&self) -> Result<Comm, MpiError> {
        // SAFETY: reading rsmpi's constant statics.
        Comm::duplicate(unsafe { ffi::RSMPI_COMM_WORLD })
    }

    /// A duplicate of a communicator given by its Fortran handle (what C
    /// code passes through an ABI without MPI types: `MPI_Comm_c2f`).
    ///
    /// # Collective
    ///
    /// `MPI_Comm_dup` over that communicator's ranks.
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn comm_from_fortran(&self, handle: i32) -> Result<Comm, MpiError> {
        // SAFETY: MPI is initialised (a handle exists); the conversion is a
        // table lookup in MPI.
        let comm = unsafe { ffi::RSMPI_Comm_f2c(handle) };
        Comm::duplicate(comm)
    }
}

impl Clone for Mpi {
    /// Another holder of the same MPI.
    fn clone(&self) -> Mpi {
        let mut state = state();
        match state.as_mut() {
            Some(shared) => {
                shared.holders += 1;
                Mpi::holding(*shared)
            }
            None => unreachable!("a live handle keeps the state"),
        }
    }
}

impl Drop for Mpi {
    fn drop(&mut self) {
        let mut state = state();
        let Some(shared) = state.as_mut() else {
            return;
        };
        shared.holders = shared.holders.saturating_sub(1);
        if shared.holders > 0 {
            return;
        }
        if shared.owned && !is_finalized() {
            // SAFETY: MPI is initialised by us and not finalised (checked),
            // and no handle is left; communicators made by shmpi check
            // `is_finalized` before use.
            unsafe { ffi::MPI_Finalize() };
            super::FINALIZED_BY_SHMPI.store(true, Ordering::Release);
        }
        if shared.owned {
            super::OWNED_BY_SHMPI.store(false, Ordering::Release);
        }
        *state = None;
    }
}
