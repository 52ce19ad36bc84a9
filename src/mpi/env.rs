//! Initialising MPI, or attaching to an MPI someone else initialised.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

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

static HANDLE_ALIVE: AtomicBool = AtomicBool::new(false);

/// This process's use of MPI. Dropping it finalises MPI if shmpi
/// initialised it; never when it attached to the caller's MPI.
///
/// # Examples
///
/// ```no_run
/// use shmpi::mpi::{Mpi, ThreadLevel};
///
/// let mpi = Mpi::init(ThreadLevel::Multiple)?;
/// println!("granted {}", mpi.thread_level().name());
/// let world = mpi.world()?;
/// if world.rank() == 0 {
///     world.send(1, 7, b"hello")?;
/// } else if world.rank() == 1 {
///     assert_eq!(world.recv(0, 7)?.data, b"hello");
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
    /// Initialises MPI asking for `level` (or attaches, when it is already
    /// initialised). See [`thread_level`](Self::thread_level) for what was
    /// granted.
    ///
    /// # Errors
    ///
    /// [`MpiError::AlreadyInitialized`] while another handle lives,
    /// [`MpiError::Finalized`], or MPI's error from `MPI_Init_thread`.
    pub fn init(level: ThreadLevel) -> Result<Mpi, MpiError> {
        if HANDLE_ALIVE.swap(true, Ordering::AcqRel) {
            return Err(MpiError::AlreadyInitialized);
        }
        let result = (|| {
            if is_finalized() {
                return Err(MpiError::Finalized);
            }
            let owned = !is_initialized();
            if owned {
                let mut provided = 0;
                // SAFETY: MPI is not initialised (checked); null argc/argv
                // are allowed; out-pointer to a local.
                let rc = unsafe {
                    ffi::MPI_Init_thread(
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        level.raw(),
                        &mut provided,
                    )
                };
                check("MPI_Init_thread", rc)?;
            }
            if owned {
                super::OWNED_BY_SHMPI.store(true, Ordering::Release);
            }
            Ok(Mpi {
                owned,
                granted: ThreadLevel::current()?,
                _not_send: PhantomData,
            })
        })();
        if result.is_err() {
            HANDLE_ALIVE.store(false, Ordering::Release);
        }
        result
    }

    /// Attaches to the MPI the caller initialised; shmpi will not finalise it.
    ///
    /// # Errors
    ///
    /// [`MpiError::NotInitialized`] when nobody initialised MPI,
    /// [`MpiError::Finalized`], [`MpiError::AlreadyInitialized`].
    pub fn attach() -> Result<Mpi, MpiError> {
        ensure_usable()?;
        Mpi::init(ThreadLevel::Single)
    }

    /// True when shmpi initialised MPI (and will finalise it on drop).
    pub fn owns_mpi(&self) -> bool {
        self.owned
    }

    /// The thread level MPI granted.
    pub fn thread_level(&self) -> ThreadLevel {
        self.granted
    }

    /// A duplicate of `MPI_COMM_WORLD` with `MPI_ERRORS_RETURN`.
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn world(&self) -> Result<Comm, MpiError> {
        // SAFETY: reading rsmpi's constant statics.
        Comm::duplicate(unsafe { ffi::RSMPI_COMM_WORLD })
    }

    /// A duplicate of a communicator given by its Fortran handle (what C
    /// code passes through an ABI without MPI types: `MPI_Comm_c2f`).
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

impl Drop for Mpi {
    fn drop(&mut self) {
        if self.owned && !is_finalized() {
            // SAFETY: MPI is initialised by us and not finalised (checked);
            // communicators made by shmpi check `is_finalized` before use.
            unsafe { ffi::MPI_Finalize() };
            super::FINALIZED_BY_SHMPI.store(true, Ordering::Release);
        }
        if self.owned {
            super::OWNED_BY_SHMPI.store(false, Ordering::Release);
        }
        HANDLE_ALIVE.store(false, Ordering::Release);
    }
}
