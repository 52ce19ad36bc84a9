//! Arrays shared by all ranks of a node.

use std::marker::PhantomData;

use bytemuck::Pod;

use super::HybridWorld;
use crate::error::{Error, MailboxError};
use crate::segment::{Segment, SegmentKind, SegmentName, SharedSlice};

/// `len` elements of `T` mapped by every rank of a node: a segment the node
/// leader creates and the others open, unlinked as soon as all have it
/// (nothing can leak when the job is killed).
///
/// # Memory model
///
/// Plain writes to the array by one rank become visible to the node's
/// other ranks at the next [`HybridWorld::node_barrier`] (an
/// `MPI_Barrier` on the node communicator, with a sequentially consistent
/// fence before and after it — what `MPI_Win_sync` + barrier gives an MPI
/// shared-memory window). Between barriers, use the array's atomics-free
/// copy-in/copy-out views on disjoint ranges, or your own synchronisation.
/// A message received from a rank orders everything that rank wrote before
/// sending it (the mailbox record is published with release ordering and
/// read with acquire ordering; MPI's message completion does the same).
pub struct NodeArray<T: Pod> {
    segment: Segment,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> NodeArray<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty array.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A view of the whole array.
    pub fn view(&self) -> SharedSlice<'_, T> {
        self.segment
            .slice(0, self.len)
            .expect("sized for len elements at creation")
    }
}

impl<T: Pod> std::fmt::Debug for NodeArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeArray")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// The error of a node rank whose leader could not create a shared object.
pub(super) fn leader_failed(what: &'static str) -> Error {
    Error::Mailbox(MailboxError::Env {
        var: what,
        problem: "the node leader could not create it (see the leader's error)".to_owned(),
    })
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
        let bytes = len.saturating_mul(std::mem::size_of::<T>()).max(1);
        let node = self.node();
        // The leader creates and broadcasts the name — an empty name when
        // creation failed, so the others fail too instead of waiting.
        let mut name = Vec::new();
        let created = if node.rank() == 0 {
            let n = SegmentName::unique("node-array");
            let seg = Segment::builder(n.as_str())
                .size(bytes)
                .kind(SegmentKind::NODE_ARRAY)
                .create();
            if seg.is_ok() {
                name = n.as_str().as_bytes().to_vec();
            }
            Some(seg)
        } else {
            None
        };
        node.broadcast_bytes(0, &mut name)?;
        let segment = match created {
            Some(seg) => seg?,
            None if name.is_empty() => return Err(leader_failed("node array")),
            None => {
                let n = SegmentName::new(&String::from_utf8_lossy(&name)).map_err(|e| {
                    MailboxError::Env {
                        var: "node array name",
                        problem: e.to_string(),
                    }
                })?;
                Segment::builder(n.as_str())
                    .expect_kind(SegmentKind::NODE_ARRAY)
                    .open()?
            }
        };

        // Everyone has it mapped: the name can go.
        let mut segment = segment;
        node.barrier()?;
        if node.rank() == 0 {
            segment.unlink()?;
        }
        if segment.len() < len.saturating_mul(std::mem::size_of::<T>()) {
            return Err(Error::Mailbox(MailboxError::Mismatch {
                what: "node array bytes",
                found: segment.len() as u64,
                expected: (len * std::mem::size_of::<T>()) as u64,
            }));
        }
        Ok(NodeArray {
            segment,
            len,
            _t: PhantomData,
        })
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
