//! `membarrier(2)`: the heavy half of an asymmetric barrier, so that the
//! mailboxes' senders pay nothing for the doorbell protocol (see
//! [`crate::mailbox::wake`] for the protocol and its proof).
//!
//! A process *registers* for expedited barriers once; afterwards any
//! process may make every CPU that runs a thread of a registered process
//! execute a full memory barrier ([`heavy`]), which costs the caller
//! microseconds (inter-processor interrupts) and the registered threads an
//! interrupt — instead of a fence on every send.

use std::sync::OnceLock;

use nix::errno::Errno;

const CMD_QUERY: libc::c_int = 0;
const CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
const CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;
const CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

/// Which threads a barrier reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Threads of every process registered for global expedited barriers
    /// (the members of a process group).
    Global,
    /// Threads of this process (the members of a group of threads).
    Private,
}

impl Scope {
    fn commands(self) -> (libc::c_int, libc::c_int) {
        match self {
            Scope::Global => (CMD_REGISTER_GLOBAL_EXPEDITED, CMD_GLOBAL_EXPEDITED),
            Scope::Private => (CMD_REGISTER_PRIVATE_EXPEDITED, CMD_PRIVATE_EXPEDITED),
        }
    }
}

fn membarrier(cmd: libc::c_int) -> Result<libc::c_long, Errno> {
    // SAFETY: membarrier takes two integers (command, flags) and a CPU id
    // that the commands used here ignore; it touches no user memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            cmd,
            0 as libc::c_int,
            0 as libc::c_int,
        )
    };
    Errno::result(rc)
}

/// The commands this kernel supports (`MEMBARRIER_CMD_QUERY`), 0 where
/// `membarrier` is missing or forbidden (a seccomp filter).
fn supported() -> libc::c_int {
    static SUPPORTED: OnceLock<libc::c_int> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        membarrier(CMD_QUERY).map_or(0, |bits| libc::c_int::try_from(bits).unwrap_or(0))
    })
}

/// True when this kernel offers expedited barriers of `scope`.
pub fn available(scope: Scope) -> bool {
    let (register, run) = scope.commands();
    supported() & (register | run) == register | run
}

/// Registers this process for expedited barriers of `scope` (once; later
/// calls return the first result). False where the kernel lacks them or
/// registration failed: the caller then fences every send instead.
pub fn register(scope: Scope) -> bool {
    static GLOBAL: OnceLock<bool> = OnceLock::new();
    static PRIVATE: OnceLock<bool> = OnceLock::new();
    let cell = match scope {
        Scope::Global => &GLOBAL,
        Scope::Private => &PRIVATE,
    };
    *cell.get_or_init(|| available(scope) && membarrier(scope.commands().0).is_ok())
}

/// Makes every CPU running a thread of `scope` execute a full memory
/// barrier before this returns (`Private`: needs this process registered,
/// see [`register`]).
///
/// # Errors
///
/// The errno of a failed call (`EPERM` for an unregistered private scope).
pub fn heavy(scope: Scope) -> Result<(), Errno> {
    membarrier(scope.commands().1).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_scopes_take_barriers() {
        for scope in [Scope::Global, Scope::Private] {
            if register(scope) {
                heavy(scope).unwrap();
            }
        }
    }
}
