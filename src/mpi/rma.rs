//! One-sided MPI (RMA): windows held in a passive-target epoch on every
//! rank for their whole life, with element-atomic reads and writes.
//!
//! Plain `MPI_Put`/`MPI_Get` give no atomicity when two ranks touch one
//! location; accumulate operations do, per basic element. So reads are
//! `MPI_Get_accumulate(MPI_NO_OP)`, writes `MPI_Accumulate(MPI_REPLACE)`,
//! and integer updates `MPI_Fetch_and_op` and `MPI_Compare_and_swap`;
//! every operation is completed (`MPI_Win_flush`) before it returns.
//! Elements are moved as unsigned integers of the widest size (8, 4, 2 or 1
//! bytes) that divides the element's size and alignment, so an element of
//! 1, 2, 4 or 8 bytes is read and written atomically as a whole; a larger
//! one atomically per such word.
//!
//! Debian's Open MPI 4.1 selects the `rdma` one-sided component by default,
//! whose compare-and-swap crashes (Open MPI #7967, #11349) and which cannot
//! make windows across hosts over TCP. [`RmaWindow::new`] reads the `osc`
//! setting through the MPI tools interface and refuses to create a window
//! where `rdma` could be picked ([`MpiError::OneSidedUnsupported`]); the
//! library's launcher selects `sm,ucx`.

use std::ffi::{c_char, c_int, c_void};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use bytemuck::Pod;
use rsmpi::ffi;

use super::{check, Comm};
use crate::error::MpiError;

extern "C" {
    fn shmpi_op_replace() -> ffi::MPI_Op;
    fn shmpi_op_no_op() -> ffi::MPI_Op;
    fn shmpi_cvar_string(name: *const c_char, buf: *mut c_char, len: c_int) -> c_int;
}

/// Open MPI's one-sided component setting (`osc`), read through the MPI
/// tools interface once per process (it cannot change while MPI runs);
/// `None` where the MPI has no such variable (MPICH).
pub fn osc_setting() -> Option<String> {
    static SETTING: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    SETTING.get_or_init(read_osc_setting).clone()
}

fn read_osc_setting() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: a NUL-terminated name and a buffer of the length passed; the
    // shim always terminates what it writes.
    let rc = unsafe { shmpi_cvar_string(c"osc".as_ptr(), buf.as_mut_ptr().cast(), 256) };
    (rc == 0).then(|| {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    })
}

/// Whether an `osc` setting keeps Open MPI's `rdma` component out: a list
/// of components without it, or an exclusion list (`^...`) naming it.
fn rdma_excluded(setting: &str) -> bool {
    let (exclude, list) = match setting.trim().strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, setting.trim()),
    };
    let names: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if exclude {
        names.contains(&"rdma")
    } else {
        !names.is_empty() && !names.contains(&"rdma")
    }
}

/// `Ok` when one-sided operations are safe with this MPI's setup.
///
/// # Errors
///
/// [`MpiError::OneSidedUnsupported`] when Open MPI may pick `rdma`.
pub fn check_one_sided() -> Result<(), MpiError> {
    match osc_setting() {
        Some(setting) if !rdma_excluded(&setting) => Err(MpiError::OneSidedUnsupported {
            setting,
            reason: "the `rdma` component may be selected, and its compare-and-swap crashes",
        }),
        _ => Ok(()),
    }
}

/// An MPI shared-memory window (`MPI_Win_allocate_shared`) over the ranks
/// of a communicator that share a node, and one rank's memory in it
/// (`MPI_Win_shared_query`), which every rank can load and store. Creating
/// and dropping it are collective over the communicator.
pub struct SharedWindow {
    window: Window,
    base: NonNull<u8>,
    len: usize,
}

impl SharedWindow {
    /// Allocates `bytes` bytes on this rank (the others give theirs) and
    /// maps rank `owner`'s memory.
    ///
    /// # Collective
    ///
    /// Over `comm`, whose ranks must share a node
    /// (`MPI_COMM_TYPE_SHARED`).
    ///
    /// # Errors
    ///
    /// MPI's error; [`MpiError::SharedWindow`] for a null base.
    pub fn allocate(comm: &Comm, bytes: usize, owner: usize) -> Result<SharedWindow, MpiError> {
        let mut base: *mut c_void = std::ptr::null_mut();
        let mut win = MaybeUninit::uninit();
        let owner = c_int::try_from(owner).map_err(|_| MpiError::InvalidRank {
            rank: owner,
            size: comm.size(),
        })?;
        // SAFETY: our communicator; out-pointers to locals (baseptr is a
        // pointer to a pointer, as MPI specifies).
        check("MPI_Win_allocate_shared", unsafe {
            ffi::MPI_Win_allocate_shared(
                bytes as ffi::MPI_Aint,
                1,
                ffi::RSMPI_INFO_NULL,
                comm.as_raw(),
                (&mut base as *mut *mut c_void).cast(),
                win.as_mut_ptr(),
            )
        })?;
        // SAFETY: created by the successful call above, owned here; from
        // here it is freed on every error path by its Drop.
        let window = unsafe { Window::adopt(win.assume_init())? };
        let (mut size, mut disp) = (0 as ffi::MPI_Aint, 0);
        let mut shared: *mut c_void = std::ptr::null_mut();
        // SAFETY: our window; out-pointers to locals.
        check("MPI_Win_shared_query", unsafe {
            ffi::MPI_Win_shared_query(
                window.win,
                owner,
                &mut size,
                &mut disp,
                (&mut shared as *mut *mut c_void).cast(),
            )
        })?;
        let base = NonNull::new(shared.cast::<u8>()).ok_or(MpiError::SharedWindow {
            what: "the base address",
            found: 0,
            expected: 1,
        })?;
        Ok(SharedWindow {
            window,
            base,
            len: usize::try_from(size).unwrap_or(0),
        })
    }

    /// The owner's memory.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for no memory.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `MPI_Win_sync`: orders this process's loads and stores to the
    /// window's memory with the other processes' (unified memory model;
    /// around a barrier).
    ///
    /// # Errors
    ///
    /// MPI's error.
    pub fn sync(&self) -> Result<(), MpiError> {
        self.window.sync()
    }
}

impl std::fmt::Debug for SharedWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWindow")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// An MPI window, locked for passive access (`MPI_Win_lock_all`) for its
/// life; freeing it is collective.
pub(crate) struct Window {
    pub(crate) win: ffi::MPI_Win,
    locked: bool,
}

impl Window {
    /// Takes a freshly created window: sets `MPI_ERRORS_RETURN` and opens
    /// the passive epoch. On error the window is freed.
    ///
    /// # Safety
    ///
    /// `win` must be a valid window this process created and owns.
    pub(crate) unsafe fn adopt(win: ffi::MPI_Win) -> Result<Window, MpiError> {
        let mut window = Window { win, locked: false };
        // SAFETY: a valid window (caller's contract); ERRORS_RETURN is a
        // predefined handler. On failure `window`'s Drop frees it.
        unsafe {
            check(
                "MPI_Win_set_errhandler",
                ffi::MPI_Win_set_errhandler(window.win, ffi::RSMPI_ERRORS_RETURN),
            )?;
            check(
                "MPI_Win_lock_all",
                ffi::MPI_Win_lock_all(ffi::MPI_MODE_NOCHECK as c_int, window.win),
            )?;
        }
        window.locked = true;
        Ok(window)
    }

    /// `MPI_Win_sync`: orders this process's loads and stores to the
    /// window's memory with other processes' (unified memory model).
    pub(crate) fn sync(&self) -> Result<(), MpiError> {
        // SAFETY: our window, in a passive epoch.
        check("MPI_Win_sync", unsafe { ffi::MPI_Win_sync(self.win) })
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        if !crate::mpi::is_finalized() {
            // SAFETY: our window (unlocked only if lock_all succeeded);
            // freeing is collective (documented on every owner of a Window).
            unsafe {
                if self.locked {
                    ffi::MPI_Win_unlock_all(self.win);
                }
                ffi::MPI_Win_free(&mut self.win);
            }
        }
    }
}

/// How elements of `T` travel: as `count` unsigned integers of `unit` bytes.
#[derive(Debug, Clone, Copy)]
struct Unit {
    bytes: usize,
    per_elem: usize,
}

impl Unit {
    fn of<T: Pod>() -> Unit {
        let (size, align) = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
        let bytes = [8, 4, 2, 1]
            .into_iter()
            .find(|&u| size % u == 0 && align >= u)
            .unwrap_or(1);
        Unit {
            bytes,
            per_elem: size / bytes,
        }
    }

    fn datatype(self) -> ffi::MPI_Datatype {
        // SAFETY: reading rsmpi's constant statics (set at load time).
        unsafe {
            match self.bytes {
                8 => ffi::RSMPI_UINT64_T,
                4 => ffi::RSMPI_UINT32_T,
                2 => ffi::RSMPI_UINT16_T,
                _ => ffi::RSMPI_UINT8_T,
            }
        }
    }
}

/// The most units one MPI call moves here (its counts are `int`s).
const MAX_UNITS_PER_CALL: usize = 1 << 30;

/// This machine's page size.
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096).max(1)
}

/// A window of `len` elements of `T` on every rank of a communicator (each
/// rank's own block), accessed one-sidedly with element atomicity.
/// Creating and dropping it are collective over the communicator.
///
/// # Examples
///
/// ```no_run
/// use shmpi::mpi::{Mpi, RmaWindow, ThreadLevel};
///
/// let mpi = Mpi::init(ThreadLevel::Single)?;
/// let world = mpi.dup_world()?;
/// let win = RmaWindow::<u64>::new(&world, 4)?;       // 4 counters per rank
/// let before = win.fetch_add(0, 2, 1)?;               // rank 0's third counter
/// win.barrier()?;
/// let mut all = [0u64; 4];
/// win.get(0, 0, &mut all)?;
/// assert_eq!(all[2], world.size() as u64);
/// # let _ = before;
/// # Ok::<(), shmpi::Error>(())
/// ```
pub struct RmaWindow<T: Pod> {
    window: Window,
    comm: Comm,
    len: usize,
    unit: Unit,
    _t: PhantomData<T>,
}

impl<T: Pod> RmaWindow<T> {
    /// Allocates `len` zeroed elements on this rank (`MPI_Win_allocate`
    /// over a duplicate of `comm`). Collective.
    ///
    /// # Errors
    ///
    /// [`MpiError::OneSidedUnsupported`] where the MPI's one-sided setup
    /// could crash; MPI's errors.
    pub fn new(comm: &Comm, len: usize) -> Result<RmaWindow<T>, MpiError> {
        check_one_sided()?;
        let comm = comm.dup()?;
        let unit = Unit::of::<T>();
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .filter(|&b| isize::try_from(b).is_ok())
            .ok_or(MpiError::CountTooLarge { count: len })?;
        // Whole pages: MPICH 4.0.2 (Debian 12) misplaces the targets of a
        // window whose sizes are not page multiples, when its ranks share
        // memory — rank 1's element 0 was rank 0's last (found by the
        // distributed-array suite under MPICH; reproduced in plain C).
        let allocated = bytes
            .checked_next_multiple_of(page_size())
            .filter(|&b| isize::try_from(b).is_ok())
            .ok_or(MpiError::CountTooLarge { count: len })?;
        let mut base: *mut c_void = std::ptr::null_mut();
        let mut win = MaybeUninit::uninit();
        // SAFETY: our communicator; baseptr is a pointer to a pointer, as
        // MPI specifies; the window handle is written on success.
        check("MPI_Win_allocate", unsafe {
            ffi::MPI_Win_allocate(
                allocated as ffi::MPI_Aint,
                unit.bytes as c_int,
                ffi::RSMPI_INFO_NULL,
                comm.as_raw(),
                (&mut base as *mut *mut c_void).cast(),
                win.as_mut_ptr(),
            )
        })?;
        // SAFETY: created by the successful call above, owned here.
        let window = unsafe { Window::adopt(win.assume_init())? };
        if let Some(base) = NonNull::new(base.cast::<u8>()).filter(|_| bytes > 0) {
            // SAFETY: MPI allocated `bytes` bytes at base for us; zeroing
            // them before anyone can access them (the barrier below).
            unsafe { std::ptr::write_bytes(base.as_ptr(), 0, bytes) };
        }
        window.sync()?;
        comm.barrier()?;
        window.sync()?;
        Ok(RmaWindow {
            window,
            comm,
            len,
            unit,
            _t: PhantomData,
        })
    }

    /// Elements on this rank.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when this rank holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The window's communicator (a duplicate).
    pub fn comm(&self) -> &Comm {
        &self.comm
    }

    fn target(&self, rank: usize) -> Result<c_int, MpiError> {
        if rank < self.comm.size() {
            Ok(rank as c_int)
        } else {
            Err(MpiError::InvalidRank {
                rank,
                size: self.comm.size(),
            })
        }
    }

    fn flush(&self, target: c_int) -> Result<(), MpiError> {
        // SAFETY: our window, in its passive epoch; a valid rank.
        check("MPI_Win_flush", unsafe {
            ffi::MPI_Win_flush(target, self.window.win)
        })?;
        if target as usize == self.comm.rank() {
            // An operation on our own memory completes locally, without
            // driving MPI's progress engine; but where atomics travel as
            // messages (UCX over TCP), other ranks' operations on our
            // memory need it. A rank spinning on its own element would
            // otherwise starve them forever (seen across the namespace
            // hosts: a spin lock that was never released). MPI_Iprobe
            // drives it.
            self.comm.iprobe(
                crate::transport::Source::Any,
                crate::transport::TagMatch::Any,
            )?;
        }
        Ok(())
    }

    /// Runs `op(units done, units now)` over `elems` elements in calls of
    /// at most [`MAX_UNITS_PER_CALL`] units, then flushes `target`.
    fn chunked(
        &self,
        target: c_int,
        elems: usize,
        mut op: impl FnMut(usize, c_int) -> Result<(), MpiError>,
    ) -> Result<(), MpiError> {
        let total = elems * self.unit.per_elem;
        let mut done = 0;
        while done < total {
            let now = (total - done).min(MAX_UNITS_PER_CALL);
            op(done, now as c_int)?;
            done += now;
        }
        self.flush(target)
    }

    /// Reads `out.len()` elements of rank `rank` from its element `at`,
    /// each element atomically (`MPI_Get_accumulate` with `MPI_NO_OP`).
    ///
    /// # Errors
    ///
    /// An invalid rank; MPI's errors (a range past the rank's block is
    /// MPI's `MPI_ERR_RMA_RANGE` — [`DistArray`](crate::dsm::DistArray)
    /// checks bounds before it gets here).
    pub fn get(&self, rank: usize, at: usize, out: &mut [T]) -> Result<(), MpiError> {
        let target = self.target(rank)?;
        let (dtype, first) = (self.unit.datatype(), at * self.unit.per_elem);
        let dst = out.as_mut_ptr().cast::<u8>();
        self.chunked(target, out.len(), |done, n| {
            // SAFETY: `out` holds `n` units from `done` (chunked stays in
            // its length); the origin buffer is ignored with MPI_NO_OP.
            check("MPI_Get_accumulate", unsafe {
                ffi::MPI_Get_accumulate(
                    std::ptr::null(),
                    0,
                    dtype,
                    dst.add(done * self.unit.bytes).cast(),
                    n,
                    dtype,
                    target,
                    (first + done) as ffi::MPI_Aint,
                    n,
                    dtype,
                    shmpi_op_no_op(),
                    self.window.win,
                )
            })
        })
    }

    /// Writes `data` to rank `rank`'s elements from `at`, each element
    /// atomically (`MPI_Accumulate` with `MPI_REPLACE`), complete on return.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn put(&self, rank: usize, at: usize, data: &[T]) -> Result<(), MpiError> {
        let target = self.target(rank)?;
        let (dtype, first) = (self.unit.datatype(), at * self.unit.per_elem);
        let src = data.as_ptr().cast::<u8>();
        self.chunked(target, data.len(), |done, n| {
            // SAFETY: `data` holds `n` units from `done`; MPI only reads it.
            check("MPI_Accumulate", unsafe {
                ffi::MPI_Accumulate(
                    src.add(done * self.unit.bytes).cast(),
                    n,
                    dtype,
                    target,
                    (first + done) as ffi::MPI_Aint,
                    n,
                    dtype,
                    shmpi_op_replace(),
                    self.window.win,
                )
            })
        })
    }

    /// Completes every operation this rank started, then a barrier over
    /// the window's communicator, with `MPI_Win_sync` around it: after it,
    /// every rank sees every element as it was left before the barrier.
    ///
    /// # Errors
    ///
    /// MPI's errors.
    pub fn barrier(&self) -> Result<(), MpiError> {
        // SAFETY: our window, in its passive epoch.
        check("MPI_Win_flush_all", unsafe {
            ffi::MPI_Win_flush_all(self.window.win)
        })?;
        self.window.sync()?;
        self.comm.barrier()?;
        self.window.sync()
    }
}

impl<T: crate::integer::DsmInteger> RmaWindow<T> {
    /// Adds `value` to rank `rank`'s element `at` and returns its previous
    /// value, atomically (`MPI_Fetch_and_op` with `MPI_SUM`).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn fetch_add(&self, rank: usize, at: usize, value: T) -> Result<T, MpiError> {
        let target = self.target(rank)?;
        let mut old = T::zeroed();
        // SAFETY: one element in, one out (T is one unit: DsmInteger types
        // are 1, 2, 4 or 8 bytes).
        check("MPI_Fetch_and_op", unsafe {
            ffi::MPI_Fetch_and_op(
                (&value as *const T).cast(),
                (&mut old as *mut T).cast(),
                self.unit.datatype(),
                target,
                at as ffi::MPI_Aint,
                ffi::RSMPI_SUM,
                self.window.win,
            )
        })?;
        self.flush(target)?;
        Ok(old)
    }

    /// Sets rank `rank`'s element `at` to `new` if it equals `current`;
    /// returns the value it had (equal to `current` when it was swapped).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn compare_and_swap(
        &self,
        rank: usize,
        at: usize,
        current: T,
        new: T,
    ) -> Result<T, MpiError> {
        let target = self.target(rank)?;
        let mut old = T::zeroed();
        // SAFETY: one element each for origin, compare and result.
        check("MPI_Compare_and_swap", unsafe {
            ffi::MPI_Compare_and_swap(
                (&new as *const T).cast(),
                (&current as *const T).cast(),
                (&mut old as *mut T).cast(),
                self.unit.datatype(),
                target,
                at as ffi::MPI_Aint,
                self.window.win,
            )
        })?;
        self.flush(target)?;
        Ok(old)
    }
}

impl<T: Pod> std::fmt::Debug for RmaWindow<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RmaWindow")
            .field("len", &self.len)
            .field("unit_bytes", &self.unit.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdma_is_excluded_only_when_the_setting_keeps_it_out() {
        assert!(rdma_excluded("sm,ucx"));
        assert!(rdma_excluded(" ^rdma "));
        assert!(rdma_excluded("^ucx,rdma"));
        assert!(!rdma_excluded("^ucx,pt2pt")); // Debian's default
        assert!(!rdma_excluded(""));
        assert!(!rdma_excluded("rdma,sm"));
    }

    #[test]
    fn elements_travel_as_the_widest_fitting_unsigned_words() {
        assert_eq!(Unit::of::<u64>().bytes, 8);
        assert_eq!(Unit::of::<f32>().bytes, 4);
        assert_eq!(
            (
                Unit::of::<[u32; 3]>().bytes,
                Unit::of::<[u32; 3]>().per_elem
            ),
            (4, 3)
        );
        assert_eq!(Unit::of::<[u8; 3]>().bytes, 1);
        assert_eq!(Unit::of::<u128>().per_elem, 2);
    }
}
