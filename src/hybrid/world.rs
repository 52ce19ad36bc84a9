//! `HybridWorld`: routing between the node's mailboxes and MPI.

use crate::transport::{Arrival, Wait};

use super::{NODE_ID_ENV, RANKS_PER_NODE_ENV};
use crate::error::{Error, HybridError, MailboxError, MpiError, TransportError};
use crate::mailbox::{MailboxGroup, MailboxOptions};
use crate::mpi::{Comm, Mpi, MpiTransport};
use crate::sync::wait::node_processes;
use crate::sync::{WaitPolicy, Waiter};
use crate::transport::{cast_vec, Message, ReduceOp, Reducible, Source, TagMatch, Transport};

/// The ranks of an MPI job, reached through shared memory when they share
/// a node and through MPI otherwise. See the [module docs](super).
///
/// # Examples
///
/// ```no_run
/// use shmpi::hybrid::HybridWorld;
/// use shmpi::mpi::{Mpi, ThreadLevel};
/// use shmpi::transport::{ReduceOp, Transport};
///
/// let mpi = Mpi::init(ThreadLevel::Multiple)?;
/// let mut world = HybridWorld::new(&mpi)?;
/// let right = (world.rank() + 1) % world.size();
/// world.send(right, 1, b"hello")?;            // mailbox or MPI, as placed
/// let sum = world.allreduce(&[1u64], ReduceOp::Sum)?;
/// assert_eq!(sum, [world.size() as u64]);
/// # Ok::<(), shmpi::Error>(())
/// ```
pub struct HybridWorld {
    world: Comm,
    node: Comm,
    my_node: u64,
    node_of: Vec<u64>,
    local_of: Vec<usize>,
    world_of_local: Vec<usize>,
    mailbox: Option<MailboxGroup>,
    mailbox_first: bool,
    /// The node leaders (node rank 0 of every node), on leaders only.
    leaders: Option<MpiTransport>,
    /// Open receive requests and held messages: receives are matched in
    /// posting order ([`requests`]).
    matching: requests::SharedMatching,
}

mod requests;
pub use requests::{HybridRecvRequest, HybridSendRequest};

/// Tag of the hop from a broadcast's root to its node leader (reserved:
/// above `TAG_MAX`, never matched by an any-tag receive).
const HIER_BCAST_TAG: i32 = crate::transport::TAG_MAX + 64;

/// Tag of the hop from a gather's node leader to its root.
const HIER_GATHER_TAG: i32 = crate::transport::TAG_MAX + 65;

/// Tag of the hop from a reduction's node leader to its root.
const HIER_REDUCE_TAG: i32 = crate::transport::TAG_MAX + 66;

/// The error of a wait on the world that ran out: `Timeout` for
/// `Wait::For`, `WouldBlock` for a look (`Wait::Now`).
fn out_of_time(wait: Wait) -> Error {
    match wait {
        Wait::For(waited) => MpiError::Timeout { waited },
        Wait::Now | Wait::Forever => MpiError::WouldBlock,
    }
    .into()
}

/// `(world rank, bytes)` pairs as one buffer: rank and length as u64, then
/// the bytes, for each pair.
fn pack<'a>(parts: impl Iterator<Item = (usize, &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (rank, bytes) in parts {
        out.extend_from_slice(&(rank as u64).to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// The inverse of [`pack`], into `out` indexed by rank; a malformed buffer
/// is an error, never a panic.
fn unpack(mut buf: &[u8], out: &mut [Vec<u8>]) -> Result<(), Error> {
    let bad = || TransportError::TypeMismatch { len: 0, elem: 16 };
    let word = |b: &[u8]| -> Option<u64> { Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)) };
    while !buf.is_empty() {
        let rank = word(buf).ok_or_else(bad)? as usize;
        let len = word(buf.get(8..).ok_or_else(bad)?).ok_or_else(bad)? as usize;
        let bytes = buf
            .get(16..16usize.checked_add(len).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        *out.get_mut(rank).ok_or_else(bad)? = bytes.to_vec();
        buf = &buf[16 + len..];
    }
    Ok(())
}

fn env_number(var: &'static str) -> Result<Option<u64>, HybridError> {
    match std::env::var(var) {
        Err(_) => Ok(None),
        Ok(v) => v.trim().parse().map(Some).map_err(|_| HybridError::Env {
            var,
            problem: format!("{v:?} is not a non-negative integer"),
        }),
    }
}

impl HybridWorld {
    /// Splits the ranks by node and opens the node's mailbox group
    /// (ephemeral).
    ///
    /// # Collective
    ///
    /// Over `MPI_COMM_WORLD` (it duplicates it, splits it by node and the
    /// node leaders create the groups): every rank calls it.
    ///
    /// # Errors
    ///
    /// MPI's errors, the mailbox group's, or a malformed override variable.
    pub fn new(mpi: &Mpi) -> Result<HybridWorld, Error> {
        Self::with_options(
            mpi,
            &MailboxOptions {
                ephemeral: true,
                ..MailboxOptions::default()
            },
        )
    }

    /// [`new`](Self::new) with the node group's mailbox options.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_options(mpi: &Mpi, options: &MailboxOptions) -> Result<HybridWorld, Error> {
        Self::over(mpi.dup_world()?, options)
    }

    /// A hybrid world of the same ranks with channels of its own: a
    /// duplicated communicator and a new node mailbox group (ephemeral).
    /// Its messages never mix with this world's — for a library layer
    /// such as a [`DistArray`](crate::dsm::DistArray). Collective.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn dup(&self) -> Result<HybridWorld, Error> {
        Self::from_comm(self.world.dup()?)
    }

    /// A hybrid world over the ranks of `comm` (e.g. from
    /// [`Mpi::comm_from_fortran`], what C code hands over), with an
    /// ephemeral node mailbox group. Collective over `comm`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn from_comm(comm: Comm) -> Result<HybridWorld, Error> {
        Self::over(
            comm,
            &MailboxOptions {
                ephemeral: true,
                ..MailboxOptions::default()
            },
        )
    }

    fn over(world: Comm, options: &MailboxOptions) -> Result<HybridWorld, Error> {
        let me = world.rank();
        let forced = match env_number(NODE_ID_ENV)? {
            Some(id) => Some(id),
            None => env_number(RANKS_PER_NODE_ENV)?
                .filter(|&k| k > 0)
                .map(|k| me as u64 / k),
        };
        let node = match forced {
            Some(id) => world.split(u32::try_from(id).unwrap_or(u32::MAX))?,
            None => world.split_shared()?,
        };
        let world_of_local: Vec<usize> = node
            .allgather_u64(me as u64)?
            .into_iter()
            .map(|r| r as usize)
            .collect();
        // A node is named by its leader's world rank unless forced.
        let my_node = forced.unwrap_or(world_of_local[0] as u64);
        let node_of = world.allgather_u64(my_node)?;
        let mut local_of = vec![usize::MAX; world.size()];
        for (local, &w) in world_of_local.iter().enumerate() {
            local_of[w] = local;
        }
        // One communicator of the node leaders, for the hierarchical
        // collectives; the others get the other color and drop theirs.
        let leaders_comm = world.split(u32::from(node.rank() != 0))?;
        let leaders = (node.rank() == 0).then(|| MpiTransport::new(leaders_comm));
        let mailbox = if node.size() > 1 {
            let (local, members) = (node.rank(), node.size());
            let group =
                super::node::share_from_leader(&node, "node mailbox group", "hybrid", |name| {
                    if local == 0 {
                        MailboxGroup::create_or_join(name, 0, members, options)
                    } else {
                        MailboxGroup::join(name, local, options)
                    }
                })?;
            // Everyone attached: an ephemeral group's name is gone now.
            node.barrier()?;
            Some(group)
        } else {
            None
        };
        Ok(HybridWorld {
            world,
            node,
            my_node,
            node_of,
            local_of,
            world_of_local,
            mailbox,
            mailbox_first: true,
            leaders,
            matching: Default::default(),
        })
    }

    /// The communicator of this node's ranks.
    pub fn node(&self) -> &Comm {
        &self.node
    }

    /// The node's mailbox group, through which this rank's messages to
    /// ranks on its node go (`None` when the rank is alone on its node).
    /// Its [`counters`](MailboxGroup::counters) show the traffic that went
    /// through shared memory; group member ids are node ranks.
    pub fn node_mailbox(&self) -> Option<&MailboxGroup> {
        self.mailbox.as_ref()
    }

    /// The world communicator.
    pub fn world(&self) -> &Comm {
        &self.world
    }

    /// The node id of world rank `rank` (`None` outside the world).
    pub fn node_of(&self, rank: usize) -> Option<u64> {
        self.node_of.get(rank).copied()
    }

    /// True when `rank` shares this rank's node (messages go through shared
    /// memory).
    pub fn is_local(&self, rank: usize) -> bool {
        self.node_of(rank) == Some(self.my_node)
    }

    fn check_rank(&self, rank: usize) -> Result<(), MpiError> {
        if rank < self.world.size() {
            Ok(())
        } else {
            Err(MpiError::InvalidRank {
                rank,
                size: self.world.size(),
            })
        }
    }

    /// The node-group member id of `rank` when the mailbox is its path (it
    /// is on this node and not this rank).
    fn local_member(&self, rank: usize) -> Result<Option<usize>, Error> {
        self.check_rank(rank)?;
        Ok((self.is_local(rank) && rank != self.rank()).then(|| self.local_of[rank]))
    }

    /// The world rank of `node`'s leader and its rank among the leaders
    /// (the leaders' communicator orders them by world rank).
    fn leader_of(&self, node: u64) -> (usize, usize) {
        let first_of = |n: u64| self.node_of.iter().position(|&x| x == n);
        let leader = first_of(node).unwrap_or(0);
        let index = (0..leader)
            .filter(|&w| first_of(self.node_of[w]) == Some(w))
            .count();
        (leader, index)
    }

    /// A message from the node group, with the world rank as its source.
    fn with_world_source(&self, mut m: Message) -> Message {
        m.source = self.world_of_local[m.source];
        m
    }

    /// A mailbox error with world ranks.
    fn local_error(&self, e: MailboxError) -> Error {
        let world = |id: usize| self.world_of_local.get(id).copied().unwrap_or(id);
        Error::Mailbox(match e {
            MailboxError::PeerDied { id } => MailboxError::PeerDied { id: world(id) },
            MailboxError::PeerLeft { id } => MailboxError::PeerLeft { id: world(id) },
            MailboxError::Interrupted { id } => MailboxError::Interrupted { id: world(id) },
            other => other,
        })
    }

    /// One look at both paths for a message from any source.
    /// True when every rank of the world is on this node and the node has
    /// a mailbox group: messages between them never take MPI.
    fn all_local(&self) -> bool {
        self.mailbox.is_some() && self.world_of_local.len() == self.world.size()
    }

    /// How this rank waits on both paths at once: the node's mailbox
    /// group's policy (spin only when the node's ranks fit its CPUs), or
    /// the node's process count's without one.
    fn wait_policy(&self) -> WaitPolicy {
        self.mailbox.as_ref().map_or_else(
            || WaitPolicy::for_parties(node_processes()),
            MailboxGroup::wait_policy,
        )
    }

    /// A receive straight from the paths: the mailbox for a rank of
    /// this node, MPI for another, both in turn for any source.
    fn recv_from_paths(
        &mut self,
        source: Source,
        tag: TagMatch,
        wait: Wait,
    ) -> Result<Message, Error> {
        match source {
            Source::Rank(r) => {
                if let Some(local) = self.local_member(r)? {
                    let group = self.mailbox.as_mut().ok_or(MailboxError::AllPeersGone)?;
                    return match group.recv(local, tag, wait) {
                        Ok(m) => Ok(self.with_world_source(m)),
                        Err(e) => Err(self.local_error(e)),
                    };
                }
                Ok(self.world.recv(r, tag, wait)?)
            }
            // Both paths once (local peers gone still leave MPI's).
            Source::Any if wait == Wait::Now => self
                .poll_any(tag)?
                .ok_or_else(|| MpiError::WouldBlock.into()),
            Source::Any if self.all_local() => {
                // Every peer is on this node: only the mailbox can bring a
                // message, and its wait sleeps on the doorbell.
                let group = self.mailbox.as_mut().ok_or(MailboxError::AllPeersGone)?;
                match group.recv(Source::Any, tag, wait) {
                    Ok(m) => Ok(self.with_world_source(m)),
                    Err(e) => Err(self.local_error(e)),
                }
            }
            Source::Any => {
                let timeout = wait.timeout();
                let mut waiter = Waiter::new(&self.wait_policy(), timeout);
                loop {
                    if let Some(m) = self.poll_any(tag)? {
                        return Ok(m);
                    }
                    // No one doorbell covers both paths: a blocking step
                    // sleeps a backoff and polls both again.
                    if !waiter.idle() {
                        return Err(out_of_time(wait));
                    }
                }
            }
        }
    }

    fn poll_any(&mut self, tag: TagMatch) -> Result<Option<Message>, Error> {
        self.mailbox_first = !self.mailbox_first;
        for mailbox_turn in [self.mailbox_first, !self.mailbox_first] {
            let found = if mailbox_turn {
                match self.mailbox.as_mut() {
                    Some(g) => match g.recv(Source::Any, tag, Wait::Now).arrived() {
                        Ok(m) => m.map(|m| self.with_world_source(m)),
                        // Local peers gone still leave the MPI path.
                        Err(MailboxError::AllPeersGone) => None,
                        Err(e) => return Err(self.local_error(e)),
                    },
                    None => None,
                }
            } else {
                self.world.recv(Source::Any, tag, Wait::Now).arrived()?
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }
}

impl Transport for HybridWorld {
    /// Both paths' errors: the mailbox's and MPI's.
    type Error = Error;

    fn rank(&self) -> usize {
        self.world.rank()
    }

    fn size(&self) -> usize {
        self.world.size()
    }

    /// Sends through the mailbox (same node) or MPI. While either waits,
    /// the other path is kept moving (its arrivals go to its queue), so
    /// ranks that send to each other across both paths at once all finish.
    fn send(&mut self, dest: usize, tag: i32, data: &[u8]) -> Result<(), Error> {
        if let Some(local) = self.local_member(dest)? {
            let world = &self.world;
            let mut mpi_error = None;
            let group = self.mailbox.as_mut().ok_or(MailboxError::AllPeersGone)?;
            let sent = group.send_with_progress(local, tag, data, &mut || {
                if mpi_error.is_none() {
                    mpi_error = world.progress_incoming().err();
                }
            });
            if let Some(e) = mpi_error {
                return Err(e.into());
            }
            return sent.map_err(|e| self.local_error(e));
        }
        let req = self.world.isend(dest, tag, data)?;
        self.wait_mpi(req)
    }

    /// Receives are matched in posting order while receive requests are
    /// open (see [`HybridWorld::irecv`]).
    fn recv_matching(
        &mut self,
        source: Source,
        tag: TagMatch,
        wait: Wait,
    ) -> Result<Message, Error> {
        if self.matching.borrow().is_idle() {
            self.recv_from_paths(source, tag, wait)
        } else {
            self.recv_ordered(source, tag, wait, None)
        }
    }

    /// Hierarchical: the node's ranks meet in shared memory, the node
    /// leaders over MPI, then the node is released.
    fn barrier(&mut self) -> Result<(), Error> {
        if let Some(group) = self.mailbox.as_mut() {
            Transport::barrier(group)?;
        }
        if let Some(leaders) = self.leaders.as_mut() {
            leaders.barrier()?;
        }
        if let Some(group) = self.mailbox.as_mut() {
            Transport::barrier(group)?;
        }
        Ok(())
    }

    /// Hierarchical: the root hands the data to its node leader, the
    /// leaders broadcast over MPI, each leader within its node.
    fn broadcast<T: bytemuck::Pod>(&mut self, root: usize, data: &mut Vec<T>) -> Result<(), Error> {
        self.check_rank(root)?;
        let root_node = self.node_of[root];
        let (_, leader_rank) = self.leader_of(root_node);
        let root_local = self.local_of[root];
        let me = self.rank();
        // 1. Within the root's node: root → its leader (local rank 0).
        if self.my_node == root_node && root_local != 0 {
            let group = self.mailbox.as_mut().ok_or(MailboxError::AllPeersGone)?;
            if me == root {
                group.send_pod(0, HIER_BCAST_TAG, data)?;
            } else if self.node.rank() == 0 {
                *data = group
                    .recv_pod::<T>(root_local, HIER_BCAST_TAG, Wait::Forever)?
                    .data;
            }
        }
        // 2. Among the leaders (ordered by world rank), from the root
        //    node's leader.
        if let Some(leaders) = self.leaders.as_mut() {
            leaders.broadcast(leader_rank, data)?;
        }
        // 3. Within each node, from its leader.
        if let Some(group) = self.mailbox.as_mut() {
            group.broadcast(0, data)?;
        }
        Ok(())
    }

    /// Hierarchical: reduce in each node at its leader, among the leaders
    /// at the root node's leader over MPI (MPI's own reduction), then to
    /// the root through the mailbox if it is not that leader. No reserved
    /// tag crosses MPI: an MPI may give fewer tags than shmpi reserves
    /// (MPICH's `MPI_TAG_UB` is 2^28 − 1).
    fn reduce<T: Reducible>(
        &mut self,
        root: usize,
        data: &[T],
        op: ReduceOp,
    ) -> Result<Option<Vec<T>>, Error> {
        self.check_rank(root)?;
        let me = self.rank();
        let (root_leader, leader_rank) = self.leader_of(self.node_of[root]);
        let node_partial = match self.mailbox.as_mut() {
            Some(group) => group.reduce(0, data, op)?,
            None => Some(data.to_vec()),
        };
        let mut result = None;
        if let Some(partial) = node_partial {
            let leaders = self.leaders.as_mut().ok_or(MailboxError::AllPeersGone)?;
            result = leaders.reduce(leader_rank, &partial, op)?;
        }
        if me == root_leader && me != root {
            let local = self.local_of[root];
            let group = self.mailbox.as_mut().ok_or(MailboxError::AllPeersGone)?;
            group.send_pod(local, HIER_REDUCE_TAG, &result.take().unwrap_or_default())?;
        } else if me == root && me != root_leader {
            let group = self.mailbox.as_mut().ok_or(MailboxError::AllPeersGone)?;
            result = Some(group.recv_pod::<T>(0, HIER_REDUCE_TAG, Wait::Forever)?.data);
        }
        Ok(if me == root { result } else { None })
    }

    /// Hierarchical: reduce in the node to its leader, all-reduce among
    /// the leaders over MPI, broadcast in the node.
    fn allreduce<T: Reducible>(&mut self, data: &[T], op: ReduceOp) -> Result<Vec<T>, Error> {
        let mut partial = match self.mailbox.as_mut() {
            Some(group) => group.reduce(0, data, op)?.unwrap_or_default(),
            None => data.to_vec(),
        };
        if let Some(leaders) = self.leaders.as_mut() {
            partial = leaders.allreduce(&partial, op)?;
        }
        if let Some(group) = self.mailbox.as_mut() {
            group.broadcast(0, &mut partial)?;
        }
        Ok(partial)
    }

    /// Hierarchical: gather in each node at its leader, among the leaders
    /// at the root's node leader over MPI, then to the root if it is not
    /// that leader.
    fn gather<T: bytemuck::Pod>(
        &mut self,
        root: usize,
        data: &[T],
    ) -> Result<Option<Vec<Vec<T>>>, Error> {
        self.check_rank(root)?;
        let me = self.rank();
        let (root_leader, leader_rank) = self.leader_of(self.node_of[root]);
        let mine = bytemuck::cast_slice::<T, u8>(data).to_vec();
        // 1. In the node, at the leader: (world rank, bytes) of each rank.
        let node_parts = match self.mailbox.as_mut() {
            Some(group) => group.gather(0, &mine)?,
            None => Some(vec![mine]),
        };
        let mut all: Option<Vec<Vec<u8>>> = None;
        if let Some(parts) = node_parts {
            let ranks: Vec<usize> = self.world_of_local.clone();
            let packed = pack(
                parts
                    .iter()
                    .enumerate()
                    .map(|(local, p)| (ranks[local], p.as_slice())),
            );
            // 2. Among the leaders, at the root node's leader.
            let leaders = self.leaders.as_mut().ok_or(MailboxError::AllPeersGone)?;
            if let Some(blocks) = leaders.gather(leader_rank, &packed)? {
                let mut out = vec![Vec::new(); self.world.size()];
                for block in &blocks {
                    unpack(block, &mut out)?;
                }
                all = Some(out);
            }
        }
        // 3. From the root node's leader to the root, through the mailbox.
        if me == root_leader && me != root {
            let out = all.take().unwrap_or_default();
            let packed = pack(out.iter().enumerate().map(|(r, p)| (r, p.as_slice())));
            let local = self.local_of[root];
            let group = self.mailbox.as_mut().ok_or(MailboxError::AllPeersGone)?;
            group.send(local, HIER_GATHER_TAG, &packed)?;
        } else if me == root && me != root_leader {
            let group = self.mailbox.as_mut().ok_or(MailboxError::AllPeersGone)?;
            let m = group.recv(0, HIER_GATHER_TAG, Wait::Forever)?;
            let mut out = vec![Vec::new(); self.world.size()];
            unpack(&m.data, &mut out)?;
            all = Some(out);
        }
        if me != root {
            return Ok(None);
        }
        let parts = all.unwrap_or_default();
        Ok(Some(
            parts
                .iter()
                .map(|p| cast_vec(p))
                .collect::<Result<_, _>>()?,
        ))
    }
}

impl std::fmt::Debug for HybridWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridWorld")
            .field("rank", &self.world.rank())
            .field("size", &self.world.size())
            .field("node", &self.my_node)
            .field("node_ranks", &self.world_of_local)
            .finish_non_exhaustive()
    }
}

impl HybridWorld {
    /// Receives into `buf` without allocating: from a rank of this node
    /// straight out of its mailbox lane ([`MailboxGroup::recv_into`]), from
    /// another node through MPI ([`Comm::recv_into`]), from any source by
    /// looking at both in turn; waiting as `wait` says. Returns (source,
    /// tag, length).
    ///
    /// # Errors
    ///
    /// [`MailboxError::MessageTooLong`] / [`MpiError::MessageTooLong`] when
    /// the message is longer than `buf` (it is kept, not consumed), or as
    /// [`Transport::recv`].
    pub fn recv_into(
        &mut self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
        buf: &mut [u8],
        wait: impl Into<Wait>,
    ) -> Result<(usize, i32, usize), Error> {
        let (source, tag, wait) = (source.into(), tag.into(), wait.into());
        if !self.matching.borrow().is_idle() {
            let m = self.recv_ordered(source, tag, wait, Some(buf.len()))?;
            buf[..m.data.len()].copy_from_slice(&m.data);
            return Ok((m.source, m.tag, m.data.len()));
        }
        let Source::Rank(r) = source else {
            return self.recv_any_into(tag, buf, wait);
        };
        if let Some(local) = self.local_member(r)? {
            let group = self.mailbox.as_mut().ok_or(MailboxError::AllPeersGone)?;
            return match group.recv_into(local, tag, buf, wait) {
                Ok((_, tag, len)) => Ok((r, tag, len)),
                Err(e) => Err(self.local_error(e)),
            };
        }
        let st = self.world.recv_into(r, tag, buf, wait)?;
        Ok((st.source, st.tag, st.len))
    }

    /// [`recv_into`](Self::recv_into) from any source: the mailbox's own
    /// wait when every peer is local, else a look at each path in turn
    /// under the wait policy. A look is a receive that does not wait,
    /// which keeps a message too long for `buf`.
    fn recv_any_into(
        &mut self,
        tag: TagMatch,
        buf: &mut [u8],
        wait: Wait,
    ) -> Result<(usize, i32, usize), Error> {
        if self.all_local() {
            let group = self.mailbox.as_mut().ok_or(MailboxError::AllPeersGone)?;
            return match group.recv_into(Source::Any, tag, buf, wait) {
                Ok((local, tag, len)) => Ok((self.world_of_local[local], tag, len)),
                Err(e) => Err(self.local_error(e)),
            };
        }
        let timeout = wait.timeout();
        let mut waiter = Waiter::new(&self.wait_policy(), timeout);
        loop {
            if let Some(group) = self.mailbox.as_mut() {
                match group.recv_into(Source::Any, tag, buf, Wait::Now) {
                    Ok((local, tag, len)) => return Ok((self.world_of_local[local], tag, len)),
                    Err(MailboxError::WouldBlock | MailboxError::AllPeersGone) => {}
                    Err(e) => return Err(self.local_error(e)),
                }
            }
            match self.world.recv_into(Source::Any, tag, buf, Wait::Now) {
                Ok(st) => return Ok((st.source, st.tag, st.len)),
                Err(MpiError::WouldBlock) => {}
                Err(e) => return Err(e.into()),
            }
            if !waiter.idle() {
                return Err(out_of_time(wait));
            }
        }
    }

    /// Waits for an MPI send while both paths keep moving: MPI arrivals go
    /// to the communicator's queue, mailbox arrivals to the group's.
    fn wait_mpi(&mut self, req: crate::mpi::SendRequest<'_>) -> Result<(), Error> {
        let mut local_error = None;
        let mailbox = &mut self.mailbox;
        let sent = self.world.wait_progressing(req, &mut || {
            if let (None, Some(group)) = (&local_error, mailbox.as_mut()) {
                local_error = group.progress_incoming().err();
            }
        });
        if let Some(e) = local_error {
            return Err(self.local_error(e));
        }
        Ok(sent?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_parts_round_trip_and_malformed_buffers_are_errors() {
        let packed = pack([(2usize, &b"abc"[..]), (0, &b""[..])].into_iter());
        let mut out = vec![Vec::new(); 3];
        unpack(&packed, &mut out).unwrap();
        assert_eq!(out, vec![b"".to_vec(), vec![], b"abc".to_vec()]);
        for cut in 1..packed.len() {
            let mut out = vec![Vec::new(); 3];
            let _ = unpack(&packed[..cut], &mut out); // never panics
        }
        let mut small = vec![Vec::new(); 1];
        assert!(
            unpack(&packed, &mut small).is_err(),
            "rank 2 outside 1 rank"
        );
        let huge = pack([(0usize, &b"x"[..])].into_iter());
        let mut bad = huge.clone();
        bad[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(unpack(&bad, &mut vec![Vec::new(); 1]).is_err());
    }
}
