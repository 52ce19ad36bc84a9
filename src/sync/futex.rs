//! The two Linux futex operations the barrier needs (`futex(2)`), on words
//! in shared memory: not `FUTEX_PRIVATE_FLAG`, so the kernel keys the wait
//! queue on the mapped object and waiters in other processes are found.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use nix::errno::Errno;

/// Sleeps while `*word == expected`, at most `timeout` (on the monotonic
/// clock). Returns on a wake-up, a changed value (`EAGAIN`), a signal
/// (`EINTR`) or the timeout (`ETIMEDOUT`); the caller re-checks its
/// condition in every case.
pub(super) fn wait(
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
pub(super) fn wake(word: &AtomicU32, n: i32) {
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
