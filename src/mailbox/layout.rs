//! Where everything of a mailbox group lies in its segment, and the
//! validation of what another process wrote there.
//!
//! Memory grows with the number of members N, not N²: each member owns an
//! outgoing payload **pool** of fragments, and each ordered pair has only a
//! small descriptor **lane** (a ring of a few KiB). A small message travels
//! inline in the lane; a larger one (or a zero-copy loan) is written into a
//! fragment of the sender's pool and announced by a descriptor in the lane;
//! the receiver reads it from the sender's pool and hands the fragment back.
//!
//! Data region of a group segment (all offsets 64-byte aligned):
//!
//! | offset | size | what |
//! |---|---|---|
//! | 0 | 128 | group header: magic, version, members, flags, lane bytes, granularity, joined/left counts, fragments per member, fragment bytes |
//! | 128 | 128 × N | member blocks: doorbell (a futex sequence word), sleeping flag, state, pid, incarnation, counters, fragments in use |
//! | 128 + 128N | (128 + L) × N(N−1) | lanes, one per ordered pair (none from a member to itself): a control block (consumer line: head, receiver sleeps; producer line: tail, messages, bytes, sender sleeps), then L lane bytes |
//! | P₀ (4 KiB aligned) | F × S × N | pools: member i's F fragments of S bytes at P₀ + i·F·S |
//!
//! With the defaults (L = 2 KiB, S = 128 KiB, F = 24) a group reserves
//! 3 MiB + (N − 1) × 2.1 KiB per member: 438 MB for 128 members, 947 MB
//! for 256 (the N × N(N−1) matrix of 256 KiB rings it replaces: 4.3 GB and
//! 17 GB). Everything is reserved when the segment is created
//! (`posix_fallocate`), so a full `/dev/shm` is an error then, never a
//! `SIGBUS` later.
//!
//! The parameters are checked by [`GroupParams::validate`], a pure
//! function (unit-tested, property-tested and fuzzed): a joiner never
//! computes an address from a value it has not bounded.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use super::ring::{Geometry, GeometryError, RingMemory};

/// Largest number of fragments in a member's pool.
pub const MAX_FRAGMENTS: usize = 512;
/// Smallest and largest fragment.
pub const FRAGMENT_RANGE: std::ops::RangeInclusive<usize> = 1024..=(256 << 20);

/// Magic of a group header: `MBG1`.
pub const GROUP_MAGIC: u32 = u32::from_le_bytes(*b"MBG1");
/// Version of this layout (2: futex doorbells; 3: lanes and pools).
pub const GROUP_VERSION: u32 = 3;
/// Bytes of the group header.
pub const GROUP_HEADER: usize = 128;
/// Bytes of one member block.
pub const MEMBER_BLOCK: usize = 128;
/// Bytes of a lane's control block.
pub const RING_CONTROL: usize = 128;
/// Alignment of the pools.
pub const POOL_ALIGN: usize = 4096;
/// Largest group.
pub const MAX_MEMBERS: usize = 1024;

/// Group flag: unlink the name once every member has joined.
pub const FLAG_EPHEMERAL: u32 = 1;
/// Group flag: the members ring with the asymmetric doorbell protocol —
/// plain loads on sends, `membarrier(2)` before a sleep (see
/// `mailbox::wake`); chosen by the creator.
pub const FLAG_MEMBARRIER: u32 = 2;

/// The group header as it lives in shared memory.
#[repr(C)]
pub(crate) struct GroupHeader {
    pub magic: AtomicU32,
    pub version: AtomicU32,
    pub members: AtomicU32,
    pub flags: AtomicU32,
    pub capacity: AtomicU64,
    pub granularity: AtomicU32,
    pub joined: AtomicU32,
    pub left: AtomicU32,
    pub fragments: AtomicU32,
    pub fragment: AtomicU64,
    _reserved: [AtomicU32; 20],
}

const _: () = assert!(std::mem::size_of::<GroupHeader>() == GROUP_HEADER);

/// Member states.
pub(crate) mod state {
    /// Never joined.
    pub const VACANT: u32 = 0;
    /// Joined (alive while its liveness lock is held).
    pub const JOINED: u32 = 1;
    /// Left in an orderly way.
    pub const LEFT: u32 = 2;
}

/// One member's block. Every field is an atomic whose every value is
/// valid: a scribbled word can mislead a member, never crash it.
#[repr(C, align(64))]
pub(crate) struct MemberBlock {
    /// The doorbell: a futex sequence word a waker increments
    /// (see [`super::wake`]).
    pub doorbell: AtomicU32,
    /// Set while this member sleeps (or is about to) on its doorbell.
    pub sleeping: AtomicU32,
    pub state: AtomicU32,
    pub pid: AtomicU32,
    pub incarnation: AtomicU32,
    _pad: AtomicU32,
    pub recv_sleeps: AtomicU64,
    /// Waits that found work only after a whole unrung sleep (see
    /// `MailboxGroup::lost_wakeups`); written by this member.
    pub lost_wakeups: AtomicU64,
    /// How this member rings its peers: 1 with a plain load (its process
    /// takes the sleepers' `membarrier`), 2 with a swap; 0 before it
    /// joined. For reports only: every sleeper runs the barrier wherever
    /// the kernel has it.
    pub doorbell_mode: AtomicU32,
    _pad_mode: AtomicU32,
    _reserved: [AtomicU64; 2],
    // Second cache line: written by this member alone and read by tools,
    // away from the flags its peers update on every message.
    /// Fragments of this member's pool in use (written by the member, for
    /// reports; the free list itself is the member's own memory).
    pub pool_in_use: AtomicU64,
    _reserved_too: [AtomicU64; 7],
}

const _: () = assert!(std::mem::size_of::<MemberBlock>() == MEMBER_BLOCK);

/// A ring's control block: one cache line per writer.
#[repr(C, align(64))]
pub(crate) struct RingControl {
    // Written by the consumer.
    pub head: AtomicU64,
    pub recv_sleeps: AtomicU64,
    _consumer_pad: [AtomicU64; 6],
    // Written by the producer.
    pub tail: AtomicU64,
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub send_sleeps: AtomicU64,
    _producer_pad: [AtomicU64; 4],
}

const _: () = assert!(std::mem::size_of::<RingControl>() == RING_CONTROL);

/// A group's parameters, as chosen at creation or read from a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupParams {
    /// Number of members.
    pub members: usize,
    /// Bytes of each lane (the descriptor ring of one ordered pair).
    pub lane: usize,
    /// Record granularity of the lanes, in bytes.
    pub granularity: usize,
    /// Bytes of one pool fragment: the largest zero-copy loan and the
    /// chunk of a streamed message.
    pub fragment: usize,
    /// Fragments in each member's pool.
    pub fragments: usize,
    /// `FLAG_*` bits.
    pub flags: u32,
}

/// The validated layout of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLayout {
    /// The parameters.
    pub params: GroupParams,
    /// Lane geometry.
    pub geometry: Geometry,
    /// Offset of the first lane block.
    pub rings_offset: usize,
    /// Bytes from one lane block to the next.
    pub ring_stride: usize,
    /// Offset of the first pool.
    pub pools_offset: usize,
    /// Bytes of one member's pool.
    pub pool_bytes: usize,
    /// Bytes the whole group needs.
    pub total: usize,
}

/// What is wrong with a group's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Not a mailbox group header.
    #[error("not a mailbox group (magic {found:#010x})")]
    BadMagic {
        /// The magic found.
        found: u32,
    },
    /// Another layout version.
    #[error(
        "mailbox group layout version {found} is not supported (this build reads {GROUP_VERSION})"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// Member count out of range.
    #[error("a group has 1 to {MAX_MEMBERS} members, not {0}")]
    Members(usize),
    /// Unknown flags.
    #[error("unknown group flags {0:#x}")]
    Flags(u32),
    /// Lane bytes or granularity out of range.
    #[error("lane: {0}")]
    Geometry(GeometryError),
    /// Fragment bytes out of range.
    #[error("pool fragment of {0} bytes: a fragment is a power of two from 1 KiB to 256 MiB, larger than half a lane")]
    Fragment(usize),
    /// Fragment count out of range.
    #[error("a pool has 1 to {MAX_FRAGMENTS} fragments, not {0}")]
    Fragments(usize),
    /// The layout does not fit the segment (or the address space).
    #[error("the group needs {needed} bytes but the segment has {available}")]
    TooSmall {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
}

impl GroupParams {
    /// Reads the parameters from the first bytes of a group header
    /// (native endianness) and checks magic and version. Never panics.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] for a short buffer, bad magic or version.
    pub fn from_bytes(bytes: &[u8]) -> Result<GroupParams, LayoutError> {
        let h = bytes.get(..GROUP_HEADER).ok_or(LayoutError::TooSmall {
            needed: GROUP_HEADER as u64,
            available: bytes.len() as u64,
        })?;
        let u32_at = |o: usize| u32::from_ne_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        Self::from_fields(HeaderWords {
            magic: u32_at(0),
            version: u32_at(4),
            members: u32_at(8),
            flags: u32_at(12),
            lane: u64_at(16),
            granularity: u32_at(24),
            fragments: u32_at(36),
            fragment: u64_at(40),
        })
    }

    pub(crate) fn read(h: &GroupHeader) -> Result<GroupParams, LayoutError> {
        use std::sync::atomic::Ordering::Relaxed;
        Self::from_fields(HeaderWords {
            magic: h.magic.load(Relaxed),
            version: h.version.load(Relaxed),
            members: h.members.load(Relaxed),
            flags: h.flags.load(Relaxed),
            lane: h.capacity.load(Relaxed),
            granularity: h.granularity.load(Relaxed),
            fragments: h.fragments.load(Relaxed),
            fragment: h.fragment.load(Relaxed),
        })
    }

    fn from_fields(w: HeaderWords) -> Result<GroupParams, LayoutError> {
        if w.magic != GROUP_MAGIC {
            return Err(LayoutError::BadMagic { found: w.magic });
        }
        if w.version != GROUP_VERSION {
            return Err(LayoutError::UnsupportedVersion { found: w.version });
        }
        Ok(GroupParams {
            members: w.members as usize,
            lane: usize::try_from(w.lane).unwrap_or(usize::MAX),
            granularity: w.granularity as usize,
            fragment: usize::try_from(w.fragment).unwrap_or(usize::MAX),
            fragments: w.fragments as usize,
            flags: w.flags,
        })
    }

    pub(crate) fn write(&self, h: &GroupHeader) {
        use std::sync::atomic::Ordering::Relaxed;
        h.magic.store(GROUP_MAGIC, Relaxed);
        h.version.store(GROUP_VERSION, Relaxed);
        h.members.store(self.members as u32, Relaxed);
        h.flags.store(self.flags, Relaxed);
        h.capacity.store(self.lane as u64, Relaxed);
        h.granularity.store(self.granularity as u32, Relaxed);
        h.fragments.store(self.fragments as u32, Relaxed);
        h.fragment.store(self.fragment as u64, Relaxed);
        h.joined.store(0, Relaxed);
        h.left.store(0, Relaxed);
    }

    /// Checks the parameters and computes the layout; with `segment_len`,
    /// also checks that it fits.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] naming the first violated rule.
    pub fn validate(&self, segment_len: Option<usize>) -> Result<GroupLayout, LayoutError> {
        if !(1..=MAX_MEMBERS).contains(&self.members) {
            return Err(LayoutError::Members(self.members));
        }
        if self.flags & !(FLAG_EPHEMERAL | FLAG_MEMBARRIER) != 0 {
            return Err(LayoutError::Flags(self.flags));
        }
        let geometry = Geometry::new(self.lane, self.granularity).map_err(LayoutError::Geometry)?;
        if !self.fragment.is_power_of_two()
            || !FRAGMENT_RANGE.contains(&self.fragment)
            || self.fragment <= geometry.max_payload()
        {
            return Err(LayoutError::Fragment(self.fragment));
        }
        if !(1..=MAX_FRAGMENTS).contains(&self.fragments) {
            return Err(LayoutError::Fragments(self.fragments));
        }
        // Every factor is bounded above (1024 members, 256 MiB lanes and
        // fragments, 512 fragments): u64 cannot overflow.
        let n = self.members as u64;
        let rings_offset = GROUP_HEADER as u64 + n * MEMBER_BLOCK as u64;
        let ring_stride = RING_CONTROL as u64 + self.lane as u64;
        let rings_end = rings_offset + n * (n - 1) * ring_stride;
        let pools_offset = rings_end.next_multiple_of(POOL_ALIGN as u64);
        let pool_bytes = self.fragment as u64 * self.fragments as u64;
        let total = pools_offset + n * pool_bytes;
        let available = segment_len.map_or(isize::MAX as u64, |l| l as u64);
        if total > available.min(isize::MAX as u64) {
            return Err(LayoutError::TooSmall {
                needed: total,
                available,
            });
        }
        Ok(GroupLayout {
            params: *self,
            geometry,
            rings_offset: rings_offset as usize,
            ring_stride: ring_stride as usize,
            pools_offset: pools_offset as usize,
            pool_bytes: pool_bytes as usize,
            total: total as usize,
        })
    }
}

/// The header words [`GroupParams`] are read from.
struct HeaderWords {
    magic: u32,
    version: u32,
    members: u32,
    flags: u32,
    lane: u64,
    granularity: u32,
    fragments: u32,
    fragment: u64,
}

impl GroupLayout {
    /// Offset of member `id`'s block.
    pub fn member_offset(&self, id: usize) -> usize {
        debug_assert!(id < self.params.members);
        GROUP_HEADER + id * MEMBER_BLOCK
    }

    /// Offset of the lane carrying messages from `src` to `dst` (`src != dst`).
    pub fn ring_offset(&self, src: usize, dst: usize) -> usize {
        let n = self.params.members;
        debug_assert!(src < n && dst < n && src != dst);
        let index = src * (n - 1) + dst - usize::from(dst > src);
        self.rings_offset + index * self.ring_stride
    }

    /// Offset of member `id`'s pool.
    pub fn pool_offset(&self, id: usize) -> usize {
        debug_assert!(id < self.params.members);
        self.pools_offset + id * self.pool_bytes
    }

    /// Bytes one member reserves: its pool and its outgoing lanes (with
    /// their share of the header and member blocks).
    pub fn bytes_per_member(&self) -> usize {
        self.total / self.params.members
    }
}

/// A ring inside a mapped group segment.
pub(crate) struct ShmRing {
    control: NonNull<RingControl>,
    geometry: Geometry,
}

impl ShmRing {
    /// # Safety
    ///
    /// `control` must point to a ring block of a mapping that outlives the
    /// returned value: RING_CONTROL bytes followed by `geometry.capacity()`
    /// ring bytes, 64-byte aligned.
    pub(crate) unsafe fn new(control: NonNull<u8>, geometry: Geometry) -> ShmRing {
        ShmRing {
            control: control.cast(),
            geometry,
        }
    }

    #[inline]
    pub(crate) fn control(&self) -> &RingControl {
        // SAFETY: constructor contract; RingControl is atomics only.
        unsafe { self.control.as_ref() }
    }
}

// SAFETY: `bytes()` is the `capacity` bytes after the control block (the
// constructor's contract), and `stamp(o)` the aligned 8-byte word at byte o
// of them, viewed as an atomic.
unsafe impl RingMemory for ShmRing {
    type Word = AtomicU64;
    #[inline]
    fn geometry(&self) -> Geometry {
        self.geometry
    }
    #[inline]
    fn head(&self) -> &AtomicU64 {
        &self.control().head
    }
    #[inline]
    fn tail(&self) -> &AtomicU64 {
        &self.control().tail
    }
    #[inline]
    fn stamp(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(
            offset.is_multiple_of(self.geometry.granularity()) && offset < self.geometry.capacity()
        );
        // SAFETY: offset < capacity and 16-aligned, the ring is 64-aligned:
        // an aligned word inside the mapping; atomics accept any bits.
        unsafe { &*self.bytes().add(offset).cast::<AtomicU64>() }
    }
    #[inline]
    fn bytes(&self) -> *mut u8 {
        // SAFETY: the ring bytes follow the control block (contract).
        unsafe { self.control.as_ptr().cast::<u8>().add(RING_CONTROL) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(members: usize) -> GroupParams {
        GroupParams {
            members,
            lane: 2048,
            granularity: 64,
            fragment: 1 << 17,
            fragments: 24,
            flags: 0,
        }
    }

    #[test]
    fn lanes_and_pools_do_not_overlap_and_fit() {
        for n in 1..=6 {
            let l = params(n).validate(None).unwrap();
            let mut blocks: Vec<(usize, usize)> = (0..n)
                .flat_map(|s| (0..n).filter(move |&d| d != s).map(move |d| (s, d)))
                .map(|(s, d)| (l.ring_offset(s, d), l.ring_stride))
                .chain((0..n).map(|i| (l.pool_offset(i), l.pool_bytes)))
                .collect();
            blocks.sort_unstable();
            for pair in blocks.windows(2) {
                assert!(pair[0].0 + pair[0].1 <= pair[1].0, "{pair:?} overlap");
            }
            let (last, len) = blocks[blocks.len() - 1];
            assert_eq!(last + len, l.total);
            assert!(l.member_offset(n - 1) + MEMBER_BLOCK <= l.rings_offset);
            assert_eq!(l.pools_offset % POOL_ALIGN, 0);
        }
    }

    #[test]
    fn memory_grows_with_n_not_n_squared() {
        let total = |n| params(n).validate(None).unwrap().total as f64;
        assert!(total(128) <= 512.0 * 1048576.0, "{}", total(128));
        assert!(total(256) <= 1024.0 * 1048576.0, "{}", total(256));
        assert!(total(256) / total(128) <= 2.2);
    }

    #[test]
    fn bad_parameters_are_named() {
        assert_eq!(params(0).validate(None), Err(LayoutError::Members(0)));
        assert_eq!(params(5000).validate(None), Err(LayoutError::Members(5000)));
        assert!(matches!(
            GroupParams {
                lane: 1000,
                ..params(2)
            }
            .validate(None),
            Err(LayoutError::Geometry(_))
        ));
        assert_eq!(
            GroupParams {
                fragment: 1000,
                ..params(2)
            }
            .validate(None),
            Err(LayoutError::Fragment(1000))
        );
        assert_eq!(
            GroupParams {
                fragments: 0,
                ..params(2)
            }
            .validate(None),
            Err(LayoutError::Fragments(0))
        );
        assert!(matches!(
            GroupParams {
                flags: 8,
                ..params(2)
            }
            .validate(None),
            Err(LayoutError::Flags(8))
        ));
        assert!(matches!(
            params(4).validate(Some(4096)),
            Err(LayoutError::TooSmall { .. })
        ));
        assert!(matches!(
            GroupParams::from_bytes(&[0; 128]),
            Err(LayoutError::BadMagic { found: 0 })
        ));
    }

    proptest! {
        /// Any header bytes and segment size: no panic, and an accepted
        /// layout fits the segment.
        #[test]
        fn arbitrary_headers_validate_or_fail_cleanly(
            mut bytes in proptest::collection::vec(any::<u8>(), 128),
            members in any::<u32>(),
            lane in any::<u64>(),
            granularity in any::<u32>(),
            fragment in any::<u64>(),
            fragments in any::<u32>(),
            len in any::<usize>(),
        ) {
            bytes[0..4].copy_from_slice(&GROUP_MAGIC.to_ne_bytes());
            bytes[4..8].copy_from_slice(&GROUP_VERSION.to_ne_bytes());
            bytes[8..12].copy_from_slice(&(members % 2048).to_ne_bytes());
            bytes[16..24].copy_from_slice(&(1u64 << (lane % 40)).to_ne_bytes());
            bytes[24..28].copy_from_slice(&(1u32 << (granularity % 16)).to_ne_bytes());
            bytes[36..40].copy_from_slice(&(fragments % 600).to_ne_bytes());
            bytes[40..48].copy_from_slice(&(1u64 << (fragment % 40)).to_ne_bytes());
            if let Ok(p) = GroupParams::from_bytes(&bytes) {
                if let Ok(l) = p.validate(Some(len)) {
                    prop_assert!(l.total <= len);
                    let n = l.params.members;
                    if n > 1 {
                        prop_assert!(l.ring_offset(n - 1, n - 2) + l.ring_stride <= len);
                    }
                    prop_assert!(l.pool_offset(n - 1) + l.pool_bytes <= len);
                }
            }
        }
    }
}
