//! MPI point-to-point and collectives (feature `mpi`), with MPI's errors
//! returned as values.
//!
//! rsmpi (the `mpi` crate, renamed `rsmpi` here) provides the bindings; its
//! safe calls discard MPI's return codes, so the calls whose failures shmpi
//! reports go through its raw `ffi` module, every return code checked.
//! Every communicator shmpi makes is a duplicate with `MPI_ERRORS_RETURN`
//! (MPI 4.0 §9.3), so a failure becomes an [`MpiError`] carrying the error
//! code, class and message instead of aborting the job.
//!
//! - [`Mpi`]: initialises MPI at a requested thread level and reports what
//!   was granted — or attaches to an MPI the caller (C code, another crate)
//!   initialised, and then never finalises it.
//! - [`Comm`]: a communicator, neither `Send` nor `Sync`; [`SharedComm`],
//!   `Send + Sync`, only when MPI granted `MPI_THREAD_MULTIPLE`.
//! - Receives match with `MPI_Mprobe`/`MPI_Mrecv`: a message too long for
//!   the caller's buffer is reported with both sizes and kept (received into
//!   a local queue that later receives look at first), never truncated.
//!   Messages above `i32::MAX` bytes are split transparently.
//! - [`RmaWindow`]: one-sided access with element atomicity (accumulate
//!   based), refused where Open MPI's `rdma` component could crash it.
//! - [`MpiTransport`]: the [`Transport`](crate::transport::Transport) over a
//!   communicator, with MPI's own collectives.
//!
//! [`MpiError`]: crate::MpiError

mod comm;
mod env;
pub(crate) mod rma;
mod transport;

pub use comm::{Comm, RecvRequest, RsmpiComm, SendRequest, SharedComm, Status};
pub use env::{Mpi, ThreadLevel};
pub use rma::{check_one_sided, osc_setting, RmaWindow, SharedWindow};
pub use transport::{AsComm, MpiTransport};

use std::sync::atomic::{AtomicBool, Ordering};

use rsmpi::ffi;

use crate::error::MpiError;

/// Turns an MPI return code into a result, with class and message.
pub(crate) fn check(op: &'static str, code: i32) -> Result<(), MpiError> {
    if code == ffi::MPI_SUCCESS as i32 {
        return Ok(());
    }
    let mut class = 0;
    let mut buf = vec![0u8; ffi::MPI_MAX_ERROR_STRING as usize + 1];
    let mut len = 0;
    // SAFETY: out-pointers to locals; the buffer holds MPI_MAX_ERROR_STRING
    // characters as MPI_Error_string requires. Both are callable at any time
    // after initialisation, and their own failures only leave defaults.
    unsafe {
        ffi::MPI_Error_class(code, &mut class);
        ffi::MPI_Error_string(code, buf.as_mut_ptr().cast(), &mut len);
    }
    buf.truncate(usize::try_from(len).unwrap_or(0).min(buf.len()));
    Err(MpiError::Call {
        op,
        code,
        class,
        message: String::from_utf8_lossy(&buf).into_owned(),
    })
}

/// Whether `MPI_Init*` has been called.
pub fn is_initialized() -> bool {
    let mut flag = 0;
    // SAFETY: MPI_Initialized may be called at any time, even before init.
    unsafe { ffi::MPI_Initialized(&mut flag) };
    flag != 0
}

/// Set when shmpi itself finalises MPI; while shmpi owns an initialised
/// MPI, nobody else may finalise it, so this flag answers without a call
/// (Open MPI's `MPI_Finalized` takes a lock: too slow for every message).
static FINALIZED_BY_SHMPI: AtomicBool = AtomicBool::new(false);
/// Set while an `Mpi` handle that initialised MPI is alive.
static OWNED_BY_SHMPI: AtomicBool = AtomicBool::new(false);

/// Whether `MPI_Finalize` has been called.
pub fn is_finalized() -> bool {
    if FINALIZED_BY_SHMPI.load(Ordering::Acquire) {
        return true;
    }
    if OWNED_BY_SHMPI.load(Ordering::Acquire) {
        return false;
    }
    let mut flag = 0;
    // SAFETY: MPI_Finalized may be called at any time.
    unsafe { ffi::MPI_Finalized(&mut flag) };
    flag != 0
}

/// Fails unless MPI can be used now.
fn ensure_usable() -> Result<(), MpiError> {
    if is_finalized() {
        Err(MpiError::Finalized)
    } else if !is_initialized() {
        Err(MpiError::NotInitialized)
    } else {
        Ok(())
    }
}

/// The MPI library's version string (`MPI_Get_library_version`).
pub fn library_version() -> String {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    // SAFETY: the buffer is larger than MPI_MAX_LIBRARY_VERSION_STRING; the
    // call is allowed before initialisation.
    unsafe { ffi::MPI_Get_library_version(buf.as_mut_ptr().cast(), &mut len) };
    buf.truncate(usize::try_from(len).unwrap_or(0).min(buf.len()));
    // "Open MPI v4.1.4, package: ..." / "MPICH Version: 4.0 ...": the first part.
    let text = String::from_utf8_lossy(&buf);
    text.lines()
        .next()
        .unwrap_or("")
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
}
