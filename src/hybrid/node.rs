//! What the ranks of a node share: objects the node leader creates and the
//! others open (the node mailbox group, node arrays).

use std::marker::PhantomData;

use bytemuck::Pod;

use super::HybridWorld;
use crate::error::{Error, MailboxError};
use crate::mpi::Comm;
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
        None if name.is_empty() => Err(Error::Mailbox(MailboxError::Env {
            var: what,
            problem: "the node leader could not create it (see the leader's error)".to_owned(),
        })),
        None => {
            let n = SegmentName::new(&String::from_utf8_lossy(&name)).map_err(|e| {
                MailboxError::Env {
                    var: what,
                    problem: e.to_string(),
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
        let bytes = len.saturating_mul(std::mem::size_of::<T>()).max(1);
        let node = self.node();
        let mut segment = share_from_leader(node, "node array", "node-array", |name| {
            if node.rank() == 0 {
                Ok(Segment::builder(name.as_str())
                    .size(bytes)
                    .kind(SegmentKind::NODE_ARRAY)
                    .create()?)
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
