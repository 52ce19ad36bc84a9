//! Shared memory emulated on message passing: a distributed array whose
//! every element is owned by one rank; reads and writes become messages to
//! the owner (or one-sided MPI operations on its memory).
//!
//! [`DistArray<T, B>`] has a global length, block-distributed over the
//! ranks ([`Distribution`]: any rank computes the owner of index `i`), and
//! `get`, `put`, `get_range`, `put_range`, and for integers `fetch_add` and
//! `compare_exchange`. Two backends run behind the same API and the same
//! test suite:
//!
//! - [`OwnerProtocol`]: requests go to the owner as messages on the
//!   array's own channel — a duplicated communicator over MPI, a mailbox
//!   group of its own, or a duplicated hybrid world — and the owner applies
//!   them in arrival order and replies. **The owner serves only while it is
//!   inside a call on the array** (any operation, or [`DistArray::barrier`]);
//!   a rank busy elsewhere delays everyone who reads its elements. With
//!   `DistArray::with_progress_thread` (MPI, needs
//!   `MPI_THREAD_MULTIPLE`) a thread serves at all times: it polls with
//!   `MPI_Improbe`, yields the CPU between polls for a while, then backs
//!   off to sleeping (10 µs doubling up to 1 ms) when idle, so it costs
//!   little CPU but a request to an idle rank may wait that long. A rank
//!   waiting for a reply then polls and yields too, since its own server
//!   may share its core: launch such jobs with `--threads 2` (no binding
//!   of each rank to one core).
//! - `Rma` (feature `mpi`, `DistArray::rma`): MPI one-sided operations,
//!   passive target, on an `RmaWindow`: the owner takes no part.
//!
//! [`ByteArray`] is the same array with an element size chosen at run time
//! (elements as byte strings; what the C and Fortran APIs use), on either
//! backend.
//!
//! # Consistency
//!
//! Every operation is complete when it returns (a put is acknowledged, an
//! RMA operation flushed). Each location is sequentially consistent: its
//! owner (or the MPI library, with accumulate-based RMA) applies the
//! operations on it one at a time, in the order they arrive, and each
//! element is read and written whole (RMA: elements of 1, 2, 4 or 8 bytes;
//! larger ones per 8-byte word). Since operations complete in program
//! order, a rank's operations on different locations also take effect in
//! its program order — e.g. write data, then set a flag: whoever sees the
//! flag and then reads the data sees the data. [`DistArray::barrier`] waits
//! until every rank has arrived, all their earlier operations complete:
//! after it, every read sees every write made before it.
//!
//! # Examples
//!
//! A histogram shared by three threads, each a rank of a mailbox group
//! made for the array:
//!
//! ```
//! use shmpi::dsm::DistArray;
//! use shmpi::mailbox::{MailboxGroup, MailboxOptions};
//!
//! let ranks = MailboxGroup::threads(3, &MailboxOptions::default())?;
//! let results: Vec<shmpi::Result<u64>> = std::thread::scope(|s| {
//!     let handles: Vec<_> = ranks
//!         .into_iter()
//!         .map(|rank| {
//!             s.spawn(move || {
//!                 let me = rank.rank() as u64;
//!                 let mut hist = DistArray::<u64, _>::owner(rank, 8)?;
//!                 for value in [me, me + 1, 7] {
//!                     hist.fetch_add(value as usize, 1)?; // a message unless mine
//!                 }
//!                 hist.barrier()?;                       // all adds complete
//!                 assert!(hist.get(8).is_err());         // past the end
//!                 hist.get(7)
//!             })
//!         })
//!         .collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).collect()
//! });
//! for r in results {
//!     assert_eq!(r?, 3);
//! }
//! # Ok::<(), shmpi::Error>(())
//! ```

mod bytes;
mod owner;
#[cfg(feature = "mpi")]
mod rma;
// Public only for the fuzz target (fuzz/fuzz_targets/dsm_wire.rs): not
// part of the API, hidden from its documentation.
#[doc(hidden)]
pub mod wire;

use std::ops::Range;

use bytemuck::Pod;

use crate::error::{DsmError, Error};
use crate::partition::split_range;

pub use bytes::ByteArray;
pub use owner::OwnerProtocol;
#[cfg(feature = "mpi")]
pub use owner::SharedChannel;
#[cfg(feature = "mpi")]
pub use rma::Rma;

pub use crate::integer::DsmInteger;

/// A block distribution of `len` elements over `ranks` ranks: rank `r`
/// owns [`split_range`]`(len, ranks, r)`.
///
/// # Examples
///
/// ```
/// use shmpi::dsm::Distribution;
///
/// let d = Distribution::new(10, 3);
/// assert_eq!(d.owner_of(3), Some((0, 3)));   // rank 0 owns 0..4
/// assert_eq!(d.owner_of(4), Some((1, 0)));   // rank 1 owns 4..7
/// assert_eq!(d.owner_of(10), None);
/// assert_eq!(d.block(2), 7..10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Distribution {
    len: usize,
    ranks: usize,
}

impl Distribution {
    /// `len` elements over `ranks` ranks (at least one).
    pub fn new(len: usize, ranks: usize) -> Distribution {
        Distribution {
            len,
            ranks: ranks.max(1),
        }
    }

    /// The global length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty array.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The global indices rank `rank` owns.
    pub fn block(&self, rank: usize) -> Range<usize> {
        split_range(self.len, self.ranks, rank)
    }

    /// The owner of global index `index` and its index in the owner's
    /// block (`None` past the end).
    pub fn owner_of(&self, index: usize) -> Option<(usize, usize)> {
        if index >= self.len {
            return None;
        }
        // The first `len % ranks` blocks hold one element more.
        let (base, extra) = (self.len / self.ranks, self.len % self.ranks);
        let big = extra * (base + 1);
        let owner = if index < big {
            index / (base + 1)
        } else {
            extra + (index - big) / base
        };
        Some((owner, index - self.block(owner).start))
    }

    /// `start..start + len` split at owner boundaries: (owner, index in
    /// the owner's block, the part's range within `0..len`).
    ///
    /// # Errors
    ///
    /// [`DsmError::OutOfBounds`] when the range passes the end.
    pub fn parts(
        &self,
        start: usize,
        len: usize,
    ) -> Result<Vec<(usize, usize, Range<usize>)>, DsmError> {
        let end =
            start
                .checked_add(len)
                .filter(|&e| e <= self.len)
                .ok_or(DsmError::OutOfBounds {
                    // The first index of the range outside the array.
                    index: start.max(self.len),
                    len: self.len,
                })?;
        let mut parts = Vec::new();
        let mut at = start;
        while at < end {
            let (owner, local) = self.owner_of(at).ok_or(DsmError::OutOfBounds {
                index: at,
                len: self.len,
            })?;
            let stop = self.block(owner).end.min(end);
            parts.push((owner, local, at - start..stop - start));
            at = stop;
        }
        Ok(parts)
    }
}

/// How a [`DistArray`] reaches an element's owner.
pub trait Backend<T: Pod> {
    /// This rank.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Reads `out.len()` elements of `owner`'s block from `at`.
    ///
    /// # Errors
    ///
    /// The path's errors; an owner's refusal.
    fn read(&mut self, owner: usize, at: usize, out: &mut [T]) -> Result<(), Error>;
    /// Writes `data` into `owner`'s block from `at`, complete on return.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    fn write(&mut self, owner: usize, at: usize, data: &[T]) -> Result<(), Error>;
    /// Reads the parts of a range ([`Distribution::parts`]: owner, index
    /// in its block, part of `out`); by default one [`read`](Self::read)
    /// after another.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    fn read_parts(
        &mut self,
        parts: &[(usize, usize, Range<usize>)],
        out: &mut [T],
    ) -> Result<(), Error> {
        for (owner, at, part) in parts {
            self.read(*owner, *at, &mut out[part.clone()])?;
        }
        Ok(())
    }
    /// Writes the parts of a range; by default one [`write`](Self::write)
    /// after another.
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write).
    fn write_parts(
        &mut self,
        parts: &[(usize, usize, Range<usize>)],
        data: &[T],
    ) -> Result<(), Error> {
        for (owner, at, part) in parts {
            self.write(*owner, *at, &data[part.clone()])?;
        }
        Ok(())
    }
    /// Adds `value` to `owner`'s element `at`; returns the previous value.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    fn fetch_add(&mut self, owner: usize, at: usize, value: T) -> Result<T, Error>
    where
        T: DsmInteger;
    /// Sets `owner`'s element `at` to `new` if it is `current`; returns
    /// the value it had.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    fn compare_and_swap(&mut self, owner: usize, at: usize, current: T, new: T) -> Result<T, Error>
    where
        T: DsmInteger;
    /// Waits for every rank, completing everyone's earlier operations.
    ///
    /// # Errors
    ///
    /// The path's errors.
    fn barrier(&mut self) -> Result<(), Error>;
}

/// A global array of `T`, block-distributed over ranks; see the [module
/// documentation](self) for the backends and the consistency model.
#[derive(Debug)]
pub struct DistArray<T: Pod, B: Backend<T>> {
    dist: Distribution,
    /// `T`s per element: 1 for a typed array; a [`ByteArray`]'s elements
    /// are several words of `T`, each element whole on one owner.
    words: usize,
    backend: B,
    _t: std::marker::PhantomData<T>,
}

impl<T: Pod, B: Backend<T>> DistArray<T, B> {
    /// An array of `len` elements of `words` `T`s each over `backend`
    /// (which has checked that all ranks agree on `len` and the element).
    pub(crate) fn from_backend(backend: B, len: usize, words: usize) -> DistArray<T, B> {
        DistArray {
            dist: Distribution::new(len, backend.size()),
            words: words.max(1),
            backend,
            _t: std::marker::PhantomData,
        }
    }

    /// The global length.
    pub fn len(&self) -> usize {
        self.dist.len()
    }

    /// True for an empty array.
    pub fn is_empty(&self) -> bool {
        self.dist.is_empty()
    }

    /// The distribution (who owns what).
    pub fn distribution(&self) -> Distribution {
        self.dist
    }

    /// The global indices this rank owns.
    pub fn local_range(&self) -> Range<usize> {
        self.dist.block(self.backend.rank())
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The owner of element `index` and the element's first word in the
    /// owner's block.
    fn locate(&self, index: usize) -> Result<(usize, usize), DsmError> {
        let (owner, at) = self.dist.owner_of(index).ok_or(DsmError::OutOfBounds {
            index,
            len: self.dist.len(),
        })?;
        Ok((owner, at * self.words))
    }

    /// The parts of `count` elements from `start` in words: (owner, first
    /// word in its block, the part's words within the buffer).
    fn word_parts(
        &self,
        start: usize,
        count: usize,
    ) -> Result<Vec<(usize, usize, Range<usize>)>, DsmError> {
        let w = self.words;
        Ok(self
            .dist
            .parts(start, count)?
            .into_iter()
            .map(|(owner, at, part)| (owner, at * w, part.start * w..part.end * w))
            .collect())
    }

    /// Element `index`.
    ///
    /// # Errors
    ///
    /// [`DsmError::OutOfBounds`]; the backend's errors.
    pub fn get(&mut self, index: usize) -> Result<T, Error> {
        let (owner, at) = self.locate(index)?;
        let mut out = [T::zeroed()];
        self.backend.read(owner, at, &mut out)?;
        Ok(out[0])
    }

    /// Sets element `index`.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn put(&mut self, index: usize, value: T) -> Result<(), Error> {
        let (owner, at) = self.locate(index)?;
        self.backend.write(owner, at, &[value])
    }

    /// Reads `out.len()` elements from `start` (one request per owner; the
    /// owner protocol has them all in flight at once).
    ///
    /// # Errors
    ///
    /// [`DsmError::OutOfBounds`] when the range passes the end (nothing is
    /// read); the backend's errors.
    pub fn get_range(&mut self, start: usize, out: &mut [T]) -> Result<(), Error> {
        let parts = self.word_parts(start, out.len() / self.words)?;
        self.backend.read_parts(&parts, out)
    }

    /// Writes `data` from `start` (one request per owner).
    ///
    /// # Errors
    ///
    /// As [`get_range`](Self::get_range) (nothing is written when the
    /// range passes the end).
    pub fn put_range(&mut self, start: usize, data: &[T]) -> Result<(), Error> {
        let parts = self.word_parts(start, data.len() / self.words)?;
        self.backend.write_parts(&parts, data)
    }

    /// Waits for every rank; afterwards every read sees every write made
    /// before the barrier (see the module's consistency model).
    ///
    /// # Errors
    ///
    /// The backend's errors.
    pub fn barrier(&mut self) -> Result<(), Error> {
        self.backend.barrier()
    }
}

impl<T: DsmInteger, B: Backend<T>> DistArray<T, B> {
    /// Adds `value` to element `index` atomically (wrapping); returns its
    /// previous value.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn fetch_add(&mut self, index: usize, value: T) -> Result<T, Error> {
        let (owner, at) = self.locate(index)?;
        self.backend.fetch_add(owner, at, value)
    }

    /// Sets element `index` to `new` if it equals `current`, atomically:
    /// `Ok(previous)` when it did, `Err(actual)` when the element held
    /// another value (as `AtomicU64::compare_exchange`).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get) (the outer `Result`).
    pub fn compare_exchange(
        &mut self,
        index: usize,
        current: T,
        new: T,
    ) -> Result<Result<T, T>, Error> {
        let (owner, at) = self.locate(index)?;
        let old = self.backend.compare_and_swap(owner, at, current, new)?;
        Ok(if old == current { Ok(old) } else { Err(old) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn owner_of_agrees_with_the_blocks(len in 0usize..500, ranks in 1usize..17) {
            let d = Distribution::new(len, ranks);
            for r in 0..ranks {
                for (k, i) in d.block(r).enumerate() {
                    prop_assert_eq!(d.owner_of(i), Some((r, k)));
                }
            }
            prop_assert_eq!(d.owner_of(len), None);
        }

        #[test]
        fn parts_cover_a_range_exactly(len in 0usize..300, ranks in 1usize..9, start in 0usize..300, n in 0usize..300) {
            let d = Distribution::new(len, ranks);
            match d.parts(start, n) {
                Ok(parts) => {
                    prop_assert!(start + n <= len);
                    let mut next = 0;
                    for (owner, at, part) in parts {
                        prop_assert_eq!(part.start, next);
                        prop_assert_eq!(d.owner_of(start + part.start), Some((owner, at)));
                        prop_assert!(d.block(owner).contains(&(start + part.end - 1)));
                        next = part.end;
                    }
                    prop_assert_eq!(next, n);
                }
                Err(DsmError::OutOfBounds { len: l, .. }) => {
                    prop_assert!(start + n > len);
                    prop_assert_eq!(l, len);
                }
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}
