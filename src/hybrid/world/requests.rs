//! Non-blocking sends and receives on a [`HybridWorld`], and the order in
//! which receives are matched.
//!
//! Receive requests are matched as MPI matches them: a message goes to the
//! earliest-posted open request that accepts it, and a blocking receive
//! made while requests are open comes after all of them. The world keeps
//! the open requests in posting order ([`Matching`]); whenever any of them
//! is tested or waited for, or a blocking receive runs, each earlier one
//! looks first. A message taken off a path is handed to the earliest open
//! request that accepts it, whoever took it. With no request open the
//! receive paths are the plain ones: nothing here costs them anything.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use super::{out_of_time, HybridWorld};
use crate::error::{Error, HybridError, MpiError};
use crate::sync::Waiter;
use crate::transport::{Arrival, Message, Source, Status, TagMatch, Transport, Wait, TAG_MAX};

/// A message taken off a path, numbered in the order it was taken.
#[derive(Debug)]
struct Taken {
    seq: u64,
    message: Message,
}

/// An open receive request.
#[derive(Debug)]
struct Posted {
    id: u64,
    source: Source,
    tag: TagMatch,
    matched: Option<Taken>,
}

impl Posted {
    fn accepts(&self, m: &Message) -> bool {
        self.matched.is_none() && self.source.accepts(m.source) && self.tag.accepts(m.tag)
    }
}

/// The world's open receive requests and the messages taken off a path
/// that no receive holds yet.
#[derive(Debug, Default)]
pub(super) struct Matching {
    /// Open receive requests, in posting order.
    posted: VecDeque<Posted>,
    /// Messages taken off a path but not received: too long for the
    /// buffer of the receive that found them, or given back by a request
    /// dropped after it matched. In the order they were taken, so a
    /// source's messages still come in its sending order.
    held: VecDeque<Taken>,
    next_id: u64,
    next_seq: u64,
}

/// A world's matching state, shared with its receive requests (a request
/// dropped unfinished withdraws itself).
pub(super) type SharedMatching = Rc<RefCell<Matching>>;

impl Matching {
    /// True when no request is open and no message is held: receives take
    /// the plain paths.
    pub(super) fn is_idle(&self) -> bool {
        self.posted.is_empty() && self.held.is_empty()
    }

    fn take(&mut self, message: Message) -> Taken {
        self.next_seq += 1;
        Taken {
            seq: self.next_seq,
            message,
        }
    }

    /// Gives `taken` to the earliest open request posted before `before`
    /// that accepts it; returns it when none does.
    fn deliver(&mut self, taken: Taken, before: u64) -> Option<Taken> {
        match self
            .posted
            .iter_mut()
            .take_while(|p| p.id < before)
            .find(|p| p.accepts(&taken.message))
        {
            Some(p) => {
                p.matched = Some(taken);
                None
            }
            None => Some(taken),
        }
    }

    /// The first held message `source` and `tag` accept.
    fn find_held(&self, source: Source, tag: TagMatch) -> Option<usize> {
        self.held
            .iter()
            .position(|t| source.accepts(t.message.source) && tag.accepts(t.message.tag))
    }

    /// Holds `taken` in its place by the order messages were taken.
    fn hold(&mut self, taken: Taken) {
        let at = self.held.partition_point(|t| t.seq < taken.seq);
        self.held.insert(at, taken);
    }

    fn index_of(&self, id: u64) -> Option<usize> {
        self.posted.iter().position(|p| p.id == id)
    }

    /// Withdraws request `id`; a message it matched is held again.
    fn withdraw(&mut self, id: u64) {
        if let Some(p) = self.index_of(id).and_then(|i| self.posted.remove(i)) {
            if let Some(taken) = p.matched {
                self.hold(taken);
            }
        }
    }
}

/// A send started by [`HybridWorld::isend`].
///
/// Over MPI it is a real non-blocking send. Through the node's mailbox the
/// message is copied into the receiver's ring by `isend` itself (waiting,
/// with both paths kept moving, only while the ring is full): a mailbox
/// send completes as soon as it is written, and doing it at once keeps the
/// order of sends to one rank the order of the `isend` calls. Dropped
/// unfinished, it waits for the send to complete.
#[must_use]
pub struct HybridSendRequest<'a> {
    state: SendState<'a>,
}

enum SendState<'a> {
    Done,
    Mpi(crate::mpi::SendRequest<'a>),
}

/// A receive started by [`HybridWorld::irecv`]: polled by
/// [`HybridWorld::test_recv`], finished by [`HybridWorld::wait_recv`].
/// Requests are matched in the order they were posted (see
/// [`HybridWorld::irecv`]). Dropped unfinished, it is withdrawn, and a
/// message it had matched goes to the next receive that accepts it.
#[derive(Debug)]
#[must_use]
pub struct HybridRecvRequest {
    id: u64,
    matching: Weak<RefCell<Matching>>,
}

impl Drop for HybridRecvRequest {
    fn drop(&mut self) {
        if let Some(matching) = self.matching.upgrade() {
            matching.borrow_mut().withdraw(self.id);
        }
    }
}

impl HybridWorld {
    /// Starts a send of `data` to `dest`; the request borrows `data` until
    /// it completes.
    ///
    /// # Errors
    ///
    /// An invalid rank or tag, or a failure of the path.
    pub fn isend<'a>(
        &mut self,
        dest: usize,
        tag: i32,
        data: &'a [u8],
    ) -> Result<HybridSendRequest<'a>, Error> {
        let state = match self.local_member(dest)? {
            None => SendState::Mpi(self.world.isend(dest, tag, data)?),
            Some(_) => {
                self.send(dest, tag, data)?;
                SendState::Done
            }
        };
        Ok(HybridSendRequest { state })
    }

    /// Polls a send request: true once it has completed.
    ///
    /// # Errors
    ///
    /// A failure of the path.
    pub fn test_send(&mut self, request: &mut HybridSendRequest<'_>) -> Result<bool, Error> {
        let done = match &mut request.state {
            SendState::Done => true,
            SendState::Mpi(r) => r.test()?,
        };
        if done {
            request.state = SendState::Done;
        }
        Ok(done)
    }

    /// Completes a send request (see [`HybridSendRequest`]).
    ///
    /// # Errors
    ///
    /// A failure of the path.
    pub fn wait_send(&mut self, request: HybridSendRequest<'_>) -> Result<(), Error> {
        match request.state {
            SendState::Done => Ok(()),
            SendState::Mpi(r) => self.wait_mpi(r),
        }
    }

    /// Starts a receive from `source` with `tag`.
    ///
    /// Requests are matched as MPI matches receives: a message goes to the
    /// earliest-posted open request that accepts it, whichever request is
    /// tested first; a blocking receive (`recv`, `recv_into`, a
    /// collective's) made while requests are open is matched after them.
    /// So two requests for the same source and tag get its messages in
    /// posting order.
    ///
    /// # Errors
    ///
    /// A rank outside the world; a tag outside `0..=TAG_MAX`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use shmpi::hybrid::HybridWorld;
    /// use shmpi::mpi::{Mpi, ThreadLevel};
    /// use shmpi::transport::Transport;
    ///
    /// let mpi = Mpi::init(ThreadLevel::Multiple)?;
    /// let mut world = HybridWorld::new(&mpi)?;
    /// let (me, n) = (world.rank(), world.size());
    /// let first = world.irecv((me + n - 1) % n, 7)?;
    /// let second = world.irecv((me + n - 1) % n, 7)?;
    /// let sends = [world.isend((me + 1) % n, 7, b"one")?, world.isend((me + 1) % n, 7, b"two")?];
    /// assert_eq!(world.wait_recv(second)?.data, b"two"); // posted second, gets the second
    /// assert_eq!(world.wait_recv(first)?.data, b"one");
    /// for s in sends {
    ///     world.wait_send(s)?;
    /// }
    /// # Ok::<(), shmpi::Error>(())
    /// ```
    pub fn irecv(
        &mut self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
    ) -> Result<HybridRecvRequest, Error> {
        let (source, tag) = (source.into(), tag.into());
        if let Source::Rank(r) = source {
            self.check_rank(r)?;
        }
        if let TagMatch::Tag(t) = tag {
            if !(0..=TAG_MAX).contains(&t) {
                return Err(MpiError::InvalidTag {
                    tag: t,
                    max: TAG_MAX,
                }
                .into());
            }
        }
        let mut matching = self.matching.borrow_mut();
        matching.next_id += 1;
        let id = matching.next_id;
        matching.posted.push_back(Posted {
            id,
            source,
            tag,
            matched: None,
        });
        Ok(HybridRecvRequest {
            id,
            matching: Rc::downgrade(&self.matching),
        })
    }

    /// Polls a receive request: the message's envelope once it has one
    /// (the message stays in the request for [`wait_recv`](Self::wait_recv)).
    ///
    /// # Errors
    ///
    /// A request of another world; a failure of the path.
    pub fn test_recv(&mut self, request: &HybridRecvRequest) -> Result<Option<Status>, Error> {
        self.progress_posted(self.own(request)?)?;
        Ok(self.matched_status(request.id))
    }

    /// Waits until a receive request has its message, or `wait` runs out
    /// (`MpiError::Timeout`, `MpiError::WouldBlock` for `Wait::Now`); the
    /// message's envelope, the message staying in the request.
    ///
    /// # Errors
    ///
    /// As [`test_recv`](Self::test_recv); running out of time.
    pub fn await_recv(
        &mut self,
        request: &HybridRecvRequest,
        wait: impl Into<Wait>,
    ) -> Result<Status, Error> {
        let wait = wait.into();
        let id = self.own(request)?;
        let mut waiter = Waiter::new(&self.wait_policy(), wait.timeout());
        loop {
            self.progress_posted(id)?;
            if let Some(status) = self.matched_status(id) {
                return Ok(status);
            }
            if wait == Wait::Now || !waiter.idle() {
                return Err(out_of_time(wait));
            }
        }
    }

    /// Completes a receive request: its message.
    ///
    /// # Errors
    ///
    /// As [`test_recv`](Self::test_recv).
    pub fn wait_recv(&mut self, request: HybridRecvRequest) -> Result<Message, Error> {
        self.await_recv(&request, Wait::Forever)?;
        let mut matching = self.matching.borrow_mut();
        let taken = matching
            .index_of(request.id)
            .and_then(|i| matching.posted.remove(i))
            .and_then(|p| p.matched)
            .ok_or_else(|| HybridError::Mismatch {
                what: "a completed receive request",
                found: "no message".into(),
                expected: "its message".into(),
            })?;
        Ok(taken.message)
    }

    /// The request's id after checking it is this world's.
    fn own(&self, request: &HybridRecvRequest) -> Result<u64, Error> {
        if Weak::ptr_eq(&request.matching, &Rc::downgrade(&self.matching)) {
            Ok(request.id)
        } else {
            Err(HybridError::Mismatch {
                what: "a receive request",
                found: "another world's".into(),
                expected: "this world's".into(),
            }
            .into())
        }
    }

    fn matched_status(&self, id: u64) -> Option<Status> {
        let matching = self.matching.borrow();
        let i = matching.index_of(id)?;
        matching.posted[i]
            .matched
            .as_ref()
            .map(|t| t.message.status())
    }

    /// Lets the open requests posted up to `upto` look for their messages,
    /// in posting order: each takes the first held message it accepts,
    /// else looks at its path once. A message found is handed to the
    /// earliest open request that accepts it.
    fn progress_posted(&mut self, upto: u64) -> Result<(), Error> {
        let mut i = 0;
        loop {
            let (id, source, tag) = {
                let mut matching = self.matching.borrow_mut();
                let Some(p) = matching.posted.get(i).filter(|p| p.id <= upto) else {
                    return Ok(());
                };
                let (id, source, tag, open) = (p.id, p.source, p.tag, p.matched.is_none());
                i += 1;
                if !open {
                    continue;
                }
                if let Some(h) = matching.find_held(source, tag) {
                    let taken = matching.held.remove(h);
                    matching.posted[i - 1].matched = taken;
                    continue;
                }
                (id, source, tag)
            };
            // Earlier requests may accept what this one finds: look until
            // it finds its own or nothing.
            while let Some(m) = self.recv_from_paths(source, tag, Wait::Now).arrived()? {
                let mut matching = self.matching.borrow_mut();
                let taken = matching.take(m);
                if let Some(mine) = matching.deliver(taken, id) {
                    matching.posted[i - 1].matched = Some(mine);
                    break;
                }
            }
        }
    }

    /// A blocking receive while requests are open or messages held: after
    /// every open request, held messages first. A message longer than
    /// `capacity` is held for a later receive (`MessageTooLong`).
    pub(super) fn recv_ordered(
        &mut self,
        source: Source,
        tag: TagMatch,
        wait: Wait,
        capacity: Option<usize>,
    ) -> Result<Message, Error> {
        let mut waiter = Waiter::new(&self.wait_policy(), wait.timeout());
        loop {
            self.progress_posted(u64::MAX)?;
            let held = {
                let mut matching = self.matching.borrow_mut();
                matching
                    .find_held(source, tag)
                    .and_then(|h| matching.held.remove(h))
            };
            let found = match held {
                Some(taken) => taken,
                None => match self.recv_from_paths(source, tag, Wait::Now).arrived()? {
                    Some(m) => {
                        let mut matching = self.matching.borrow_mut();
                        let taken = matching.take(m);
                        match matching.deliver(taken, u64::MAX) {
                            Some(mine) => mine,
                            // An open request took it: look again.
                            None => continue,
                        }
                    }
                    None if wait == Wait::Now || !waiter.idle() => return Err(out_of_time(wait)),
                    None => continue,
                },
            };
            let len = found.message.data.len();
            return match capacity {
                Some(capacity) if len > capacity => {
                    self.matching.borrow_mut().hold(found);
                    Err(MpiError::MessageTooLong { len, capacity }.into())
                }
                _ => Ok(found.message),
            };
        }
    }
}
