//! Errors: one precise type per area that callers branch on, and one
//! crate-wide [`Error`] with `From` impls so that `?` works across areas.
//!
//! The lower layers own their errors ([`SegmentError`] and its kin in
//! `segment`, [`SyncError`] in `sync`) and never use this module: it
//! gathers them, so nothing here is imported back by them.
//!
//! `errno` values are carried as values ([`Errno`]), never stringified, so a
//! caller can compare them.

use std::time::Duration;

pub use nix::errno::Errno;

pub use crate::segment::{NameError, PlacementError, SegmentError, SpaceResource};
pub use crate::sync::SyncError;

/// A mailbox group operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// A member id outside `0..size`.
    #[error("rank {rank} is outside the group of {size}")]
    InvalidRank {
        /// The rank given.
        rank: usize,
        /// The group size.
        size: usize,
    },
    /// A negative tag.
    #[error("tag {tag} is invalid: tags are 0..=i32::MAX")]
    InvalidTag {
        /// The tag given.
        tag: i32,
    },
    /// A message longer than [`crate::mailbox::MAX_MESSAGE_LEN`].
    #[error("a message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Bytes given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A loan (or a `try_send`) larger than one record of the ring.
    #[error(
        "{len} bytes do not fit one ring record (at most {max}); use send for larger messages"
    )]
    RecordTooLarge {
        /// Bytes asked for.
        len: usize,
        /// The largest record payload.
        max: usize,
    },
    /// A message longer than the caller's buffer; it was kept, not consumed.
    #[error("a message of {len} bytes does not fit the {capacity}-byte buffer (it is kept)")]
    MessageTooLong {
        /// Message bytes.
        len: usize,
        /// Buffer bytes.
        capacity: usize,
    },
    /// A call with a timeout ([`crate::transport::Wait::For`], a
    /// `_timeout` send) timed out; nothing was consumed or sent.
    #[error("timed out after {waited:?}")]
    Timeout {
        /// The timeout.
        waited: Duration,
    },
    /// A call that was not to wait ([`crate::transport::Wait::Now`], a
    /// `try_` send), or a receive from this member itself with nothing
    /// queued, would have had to wait; nothing was consumed or sent.
    #[error("operation would block")]
    WouldBlock,
    /// The peer's process died (its liveness lock is gone) and it has no
    /// more messages for us.
    #[error("member {id} died")]
    PeerDied {
        /// The dead member.
        id: usize,
    },
    /// The peer left the group in an orderly way and has no more messages.
    #[error("member {id} left the group")]
    PeerLeft {
        /// The member that left.
        id: usize,
    },
    /// Every other member has died or left: a receive from any source can
    /// never complete.
    #[error("every other member of the group has died or left")]
    AllPeersGone,
    /// A message from `id` was cut short because its sender died mid-way
    /// (and rejoined); the part received was discarded.
    #[error("a message from member {id} was cut short by its sender's death; the partial message was discarded")]
    Interrupted {
        /// The sender.
        id: usize,
    },
    /// A live process already holds this member id.
    #[error("member id {id} is held by a live process")]
    AlreadyJoined {
        /// The id.
        id: usize,
    },
    /// The group's parameters differ from what the caller expects.
    #[error("{what}: the group has {found}, the caller expects {expected}")]
    Mismatch {
        /// What differs.
        what: &'static str,
        /// The group's value.
        found: u64,
        /// The caller's value.
        expected: u64,
    },
    /// The group's shared memory holds something impossible.
    #[error("corrupt mailbox group: {0}")]
    Corrupt(String),
    /// The group header read from shared memory is invalid.
    #[error("corrupt mailbox group header: {0}")]
    Layout(#[from] crate::mailbox::LayoutError),
    /// The caller's options for a new group are invalid (the message names
    /// the option: members, capacity or granularity).
    #[error("invalid mailbox group options: {0}")]
    InvalidOptions(crate::mailbox::LayoutError),
    /// A launcher variable is missing or malformed.
    #[error("environment variable {var}: {problem}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A launcher could not start a member process.
    #[error("starting {program}: {errno}")]
    Launch {
        /// The program.
        program: String,
        /// Why.
        errno: Errno,
    },
    /// The group's segment could not be created or opened.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A doorbell semaphore failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// A typed receive or a collective through the group's
    /// [`crate::transport::Transport`] methods got data it cannot use.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// An MPI operation failed. MPI's own failures carry its error code, error
/// class and message (shmpi sets `MPI_ERRORS_RETURN` on the communicators it
/// uses, so they come back instead of aborting the job).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MpiError {
    /// A typed receive or a collective got data it cannot use.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// MPI is not initialised (and the call needs it).
    #[error("MPI is not initialised")]
    NotInitialized,
    /// MPI has been finalised; it cannot be used again in this process.
    #[error("MPI has been finalised")]
    Finalized,
    /// A rank outside the communicator.
    #[error("rank {rank} is outside the communicator of {size}")]
    InvalidRank {
        /// The rank given.
        rank: usize,
        /// The communicator's size.
        size: usize,
    },
    /// A tag outside `0..=MPI_TAG_UB`.
    #[error("tag {tag} is outside 0..={max} (MPI_TAG_UB)")]
    InvalidTag {
        /// The tag given.
        tag: i32,
        /// The largest tag.
        max: i32,
    },
    /// A message longer than the receive buffer; it is kept for a later
    /// receive.
    #[error("a message of {len} bytes does not fit the {capacity}-byte buffer (it is kept)")]
    MessageTooLong {
        /// Message bytes.
        len: usize,
        /// Buffer bytes.
        capacity: usize,
    },
    /// The operation needs a higher thread level than MPI granted.
    #[error("needs MPI thread level {needed}, MPI granted {granted}")]
    ThreadLevel {
        /// What the operation needs.
        needed: &'static str,
        /// What MPI granted.
        granted: &'static str,
    },
    /// A receive with a timeout timed out (nothing was consumed).
    #[error("timed out after {waited:?}")]
    Timeout {
        /// The timeout.
        waited: Duration,
    },
    /// A receive that was not to wait ([`crate::transport::Wait::Now`])
    /// found nothing (nothing was consumed).
    #[error("no matching message (a receive that does not wait)")]
    WouldBlock,
    /// An element count a collective cannot pass to MPI (above `i32::MAX`).
    #[error("{count} elements exceed what one MPI collective call takes (i32::MAX)")]
    CountTooLarge {
        /// The count.
        count: usize,
    },
    /// MPI returned an error.
    #[error("{op} failed: {message} (MPI error code {code}, class {class})")]
    Call {
        /// The MPI function.
        op: &'static str,
        /// The error code returned.
        code: i32,
        /// Its error class (`MPI_Error_class`).
        class: i32,
        /// `MPI_Error_string`.
        message: String,
    },
    /// An MPI shared-memory window does not hold what was asked (its base
    /// is null, it is smaller than asked, or misaligned).
    #[error("MPI shared window: {what} is {found}, expected {expected}")]
    SharedWindow {
        /// What is wrong.
        what: &'static str,
        /// Found.
        found: u64,
        /// Expected.
        expected: u64,
    },
    /// The MPI library's one-sided setup would crash or fail on this
    /// operation (Open MPI's `rdma` component: its compare-and-swap
    /// segfaults, and it cannot make windows across hosts over TCP).
    #[error(
        "one-sided MPI refused: {reason} (Open MPI osc setting {setting:?}; run through shmpi's launcher or set OMPI_MCA_osc=sm,ucx)"
    )]
    OneSidedUnsupported {
        /// The `osc` component setting read through the MPI tools interface.
        setting: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

/// The hybrid world, or a node object (node array, node mailbox group),
/// failed in a way of its own (MPI's and the mailboxes' errors keep their
/// types).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HybridError {
    /// The node leader could not create the node's object; the other
    /// ranks of the node fail with this (the leader with its own error).
    #[error("the node leader could not create the {what} (see the leader's error)")]
    LeaderFailed {
        /// What was being shared.
        what: &'static str,
    },
    /// What the leader shared is not what this rank expects (a name that
    /// is not a segment name, an array smaller than asked: the ranks
    /// disagree on its size).
    #[error("{what}: found {found}, expected {expected}")]
    Mismatch {
        /// What disagrees.
        what: &'static str,
        /// What was found.
        found: String,
        /// What was expected.
        expected: String,
    },
    /// A placement override variable is malformed.
    #[error("{var}: {problem}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// A typed receive or a collective got data it cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The message length is not a multiple of the element size.
    #[error("a message of {len} bytes is not a whole number of {elem}-byte elements")]
    TypeMismatch {
        /// Message bytes.
        len: usize,
        /// Element size.
        elem: usize,
    },
    /// A message arrived out of its sender's sequence (lost, duplicated or
    /// reordered): what a checking workload reports.
    #[error("message {found} from rank {source_rank} arrived where {expected} was due")]
    OutOfSequence {
        /// The sender.
        source_rank: usize,
        /// The sequence number received.
        found: u64,
        /// The one expected.
        expected: u64,
    },
    /// The ranks disagree on a collective's element count.
    #[error("collective: rank {rank} contributed {found} elements, {expected} expected")]
    CountMismatch {
        /// The rank.
        rank: usize,
        /// Its count.
        found: usize,
        /// The expected count.
        expected: usize,
    },
    /// The reduction is not defined for the element type (bitwise on floats).
    #[error("reduction {op} is not defined for {ty}")]
    UnsupportedOp {
        /// The operation.
        op: &'static str,
        /// The element type.
        ty: &'static str,
    },
    /// A root rank outside the communicator.
    #[error("root {root} is outside the {size} ranks")]
    InvalidRoot {
        /// The root.
        root: usize,
        /// Number of ranks.
        size: usize,
    },
}

/// Any shmpi error. Every area's error converts into it with `?`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A segment operation failed.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A view or placement does not fit.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// A synchronisation primitive failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// A mailbox group operation failed.
    #[error(transparent)]
    Mailbox(MailboxError),
    /// A transport-level (typed or collective) operation failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// An MPI operation failed.
    #[error(transparent)]
    Mpi(MpiError),
    /// A distributed array operation failed.
    #[error(transparent)]
    Dsm(#[from] DsmError),
    /// A hybrid world or one of its node objects failed.
    #[error(transparent)]
    Hybrid(#[from] HybridError),
}

/// A mailbox error, with the transport-level ones (a typed receive or a
/// collective through [`crate::transport::Transport`]) lifted to
/// [`Error::Transport`]: every path reports those the same way.
impl From<MailboxError> for Error {
    fn from(e: MailboxError) -> Error {
        match e {
            MailboxError::Transport(t) => Error::Transport(t),
            e => Error::Mailbox(e),
        }
    }
}

/// An MPI error, with the transport-level ones lifted to
/// [`Error::Transport`] (as for [`MailboxError`]).
impl From<MpiError> for Error {
    fn from(e: MpiError) -> Error {
        match e {
            MpiError::Transport(t) => Error::Transport(t),
            e => Error::Mpi(e),
        }
    }
}

/// A distributed array ([`crate::dsm::DistArray`]) operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DsmError {
    /// An index (or the end of a range) past the array's end.
    #[error("index {index} is out of bounds for a distributed array of length {len}")]
    OutOfBounds {
        /// The first index outside the array.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// The ranks disagree on the array's shape at creation.
    #[error("the ranks disagree on the array's {what}: from {min} to {max}")]
    Disagreement {
        /// What differs (element size, alignment, length).
        what: &'static str,
        /// The smallest value given.
        min: u64,
        /// The largest value given.
        max: u64,
    },
    /// An owner answered a request with an error status.
    #[error("owner {owner} refused the request: {reason}")]
    Refused {
        /// The owner's rank.
        owner: usize,
        /// What it said.
        reason: &'static str,
    },
    /// A [`ByteArray`](crate::dsm::ByteArray) buffer whose length does not
    /// fit the elements, or an element size the operation does not allow
    /// (zero; an integer operation on elements other than 4 or 8 bytes).
    #[error("{what}: {len} bytes for elements of {elem_size} bytes")]
    ElementSize {
        /// What does not fit.
        what: &'static str,
        /// The length given, in bytes.
        len: usize,
        /// The array's element size, in bytes.
        elem_size: usize,
    },
    /// A message on the array's channel that the protocol does not allow
    /// (a malformed reply, an unexpected tag or sender).
    #[error("protocol violation on the array's channel: {0}")]
    Protocol(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
