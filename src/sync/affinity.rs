//! Where threads run: the CPUs a process may use, pinning a thread to one
//! and restoring it. One home for the scheduler affinity calls.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

use super::wait::online_cpus;

/// The calling thread's CPUs (its affinity mask), in order; all online
/// CPUs when the mask cannot be read.
pub fn allowed_cpus() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => (0..online_cpus()).collect(),
    }
}

/// The CPUs this process may run on: its affinity mask (a job bound to
/// fewer CPUs than the machine has must not spin as if it had them all),
/// at least 1.
pub fn usable_cpus() -> usize {
    allowed_cpus().len().max(1)
}

/// Binds the calling thread to `cpu` (best effort: nothing happens where
/// the CPU does not exist or a cpuset forbids it).
pub fn pin_this_thread(cpu: usize) {
    let mut set = CpuSet::new();
    if cpu < online_cpus() && set.set(cpu).is_ok() {
        let _ = sched_setaffinity(Pid::from_raw(0), &set);
    }
}

/// Lets the calling thread run on every online CPU. Launchers bind each
/// rank to one core when ranks do not outnumber cores; a helper thread
/// (a team's worker, the distributed array's server) would then share that
/// core with its rank's main thread, and every hand-off between them would
/// wait for the scheduler (measured for the server: 1.5 ms per request
/// instead of 20 µs). Best effort: where a cpuset forbids it, the binding
/// stays.
pub(crate) fn unbind_this_thread() {
    let mut all = CpuSet::new();
    for cpu in 0..online_cpus().min(CpuSet::count()) {
        let _ = all.set(cpu);
    }
    let _ = sched_setaffinity(Pid::from_raw(0), &all);
}

/// Restores the calling thread's CPU set when dropped.
pub struct AffinityGuard(Option<CpuSet>);

impl AffinityGuard {
    /// Saves the calling thread's CPU set.
    pub fn save() -> AffinityGuard {
        AffinityGuard(sched_getaffinity(Pid::from_raw(0)).ok())
    }
}

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        if let Some(set) = &self.0 {
            let _ = sched_setaffinity(Pid::from_raw(0), set);
        }
    }
}
