//! `Transport` over MPI, with MPI's own collectives.

use crate::transport::Wait;

use bytemuck::Pod;
use rsmpi::ffi;

use std::sync::Arc;

use super::{check, Comm, SharedComm};
use crate::error::{MpiError, TransportError};
use crate::transport::{cast_vec, Message, ReduceOp, Reducible, Source, TagMatch, Transport};

/// A [`Transport`] over an MPI communicator: sends and receives as MPI
/// messages, collectives as MPI's (`MPI_Barrier`, `MPI_Bcast`,
/// `MPI_Reduce`, `MPI_Allreduce`, `MPI_Gatherv`).
///
/// # Examples
///
/// ```no_run
/// use shmpi::mpi::{Mpi, MpiTransport, ThreadLevel};
/// use shmpi::transport::{ReduceOp, Transport};
///
/// let mpi = Mpi::init(ThreadLevel::Single)?;
/// let mut t = MpiTransport::new(mpi.dup_world()?);
/// let total = t.allreduce(&[t.rank() as u64], ReduceOp::Sum)?;
/// # Ok::<(), shmpi::Error>(())
/// ```
///
/// `MpiTransport<Arc<SharedComm>>` ([`MpiTransport::shared`]) is the same
/// over a communicator other threads use too (`MPI_THREAD_MULTIPLE`).
#[derive(Debug)]
pub struct MpiTransport<C: AsComm = Comm> {
    comm: C,
}

/// Something that holds a communicator: a [`Comm`], or a shared one.
pub trait AsComm {
    /// The communicator.
    fn as_comm(&self) -> &Comm;
}

impl AsComm for Comm {
    fn as_comm(&self) -> &Comm {
        self
    }
}

impl AsComm for Arc<SharedComm> {
    fn as_comm(&self) -> &Comm {
        self
    }
}

impl MpiTransport {
    /// Wraps a communicator.
    pub fn new(comm: Comm) -> MpiTransport {
        MpiTransport { comm }
    }
}

impl MpiTransport<Arc<SharedComm>> {
    /// Wraps a communicator shared with other threads.
    pub fn shared(comm: Arc<SharedComm>) -> MpiTransport<Arc<SharedComm>> {
        MpiTransport { comm }
    }
}

impl<C: AsComm> MpiTransport<C> {
    /// The communicator.
    pub fn comm(&self) -> &Comm {
        self.comm.as_comm()
    }
}

fn datatype<T: Reducible>() -> Result<ffi::MPI_Datatype, TransportError> {
    // SAFETY: rsmpi's constant statics.
    let t = unsafe {
        match T::NAME {
            "i8" => ffi::RSMPI_INT8_T,
            "i16" => ffi::RSMPI_INT16_T,
            "i32" => ffi::RSMPI_INT32_T,
            "i64" | "isize" => ffi::RSMPI_INT64_T,
            "u8" => ffi::RSMPI_UINT8_T,
            "u16" => ffi::RSMPI_UINT16_T,
            "u32" => ffi::RSMPI_UINT32_T,
            "u64" | "usize" => ffi::RSMPI_UINT64_T,
            "f32" => ffi::RSMPI_FLOAT,
            "f64" => ffi::RSMPI_DOUBLE,
            _ => {
                return Err(TransportError::UnsupportedOp {
                    op: "MPI reduction",
                    ty: T::NAME,
                })
            }
        }
    };
    Ok(t)
}

fn op<T: Reducible>(op: ReduceOp) -> Result<ffi::MPI_Op, TransportError> {
    if T::combine(op, T::zeroed(), T::zeroed()).is_none() {
        return Err(TransportError::UnsupportedOp {
            op: op.name(),
            ty: T::NAME,
        });
    }
    // SAFETY: rsmpi's constant statics.
    Ok(unsafe {
        match op {
            ReduceOp::Sum => ffi::RSMPI_SUM,
            ReduceOp::Prod => ffi::RSMPI_PROD,
            ReduceOp::Min => ffi::RSMPI_MIN,
            ReduceOp::Max => ffi::RSMPI_MAX,
            ReduceOp::BitAnd => ffi::RSMPI_BAND,
            ReduceOp::BitOr => ffi::RSMPI_BOR,
            ReduceOp::BitXor => ffi::RSMPI_BXOR,
        }
    })
}

fn count(n: usize) -> Result<i32, MpiError> {
    i32::try_from(n).map_err(|_| MpiError::CountTooLarge { count: n })
}

fn root_of(root: usize, size: usize) -> Result<i32, TransportError> {
    if root < size {
        Ok(root as i32)
    } else {
        Err(TransportError::InvalidRoot { root, size })
    }
}

impl<C: AsComm> Transport for MpiTransport<C> {
    type Error = MpiError;

    fn rank(&self) -> usize {
        self.comm().rank()
    }

    fn size(&self) -> usize {
        self.comm().size()
    }

    /// Sends with the Transport's progress rule: while the send waits (a
    /// large message waits for its receive), messages that arrive are
    /// received into the local queue, so two ranks that send each other
    /// large messages at once both complete — as mailboxes do. (A plain
    /// `MPI_Send` would deadlock there; use [`Comm::send`] for it.)
    fn send(&mut self, dest: usize, tag: i32, data: &[u8]) -> Result<(), MpiError> {
        self.comm().send_with_progress(dest, tag, data)
    }

    fn recv_matching(
        &mut self,
        source: Source,
        tag: TagMatch,
        wait: Wait,
    ) -> Result<Message, MpiError> {
        self.comm().recv(source, tag, wait)
    }

    fn barrier(&mut self) -> Result<(), MpiError> {
        self.comm().barrier()
    }

    fn broadcast<T: Pod>(&mut self, root: usize, data: &mut Vec<T>) -> Result<(), MpiError> {
        root_of(root, self.size())?;
        let mut bytes = if self.rank() == root {
            bytemuck::cast_slice::<T, u8>(data).to_vec()
        } else {
            Vec::new()
        };
        self.comm().broadcast_bytes(root, &mut bytes)?;
        if self.rank() != root {
            *data = cast_vec(&bytes)?;
        }
        Ok(())
    }

    fn reduce<T: Reducible>(
        &mut self,
        root: usize,
        data: &[T],
        op: ReduceOp,
    ) -> Result<Option<Vec<T>>, MpiError> {
        let r = root_of(root, self.size())?;
        let (ty, mpi_op) = (datatype::<T>()?, self::op::<T>(op)?);
        let n = count(data.len())?;
        let mut out = vec![T::zeroed(); if self.rank() == root { data.len() } else { 0 }];
        // SAFETY: send buffer of n elements; the receive buffer has n
        // elements at the root (ignored elsewhere); communicator alive.
        check("MPI_Reduce", unsafe {
            ffi::MPI_Reduce(
                data.as_ptr().cast(),
                out.as_mut_ptr().cast(),
                n,
                ty,
                mpi_op,
                r,
                self.comm().as_raw(),
            )
        })?;
        Ok((self.rank() == root).then_some(out))
    }

    fn allreduce<T: Reducible>(&mut self, data: &[T], op: ReduceOp) -> Result<Vec<T>, MpiError> {
        let (ty, mpi_op) = (datatype::<T>()?, self::op::<T>(op)?);
        let n = count(data.len())?;
        let mut out = vec![T::zeroed(); data.len()];
        // SAFETY: both buffers hold n elements; communicator alive.
        check("MPI_Allreduce", unsafe {
            ffi::MPI_Allreduce(
                data.as_ptr().cast(),
                out.as_mut_ptr().cast(),
                n,
                ty,
                mpi_op,
                self.comm().as_raw(),
            )
        })?;
        Ok(out)
    }

    fn gather<T: Pod>(&mut self, root: usize, data: &[T]) -> Result<Option<Vec<Vec<T>>>, MpiError> {
        let (me, size) = (self.rank(), self.size());
        let r = root_of(root, size)?;
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let mine = count(bytes.len())?;
        let mut counts = vec![0i32; if me == root { size } else { 0 }];
        // SAFETY: one int sent; `size` ints received at the root.
        check("MPI_Gather", unsafe {
            ffi::MPI_Gather(
                (&mine as *const i32).cast(),
                1,
                ffi::RSMPI_INT32_T,
                counts.as_mut_ptr().cast(),
                1,
                ffi::RSMPI_INT32_T,
                r,
                self.comm().as_raw(),
            )
        })?;
        let mut displs = Vec::with_capacity(counts.len());
        let mut total = 0usize;
        for &c in &counts {
            displs.push(count(total)?);
            total += c.max(0) as usize;
        }
        let mut all = vec![0u8; total];
        // SAFETY: `mine` bytes sent; at the root `all` holds the sum of the
        // counts at the displacements computed from them.
        check("MPI_Gatherv", unsafe {
            ffi::MPI_Gatherv(
                bytes.as_ptr().cast(),
                mine,
                ffi::RSMPI_UINT8_T,
                all.as_mut_ptr().cast(),
                counts.as_ptr(),
                displs.as_ptr(),
                ffi::RSMPI_UINT8_T,
                r,
                self.comm().as_raw(),
            )
        })?;
        if me != root {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(size);
        for (i, &c) in counts.iter().enumerate() {
            let start = displs[i] as usize;
            out.push(cast_vec(&all[start..start + c.max(0) as usize])?);
        }
        Ok(Some(out))
    }
}
