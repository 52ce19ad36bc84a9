//! Hybrid mode: MPI between nodes, shared memory within a node and within
//! a rank.
//!
//! [`Team`] (threads of one rank over shared memory) needs no MPI; the
//! world and node arrays need feature `mpi`.
//!
//! A `HybridWorld` (feature `mpi`) splits the MPI ranks by node (`MPI_Comm_split_type`
//! with `MPI_COMM_TYPE_SHARED`); the ranks of a node join one mailbox group
//! (the node leader creates it — ephemeral by default, so a killed job
//! leaves nothing in `/dev/shm` — and broadcasts its name). A message to a
//! rank on the same node goes through the mailbox, to another node through
//! MPI. Every (source, tag) pair uses one path, so MPI's ordering rule
//! holds across the two.
//!
//! A receive from any source must watch both paths and can sleep in
//! neither the doorbell nor MPI: it polls both, alternating which goes
//! first, spinning briefly and then backing off with sleeps growing from
//! 1 µs to 1 ms (so an idle wait costs a wake-up per millisecond at most,
//! and a message that arrives during a sleep waits at most that long).
//!
//! Emulating several hosts on one machine: [`NODE_ID_ENV`] gives a rank's
//! node id explicitly, [`RANKS_PER_NODE_ENV`] groups consecutive ranks
//! (`rank / k`); ranks with different ids talk over MPI even on one host.

#[cfg(feature = "mpi")]
mod node;
mod phase;
mod team;
#[cfg(feature = "mpi")]
mod world;

pub use crate::partition::split_range;
#[cfg(feature = "mpi")]
pub use node::{Epoch, LateEpoch, NodeArray};
pub use phase::{second_buffer_at, BufferSplit, Phase, Views};
pub use team::{Team, TeamMember};
#[cfg(feature = "mpi")]
pub use world::{HybridRecvRequest, HybridSendRequest, HybridWorld};

/// Environment variable: this rank's node id (overrides the detection).
pub const NODE_ID_ENV: &str = "SHMPI_NODE_ID";

/// Environment variable: put ranks `k·n .. k·n + k − 1` on node `n`.
pub const RANKS_PER_NODE_ENV: &str = "SHMPI_RANKS_PER_NODE";
