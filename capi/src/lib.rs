//! The C API: `include/shmpi.h` is generated from this crate by cbindgen
//! (`cbindgen.toml`; a test fails when the committed header is stale).
//!
//! Conventions, for every function:
//! - names are prefixed `shmpi_`; objects are opaque handles, created by
//!   one function that writes the handle through an out-pointer, and freed
//!   by exactly one `_close`/`_free` function (which accepts NULL);
//! - the return value is an `int` status: [`SHMPI_OK`] (0) or one negative
//!   code per error kind; [`shmpi_status_str`] names a code and
//!   [`shmpi_last_error`] returns the calling thread's last error message;
//! - every pointer and length is checked: a NULL handle, name or
//!   out-pointer is [`SHMPI_E_NULL`], never a crash; a NULL data pointer is
//!   accepted only with length 0;
//! - no panic crosses the boundary: one is caught and reported as
//!   [`SHMPI_E_PANIC`].
//!
//! What remains the caller's duty, as in any C API: handles must be ones
//! this library returned and not yet freed, buffers must be as long as
//! the lengths passed, and a handle must not be used from two threads at
//! once.

#![warn(
    missing_docs,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks
)]

mod collective;
mod mailbox;
#[cfg(feature = "mpi")]
mod mpi;
mod segment;
mod sync;

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use shmpi::error::{DsmError, Error, HybridError, MailboxError, MpiError, SegmentError, SyncError};

pub use collective::*;
pub use mailbox::*;
#[cfg(feature = "mpi")]
pub use mpi::*;
pub use segment::*;
pub use sync::*;

/// Success.
pub const SHMPI_OK: c_int = 0;
/// A required pointer argument (handle, name, out-pointer, buffer) is NULL.
pub const SHMPI_E_NULL: c_int = -1;
/// An argument is invalid: a malformed name, a zero or absurd size, a rank
/// or tag out of range.
pub const SHMPI_E_INVALID: c_int = -2;
/// No such segment or group.
pub const SHMPI_E_NOT_FOUND: c_int = -3;
/// The name exists already (segments are created exclusively).
pub const SHMPI_E_EXISTS: c_int = -4;
/// Permission denied, or the object belongs to another user.
pub const SHMPI_E_PERMISSION: c_int = -5;
/// Not enough space in /dev/shm or memory.
pub const SHMPI_E_NO_SPACE: c_int = -6;
/// Shared memory holds something invalid: a bad header, layout or record.
pub const SHMPI_E_CORRUPT: c_int = -7;
/// A `_timeout` call timed out (nothing was consumed).
pub const SHMPI_E_TIMEOUT: c_int = -8;
/// A `try_` call would have blocked.
pub const SHMPI_E_WOULD_BLOCK: c_int = -9;
/// The mutex's previous owner died holding it: the caller now holds it and
/// must repair the data, then call `shmpi_mutex_consistent`.
pub const SHMPI_E_OWNER_DIED: c_int = -10;
/// The mutex is permanently unusable (an owner died and nobody repaired).
pub const SHMPI_E_NOT_RECOVERABLE: c_int = -11;
/// A peer process died (its mailbox endpoint is gone without leaving).
pub const SHMPI_E_PEER_DIED: c_int = -12;
/// A peer left, or every peer is gone: nothing can arrive.
pub const SHMPI_E_PEER_GONE: c_int = -13;
/// The message is longer than the buffer: the length is reported and the
/// message kept for a later receive.
pub const SHMPI_E_TOO_LONG: c_int = -14;
/// A loan or a received reference on this mailbox is still outstanding.
pub const SHMPI_E_BUSY: c_int = -15;
/// MPI returned an error.
pub const SHMPI_E_MPI: c_int = -16;
/// An index past the end of a distributed array.
pub const SHMPI_E_OUT_OF_BOUNDS: c_int = -17;
/// Not supported here (a feature not built in, a refused MPI setup).
pub const SHMPI_E_UNSUPPORTED: c_int = -18;
/// Another operating-system error.
pub const SHMPI_E_OS: c_int = -19;
/// A bug inside shmpi was caught at the boundary (a panic).
pub const SHMPI_E_PANIC: c_int = -20;
/// The call does not fit the object's state (unlocking a mutex that is
/// not locked through this handle, ...).
pub const SHMPI_E_STATE: c_int = -21;

/// This header's major version (`shmpi_version` gives the library's:
/// compare them to catch a header and library that do not match).
pub const SHMPI_VERSION_MAJOR: c_int = 0;
/// This header's minor version.
pub const SHMPI_VERSION_MINOR: c_int = 1;
/// This header's patch version.
pub const SHMPI_VERSION_PATCH: c_int = 0;
/// `MAJOR * 10000 + MINOR * 100 + PATCH`, for `#if SHMPI_VERSION_NUMBER >= …`.
pub const SHMPI_VERSION_NUMBER: c_int = 100;

/// Every status with its name, for `shmpi_status_str`.
const STATUS_NAMES: [(c_int, &CStr); 22] = [
    (SHMPI_OK, c"SHMPI_OK: success"),
    (SHMPI_E_NULL, c"SHMPI_E_NULL: a required pointer is NULL"),
    (SHMPI_E_INVALID, c"SHMPI_E_INVALID: invalid argument"),
    (SHMPI_E_NOT_FOUND, c"SHMPI_E_NOT_FOUND: no such object"),
    (SHMPI_E_EXISTS, c"SHMPI_E_EXISTS: the name exists already"),
    (SHMPI_E_PERMISSION, c"SHMPI_E_PERMISSION: permission denied"),
    (SHMPI_E_NO_SPACE, c"SHMPI_E_NO_SPACE: not enough space"),
    (
        SHMPI_E_CORRUPT,
        c"SHMPI_E_CORRUPT: shared memory holds invalid data",
    ),
    (SHMPI_E_TIMEOUT, c"SHMPI_E_TIMEOUT: timed out"),
    (SHMPI_E_WOULD_BLOCK, c"SHMPI_E_WOULD_BLOCK: would block"),
    (
        SHMPI_E_OWNER_DIED,
        c"SHMPI_E_OWNER_DIED: the mutex's owner died; repair, then make it consistent",
    ),
    (
        SHMPI_E_NOT_RECOVERABLE,
        c"SHMPI_E_NOT_RECOVERABLE: the mutex is unusable",
    ),
    (SHMPI_E_PEER_DIED, c"SHMPI_E_PEER_DIED: a peer process died"),
    (
        SHMPI_E_PEER_GONE,
        c"SHMPI_E_PEER_GONE: the peer left or all peers are gone",
    ),
    (
        SHMPI_E_TOO_LONG,
        c"SHMPI_E_TOO_LONG: the message is longer than the buffer (kept)",
    ),
    (
        SHMPI_E_BUSY,
        c"SHMPI_E_BUSY: a loan or received reference is outstanding",
    ),
    (SHMPI_E_MPI, c"SHMPI_E_MPI: MPI returned an error"),
    (
        SHMPI_E_OUT_OF_BOUNDS,
        c"SHMPI_E_OUT_OF_BOUNDS: index past the end",
    ),
    (
        SHMPI_E_UNSUPPORTED,
        c"SHMPI_E_UNSUPPORTED: not supported here",
    ),
    (SHMPI_E_OS, c"SHMPI_E_OS: operating-system error"),
    (
        SHMPI_E_PANIC,
        c"SHMPI_E_PANIC: internal error caught at the boundary",
    ),
    (
        SHMPI_E_STATE,
        c"SHMPI_E_STATE: the call does not fit the object's state",
    ),
];

/// A status and the message that explains it.
#[derive(Debug)]
pub(crate) struct Failure {
    status: c_int,
    message: String,
}

impl Failure {
    pub(crate) fn new(status: c_int, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl<E: Into<Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        let e = e.into();
        Failure::new(status_of(&e), e.to_string())
    }
}

/// The status for an error.
fn status_of(e: &Error) -> c_int {
    match e {
        Error::Segment(e) => segment_status(e),
        Error::Placement(_) => SHMPI_E_INVALID,
        Error::Sync(e) => sync_status(e),
        Error::Mailbox(e) => mailbox_status(e),
        Error::Transport(_) => SHMPI_E_INVALID,
        Error::Mpi(e) => mpi_status(e),
        Error::Dsm(DsmError::OutOfBounds { .. }) => SHMPI_E_OUT_OF_BOUNDS,
        Error::Dsm(DsmError::Disagreement { .. } | DsmError::ElementSize { .. }) => SHMPI_E_INVALID,
        Error::Dsm(_) => SHMPI_E_CORRUPT,
        Error::Hybrid(HybridError::LeaderFailed { .. }) => SHMPI_E_STATE,
        Error::Hybrid(_) => SHMPI_E_INVALID,
        // A kind of error newer than this C API.
        _ => SHMPI_E_OS,
    }
}

fn segment_status(e: &SegmentError) -> c_int {
    match e {
        SegmentError::InvalidName { .. }
        | SegmentError::ZeroSize
        | SegmentError::TooLarge { .. } => SHMPI_E_INVALID,
        SegmentError::NoSpace { .. } => SHMPI_E_NO_SPACE,
        SegmentError::AlreadyExists { .. } => SHMPI_E_EXISTS,
        SegmentError::NotFound { .. } => SHMPI_E_NOT_FOUND,
        SegmentError::PermissionDenied { .. } | SegmentError::ForeignOwner { .. } => {
            SHMPI_E_PERMISSION
        }
        SegmentError::NotReady { .. } => SHMPI_E_TIMEOUT,
        SegmentError::Truncated { .. } | SegmentError::Header { .. } => SHMPI_E_CORRUPT,
        _ => SHMPI_E_OS,
    }
}

fn sync_status(e: &SyncError) -> c_int {
    match e {
        SyncError::Placement(_) | SyncError::InvalidArgument(_) => SHMPI_E_INVALID,
        SyncError::NotInitialised { .. } | SyncError::Mismatch { .. } => SHMPI_E_CORRUPT,
        SyncError::WouldBlock => SHMPI_E_WOULD_BLOCK,
        SyncError::Timeout { .. } => SHMPI_E_TIMEOUT,
        SyncError::NotRecoverable => SHMPI_E_NOT_RECOVERABLE,
        SyncError::TeamMemberLeft { .. } | SyncError::PhaseOpen => SHMPI_E_STATE,
        SyncError::OverlappingClaim { .. } => SHMPI_E_STATE,
        _ => SHMPI_E_OS,
    }
}

fn mailbox_status(e: &MailboxError) -> c_int {
    match e {
        MailboxError::InvalidRank { .. }
        | MailboxError::InvalidTag { .. }
        | MailboxError::TooLarge { .. }
        | MailboxError::RecordTooLarge { .. }
        | MailboxError::InvalidOptions(_)
        | MailboxError::Mismatch { .. }
        | MailboxError::Env { .. }
        | MailboxError::Transport(_) => SHMPI_E_INVALID,
        MailboxError::MessageTooLong { .. } => SHMPI_E_TOO_LONG,
        MailboxError::Timeout { .. } => SHMPI_E_TIMEOUT,
        MailboxError::WouldBlock => SHMPI_E_WOULD_BLOCK,
        MailboxError::PeerDied { .. } => SHMPI_E_PEER_DIED,
        MailboxError::PeerLeft { .. } | MailboxError::AllPeersGone => SHMPI_E_PEER_GONE,
        MailboxError::AlreadyJoined { .. } => SHMPI_E_EXISTS,
        MailboxError::Corrupt(_) | MailboxError::Layout(_) => SHMPI_E_CORRUPT,
        MailboxError::Segment(e) => segment_status(e),
        MailboxError::Sync(e) => sync_status(e),
        _ => SHMPI_E_OS,
    }
}

fn mpi_status(e: &MpiError) -> c_int {
    match e {
        MpiError::InvalidRank { .. }
        | MpiError::InvalidTag { .. }
        | MpiError::CountTooLarge { .. }
        | MpiError::Transport(_) => SHMPI_E_INVALID,
        MpiError::MessageTooLong { .. } => SHMPI_E_TOO_LONG,
        MpiError::Timeout { .. } => SHMPI_E_TIMEOUT,
        MpiError::WouldBlock => SHMPI_E_WOULD_BLOCK,
        MpiError::ThreadLevel { .. } | MpiError::OneSidedUnsupported { .. } => SHMPI_E_UNSUPPORTED,
        MpiError::NotInitialized | MpiError::Finalized => SHMPI_E_STATE,
        _ => SHMPI_E_MPI,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = c);
}

/// Runs `f` at the boundary: its failure becomes a status and the thread's
/// last error message; a panic is caught.
pub(crate) fn call(f: impl FnOnce() -> Result<(), Failure>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => SHMPI_OK,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            set_last_error(&format!("internal error caught at the C boundary: {what}"));
            SHMPI_E_PANIC
        }
    }
}

/// A NULL-checked reference to a handle or an out-pointer's target.
///
/// # Safety
///
/// `ptr` is NULL or valid for reads and writes of a `T` for `'a`, and not
/// used through another reference meanwhile.
pub(crate) unsafe fn arg<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: the caller's contract; NULL is checked by as_mut.
    unsafe { ptr.as_mut() }.ok_or_else(|| Failure::new(SHMPI_E_NULL, format!("{what} is NULL")))
}

/// A NULL-checked shared reference.
///
/// # Safety
///
/// `ptr` is NULL or valid for reads of a `T` for `'a`.
pub(crate) unsafe fn arg_ref<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: the caller's contract; NULL is checked by as_ref.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::new(SHMPI_E_NULL, format!("{what} is NULL")))
}

/// A C string argument as UTF-8.
///
/// # Safety
///
/// `ptr` is NULL or a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn string_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::new(SHMPI_E_NULL, format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated (caller's contract).
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| Failure::new(SHMPI_E_INVALID, format!("{what} is not UTF-8")))
}

/// `len` bytes at `ptr` (NULL allowed only for `len == 0`).
///
/// # Safety
///
/// `ptr` is valid for reads of `len` bytes for `'a` when non-NULL.
pub(crate) unsafe fn bytes_arg<'a>(
    ptr: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], Failure> {
    match (ptr.is_null(), len) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(Failure::new(
            SHMPI_E_NULL,
            format!("{what} is NULL with length {len}"),
        )),
        // SAFETY: non-NULL, `len` readable bytes (caller's contract).
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(ptr, len) }),
    }
}

/// `len` writable bytes at `ptr` (NULL allowed only for `len == 0`).
///
/// # Safety
///
/// `ptr` is valid for writes of `len` bytes for `'a` when non-NULL.
pub(crate) unsafe fn buffer_arg<'a>(
    ptr: *mut u8,
    len: usize,
    what: &str,
) -> Result<&'a mut [u8], Failure> {
    match (ptr.is_null(), len) {
        (_, 0) => Ok(&mut []),
        (true, _) => Err(Failure::new(
            SHMPI_E_NULL,
            format!("{what} is NULL with length {len}"),
        )),
        // SAFETY: non-NULL, `len` writable bytes (caller's contract).
        (false, _) => Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) }),
    }
}

/// Writes `value` through an optional out-pointer (NULL: not wanted).
///
/// # Safety
///
/// `ptr` is NULL or valid for a write of a `T`.
pub(crate) unsafe fn write_opt<T>(ptr: *mut T, value: T) {
    if !ptr.is_null() {
        // SAFETY: non-NULL and writable (caller's contract).
        unsafe { ptr.write(value) };
    }
}

/// Writes a message's envelope — length, source, tag — through the
/// out-pointers that are not NULL (every receive and probe reports it).
///
/// # Safety
///
/// Each pointer is NULL or writable.
pub(crate) unsafe fn write_envelope(
    (len, from, tag): (*mut usize, *mut c_int, *mut c_int),
    status: shmpi::transport::Status,
) {
    // SAFETY: NULL or writable (the caller's contract).
    unsafe {
        write_opt(len, status.len);
        write_opt(from, status.source as c_int);
        write_opt(tag, status.tag);
    }
}

/// Ends a receive into the caller's buffer: the message's envelope through
/// the optional out-pointers; for a message too long for the buffer (it is
/// kept for a later receive) its length through `len` with the error.
///
/// # Safety
///
/// The out-pointers are NULL or writable.
pub(crate) unsafe fn finish_recv_into<E: Into<Error>>(
    received: Result<shmpi::transport::Status, E>,
    out: (*mut usize, *mut c_int, *mut c_int),
) -> Result<(), Failure> {
    match received.map_err(Into::into) {
        Ok(status) => {
            // SAFETY: NULL or writable (this function's contract).
            unsafe { write_envelope(out, status) };
            Ok(())
        }
        Err(e) => {
            if let Error::Mailbox(MailboxError::MessageTooLong { len, .. })
            | Error::Mpi(MpiError::MessageTooLong { len, .. }) = &e
            {
                // SAFETY: NULL or writable (this function's contract).
                unsafe { write_opt(out.0, *len) };
            }
            Err(e.into())
        }
    }
}

/// Writes `value` through a required out-pointer (NULL: `SHMPI_E_NULL`).
///
/// # Safety
///
/// `ptr` is NULL or valid for a write of a `T`.
pub(crate) unsafe fn out<T>(ptr: *mut T, what: &str, value: T) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(Failure::new(SHMPI_E_NULL, format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and writable (caller's contract).
    unsafe { ptr.write(value) };
    Ok(())
}

/// Moves `value` to the heap and writes the handle through `out`.
pub(crate) fn give<T>(out: &mut *mut T, value: T) {
    *out = Box::into_raw(Box::new(value));
}

/// Frees a handle made by [`give`] (NULL: nothing).
///
/// # Safety
///
/// `ptr` is NULL or a handle from [`give`] not freed yet.
pub(crate) unsafe fn take<T>(ptr: *mut T) -> Option<Box<T>> {
    // SAFETY: the caller's contract: made by Box::into_raw, freed once.
    (!ptr.is_null()).then(|| unsafe { Box::from_raw(ptr) })
}

/// A milliseconds timeout argument.
pub(crate) fn millis(ms: u64) -> std::time::Duration {
    std::time::Duration::from_millis(ms)
}

/// The library's version (the one it was built as, which the header's
/// `SHMPI_VERSION_*` macros should match). Every out-pointer is required.
///
/// # Safety
///
/// The out-pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_version(
    major: *mut c_int,
    minor: *mut c_int,
    patch: *mut c_int,
) -> c_int {
    call(|| {
        let part = |s: &str| s.parse::<c_int>().unwrap_or(-1);
        // SAFETY: NULL-checked; writable (caller's contract).
        unsafe {
            out(major, "major", part(env!("CARGO_PKG_VERSION_MAJOR")))?;
            out(minor, "minor", part(env!("CARGO_PKG_VERSION_MINOR")))?;
            out(patch, "patch", part(env!("CARGO_PKG_VERSION_PATCH")))?;
        }
        Ok(())
    })
}

/// The name of a status code: a static string, never NULL.
#[no_mangle]
pub extern "C" fn shmpi_status_str(status: c_int) -> *const c_char {
    STATUS_NAMES
        .iter()
        .find(|(s, _)| *s == status)
        .map_or(c"unknown shmpi status".as_ptr(), |(_, name)| name.as_ptr())
}

/// The calling thread's last error message (empty before any error). The
/// string stays valid until this thread's next failing shmpi call; copy it
/// to keep it. Never NULL.
#[no_mangle]
pub extern "C" fn shmpi_last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_macros_are_the_packages_version() {
        let v = |s: &str| s.parse::<c_int>().unwrap();
        let (major, minor, patch) = (
            v(env!("CARGO_PKG_VERSION_MAJOR")),
            v(env!("CARGO_PKG_VERSION_MINOR")),
            v(env!("CARGO_PKG_VERSION_PATCH")),
        );
        assert_eq!(
            (
                SHMPI_VERSION_MAJOR,
                SHMPI_VERSION_MINOR,
                SHMPI_VERSION_PATCH
            ),
            (major, minor, patch),
            "update the SHMPI_VERSION_* constants with the version"
        );
        assert_eq!(SHMPI_VERSION_NUMBER, major * 10000 + minor * 100 + patch);
        let (mut a, mut b, mut c) = (-1, -1, -1);
        // SAFETY: three writable locals.
        assert_eq!(unsafe { shmpi_version(&mut a, &mut b, &mut c) }, SHMPI_OK);
        assert_eq!((a, b, c), (major, minor, patch));
        // SAFETY: NULL is refused before anything is written.
        let null = unsafe { shmpi_version(std::ptr::null_mut(), &mut b, &mut c) };
        assert_eq!(null, SHMPI_E_NULL);
    }
}
