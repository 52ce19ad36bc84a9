//! How shmpi waits: one policy — spin, then yield, then block — for every
//! wait in the crate (mailbox receives and sends on a full lane, process
//! and team barriers, the hybrid world's receive from any source, MPI
//! polling, the distributed array's owner loop).
//!
//! A waiter that spins while the peer it waits for has no core of its own
//! only delays that peer; one that sleeps at once pays a scheduler round
//! trip (~20 µs here) for every message. So:
//!
//! 1. **spin** while every runnable waiter can have a core: the budget
//!    ([`WaitPolicy::spin`]) is [`DEFAULT_SPIN`] when the parties that wait
//!    on this node fit in its online CPUs, else zero;
//! 2. **yield** the core (`sched_yield`) for [`WaitPolicy::yield_for`]: when
//!    processes outnumber cores this hands the core to the one we wait
//!    for, as MPI does with `mpi_yield_when_idle`;
//! 3. **block**: sleep on the caller's doorbell (a futex word) until rung
//!    or a check is due; a wait that has no doorbell (MPI polling) sleeps
//!    with a backoff from 1 µs, doubling up to [`WaitPolicy::max_backoff`].
//!
//! [`SPIN_ENV`] and [`YIELD_ENV`] (microseconds, read once per process)
//! override the budgets for a whole job; options and setters override them
//! per object.
//!
//! A [`Waiter`] is one wait in progress. Its owner polls for work and asks
//! [`Waiter::pause`] what to do when there is none; the waiter carries the
//! deadline and says when the periodic check (liveness, the other path's
//! progress) is due:
//!
//! ```
//! use std::time::Duration;
//! use shmpi::sync::{Pause, WaitPolicy, Waiter};
//!
//! let policy = WaitPolicy::for_parties(2);
//! let mut waiter = Waiter::new(&policy, Some(Duration::from_millis(5)));
//! let mut polls = 0;
//! let got = loop {
//!     polls += 1;
//!     if polls == 1000 {
//!         break Some(polls); // the work we waited for
//!     }
//!     match waiter.pause() {
//!         Pause::Again | Pause::Check => {}
//!         Pause::Block(slice) => std::thread::sleep(slice),
//!         Pause::Expired => break None,
//!     }
//! };
//! assert!(got.is_some() || waiter.elapsed() >= Duration::from_millis(5));
//! ```

use std::time::{Duration, Instant};

/// Spin budget while every waiter can have a core.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// Yield budget (after the spin) before a waiter blocks.
pub const DEFAULT_YIELD: Duration = Duration::from_micros(500);

/// How often a wait runs its periodic check (a mailbox's liveness check).
pub const CHECK_EVERY: Duration = Duration::from_millis(10);

/// Environment variable overriding the spin budget, in microseconds.
pub const SPIN_ENV: &str = "SHMPI_SPIN_US";

/// Environment variable overriding the yield budget, in microseconds.
pub const YIELD_ENV: &str = "SHMPI_YIELD_US";

/// The policy of set-up waits (a segment being created, a process
/// exiting): sleep at once, 1 µs doubling up to 20 ms.
pub const SETUP_POLL: WaitPolicy = WaitPolicy {
    spin: Duration::ZERO,
    yield_for: Duration::ZERO,
    block: true,
    max_backoff: Duration::from_millis(20),
};

/// Polls between two looks at the clock while spinning.
const SPINS_PER_CLOCK: u32 = 32;

pub use super::affinity::usable_cpus;

/// CPUs online on this machine (`sysconf(_SC_NPROCESSORS_ONLN)`), at
/// least 1. Read once per process: glibc reads a sysfs file for it (~10 µs,
/// more than a barrier), and policies are made on hot paths.
pub fn online_cpus() -> usize {
    static ONLINE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *ONLINE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        usize::try_from(n).unwrap_or(1).max(1)
    })
}

/// Processes of this job on this node, as the launcher says: Open MPI's,
/// MPICH's (Hydra), Slurm's (the step's tasks on this node,
/// [`crate::slurm::SlurmTask`]) or shmpi's own launcher variable; 1 when
/// none is set. Read once per process: waits ask it on hot paths (a
/// receive from any source, a distributed array's request).
pub fn node_processes() -> usize {
    static PROCESSES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PROCESSES.get_or_init(read_node_processes)
}

fn read_node_processes() -> usize {
    let launcher = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse().ok());
    launcher
        .or_else(|| {
            crate::slurm::SlurmTask::from_env()
                .ok()
                .flatten()
                .map(|t| t.tasks_on_node)
        })
        .or_else(|| std::env::var("SHMPI_SIZE").ok()?.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(1)
}

fn env_micros(var: &str) -> Option<Duration> {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_micros)
}

/// The budgets the environment sets ([`SPIN_ENV`], [`YIELD_ENV`]), read
/// once per process.
fn env_budgets() -> (Option<Duration>, Option<Duration>) {
    static BUDGETS: std::sync::OnceLock<(Option<Duration>, Option<Duration>)> =
        std::sync::OnceLock::new();
    *BUDGETS.get_or_init(|| (env_micros(SPIN_ENV), env_micros(YIELD_ENV)))
}

/// What a wait does when its work is not there: how long it spins, how
/// long it then yields the core, and whether it may block at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPolicy {
    /// Time spent polling with a spin-loop hint between polls.
    pub spin: Duration,
    /// Time then spent polling with `sched_yield` between polls.
    pub yield_for: Duration,
    /// False: never block (spin, or yield, until done).
    pub block: bool,
    /// Longest sleep of a wait without a doorbell.
    pub max_backoff: Duration,
}

impl WaitPolicy {
    /// The policy for `parties` runnable waiters on this node (a group's
    /// members, a team's threads times the node's processes): spin only
    /// when they fit in the online CPUs (not this process's affinity mask,
    /// which under `mpirun` holds one core per rank), then yield, then
    /// block. [`SPIN_ENV`] and [`YIELD_ENV`] override the budgets.
    ///
    /// ```
    /// use shmpi::sync::{online_cpus, WaitPolicy};
    /// if std::env::var_os("SHMPI_SPIN_US").is_none() {
    ///     assert!(WaitPolicy::for_parties(online_cpus() + 1).spin.is_zero());
    /// }
    /// ```
    pub fn for_parties(parties: usize) -> WaitPolicy {
        let (spin_env, yield_env) = env_budgets();
        let spin = spin_env.unwrap_or(if parties > online_cpus() {
            Duration::ZERO
        } else {
            DEFAULT_SPIN
        });
        WaitPolicy {
            spin,
            yield_for: yield_env.unwrap_or(DEFAULT_YIELD),
            block: true,
            max_backoff: Duration::from_millis(1),
        }
    }

    /// The policy of a rank's waits that involve no group of its own (MPI
    /// polling): [`for_parties`](Self::for_parties) of the node's process
    /// count ([`node_processes`]), read once per process.
    pub fn for_node() -> WaitPolicy {
        static NODE: std::sync::OnceLock<WaitPolicy> = std::sync::OnceLock::new();
        *NODE.get_or_init(|| WaitPolicy::for_parties(node_processes()))
    }

    /// Poll until done, never yielding or blocking: lowest latency, burns
    /// a core (only sensible when every waiter has one).
    pub fn spin_only() -> WaitPolicy {
        WaitPolicy {
            spin: Duration::MAX,
            yield_for: Duration::ZERO,
            block: false,
            max_backoff: Duration::ZERO,
        }
    }

    /// Block at once: no CPU burnt, every wake-up a scheduler round trip.
    pub fn block_only() -> WaitPolicy {
        WaitPolicy {
            spin: Duration::ZERO,
            yield_for: Duration::ZERO,
            block: true,
            max_backoff: Duration::from_millis(1),
        }
    }

    /// This policy with another spin budget.
    #[must_use]
    pub fn with_spin(mut self, spin: Duration) -> WaitPolicy {
        self.spin = spin;
        self
    }

    /// This policy with another longest backoff sleep.
    #[must_use]
    pub fn with_max_backoff(mut self, max: Duration) -> WaitPolicy {
        self.max_backoff = max;
        self
    }
}

/// What a waiter does next, from [`Waiter::pause`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// It spun or yielded: poll again.
    Again,
    /// The periodic check is due (every [`CHECK_EVERY`]): run it, then poll
    /// again.
    Check,
    /// Block for at most this long (the deadline and the next check are
    /// inside it): sleep on the doorbell, or — a wait without one — sleep.
    Block(Duration),
    /// The deadline passed.
    Expired,
}

/// One wait in progress under a [`WaitPolicy`].
///
/// The clock is first read when the wait first needs it (at the end of the
/// first spin round, or at once when the policy does not spin): a wait that
/// ends within its first polls — most waits of a busy exchange — costs no
/// clock read. A timeout counts from that first read.
#[derive(Debug)]
pub struct Waiter {
    policy: WaitPolicy,
    /// When the wait began, once the clock was read.
    start: Option<Instant>,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    next_check: Option<Instant>,
    polls: u32,
    /// Still within the spin budget: look at the clock only every
    /// [`SPINS_PER_CLOCK`] polls.
    spinning: bool,
    backoff: Duration,
    blocks: u64,
}

impl Waiter {
    /// A wait ending `timeout` after it begins (`None`: no deadline).
    pub fn new(policy: &WaitPolicy, timeout: Option<Duration>) -> Waiter {
        Waiter {
            policy: *policy,
            start: None,
            timeout,
            deadline: None,
            next_check: None,
            polls: 0,
            spinning: policy.spin > Duration::ZERO,
            backoff: Duration::from_micros(1),
            blocks: 0,
        }
    }

    /// A wait that ends at `deadline` (a whole operation's, fixed when the
    /// call began), `None`: never.
    pub fn until(policy: &WaitPolicy, deadline: Option<Instant>) -> Waiter {
        Waiter {
            deadline,
            ..Waiter::new(policy, None)
        }
    }

    /// Time since the wait began (zero before its first look at the
    /// clock).
    pub fn elapsed(&self) -> Duration {
        self.start.map_or(Duration::ZERO, |s| s.elapsed())
    }

    /// How often this wait blocked.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Starts over after progress (work arrived and was handled): the next
    /// idle stretch spins and yields again before it blocks. The deadline
    /// stays.
    pub fn reset(&mut self) {
        if self.start.is_some() {
            self.start = Some(Instant::now());
        }
        self.polls = 0;
        self.spinning = self.policy.spin > Duration::ZERO;
        self.backoff = Duration::from_micros(1);
    }

    /// Called after a poll that found nothing: spins or yields (and says
    /// [`Pause::Again`]), or says that the check is due, that the caller
    /// should block, or that the deadline passed.
    #[inline]
    pub fn pause(&mut self) -> Pause {
        self.polls = self.polls.wrapping_add(1);
        if self.spinning && !self.polls.is_multiple_of(SPINS_PER_CLOCK) {
            std::hint::spin_loop();
            return Pause::Again;
        }
        self.decide()
    }

    #[inline(never)]
    fn decide(&mut self) -> Pause {
        let now = Instant::now();
        let start = *self.start.get_or_insert_with(|| {
            if let Some(t) = self.timeout {
                self.deadline = now.checked_add(t);
            }
            now
        });
        if self.deadline.is_some_and(|d| now >= d) {
            return Pause::Expired;
        }
        let next_check = *self.next_check.get_or_insert(start + CHECK_EVERY);
        if now >= next_check {
            self.next_check = Some(now + CHECK_EVERY);
            return Pause::Check;
        }
        let idle = now.saturating_duration_since(start);
        if idle < self.policy.spin {
            std::hint::spin_loop();
            return Pause::Again;
        }
        self.spinning = false;
        if !self.policy.block || idle < self.policy.spin.saturating_add(self.policy.yield_for) {
            std::thread::yield_now();
            return Pause::Again;
        }
        self.blocks += 1;
        let mut slice = next_check - now;
        if let Some(d) = self.deadline {
            slice = slice.min(d - now);
        }
        Pause::Block(slice)
    }

    /// For a wait without a doorbell: the next backoff sleep (1 µs,
    /// doubling up to the policy's `max_backoff`), within `slice`.
    pub fn backoff(&mut self, slice: Duration) -> Duration {
        let sleep = self.backoff.min(slice);
        self.backoff =
            (self.backoff * 2).min(self.policy.max_backoff.max(Duration::from_micros(1)));
        sleep
    }

    /// One idle step of a wait without a doorbell and without a periodic
    /// check: spins or yields, or sleeps the backoff where the policy
    /// blocks. False once the deadline passed.
    pub fn idle(&mut self) -> bool {
        match self.pause() {
            Pause::Again | Pause::Check => true,
            Pause::Block(slice) => {
                let d = self.backoff(slice);
                std::thread::sleep(d);
                true
            }
            Pause::Expired => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_then_yields_then_blocks_then_expires() {
        let policy = WaitPolicy {
            spin: Duration::from_micros(200),
            yield_for: Duration::from_micros(300),
            block: true,
            max_backoff: Duration::from_micros(100),
        };
        // The order of the phases, with a deadline far enough away that a
        // descheduled test thread cannot jump past the blocking phase (a
        // 3 ms deadline did, once, on a loaded machine).
        let mut w = Waiter::new(&policy, Some(Duration::from_secs(30)));
        loop {
            match w.pause() {
                Pause::Again | Pause::Check => {}
                Pause::Block(slice) => {
                    assert!(w.elapsed() >= Duration::from_micros(500), "blocked early");
                    assert!(slice <= Duration::from_secs(30));
                    std::thread::sleep(w.backoff(slice));
                    break;
                }
                Pause::Expired => panic!("expired before blocking"),
            }
        }
        for _ in 0..100 {
            assert!(
                !matches!(w.pause(), Pause::Again),
                "spun or yielded after blocking"
            );
        }
        assert!(w.blocks() > 0);
        // The deadline ends the wait, and never early.
        let mut w = Waiter::new(&policy, Some(Duration::from_millis(3)));
        while !matches!(w.pause(), Pause::Expired) {}
        assert!(w.elapsed() >= Duration::from_millis(3));
    }

    #[test]
    fn spin_only_never_blocks_and_checks_periodically() {
        let mut w = Waiter::new(
            &WaitPolicy::spin_only(),
            Some(CHECK_EVERY * 2 + CHECK_EVERY / 2),
        );
        let (mut checks, mut blocks) = (0, 0);
        loop {
            match w.pause() {
                Pause::Again => {}
                Pause::Check => checks += 1,
                Pause::Block(_) => blocks += 1,
                Pause::Expired => break,
            }
        }
        assert_eq!(blocks, 0);
        assert_eq!(checks, 2);
    }

    #[test]
    fn backoff_doubles_to_the_cap_within_the_slice() {
        let policy = WaitPolicy::block_only().with_max_backoff(Duration::from_micros(8));
        let mut w = Waiter::new(&policy, None);
        let got: Vec<_> = (0..6).map(|_| w.backoff(Duration::from_secs(1))).collect();
        let us = |n| Duration::from_micros(n);
        assert_eq!(got, [us(1), us(2), us(4), us(8), us(8), us(8)]);
        assert_eq!(w.backoff(us(3)), us(3));
    }

    #[test]
    fn too_many_parties_do_not_spin() {
        if std::env::var_os(SPIN_ENV).is_none() {
            assert!(WaitPolicy::for_parties(online_cpus() + 1).spin.is_zero());
            assert_eq!(WaitPolicy::for_parties(1).spin, DEFAULT_SPIN);
        }
    }
}
