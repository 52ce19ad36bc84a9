//! What the ranks of a node share: objects the node leader creates and the
//! others open (the node mailbox group, node arrays).

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::Duration;

use bytemuck::Pod;

use super::HybridWorld;
use crate::error::{Error, HybridError, MpiError, SyncError};
use crate::mpi::Comm;
use crate::partition::split_range;
use crate::segment::{Segment, SegmentKind, SegmentName, SharedSlice};
use crate::sync::claims::{self, ClaimTable};
use crate::sync::Barrier;

/// `len` elements of `T` mapped by every rank of a node: a segment the node
/// leader creates and the others open, unlinked as soon as all have it
/// (nothing can leak when the job is killed).
///
/// # Computing in place: epochs
///
/// [`epoch`](Self::epoch) hands out borrows of the array itself —
/// `&[T]` of a range you read, `&mut [T]` of a range you write — for one
/// epoch, which [`Epoch::next`] ends at the node barrier. The borrow
/// checker does the rest inside the process (a borrow cannot outlive its
/// epoch; one epoch at a time per array), so the one promise left to the
/// caller — the `unsafe` of [`Epoch::borrow`] — is about the other ranks:
/// **in an epoch, no other rank writes a range you borrow, and no other
/// rank reads or writes the range you write.** As with memmap2's
/// `MmapMut` over a shared file, Rust cannot check another process; in
/// debug builds shmpi does: each epoch's claims go in a side table in the
/// array's memory, and an overlapping claim fails
/// ([`SyncError::OverlappingClaim`](crate::SyncError::OverlappingClaim)) on
/// both ranks — the later claimer at once, the other at the epoch's end.
/// The copy API ([`view`](Self::view)) needs no promise: use it with
/// peers you do not trust. shmpi's own control structures (the barrier,
/// the claim table) lie outside the data and are never trusted.
///
/// # Memory model
///
/// Plain writes to the array by one rank become visible to the node's
/// other ranks at the next barrier of the array ([`NodeArray::barrier`],
/// [`Epoch::next`]) or [`HybridWorld::node_barrier`]: sequentially
/// consistent fences around the barrier, and for a window `MPI_Win_sync`
/// on both sides, as MPI's unified memory model asks. A message received
/// from a rank orders everything that rank wrote before sending it (the
/// mailbox record is published with release ordering and read with
/// acquire ordering; MPI's message completion does the same).
///
/// Two backings behind one interface: a shmpi segment
/// ([`HybridWorld::node_array`], whose barrier is shmpi's futex barrier
/// in the segment) or an MPI shared-memory window
/// (`MPI_Win_allocate_shared`, [`HybridWorld::node_window_array`], whose
/// barrier is `MPI_Barrier` on the node), so the two can be compared.
///
/// # Examples
///
/// ```no_run
/// # use shmpi::hybrid::HybridWorld;
/// # use shmpi::mpi::{Mpi, ThreadLevel};
/// # let mpi = Mpi::init(ThreadLevel::Single)?;
/// # let world = HybridWorld::new(&mpi)?;
/// let mut a = world.node_array::<f64>(1 << 20)?;
/// let (mine, all) = (a.part(), 0..a.len());
/// let mut epoch = a.epoch();
/// // SAFETY: every rank of the node writes only its own part (a.part()).
/// let (_, out) = unsafe { epoch.borrow(0..0, mine.clone())? };
/// out.fill(1.0);
/// let mut epoch = epoch.next(&world)?;   // node barrier: the writes are visible
/// // SAFETY: nobody writes in this epoch.
/// let (read, _) = unsafe { epoch.borrow(all, 0..0)? };
/// assert_eq!(read.iter().sum::<f64>(), (1 << 20) as f64);
/// # Ok::<(), shmpi::Error>(())
/// ```
pub struct NodeArray<T: Pod> {
    backing: Backing,
    len: usize,
    /// Byte offset of the control area (barrier, claim table).
    control: usize,
    node_rank: usize,
    node_size: usize,
    /// Barriers of this array passed: the epoch number (all ranks agree).
    epoch: AtomicU64,
    _t: PhantomData<T>,
}

enum Backing {
    Segment(Segment),
    Window(crate::mpi::SharedWindow),
}

/// Bytes of `len` elements of `T`.
fn data_bytes<T>(len: usize) -> Result<usize, SyncError> {
    len.checked_mul(std::mem::size_of::<T>())
        .ok_or(SyncError::InvalidArgument(
            "a node array larger than memory",
        ))
}

/// The array's control area: after the data, on its own cache line.
fn control_at(data_bytes: usize) -> usize {
    data_bytes.next_multiple_of(64)
}

/// Bytes of the whole array: data, barrier, claim table.
fn total_bytes(data_bytes: usize, node_size: usize) -> usize {
    control_at(data_bytes) + Barrier::SIZE + claims::table_bytes(node_size)
}

impl<T: Pod> NodeArray<T> {
    fn new(backing: Backing, len: usize, control: usize, node: &Comm) -> Self {
        NodeArray {
            backing,
            len,
            control,
            node_rank: node.rank(),
            node_size: node.size(),
            epoch: AtomicU64::new(0),
            _t: PhantomData,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty array.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// This rank's even share of the elements among the node's ranks
    /// ([`split_range`] by node rank) — a partition to start from.
    pub fn part(&self) -> Range<usize> {
        split_range(self.len, self.node_size, self.node_rank)
    }

    /// This rank's rank on the node and the node's rank count.
    pub fn node_rank(&self) -> (usize, usize) {
        (self.node_rank, self.node_size)
    }

    fn base(&self) -> *mut u8 {
        match &self.backing {
            Backing::Segment(seg) => seg.as_ptr(),
            Backing::Window(w) => w.base().as_ptr(),
        }
    }

    /// The first element (aligned to 64 bytes at least on the segment
    /// backing; valid while the array lives).
    pub fn as_ptr(&self) -> *mut T {
        self.base().cast()
    }

    /// A copy-in/copy-out view of the whole array (no promise needed:
    /// for peers you do not trust).
    pub fn view(&self) -> SharedSlice<'_, T> {
        // SAFETY: the memory holds len elements of T (checked at creation),
        // aligned (segment data on 128 bytes, window memory checked at
        // creation), and lives as long as self.
        unsafe {
            SharedSlice::from_raw(
                std::ptr::NonNull::new(self.as_ptr()).expect("mapped"),
                self.len,
            )
        }
    }

    /// The current epoch: borrows of the array until the next barrier.
    pub fn epoch(&mut self) -> Epoch<'_, T> {
        Epoch { array: self }
    }

    /// True when the array is an MPI shared-memory window.
    pub fn is_mpi_window(&self) -> bool {
        matches!(self.backing, Backing::Window(_))
    }

    /// A node barrier that orders every rank's writes to the array before
    /// it with every read after it, and ends the epoch.
    ///
    /// # Errors
    ///
    /// The barrier's error (MPI's for a window).
    pub fn barrier(&self, world: &HybridWorld) -> Result<(), Error> {
        self.barrier_until(Some(world), None)
    }

    /// [`barrier`](Self::barrier) with or without the world (only a
    /// window-backed array needs it: the C API's node array barrier has
    /// none) and with a timeout (only the segment backing has one).
    ///
    /// # Errors
    ///
    /// As [`barrier`](Self::barrier), plus [`SyncError::InvalidArgument`]
    /// for a window-backed array without its world or with a timeout.
    pub fn barrier_until(
        &self,
        world: Option<&HybridWorld>,
        timeout: Option<Duration>,
    ) -> Result<(), Error> {
        fence(Ordering::SeqCst);
        match &self.backing {
            Backing::Segment(seg) => {
                let barrier = Barrier::open_in(seg, self.control)?;
                crate::segment::epoch::check_parties(&barrier, self.node_size)?;
                match timeout {
                    Some(t) => barrier.wait_timeout(t).map(drop)?,
                    None => barrier.wait().map(drop)?,
                }
            }
            Backing::Window(w) => {
                let world = world.ok_or(SyncError::InvalidArgument(
                    "a window-backed node array's barrier needs its world",
                ))?;
                if timeout.is_some() {
                    return Err(SyncError::InvalidArgument(
                        "an MPI window's barrier (MPI_Barrier) has no timeout",
                    )
                    .into());
                }
                w.sync()?;
                world.node().barrier()?;
                w.sync()?;
            }
        }
        fence(Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The borrows of an epoch (number `epoch`) of this array.
    ///
    /// # Safety
    ///
    /// The caller ties them to `&mut` of its epoch and promises what
    /// [`Epoch::borrow`] says.
    #[allow(clippy::mut_from_ref)]
    unsafe fn borrow_in(
        &self,
        epoch: u64,
        read: Range<usize>,
        write: Range<usize>,
    ) -> Result<(&[T], &mut [T]), SyncError> {
        // SAFETY: the elements are mapped, aligned and initialised (checked
        // at creation); the rest is the caller's contract.
        unsafe {
            crate::segment::epoch::borrow(
                self.as_ptr(),
                self.len,
                (read, write),
                (self.claims(), epoch),
            )
        }
    }

    fn claims(&self) -> ClaimTable {
        let at = self.control + Barrier::SIZE;
        let base = std::ptr::NonNull::new(self.base().wrapping_add(at)).expect("mapped");
        // SAFETY: the control area (barrier, then the table for node_size
        // ranks) lies inside the mapping (its size was checked at creation),
        // 64-byte aligned, zeroed by the creator, alive as long as self.
        unsafe { ClaimTable::new(base, self.node_size, self.node_rank) }
    }
}

/// One epoch of a [`NodeArray`]: borrows of the array that end at the next
/// barrier, which [`next`](Self::next) consumes the epoch to pass (or
/// [`arrive`](Self::arrive), splitting it).
///
/// ```compile_fail
/// # fn f(world: &shmpi::hybrid::HybridWorld) -> shmpi::Result<()> {
/// let mut a = world.node_array::<f64>(64)?;
/// let mut epoch = a.epoch();
/// let (_, mine) = unsafe { epoch.borrow(0..0, 0..8)? };
/// let epoch = epoch.next(world)?;      // a borrow cannot outlive its epoch
/// mine[0] = 1.0;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Epoch<'a, T: Pod> {
    array: &'a mut NodeArray<T>,
}

impl<'a, T: Pod> Epoch<'a, T> {
    /// The epoch's number: barriers of the array since its creation.
    pub fn number(&self) -> u64 {
        self.array.epoch.load(Ordering::Relaxed)
    }

    /// Borrows elements `read` to read and elements `write` to write, for
    /// this epoch (the two must not overlap; either may be empty). Debug
    /// builds record the claim and check it against the other ranks'.
    ///
    /// # Safety
    ///
    /// In this epoch no other rank of the node writes `read`, and no other
    /// rank reads or writes `write` — by any means (epochs, the copy view,
    /// the C pointer).
    ///
    /// # Errors
    ///
    /// [`SyncError::InvalidArgument`] for a range outside the array or
    /// overlapping ranges; [`SyncError::OverlappingClaim`] (debug builds)
    /// when another rank's claim in this epoch conflicts.
    pub unsafe fn borrow(
        &mut self,
        read: Range<usize>,
        write: Range<usize>,
    ) -> Result<(&[T], &mut [T]), SyncError> {
        // SAFETY: `&mut self` keeps this process from making another borrow
        // while these live; the caller promises the rest for this epoch,
        // which ends only when `next` consumes `self`, after these borrows.
        unsafe { self.array.borrow_in(self.number(), read, write) }
    }

    /// Ends the epoch at the array's barrier ([`NodeArray::barrier`]) and
    /// returns the next one. Debug builds then check this rank's claims of
    /// the epoch that ended against every other rank's.
    ///
    /// # Errors
    ///
    /// The barrier's error; [`SyncError::OverlappingClaim`] (debug builds).
    pub fn next(self, world: &HybridWorld) -> Result<Epoch<'a, T>, Error> {
        self.next_until(Some(world), None)
    }

    /// [`next`](Self::next) giving up after `timeout` (segment backing
    /// only: an MPI window's barrier has no timeout).
    ///
    /// # Errors
    ///
    /// [`SyncError::Timeout`]; [`SyncError::InvalidArgument`] for a
    /// window; or as [`next`](Self::next).
    pub fn next_timeout(
        self,
        world: &HybridWorld,
        timeout: Duration,
    ) -> Result<Epoch<'a, T>, Error> {
        self.next_until(Some(world), Some(timeout))
    }

    pub(crate) fn next_until(
        self,
        world: Option<&HybridWorld>,
        timeout: Option<Duration>,
    ) -> Result<Epoch<'a, T>, Error> {
        let ended = self.number();
        self.array.barrier_until(world, timeout)?;
        if cfg!(debug_assertions) {
            self.array.claims().check(ended)?;
        }
        Ok(self)
    }

    /// Arrives at the barrier that ends this epoch without waiting for the
    /// others — a split-phase barrier, like `MPI_Ibarrier` — and returns
    /// the epoch's late part, in which this rank finishes work the others
    /// do not need while they may already have moved on
    /// ([`LateEpoch::wait`] completes the barrier). A stencil arrives as
    /// soon as its edge rows are written and computes its interior rows
    /// late: a neighbour then waits for those edges only, not for the whole
    /// of this rank's step. (An MPI window's barrier is not split: it
    /// happens in `wait`.)
    ///
    /// # Errors
    ///
    /// The barrier's.
    pub fn arrive(self) -> Result<LateEpoch<'a, T>, Error> {
        let arrival = match &self.array.backing {
            Backing::Segment(seg) => {
                let barrier = Barrier::open_in(seg, self.array.control)?;
                crate::segment::epoch::check_parties(&barrier, self.array.node_size)?;
                // The arrival's SeqCst compare-and-swap publishes this
                // rank's writes (release), as the fence before a barrier.
                fence(Ordering::SeqCst);
                Some(barrier.arrive()?)
            }
            Backing::Window(_) => None,
        };
        Ok(LateEpoch {
            array: self.array,
            arrival,
        })
    }
}

/// The late part of a [`NodeArray`]'s epoch: this rank has arrived at the
/// barrier that ends it, the others may have passed it and be in the next
/// epoch. Made by [`Epoch::arrive`], ended by [`wait`](Self::wait).
#[derive(Debug)]
#[must_use]
pub struct LateEpoch<'a, T: Pod> {
    array: &'a mut NodeArray<T>,
    /// The segment barrier's round this rank joined (`None`: a window's
    /// barrier, not split, done in `wait`).
    arrival: Option<crate::sync::barrier::Arrival>,
}

impl<'a, T: Pod> LateEpoch<'a, T> {
    /// The epoch's number (as [`Epoch::number`]).
    pub fn number(&self) -> u64 {
        self.array.epoch.load(Ordering::Relaxed)
    }

    /// Borrows elements `read` and `write` for the rest of the epoch, as
    /// [`Epoch::borrow`]. Debug builds record the claim in this epoch and
    /// the next.
    ///
    /// # Safety
    ///
    /// The others may already be in the next epoch: no other rank writes
    /// `read`, and no other rank reads or writes `write`, in this epoch or
    /// the next.
    ///
    /// # Errors
    ///
    /// As [`Epoch::borrow`].
    pub unsafe fn borrow(
        &mut self,
        read: Range<usize>,
        write: Range<usize>,
    ) -> Result<(&[T], &mut [T]), SyncError> {
        let number = self.number();
        if cfg!(debug_assertions) {
            self.array
                .claims()
                .claim(number.wrapping_add(1), &read, &write)?;
        }
        // SAFETY: as in `Epoch::borrow`; the caller's promise covers the
        // others' next epoch too.
        unsafe { self.array.borrow_in(number, read, write) }
    }

    /// Completes the barrier and returns the next epoch; debug builds then
    /// check this rank's claims of the epoch that ended.
    ///
    /// # Errors
    ///
    /// The barrier's; [`SyncError::OverlappingClaim`] (debug builds).
    pub fn wait(self, world: &HybridWorld) -> Result<Epoch<'a, T>, Error> {
        self.wait_until(world, None)
    }

    /// [`wait`](Self::wait) giving up after `timeout` (segment backing only).
    ///
    /// # Errors
    ///
    /// [`SyncError::Timeout`]; [`SyncError::InvalidArgument`] for a
    /// window; or as [`wait`](Self::wait).
    pub fn wait_timeout(
        self,
        world: &HybridWorld,
        timeout: Duration,
    ) -> Result<Epoch<'a, T>, Error> {
        self.wait_until(world, Some(timeout))
    }

    fn wait_until(
        self,
        world: &HybridWorld,
        timeout: Option<Duration>,
    ) -> Result<Epoch<'a, T>, Error> {
        let epoch = Epoch { array: self.array };
        let Some(arrival) = self.arrival else {
            return epoch.next_until(Some(world), timeout);
        };
        let Backing::Segment(seg) = &epoch.array.backing else {
            unreachable!("an arrival is made on the segment backing only");
        };
        let ended = epoch.number();
        Barrier::open_in(seg, epoch.array.control)?.complete(arrival, timeout)?;
        fence(Ordering::SeqCst);
        epoch.array.epoch.fetch_add(1, Ordering::Relaxed);
        if cfg!(debug_assertions) {
            epoch.array.claims().check(ended)?;
        }
        Ok(epoch)
    }
}

impl<T: Pod> std::fmt::Debug for NodeArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeArray")
            .field("len", &self.len)
            .field("node_rank", &self.node_rank)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// A shared object of the node: the leader (node rank 0) makes a unique
/// name and calls `make(name)` to create it, broadcasts the name, and the
/// other ranks call `make(name)` to open it. The leader broadcasts an empty
/// name when it failed, so the others fail too instead of waiting.
pub(super) fn share_from_leader<T>(
    node: &Comm,
    what: &'static str,
    tag: &str,
    mut make: impl FnMut(&SegmentName) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut name = Vec::new();
    let created = if node.rank() == 0 {
        let n = SegmentName::unique(tag);
        let made = make(&n);
        if made.is_ok() {
            name = n.as_str().as_bytes().to_vec();
        }
        Some(made)
    } else {
        None
    };
    node.broadcast_bytes(0, &mut name)?;
    match created {
        Some(made) => made,
        None if name.is_empty() => Err(HybridError::LeaderFailed { what }.into()),
        None => {
            let n = SegmentName::new(&String::from_utf8_lossy(&name)).map_err(|e| {
                HybridError::Mismatch {
                    what,
                    found: format!("a name the leader sent that is not a segment name ({e})"),
                    expected: "a segment name".to_owned(),
                }
            })?;
            make(&n)
        }
    }
}

impl HybridWorld {
    /// A node-wide array of `len` elements of `T` (collective over the
    /// node: every rank of the node calls it).
    ///
    /// # Errors
    ///
    /// The segment's errors, or MPI's.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use shmpi::hybrid::HybridWorld;
    /// # use shmpi::mpi::{Mpi, ThreadLevel};
    /// # let mpi = Mpi::init(ThreadLevel::Multiple)?;
    /// # let world = HybridWorld::new(&mpi)?;
    /// let a = world.node_array::<f64>(1 << 20)?;
    /// let me = world.node().rank();
    /// a.view().set(me, 1.0);
    /// world.node_barrier()?;                 // every rank's write is visible
    /// # Ok::<(), shmpi::Error>(())
    /// ```
    pub fn node_array<T: Pod>(&self, len: usize) -> Result<NodeArray<T>, Error> {
        let node = self.node();
        let (data, parties) = (data_bytes::<T>(len)?, node.size());
        let control = control_at(data);
        let total = total_bytes(data, parties);
        let mut segment = share_from_leader(node, "node array", "node-array", |name| {
            if node.rank() == 0 {
                let parties = u32::try_from(parties)
                    .map_err(|_| SyncError::InvalidArgument("a node of more than 2^32 ranks"))?;
                Ok(Segment::builder(name.as_str())
                    .size(total)
                    .kind(SegmentKind::NODE_ARRAY)
                    .create_init(|seg| -> Result<(), Error> {
                        Barrier::create_in(seg, control, parties)?;
                        Ok(())
                    })?)
            } else {
                Ok(Segment::builder(name.as_str())
                    .expect_kind(SegmentKind::NODE_ARRAY)
                    .open()?)
            }
        })?;
        // Everyone has it mapped: the name can go.
        node.barrier()?;
        if node.rank() == 0 {
            segment.unlink()?;
        }
        if segment.len() < total {
            return Err(HybridError::Mismatch {
                what: "node array bytes (the ranks disagree on its length)",
                found: segment.len().to_string(),
                expected: total.to_string(),
            }
            .into());
        }
        Ok(NodeArray::new(
            Backing::Segment(segment),
            len,
            control,
            node,
        ))
    }

    /// A node-wide array in an MPI shared-memory window
    /// (`MPI_Win_allocate_shared` on the node communicator, the memory on
    /// the node leader, found by the others with `MPI_Win_shared_query`).
    /// Collective over the node, and so is dropping it (`MPI_Win_free`).
    ///
    /// # Errors
    ///
    /// MPI's error (Open MPI needs the `sm` one-sided component, which the
    /// launcher selects).
    pub fn node_window_array<T: Pod>(&self, len: usize) -> Result<NodeArray<T>, Error> {
        let node = self.node();
        let data = data_bytes::<T>(len)?;
        let control = control_at(data);
        let bytes = total_bytes(data, node.size());
        let mine = if node.rank() == 0 { bytes } else { 0 };
        let window = crate::mpi::SharedWindow::allocate(node, mine, 0)?;
        let base = window.base();
        if window.len() < bytes {
            return Err(MpiError::SharedWindow {
                what: "the leader's memory (bytes)",
                found: window.len() as u64,
                expected: bytes as u64,
            }
            .into());
        }
        if !(base.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>().max(8)) {
            return Err(MpiError::SharedWindow {
                what: "the base address modulo the alignment",
                found: (base.as_ptr() as usize % std::mem::align_of::<T>().max(8)) as u64,
                expected: 0,
            }
            .into());
        }
        if node.rank() == 0 {
            // SAFETY: the leader's own `bytes` bytes of the window (checked
            // above); nobody else touches them before the barrier below.
            unsafe { std::ptr::write_bytes(base.as_ptr(), 0, bytes) };
        }
        window.sync()?;
        node.barrier()?;
        window.sync()?;
        Ok(NodeArray::new(Backing::Window(window), len, control, node))
    }

    /// A barrier of this node's ranks that also orders their writes to
    /// node arrays (see [`NodeArray`]'s memory model).
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn node_barrier(&self) -> Result<(), Error> {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.node().barrier()?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}
