//! The fixed header at the start of every shmpi segment, and its validation.
//!
//! Layout (native endianness, 128 bytes, every field an atomic word so that a
//! concurrent writer in another process is never a data race):
//!
//! | offset | field           | type |
//! |-------:|-----------------|------|
//! | 0      | magic           | u64  |
//! | 8      | layout version  | u32  |
//! | 12     | kind            | u32  |
//! | 16     | total size      | u64  |
//! | 24     | data offset     | u64  |
//! | 32     | creator pid     | u32  |
//! | 36     | ready           | u32  |
//! | 40     | created (ms since the Unix epoch) | u64 |
//! | 48     | creator uid     | u32  |
//! | 52..128 | reserved (zero) |     |
//!
//! The creator writes every field, then stores [`READY`] into `ready` with
//! release ordering; an opener loads `ready` with acquire ordering first and
//! trusts nothing before [`HeaderFields::validate`] accepted it. Validation
//! is pure (no system calls), so it is unit-tested, property-tested and
//! fuzzed over arbitrary bytes.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bytes the header occupies; the data region starts after it.
pub const HEADER_SIZE: usize = 128;

/// The magic number: the bytes `SHMPI\0SG` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMPI\0SG");

/// The layout version this build writes and accepts.
pub const LAYOUT_VERSION: u32 = 1;

/// The value of the `ready` word once the creator has finished. Any other
/// value (zero while initialising, garbage after corruption) means not ready.
pub const READY: u32 = 0x5244_5921;

/// What a segment holds. Each module that lays out a segment defines its
/// own kind; [`SegmentKind::DATA`] is a plain user segment.
///
/// # Examples
///
/// ```
/// use shmpi::segment::SegmentKind;
///
/// assert_eq!(SegmentKind::DATA.name(), "data");
/// assert_eq!(SegmentKind(77).name(), "unknown");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentKind(pub u32);

impl SegmentKind {
    /// A plain segment: the data region is the caller's.
    pub const DATA: SegmentKind = SegmentKind(1);
    /// A mailbox group (message passing on shared memory).
    pub const MAILBOX_GROUP: SegmentKind = SegmentKind(2);
    /// A node-wide shared array of a hybrid world.
    pub const NODE_ARRAY: SegmentKind = SegmentKind(3);

    /// A short human-readable name, for tools.
    pub fn name(self) -> &'static str {
        match self {
            SegmentKind::DATA => "data",
            SegmentKind::MAILBOX_GROUP => "mailbox-group",
            SegmentKind::NODE_ARRAY => "node-array",
            _ => "unknown",
        }
    }
}

/// A header that does not describe a usable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer bytes than a header.
    #[error("{len} bytes is shorter than the {HEADER_SIZE}-byte header")]
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// The magic number is wrong: not a shmpi segment, or overwritten.
    #[error("bad magic {found:#018x} (expected {MAGIC:#018x}): not a shmpi segment")]
    BadMagic {
        /// The value found.
        found: u64,
    },
    /// Made by an incompatible version of shmpi.
    #[error("layout version {found} is not supported (this build reads version {LAYOUT_VERSION})")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// The creator has not (yet) marked the segment ready.
    #[error("segment is not ready (ready word {found:#010x})")]
    NotReady {
        /// The value of the ready word.
        found: u32,
    },
    /// The segment holds something other than what the caller expects.
    #[error("segment kind {found} ({}) where kind {expected} ({}) was expected", SegmentKind(*.found).name(), SegmentKind(*.expected).name())]
    WrongKind {
        /// The kind found.
        found: u32,
        /// The kind expected.
        expected: u32,
    },
    /// The header's size disagrees with the object's real size.
    #[error("header says {header} bytes but the object has {actual}")]
    SizeMismatch {
        /// Size recorded in the header.
        header: u64,
        /// Real size of the object.
        actual: u64,
    },
    /// The data offset is not inside the segment or not 8-aligned.
    #[error("data offset {offset} is invalid for a {total}-byte segment")]
    BadDataOffset {
        /// The offset found.
        offset: u64,
        /// The total size.
        total: u64,
    },
}

/// A copy of the header's fields, taken from shared memory or bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderFields {
    /// Magic number.
    pub magic: u64,
    /// Layout version.
    pub version: u32,
    /// What the segment holds.
    pub kind: u32,
    /// Size of the whole object, header included.
    pub total_size: u64,
    /// Where the data region starts.
    pub data_offset: u64,
    /// Process id of the creator (informational: pids are reused).
    pub creator_pid: u32,
    /// The ready word.
    pub ready: u32,
    /// Creation time in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Effective uid of the creator.
    pub creator_uid: u32,
}

impl HeaderFields {
    /// Decodes the header from raw bytes (native endianness). Never panics.
    ///
    /// # Errors
    ///
    /// [`HeaderError::Truncated`] when `bytes` is shorter than [`HEADER_SIZE`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HeaderError> {
        let header = bytes
            .get(..HEADER_SIZE)
            .ok_or(HeaderError::Truncated { len: bytes.len() })?;
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[o..o + 8]);
            u64::from_ne_bytes(b)
        };
        let u32_at = |o: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&header[o..o + 4]);
            u32::from_ne_bytes(b)
        };
        Ok(HeaderFields {
            magic: u64_at(0),
            version: u32_at(8),
            kind: u32_at(12),
            total_size: u64_at(16),
            data_offset: u64_at(24),
            creator_pid: u32_at(32),
            ready: u32_at(36),
            created_unix_ms: u64_at(40),
            creator_uid: u32_at(48),
        })
    }

    /// Encodes the header as bytes (for tests and tools).
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&self.magic.to_ne_bytes());
        b[8..12].copy_from_slice(&self.version.to_ne_bytes());
        b[12..16].copy_from_slice(&self.kind.to_ne_bytes());
        b[16..24].copy_from_slice(&self.total_size.to_ne_bytes());
        b[24..32].copy_from_slice(&self.data_offset.to_ne_bytes());
        b[32..36].copy_from_slice(&self.creator_pid.to_ne_bytes());
        b[36..40].copy_from_slice(&self.ready.to_ne_bytes());
        b[40..48].copy_from_slice(&self.created_unix_ms.to_ne_bytes());
        b[48..52].copy_from_slice(&self.creator_uid.to_ne_bytes());
        b
    }

    /// True when the header looks like one still being written by its
    /// creator: not ready, and the magic either not yet written or right.
    /// Garbage in the magic is reported at once rather than waited on.
    pub fn may_become_ready(&self) -> bool {
        self.ready != READY && (self.magic == 0 || self.magic == MAGIC)
    }

    /// Checks everything an opener relies on, in order: magic, version,
    /// ready, kind (when `expected_kind` is given), size against the
    /// object's real size, data offset. Returns the data region as
    /// `(offset, len)`, guaranteed inside `actual_size`.
    ///
    /// # Errors
    ///
    /// The first [`HeaderError`] found.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmpi::segment::{HeaderError, HeaderFields, SegmentKind, HEADER_SIZE};
    ///
    /// let h = HeaderFields::new_ready(SegmentKind::DATA, 4096, 1, 0, 0);
    /// assert_eq!(h.validate(4096, Some(SegmentKind::DATA)), Ok((HEADER_SIZE, 4096 - HEADER_SIZE)));
    /// assert!(matches!(h.validate(8192, None), Err(HeaderError::SizeMismatch { .. })));
    /// ```
    pub fn validate(
        &self,
        actual_size: u64,
        expected_kind: Option<SegmentKind>,
    ) -> Result<(usize, usize), HeaderError> {
        if self.magic != MAGIC {
            return Err(HeaderError::BadMagic { found: self.magic });
        }
        if self.version != LAYOUT_VERSION {
            return Err(HeaderError::UnsupportedVersion {
                found: self.version,
            });
        }
        if self.ready != READY {
            return Err(HeaderError::NotReady { found: self.ready });
        }
        if let Some(expected) = expected_kind {
            if self.kind != expected.0 {
                return Err(HeaderError::WrongKind {
                    found: self.kind,
                    expected: expected.0,
                });
            }
        }
        if self.total_size != actual_size {
            return Err(HeaderError::SizeMismatch {
                header: self.total_size,
                actual: actual_size,
            });
        }
        let bad_offset = HeaderError::BadDataOffset {
            offset: self.data_offset,
            total: self.total_size,
        };
        if self.data_offset < HEADER_SIZE as u64
            || !self.data_offset.is_multiple_of(8)
            || self.data_offset > self.total_size
        {
            return Err(bad_offset);
        }
        let offset = usize::try_from(self.data_offset).map_err(|_| bad_offset)?;
        let len = usize::try_from(self.total_size - self.data_offset).map_err(|_| bad_offset)?;
        Ok((offset, len))
    }

    /// The header a creator writes for a finished segment.
    pub fn new_ready(
        kind: SegmentKind,
        total_size: u64,
        creator_pid: u32,
        creator_uid: u32,
        created_unix_ms: u64,
    ) -> Self {
        HeaderFields {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            kind: kind.0,
            total_size,
            data_offset: HEADER_SIZE as u64,
            creator_pid,
            ready: READY,
            created_unix_ms,
            creator_uid,
        }
    }
}

/// The header as it lives in shared memory: atomics only.
#[repr(C)]
pub(crate) struct RawHeader {
    magic: AtomicU64,
    version: AtomicU32,
    kind: AtomicU32,
    total_size: AtomicU64,
    data_offset: AtomicU64,
    creator_pid: AtomicU32,
    ready: AtomicU32,
    created_unix_ms: AtomicU64,
    creator_uid: AtomicU32,
    _reserved: [AtomicU32; 19],
}

const _: () = assert!(std::mem::size_of::<RawHeader>() == HEADER_SIZE);

impl RawHeader {
    /// Reads every field; `ready` first, with acquire ordering, so that a
    /// header seen as ready is seen whole.
    pub(crate) fn snapshot(&self) -> HeaderFields {
        let ready = self.ready.load(Ordering::Acquire);
        HeaderFields {
            magic: self.magic.load(Ordering::Relaxed),
            version: self.version.load(Ordering::Relaxed),
            kind: self.kind.load(Ordering::Relaxed),
            total_size: self.total_size.load(Ordering::Relaxed),
            data_offset: self.data_offset.load(Ordering::Relaxed),
            creator_pid: self.creator_pid.load(Ordering::Relaxed),
            ready,
            created_unix_ms: self.created_unix_ms.load(Ordering::Relaxed),
            creator_uid: self.creator_uid.load(Ordering::Relaxed),
        }
    }

    /// Writes every field but `ready`; [`set_ready`](Self::set_ready)
    /// publishes them.
    pub(crate) fn write_fields(&self, h: &HeaderFields) {
        self.magic.store(h.magic, Ordering::Relaxed);
        self.version.store(h.version, Ordering::Relaxed);
        self.kind.store(h.kind, Ordering::Relaxed);
        self.total_size.store(h.total_size, Ordering::Relaxed);
        self.data_offset.store(h.data_offset, Ordering::Relaxed);
        self.creator_pid.store(h.creator_pid, Ordering::Relaxed);
        self.created_unix_ms
            .store(h.created_unix_ms, Ordering::Relaxed);
        self.creator_uid.store(h.creator_uid, Ordering::Relaxed);
    }

    /// Marks the segment ready (release: everything written before is
    /// visible to an opener that sees it).
    pub(crate) fn set_ready(&self) {
        self.ready.store(READY, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn good() -> HeaderFields {
        HeaderFields::new_ready(SegmentKind::DATA, 1 << 20, 42, 1000, 7)
    }

    #[test]
    fn round_trips_through_bytes() {
        let h = good();
        assert_eq!(HeaderFields::from_bytes(&h.to_bytes()), Ok(h));
    }

    #[test]
    fn each_defect_has_its_own_error() {
        let size = 1 << 20;
        assert!(good().validate(size, Some(SegmentKind::DATA)).is_ok());
        let cases: [(HeaderFields, HeaderError); 6] = [
            (
                HeaderFields { magic: 1, ..good() },
                HeaderError::BadMagic { found: 1 },
            ),
            (
                HeaderFields {
                    version: 9,
                    ..good()
                },
                HeaderError::UnsupportedVersion { found: 9 },
            ),
            (
                HeaderFields { ready: 0, ..good() },
                HeaderError::NotReady { found: 0 },
            ),
            (
                HeaderFields { kind: 2, ..good() },
                HeaderError::WrongKind {
                    found: 2,
                    expected: 1,
                },
            ),
            (
                HeaderFields {
                    total_size: 5,
                    ..good()
                },
                HeaderError::SizeMismatch {
                    header: 5,
                    actual: size,
                },
            ),
            (
                HeaderFields {
                    data_offset: size + 8,
                    ..good()
                },
                HeaderError::BadDataOffset {
                    offset: size + 8,
                    total: size,
                },
            ),
        ];
        for (h, want) in cases {
            assert_eq!(h.validate(size, Some(SegmentKind::DATA)), Err(want));
        }
        assert_eq!(
            HeaderFields::from_bytes(&[0; 10]),
            Err(HeaderError::Truncated { len: 10 })
        );
    }

    proptest! {
        /// Arbitrary bytes never panic, and an accepted header always yields
        /// a data region inside the object.
        #[test]
        fn validation_of_arbitrary_bytes_is_total(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            actual in any::<u64>(),
        ) {
            if let Ok(h) = HeaderFields::from_bytes(&bytes) {
                if let Ok((off, len)) = h.validate(actual, None) {
                    prop_assert!(off >= HEADER_SIZE);
                    prop_assert!((off as u64).checked_add(len as u64) == Some(actual));
                }
            }
        }

        /// Valid headers with a random size and offset validate exactly when
        /// the offset is in range.
        #[test]
        fn offset_rule(total in HEADER_SIZE as u64..u64::MAX, off in any::<u64>()) {
            let h = HeaderFields { total_size: total, data_offset: off, ..good() };
            let ok = h.validate(total, None).is_ok();
            prop_assert_eq!(ok, off >= HEADER_SIZE as u64 && off % 8 == 0 && off <= total);
        }
    }
}
