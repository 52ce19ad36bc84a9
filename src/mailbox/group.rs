//! `MailboxGroup`: joining, sending, matching receives, waiting, liveness.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::framing::{
    self, Assembler, Completed, Descriptor, Frame, FramingError, Payload, TOTAL_FIELD,
};
use super::layout::{
    state, GroupHeader, GroupLayout, GroupParams, MemberBlock, RingControl, ShmRing,
    FLAG_EPHEMERAL, FLAG_MEMBARRIER, GROUP_HEADER,
};
use super::matching::Matching;
use super::pool::Pools;
use super::ring::{
    Consumer, Producer, RecordRef, Reservation, RingError, FLAG_ABORT, FLAG_CONT, FLAG_MORE,
    FLAG_POOL,
};
use super::wake::{notify, notify_light, sleep, Slept};
use super::{
    MailboxOptions, WaitStrategy, GROUP_ENV, LIVENESS_SLICE, MAX_MEMBERS, MAX_MESSAGE_LEN,
    RANK_ENV, SIZE_ENV,
};
use crate::error::{Error, MailboxError, SegmentError, SyncError};
use crate::segment::{lock, Segment, SegmentKind, SegmentName};
use crate::sync::futex::Doorbell;
use crate::sync::membarrier::{self, Scope};
use crate::sync::{Pause, WaitPolicy, Waiter};
#[cfg(doc)]
use crate::transport::Arrival;
use crate::transport::{Message, Source, Status, TagMatch, Transport, Wait};

/// A member of a mailbox group: one endpoint of message passing on shared
/// memory. See the [module docs](super).
///
/// `MailboxGroup` is `Send` (move it to the thread that uses it) but not
/// `Sync`: every operation takes `&mut self`.
///
/// # Examples
///
/// Two members in one process (normally each is a process of its own, see
/// [`MailboxGroup::from_env`]):
///
/// ```
/// use shmpi::mailbox::{MailboxGroup, MailboxOptions};
/// use shmpi::segment::SegmentName;
/// use shmpi::transport::{Source, TagMatch, Wait};
///
/// let name = SegmentName::unique("doc-group");
/// let opts = MailboxOptions::default();
/// let mut a = MailboxGroup::create_or_join(&name, 0, 2, &opts)?;
/// let mut b = MailboxGroup::join(&name, 1, &opts)?;
/// a.send(1, 5, b"hello")?;
/// a.send(1, 6, b"world")?;
/// // Matching by tag: the later message first; the other waits in a queue.
/// assert_eq!(b.recv(0, 6, Wait::Forever)?.data, b"world");
/// let m = b.recv(Source::Any, TagMatch::Any, Wait::Forever)?;
/// assert_eq!((m.source, m.tag, m.data.as_slice()), (0, 5, &b"hello"[..]));
/// # Ok::<(), shmpi::Error>(())
/// ```
pub struct MailboxGroup {
    seg: Arc<Segment>,
    layout: GroupLayout,
    id: usize,
    /// Members are threads of this process: liveness by state word only.
    threads: bool,
    doorbell: Doorbells,
    out: Vec<Option<Outgoing>>,
    inc: Vec<Option<Incoming>>,
    matching: Matching,
    wait: WaitStrategy,
    spin: Option<Duration>,
    policy: WaitPolicy,
    /// What a receive from any source has told about each peer's end.
    ends: Vec<EndReport>,
    /// Peers to which a streamed message was abandoned at a deadline and
    /// whose abort record did not fit yet: it goes before the next record.
    abort_owed: Vec<bool>,
    /// Every member's payload pool; ours to allocate from.
    pools: Pools,
    /// When a sender short of fragments next looks for dead borrowers.
    next_reclaim: Instant,
    /// The fragment of the last loan, until it is committed; a loan dropped
    /// uncommitted leaves it here, and the next placement frees it.
    open_loan: Option<u32>,
}

/// Where a message (or one chunk of it) goes: inline in the lane, or into
/// a fragment of our pool announced by a descriptor in the lane.
#[derive(Debug, Clone, Copy)]
enum Placement {
    Inline(Reservation),
    Pooled { lane: Reservation, fragment: u32 },
}

/// A lane record's payload, wherever it is: in the lane, or in the
/// sender's pool (which the sender takes back once the record is released).
#[derive(Debug, Clone, Copy)]
struct Resolved {
    ptr: *const u8,
    len: usize,
}

/// Whether a receive from any source has reported a peer's end (death or
/// departure) — exactly once, after the peer's last message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndReport {
    /// Alive as far as we know (or back after a rejoin).
    None,
    /// Found gone; reported once its ring holds nothing more.
    Pending(PeerStatus),
    /// Reported.
    Reported,
}

/// A group whose members are the threads of one process: the same rings
/// and protocol, in a segment that is unlinked at once. Made by
/// [`MailboxGroup::threads`].
pub type ThreadMailbox = MailboxGroup;

// SAFETY: the raw pointers inside (rings, member blocks) point into the
// mapping owned by `seg` (an Arc, kept alive by self); nothing is tied to a
// thread. Shared-memory accesses go through atomics and the ring protocol.
unsafe impl Send for MailboxGroup {}

struct Outgoing {
    ring: ShmRing,
    prod: Producer,
}

struct Incoming {
    ring: ShmRing,
    cons: Consumer,
    assembler: Assembler,
}

/// A record's payload in a ring, read through [`Payload`].
struct RingPayload {
    ptr: *const u8,
    len: usize,
}

impl RingPayload {
    /// # Safety
    ///
    /// `ptr` must be valid for `len` reads while the value lives (a
    /// validated record that is not released meanwhile).
    unsafe fn new(ptr: *const u8, len: usize) -> RingPayload {
        RingPayload { ptr, len }
    }
}

impl Payload for RingPayload {
    fn len(&self) -> usize {
        self.len
    }
    fn copy_to(&self, from: usize, dst: &mut [u8]) {
        let end = from.checked_add(dst.len()).expect("copy range overflows");
        assert!(end <= self.len, "copy past the record's payload");
        // SAFETY: from..end lies inside the payload (asserted), which is
        // valid for reads (constructor contract); dst is our own memory.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(from), dst.as_mut_ptr(), dst.len()) };
    }
}

/// What heads a ring, for a receive.
enum Head {
    Empty,
    Whole(RecordRef, Resolved),
    Other,
}

/// What a member looks like to its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerStatus {
    /// Has not joined yet.
    Vacant,
    /// Joined and alive.
    Alive,
    /// Left in an orderly way.
    Left,
    /// Joined, and its process has died.
    Dead,
}

/// A snapshot of one ordered pair's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PairCounters {
    /// Messages sent.
    pub messages: u64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Times the sender slept on a full ring.
    pub sender_sleeps: u64,
    /// Times the receiver slept waiting for this sender in particular.
    pub receiver_sleeps: u64,
    /// Bytes in the ring not yet consumed.
    pub queued_bytes: u64,
}

/// When a wait must end, and how it was asked for.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    wait: Wait,
}

impl Deadline {
    /// The deadline `timeout` from now, if any.
    fn after(timeout: Option<Duration>) -> Option<Deadline> {
        Deadline::of(timeout.map_or(Wait::Forever, Wait::For))
    }

    /// The deadline of a receive's `wait` (`Now`: now).
    fn of(wait: Wait) -> Option<Deadline> {
        wait.timeout().map(|timeout| Deadline {
            at: Instant::now() + timeout,
            wait,
        })
    }

    /// What an expired wait reports: a timeout, or for a wait that was not
    /// to wait at all, would-block.
    fn expired(&self) -> MailboxError {
        match self.wait {
            Wait::For(waited) => MailboxError::Timeout { waited },
            Wait::Now | Wait::Forever => MailboxError::WouldBlock,
        }
    }
}

/// The error that reports a peer's end, if `status` is one.
fn end_error(peer: usize, status: PeerStatus) -> Option<MailboxError> {
    match status {
        PeerStatus::Dead => Some(MailboxError::PeerDied { id: peer }),
        PeerStatus::Left => Some(MailboxError::PeerLeft { id: peer }),
        PeerStatus::Vacant | PeerStatus::Alive => None,
    }
}

/// How long a member that found work after an unrung sleep waits for the
/// waker's ring before counting a lost wake-up: one check period for each
/// member per CPU (at most 32). A waker preempted between publishing and
/// ringing is off its CPU for about a scheduling period, which grows with
/// the runnable processes per CPU: with a flat 10 ms, a stress run of 64
/// members on 2 CPUs counted a late ring as lost. The wait ends as soon as
/// the ring comes, so only a real lost wake-up waits it all.
fn late_ring_grace(members: usize) -> Duration {
    let per_cpu = members
        .div_ceil(crate::sync::wait::online_cpus())
        .clamp(1, 32);
    LIVENESS_SLICE * per_cpu as u32
}

/// Polls `came` under `waiter` (yielding, then sleeping a backoff) until it
/// holds — true — or the waiter's time runs out — false.
fn late_ring(mut waiter: Waiter, came: impl Fn() -> bool) -> bool {
    loop {
        if came() {
            return true;
        }
        if !waiter.idle() {
            return came();
        }
    }
}

/// The doorbell protocol of one member (see [`super::wake`]).
#[derive(Debug, Clone, Copy)]
struct Doorbells {
    /// This member's wakes are light (a plain load of the flag): its
    /// process is registered for the sleepers' heavy barrier.
    light: bool,
    /// The heavy barrier this member runs before it sleeps, for light
    /// wakers: global for a group of processes, private for threads.
    heavy: Option<Scope>,
}

impl Doorbells {
    /// True when [`DOORBELL_ENV`] asks a creator for the asymmetric
    /// protocol and this kernel has it.
    fn membarrier_requested() -> bool {
        std::env::var(DOORBELL_ENV).is_ok_and(|v| v.trim() == "membarrier")
            && membarrier::available(Scope::Global)
    }

    /// The protocol of a member of a group of processes (`threads`:
    /// threads) whose creator chose `asymmetric`: then this process
    /// registers for the barrier, and rings lightly if it could (a member
    /// that could not is sound with the fenced waker), and every sleeper
    /// runs the barrier. Else the fenced protocol, and sleeps run none.
    fn for_group(threads: bool, asymmetric: bool) -> Doorbells {
        let scope = if threads {
            Scope::Private
        } else {
            Scope::Global
        };
        if !asymmetric {
            return Doorbells {
                light: false,
                heavy: None,
            };
        }
        let light = membarrier::register(scope);
        // Other processes may ring lightly whether or not this one could
        // register; threads share this process's registration.
        let heavy = (light || (!threads && membarrier::available(scope))).then_some(scope);
        Doorbells { light, heavy }
    }

    /// The member block's record of it: 1 light, 2 fenced.
    fn mode(self) -> u32 {
        if self.light {
            DOORBELL_LIGHT
        } else {
            DOORBELL_FENCED
        }
    }
}

/// Environment variable read when a group is created: `membarrier` makes
/// it ring with the asymmetric protocol (a send that finds its peer awake
/// makes no atomic read-modify-write; a sleeper runs `membarrier(2)`)
/// where the kernel has it. The default is the fenced protocol (a swap on
/// every send): measured here, `membarrier` costs a sleeper 0.6 µs alone
/// but 15 µs with one busy registered process and 73 µs with 16 (its
/// inter-processor interrupts are VM exits), against 2–4 ns it saves a
/// send — a loss wherever members sleep.
pub const DOORBELL_ENV: &str = "SHMPI_DOORBELL";

/// [`MemberBlock::doorbell_mode`]: the member wakes with a plain load.
const DOORBELL_LIGHT: u32 = 1;
/// [`MemberBlock::doorbell_mode`]: the member wakes with a swap.
const DOORBELL_FENCED: u32 = 2;

/// What a waiting call waits for, and whose death ends the wait.
#[derive(Debug, Clone, Copy)]
enum Watch {
    Source(usize),
    /// Any source, for a receive of `TagMatch`.
    AnySource(TagMatch),
    Dest(usize),
}

enum Found {
    Owned(Message),
    InRing {
        src: usize,
        rec: RecordRef,
        at: Resolved,
    },
}

/// How far the receiver has consumed our lane to `dest`: its published
/// head, or 0 when that is beyond what we produced (another process wrote
/// it: then nothing counts as consumed).
fn consumed(out: &[Option<Outgoing>], dest: usize) -> u64 {
    out[dest].as_ref().map_or(0, |o| {
        let head = o.ring.control().head.load(Ordering::Acquire);
        if head <= o.prod.position() {
            head
        } else {
            0
        }
    })
}

/// Member `id`'s block in a group segment whose `layout` was validated
/// against it (`id` below its member count).
fn member_block<'s>(seg: &'s Segment, layout: &GroupLayout, id: usize) -> &'s MemberBlock {
    assert!(
        id < layout.params.members,
        "member ids are checked by callers"
    );
    // SAFETY: the validated layout puts the 64-aligned block (atomics only)
    // inside the mapping, which lives as long as `seg`.
    unsafe {
        &*seg
            .as_ptr()
            .add(layout.member_offset(id))
            .cast::<MemberBlock>()
    }
}

/// The control block of lane `src → dst` (`src != dst`, both checked ids)
/// of a group segment whose `layout` was validated against it.
fn lane_control<'s>(
    seg: &'s Segment,
    layout: &GroupLayout,
    src: usize,
    dst: usize,
) -> &'s RingControl {
    let n = layout.params.members;
    assert!(
        src < n && dst < n && src != dst,
        "lane ids are checked by callers"
    );
    // SAFETY: as in `member_block`: a validated, 64-aligned lane block.
    unsafe {
        &*seg
            .as_ptr()
            .add(layout.ring_offset(src, dst))
            .cast::<RingControl>()
    }
}

fn ring_error(src: usize, dst: usize, e: RingError) -> MailboxError {
    MailboxError::Corrupt(format!("ring {src}→{dst}: {e}"))
}

fn framing_error(src: usize, dst: usize, e: FramingError) -> MailboxError {
    match e {
        FramingError::Interrupted => MailboxError::Interrupted { id: src },
        FramingError::Corrupt(what) => ring_error(src, dst, RingError::Corrupt(what)),
    }
}

impl MailboxGroup {
    /// Creates the segment of a group of `members` (the launcher's job, or
    /// the first member's through [`create_or_join`](Self::create_or_join)).
    /// The returned segment removes the name when dropped.
    ///
    /// # Errors
    ///
    /// [`MailboxError::InvalidOptions`] for invalid options (naming the
    /// option), or the segment's errors.
    pub fn create_segment(
        name: &SegmentName,
        members: usize,
        options: &MailboxOptions,
    ) -> Result<Segment, Error> {
        let params = GroupParams {
            members,
            lane: options.lane,
            granularity: options.granularity,
            fragment: options.fragment,
            fragments: options.pool / options.fragment.max(1),
            flags: if options.ephemeral { FLAG_EPHEMERAL } else { 0 }
                | if Doorbells::membarrier_requested() {
                    FLAG_MEMBARRIER
                } else {
                    0
                },
        };
        let layout = params
            .validate(None)
            .map_err(MailboxError::InvalidOptions)?;
        Segment::builder(name.as_str())
            .size(layout.total)
            .kind(SegmentKind::MAILBOX_GROUP)
            .create_init(|seg| {
                // SAFETY: the data region is at least layout.total bytes
                // (sized above), 128-aligned; GroupHeader is atomics only.
                // Member blocks and rings start zeroed (fresh pages), which
                // is their initial state: doorbells, flags and positions 0.
                let header = unsafe { &*seg.as_ptr().cast::<GroupHeader>() };
                params.write(header);
                Ok(())
            })
    }

    /// Joins an existing group as member `id`, waiting up to
    /// `options.join_timeout` for the group to be created.
    ///
    /// # Errors
    ///
    /// [`MailboxError::AlreadyJoined`] when a live process holds `id`,
    /// [`MailboxError::InvalidRank`], a corrupt or foreign segment, or
    /// [`SegmentError::NotFound`] when nobody created it in time.
    pub fn join(
        name: &SegmentName,
        id: usize,
        options: &MailboxOptions,
    ) -> Result<MailboxGroup, Error> {
        let seg = open_group(name, options.join_timeout)?;
        Self::attach(Arc::new(seg), id, None, options, false)
    }

    /// Creates the group if it does not exist yet, else joins it: lets N
    /// symmetric processes start it without a launcher. The name stays until
    /// the last member leaves (or, ephemeral, until all have joined).
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join), [`MailboxError::InvalidOptions`] for
    /// invalid options, and [`MailboxError::Mismatch`] when an existing
    /// group has another size. A call that fails leaves nothing in
    /// `/dev/shm`.
    pub fn create_or_join(
        name: &SegmentName,
        id: usize,
        members: usize,
        options: &MailboxOptions,
    ) -> Result<MailboxGroup, Error> {
        if (1..=MAX_MEMBERS).contains(&members) && id >= members {
            return Err(MailboxError::InvalidRank {
                rank: id,
                size: members,
            }
            .into());
        }
        let (seg, created) = match Self::create_segment(name, members, options) {
            Ok(seg) => (seg, true),
            Err(Error::Segment(SegmentError::AlreadyExists { .. })) => {
                (open_group(name, options.join_timeout)?, false)
            }
            Err(e) => return Err(e),
        };
        // A failed attach drops the segment, and a creator's segment then
        // removes its name: a failed call leaves nothing behind.
        let mut group = Self::attach(Arc::new(seg), id, Some(members), options, false)?;
        if created {
            if let Some(seg) = Arc::get_mut(&mut group.seg) {
                seg.persist();
            }
        }
        Ok(group)
    }

    /// Joins the group a launcher prepared: name, id and size from
    /// [`GROUP_ENV`], [`RANK_ENV`] and [`SIZE_ENV`] (see [`super::launch`]).
    /// Without them, under Slurm's `srun`, the step's tasks on this node
    /// form a group of their own ([`crate::slurm::SlurmTask`]): named after
    /// the job, step and node, task `SLURM_LOCALID` 0 creates it, its size
    /// is the node's task count, and it is ephemeral (its name goes once
    /// all have joined).
    ///
    /// # Errors
    ///
    /// [`MailboxError::Env`] for a missing or malformed variable (neither
    /// shmpi's nor Slurm's set: names [`GROUP_ENV`]), else as
    /// [`join`](Self::join), plus [`MailboxError::Mismatch`] when the size
    /// disagrees with the group's.
    pub fn from_env() -> Result<MailboxGroup, Error> {
        Self::from_env_with(&MailboxOptions::default())
    }

    /// [`from_env`](Self::from_env) with options for this member.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_env_with(options: &MailboxOptions) -> Result<MailboxGroup, Error> {
        let var = |var: &'static str| {
            std::env::var(var).map_err(|e| MailboxError::Env {
                var,
                problem: e.to_string(),
            })
        };
        let number = |var: &'static str| -> Result<usize, MailboxError> {
            var_parse(var, &std::env::var(var).unwrap_or_default())
        };
        if std::env::var_os(GROUP_ENV).is_none() {
            if let Some(task) = crate::slurm::SlurmTask::from_env()? {
                let options = MailboxOptions {
                    ephemeral: true,
                    ..options.clone()
                };
                return Self::create_or_join(
                    &task.group_name()?,
                    task.local,
                    task.tasks_on_node,
                    &options,
                );
            }
        }
        let name = var(GROUP_ENV)?;
        let name = SegmentName::new(&name).map_err(|e| MailboxError::Env {
            var: GROUP_ENV,
            problem: e.to_string(),
        })?;
        let (id, size) = (number(RANK_ENV)?, number(SIZE_ENV)?);
        let seg = open_group(&name, options.join_timeout)?;
        Self::attach(Arc::new(seg), id, Some(size), options, false)
    }

    /// A group of `members` endpoints for the threads of this process, in a
    /// segment that is unlinked at once (nothing can leak). Hand one
    /// endpoint to each thread.
    ///
    /// # Errors
    ///
    /// As [`create_segment`](Self::create_segment).
    pub fn threads(members: usize, options: &MailboxOptions) -> Result<Vec<MailboxGroup>, Error> {
        let mut seg = Self::create_segment(&SegmentName::unique("threads"), members, options)?;
        seg.unlink()?;
        let seg = Arc::new(seg);
        (0..members)
            .map(|id| Self::attach(seg.clone(), id, Some(members), options, true))
            .collect()
    }

    fn attach(
        seg: Arc<Segment>,
        id: usize,
        expected_members: Option<usize>,
        options: &MailboxOptions,
        threads: bool,
    ) -> Result<MailboxGroup, Error> {
        let layout = read_layout(&seg)?;
        let n = layout.params.members;
        if let Some(expected) = expected_members {
            if expected != n {
                return Err(MailboxError::Mismatch {
                    what: "group size",
                    found: n as u64,
                    expected: expected as u64,
                }
                .into());
            }
        }
        if id >= n {
            return Err(MailboxError::InvalidRank { rank: id, size: n }.into());
        }
        if !threads {
            let byte = lock::MEMBER_BYTE_BASE + id as u64;
            let locked =
                lock::try_lock(seg.fd(), lock::LockKind::Exclusive, byte).map_err(|errno| {
                    SyncError::Os {
                        op: "fcntl(F_OFD_SETLK) on a member byte",
                        errno,
                    }
                })?;
            if !locked {
                return Err(MailboxError::AlreadyJoined { id }.into());
            }
        }
        let ring = |src: usize, dst: usize| -> Result<ShmRing, Error> {
            let ptr = seg.place("ring", layout.ring_offset(src, dst), layout.ring_stride, 64)?;
            // SAFETY: the block (control + capacity bytes) is inside the
            // mapping and 64-aligned (place); `seg` is kept by the group.
            Ok(unsafe { ShmRing::new(ptr, layout.geometry) })
        };
        let mut out = Vec::with_capacity(n);
        let mut inc = Vec::with_capacity(n);
        for peer in 0..n {
            if peer == id {
                out.push(None);
                inc.push(None);
                continue;
            }
            let o = ring(id, peer)?;
            let prod = Producer::recover(&o).map_err(|e| ring_error(id, peer, e))?;
            out.push(Some(Outgoing { ring: o, prod }));
            let i = ring(peer, id)?;
            inc.push(Some(Incoming {
                cons: Consumer::recover(&i).map_err(|e| ring_error(peer, id, e))?,
                ring: i,
                assembler: Assembler::default(),
            }));
        }
        // SAFETY: the data region holds the validated layout, and the
        // Arc'd segment (kept by the group) outlives `pools`.
        let pools = unsafe {
            Pools::new(
                NonNull::new(seg.as_ptr()).expect("a mapping is not at null"),
                layout,
                id,
                |d| {
                    let o = out[d].as_ref().expect("a lane to every other member");
                    (consumed(&out, d), o.prod.position())
                },
            )
        };
        // Registered before this member publishes itself as joined: from
        // then on peers may sleep relying on the barrier reaching us.
        let doorbell = Doorbells::for_group(threads, layout.params.flags & FLAG_MEMBARRIER != 0);
        let group = MailboxGroup {
            layout,
            id,
            threads,
            doorbell,
            out,
            inc,
            matching: Matching::new(id, n),
            wait: options.wait,
            spin: options.spin,
            policy: options.wait.policy(n, options.spin),
            ends: vec![EndReport::None; n],
            abort_owed: vec![false; n],
            pools,
            next_reclaim: Instant::now(),
            open_loan: None,
            seg,
        };
        let me = group.member(id);
        me.doorbell_mode
            .store(group.doorbell.mode(), Ordering::Relaxed);
        let previous = me.state.swap(state::JOINED, Ordering::AcqRel);
        me.pid.store(std::process::id(), Ordering::Relaxed);
        me.incarnation.fetch_add(1, Ordering::Relaxed);
        let header = group.header();
        if previous == state::LEFT {
            header.left.fetch_sub(1, Ordering::AcqRel);
        }
        if previous == state::VACANT {
            let joined = header.joined.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
            if joined as usize == n && layout.params.flags & FLAG_EPHEMERAL != 0 && !threads {
                // Everyone is attached: the memory lives while mapped.
                let _ = Segment::remove(group.seg.name());
            }
        }
        Ok(group)
    }

    /// This member's rank in the group (0 to `members() - 1`), as
    /// everywhere else in shmpi.
    pub fn rank(&self) -> usize {
        self.id
    }

    /// This member's rank.
    #[deprecated(since = "0.2.0", note = "`rank()`, as everywhere else in shmpi")]
    pub fn id(&self) -> usize {
        self.id
    }

    /// Number of members.
    pub fn members(&self) -> usize {
        self.layout.params.members
    }

    /// The group's layout (capacity, granularity, offsets).
    pub fn layout(&self) -> &GroupLayout {
        &self.layout
    }

    /// The largest message of one record — a pool fragment: the limit of
    /// [`loan`](Self::loan) and [`try_send`](Self::try_send) (131,072 bytes
    /// with the default options). Larger messages stream in fragments.
    pub fn max_record_payload(&self) -> usize {
        self.pools.fragment_len()
    }

    /// The largest message that travels inline in a lane (1,008 bytes with
    /// the default options); larger ones go through the sender's pool.
    pub fn max_inline_payload(&self) -> usize {
        self.layout.geometry.max_payload()
    }

    /// The segment's name.
    pub fn name(&self) -> &SegmentName {
        self.seg.name()
    }

    /// This member's wait strategy.
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.wait = wait;
        self.policy = wait.policy(self.members(), self.spin);
    }

    /// This member's spin budget (for [`WaitStrategy::SpinThenBlock`]).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = Some(spin);
        self.policy = self.wait.policy(self.members(), self.spin);
    }

    /// The wait policy this member follows.
    pub fn wait_policy(&self) -> WaitPolicy {
        self.policy
    }

    fn header(&self) -> &GroupHeader {
        // SAFETY: validated at attach: the header is at the start of the
        // data region, which the Arc'd segment keeps mapped.
        unsafe { &*self.seg.as_ptr().cast::<GroupHeader>() }
    }

    fn member(&self, id: usize) -> &MemberBlock {
        member_block(&self.seg, &self.layout, id)
    }

    fn doorbell(&self, id: usize) -> Doorbell<'_> {
        Doorbell::new(&self.member(id).doorbell)
    }

    /// Rings `peer`'s doorbell if it announced that it sleeps: after a
    /// plain load of its flag where this process takes the peers' heavy
    /// barriers, else after a swap (see [`super::wake`]).
    #[inline]
    fn notify(&self, peer: usize) {
        let flag = &self.member(peer).sleeping;
        if self.doorbell.light {
            notify_light(flag, || self.doorbell(peer).ring());
        } else {
            notify(flag, || self.doorbell(peer).ring());
        }
    }

    /// The protocol a group created now by this process gets:
    /// `"membarrier"` when [`DOORBELL_ENV`] asks for it and the kernel has
    /// it, else `"fenced"`.
    pub fn protocol_for_new_groups() -> &'static str {
        if Doorbells::membarrier_requested() {
            "membarrier"
        } else {
            "fenced"
        }
    }

    /// How this member rings its peers: `"membarrier"` (the sleeper pays
    /// the barrier; a send that finds its peer awake makes no atomic
    /// read-modify-write) or `"fenced"` (where `membarrier(2)` is missing
    /// or registration failed).
    pub fn doorbell_protocol(&self) -> &'static str {
        if self.doorbell.light {
            "membarrier"
        } else {
            "fenced"
        }
    }

    /// What `peer` looks like now.
    ///
    /// # Errors
    ///
    /// [`MailboxError::InvalidRank`], [`MailboxError::Corrupt`] for an
    /// impossible state word, or the `fcntl` error of the liveness check.
    pub fn peer_status(&self, peer: usize) -> Result<PeerStatus, MailboxError> {
        self.check_rank(peer)?;
        if self.threads || peer == self.id {
            // Threads share one process; this member is alive by definition.
            return match self.member(peer).state.load(Ordering::Acquire) {
                state::JOINED => Ok(PeerStatus::Alive),
                _ => member_status(&self.seg, &self.layout, peer),
            };
        }
        member_status(&self.seg, &self.layout, peer)
    }

    /// Counters of the ring `src → dst`, `None` for `src == dst`.
    ///
    /// # Errors
    ///
    /// [`MailboxError::InvalidRank`].
    pub fn counters(&self, src: usize, dst: usize) -> Result<Option<PairCounters>, MailboxError> {
        self.check_rank(src)?;
        self.check_rank(dst)?;
        Ok((src != dst).then(|| ring_counters(&self.seg, &self.layout, src, dst)))
    }

    /// What is in the group segment `seg` (opened by a tool that is not a
    /// member, e.g. `shmpi inspect`): its parameters, every member's status
    /// and every ring's counters. Reads only; the layout is validated
    /// first, so a corrupt segment is an error.
    ///
    /// # Errors
    ///
    /// [`MailboxError::Layout`] or [`MailboxError::Corrupt`] for a segment
    /// that is not a valid group; the liveness check's `fcntl` error.
    pub fn inspect(seg: &Segment) -> Result<GroupReport, Error> {
        let layout = read_layout(seg)?;
        let n = layout.params.members;
        let members = (0..n)
            .map(|id| member_status(seg, &layout, id))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rings = Vec::new();
        for src in 0..n {
            for dst in (0..n).filter(|&d| d != src) {
                rings.push((src, dst, ring_counters(seg, &layout, src, dst)));
            }
        }
        let pool_in_use = (0..n)
            .map(|id| {
                let used = member_block(seg, &layout, id)
                    .pool_in_use
                    .load(Ordering::Relaxed);
                // Written by the member; bounded for the report.
                usize::try_from(used)
                    .map_or(layout.params.fragments, |u| u.min(layout.params.fragments))
            })
            .collect();
        let lost_wakeups = (0..n)
            .map(|id| {
                member_block(seg, &layout, id)
                    .lost_wakeups
                    .load(Ordering::Relaxed)
            })
            .collect();
        Ok(GroupReport {
            lane: layout.params.lane,
            fragment: layout.params.fragment,
            fragments: layout.params.fragments,
            reserved: layout.total,
            reserved_per_member: layout.bytes_per_member(),
            members,
            pool_in_use,
            lost_wakeups,
            membarrier: layout.params.flags & FLAG_MEMBARRIER != 0,
            rings,
        })
    }

    /// How many members of the group in `seg` have joined so far: one read
    /// of its header, cheap enough to poll while a job starts.
    ///
    /// # Errors
    ///
    /// [`MailboxError::Layout`] for a segment that is not a valid group.
    pub fn joined(seg: &Segment) -> Result<usize, Error> {
        read_layout(seg)?;
        // SAFETY: a validated group header at the start of the data region
        // (atomics only), inside the mapping `seg` keeps.
        let header = unsafe { &*seg.as_ptr().cast::<GroupHeader>() };
        Ok(header.joined.load(Ordering::Acquire) as usize)
    }

    fn check_rank(&self, rank: usize) -> Result<(), MailboxError> {
        if rank < self.members() {
            Ok(())
        } else {
            Err(MailboxError::InvalidRank {
                rank,
                size: self.members(),
            })
        }
    }

    fn check_send(&self, dest: usize, tag: i32, len: usize) -> Result<(), MailboxError> {
        self.check_rank(dest)?;
        if tag < 0 {
            return Err(MailboxError::InvalidTag { tag });
        }
        if len > MAX_MESSAGE_LEN {
            return Err(MailboxError::TooLarge {
                len,
                max: MAX_MESSAGE_LEN,
            });
        }
        Ok(())
    }

    // ------------------------------------------------------------ waiting

    /// Polls until `poll` yields, following the wait strategy; ends with
    /// `Timeout` at the deadline, or with the watched peer's end.
    ///
    /// Ends are found by a liveness check every [`LIVENESS_SLICE`] of
    /// waiting, and reported only once the peer's ring is drained: for a
    /// named source or destination at every call; for any source exactly
    /// once per end ([`EndReport`]), by the first call that finds the
    /// ended peer's ring empty — a death found together with a message is
    /// reported by the next call.
    fn wait_for<T>(
        &mut self,
        deadline: Option<Deadline>,
        watch: Watch,
        mut poll: impl FnMut(&mut Self) -> Result<Option<T>, MailboxError>,
    ) -> Result<T, MailboxError> {
        if let Watch::AnySource(tag) = watch {
            if let Some(e) = self.take_end_report(tag)? {
                return Err(e);
            }
        }
        if deadline.is_some_and(|d| d.wait == Wait::Now) {
            // Not to wait at all: one look.
            return poll(self)?.ok_or(MailboxError::WouldBlock);
        }
        let mut waiter = Waiter::until(&self.policy, deadline.as_ref().map(|d| d.at));
        loop {
            if let Some(v) = poll(self)? {
                return Ok(v);
            }
            match waiter.pause() {
                Pause::Again => {}
                Pause::Expired => {
                    return Err(deadline.map_or(MailboxError::WouldBlock, |d| d.expired()))
                }
                Pause::Check => {
                    if let Some(result) = self.end_of_wait(watch, &mut poll)? {
                        return result;
                    }
                }
                Pause::Block(slice) => match self.sleep_for(watch, slice, &mut poll)? {
                    Slept::Found(result) | Slept::Lost(result) => return result,
                    Slept::Rung | Slept::Unrung => {}
                },
            }
        }
    }

    /// The blocking step of a wait: announces the sleep, looks for work a
    /// last time, and sleeps on this member's doorbell for at most `slice`.
    fn sleep_for<T>(
        &mut self,
        watch: Watch,
        slice: Duration,
        poll: &mut impl FnMut(&mut Self) -> Result<Option<T>, MailboxError>,
    ) -> Result<Slept<Result<T, MailboxError>>, MailboxError> {
        // A handle of our own on the mapping: what we sleep on stays
        // borrowed from it while `poll` borrows `self` mutably.
        let seg = Arc::clone(&self.seg);
        let me = member_block(&seg, &self.layout, self.id);
        let sleep_counter = match watch {
            Watch::AnySource(_) => &me.recv_sleeps,
            Watch::Source(s) => &lane_control(&seg, &self.layout, s, self.id).recv_sleeps,
            Watch::Dest(d) => &lane_control(&seg, &self.layout, self.id, d).send_sleeps,
        };
        let members = self.members();
        let bell = Doorbell::new(&me.doorbell);
        // The ticket is taken before the last look for work: a ring after
        // it changes the word and the sleep returns at once.
        let ticket = bell.ticket();
        let mut bell_error = None;
        let scope = self.doorbell.heavy;
        let slept = sleep(
            &me.sleeping,
            || {
                // A failed barrier (none is expected once available) leaves
                // a light waker's ring to the periodic check: counted as a
                // lost wake-up, never a hang.
                if let Some(scope) = scope {
                    let _ = membarrier::heavy(scope);
                }
            },
            || poll(self).transpose(),
            || {
                let count = sleep_counter.load(Ordering::Relaxed);
                sleep_counter.store(count.wrapping_add(1), Ordering::Relaxed);
                bell_error = bell.sleep(ticket, slice).err();
                bell.ticket() != ticket
            },
            || {
                // A waker that published while the flag was up is bound to
                // ring; give it the grace of a preempted process.
                let grace = Waiter::new(&WaitPolicy::block_only(), Some(late_ring_grace(members)));
                late_ring(grace, || bell.ticket() != ticket)
            },
        );
        if let Some(errno) = bell_error {
            return Err(SyncError::Os {
                op: "futex(FUTEX_WAIT) on a mailbox doorbell",
                errno,
            }
            .into());
        }
        if let Slept::Lost(_) = slept {
            if !self.a_waker_died(watch)? {
                self.count_lost_wakeup();
            }
        }
        Ok(slept)
    }

    /// True when a member that could have rung for `watch` has died: it
    /// may have published and been killed before ringing — a ring lost
    /// with its waker, not a fault of the protocol (the message is found
    /// all the same).
    #[cold]
    fn a_waker_died(&self, watch: Watch) -> Result<bool, MailboxError> {
        let dead = |p: usize| Ok::<_, MailboxError>(self.peer_status(p)? == PeerStatus::Dead);
        match watch {
            Watch::Source(p) | Watch::Dest(p) => dead(p),
            Watch::AnySource(_) => {
                for p in (0..self.members()).filter(|&p| p != self.id) {
                    if dead(p)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }

    /// Counts a wait that found work after a sleep no ring ended (see
    /// [`lost_wakeups`](Self::lost_wakeups)).
    #[cold]
    fn count_lost_wakeup(&self) {
        let c = &self.member(self.id).lost_wakeups;
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// Waits of this member whose sleep ended without a ring although a
    /// look made right after it — the member still announced as sleeping —
    /// found work, no ring came within a grace of 10 ms (a waker
    /// preempted between publishing and ringing is late, not lost), and no
    /// member that could have rung had died (killed between publishing
    /// and ringing, its ring is lost with it): a
    /// waker published while the member slept and never rang, a lost
    /// wake-up, which the periodic check rescued
    /// ([`wake::Slept::Lost`](super::wake::Slept::Lost)). The doorbell
    /// protocol makes this 0; a waker killed between publishing and
    /// ringing also counts. The stress and kill tests check that it stays
    /// 0.
    pub fn lost_wakeups(&self) -> u64 {
        self.member(self.id).lost_wakeups.load(Ordering::Relaxed)
    }

    /// The liveness check of a wait: `None` to go on waiting, else what the
    /// wait returns — a message that arrived before the end, or the end.
    fn end_of_wait<T>(
        &mut self,
        watch: Watch,
        poll: &mut impl FnMut(&mut Self) -> Result<Option<T>, MailboxError>,
    ) -> Result<Option<Result<T, MailboxError>>, MailboxError> {
        match watch {
            Watch::Dest(d) => Ok(end_error(d, self.peer_status(d)?).map(|e| poll(self)?.ok_or(e))),
            Watch::Source(s) => {
                let Some(e) = end_error(s, self.peer_status(s)?) else {
                    return Ok(None);
                };
                // Drain first: everything the peer published before its
                // end is delivered; only a message it never finished is
                // dropped.
                if let Some(v) = poll(self)? {
                    return Ok(Some(Ok(v)));
                }
                if let Some(inc) = self.inc[s].as_mut() {
                    inc.assembler.reset();
                }
                Ok(Some(Err(e)))
            }
            Watch::AnySource(tag) => {
                let mut all_ended = true;
                for peer in (0..self.members()).filter(|&p| p != self.id) {
                    let status = self.peer_status(peer)?;
                    match (end_error(peer, status), self.ends[peer]) {
                        (None, _) => {
                            self.ends[peer] = EndReport::None;
                            all_ended = false;
                        }
                        (Some(_), EndReport::None) => self.ends[peer] = EndReport::Pending(status),
                        (Some(_), EndReport::Pending(_) | EndReport::Reported) => {}
                    }
                }
                if let Some(v) = poll(self)? {
                    return Ok(Some(Ok(v)));
                }
                if let Some(e) = self.take_end_report(tag)? {
                    return Ok(Some(Err(e)));
                }
                Ok(all_ended.then_some(Err(MailboxError::AllPeersGone)))
            }
        }
    }

    /// The first pending end (see [`EndReport`]) of a peer that has nothing
    /// more for a receive of `tag` — no record in its ring, no matching
    /// message queued — marked reported; a message it never finished is
    /// dropped.
    fn take_end_report(&mut self, tag: TagMatch) -> Result<Option<MailboxError>, MailboxError> {
        let id = self.id;
        for peer in 0..self.members() {
            let EndReport::Pending(status) = self.ends[peer] else {
                continue;
            };
            if self.matching.holds_from(peer, tag) {
                continue;
            }
            let Some(inc) = self.inc[peer].as_mut() else {
                continue;
            };
            let drained = inc
                .cons
                .peek(&inc.ring)
                .map_err(|e| ring_error(peer, id, e))?
                .is_none();
            if drained {
                inc.assembler.reset();
                self.ends[peer] = EndReport::Reported;
                return Ok(end_error(peer, status));
            }
        }
        Ok(None)
    }

    // -------------------------------------------------------------- sending

    /// Sends `data` to member `dest` with `tag` (≥ 0), waiting while the
    /// mailbox is full. A message larger than one record streams through the
    /// ring in chunks. Sending to yourself queues the message locally.
    ///
    /// # Errors
    ///
    /// [`MailboxError::InvalidRank`], [`MailboxError::InvalidTag`],
    /// [`MailboxError::TooLarge`], [`MailboxError::PeerDied`] /
    /// [`MailboxError::PeerLeft`] when the receiver is gone while we wait,
    /// [`MailboxError::Corrupt`].
    #[inline]
    pub fn send(&mut self, dest: usize, tag: i32, data: &[u8]) -> Result<(), MailboxError> {
        self.send_inner(dest, tag, data, None)
    }

    /// The fast path of a send: a message that fits the lane to another
    /// member, nothing owed, room now. False: take the general path.
    #[inline]
    fn send_fast(&mut self, dest: usize, tag: i32, data: &[u8]) -> Result<bool, MailboxError> {
        let Some(r) = self.fast_reserve(dest, tag, data.len())? else {
            return Ok(false);
        };
        self.write_commit(dest, r, &[data], 0, tag);
        self.count_sent(dest, data.len());
        Ok(true)
    }

    /// Room in the lane to `dest` for a `len`-byte record, when the fast
    /// path applies: a valid other member and tag, a message that fits
    /// inline, no abort record owed, no abandoned loan to free. `None`:
    /// take the general path (which also reports invalid arguments).
    /// Small and inlined on purpose: with the general path inlined around
    /// it, an 8 B message took 15–20 ns longer.
    #[inline]
    fn fast_reserve(
        &mut self,
        dest: usize,
        tag: i32,
        len: usize,
    ) -> Result<Option<Reservation>, MailboxError> {
        if dest == self.id
            || dest >= self.members()
            || tag < 0
            || len > self.max_inline_payload()
            || self.abort_owed[dest]
            || self.open_loan.is_some()
        {
            return Ok(None);
        }
        self.try_reserve(dest, len)
    }

    /// Like [`send`](Self::send), giving up `timeout` after the call began —
    /// the whole operation, a streamed message included. On `Timeout`
    /// nothing is delivered: a streamed message cut off at its deadline is
    /// abandoned with an abort record (written as soon as the mailbox has
    /// room for it, at the latest before the next message to `dest`), so
    /// the receiver discards the part it has and the next message arrives
    /// whole.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), plus [`MailboxError::Timeout`].
    pub fn send_timeout(
        &mut self,
        dest: usize,
        tag: i32,
        data: &[u8],
        timeout: Duration,
    ) -> Result<(), MailboxError> {
        self.send_inner(dest, tag, data, Some(timeout))
    }

    /// Sends without waiting: a message of at most one record
    /// ([`max_record_payload`](Self::max_record_payload)) when the mailbox
    /// has room for it now.
    ///
    /// # Errors
    ///
    /// [`MailboxError::WouldBlock`] when it is full (nothing sent),
    /// [`MailboxError::RecordTooLarge`] for a longer message, or as
    /// [`send`](Self::send).
    pub fn try_send(&mut self, dest: usize, tag: i32, data: &[u8]) -> Result<(), MailboxError> {
        self.check_send(dest, tag, data.len())?;
        if dest == self.id {
            return self.send_inner(dest, tag, data, None);
        }
        let max = self.max_record_payload();
        if data.len() > max {
            return Err(MailboxError::RecordTooLarge {
                len: data.len(),
                max,
            });
        }
        if !self.pay_abort(dest)? {
            return Err(MailboxError::WouldBlock);
        }
        let p = self
            .try_place(dest, data.len())?
            .ok_or(MailboxError::WouldBlock)?;
        self.write_placed(dest, p, &[data], 0, tag);
        self.count_sent(dest, data.len());
        Ok(())
    }

    #[inline]
    fn send_inner(
        &mut self,
        dest: usize,
        tag: i32,
        data: &[u8],
        timeout: Option<Duration>,
    ) -> Result<(), MailboxError> {
        if self.send_fast(dest, tag, data)? {
            return Ok(());
        }
        self.send_hooked(dest, tag, data, timeout, None)
    }

    /// Like [`send`](Self::send); while the send waits for room, `progress`
    /// is called after each look at the ring — a caller that also talks over
    /// another path (the hybrid world's MPI) keeps that path moving, so no
    /// cycle of senders across the two paths can block.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_with_progress(
        &mut self,
        dest: usize,
        tag: i32,
        data: &[u8],
        progress: &mut dyn FnMut(),
    ) -> Result<(), MailboxError> {
        if self.send_fast(dest, tag, data)? {
            return Ok(());
        }
        self.send_hooked(dest, tag, data, None, Some(progress))
    }

    #[inline(never)]
    fn send_hooked(
        &mut self,
        dest: usize,
        tag: i32,
        data: &[u8],
        timeout: Option<Duration>,
        mut hook: Option<&mut dyn FnMut()>,
    ) -> Result<(), MailboxError> {
        self.check_send(dest, tag, data.len())?;
        if dest == self.id {
            self.matching.push(Message {
                source: self.id,
                tag,
                data: data.to_vec(),
            });
            return Ok(());
        }
        let deadline = Deadline::after(timeout);
        self.settle_abort(dest, deadline, &mut hook)?;
        if data.len() <= self.max_record_payload() {
            let p = match self.try_place(dest, data.len())? {
                Some(p) => p,
                None => self.place(dest, data.len(), deadline, &mut hook)?,
            };
            self.write_placed(dest, p, &[data], 0, tag);
        } else {
            self.send_stream(dest, tag, data, deadline, &mut hook)?;
        }
        self.count_sent(dest, data.len());
        Ok(())
    }

    /// Streams a message larger than one fragment: the first fragment
    /// carries the total length and the first data, later ones the rest. A stream
    /// that cannot go on (the deadline passed, the receiver ended) is
    /// abandoned with an abort record, so the receiver discards the part
    /// it has and the next message is read as the whole message it is.
    fn send_stream(
        &mut self,
        dest: usize,
        tag: i32,
        data: &[u8],
        deadline: Option<Deadline>,
        hook: &mut Option<&mut dyn FnMut()>,
    ) -> Result<(), MailboxError> {
        let chunk = self.max_record_payload();
        let first = chunk - TOTAL_FIELD;
        let p = self.place(dest, chunk, deadline, hook)?;
        let total = (data.len() as u64).to_ne_bytes();
        self.write_placed(dest, p, &[&total, &data[..first]], FLAG_MORE, tag);
        let mut sent = first;
        while sent < data.len() {
            let n = chunk.min(data.len() - sent);
            let more = if sent + n < data.len() { FLAG_MORE } else { 0 };
            let p = match self.place(dest, n, deadline, hook) {
                Ok(p) => p,
                Err(e) => {
                    self.abort_owed[dest] = true;
                    self.pay_abort(dest)?;
                    return Err(e);
                }
            };
            self.write_placed(dest, p, &[&data[sent..sent + n]], FLAG_CONT | more, tag);
            sent += n;
        }
        Ok(())
    }

    /// Writes the abort record owed to `dest` if there is room now; true
    /// when nothing is owed any more.
    fn pay_abort(&mut self, dest: usize) -> Result<bool, MailboxError> {
        if !self.abort_owed[dest] {
            return Ok(true);
        }
        let Some(r) = self.try_reserve(dest, 0)? else {
            return Ok(false);
        };
        self.write_commit(dest, r, &[], FLAG_ABORT, 0);
        self.abort_owed[dest] = false;
        Ok(true)
    }

    /// Before a new message to `dest`: the abort record owed to it, waiting
    /// for room until `deadline` (a zero-payload record always fits once
    /// the receiver frees one granule).
    fn settle_abort(
        &mut self,
        dest: usize,
        deadline: Option<Deadline>,
        hook: &mut Option<&mut dyn FnMut()>,
    ) -> Result<(), MailboxError> {
        if !self.pay_abort(dest)? {
            // A zero-byte record always goes inline in the lane.
            let p = self.place(dest, 0, deadline, hook)?;
            self.write_placed(dest, p, &[], FLAG_ABORT, 0);
            self.abort_owed[dest] = false;
        }
        Ok(())
    }

    #[inline]
    fn try_reserve(
        &mut self,
        dest: usize,
        len: usize,
    ) -> Result<Option<Reservation>, MailboxError> {
        let id = self.id;
        let o = self.out[dest]
            .as_mut()
            .expect("a ring to every other member");
        o.prod
            .try_reserve(&o.ring, len)
            .map_err(|e| ring_error(id, dest, e))
    }

    /// Room for a `len`-byte message (at most a fragment) to `dest`, now:
    /// inline in the lane when it fits half a lane, else a fragment of our
    /// pool and a descriptor in the lane. `None` when either is short.
    #[inline]
    fn try_place(&mut self, dest: usize, len: usize) -> Result<Option<Placement>, MailboxError> {
        if let Some(f) = self.open_loan.take() {
            self.pools.give_back(f);
        }
        if len <= self.max_inline_payload() {
            return Ok(self.try_reserve(dest, len)?.map(Placement::Inline));
        }
        // An unused lane reservation costs nothing: the next one returns
        // the same space.
        let Some(lane) = self.try_reserve(dest, Descriptor::LEN)? else {
            return Ok(None);
        };
        let out = &self.out;
        let fragment = self.pools.try_alloc(dest, |d| consumed(out, d));
        self.member(self.id)
            .pool_in_use
            .store(self.pools.in_use() as u64, Ordering::Relaxed);
        Ok(fragment.map(|fragment| Placement::Pooled { lane, fragment }))
    }

    /// [`try_place`](Self::try_place), waiting until `deadline`. Meanwhile
    /// it keeps receiving into the local queue, so two members that send
    /// each other large messages at once both make progress (a send never
    /// waits on a peer that waits on us). A sender short of fragments also
    /// takes back, every [`LIVENESS_SLICE`], those lent to members that died
    /// holding them.
    fn place(
        &mut self,
        dest: usize,
        len: usize,
        deadline: Option<Deadline>,
        hook: &mut Option<&mut dyn FnMut()>,
    ) -> Result<Placement, MailboxError> {
        self.wait_for(deadline, Watch::Dest(dest), |s| {
            if let Some(p) = s.try_place(dest, len)? {
                return Ok(Some(p));
            }
            s.drain_incoming()?;
            if let Some(h) = hook.as_mut() {
                h();
            }
            if len > s.max_inline_payload() && Instant::now() >= s.next_reclaim {
                s.next_reclaim = Instant::now() + LIVENESS_SLICE;
                s.reclaim_from_dead()?;
            }
            s.try_place(dest, len)
        })
    }

    /// Takes back the fragments lent to members that died, and empties our
    /// lanes to them: a member that rejoins under a dead one's id must not
    /// read descriptors of fragments that were reused since.
    fn reclaim_from_dead(&mut self) -> Result<(), MailboxError> {
        for peer in self.pools.borrowers() {
            if peer != self.id && self.peer_status(peer)? == PeerStatus::Dead {
                self.pools.reclaim(peer);
                if let Some(o) = self.out[peer].as_ref() {
                    o.ring
                        .control()
                        .head
                        .store(o.prod.position(), Ordering::Release);
                }
            }
        }
        Ok(())
    }

    /// Writes `parts` (adding up to the placement's length) where `p` says,
    /// and publishes the record with `flags` and `tag`.
    #[inline]
    fn write_placed(&mut self, dest: usize, p: Placement, parts: &[&[u8]], flags: u32, tag: i32) {
        match p {
            Placement::Inline(r) => self.write_commit(dest, r, parts, flags, tag),
            Placement::Pooled { lane, fragment } => {
                let mut at = self.pools.fragment_ptr(self.id, fragment);
                let mut len = 0;
                for part in parts {
                    // SAFETY: the parts add up to at most a fragment (callers
                    // place at most max_record_payload bytes); the fragment
                    // is ours until the receiver frees it, after this record.
                    unsafe {
                        std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                        at = at.add(part.len());
                    }
                    len += part.len();
                }
                let d = Descriptor {
                    fragment,
                    len: len as u32,
                };
                self.write_commit(dest, lane, &[&d.encode()], flags | FLAG_POOL, tag);
                self.pools.lent(dest, lane.end(), fragment);
            }
        }
    }

    /// Moves every complete message that has arrived into the local queue
    /// that receives look at first (a caller waiting on another path keeps
    /// this one moving with it). Never waits.
    ///
    /// # Errors
    ///
    /// [`MailboxError::Corrupt`], [`MailboxError::Interrupted`].
    pub fn progress_incoming(&mut self) -> Result<(), MailboxError> {
        self.drain_incoming()
    }

    fn drain_incoming(&mut self) -> Result<(), MailboxError> {
        let me = self.id;
        for peer in (0..self.members()).filter(|&p| p != me) {
            while let Some(m) = self.progress(peer)? {
                self.matching.push(m);
            }
        }
        Ok(())
    }

    #[inline]
    fn write_commit(&mut self, dest: usize, r: Reservation, parts: &[&[u8]], flags: u32, tag: i32) {
        let o = self.out[dest]
            .as_mut()
            .expect("a ring to every other member");
        let mut at = Producer::payload_ptr(&o.ring, &r);
        for part in parts {
            // SAFETY: the reservation holds r.payload_len() bytes and the
            // parts add up to it (callers size them so); the source is our
            // own memory, the destination the reserved record.
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                at = at.add(part.len());
            }
        }
        o.prod.commit(&o.ring, r, flags, tag as u32);
        self.notify(dest);
    }

    #[inline]
    fn count_sent(&self, dest: usize, len: usize) {
        let c = self.out[dest].as_ref().expect("ring").ring.control();
        // Single writer (this producer): load + store, no atomic RMW;
        // wrapping, since another process may have written anything there.
        let messages = c.messages.load(Ordering::Relaxed);
        c.messages
            .store(messages.wrapping_add(1), Ordering::Relaxed);
        let bytes = c.bytes.load(Ordering::Relaxed);
        c.bytes
            .store(bytes.wrapping_add(len as u64), Ordering::Relaxed);
    }

    /// Reserves space for a `len`-byte message to `dest` directly in its
    /// mailbox: write the payload in place, then [`Loan::commit`]. Dropping
    /// the loan sends nothing. `len` is at most
    /// [`max_record_payload`](Self::max_record_payload) (half the ring minus
    /// the 16-byte record header: 131,056 bytes with the default 256 KiB ring).
    ///
    /// # Errors
    ///
    /// [`MailboxError::RecordTooLarge`], [`MailboxError::InvalidRank`] (also
    /// for `dest == self.rank()`: a loan needs a ring), or as
    /// [`send`](Self::send).
    ///
    /// # Examples
    ///
    /// ```
    /// # use shmpi::mailbox::{MailboxGroup, MailboxOptions};
    /// # use shmpi::transport::Wait;
    /// let mut m = MailboxGroup::threads(2, &MailboxOptions::default())?;
    /// let mut b = m.pop().unwrap();
    /// let mut a = m.pop().unwrap();
    /// let mut loan = a.loan(1, 3, 16)?;
    /// loan.write_pod(0, 7u64);
    /// loan.write_pod(8, 9u64); // byte offsets, as RecvRef::read_pod
    /// loan.commit();
    /// let msg = b.recv_ref(0, 3, Wait::Forever)?; // by reference, in the ring
    /// assert_eq!(msg.read_pod::<u64>(8), Some(9));
    /// drop(msg);                               // releases the space
    /// # Ok::<(), shmpi::Error>(())
    /// ```
    #[inline]
    pub fn loan(&mut self, dest: usize, tag: i32, len: usize) -> Result<Loan<'_>, MailboxError> {
        // The fast path, as for `send`: a loan that fits the lane, room now.
        if let Some(r) = self.fast_reserve(dest, tag, len)? {
            return Ok(self.lend(dest, tag, len, Placement::Inline(r)));
        }
        self.loan_inner(dest, tag, len, None)
    }

    /// [`loan`](Self::loan) with a timeout.
    ///
    /// # Errors
    ///
    /// As [`loan`](Self::loan), plus [`MailboxError::Timeout`].
    pub fn loan_timeout(
        &mut self,
        dest: usize,
        tag: i32,
        len: usize,
        timeout: Duration,
    ) -> Result<Loan<'_>, MailboxError> {
        self.loan_inner(dest, tag, len, Some(timeout))
    }

    #[inline(never)]
    fn loan_inner(
        &mut self,
        dest: usize,
        tag: i32,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<Loan<'_>, MailboxError> {
        self.check_send(dest, tag, len)?;
        if dest == self.id {
            return Err(MailboxError::InvalidRank {
                rank: dest,
                size: self.members(),
            });
        }
        let max = self.max_record_payload();
        if len > max {
            return Err(MailboxError::RecordTooLarge { len, max });
        }
        let deadline = Deadline::after(timeout);
        if self.abort_owed[dest] {
            self.settle_abort(dest, deadline, &mut None)?;
        }
        let placement = match self.try_place(dest, len)? {
            Some(p) => p,
            None => self.place(dest, len, deadline, &mut None)?,
        };
        Ok(self.lend(dest, tag, len, placement))
    }

    /// The loan of `placement` (a pooled one is remembered until it is
    /// committed: the next placement frees it if the loan is dropped).
    #[inline]
    fn lend(&mut self, dest: usize, tag: i32, len: usize, placement: Placement) -> Loan<'_> {
        let ptr = match placement {
            Placement::Inline(r) => {
                let o = self.out[dest].as_ref().expect("ring");
                Producer::payload_ptr(&o.ring, &r)
            }
            Placement::Pooled { fragment, .. } => {
                self.open_loan = Some(fragment);
                self.pools.fragment_ptr(self.id, fragment)
            }
        };
        Loan {
            group: self,
            dest,
            tag,
            placement,
            len,
            ptr,
        }
    }

    // ------------------------------------------------------------ receiving

    /// Receives the first message matching `source` and `tag`, waiting as
    /// `wait` says ([`Wait::Forever`]: until one comes or the source — for
    /// [`Source::Any`]: every member — is gone; a [`Duration`] or
    /// [`Wait::For`]: up to that long; [`Wait::Now`]: not at all).
    ///
    /// A receive from yourself finds only messages you sent yourself.
    ///
    /// # Errors
    ///
    /// [`MailboxError::Timeout`] ([`Wait::For`]) and
    /// [`MailboxError::WouldBlock`] ([`Wait::Now`], or a receive from
    /// yourself with nothing queued), nothing consumed (`.arrived()` of
    /// [`Arrival`] makes them `None`); [`MailboxError::PeerDied`],
    /// [`MailboxError::PeerLeft`] (for `Source::Any`: once per member that
    /// is gone, then [`MailboxError::AllPeersGone`]),
    /// [`MailboxError::Interrupted`], [`MailboxError::Corrupt`].
    pub fn recv(
        &mut self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
        wait: impl Into<Wait>,
    ) -> Result<Message, MailboxError> {
        self.recv_inner(source.into(), tag.into(), wait.into())
    }

    /// Waits as `wait` says until a message matching `source` and `tag` is
    /// there, and reports its sender, tag and length without receiving it:
    /// the next receive that matches it gets it (messages keep their order).
    /// Size a buffer with it, or choose a receive. A probed message that
    /// was still in the sender's lane is read out of it into this member's
    /// queue, so probing costs the message its zero-copy receive.
    ///
    /// ```
    /// use shmpi::prelude::*;
    ///
    /// let mut members = MailboxGroup::threads(2, &MailboxOptions::default())?;
    /// let (mut b, mut a) = (members.pop().unwrap(), members.pop().unwrap());
    /// a.send(1, 4, &[7u8; 300])?;
    /// let st = b.probe(Source::Any, TagMatch::Any, Wait::Forever)?;
    /// assert_eq!((st.source, st.tag, st.len), (0, 4, 300));
    /// let mut buf = vec![0u8; st.len];
    /// b.recv_into(st.source, st.tag, &mut buf, Wait::Now)?;
    /// assert!(buf.iter().all(|&x| x == 7));
    /// # Ok::<(), shmpi::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn probe(
        &mut self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
        wait: impl Into<Wait>,
    ) -> Result<Status, MailboxError> {
        let (source, tag) = (source.into(), tag.into());
        self.wait_matching(source, tag, wait.into(), |s| s.poll_probe(source, tag))
    }

    /// Waits as `wait` says until `poll` finds what a receive or probe from
    /// `source` with `tag` wants. From this member itself (or in a group of
    /// one) only a look: nobody else can bring it.
    fn wait_matching<T>(
        &mut self,
        source: Source,
        tag: TagMatch,
        wait: Wait,
        mut poll: impl FnMut(&mut Self) -> Result<Option<T>, MailboxError>,
    ) -> Result<T, MailboxError> {
        self.check_source(source)?;
        if source == Source::Rank(self.id) || self.members() == 1 {
            return poll(self)?.ok_or(MailboxError::WouldBlock);
        }
        let watch = self.watch_for(source, tag);
        self.wait_for(Deadline::of(wait), watch, poll)
    }

    /// The first matching message's status, if one has arrived; every
    /// message read out of a lane on the way, the matching one included,
    /// is queued in arrival order for the receives to come.
    fn poll_probe(
        &mut self,
        source: Source,
        tag: TagMatch,
    ) -> Result<Option<Status>, MailboxError> {
        if let Some(m) = self.matching.peek(source, tag) {
            return Ok(Some(m.status()));
        }
        for peer in self.matching.senders(source) {
            while let Some(m) = self.progress(peer)? {
                let (hit, status) = (tag.accepts(m.tag), m.status());
                self.matching.push(m);
                if hit {
                    return Ok(Some(status));
                }
            }
        }
        Ok(None)
    }

    fn check_source(&self, source: Source) -> Result<(), MailboxError> {
        match source {
            Source::Rank(r) => self.check_rank(r),
            Source::Any => Ok(()),
        }
    }

    fn watch_for(&self, source: Source, tag: TagMatch) -> Watch {
        match source {
            Source::Rank(s) => Watch::Source(s),
            Source::Any => Watch::AnySource(tag),
        }
    }

    fn recv_inner(
        &mut self,
        source: Source,
        tag: TagMatch,
        wait: Wait,
    ) -> Result<Message, MailboxError> {
        self.wait_matching(source, tag, wait, |s| s.poll_match(source, tag))
    }

    fn poll_match(
        &mut self,
        source: Source,
        tag: TagMatch,
    ) -> Result<Option<Message>, MailboxError> {
        if let Some(m) = self.matching.take(source, tag) {
            return Ok(Some(m));
        }
        for peer in self.matching.senders(source) {
            while let Some(m) = self.progress(peer)? {
                if tag.accepts(m.tag) {
                    self.matching.served(peer);
                    return Ok(Some(m));
                }
                self.matching.push(m);
            }
        }
        Ok(None)
    }

    /// Consumes what ring `src → self` holds until one message is complete.
    fn progress(&mut self, src: usize) -> Result<Option<Message>, MailboxError> {
        match self.progress_into(src, None)? {
            None => Ok(None),
            Some(Completed::Owned { tag, data }) => Ok(Some(Message {
                source: src,
                tag,
                data,
            })),
            Some(Completed::Direct { .. }) => Err(MailboxError::Corrupt(format!(
                "ring {src}→{}: a message was streaming into a receive buffer that is gone",
                self.id
            ))),
        }
    }

    /// [`progress`](Self::progress), and when `sink` is given, a streamed
    /// message whose tag it accepts and that fits goes straight into its
    /// buffer instead of an owned vector (one copy instead of two). The
    /// framing rules and their checks are [`framing`]'s.
    fn progress_into(
        &mut self,
        src: usize,
        mut sink: Option<(&mut [u8], TagMatch)>,
    ) -> Result<Option<Completed>, MailboxError> {
        let id = self.id;
        loop {
            let Some(inc) = self.inc[src].as_mut() else {
                return Ok(None);
            };
            let Some(rec) = inc
                .cons
                .peek(&inc.ring)
                .map_err(|e| ring_error(src, id, e))?
            else {
                return Ok(None);
            };
            let at = self.resolve(src, &rec)?;
            let (frame, tag) = framing::classify(rec.flags(), rec.tag(), at.len)
                .map_err(|e| framing_error(src, id, e))?;
            // SAFETY: resolved from a validated record: at.len bytes in the
            // lane or in a checked fragment of the sender's pool, which stay
            // there until released below.
            let payload = unsafe { RingPayload::new(at.ptr, at.len) };
            let inc = self.inc[src].as_mut().expect("ring");
            let offered = match (frame, sink.as_mut()) {
                (Frame::First, Some((buf, filter))) if filter.accepts(tag) => Some(&mut **buf),
                (Frame::Cont { .. }, Some((buf, _))) if inc.assembler.is_direct() => {
                    Some(&mut **buf)
                }
                _ => None,
            };
            let complete = inc
                .assembler
                .accept(frame, tag, &payload, offered)
                .map_err(|e| framing_error(src, id, e))?;
            self.release(src, rec);
            if complete.is_some() {
                return Ok(complete);
            }
        }
    }

    /// Receives by reference: a message that fits one record is read in
    /// place, in the sender's ring, and its space is released when the
    /// returned guard is dropped. (A streamed or queued message is handed
    /// over as an owned buffer through the same guard.) Waits as `wait`
    /// says.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn recv_ref(
        &mut self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
        wait: impl Into<Wait>,
    ) -> Result<RecvRef<'_>, MailboxError> {
        self.recv_ref_inner(source.into(), tag.into(), wait.into())
    }

    /// Receives into `buf` without allocating: a message that fits one
    /// record is copied straight from the ring, and a streamed message from
    /// a named source is assembled directly in `buf`. Waits as `wait` says;
    /// a message that was streaming into `buf` when the time ran out is
    /// not lost: what arrived moves to an owned buffer and the next
    /// receive completes it. Returns (source, tag, length).
    ///
    /// # Errors
    ///
    /// [`MailboxError::MessageTooLong`] when the message is longer than
    /// `buf` — it is kept for a later receive, not consumed; else as
    /// [`recv`](Self::recv).
    pub fn recv_into(
        &mut self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
        buf: &mut [u8],
        wait: impl Into<Wait>,
    ) -> Result<(usize, i32, usize), MailboxError> {
        self.recv_into_inner(source.into(), tag.into(), buf, wait.into())
    }

    #[inline]
    fn recv_into_inner(
        &mut self,
        source: Source,
        tag: TagMatch,
        buf: &mut [u8],
        wait: Wait,
    ) -> Result<(usize, i32, usize), MailboxError> {
        if let Some(got) = self.recv_fast(source, tag, buf)? {
            return Ok(got);
        }
        self.recv_into_waiting(source, tag, buf, wait)
    }

    /// The fast path of a receive into `buf`: see
    /// [`fast_head`](Self::fast_head); the message must also fit `buf`.
    #[inline]
    fn recv_fast(
        &mut self,
        source: Source,
        tag: TagMatch,
        buf: &mut [u8],
    ) -> Result<Option<(usize, i32, usize)>, MailboxError> {
        match self.fast_head(source, tag)? {
            Some((src, rec, at)) if at.len <= buf.len() => {
                self.copy_in_place(src, rec, at, buf).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The fast path of every receive: a whole record that `tag` accepts
    /// at the head of the lane from a named other member, nothing queued,
    /// nothing streaming; readable in place. `None`: take the general path
    /// (which also reports invalid arguments). Small and inlined, like
    /// [`fast_reserve`](Self::fast_reserve).
    #[inline]
    fn fast_head(
        &mut self,
        source: Source,
        tag: TagMatch,
    ) -> Result<Option<(usize, RecordRef, Resolved)>, MailboxError> {
        let Source::Rank(src) = source else {
            return Ok(None);
        };
        if src == self.id || src >= self.members() || !self.matching.is_empty() {
            return Ok(None);
        }
        Ok(match self.head_record(src, tag)? {
            Head::Whole(rec, at) => Some((src, rec, at)),
            Head::Empty | Head::Other => None,
        })
    }

    #[inline(never)]
    fn recv_into_waiting(
        &mut self,
        source: Source,
        tag: TagMatch,
        buf: &mut [u8],
        wait: Wait,
    ) -> Result<(usize, i32, usize), MailboxError> {
        self.check_source(source)?;
        if source == Source::Rank(self.id) || self.members() == 1 {
            return self
                .poll_into(source, tag, buf)?
                .ok_or(MailboxError::WouldBlock);
        }
        let watch = self.watch_for(source, tag);
        let result = self.wait_for(Deadline::of(wait), watch, |s| {
            if let Some(got) = s.recv_fast(source, tag, buf)? {
                return Ok(Some(got));
            }
            s.poll_into(source, tag, buf)
        });
        // A message half-streamed into `buf` cannot stay there after this
        // call: what arrived moves into an owned buffer.
        if let Source::Rank(src) = source {
            if let Some(inc) = self.inc[src].as_mut() {
                inc.assembler.detach_sink(buf);
            }
        }
        result
    }

    /// One matching message into `buf`, if there is one: straight from the
    /// ring when it is a single record (no allocation), else from the queue.
    fn poll_into(
        &mut self,
        source: Source,
        tag: TagMatch,
        buf: &mut [u8],
    ) -> Result<Option<(usize, i32, usize)>, MailboxError> {
        if let Source::Rank(s) = source {
            if s != self.id {
                return self.poll_into_from(s, tag, buf);
            }
        }
        self.poll_first(source, tag, |group, found| match found {
            Found::InRing { src, rec, at } => group.copy_in_place(src, rec, at, buf),
            Found::Owned(m) => group.deliver_owned(m, buf),
        })
    }

    /// [`poll_into`](Self::poll_into) from one member: a streamed message
    /// is assembled directly in `buf` when it fits.
    fn poll_into_from(
        &mut self,
        src: usize,
        tag: TagMatch,
        buf: &mut [u8],
    ) -> Result<Option<(usize, i32, usize)>, MailboxError> {
        if let Some(m) = self.matching.take(Source::Rank(src), tag) {
            return self.deliver_owned(m, buf).map(Some);
        }
        loop {
            match self.head_record(src, tag)? {
                Head::Empty => return Ok(None),
                Head::Whole(rec, at) => return self.copy_in_place(src, rec, at, buf).map(Some),
                Head::Other => {}
            }
            match self.progress_into(src, Some((&mut *buf, tag)))? {
                None => return Ok(None),
                Some(Completed::Direct { tag, len }) => return Ok(Some((src, tag, len))),
                Some(Completed::Owned { tag: t, data }) => {
                    let m = Message {
                        source: src,
                        tag: t,
                        data,
                    };
                    if tag.accepts(t) {
                        return self.deliver_owned(m, buf).map(Some);
                    }
                    self.matching.push(m);
                }
            }
        }
    }

    /// What heads ring `src → self`: nothing, a whole record whose tag
    /// `tag` accepts (readable in place), or something for `progress`
    /// (a stream in progress, a chunk, another tag).
    #[inline]
    fn head_record(&mut self, src: usize, tag: TagMatch) -> Result<Head, MailboxError> {
        let id = self.id;
        let inc = self.inc[src].as_mut().expect("ring");
        if inc.assembler.in_progress() {
            return Ok(Head::Other);
        }
        let Some(rec) = inc
            .cons
            .peek(&inc.ring)
            .map_err(|e| ring_error(src, id, e))?
        else {
            return Ok(Head::Empty);
        };
        let whole = rec.flags() & (FLAG_MORE | FLAG_CONT | FLAG_ABORT) == 0;
        if !whole || !i32::try_from(rec.tag()).is_ok_and(|t| tag.accepts(t)) {
            return Ok(Head::Other);
        }
        if rec.flags() & FLAG_POOL == 0 {
            let at = Resolved {
                ptr: Consumer::payload_ptr(&inc.ring, &rec),
                len: rec.len(),
            };
            return Ok(Head::Whole(rec, at));
        }
        let at = self.resolve(src, &rec)?;
        Ok(Head::Whole(rec, at))
    }

    /// Where the payload of a record of ring `src → self` is: in the lane,
    /// or — for a pool record — in the fragment of `src`'s pool its
    /// descriptor names (checked against the layout).
    #[inline]
    fn resolve(&self, src: usize, rec: &RecordRef) -> Result<Resolved, MailboxError> {
        let inc = self.inc[src].as_ref().expect("ring");
        let ptr = Consumer::payload_ptr(&inc.ring, rec);
        if rec.flags() & FLAG_POOL == 0 {
            return Ok(Resolved {
                ptr,
                len: rec.len(),
            });
        }
        // SAFETY: a validated record's payload: rec.len() bytes in the lane.
        let descriptor = unsafe { RingPayload::new(ptr, rec.len()) };
        let d = Descriptor::decode(
            &descriptor,
            self.pools.fragments(),
            self.pools.fragment_len(),
        )
        .map_err(|e| framing_error(src, self.id, e))?;
        Ok(Resolved {
            ptr: self.pools.fragment_ptr(src, d.fragment),
            len: d.len as usize,
        })
    }

    /// Copies a whole record into `buf` and frees it; a record too long
    /// for `buf` stays at the head of its ring.
    #[inline]
    fn copy_in_place(
        &mut self,
        src: usize,
        rec: RecordRef,
        at: Resolved,
        buf: &mut [u8],
    ) -> Result<(usize, i32, usize), MailboxError> {
        if at.len > buf.len() {
            return Err(MailboxError::MessageTooLong {
                len: at.len,
                capacity: buf.len(),
            });
        }
        // SAFETY: the resolved payload is at.len readable bytes; buf has room.
        unsafe { std::ptr::copy_nonoverlapping(at.ptr, buf.as_mut_ptr(), at.len) };
        self.release(src, rec);
        Ok((src, rec.tag() as i32, at.len))
    }

    /// Copies an owned message into `buf`; one too long for `buf` goes back
    /// to the front of the queue.
    fn deliver_owned(
        &mut self,
        m: Message,
        buf: &mut [u8],
    ) -> Result<(usize, i32, usize), MailboxError> {
        let len = m.data.len();
        if len > buf.len() {
            self.matching.put_back(m);
            return Err(MailboxError::MessageTooLong {
                len,
                capacity: buf.len(),
            });
        }
        buf[..len].copy_from_slice(&m.data);
        Ok((m.source, m.tag, len))
    }

    /// Frees a record read in place and tells its producer — which also
    /// hands back the pool fragment the record named, if any.
    #[inline]
    fn release(&mut self, src: usize, rec: RecordRef) {
        let inc = self.inc[src].as_mut().expect("ring");
        inc.cons.release(&inc.ring, rec);
        self.notify(src);
    }

    #[inline]
    fn recv_ref_inner(
        &mut self,
        source: Source,
        tag: TagMatch,
        wait: Wait,
    ) -> Result<RecvRef<'_>, MailboxError> {
        let found = match self.fast_head(source, tag)? {
            Some((src, rec, at)) => Found::InRing { src, rec, at },
            None => self.find_ref_waiting(source, tag, wait)?,
        };
        Ok(RecvRef { group: self, found })
    }

    #[inline(never)]
    fn find_ref_waiting(
        &mut self,
        source: Source,
        tag: TagMatch,
        wait: Wait,
    ) -> Result<Found, MailboxError> {
        self.check_source(source)?;
        Ok(if source == Source::Rank(self.id) || self.members() == 1 {
            Found::Owned(
                self.poll_match(source, tag)?
                    .ok_or(MailboxError::WouldBlock)?,
            )
        } else {
            let watch = self.watch_for(source, tag);
            self.wait_for(Deadline::of(wait), watch, |s| {
                if let Some((src, rec, at)) = s.fast_head(source, tag)? {
                    return Ok(Some(Found::InRing { src, rec, at }));
                }
                s.poll_ref(source, tag)
            })?
        })
    }

    fn poll_ref(&mut self, source: Source, tag: TagMatch) -> Result<Option<Found>, MailboxError> {
        self.poll_first(source, tag, |_, found| Ok(found))
    }

    /// Finds the first message matching `source` and `tag` and hands it to
    /// `take`: in place when it is a whole record at the head of its ring,
    /// owned when it was queued or streamed. Non-matching messages met on
    /// the way go to the queue.
    fn poll_first<R>(
        &mut self,
        source: Source,
        tag: TagMatch,
        mut take: impl FnMut(&mut Self, Found) -> Result<R, MailboxError>,
    ) -> Result<Option<R>, MailboxError> {
        if let Some(m) = self.matching.take(source, tag) {
            return take(self, Found::Owned(m)).map(Some);
        }
        for peer in self.matching.senders(source) {
            loop {
                // Look once: a record that lands after this look waits for
                // the next poll, so it is read in place, never consumed into
                // an owned copy behind our back.
                match self.head_record(peer, tag)? {
                    Head::Empty => break,
                    Head::Whole(rec, at) => {
                        self.matching.served(peer);
                        return take(self, Found::InRing { src: peer, rec, at }).map(Some);
                    }
                    Head::Other => {}
                }
                match self.progress(peer)? {
                    None => break,
                    Some(m) if tag.accepts(m.tag) => return take(self, Found::Owned(m)).map(Some),
                    Some(m) => self.matching.push(m),
                }
            }
        }
        Ok(None)
    }
}

fn var_parse(var: &'static str, value: &str) -> Result<usize, MailboxError> {
    value.trim().parse().map_err(|_| MailboxError::Env {
        var,
        problem: format!("{value:?} is not a non-negative integer"),
    })
}

/// Opens a group's segment, waiting for its creator up to `timeout`.
/// The group layout a segment's header describes, validated against the
/// segment's length.
fn read_layout(seg: &Segment) -> Result<GroupLayout, Error> {
    let header_ptr = seg.place("mailbox group header", 0, GROUP_HEADER, 8)?;
    // SAFETY: in bounds and aligned (place); atomics accept any bits.
    let header = unsafe { header_ptr.cast::<GroupHeader>().as_ref() };
    Ok(GroupParams::read(header)
        .and_then(|p| p.validate(Some(seg.len())))
        .map_err(MailboxError::from)?)
}

/// A member's status, read from the segment (state word, then the member
/// byte's lock for a joined member).
fn member_status(
    seg: &Segment,
    layout: &GroupLayout,
    id: usize,
) -> Result<PeerStatus, MailboxError> {
    match member_block(seg, layout, id).state.load(Ordering::Acquire) {
        state::VACANT => Ok(PeerStatus::Vacant),
        state::LEFT => Ok(PeerStatus::Left),
        state::JOINED => {
            let byte = lock::MEMBER_BYTE_BASE + id as u64;
            match lock::is_held_by_other(seg.fd(), lock::LockKind::Exclusive, byte) {
                Ok(true) => Ok(PeerStatus::Alive),
                Ok(false) => Ok(PeerStatus::Dead),
                Err(errno) => Err(SyncError::Os {
                    op: "fcntl(F_OFD_GETLK) on a member byte",
                    errno,
                }
                .into()),
            }
        }
        other => Err(MailboxError::Corrupt(format!(
            "member {id} has state word {other:#x}"
        ))),
    }
}

/// The counters of ring `src → dst` (validated layout, `src != dst`).
fn ring_counters(seg: &Segment, layout: &GroupLayout, src: usize, dst: usize) -> PairCounters {
    let c = lane_control(seg, layout, src, dst);
    let (head, tail) = (
        c.head.load(Ordering::Relaxed),
        c.tail.load(Ordering::Relaxed),
    );
    PairCounters {
        messages: c.messages.load(Ordering::Relaxed),
        bytes: c.bytes.load(Ordering::Relaxed),
        sender_sleeps: c.send_sleeps.load(Ordering::Relaxed),
        receiver_sleeps: c.recv_sleeps.load(Ordering::Relaxed),
        queued_bytes: tail.saturating_sub(head),
    }
}

/// What [`MailboxGroup::inspect`] found in a group segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    /// Bytes per lane.
    pub lane: usize,
    /// Bytes per pool fragment (the largest loan).
    pub fragment: usize,
    /// Fragments in each member's pool.
    pub fragments: usize,
    /// Bytes the group reserves (its whole data region).
    pub reserved: usize,
    /// Bytes each member reserves: its pool, its outgoing lanes and its
    /// share of the header and member blocks.
    pub reserved_per_member: usize,
    /// Each member's status.
    pub members: Vec<PeerStatus>,
    /// Fragments of each member's pool in use (in flight or lent).
    pub pool_in_use: Vec<usize>,
    /// Each member's count of lost wake-ups
    /// ([`MailboxGroup::lost_wakeups`]): 0 unless the doorbell protocol
    /// failed (or a waker died between publishing and ringing).
    pub lost_wakeups: Vec<u64>,
    /// The group rings with the asymmetric protocol (`membarrier`), not
    /// the fenced one ([`DOORBELL_ENV`]).
    pub membarrier: bool,
    /// Each ring `(src, dst, counters)`.
    pub rings: Vec<(usize, usize, PairCounters)>,
}

fn open_group(name: &SegmentName, timeout: Duration) -> Result<Segment, Error> {
    let start = Instant::now();
    let mut waiter = Waiter::new(&crate::sync::wait::SETUP_POLL, None);
    loop {
        match Segment::builder(name.as_str())
            .expect_kind(SegmentKind::MAILBOX_GROUP)
            .ready_timeout(timeout)
            .open()
        {
            Err(SegmentError::NotFound { .. }) if start.elapsed() < timeout => {
                waiter.idle();
            }
            other => return Ok(other?),
        }
    }
}

impl Drop for MailboxGroup {
    fn drop(&mut self) {
        let (n, me) = (self.members(), self.id);
        for peer in (0..n).filter(|&p| p != me) {
            // Best effort: a receiver that never gets the abort record
            // drops the partial message when it sees us leave.
            let _ = self.pay_abort(peer);
        }
        self.member(self.id)
            .state
            .store(state::LEFT, Ordering::Release);
        for peer in (0..n).filter(|&p| p != self.id) {
            self.notify(peer);
        }
        let left = self
            .header()
            .left
            .fetch_add(1, Ordering::AcqRel)
            .wrapping_add(1);
        if left as usize == n && !self.threads {
            // The last member out removes a name nobody needs any more (it
            // may be gone already: ephemeral, or removed by a launcher).
            let _ = Segment::remove(self.seg.name());
        }
    }
}

impl std::fmt::Debug for MailboxGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxGroup")
            .field("name", self.seg.name())
            .field("id", &self.id)
            .field("members", &self.members())
            .field("wait", &self.wait)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Space for a message, lent for writing it in place — in the lane to the
/// receiver (a small message) or in a fragment of the sender's pool.
/// Commit to send; drop to abandon (the space is free again by the group's
/// next send or loan).
#[must_use]
pub struct Loan<'a> {
    group: &'a mut MailboxGroup,
    dest: usize,
    tag: i32,
    placement: Placement,
    len: usize,
    ptr: *mut u8,
}

impl Loan<'_> {
    /// Bytes lent.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-byte loan.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first lent byte, for writing in place (e.g. from C or by a
    /// solver that produces its output there). The receiver reads nothing
    /// before [`commit`](Self::commit).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }

    /// Copies `data` to byte `offset` of the loan; false (nothing written)
    /// when it does not fit.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        if offset
            .checked_add(data.len())
            .is_none_or(|end| end > self.len())
        {
            return false;
        }
        // SAFETY: offset + len <= loan length (checked); the loan is ours
        // until commit.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(offset), data.len()) };
        true
    }

    /// Writes `value` at byte `offset` (unaligned), as
    /// [`RecvRef::read_pod`] reads it; false when it does not fit.
    pub fn write_pod<T: bytemuck::Pod>(&mut self, offset: usize, value: T) -> bool {
        self.write(offset, bytemuck::bytes_of(&value))
    }

    /// Publishes the message.
    #[inline]
    pub fn commit(self) {
        let (dest, tag, len) = (self.dest, self.tag, self.len);
        self.group.open_loan = None;
        match self.placement {
            Placement::Inline(r) => self.group.write_commit(dest, r, &[], 0, tag),
            Placement::Pooled { lane, fragment } => {
                let d = Descriptor {
                    fragment,
                    len: len as u32,
                };
                self.group
                    .write_commit(dest, lane, &[&d.encode()], FLAG_POOL, tag);
                self.group.pools.lent(dest, lane.end(), fragment);
            }
        }
        self.group.count_sent(dest, len);
    }
}

/// A received message, read in place in the sender's ring (or owned, when it
/// was streamed or queued). Dropping it frees the ring space.
#[must_use]
pub struct RecvRef<'a> {
    group: &'a mut MailboxGroup,
    found: Found,
}

impl RecvRef<'_> {
    fn ring_payload(&self) -> (*const u8, usize) {
        match &self.found {
            Found::Owned(m) => (m.data.as_ptr(), m.data.len()),
            Found::InRing { at, .. } => (at.ptr, at.len),
        }
    }

    /// The sender.
    pub fn source(&self) -> usize {
        match &self.found {
            Found::Owned(m) => m.source,
            Found::InRing { src, .. } => *src,
        }
    }

    /// The tag.
    pub fn tag(&self) -> i32 {
        match &self.found {
            Found::Owned(m) => m.tag,
            Found::InRing { rec, .. } => rec.tag() as i32,
        }
    }

    /// Payload bytes.
    pub fn len(&self) -> usize {
        self.ring_payload().1
    }

    /// True for an empty message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the payload is read in place in shared memory.
    pub fn is_in_place(&self) -> bool {
        matches!(self.found, Found::InRing { .. })
    }

    /// The first payload byte. Valid while the guard lives; the memory may
    /// be shared with the sender, so read it, do not keep references.
    pub fn as_ptr(&self) -> *const u8 {
        self.ring_payload().0
    }

    /// Reads a `T` at byte `offset` (unaligned), or `None` past the end.
    pub fn read_pod<T: bytemuck::Pod>(&self, offset: usize) -> Option<T> {
        let (ptr, len) = self.ring_payload();
        let end = offset.checked_add(std::mem::size_of::<T>())?;
        (end <= len).then(|| {
            // SAFETY: offset + size_of::<T>() <= len: inside the payload;
            // T is Pod, any bits are valid.
            unsafe { ptr.add(offset).cast::<T>().read_unaligned() }
        })
    }

    /// Copies the payload into `dst` (whose length must equal
    /// [`len`](Self::len)); false, copying nothing, otherwise.
    pub fn copy_to_slice(&self, dst: &mut [u8]) -> bool {
        let (ptr, len) = self.ring_payload();
        if dst.len() != len {
            return false;
        }
        // SAFETY: the payload is len bytes; dst is distinct local memory.
        unsafe { std::ptr::copy_nonoverlapping(ptr, dst.as_mut_ptr(), len) };
        true
    }

    /// Copies the payload out.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len()];
        self.copy_to_slice(&mut v);
        v
    }
}

impl Drop for RecvRef<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Found::InRing { src, rec, .. } = self.found {
            self.group.release(src, rec);
        }
    }
}

impl Transport for MailboxGroup {
    type Error = MailboxError;

    fn rank(&self) -> usize {
        self.id
    }

    fn size(&self) -> usize {
        self.members()
    }

    fn send(&mut self, dest: usize, tag: i32, data: &[u8]) -> Result<(), MailboxError> {
        MailboxGroup::send(self, dest, tag, data)
    }

    fn recv_matching(
        &mut self,
        source: Source,
        tag: TagMatch,
        wait: Wait,
    ) -> Result<Message, MailboxError> {
        self.recv_inner(source, tag, wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn env_numbers() {
        assert_eq!(var_parse("X", " 3 "), Ok(3));
        assert!(matches!(
            var_parse("X", "-1"),
            Err(MailboxError::Env { var: "X", .. })
        ));
    }

    #[test]
    fn flags_of_the_wake_flag_type() {
        let f = AtomicU32::new(0);
        let mut rang = false;
        notify(&f, || rang = true);
        assert!(!rang, "nobody sleeps: no doorbell");
        f.store(1, Ordering::Relaxed);
        notify(&f, || rang = true);
        assert!(rang && f.load(Ordering::Relaxed) == 0);
    }
}
