//! A team's phased double buffer: threads compute in place, kept apart by
//! the borrow checker and the team barrier.
//!
//! # Why it is sound
//!
//! In the phase that follows barrier round `g`, every view of the team's
//! buffers is either a shared borrow of buffer `g mod 2` (the whole of it)
//! or an exclusive borrow of one member's part of buffer `(g + 1) mod 2`,
//! and the parts are disjoint by construction ([`BufferSplit::part`]). So
//! within a phase no element is written while another view sees it.
//!
//! Views borrow their [`Phase`]; the only way to the next phase is
//! [`Phase::next`], which takes the phase by value — so a member's views
//! are gone before it arrives at the barrier — and a member holding a
//! phase can neither take a second one nor arrive at a plain barrier
//! ([`SyncError::PhaseOpen`]). A [`TeamMember`] is not `Sync`, so each
//! member's arrivals come from its own thread, one per round. Round `g`
//! completes only when every member has arrived, so every view of phase
//! `g` ended before any view of phase `g + 1` begins, and the barrier
//! (sequentially consistent compare-and-swap, acquire loads) orders the
//! writes of one with the reads of the other. All members agree which
//! buffer a phase reads because they read it off the barrier's generation,
//! which cannot move while any of them is inside the phase. Between runs
//! only `&mut Team` reaches the buffers.

use std::any::TypeId;
use std::marker::PhantomData;
use std::ops::Range;

use bytemuck::Pod;
use memmap2::MmapRaw;

use super::team::{private_memory, TeamMember};
use crate::error::{Error, SyncError};
use crate::partition::split_range;

/// How the buffer being written in a phase is split among a team's
/// members: `len` elements in units of `unit` (a grid's rows); the units of
/// `window` are split evenly ([`split_range`]); the units before and after
/// it belong to member 0 — the member that communicates, in a funnelled
/// team (halo rows, edges it sends).
///
/// # Examples
///
/// ```
/// use shmpi::hybrid::BufferSplit;
///
/// // A block of 10 rows of 8 cells: rows 2..8 shared among the threads,
/// // rows 0, 1, 8 and 9 member 0's.
/// let split = BufferSplit::new(80).unit(8).window(2..8);
/// assert_eq!(split.part(2, 0), 16..40);
/// assert_eq!(split.part(2, 1), 40..64);
/// assert_eq!(split.head(), 0..16);
/// assert_eq!(split.tail(), 64..80);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferSplit {
    len: usize,
    unit: usize,
    window: Option<Range<usize>>,
}

impl BufferSplit {
    /// Buffers of `len` elements, split element by element among all the
    /// members.
    pub fn new(len: usize) -> Self {
        BufferSplit {
            len,
            unit: 1,
            window: None,
        }
    }

    /// Parts are whole units of `unit` elements (`len` must be a multiple).
    pub fn unit(mut self, unit: usize) -> Self {
        self.unit = unit;
        self
    }

    /// Only units `window` are split among the members; the units before
    /// and after it are member 0's. Default: all units.
    pub fn window(mut self, units: Range<usize>) -> Self {
        self.window = Some(units);
        self
    }

    /// Elements per buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for empty buffers.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The split window, in units.
    fn units(&self) -> Range<usize> {
        self.window
            .clone()
            .unwrap_or(0..self.len / self.unit.max(1))
    }

    /// The elements of the window that member `index` of `threads` writes.
    pub fn part(&self, threads: usize, index: usize) -> Range<usize> {
        let units = self.units();
        let mine = split_range(units.len(), threads, index);
        let unit = self.unit;
        (units.start + mine.start) * unit..(units.start + mine.end) * unit
    }

    /// The elements before the window (member 0's).
    pub fn head(&self) -> Range<usize> {
        0..self.units().start * self.unit
    }

    /// The elements after the window (member 0's).
    pub fn tail(&self) -> Range<usize> {
        self.units().end * self.unit..self.len
    }

    fn check(&self) -> Result<(), SyncError> {
        let units = self.units();
        if self.unit == 0
            || !self.len.is_multiple_of(self.unit)
            || units.start > units.end
            || units.end > self.len / self.unit
        {
            return Err(SyncError::InvalidArgument(
                "a buffer split needs a unit > 0 dividing the length and a window inside it",
            ));
        }
        Ok(())
    }
}

/// A team's two buffers in one private mapping.
pub(super) struct Buffers {
    memory: MmapRaw,
    /// Byte offsets of buffers 0 and 1.
    at: [usize; 2],
    split: BufferSplit,
    elem: TypeId,
}

impl std::fmt::Debug for Buffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffers")
            .field("split", &self.split)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// Where buffer 1 starts relative to buffer 0, modulo a page: as far as
/// possible from the page offsets a stencil's loads take relative to its
/// stores (0 and ± one unit). A load from the address a store went to,
/// modulo 4 KiB, waits for that store ("4K aliasing"): with the two
/// buffers a whole number of pages apart, every cell's load meets the
/// previous cell's store.
fn page_shift(unit_bytes: usize) -> usize {
    const PAGE: usize = 4096;
    let distance = |a: usize, b: usize| {
        let d = (a + PAGE - b % PAGE) % PAGE;
        d.min(PAGE - d)
    };
    (0..PAGE)
        .step_by(64)
        .max_by_key(|&d| {
            [0, unit_bytes % PAGE, PAGE - unit_bytes % PAGE]
                .iter()
                .map(|&o| distance(d, o))
                .min()
        })
        .unwrap_or(PAGE / 2)
}

/// Where to start a second buffer after a first one of `len` elements of
/// `T` (at element 0), for a stencil that reads one and writes the other
/// in units (rows) of `unit` elements: the first element offset at or
/// after `len` whose page offset keeps the stencil's loads clear of its
/// stores ("4K aliasing": a load from an address a pending store went to,
/// modulo 4 KiB, waits for that store — with two buffers a whole number
/// of pages apart, every cell's loads meet the previous cells' stores).
/// Team buffers are placed this way; use it for double buffers of your
/// own in a node array.
///
/// # Examples
///
/// ```
/// use shmpi::hybrid::second_buffer_at;
///
/// // Two 1024 × 1024 grids of f64: not 8 MiB apart, but a little more.
/// let at = second_buffer_at::<f64>(1024 * 1024, 1024);
/// assert!(at >= 1024 * 1024 && at % 8 == 0);
/// assert_ne!(at * 8 % 4096, 0);
/// ```
pub fn second_buffer_at<T>(len: usize, unit: usize) -> usize {
    let size = std::mem::size_of::<T>().max(1);
    let bytes = len.saturating_mul(size);
    let page = bytes.next_multiple_of(4096);
    (page + page_shift(unit.saturating_mul(size))).div_ceil(size)
}

impl Buffers {
    pub(super) fn new<T: Pod>(split: BufferSplit) -> Result<Buffers, Error> {
        split.check()?;
        let size = std::mem::size_of::<T>();
        let bytes = split
            .len
            .checked_mul(size)
            .ok_or(SyncError::InvalidArgument("buffers larger than memory"))?;
        let second = second_buffer_at::<T>(split.len, split.unit) * size;
        let memory = private_memory(second + bytes, true)?;
        Ok(Buffers {
            memory,
            at: [0, second],
            split,
            elem: TypeId::of::<T>(),
        })
    }

    /// The team's buffers, when they hold `T`.
    pub(super) fn of<T: Pod>(buffers: &Option<Buffers>) -> Result<&Buffers, SyncError> {
        buffers
            .as_ref()
            .filter(|b| b.elem == TypeId::of::<T>())
            .ok_or(SyncError::InvalidArgument(
                "the team has no buffers of this element type (Team::with_buffers)",
            ))
    }

    fn base<T>(&self, which: usize) -> *mut T {
        self.memory.as_mut_ptr().wrapping_add(self.at[which]).cast()
    }

    /// The whole of buffer `which`.
    ///
    /// # Safety
    ///
    /// Nothing writes the buffer while the borrow lives.
    pub(super) unsafe fn whole<T: Pod>(&self, which: usize) -> &[T] {
        // SAFETY: the buffer holds split.len elements of T (made for T: the
        // type was checked in `of`), page-aligned (a multiple of 64 bytes
        // for buffer 1), zeroed at creation; the caller promises no writer.
        unsafe { std::slice::from_raw_parts(self.base(which), self.split.len) }
    }

    /// The whole of buffer `which`, mutably.
    ///
    /// # Safety
    ///
    /// Nothing else sees the buffer while the borrow lives.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn whole_mut<T: Pod>(&self, which: usize) -> &mut [T] {
        // SAFETY: as in `whole`; the caller promises exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.base(which), self.split.len) }
    }

    /// Elements `range` of buffer `which`, mutably.
    ///
    /// # Safety
    ///
    /// Nothing else sees those elements while the borrow lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn part_mut<T: Pod>(&self, which: usize, range: Range<usize>) -> &mut [T] {
        debug_assert!(range.start <= range.end && range.end <= self.split.len);
        // SAFETY: `range` lies inside the buffer (the split's ranges do, and
        // it was checked against the length at creation); the caller
        // promises exclusivity.
        unsafe {
            std::slice::from_raw_parts_mut(self.base::<T>(which).add(range.start), range.len())
        }
    }
}

/// One member's phase over the team's buffers: the right to read the whole
/// of one buffer and write its own part of the other until the barrier
/// that ends it ([`next`](Phase::next)), where the roles swap. See the
/// module's soundness argument; no `unsafe` on the caller's side.
///
/// ```compile_fail
/// # use shmpi::hybrid::{BufferSplit, Team};
/// # let mut team = Team::with_buffers::<f64>(2, BufferSplit::new(8)).unwrap();
/// team.run(|me| {
///     let mut phase = me.phase::<f64>().unwrap();
///     let v = phase.views();
///     let phase = phase.next().unwrap();   // views cannot outlive the phase
///     v.mine[0] = 1.0;
/// });
/// ```
#[derive(Debug)]
pub struct Phase<'m, T: Pod> {
    member: &'m TeamMember<'m>,
    buffers: &'m Buffers,
    read: usize,
    _t: PhantomData<T>,
}

/// What a member sees in a phase.
#[derive(Debug)]
pub struct Views<'v, T> {
    /// The whole buffer this phase reads.
    pub read: &'v [T],
    /// This member's part of the buffer this phase writes.
    pub mine: &'v mut [T],
    /// The element index of `mine[0]` in the buffer.
    pub at: usize,
    /// Member 0: the elements before the split window (empty otherwise).
    pub head: &'v mut [T],
    /// Member 0: the elements after the split window (empty otherwise).
    pub tail: &'v mut [T],
}

impl<'m, T: Pod> Phase<'m, T> {
    pub(super) fn begin(member: &'m TeamMember<'m>, buffers: &'m Buffers, read: usize) -> Self {
        Phase {
            member,
            buffers,
            read,
            _t: PhantomData,
        }
    }

    /// Which buffer (0 or 1) this phase reads.
    pub fn read_index(&self) -> usize {
        self.read
    }

    /// This phase's views: the whole read buffer, this member's part of
    /// the write buffer (and, for member 0, the elements outside the split
    /// window).
    pub fn views(&mut self) -> Views<'_, T> {
        let b = self.buffers;
        let (threads, index) = (self.member.size(), self.member.index());
        let write = 1 - self.read;
        let mine = b.split.part(threads, index);
        let (head, tail) = if index == 0 {
            (b.split.head(), b.split.tail())
        } else {
            (0..0, b.split.len..b.split.len)
        };
        // SAFETY: the module's argument: in this phase nothing writes the
        // read buffer, and this member's part, head and tail of the write
        // buffer are disjoint from every other member's; the views borrow
        // `self` mutably, so they end before the phase does.
        unsafe {
            Views {
                read: b.whole(self.read),
                at: mine.start,
                mine: b.part_mut(write, mine),
                head: b.part_mut(write, head),
                tail: b.part_mut(write, tail),
            }
        }
    }

    /// Ends the phase at the team barrier and returns the next one, whose
    /// roles are swapped (it reads what this one wrote).
    ///
    /// # Errors
    ///
    /// As [`TeamMember::barrier`]; the phase is over either way.
    pub fn next(self) -> Result<Phase<'m, T>, SyncError> {
        self.member.phase_barrier(None)?;
        Ok(self.swapped())
    }

    /// [`next`](Self::next) giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`SyncError::Timeout`], or as [`next`](Self::next).
    pub fn next_timeout(self, timeout: std::time::Duration) -> Result<Phase<'m, T>, SyncError> {
        self.member.phase_barrier(Some(timeout))?;
        Ok(self.swapped())
    }

    fn swapped(mut self) -> Self {
        self.read = self.member.team().read_index();
        self
    }
}

impl<T: Pod> Drop for Phase<'_, T> {
    fn drop(&mut self) {
        self.member.end_phase();
    }
}
