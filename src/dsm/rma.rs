//! The one-sided backend: a [`DistArray`]'s blocks in an MPI window, every
//! access an MPI one-sided operation (the owner takes no part).

use bytemuck::Pod;

use super::{Backend, DistArray, DsmInteger};
use crate::error::Error;
use crate::mpi::{Comm, MpiTransport, RmaWindow};

/// MPI one-sided operations, passive target, on an [`RmaWindow`] holding
/// each rank's block: reads `MPI_Get_accumulate(MPI_NO_OP)`, writes
/// `MPI_Accumulate(MPI_REPLACE)`, `MPI_Fetch_and_op`,
/// `MPI_Compare_and_swap`, each flushed. Accesses to this rank's own block
/// go through MPI too, so they are atomic with respect to everyone else's.
/// Dropping it is collective (`MPI_Win_free`).
#[derive(Debug)]
pub struct Rma<T: Pod> {
    window: RmaWindow<T>,
}

impl<T: Pod> DistArray<T, Rma<T>> {
    /// A zeroed array of `len` elements in an MPI window over (a duplicate
    /// of) `comm`. Collective.
    ///
    /// # Errors
    ///
    /// [`MpiError::OneSidedUnsupported`](crate::MpiError) where Open MPI's
    /// one-sided setup would crash; [`DsmError::Disagreement`](crate::DsmError::Disagreement) when the
    /// ranks' `len` or `T` differ; MPI's errors.
    pub fn rma(comm: &Comm, len: usize) -> Result<Self, Error> {
        Self::rma_words(comm, len, 1)
    }

    /// As [`rma`](Self::rma), each element `words` `T`s.
    pub(super) fn rma_words(comm: &Comm, len: usize, words: usize) -> Result<Self, Error> {
        crate::mpi::check_one_sided()?;
        let mut check = MpiTransport::new(comm.dup()?);
        super::owner::check_agreement::<T, _>(&mut check, len, words)?;
        let block = super::Distribution::new(len, comm.size())
            .block(comm.rank())
            .len()
            * words;
        let window = RmaWindow::new(comm, block)?;
        Ok(DistArray::from_backend(Rma { window }, len, words))
    }
}

impl<T: Pod> Rma<T> {
    /// The window.
    pub fn window(&self) -> &RmaWindow<T> {
        &self.window
    }
}

impl<T: Pod> Backend<T> for Rma<T> {
    fn rank(&self) -> usize {
        self.window.comm().rank()
    }

    fn size(&self) -> usize {
        self.window.comm().size()
    }

    fn read(&mut self, owner: usize, at: usize, out: &mut [T]) -> Result<(), Error> {
        Ok(self.window.get(owner, at, out)?)
    }

    fn write(&mut self, owner: usize, at: usize, data: &[T]) -> Result<(), Error> {
        Ok(self.window.put(owner, at, data)?)
    }

    fn fetch_add(&mut self, owner: usize, at: usize, value: T) -> Result<T, Error>
    where
        T: DsmInteger,
    {
        Ok(self.window.fetch_add(owner, at, value)?)
    }

    fn compare_and_swap(&mut self, owner: usize, at: usize, current: T, new: T) -> Result<T, Error>
    where
        T: DsmInteger,
    {
        Ok(self.window.compare_and_swap(owner, at, current, new)?)
    }

    fn barrier(&mut self) -> Result<(), Error> {
        Ok(self.window.barrier()?)
    }
}
