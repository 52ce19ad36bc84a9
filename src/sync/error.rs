//! What the process-shared synchronisation primitives report
//! (re-exported by [`crate::error`]).

use std::time::Duration;

use nix::errno::Errno;

use crate::segment::PlacementError;

/// A process-shared synchronisation primitive failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The object does not fit the segment at that offset.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// No primitive of the expected type was initialised at that offset
    /// (or its tag was overwritten).
    #[error("no initialised {expected} at offset {offset} (found tag {found:#010x})")]
    NotInitialised {
        /// Which primitive was expected.
        expected: &'static str,
        /// Offset inside the segment's data.
        offset: usize,
        /// Tag word found there.
        found: u32,
    },
    /// The object's recorded parameters disagree with the caller's (a
    /// mutex's value size, a barrier's party count, ...).
    #[error("{what}: segment says {found}, caller expects {expected}")]
    Mismatch {
        /// What disagrees.
        what: &'static str,
        /// Value in shared memory.
        found: u64,
        /// Value the caller expects.
        expected: u64,
    },
    /// A `try_` operation would have blocked.
    #[error("operation would block")]
    WouldBlock,
    /// A `_timeout` operation timed out.
    #[error("timed out after {waited:?}")]
    Timeout {
        /// The timeout that expired.
        waited: Duration,
    },
    /// A robust mutex was left unusable: its previous owner died and the
    /// next locker released it without marking it consistent.
    #[error(
        "robust mutex is not recoverable (an owner died and the state was never made consistent)"
    )]
    NotRecoverable,
    /// A party of a thread team's barrier left the team (its function
    /// returned or panicked), so the barrier can never complete.
    #[error("{left} team member(s) left; the team barrier cannot complete")]
    TeamMemberLeft {
        /// How many members had left.
        left: usize,
    },
    /// A team member asked for a second phase, or for a plain barrier,
    /// while it holds a phase: end the phase with `Phase::next` (or drop
    /// it) first.
    #[error("this team member holds a phase; end it before a plain barrier or another phase")]
    PhaseOpen,
    /// Two ranks' claims on a node array overlap in one epoch (one writes
    /// what the other reads or writes). Checked in debug builds, on both
    /// ranks: at the later claim and at the epoch's end.
    #[error("epoch {epoch}: this rank's claim overlaps node rank {other}'s")]
    OverlappingClaim {
        /// The epoch (node barriers since the array was made).
        epoch: u64,
        /// The node rank whose claim overlaps.
        other: usize,
    },
    /// A value passed in is out of range (a barrier of zero parties, a
    /// semaphore count above `SEM_VALUE_MAX`, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A system call failed.
    #[error("{op} failed: {errno}")]
    Os {
        /// The call that failed.
        op: &'static str,
        /// Its errno.
        errno: Errno,
    },
}
