//! Communicators and point-to-point messages.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytemuck::Pod;
use rsmpi::ffi;

use super::{check, ensure_usable, is_finalized, ThreadLevel};
use crate::error::MpiError;
use crate::sync::{WaitPolicy, Waiter};
pub use crate::transport::Status;
use crate::transport::{Arrival, Message, Source, TagMatch, Wait};

/// Messages above this many bytes travel as blocks of [`BIG_BLOCK`] bytes
/// plus a remainder message: MPI counts are `int`.
const BIG_LIMIT: usize = i32::MAX as usize;
const BIG_BLOCK: usize = 1 << 30;

/// A [`Comm`] lent to rsmpi ([`Comm::as_rsmpi`]): derefs to an rsmpi
/// `SimpleCommunicator` that rsmpi never frees.
pub struct RsmpiComm<'a> {
    comm: std::mem::ManuallyDrop<rsmpi::topology::SimpleCommunicator>,
    _owner: std::marker::PhantomData<&'a Comm>,
}

impl std::ops::Deref for RsmpiComm<'_> {
    type Target = rsmpi::topology::SimpleCommunicator;
    fn deref(&self) -> &Self::Target {
        &self.comm
    }
}

impl std::fmt::Debug for RsmpiComm<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsmpiComm").finish_non_exhaustive()
    }
}

/// A communicator: a duplicate made by shmpi, with `MPI_ERRORS_RETURN`.
/// Neither `Send` nor `Sync`; see [`SharedComm`].
pub struct Comm {
    raw: ffi::MPI_Comm,
    rank: usize,
    size: usize,
    tag_ub: i32,
    /// Messages received from MPI but not yet by the caller (too long for
    /// the buffer it offered): looked at first by every receive.
    kept: Mutex<VecDeque<Message>>,
    /// How many messages `kept` holds: lets the hot path skip the lock.
    kept_count: AtomicUsize,
    /// MPI granted less than `MPI_THREAD_MULTIPLE`: no other thread can
    /// receive on this communicator between a probe and a receive, so a
    /// blocking receive may probe, then receive the probed message by its
    /// source and tag, instead of the matched probe.
    probe_then_recv: bool,
    /// shmpi made this communicator (and frees it); false for one it
    /// borrows ([`Comm::borrow_raw`]).
    owned: bool,
    _not_send: PhantomData<*const ()>,
}

/// A [`Comm`] that may be used from several threads at once: only when MPI
/// granted `MPI_THREAD_MULTIPLE`.
///
/// # Examples
///
/// ```no_run
/// use shmpi::mpi::{Mpi, SharedComm, ThreadLevel};
///
/// let mpi = Mpi::init(ThreadLevel::Multiple)?;
/// let world = SharedComm::try_from(mpi.dup_world()?)?;
/// std::thread::scope(|s| {
///     s.spawn(|| world.barrier());
/// });
/// # Ok::<(), shmpi::Error>(())
/// ```
pub struct SharedComm(Comm);

// SAFETY: constructed only when MPI_THREAD_MULTIPLE was granted, so every
// MPI call on the communicator may come from any thread concurrently; the
// Rust-side state (the kept queue) is behind a mutex.
unsafe impl Send for SharedComm {}
// SAFETY: as above.
unsafe impl Sync for SharedComm {}

impl TryFrom<Comm> for SharedComm {
    type Error = MpiError;
    fn try_from(comm: Comm) -> Result<SharedComm, MpiError> {
        let granted = ThreadLevel::current()?;
        if granted == ThreadLevel::Multiple {
            Ok(SharedComm(comm))
        } else {
            Err(MpiError::ThreadLevel {
                needed: ThreadLevel::Multiple.name(),
                granted: granted.name(),
            })
        }
    }
}

impl std::ops::Deref for SharedComm {
    type Target = Comm;
    fn deref(&self) -> &Comm {
        &self.0
    }
}

fn statics() -> (ffi::MPI_Datatype, ffi::MPI_Errhandler, i32, i32) {
    // SAFETY: rsmpi's constant statics, set at load time, never written.
    unsafe {
        (
            ffi::RSMPI_UINT8_T,
            ffi::RSMPI_ERRORS_RETURN,
            ffi::RSMPI_ANY_SOURCE,
            ffi::RSMPI_ANY_TAG,
        )
    }
}

fn byte() -> ffi::MPI_Datatype {
    statics().0
}

/// A contiguous datatype of `BIG_BLOCK` bytes, freed on drop.
struct BigBlock(ffi::MPI_Datatype);

impl BigBlock {
    fn new() -> Result<BigBlock, MpiError> {
        let mut t = MaybeUninit::uninit();
        // SAFETY: out-pointer to a local; count and old type are valid.
        check("MPI_Type_contiguous", unsafe {
            ffi::MPI_Type_contiguous(BIG_BLOCK as i32, byte(), t.as_mut_ptr())
        })?;
        // SAFETY: initialised by the successful call.
        let mut t = unsafe { t.assume_init() };
        // SAFETY: a freshly created datatype.
        check("MPI_Type_commit", unsafe { ffi::MPI_Type_commit(&mut t) })?;
        Ok(BigBlock(t))
    }
}

impl Drop for BigBlock {
    fn drop(&mut self) {
        // SAFETY: a committed datatype we own; pending operations keep their
        // own reference (MPI 4.0 §5.1.7).
        unsafe { ffi::MPI_Type_free(&mut self.0) };
    }
}

impl Comm {
    /// Duplicates `raw` and sets `MPI_ERRORS_RETURN` on the duplicate.
    pub(super) fn duplicate(raw: ffi::MPI_Comm) -> Result<Comm, MpiError> {
        ensure_usable()?;
        let mut dup = MaybeUninit::uninit();
        // SAFETY: `raw` is a valid communicator (world or the caller's);
        // out-pointer to a local.
        check("MPI_Comm_dup", unsafe {
            ffi::MPI_Comm_dup(raw, dup.as_mut_ptr())
        })?;
        // SAFETY: initialised by the successful call.
        Comm::adopt(unsafe { dup.assume_init() })
    }

    /// A duplicate, for shmpi, of a communicator someone else owns — an
    /// rsmpi communicator (`universe.world()`, a split, …) or anything
    /// that gives its raw `MPI_Comm`. `comm` is only borrowed: shmpi never
    /// frees it, and the duplicate lives on its own (free it before MPI is
    /// finalised — before rsmpi's `Universe` is dropped).
    ///
    /// # Collective
    ///
    /// `MPI_Comm_dup` over `comm`'s ranks: every one of them calls it.
    ///
    /// # Errors
    ///
    /// [`MpiError::NotInitialized`] / [`MpiError::Finalized`], or MPI's.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use shmpi::rsmpi::traits::*;
    ///
    /// let universe = shmpi::rsmpi::initialize().unwrap();   // rsmpi owns MPI
    /// let ours = shmpi::mpi::Comm::dup_from(&universe.world())?;
    /// let world = shmpi::hybrid::HybridWorld::from_comm(ours)?;
    /// # drop(world);
    /// # Ok::<(), shmpi::Error>(())
    /// ```
    pub fn dup_from<C>(comm: &C) -> Result<Comm, MpiError>
    where
        C: rsmpi::raw::AsRaw<Raw = ffi::MPI_Comm>,
    {
        Comm::duplicate(comm.as_raw())
    }

    /// This communicator's ranks as a new rsmpi communicator: a duplicate
    /// that rsmpi owns and frees when it is dropped (before MPI is
    /// finalised).
    ///
    /// # Collective
    ///
    /// `MPI_Comm_dup` over this communicator's ranks.
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn dup_to_rsmpi(&self) -> Result<rsmpi::topology::SimpleCommunicator, MpiError> {
        self.alive()?;
        let mut dup = MaybeUninit::uninit();
        // SAFETY: our live communicator; out-pointer to a local.
        check("MPI_Comm_dup", unsafe {
            ffi::MPI_Comm_dup(self.raw, dup.as_mut_ptr())
        })?;
        // SAFETY: a live intra-communicator just made (not WORLD or SELF),
        // used only through the value returned, which frees it once.
        Ok(unsafe { rsmpi::raw::FromRaw::from_raw(dup.assume_init()) })
    }

    /// This communicator lent to rsmpi code without a duplicate and
    /// without a collective: the borrow cannot outlive `self`, and rsmpi
    /// never frees it.
    pub fn as_rsmpi(&self) -> RsmpiComm<'_> {
        // SAFETY: our live intra-communicator (not WORLD or SELF); wrapped in
        // ManuallyDrop below, so rsmpi's Drop (MPI_Comm_free) never runs on
        // it, and the borrow of `self` keeps it alive while rsmpi uses it.
        let lent = unsafe { rsmpi::raw::FromRaw::from_raw(self.raw) };
        RsmpiComm {
            comm: std::mem::ManuallyDrop::new(lent),
            _owner: std::marker::PhantomData,
        }
    }

    /// Takes ownership of a communicator shmpi created: sets
    /// `MPI_ERRORS_RETURN` and reads rank, size and tag bound.
    fn adopt(dup: ffi::MPI_Comm) -> Result<Comm, MpiError> {
        let (_, errors_return, _, _) = statics();
        // SAFETY: `dup` is ours; ERRORS_RETURN is a predefined handler.
        check("MPI_Comm_set_errhandler", unsafe {
            ffi::MPI_Comm_set_errhandler(dup, errors_return)
        })?;
        Comm::describe(dup, true)
    }

    /// The `Comm` over `raw` (rank, size, tag bound read from MPI).
    fn describe(raw: ffi::MPI_Comm, owned: bool) -> Result<Comm, MpiError> {
        let (mut rank, mut size) = (0, 0);
        // SAFETY: valid communicator, out-pointers to locals.
        unsafe {
            check("MPI_Comm_rank", ffi::MPI_Comm_rank(raw, &mut rank))?;
            check("MPI_Comm_size", ffi::MPI_Comm_size(raw, &mut size))?;
        }
        let mut value: *mut i32 = std::ptr::null_mut();
        let mut flag = 0;
        // SAFETY: MPI_TAG_UB is a predefined attribute whose value is a
        // pointer to int (MPI 4.0 §9.1.2); out-pointers to locals.
        check("MPI_Comm_get_attr", unsafe {
            ffi::MPI_Comm_get_attr(
                raw,
                ffi::MPI_TAG_UB as i32,
                (&mut value as *mut *mut i32).cast(),
                &mut flag,
            )
        })?;
        let tag_ub = if flag != 0 && !value.is_null() {
            // SAFETY: when the flag is set, MPI hands a pointer to a valid
            // int that lives as long as the communicator.
            unsafe { *value }
        } else {
            32767
        };
        Ok(Comm {
            raw,
            rank: rank as usize,
            size: size as usize,
            tag_ub,
            kept: Mutex::new(VecDeque::new()),
            kept_count: AtomicUsize::new(0),
            probe_then_recv: super::ThreadLevel::current()? < super::ThreadLevel::Multiple,
            owned,
            _not_send: PhantomData,
        })
    }

    /// The caller's communicator itself, borrowed: no duplicate, so no
    /// collective — a rank can talk to ranks that do not use shmpi (an
    /// MPMD job, an mpi4py peer) on the caller's own communicator, tag
    /// space and error handler (shmpi does not change it: with MPI's
    /// default, an MPI failure aborts; shmpi's own checks — ranks, tags,
    /// too-long messages — still return errors). shmpi never frees it.
    ///
    /// # Safety
    ///
    /// `raw` is a valid intra-communicator that outlives the `Comm`.
    ///
    /// # Errors
    ///
    /// [`MpiError::NotInitialized`] / [`MpiError::Finalized`], or MPI's.
    pub unsafe fn borrow_raw(raw: ffi::MPI_Comm) -> Result<Comm, MpiError> {
        ensure_usable()?;
        Comm::describe(raw, false)
    }

    /// The ranks that share memory with this one (`MPI_Comm_split_type`
    /// with `MPI_COMM_TYPE_SHARED`: one communicator per node).
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn split_shared(&self) -> Result<Comm, MpiError> {
        self.alive()?;
        let mut out = MaybeUninit::uninit();
        // SAFETY: communicator alive; predefined split type and info;
        // out-pointer to a local.
        check("MPI_Comm_split_type", unsafe {
            ffi::MPI_Comm_split_type(
                self.raw,
                ffi::RSMPI_COMM_TYPE_SHARED,
                self.rank as i32,
                ffi::RSMPI_INFO_NULL,
                out.as_mut_ptr(),
            )
        })?;
        // SAFETY: initialised by the successful call.
        Comm::adopt(unsafe { out.assume_init() })
    }

    /// A communicator of the same ranks with a context of its own
    /// (`MPI_Comm_dup`): its messages never match this one's. Collective.
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn dup(&self) -> Result<Comm, MpiError> {
        self.alive()?;
        let mut out = MaybeUninit::uninit();
        // SAFETY: communicator alive; out-pointer to a local.
        check("MPI_Comm_dup", unsafe {
            ffi::MPI_Comm_dup(self.raw, out.as_mut_ptr())
        })?;
        // SAFETY: initialised by the successful call.
        Comm::adopt(unsafe { out.assume_init() })
    }

    /// The ranks with the same `color` (`MPI_Comm_split`), ordered by rank.
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn split(&self, color: u32) -> Result<Comm, MpiError> {
        self.alive()?;
        let mut out = MaybeUninit::uninit();
        let color = i32::try_from(color).unwrap_or(i32::MAX);
        // SAFETY: communicator alive; out-pointer to a local.
        check("MPI_Comm_split", unsafe {
            ffi::MPI_Comm_split(self.raw, color, self.rank as i32, out.as_mut_ptr())
        })?;
        // SAFETY: initialised by the successful call.
        Comm::adopt(unsafe { out.assume_init() })
    }

    /// Every rank's `value`, indexed by rank (`MPI_Allgather`).
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn allgather_u64(&self, value: u64) -> Result<Vec<u64>, MpiError> {
        self.alive()?;
        let mut all = vec![0u64; self.size];
        // SAFETY: one u64 sent, `size` received into `all`.
        check("MPI_Allgather", unsafe {
            ffi::MPI_Allgather(
                (&value as *const u64).cast(),
                1,
                ffi::RSMPI_UINT64_T,
                all.as_mut_ptr().cast(),
                1,
                ffi::RSMPI_UINT64_T,
                self.raw,
            )
        })?;
        Ok(all)
    }

    /// Makes every rank's `data` equal to `root`'s (`MPI_Bcast` of the
    /// length, then of the bytes).
    ///
    /// # Errors
    ///
    /// [`MpiError::InvalidRank`] for the root, [`MpiError::CountTooLarge`],
    /// or MPI's error.
    pub fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>) -> Result<(), MpiError> {
        self.alive()?;
        let r = self.check_rank(root)?;
        let mut len = data.len() as u64;
        // SAFETY: one u64 at a valid address; communicator alive.
        check("MPI_Bcast", unsafe {
            ffi::MPI_Bcast(
                (&mut len as *mut u64).cast(),
                1,
                ffi::RSMPI_UINT64_T,
                r,
                self.raw,
            )
        })?;
        let n = i32::try_from(len).map_err(|_| MpiError::CountTooLarge {
            count: len as usize,
        })?;
        data.resize(len as usize, 0);
        // SAFETY: `data` holds n bytes on every rank (resized above).
        check("MPI_Bcast", unsafe {
            ffi::MPI_Bcast(data.as_mut_ptr().cast(), n, byte(), r, self.raw)
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The largest tag (`MPI_TAG_UB`).
    pub fn tag_ub(&self) -> i32 {
        self.tag_ub
    }

    /// The raw handle, for MPI calls shmpi does not wrap.
    pub fn as_raw(&self) -> ffi::MPI_Comm {
        self.raw
    }

    fn alive(&self) -> Result<(), MpiError> {
        if is_finalized() {
            Err(MpiError::Finalized)
        } else {
            Ok(())
        }
    }

    fn check_rank(&self, rank: usize) -> Result<i32, MpiError> {
        if rank < self.size {
            Ok(rank as i32)
        } else {
            Err(MpiError::InvalidRank {
                rank,
                size: self.size,
            })
        }
    }

    fn check_tag(&self, tag: i32) -> Result<i32, MpiError> {
        if (0..=self.tag_ub).contains(&tag) {
            Ok(tag)
        } else {
            Err(MpiError::InvalidTag {
                tag,
                max: self.tag_ub,
            })
        }
    }

    fn raw_source(&self, source: Source) -> Result<i32, MpiError> {
        match source {
            Source::Any => Ok(statics().2),
            Source::Rank(r) => self.check_rank(r),
        }
    }

    fn raw_tag(&self, tag: TagMatch) -> Result<i32, MpiError> {
        match tag {
            TagMatch::Any => Ok(statics().3),
            TagMatch::Tag(t) => self.check_tag(t),
        }
    }

    // ------------------------------------------------------------ sending

    /// Sends `data` to `dest` with `tag` (blocking, `MPI_Send`).
    ///
    /// # Errors
    ///
    /// [`MpiError::InvalidRank`], [`MpiError::InvalidTag`],
    /// [`MpiError::Finalized`], or MPI's error.
    pub fn send(&self, dest: usize, tag: i32, data: &[u8]) -> Result<(), MpiError> {
        self.alive()?;
        let (dest, tag) = (self.check_rank(dest)?, self.check_tag(tag)?);
        if data.len() <= BIG_LIMIT {
            // SAFETY: `data` is valid for len bytes for the call's duration;
            // the communicator is ours and alive.
            return check("MPI_Send", unsafe {
                ffi::MPI_Send(
                    data.as_ptr().cast(),
                    data.len() as i32,
                    byte(),
                    dest,
                    tag,
                    self.raw,
                )
            });
        }
        let big = BigBlock::new()?;
        let blocks = data.len() / BIG_BLOCK;
        let rest = &data[blocks * BIG_BLOCK..];
        // SAFETY: blocks × BIG_BLOCK bytes from the start of `data`, then the
        // rest, both inside `data`.
        unsafe {
            check(
                "MPI_Send",
                ffi::MPI_Send(
                    data.as_ptr().cast(),
                    blocks as i32,
                    big.0,
                    dest,
                    tag,
                    self.raw,
                ),
            )?;
            check(
                "MPI_Send",
                ffi::MPI_Send(
                    rest.as_ptr().cast(),
                    rest.len() as i32,
                    byte(),
                    dest,
                    tag,
                    self.raw,
                ),
            )
        }
    }

    /// Sends a slice of `Pod` values.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_pod<T: Pod>(&self, dest: usize, tag: i32, values: &[T]) -> Result<(), MpiError> {
        self.send(dest, tag, bytemuck::cast_slice(values))
    }

    /// Sends like [`send`](Self::send), but while the send waits (a large
    /// message waits for its receive) it receives whatever arrives into the
    /// local queue that receives look at first: two ranks that send each
    /// other large messages at once both complete. The
    /// [`Transport`](crate::transport::Transport) implementations send so.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_with_progress(&self, dest: usize, tag: i32, data: &[u8]) -> Result<(), MpiError> {
        let req = self.isend(dest, tag, data)?;
        self.wait_progressing(req, &mut || {})
    }

    /// Waits for a send request while receiving whatever arrives into the
    /// local queue and calling `progress` on every turn — a caller that also
    /// talks over another path (the hybrid world's mailboxes) keeps that path
    /// moving. A plain
    /// [`SendRequest::wait`] can deadlock when every rank waits on a large
    /// send to a rank that has not posted its receive.
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn wait_progressing(
        &self,
        mut req: SendRequest<'_>,
        progress: &mut dyn FnMut(),
    ) -> Result<(), MpiError> {
        let mut waiter = Waiter::new(&WaitPolicy::for_node(), None);
        while !req.test()? {
            let moved = self.progress_incoming()?;
            progress();
            if moved {
                waiter.reset();
            } else {
                waiter.idle();
            }
        }
        Ok(())
    }

    /// Starts a send; the request borrows `data` until it completes (a
    /// request dropped unfinished waits for completion). It does not borrow
    /// the communicator: MPI keeps a communicator with pending operations
    /// alive until they complete (MPI 4.0 §7.4.3).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn isend<'a>(
        &self,
        dest: usize,
        tag: i32,
        data: &'a [u8],
    ) -> Result<SendRequest<'a>, MpiError> {
        self.alive()?;
        let (dest, tag) = (self.check_rank(dest)?, self.check_tag(tag)?);
        let mut reqs = Vec::with_capacity(2);
        let mut start =
            |ptr: *const u8, count: usize, ty: ffi::MPI_Datatype| -> Result<(), MpiError> {
                let mut r = MaybeUninit::uninit();
                // SAFETY: the buffer is borrowed for 'a by the request, which
                // waits on drop; out-pointer to a local.
                check("MPI_Isend", unsafe {
                    ffi::MPI_Isend(
                        ptr.cast(),
                        count as i32,
                        ty,
                        dest,
                        tag,
                        self.raw,
                        r.as_mut_ptr(),
                    )
                })?;
                // SAFETY: initialised by the successful call.
                reqs.push(unsafe { r.assume_init() });
                Ok(())
            };
        if data.len() <= BIG_LIMIT {
            start(data.as_ptr(), data.len(), byte())?;
        } else {
            let big = BigBlock::new()?;
            let blocks = data.len() / BIG_BLOCK;
            start(data.as_ptr(), blocks, big.0)?;
            let rest = &data[blocks * BIG_BLOCK..];
            start(rest.as_ptr(), rest.len(), byte())?;
        }
        Ok(SendRequest {
            reqs,
            _borrow: PhantomData,
        })
    }

    // ---------------------------------------------------------- receiving

    fn take_kept(&self, source: Source, tag: TagMatch) -> Option<Message> {
        if self.kept_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let i = kept
            .iter()
            .position(|m| source.accepts(m.source) && tag.accepts(m.tag))?;
        let m = kept.remove(i);
        self.kept_count.store(kept.len(), Ordering::Release);
        m
    }

    fn keep(&self, m: Message) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.push_back(m);
        self.kept_count.store(kept.len(), Ordering::Release);
    }

    fn peek_kept(&self, source: Source, tag: TagMatch) -> Option<Status> {
        if self.kept_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter()
            .find(|m| source.accepts(m.source) && tag.accepts(m.tag))
            .map(|m| Status {
                source: m.source,
                tag: m.tag,
                len: m.data.len(),
            })
    }

    /// Matches a message (`MPI_Mprobe`, or `MPI_Improbe` when not
    /// blocking): its handle, source, tag and length in bytes.
    fn matched(
        &self,
        source: Source,
        tag: TagMatch,
        blocking: bool,
    ) -> Result<Option<(ffi::MPI_Message, Status)>, MpiError> {
        let (src, tg) = (self.raw_source(source)?, self.raw_tag(tag)?);
        let mut msg = MaybeUninit::uninit();
        let mut status = MaybeUninit::<ffi::MPI_Status>::uninit();
        if blocking {
            // SAFETY: out-pointers to locals; communicator alive.
            check("MPI_Mprobe", unsafe {
                ffi::MPI_Mprobe(src, tg, self.raw, msg.as_mut_ptr(), status.as_mut_ptr())
            })?;
        } else {
            let mut flag = 0;
            // SAFETY: as above.
            check("MPI_Improbe", unsafe {
                ffi::MPI_Improbe(
                    src,
                    tg,
                    self.raw,
                    &mut flag,
                    msg.as_mut_ptr(),
                    status.as_mut_ptr(),
                )
            })?;
            if flag == 0 {
                return Ok(None);
            }
        }
        // SAFETY: both initialised by a successful match.
        let (msg, status) = unsafe { (msg.assume_init(), status.assume_init()) };
        Ok(Some((msg, self.status_of(&status)?)))
    }

    /// Receives a matched message of `st.len` bytes into `buf` (at least
    /// that long): as bytes, or, above `i32::MAX`, as whole blocks.
    fn mrecv(&self, msg: ffi::MPI_Message, st: Status, buf: &mut [u8]) -> Result<(), MpiError> {
        debug_assert!(buf.len() >= st.len);
        let mut msg = msg;
        let big;
        let (count, ty) = if st.len <= BIG_LIMIT {
            (st.len, byte())
        } else {
            big = BigBlock::new()?;
            (st.len / BIG_BLOCK, big.0)
        };
        // SAFETY: buf holds st.len bytes = count × the type's size (a big
        // message is whole blocks by construction); the handle comes from a
        // successful match and is consumed once.
        check("MPI_Mrecv", unsafe {
            ffi::MPI_Mrecv(
                buf.as_mut_ptr().cast(),
                count as i32,
                ty,
                &mut msg,
                ffi::RSMPI_STATUS_IGNORE,
            )
        })
    }

    /// After the blocks of a big message, its remainder: the next message
    /// from the same source and tag (MPI keeps their order).
    fn remainder(&self, st: Status) -> Result<(ffi::MPI_Message, Status), MpiError> {
        self.matched(Source::Rank(st.source), TagMatch::Tag(st.tag), true)?
            .ok_or(MpiError::NotInitialized)
    }

    fn receive_owned(&self, msg: ffi::MPI_Message, st: Status) -> Result<Message, MpiError> {
        let mut data = vec![0u8; st.len];
        self.mrecv(msg, st, &mut data)?;
        if st.len > BIG_LIMIT {
            let (rmsg, rst) = self.remainder(st)?;
            data.resize(st.len + rst.len, 0);
            self.mrecv(rmsg, rst, &mut data[st.len..])?;
        }
        Ok(Message {
            source: st.source,
            tag: st.tag,
            data,
        })
    }

    fn take(
        &self,
        source: Source,
        tag: TagMatch,
        blocking: bool,
    ) -> Result<Option<Message>, MpiError> {
        self.alive()?;
        if let Some(m) = self.take_kept(source, tag) {
            return Ok(Some(m));
        }
        match self.matched(source, tag, blocking)? {
            Some((msg, st)) => self.receive_owned(msg, st).map(Some),
            None => Ok(None),
        }
    }

    /// Receives the first message matching `source` and `tag`, waiting as
    /// `wait` says ([`Wait::Forever`]: a blocking matched probe;
    /// [`Wait::For`] or a [`Duration`]: polling with the crate's wait
    /// policy up to that long — MPI has no timed receive; [`Wait::Now`]:
    /// one `MPI_Improbe`).
    ///
    /// # Errors
    ///
    /// [`MpiError::Timeout`] ([`Wait::For`]) and [`MpiError::WouldBlock`]
    /// ([`Wait::Now`]), nothing consumed (`.arrived()` of
    /// [`crate::transport::Arrival`] makes them `None`);
    /// [`MpiError::InvalidRank`], [`MpiError::InvalidTag`], MPI's error.
    pub fn recv(
        &self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
        wait: impl Into<Wait>,
    ) -> Result<Message, MpiError> {
        let (source, tag) = (source.into(), tag.into());
        match wait.into() {
            Wait::Forever => self
                .take(source, tag, true)?
                .ok_or(MpiError::NotInitialized),
            Wait::Now => self.take(source, tag, false)?.ok_or(MpiError::WouldBlock),
            Wait::For(timeout) => poll_until(timeout, || self.take(source, tag, false)),
        }
    }

    /// Receives into `buf`, waiting as `wait` says (as
    /// [`recv`](Self::recv)). A message longer than `buf` is an error
    /// naming both sizes, and it is kept for a later receive.
    ///
    /// # Errors
    ///
    /// [`MpiError::MessageTooLong`], or as [`recv`](Self::recv).
    pub fn recv_into(
        &self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
        buf: &mut [u8],
        wait: impl Into<Wait>,
    ) -> Result<Status, MpiError> {
        let (source, tag) = (source.into(), tag.into());
        match wait.into() {
            Wait::Forever => self.recv_into_blocking(source, tag, buf),
            Wait::Now => self
                .poll_into(source, tag, buf)?
                .ok_or(MpiError::WouldBlock),
            Wait::For(timeout) => poll_until(timeout, || self.poll_into(source, tag, buf)),
        }
    }

    /// [`recv_into`](Self::recv_into) waiting as long as it takes.
    fn recv_into_blocking(
        &self,
        source: Source,
        tag: TagMatch,
        buf: &mut [u8],
    ) -> Result<Status, MpiError> {
        self.alive()?;
        if let Some(st) = self.kept_into(source, tag, buf)? {
            return Ok(st);
        }
        if self.probe_then_recv {
            if let Some(st) = self.probed_into(source, tag, buf)? {
                return Ok(st);
            }
        }
        let (msg, st) = self
            .matched(source, tag, true)?
            .ok_or(MpiError::NotInitialized)?;
        self.matched_into(msg, st, buf)
    }

    /// A matching message into `buf` if one is there, without waiting.
    fn poll_into(
        &self,
        source: Source,
        tag: TagMatch,
        buf: &mut [u8],
    ) -> Result<Option<Status>, MpiError> {
        self.alive()?;
        if let Some(st) = self.kept_into(source, tag, buf)? {
            return Ok(Some(st));
        }
        match self.matched(source, tag, false)? {
            Some((msg, st)) => self.matched_into(msg, st, buf).map(Some),
            None => Ok(None),
        }
    }

    /// Below `MPI_THREAD_MULTIPLE`: waits for a message (`MPI_Probe`) and,
    /// when it fits `buf` and is not split, receives exactly it by its
    /// source and tag (`MPI_Recv`) — no other thread can take it in
    /// between. `None` leaves the message to the matched path (too long:
    /// kept; above 2 GiB: split), which matches the same message first.
    fn probed_into(
        &self,
        source: Source,
        tag: TagMatch,
        buf: &mut [u8],
    ) -> Result<Option<Status>, MpiError> {
        let (src, tg) = (self.raw_source(source)?, self.raw_tag(tag)?);
        let mut status = MaybeUninit::<ffi::MPI_Status>::uninit();
        // SAFETY: out-pointer to a local; communicator alive.
        check("MPI_Probe", unsafe {
            ffi::MPI_Probe(src, tg, self.raw, status.as_mut_ptr())
        })?;
        // SAFETY: initialised by the successful probe.
        let st = self.status_of(&unsafe { status.assume_init() })?;
        if st.len > buf.len() || st.len > BIG_LIMIT {
            return Ok(None);
        }
        // SAFETY: buf holds at least st.len bytes; source and tag name the
        // probed message, which only this thread can receive (the level is
        // below MULTIPLE and a Comm stays on its thread), so it is the one
        // received, whole.
        check("MPI_Recv", unsafe {
            ffi::MPI_Recv(
                buf.as_mut_ptr().cast(),
                st.len as i32,
                byte(),
                st.source as i32,
                st.tag,
                self.raw,
                ffi::RSMPI_STATUS_IGNORE,
            )
        })?;
        Ok(Some(st))
    }

    /// A kept message into `buf`, if one matches.
    fn kept_into(
        &self,
        source: Source,
        tag: TagMatch,
        buf: &mut [u8],
    ) -> Result<Option<Status>, MpiError> {
        let Some(st) = self.peek_kept(source, tag) else {
            return Ok(None);
        };
        if st.len > buf.len() {
            return Err(MpiError::MessageTooLong {
                len: st.len,
                capacity: buf.len(),
            });
        }
        let m = self
            .take_kept(source, tag)
            .ok_or(MpiError::NotInitialized)?;
        buf[..m.data.len()].copy_from_slice(&m.data);
        Ok(Some(st))
    }

    /// A matched message into `buf`; one too long for it is received into
    /// the kept queue and reported.
    fn matched_into(
        &self,
        msg: ffi::MPI_Message,
        st: Status,
        buf: &mut [u8],
    ) -> Result<Status, MpiError> {
        let capacity = buf.len();
        let keep = |m: Message| {
            let len = m.data.len();
            self.keep(m);
            Err(MpiError::MessageTooLong { len, capacity })
        };
        if st.len > buf.len() {
            return keep(self.receive_owned(msg, st)?);
        }
        self.mrecv(msg, st, buf)?;
        if st.len <= BIG_LIMIT {
            return Ok(st);
        }
        let (rmsg, rst) = self.remainder(st)?;
        let total = st.len + rst.len;
        if total > buf.len() {
            let mut data = buf[..st.len].to_vec();
            data.resize(total, 0);
            self.mrecv(rmsg, rst, &mut data[st.len..])?;
            return keep(Message {
                source: st.source,
                tag: st.tag,
                data,
            });
        }
        self.mrecv(rmsg, rst, &mut buf[st.len..])?;
        Ok(Status { len: total, ..st })
    }

    /// Receives `Pod` values.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv); a length that is not a whole number of `T`
    /// is [`MpiError::Transport`] ([`crate::TransportError::TypeMismatch`];
    /// the message is consumed).
    pub fn recv_pod<T: Pod>(
        &self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
        wait: impl Into<Wait>,
    ) -> Result<Vec<T>, MpiError> {
        let m = self.recv(source, tag, wait)?;
        Ok(crate::transport::cast_vec(&m.data)?)
    }

    /// Waits as `wait` says until a matching message is there, and
    /// reports it without receiving it: a blocking `MPI_Probe`
    /// ([`Wait::Forever`]), one `MPI_Iprobe` ([`Wait::Now`]), or `MPI_Iprobe`
    /// under the wait policy ([`Wait::For`]). A kept message (one too long
    /// for an earlier receive's buffer) is found first, as a receive would.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn probe(
        &self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
        wait: impl Into<Wait>,
    ) -> Result<Status, MpiError> {
        let (source, tag) = (source.into(), tag.into());
        match wait.into() {
            Wait::Forever => self.probe_blocking(source, tag),
            Wait::Now => self.iprobe(source, tag)?.ok_or(MpiError::WouldBlock),
            Wait::For(timeout) => poll_until(timeout, || self.iprobe(source, tag)),
        }
    }

    fn probe_blocking(&self, source: Source, tag: TagMatch) -> Result<Status, MpiError> {
        self.alive()?;
        if let Some(st) = self.peek_kept(source, tag) {
            return Ok(st);
        }
        let (src, tg) = (self.raw_source(source)?, self.raw_tag(tag)?);
        let mut status = MaybeUninit::<ffi::MPI_Status>::uninit();
        // SAFETY: out-pointer to a local; communicator alive.
        check("MPI_Probe", unsafe {
            ffi::MPI_Probe(src, tg, self.raw, status.as_mut_ptr())
        })?;
        // SAFETY: initialised by the successful probe.
        let status = unsafe { status.assume_init() };
        self.status_of(&status)
    }

    /// A matching message's status if one is there (`MPI_Iprobe`, which
    /// also drives MPI's progress engine).
    pub(crate) fn iprobe(&self, source: Source, tag: TagMatch) -> Result<Option<Status>, MpiError> {
        self.alive()?;
        if let Some(st) = self.peek_kept(source, tag) {
            return Ok(Some(st));
        }
        let (src, tg) = (self.raw_source(source)?, self.raw_tag(tag)?);
        let mut flag = 0;
        let mut status = MaybeUninit::<ffi::MPI_Status>::uninit();
        // SAFETY: out-pointers to locals; communicator alive.
        check("MPI_Iprobe", unsafe {
            ffi::MPI_Iprobe(src, tg, self.raw, &mut flag, status.as_mut_ptr())
        })?;
        if flag == 0 {
            return Ok(None);
        }
        // SAFETY: initialised by a successful probe that found a message.
        let status = unsafe { status.assume_init() };
        Ok(Some(self.status_of(&status)?))
    }

    fn status_of(&self, status: &ffi::MPI_Status) -> Result<Status, MpiError> {
        let mut count: ffi::MPI_Count = 0;
        // SAFETY: a status from a successful probe; out-pointer to a local.
        check("MPI_Get_elements_x", unsafe {
            ffi::MPI_Get_elements_x(status, byte(), &mut count)
        })?;
        Ok(Status {
            source: status.MPI_SOURCE as usize,
            tag: status.MPI_TAG,
            len: usize::try_from(count).unwrap_or(0),
        })
    }

    /// Receives one message that has arrived, from anyone with any tag,
    /// into the local queue that receives look at first. Returns whether
    /// there was one. (Used to make progress while a send waits.)
    pub(crate) fn progress_incoming(&self) -> Result<bool, MpiError> {
        match self.matched(Source::Any, TagMatch::Any, false)? {
            Some((msg, st)) => {
                let m = self.receive_owned(msg, st)?;
                self.keep(m);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Starts a receive whose completion is polled (`MPI_Improbe` +
    /// `MPI_Mrecv` when the message is there).
    pub fn irecv(&self, source: impl Into<Source>, tag: impl Into<TagMatch>) -> RecvRequest<'_> {
        RecvRequest {
            comm: self,
            source: source.into(),
            tag: tag.into(),
            done: None,
        }
    }

    /// `MPI_Barrier`.
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn barrier(&self) -> Result<(), MpiError> {
        self.alive()?;
        // SAFETY: communicator alive.
        check("MPI_Barrier", unsafe { ffi::MPI_Barrier(self.raw) })
    }
}

impl Drop for Comm {
    fn drop(&mut self) {
        if self.owned && !is_finalized() {
            // SAFETY: a communicator we duplicated, freed once.
            unsafe { ffi::MPI_Comm_free(&mut self.raw) };
        }
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Comm")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("tag_ub", &self.tag_ub)
            .finish_non_exhaustive()
    }
}

/// Calls `attempt` until it yields, waiting between tries by the crate's
/// policy ([`WaitPolicy::for_node`]: spin, yield, then sleep a backoff —
/// MPI has no timed receive); `Timeout` after `timeout`.
fn poll_until<T>(
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<Option<T>, MpiError>,
) -> Result<T, MpiError> {
    let mut waiter = Waiter::new(&WaitPolicy::for_node(), Some(timeout));
    loop {
        if let Some(v) = attempt()? {
            return Ok(v);
        }
        if !waiter.idle() {
            return Err(MpiError::Timeout { waited: timeout });
        }
    }
}

/// A send in progress; waits for completion when dropped unfinished (and
/// MPI is not finalised).
#[must_use]
pub struct SendRequest<'a> {
    reqs: Vec<ffi::MPI_Request>,
    _borrow: PhantomData<&'a [u8]>,
}

impl SendRequest<'_> {
    /// Waits for completion.
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn wait(mut self) -> Result<(), MpiError> {
        self.wait_all()
    }

    fn wait_all(&mut self) -> Result<(), MpiError> {
        for r in self.reqs.iter_mut() {
            // SAFETY: a request from MPI_Isend (or already null after
            // completion, which MPI_Wait accepts).
            check("MPI_Wait", unsafe {
                ffi::MPI_Wait(r, ffi::RSMPI_STATUS_IGNORE)
            })?;
        }
        self.reqs.clear();
        Ok(())
    }

    /// True when the send has completed.
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn test(&mut self) -> Result<bool, MpiError> {
        let mut all = true;
        for r in self.reqs.iter_mut() {
            let mut flag = 0;
            // SAFETY: as in `wait_all`; out-pointer to a local.
            check("MPI_Test", unsafe {
                ffi::MPI_Test(r, &mut flag, ffi::RSMPI_STATUS_IGNORE)
            })?;
            all &= flag != 0;
        }
        if all {
            self.reqs.clear();
        }
        Ok(all)
    }
}

impl Drop for SendRequest<'_> {
    fn drop(&mut self) {
        if !self.reqs.is_empty() && !is_finalized() {
            let _ = self.wait_all();
        }
    }
}

/// A receive in progress; [`test`](Self::test) polls it.
#[must_use]
pub struct RecvRequest<'a> {
    comm: &'a Comm,
    source: Source,
    tag: TagMatch,
    done: Option<Message>,
}

impl RecvRequest<'_> {
    /// True when the message has arrived (then [`wait`](Self::wait) returns
    /// at once).
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn test(&mut self) -> Result<bool, MpiError> {
        if self.done.is_none() {
            self.done = self.comm.recv(self.source, self.tag, Wait::Now).arrived()?;
        }
        Ok(self.done.is_some())
    }

    /// Waits for the message.
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn wait(self) -> Result<Message, MpiError> {
        match self.done {
            Some(m) => Ok(m),
            None => self.comm.recv(self.source, self.tag, Wait::Forever),
        }
    }
}
