//! Liveness through open-file-description (OFD) byte-range locks
//! (`fcntl(F_OFD_SETLK)`, Linux 3.15+).
//!
//! A lock belongs to an open file description, not to a process id: the
//! kernel drops it when the last descriptor closes — at once when a process
//! dies, before its zombie is reaped — so it is immune to pid reuse and pid
//! namespaces, unlike `kill(pid, 0)`. The locks are advisory and never touch
//! the data; the bytes locked may lie beyond the object's end.

use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;

/// Byte locked shared by every process that maps a segment.
pub const PRESENCE_BYTE: u64 = 0;

/// First of the per-member liveness bytes (member `i` locks
/// `MEMBER_BYTE_BASE + i`); the mailbox layer uses them.
pub const MEMBER_BYTE_BASE: u64 = 1;

/// Shared (read) or exclusive (write) lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Many holders at once.
    Shared,
    /// One holder.
    Exclusive,
}

fn flock(kind: libc::c_short, byte: u64) -> libc::flock {
    // SAFETY: `flock` is a plain C struct for which all-zero is a valid value
    // (and `l_pid` must be zero for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    fl
}

fn lock_type(kind: LockKind) -> libc::c_short {
    (match kind {
        LockKind::Shared => libc::F_RDLCK,
        LockKind::Exclusive => libc::F_WRLCK,
    }) as libc::c_short
}

/// Tries to take a lock on one byte through `fd`'s open file description.
/// `Ok(false)` when another description holds a conflicting lock.
pub fn try_lock(fd: impl AsFd, kind: LockKind, byte: u64) -> Result<bool, Errno> {
    let fl = flock(lock_type(kind), byte);
    // SAFETY: `fd` is a valid open descriptor for the duration of the call
    // and `fl` a properly initialised flock that outlives it.
    let rc = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    match Errno::result(rc) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Releases this description's lock on one byte (a no-op when none is held).
pub fn unlock(fd: impl AsFd, byte: u64) -> Result<(), Errno> {
    let fl = flock(libc::F_UNLCK as libc::c_short, byte);
    // SAFETY: as in `try_lock`.
    let rc = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    Errno::result(rc).map(drop)
}

/// True when some OTHER open file description holds a lock on `byte` that
/// conflicts with `kind` (for `Exclusive`: any lock at all). Takes no lock.
pub fn is_held_by_other(fd: impl AsFd, kind: LockKind, byte: u64) -> Result<bool, Errno> {
    let mut fl = flock(lock_type(kind), byte);
    // SAFETY: `fd` is valid for the call; `fl` is initialised and F_OFD_GETLK
    // writes only into it.
    let rc = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    Errno::result(rc)?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}
