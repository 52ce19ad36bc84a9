//! Message passing emulated on shared memory: one mailbox per ordered pair
//! of processes, at a memory cost that grows with the number of processes.
//!
//! A [`MailboxGroup`] of N members lives in one segment. Each ordered pair
//! `src → dst` has a **lane**: a small single-producer/single-consumer
//! [ring] of records (2 KiB by default) that is `dst`'s mailbox for
//! messages from `src`. Each member owns an outgoing **pool** of fragments
//! (3 MiB of 128 KiB fragments by default). A message of up to half a lane
//! (1,008 bytes) travels inline in the lane; a larger one is written into a
//! fragment of the sender's pool and announced by a descriptor in the lane,
//! and the receiver reads it there and hands the fragment back; a message
//! larger than a fragment streams, fragment by fragment, each announced in
//! the lane. Zero-copy loans are a lane record or a whole fragment.
//!
//! Why this shape ([`GroupLayout`] has the figures): memory is
//! `N × pool + N(N−1) × 2.1 KiB` — 438 MB for 128 members, 947 MB for 256,
//! where the N×(N−1) matrix of 256 KiB rings it replaces took 4.3 GB and
//! 17 GB. And it keeps what the rings promised:
//!
//! - every message, whatever its size, is announced in one FIFO per source
//!   (the lane), so order per (source, tag) and per-source reassembly hold;
//! - a sender's backlog never blocks another sender to the same receiver:
//!   each has its own lane and its own pool;
//! - the send fast path stays single-writer: a message that fits the lane
//!   is a plain store into it; atomics only allocate or free fragments;
//! - every byte is reserved when the group is created (`posix_fallocate`),
//!   so a full `/dev/shm` is an error then, never a `SIGBUS` later.
//!
//! Matching follows MPI (a source or any, a tag or any; messages that do
//! not match wait in a local queue, and order is preserved per source and
//! tag). [`MailboxOptions`] sets the pool (each member's memory budget),
//! the fragment (the largest loan) and the lane; `MailboxGroup::inspect`
//! and `shmpi inspect` show what each member reserves and uses.
//!
//! # Waiting
//!
//! A member that must wait — a receiver with nothing to read, a sender
//! facing a full ring — spins for a bounded time, then sleeps on its own
//! doorbell after announcing it with a flag; a peer rings the doorbell only
//! when the flag is set (`wake`), so the fast path makes no system call.
//! The doorbell is a futex sequence word shmpi owns, not a glibc `sem_t`:
//! every value is valid, so a process that scribbles on it causes at most
//! a spurious wake-up (glibc aborts the process when a `sem_t` is
//! overwritten). [`WaitStrategy`] chooses spin, block, or the default: the
//! crate's one wait policy ([`crate::sync::wait`]) — spin for
//! [`DEFAULT_SPIN`] (zero when the group has more members than the machine
//! has online CPUs: processes that spin while others need the core only
//! delay them), then yield the core, then sleep; [`SPIN_ENV`] and
//! `SHMPI_YIELD_US` (microseconds) override the budgets.
//!
//! # Dead peers
//!
//! Each member holds an exclusive OFD lock on its own byte of the segment
//! (see [`crate::segment::lock`]); the kernel drops it the moment the process
//! dies. A waiting call checks its peers every [`LIVENESS_SLICE`], and an
//! end (death, or an orderly departure: [`MailboxError::PeerLeft`]) is
//! reported only after the peer's last message:
//!
//! - a receive from a dead source fails with [`MailboxError::PeerDied`] on
//!   every call once that source's queued messages are delivered;
//! - a receive from any source reports each end exactly once, by the first
//!   call that finds the peer's ring drained — a death found together with
//!   a message is reported by the next call — then, when every peer has
//!   ended, [`MailboxError::AllPeersGone`];
//! - a sender waiting on a dead receiver's full ring gets `PeerDied`. A send
//!   that finds room does not check: the fast path makes no system call,
//!   and the message waits in the ring like a letter in the box of someone
//!   who moved out.
//!
//! # Trust and deadlines
//!
//! Everything read from the group's memory is untrusted: indices, lengths,
//! flags, stream totals and member states are checked before use, a
//! violation is [`MailboxError::Corrupt`], and nothing is allocated from a
//! size read there. Every `_timeout` call ends by its deadline, a streamed
//! send included: a stream cut off there is abandoned with an abort record
//! (`framing`), so the receiver drops the part it has and reads the next
//! message whole.
//!
//! A member that died may **rejoin** under its id (named groups only: an
//! ephemeral group's name is gone). It resumes where its predecessor's
//! shared positions stand: messages already in its mailboxes are delivered
//! to it, the tail of a streamed message whose beginning its predecessor had
//! consumed is discarded, and a message its predecessor was streaming when it
//! died is discarded by the receiver with [`MailboxError::Interrupted`].
//! Peers that had been told `PeerDied` see it alive again.
//!
//! [`MailboxError::PeerDied`]: crate::MailboxError::PeerDied
//! [`MailboxError::PeerLeft`]: crate::MailboxError::PeerLeft
//! [`MailboxError::AllPeersGone`]: crate::MailboxError::AllPeersGone
//! [`MailboxError::Corrupt`]: crate::MailboxError::Corrupt
//! [`MailboxError::Interrupted`]: crate::MailboxError::Interrupted

// The parsers and protocols below are public only for the fuzz targets
// (fuzz/) and the loom models (tests/loom_ring.rs): not part of the API,
// hidden from its documentation, free to change in any release.
#[doc(hidden)]
pub mod framing;
mod group;
pub mod launch;
mod layout;
mod matching;
mod pool;
#[doc(hidden)]
pub mod ring;
#[doc(hidden)]
pub mod wake;

use std::time::Duration;

use crate::sync::WaitPolicy;

pub use group::{
    GroupReport, Loan, MailboxGroup, PairCounters, PeerStatus, RecvRef, ThreadMailbox, DOORBELL_ENV,
};
pub use layout::{
    GroupLayout, GroupParams, LayoutError, FLAG_EPHEMERAL, MAX_FRAGMENTS, MAX_MEMBERS,
};

/// The largest message: 4 GiB.
pub const MAX_MESSAGE_LEN: usize = 1 << 32;

/// Default lane: 2 KiB per ordered pair (32 records of a cache line; a
/// message up to 1,008 bytes travels inline in it).
pub const DEFAULT_LANE: usize = 2 << 10;

/// Default pool fragment: 128 KiB, the largest zero-copy loan and the chunk
/// of a streamed message.
pub const DEFAULT_FRAGMENT: usize = 128 << 10;

/// Default pool: 3 MiB per member (24 fragments).
pub const DEFAULT_POOL: usize = 3 << 20;

/// Default record granularity: one cache line.
pub const DEFAULT_GRANULARITY: usize = 64;

pub use crate::sync::wait::{online_cpus, DEFAULT_SPIN, SPIN_ENV};

/// How often a waiting call checks that its peers are alive: the wait
/// policy's periodic check ([`crate::sync::wait::CHECK_EVERY`]).
pub const LIVENESS_SLICE: Duration = crate::sync::wait::CHECK_EVERY;

/// Launcher variable: the group's segment name.
pub const GROUP_ENV: &str = "SHMPI_GROUP";
/// Launcher variable: this process's member id.
pub const RANK_ENV: &str = "SHMPI_RANK";
/// Launcher variable: the number of members.
pub const SIZE_ENV: &str = "SHMPI_SIZE";

/// How a member waits (the policy itself is [`crate::sync::wait`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitStrategy {
    /// Poll until done: lowest latency, burns a core; only sensible when
    /// every member has a core of its own.
    Spin,
    /// Sleep on the doorbell at once: no CPU burnt, a wake-up costs a
    /// scheduler round trip.
    Block,
    /// The default: spin for the spin budget (zero when the group has more
    /// members than the machine has CPUs), then yield the core for the
    /// yield budget, then sleep on the doorbell.
    #[default]
    SpinThenBlock,
}

impl WaitStrategy {
    /// The wait policy of this strategy for a group of `members`, with
    /// `spin` as the spin budget when given.
    pub(crate) fn policy(self, members: usize, spin: Option<Duration>) -> WaitPolicy {
        match self {
            WaitStrategy::Spin => WaitPolicy::spin_only(),
            WaitStrategy::Block => WaitPolicy::block_only(),
            WaitStrategy::SpinThenBlock => {
                let policy = WaitPolicy::for_parties(members);
                spin.map_or(policy, |s| policy.with_spin(s))
            }
        }
    }
}

/// Options of a group: fixed at creation (memory, granularity, ephemeral)
/// or chosen by each member (wait strategy, spin budget, timeouts).
///
/// What they cost: every member reserves `pool` bytes plus `lane + 128`
/// bytes per other member, all at creation
/// ([`GroupLayout::bytes_per_member`]); with the defaults, 3 MiB +
/// (N − 1) × 2.1 KiB.
#[derive(Debug, Clone)]
pub struct MailboxOptions {
    /// Bytes of each member's outgoing pool: its memory budget for
    /// messages in flight (rounded down to whole fragments; 1 to 512
    /// fragments).
    pub pool: usize,
    /// Bytes of one pool fragment (a power of two, 1 KiB to 256 MiB, more
    /// than half a lane): the largest zero-copy loan and `try_send`, and
    /// the chunk a larger message streams in.
    pub fragment: usize,
    /// Bytes of each lane, the descriptor ring of one ordered pair (a power
    /// of two, 1 KiB to 256 MiB): a message up to half a lane minus 16
    /// bytes travels inline in it.
    pub lane: usize,
    /// Record alignment in lanes (a power of two, 16 bytes to lane/16).
    pub granularity: usize,
    /// Unlink the name as soon as every member has joined.
    pub ephemeral: bool,
    /// How this member waits.
    pub wait: WaitStrategy,
    /// Spin budget; `None`: [`WaitPolicy::for_parties`] for the group's
    /// size.
    pub spin: Option<Duration>,
    /// How long `join` waits for the group to be created.
    pub join_timeout: Duration,
}

impl Default for MailboxOptions {
    fn default() -> Self {
        MailboxOptions {
            pool: DEFAULT_POOL,
            fragment: DEFAULT_FRAGMENT,
            lane: DEFAULT_LANE,
            granularity: DEFAULT_GRANULARITY,
            ephemeral: false,
            wait: WaitStrategy::default(),
            spin: None,
            join_timeout: Duration::from_secs(10),
        }
    }
}
