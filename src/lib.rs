//! # shmpi — message passing and shared memory, and the bridges between them
//!
//! Parallel processes talk in one of two ways:
//!
//! - **shared memory**: they map the same memory and read and write it
//!   directly, synchronising explicitly ([`segment`], [`sync`]);
//! - **message passing**: they `send` and `receive` explicit messages, which
//!   also synchronises them, and which works across hosts (MPI).
//!
//! shmpi gives both to HPC code, in Rust and in C, and the bridges between
//! them: message passing emulated on shared memory (one mailbox per ordered
//! pair of processes), shared memory emulated on message passing (a
//! distributed array whose elements are owned by ranks), and a hybrid world
//! (MPI across hosts, shared memory within a node and within a rank).
//!
//! ## Modules
//!
//! | module | what it is |
//! |---|---|
//! | [`segment`] | named POSIX shared-memory objects with a validated header, typed views |
//! | [`sync`] | process-shared semaphore, robust mutex, barrier, living inside a segment |
//! | [`mailbox`] | message passing on shared memory: one ring per ordered pair of processes |
//! | [`transport`] | the `Transport` trait every message path implements, with collectives |
//! | `mpi` (feature `mpi`) | MPI point-to-point and collectives with errors returned, not fatal |
//! | [`mpirun`] | the one place that knows how to launch `mpirun` here |
//!
//! ## A first example
//!
//! ```
//! use std::time::Duration;
//! use shmpi::segment::{Segment, SegmentName};
//! use shmpi::sync::Semaphore;
//!
//! // One process creates a segment: a semaphore, then 1000 f64 values.
//! let name = SegmentName::unique("intro");
//! let seg = Segment::create(&name, 64 + 1000 * 8)?;
//! let ready = Semaphore::create_in(&seg, 0, 0)?;
//! seg.slice::<f64>(64, 1000)?.copy_from_slice(&vec![0.5; 1000]);
//! ready.post()?;
//!
//! // Another process (here: another handle) opens it by name, waits, reads.
//! let peer = Segment::open(&name)?;
//! Semaphore::open_in(&peer, 0)?.wait_timeout(Duration::from_secs(5))?;
//! let sum: f64 = peer.slice::<f64>(64, 1000)?.to_vec().iter().sum();
//! assert_eq!(sum, 500.0);
//! # Ok::<(), shmpi::Error>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(
    missing_docs,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks
)]

pub mod dsm;
pub mod error;
pub mod hybrid;
pub mod integer;
pub mod mailbox;
#[cfg(feature = "mpi")]
pub mod mpi;
/// rsmpi (the `mpi` crate, 0.8), which shmpi builds on: use this one so
/// both agree on the MPI bindings (`shmpi::mpi::Comm::dup_from`,
/// `Comm::dup_to_rsmpi`, `Comm::as_rsmpi`).
#[cfg(feature = "mpi")]
pub use rsmpi;
pub mod mpirun;
pub mod partition;
pub mod prelude;
pub mod segment;
pub mod slurm;
pub mod sync;
pub mod transport;

pub use error::{
    DsmError, Error, HybridError, MailboxError, MpiError, NameError, PlacementError, Result,
    SegmentError, SpaceResource, SyncError, TransportError,
};

/// The README's examples, compiled and run as doctests so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
