//! Computing in place on shared memory across processes: borrows of an
//! array (`&[T]` to read, `&mut [T]` to write) that last one epoch, which
//! a barrier ends. The only promise the caller makes (`unsafe`) is about
//! the other parties: in an epoch, none writes a range you borrow, and
//! none touches the range you write. Debug builds check that promise with
//! a claim side table in the shared memory ([`crate::sync::claims`]).
//!
//! [`EpochArray`] is the segment's form; node arrays
//! (`hybrid::NodeArray::epoch`, feature `mpi`) share the borrow below.

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

use bytemuck::Pod;

use super::{Segment, SharedSlice};
use crate::sync::claims::{self, ClaimTable};
use crate::sync::Barrier;
use crate::sync::SyncError;

/// Checks `read` and `write` against an array of `len` elements at
/// `base`, records the claim in `claims` for `epoch` (debug builds) and
/// makes the borrows.
///
/// # Safety
///
/// `base` points to `len` initialised, aligned `T` that stay mapped for
/// `'b`; nothing in this process touches them while the borrows live (the
/// caller ties them to `&mut` of its epoch); no other party writes `read`
/// or touches `write` until the epoch ends.
pub(crate) unsafe fn borrow<'b, T: Pod>(
    base: *mut T,
    len: usize,
    (read, write): (Range<usize>, Range<usize>),
    (claims, epoch): (ClaimTable, u64),
) -> Result<(&'b [T], &'b mut [T]), SyncError> {
    let valid = |r: &Range<usize>| r.start <= r.end && r.end <= len;
    if !valid(&read) || !valid(&write) {
        return Err(SyncError::InvalidArgument("a borrow outside the array"));
    }
    if !read.is_empty() && !write.is_empty() && read.start < write.end && write.start < read.end {
        return Err(SyncError::InvalidArgument(
            "a borrow that reads and writes the same elements",
        ));
    }
    if cfg!(debug_assertions) {
        claims.claim(epoch, &read, &write)?;
    }
    // SAFETY: both ranges lie inside the array (checked) and do not
    // overlap each other (checked); the rest is the caller's contract.
    unsafe {
        Ok((
            std::slice::from_raw_parts(base.add(read.start), read.len()),
            std::slice::from_raw_parts_mut(base.add(write.start), write.len()),
        ))
    }
}

/// A barrier read from shared memory must have the party count its
/// creator gave it: another process may have scribbled on it.
pub(crate) fn check_parties(barrier: &Barrier<'_>, parties: usize) -> Result<(), SyncError> {
    if barrier.parties() as usize == parties {
        Ok(())
    } else {
        Err(SyncError::Mismatch {
            what: "array barrier parties",
            found: barrier.parties().into(),
            expected: parties as u64,
        })
    }
}

/// `len` elements of `T` in a segment that `parties` processes (or
/// threads) compute on in place, in epochs that the array's barrier
/// ends. Layout at its offset: a barrier, the claim table, the elements
/// (on a cache line).
///
/// # Examples
///
/// Two parties (threads here; processes that open the same segment work
/// the same), each writing its half, then both reading the whole:
///
/// ```
/// use shmpi::segment::{EpochArray, Segment, SegmentName};
///
/// let seg = Segment::create(&SegmentName::unique("doc-epochs"), EpochArray::<u32>::size_for(100, 2))?;
/// EpochArray::<u32>::create_in(&seg, 0, 100, 2, 0)?;
/// std::thread::scope(|s| {
///     for party in 0..2 {
///         let seg = &seg;
///         s.spawn(move || -> shmpi::Result<()> {
///             let mut a = EpochArray::<u32>::open_in(seg, 0, 100, 2, party)?;
///             let mine = a.part();
///             let mut epoch = a.epoch();
///             // SAFETY: each party writes only its own part.
///             let (_, out) = unsafe { epoch.borrow(0..0, mine.clone())? };
///             out.iter_mut().zip(mine).for_each(|(v, i)| *v = i as u32);
///             let mut epoch = epoch.next()?;        // barrier: writes visible
///             // SAFETY: nobody writes in this epoch.
///             let (all, _) = unsafe { epoch.borrow(0..100, 0..0)? };
///             assert_eq!(all.iter().sum::<u32>(), 99 * 100 / 2);
///             epoch.next()?;
///             Ok(())
///         });
///     }
/// });
/// # Ok::<(), shmpi::Error>(())
/// ```
pub struct EpochArray<'s, T: Pod> {
    segment: &'s Segment,
    offset: usize,
    len: usize,
    party: usize,
    parties: usize,
    epoch: u64,
    _t: PhantomData<T>,
}

impl<'s, T: Pod> EpochArray<'s, T> {
    /// Bytes of the elements' start after the array's offset.
    fn data_at(parties: usize) -> usize {
        (Barrier::SIZE + claims::table_bytes(parties)).next_multiple_of(64)
    }

    /// Bytes an array of `len` elements for `parties` parties takes in a
    /// segment (place it at a multiple of 64).
    pub fn size_for(len: usize, parties: usize) -> usize {
        Self::data_at(parties) + len.saturating_mul(std::mem::size_of::<T>())
    }

    /// Creates the array at byte `offset` of `segment` (its barrier, an
    /// empty claim table; the elements are left as they are) and opens it
    /// as party `party`. One party creates it; the others
    /// [`open_in`](Self::open_in) it after.
    ///
    /// # Errors
    ///
    /// [`SyncError::Placement`] when it does not fit or `offset` is not a
    /// multiple of 64; [`SyncError::InvalidArgument`] for zero parties or
    /// `party >= parties`.
    pub fn create_in(
        segment: &'s Segment,
        offset: usize,
        len: usize,
        parties: usize,
        party: usize,
    ) -> Result<Self, SyncError> {
        let count = u32::try_from(parties)
            .map_err(|_| SyncError::InvalidArgument("more than 2^32 parties"))?;
        let array = Self::place(segment, offset, len, parties, party)?;
        Barrier::create_in(segment, offset, count)?;
        let table = segment.place(
            "claim table",
            offset + Barrier::SIZE,
            claims::table_bytes(parties),
            8,
        )?;
        // SAFETY: `place` checked the table's bytes lie inside the mapping.
        unsafe { std::ptr::write_bytes(table.as_ptr(), 0, claims::table_bytes(parties)) };
        Ok(array)
    }

    /// Opens the array created at `offset` as party `party`.
    ///
    /// # Errors
    ///
    /// As [`create_in`](Self::create_in); [`SyncError::NotInitialised`]
    /// when no array was created there; [`SyncError::Mismatch`] when its
    /// barrier has another party count.
    pub fn open_in(
        segment: &'s Segment,
        offset: usize,
        len: usize,
        parties: usize,
        party: usize,
    ) -> Result<Self, SyncError> {
        check_parties(&Barrier::open_in(segment, offset)?, parties)?;
        Self::place(segment, offset, len, parties, party)
    }

    fn place(
        segment: &'s Segment,
        offset: usize,
        len: usize,
        parties: usize,
        party: usize,
    ) -> Result<Self, SyncError> {
        if parties == 0 || party >= parties {
            return Err(SyncError::InvalidArgument(
                "an epoch array needs parties > 0 and party < parties",
            ));
        }
        let size = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or(SyncError::InvalidArgument("an array larger than memory"))?;
        segment.place(
            "epoch array",
            offset,
            Self::data_at(parties) + size,
            64.max(std::mem::align_of::<T>()),
        )?;
        Ok(EpochArray {
            segment,
            offset,
            len,
            party,
            parties,
            epoch: 0,
            _t: PhantomData,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty array.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// This party's even share of the elements ([`crate::partition::split_range`]).
    pub fn part(&self) -> Range<usize> {
        crate::partition::split_range(self.len, self.parties, self.party)
    }

    fn base(&self) -> *mut T {
        self.segment
            .as_ptr()
            .wrapping_add(self.offset + Self::data_at(self.parties))
            .cast()
    }

    /// A copy-in/copy-out view (no promise needed: for untrusted peers).
    pub fn view(&self) -> SharedSlice<'_, T> {
        let ptr = std::ptr::NonNull::new(self.base()).expect("mapped");
        // SAFETY: the elements lie inside the mapping, aligned (checked by
        // `place`), alive as long as the segment borrowed for 's.
        unsafe { SharedSlice::from_raw(ptr, self.len) }
    }

    /// The current epoch: borrows of the array until the next barrier.
    pub fn epoch(&mut self) -> SegmentEpoch<'_, 's, T> {
        SegmentEpoch { array: self }
    }

    fn claims(&self) -> ClaimTable {
        let at = self
            .segment
            .as_ptr()
            .wrapping_add(self.offset + Barrier::SIZE);
        // SAFETY: the table's bytes were checked to lie inside the mapping
        // (by `place`: it precedes the data), 64-byte aligned.
        unsafe {
            ClaimTable::new(
                std::ptr::NonNull::new(at).expect("mapped"),
                self.parties,
                self.party,
            )
        }
    }
}

impl<T: Pod> std::fmt::Debug for EpochArray<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochArray")
            .field("len", &self.len)
            .field("party", &self.party)
            .field("parties", &self.parties)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// One epoch of an [`EpochArray`]: borrows that end at the next barrier,
/// which [`next`](Self::next) consumes the epoch to pass.
#[derive(Debug)]
pub struct SegmentEpoch<'a, 's, T: Pod> {
    array: &'a mut EpochArray<'s, T>,
}

impl<'a, 's, T: Pod> SegmentEpoch<'a, 's, T> {
    /// The epoch's number: barriers of this array passed by this party.
    pub fn number(&self) -> u64 {
        self.array.epoch
    }

    /// Borrows elements `read` to read and `write` to write for this epoch
    /// (they must not overlap; either may be empty).
    ///
    /// # Safety
    ///
    /// In this epoch no other party writes `read`, and no other party
    /// reads or writes `write`.
    ///
    /// # Errors
    ///
    /// [`SyncError::InvalidArgument`] for a range outside the array or
    /// overlapping ranges; [`SyncError::OverlappingClaim`] (debug builds).
    pub unsafe fn borrow(
        &mut self,
        read: Range<usize>,
        write: Range<usize>,
    ) -> Result<(&[T], &mut [T]), SyncError> {
        let a = &*self.array;
        // SAFETY: the array's elements are mapped and aligned (checked at
        // placement); `&mut self` keeps this process from another borrow
        // while these live; the caller promises the rest.
        unsafe { borrow(a.base(), a.len, (read, write), (a.claims(), a.epoch)) }
    }

    /// Ends the epoch at the array's barrier and returns the next one;
    /// debug builds then check this party's claims against the others'.
    ///
    /// # Errors
    ///
    /// The barrier's; [`SyncError::OverlappingClaim`] (debug builds).
    pub fn next(self) -> Result<SegmentEpoch<'a, 's, T>, SyncError> {
        self.next_until(None)
    }

    /// [`next`](Self::next) giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Timeout`], or as [`next`](Self::next).
    pub fn next_timeout(self, timeout: Duration) -> Result<SegmentEpoch<'a, 's, T>, SyncError> {
        self.next_until(Some(timeout))
    }

    fn next_until(self, timeout: Option<Duration>) -> Result<SegmentEpoch<'a, 's, T>, SyncError> {
        let barrier = Barrier::open_in(self.array.segment, self.array.offset)?;
        check_parties(&barrier, self.array.parties)?;
        fence(Ordering::SeqCst);
        match timeout {
            Some(t) => barrier.wait_timeout(t)?,
            None => barrier.wait()?,
        };
        fence(Ordering::SeqCst);
        let ended = self.array.epoch;
        self.array.epoch += 1;
        if cfg!(debug_assertions) {
            self.array.claims().check(ended)?;
        }
        Ok(self)
    }
}
