//! What most programs use, in one import:
//!
//! ```
//! use shmpi::prelude::*;
//!
//! let name = SegmentName::unique("prelude");
//! let seg = Segment::create(&name, 4096)?;
//! let sem = Semaphore::create_in(&seg, 0, 1)?;
//! sem.wait()?;
//! let mut members = MailboxGroup::threads(2, &MailboxOptions::default())?;
//! let (mut b, mut a) = (members.pop().unwrap(), members.pop().unwrap());
//! a.send(1, 7, b"hi")?;
//! assert_eq!(b.recv(Source::Any, TagMatch::Any, Wait::Forever)?.data, b"hi");
//! # Ok::<(), shmpi::Error>(())
//! ```
//!
//! Shared memory (segments, their synchronisation), mailboxes, the
//! transport interface, the distributed array and the crate's errors; with
//! the `mpi` feature also MPI, the hybrid world and node arrays. Teams and
//! the lower layers stay in their modules.

pub use crate::error::{Error, Result};
pub use crate::mailbox::{MailboxGroup, MailboxOptions, WaitStrategy};
pub use crate::segment::{Segment, SegmentName};
pub use crate::sync::{Barrier, RobustMutex, Semaphore};
pub use crate::transport::{Arrival, Message, ReduceOp, Source, TagMatch, Transport, Wait};

pub use crate::dsm::DistArray;
#[cfg(feature = "mpi")]
pub use crate::hybrid::{HybridWorld, NodeArray};
#[cfg(feature = "mpi")]
pub use crate::mpi::{Comm, Mpi, MpiTransport, SharedComm, ThreadLevel};
