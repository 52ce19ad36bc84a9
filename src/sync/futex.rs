//! The two Linux futex operations (`futex(2)`) the barrier and the mailbox
//! doorbells need, on words
//! in shared memory: not `FUTEX_PRIVATE_FLAG`, so the kernel keys the wait
//! queue on the mapped object and waiters in other processes are found.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use nix::errno::Errno;

/// Sleeps while `*word == expected`, at most `timeout` (on the monotonic
/// clock). Returns on a wake-up, a changed value (`EAGAIN`), a signal
/// (`EINTR`) or the timeout (`ETIMEDOUT`); the caller re-checks its
/// condition in every case.
pub(crate) fn wait(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
) -> Result<(), Errno> {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call;
    // `ts_ptr` is null or points to a live timespec; FUTEX_WAIT reads both
    // and writes nothing.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    Errno::result(rc).map(drop)
}

/// Wakes up to `n` waiters sleeping on `word`.
pub(crate) fn wake(word: &AtomicU32, n: i32) {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE only reads its
    // address. It cannot fail for a valid address, so the result is unused.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// A doorbell on a futex sequence word that lives in shared memory: the
/// sleeper reads a ticket (the word's value), re-checks its condition and
/// sleeps while the word still holds the ticket; a waker increments the
/// word and wakes the sleepers. Every value of the word is valid, so a
/// process that scribbles on it causes at most a spurious wake-up — never
/// an error, a hang past the caller's timeout, or an abort (which glibc's
/// `sem_t` raises when its private word is overwritten).
#[derive(Clone, Copy)]
pub(crate) struct Doorbell<'a> {
    word: &'a AtomicU32,
}

impl<'a> Doorbell<'a> {
    /// The doorbell on `word`.
    pub(crate) fn new(word: &'a AtomicU32) -> Doorbell<'a> {
        Doorbell { word }
    }

    /// The current ticket: read BEFORE the last check of the condition, so
    /// a ring between that check and the sleep changes the word and the
    /// sleep returns at once.
    pub(crate) fn ticket(&self) -> u32 {
        self.word.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Sleeps while the word holds `ticket`, at most `timeout`. Returns on
    /// a ring, a changed word, a signal or the timeout alike; the caller
    /// re-checks its condition.
    ///
    /// # Errors
    ///
    /// The errno of a futex failure other than those (none is expected for
    /// an aligned word in a live mapping).
    pub(crate) fn sleep(&self, ticket: u32, timeout: Duration) -> Result<(), Errno> {
        match wait(self.word, ticket, Some(timeout)) {
            Ok(()) | Err(Errno::EAGAIN | Errno::EINTR | Errno::ETIMEDOUT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Rings: changes the word (release, so the sleeper that sees the new
    /// value also sees what the waker published) and wakes every sleeper.
    pub(crate) fn ring(&self) {
        self.word.fetch_add(1, std::sync::atomic::Ordering::Release);
        wake(self.word, i32::MAX);
    }
}
