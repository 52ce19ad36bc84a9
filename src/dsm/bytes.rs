//! Distributed arrays whose element size is known only at run time — a C
//! `sizeof`, a Fortran `storage_size` — with elements as byte strings.

use std::ops::Range;

use super::{Backend, DistArray, Distribution, DsmInteger, OwnerProtocol};
use crate::error::{DsmError, Error};
use crate::transport::Transport;

/// A distributed array of `elem_size`-byte elements, the size chosen at run
/// time: the [`DistArray`] of callers that have bytes, not a Rust type (the
/// C and Fortran APIs). Elements are block-distributed like a `DistArray`'s
/// (every element whole on one owner) and moved as words of the widest of
/// 8, 4, 2 or 1 bytes that divides `elem_size`; buffers are byte slices of
/// whole elements, any alignment.
///
/// **Atomicity**: an element of 1, 2, 4 or 8 bytes is read and written
/// whole, on both backends — the only sizes for which it is promised. A
/// larger element is whole under the owner protocol (the owner applies a
/// request at once) but only per word with `rma` (MPI's accumulate
/// operations are atomic per basic element): two ranks writing one 12-byte
/// element at once may leave words of each. [`fetch_add`](Self::fetch_add)
/// and [`compare_exchange`](Self::compare_exchange) take elements of 4 or
/// 8 bytes as native-endian integers (wrapping addition, the same for
/// signed and unsigned): the sizes network atomics have — UCX, Open MPI's
/// one-sided transport between hosts, has no 1- or 2-byte atomic
/// operations.
///
/// The consistency model and the owner protocol's serving rule are the
/// [module's](super).
///
/// # Examples
///
/// Three threads, each a rank of a mailbox group, share an array of
/// 12-byte elements (three `f32`s):
///
/// ```
/// use shmpi::dsm::ByteArray;
/// use shmpi::mailbox::{MailboxGroup, MailboxOptions};
///
/// let ranks = MailboxGroup::threads(3, &MailboxOptions::default())?;
/// std::thread::scope(|s| {
///     for rank in ranks {
///         s.spawn(move || -> shmpi::Result<()> {
///             let me = rank.rank();
///             let mut points = ByteArray::owner(rank, 3, 12)?;
///             let mine: [f32; 3] = [me as f32, 1.0, 2.0];
///             points.put(me, bytemuck::bytes_of(&mine))?;
///             points.barrier()?;
///             let mut all = [0u8; 36];
///             points.get_range(0, &mut all)?;
///             let all: [[f32; 3]; 3] = bytemuck::pod_read_unaligned(&all);
///             assert_eq!(all[2], [2.0, 1.0, 2.0]);
///             assert!(points.fetch_add(0, &[1; 12], &mut [0; 12]).is_err()); // not an integer
///             points.barrier()
///         });
///     }
/// });
/// # Ok::<(), shmpi::Error>(())
/// ```
pub struct ByteArray {
    elem_size: usize,
    words: Box<dyn Words>,
}

impl std::fmt::Debug for ByteArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteArray")
            .field("len", &self.len())
            .field("elem_size", &self.elem_size)
            .finish()
    }
}

/// Builds the array for the word type `elem_size` calls for.
macro_rules! by_word {
    ($elem_size:expr, $w:ident => $make:expr) => {{
        let elem_size: usize = $elem_size;
        if elem_size == 0 {
            return Err(DsmError::ElementSize {
                what: "an element of no bytes",
                len: 0,
                elem_size,
            }
            .into());
        }
        let words: Box<dyn Words> = match elem_size {
            s if s % 8 == 0 => {
                type $w = u64;
                Box::new($make)
            }
            s if s % 4 == 0 => {
                type $w = u32;
                Box::new($make)
            }
            s if s % 2 == 0 => {
                type $w = u16;
                Box::new($make)
            }
            _ => {
                type $w = u8;
                Box::new($make)
            }
        };
        Ok(ByteArray { elem_size, words })
    }};
}

impl ByteArray {
    /// A zeroed array of `len` elements of `elem_size` bytes served by the
    /// owner protocol over `channel`, which must be the array's alone (as
    /// [`DistArray::owner`]). Collective.
    ///
    /// # Errors
    ///
    /// [`DsmError::ElementSize`] for `elem_size` 0;
    /// [`DsmError::Disagreement`] when the ranks' `len` or `elem_size`
    /// differ; the channel's errors.
    pub fn owner<C: Transport + 'static>(
        channel: C,
        len: usize,
        elem_size: usize,
    ) -> Result<ByteArray, Error>
    where
        Error: From<C::Error>,
    {
        by_word!(elem_size, W => DistArray::<W, OwnerProtocol<W, C>>::owner_words(
            channel,
            len,
            elem_size / std::mem::size_of::<W>(),
        )?)
    }

    /// A zeroed array of `len` elements of `elem_size` bytes in an MPI
    /// window over (a duplicate of) `comm` (as [`DistArray::rma`]).
    /// Collective.
    ///
    /// # Errors
    ///
    /// As [`owner`](Self::owner); as [`DistArray::rma`].
    #[cfg(feature = "mpi")]
    pub fn rma(comm: &crate::mpi::Comm, len: usize, elem_size: usize) -> Result<ByteArray, Error> {
        by_word!(elem_size, W => DistArray::<W, super::Rma<W>>::rma_words(
            comm,
            len,
            elem_size / std::mem::size_of::<W>(),
        )?)
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.words.rank()
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.words.size()
    }

    /// Bytes per element.
    pub fn elem_size(&self) -> usize {
        self.elem_size
    }

    /// The global length, in elements.
    pub fn len(&self) -> usize {
        self.words.distribution().len()
    }

    /// True for an empty array.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The distribution (who owns which elements).
    pub fn distribution(&self) -> Distribution {
        self.words.distribution()
    }

    /// The global indices of the elements this rank owns.
    pub fn local_range(&self) -> Range<usize> {
        self.words.local_range()
    }

    /// The number of elements in `len` bytes.
    fn elements(&self, what: &'static str, len: usize) -> Result<usize, DsmError> {
        if len.is_multiple_of(self.elem_size) {
            Ok(len / self.elem_size)
        } else {
            Err(DsmError::ElementSize {
                what,
                len,
                elem_size: self.elem_size,
            })
        }
    }

    /// Checks that `len` bytes are one element.
    fn one(&self, what: &'static str, len: usize) -> Result<(), DsmError> {
        match self.elements(what, len)? {
            1 => Ok(()),
            _ => Err(DsmError::ElementSize {
                what,
                len,
                elem_size: self.elem_size,
            }),
        }
    }

    /// Reads element `index` into `out` (`elem_size` bytes).
    ///
    /// # Errors
    ///
    /// [`DsmError::ElementSize`] when `out` is not one element;
    /// [`DsmError::OutOfBounds`]; the backend's errors.
    pub fn get(&mut self, index: usize, out: &mut [u8]) -> Result<(), Error> {
        self.one("the element buffer", out.len())?;
        self.words.get_range(index, out)
    }

    /// Writes element `index` from `value` (`elem_size` bytes).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn put(&mut self, index: usize, value: &[u8]) -> Result<(), Error> {
        self.one("the element", value.len())?;
        self.words.put_range(index, value)
    }

    /// Reads whole elements from `start` into `out` (one request per owner).
    ///
    /// # Errors
    ///
    /// [`DsmError::ElementSize`] when `out` is not whole elements;
    /// [`DsmError::OutOfBounds`] when the range passes the end (nothing is
    /// read); the backend's errors.
    pub fn get_range(&mut self, start: usize, out: &mut [u8]) -> Result<(), Error> {
        self.elements("the range buffer", out.len())?;
        self.words.get_range(start, out)
    }

    /// Writes whole elements from `data` at `start` (one request per owner).
    ///
    /// # Errors
    ///
    /// As [`get_range`](Self::get_range) (nothing is written when the
    /// range passes the end).
    pub fn put_range(&mut self, start: usize, data: &[u8]) -> Result<(), Error> {
        self.elements("the range data", data.len())?;
        self.words.put_range(start, data)
    }

    /// Checks that the elements are integers the array can add and compare.
    fn integers(&self) -> Result<(), DsmError> {
        if [4, 8].contains(&self.elem_size) {
            Ok(())
        } else {
            Err(DsmError::ElementSize {
                what: "integer operations need elements of 4 or 8 bytes",
                len: self.elem_size,
                elem_size: self.elem_size,
            })
        }
    }

    /// Adds `addend` to element `index` atomically (native-endian integers,
    /// wrapping); its previous value goes to `previous`.
    ///
    /// # Errors
    ///
    /// [`DsmError::ElementSize`] unless the elements are 4 or 8 bytes
    /// and both buffers one element; as [`get`](Self::get).
    pub fn fetch_add(
        &mut self,
        index: usize,
        addend: &[u8],
        previous: &mut [u8],
    ) -> Result<(), Error> {
        self.integers()?;
        self.one("the addend", addend.len())?;
        self.one("the previous-value buffer", previous.len())?;
        self.words.fetch_add(index, addend, previous)
    }

    /// Sets element `index` to `new` if it holds `current`, atomically
    /// (bitwise comparison); the value it held goes to `previous`. True
    /// when it was replaced.
    ///
    /// # Errors
    ///
    /// As [`fetch_add`](Self::fetch_add).
    pub fn compare_exchange(
        &mut self,
        index: usize,
        current: &[u8],
        new: &[u8],
        previous: &mut [u8],
    ) -> Result<bool, Error> {
        self.integers()?;
        self.one("the expected value", current.len())?;
        self.one("the new value", new.len())?;
        self.one("the previous-value buffer", previous.len())?;
        self.words.compare_exchange(index, current, new, previous)
    }

    /// Waits for every rank; afterwards every read sees every write made
    /// before it (as [`DistArray::barrier`]).
    ///
    /// # Errors
    ///
    /// The backend's errors.
    pub fn barrier(&mut self) -> Result<(), Error> {
        self.words.barrier()
    }
}

/// A `DistArray` of some word type, seen in bytes. Lengths are checked by
/// [`ByteArray`] before a call: buffers are whole elements, integer
/// operations one word.
trait Words {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    fn distribution(&self) -> Distribution;
    fn local_range(&self) -> Range<usize>;
    fn get_range(&mut self, start: usize, out: &mut [u8]) -> Result<(), Error>;
    fn put_range(&mut self, start: usize, data: &[u8]) -> Result<(), Error>;
    fn fetch_add(&mut self, index: usize, addend: &[u8], previous: &mut [u8]) -> Result<(), Error>;
    fn compare_exchange(
        &mut self,
        index: usize,
        current: &[u8],
        new: &[u8],
        previous: &mut [u8],
    ) -> Result<bool, Error>;
    fn barrier(&mut self) -> Result<(), Error>;
}

impl<W: DsmInteger, B: Backend<W>> Words for DistArray<W, B> {
    fn rank(&self) -> usize {
        self.backend().rank()
    }

    fn size(&self) -> usize {
        self.backend().size()
    }

    fn distribution(&self) -> Distribution {
        DistArray::distribution(self)
    }

    fn local_range(&self) -> Range<usize> {
        DistArray::local_range(self)
    }

    fn get_range(&mut self, start: usize, out: &mut [u8]) -> Result<(), Error> {
        // In place when the caller's buffer is aligned for words.
        if let Ok(words) = bytemuck::try_cast_slice_mut::<u8, W>(out) {
            return DistArray::get_range(self, start, words);
        }
        let mut words = vec![W::zeroed(); out.len() / std::mem::size_of::<W>()];
        DistArray::get_range(self, start, &mut words)?;
        out.copy_from_slice(bytemuck::cast_slice(&words));
        Ok(())
    }

    fn put_range(&mut self, start: usize, data: &[u8]) -> Result<(), Error> {
        match bytemuck::try_cast_slice::<u8, W>(data) {
            Ok(words) => DistArray::put_range(self, start, words),
            Err(_) => {
                let mut words = vec![W::zeroed(); data.len() / std::mem::size_of::<W>()];
                bytemuck::cast_slice_mut(&mut words).copy_from_slice(data);
                DistArray::put_range(self, start, &words)
            }
        }
    }

    fn fetch_add(&mut self, index: usize, addend: &[u8], previous: &mut [u8]) -> Result<(), Error> {
        let old = DistArray::fetch_add(self, index, bytemuck::pod_read_unaligned(addend))?;
        previous.copy_from_slice(bytemuck::bytes_of(&old));
        Ok(())
    }

    fn compare_exchange(
        &mut self,
        index: usize,
        current: &[u8],
        new: &[u8],
        previous: &mut [u8],
    ) -> Result<bool, Error> {
        let outcome = DistArray::compare_exchange(
            self,
            index,
            bytemuck::pod_read_unaligned(current),
            bytemuck::pod_read_unaligned(new),
        )?;
        let (old, swapped) = match outcome {
            Ok(old) => (old, true),
            Err(actual) => (actual, false),
        };
        previous.copy_from_slice(bytemuck::bytes_of(&old));
        Ok(swapped)
    }

    fn barrier(&mut self) -> Result<(), Error> {
        DistArray::barrier(self)
    }
}
