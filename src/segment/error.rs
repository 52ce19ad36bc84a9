//! What segment operations report: a name that cannot be used, a
//! segment that cannot be created, opened or removed, a placement that does
//! not fit (re-exported by [`crate::error`]).

use std::time::Duration;

use nix::errno::Errno;

use super::HeaderError;

/// A segment name that cannot be used (see [`crate::segment::SegmentName`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty (or only a `/`).
    #[error("segment name is empty")]
    Empty,
    /// The name is longer than [`crate::segment::MAX_NAME_LEN`] bytes.
    #[error("segment name is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// Length of the rejected name in bytes (without the leading `/`).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name contains a byte outside `[A-Za-z0-9._-]` (a `/` after the
    /// first position, a NUL, a space, non-ASCII, ...).
    #[error("segment name has an invalid byte {byte:#04x} at position {position}; allowed are A-Z a-z 0-9 . _ -")]
    InvalidByte {
        /// The offending byte.
        byte: u8,
        /// Its position in the name (without the leading `/`).
        position: usize,
    },
    /// The name starts with `.` (which would allow `.` and `..`).
    #[error("segment name may not start with '.'")]
    LeadingDot,
}

/// Which resource was too small for a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceResource {
    /// Free space of the file system behind POSIX shared memory (`/dev/shm`).
    Filesystem,
    /// Memory the kernel reports as available (RAM plus free swap).
    Memory,
}

impl std::fmt::Display for SpaceResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpaceResource::Filesystem => "free space in /dev/shm",
            SpaceResource::Memory => "available memory",
        })
    }
}

/// Creating, opening or removing a [`crate::segment::Segment`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// The name is not valid.
    #[error("invalid segment name {name:?}: {source}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was rejected.
        source: NameError,
    },
    /// A segment of size zero was requested.
    #[error("segment size must be greater than zero")]
    ZeroSize,
    /// The requested size exceeds what a mapping can address.
    #[error("segment size {requested} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Requested data size in bytes.
        requested: u64,
        /// The largest size this process can map.
        limit: u64,
    },
    /// Not enough shared memory for the segment; nothing was left behind.
    #[error("not enough {resource} for a segment of {requested} bytes ({available} available)")]
    NoSpace {
        /// Bytes requested (header included).
        requested: u64,
        /// Bytes available when the check failed.
        available: u64,
        /// Which check caught it.
        resource: SpaceResource,
    },
    /// A segment of this name exists already (creation is exclusive).
    #[error("segment {name} already exists")]
    AlreadyExists {
        /// The normalised name.
        name: String,
    },
    /// No segment of this name exists.
    #[error("segment {name} does not exist")]
    NotFound {
        /// The normalised name.
        name: String,
    },
    /// The object's permissions do not let this process open it.
    #[error("permission denied for segment {name}")]
    PermissionDenied {
        /// The normalised name.
        name: String,
    },
    /// The object belongs to another user and the caller did not opt in to
    /// trusting it ([`crate::segment::SegmentBuilder::allow_foreign_owner`]).
    #[error("segment {name} is owned by uid {owner}, not by this process's uid {expected}")]
    ForeignOwner {
        /// The normalised name.
        name: String,
        /// Owner uid of the object.
        owner: u32,
        /// This process's effective uid.
        expected: u32,
    },
    /// The object is smaller than a shmpi header (or than its header says).
    #[error("segment {name} is truncated: {actual} bytes, at least {needed} needed")]
    Truncated {
        /// The normalised name.
        name: String,
        /// Real size of the object.
        actual: u64,
        /// Size needed.
        needed: u64,
    },
    /// The header was present but invalid.
    #[error("segment {name} has an invalid header: {source}")]
    Header {
        /// The normalised name.
        name: String,
        /// What was wrong.
        source: HeaderError,
    },
    /// The creator did not mark the segment ready within the timeout (it is
    /// still initialising, or died while doing so).
    #[error("segment {name} did not become ready within {waited:?}")]
    NotReady {
        /// The normalised name.
        name: String,
        /// How long the opener waited.
        waited: Duration,
    },
    /// A system call failed in a way not covered above.
    #[error("{op} failed for segment {name}: {errno}")]
    Os {
        /// The normalised name.
        name: String,
        /// The call that failed.
        op: &'static str,
        /// Its errno.
        errno: Errno,
    },
}

/// A typed view or an object placement does not fit a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} of {size} bytes at offset {offset} (alignment {align}) does not fit a segment of {segment_len} bytes")]
pub struct PlacementError {
    /// What was being placed.
    pub what: &'static str,
    /// Requested byte offset inside the segment's data.
    pub offset: usize,
    /// Bytes needed.
    pub size: usize,
    /// Alignment needed.
    pub align: usize,
    /// Data bytes in the segment.
    pub segment_len: usize,
}
