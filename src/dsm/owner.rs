//! The owner protocol: requests to the owner as messages on the array's own
//! channel, applied by the owner in arrival order (see [`super::wire`]).

use crate::transport::{Arrival, Wait};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use bytemuck::Pod;

use super::{wire, Backend, DistArray, DsmInteger};
use crate::error::{DsmError, Error};
use crate::sync::{WaitPolicy, Waiter};
use crate::transport::{Message, ReduceOp, Source, TagMatch, Transport};

/// Tags on the array's channel (its own: nothing else uses it).
const REQUEST: i32 = 1;
const REPLY: i32 = 2;
const ARRIVE: i32 = 3;
const RELEASE: i32 = 4;

/// The owner-protocol backend over a channel `C` of its own: an
/// `MpiTransport` over a duplicated communicator, a
/// [`MailboxGroup`](crate::mailbox::MailboxGroup) made for the array, a
/// duplicated `HybridWorld` (`HybridWorld::dup`).
/// Dropping it is collective: it waits at a barrier (serving) so that no
/// rank still needs it to answer.
pub struct OwnerProtocol<T: Pod, C: Transport>
where
    Error: From<C::Error>,
{
    channel: C,
    block: Arc<Mutex<Vec<T>>>,
    /// `ARRIVE` messages rank 0 received outside a barrier.
    early_arrivals: usize,
    /// When local accesses last served the requests waiting.
    serving: LocalServing,
    #[cfg(feature = "mpi")]
    server: Option<progress::Server>,
}

/// How often local accesses stop to serve the others: a look for requests
/// costs a receive attempt (~90 ns, more than the access itself), so a
/// local access looks only every [`Self::EVERY`] accesses or after
/// [`Self::AFTER`] — often enough that a rank spinning on its own element
/// still answers everyone, rarely enough that a local access is a load
/// and a counter.
#[derive(Debug, Default)]
struct LocalServing {
    accesses: u32,
    last: Option<std::time::Instant>,
}

impl LocalServing {
    const EVERY: u32 = 64;
    const AFTER: std::time::Duration = std::time::Duration::from_micros(20);
    /// Accesses between looks at the clock.
    const CLOCK_EVERY: u32 = 8;

    /// True when this access should serve.
    fn due(&mut self) -> bool {
        self.accesses += 1;
        let due = self.accesses >= Self::EVERY
            || (self.accesses.is_multiple_of(Self::CLOCK_EVERY)
                && self.last.is_none_or(|t| t.elapsed() >= Self::AFTER))
            || self.last.is_none();
        if due {
            self.accesses = 0;
            self.last = Some(std::time::Instant::now());
        }
        due
    }
}

impl<T: Pod, C: Transport> std::fmt::Debug for OwnerProtocol<T, C>
where
    Error: From<C::Error>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerProtocol")
            .field("rank", &self.channel.rank())
            .field("size", &self.channel.size())
            .field("progress_thread", &self.has_progress_thread())
            .finish()
    }
}

/// Checks over `channel` that all ranks agree on the element's size (`words`
/// `T`s) and alignment and on `len`.
pub(super) fn check_agreement<T: Pod, C: Transport>(
    channel: &mut C,
    len: usize,
    words: usize,
) -> Result<(), Error>
where
    Error: From<C::Error>,
{
    let mine = [
        (std::mem::size_of::<T>() * words) as u64,
        std::mem::align_of::<T>() as u64,
        len as u64,
    ];
    // One collective for both bounds: the maximum of `!v` is `!min(v)`.
    let both: Vec<u64> = mine
        .iter()
        .copied()
        .chain(mine.iter().map(|v| !v))
        .collect();
    let max_both = channel.allreduce(&both, ReduceOp::Max)?;
    if max_both.len() != both.len() {
        return Err(
            DsmError::Protocol(format!("allreduce gave {} values for 6", max_both.len())).into(),
        );
    }
    let (max, min): (Vec<u64>, Vec<u64>) = (
        max_both[..3].to_vec(),
        max_both[3..].iter().map(|v| !v).collect(),
    );
    for (k, what) in ["element size", "element alignment", "length"]
        .into_iter()
        .enumerate()
    {
        if min[k] != max[k] {
            return Err(DsmError::Disagreement {
                what,
                min: min[k],
                max: max[k],
            }
            .into());
        }
    }
    Ok(())
}

impl<T: Pod, C: Transport> DistArray<T, OwnerProtocol<T, C>>
where
    Error: From<C::Error>,
{
    /// A zeroed array of `len` elements served by the owner protocol over
    /// `channel`, which must be the array's alone. Collective: every rank
    /// of the channel calls it with the same `len` and `T`.
    ///
    /// # Errors
    ///
    /// [`DsmError::Disagreement`] when the ranks' `len` or `T`'s size or
    /// alignment differ; the channel's errors.
    pub fn owner(channel: C, len: usize) -> Result<Self, Error> {
        Self::owner_words(channel, len, 1)
    }

    /// As [`owner`](Self::owner), each element `words` `T`s.
    pub(super) fn owner_words(mut channel: C, len: usize, words: usize) -> Result<Self, Error> {
        check_agreement::<T, _>(&mut channel, len, words)?;
        let block_len = super::Distribution::new(len, channel.size())
            .block(channel.rank())
            .len()
            * words;
        let backend = OwnerProtocol {
            channel,
            block: Arc::new(Mutex::new(vec![T::zeroed(); block_len])),
            early_arrivals: 0,
            serving: LocalServing::default(),
            #[cfg(feature = "mpi")]
            server: None,
        };
        Ok(DistArray::from_backend(backend, len, words))
    }
}

impl<T: Pod, C: Transport> OwnerProtocol<T, C>
where
    Error: From<C::Error>,
{
    /// True when a progress thread serves this rank's block.
    pub fn has_progress_thread(&self) -> bool {
        #[cfg(feature = "mpi")]
        return self.server.is_some();
        #[cfg(not(feature = "mpi"))]
        false
    }

    fn block(&self) -> MutexGuard<'_, Vec<T>> {
        // A panic while holding the lock cannot leave a block half-updated
        // in a way Pod values could notice: use it as it is.
        self.block.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers one request from a peer.
    fn serve(&mut self, request: &Message) -> Result<(), Error> {
        let reply = serve_block(&self.block, &request.data);
        Ok(self.channel.send(request.source, REPLY, &reply)?)
    }

    /// Receives the next message on the channel and handles it: a request
    /// is served and an early barrier arrival counted (`None`); a reply or
    /// a release is returned to the caller, which waits for one of them.
    fn handle_next(&mut self) -> Result<Option<Message>, Error> {
        let m = self
            .channel
            .recv_matching(Source::Any, TagMatch::Any, Wait::Forever)?;
        match m.tag {
            REQUEST => self.serve(&m).map(|()| None),
            ARRIVE if self.channel.rank() == 0 => {
                self.early_arrivals += 1;
                Ok(None)
            }
            REPLY | RELEASE => Ok(Some(m)),
            tag => Err(DsmError::Protocol(format!(
                "tag {tag} from rank {} on the array's channel",
                m.source
            ))
            .into()),
        }
    }

    /// Serves the requests already waiting, without blocking: a rank
    /// looping on its own elements still answers everyone else (a spin lock
    /// on a location it owns would otherwise never be released).
    fn serve_waiting(&mut self) -> Result<(), Error> {
        if self.has_progress_thread() {
            return Ok(());
        }
        while let Some(m) = self
            .channel
            .recv_matching(Source::Any, TagMatch::Any, Wait::Now)
            .arrived()?
        {
            match m.tag {
                REQUEST => self.serve(&m)?,
                ARRIVE if self.channel.rank() == 0 => self.early_arrivals += 1,
                tag => {
                    return Err(DsmError::Protocol(format!(
                        "tag {tag} from rank {} with no request outstanding",
                        m.source
                    ))
                    .into())
                }
            }
        }
        Ok(())
    }

    /// Serves until a reply or a release arrives.
    fn next_awaited(&mut self) -> Result<Message, Error> {
        loop {
            if let Some(m) = self.handle_next()? {
                return Ok(m);
            }
        }
    }

    /// Sends `request` to `owner` and waits for its reply (serving others
    /// meanwhile); returns the reply's payload.
    fn round_trip(&mut self, owner: usize, request: &[u8]) -> Result<Vec<u8>, Error> {
        let mut payloads = self.round_trips(&[(owner, request)])?;
        Ok(payloads.pop().unwrap_or_default())
    }

    /// Sends every request (to distinct owners) at once, then collects the
    /// replies in whatever order they come, serving others meanwhile;
    /// returns the payloads in request order. Every reply is taken off the
    /// channel before an owner's refusal is reported, so none is left to
    /// confuse the next operation.
    fn round_trips(&mut self, requests: &[(usize, &[u8])]) -> Result<Vec<Vec<u8>>, Error> {
        for (owner, request) in requests {
            self.channel.send(*owner, REQUEST, request)?;
        }
        let mut payloads: Vec<Option<Result<Vec<u8>, Error>>> = vec![None; requests.len()];
        for _ in 0..requests.len() {
            let reply = if self.has_progress_thread() {
                // The thread serves; only replies are for us. Poll and
                // wait by the policy rather than block in MPI (which
                // spins): every rank on the node runs a progress thread
                // beside its own, so count two runnable waiters per rank.
                let policy = WaitPolicy::for_parties(crate::sync::wait::node_processes() * 2);
                let mut waiter = Waiter::new(&policy, None);
                loop {
                    match self
                        .channel
                        .recv_matching(Source::Any, TagMatch::Tag(REPLY), Wait::Now)
                        .arrived()?
                    {
                        Some(m) => break m,
                        None => {
                            waiter.idle();
                        }
                    }
                }
            } else {
                self.next_awaited()?
            };
            let slot = requests
                .iter()
                .position(|(owner, _)| *owner == reply.source)
                .filter(|&i| reply.tag == REPLY && payloads[i].is_none())
                .ok_or_else(|| {
                    DsmError::Protocol(format!(
                        "awaiting replies, got tag {} from rank {}",
                        reply.tag, reply.source
                    ))
                })?;
            payloads[slot] = Some(parse(reply.source, &reply.data));
        }
        payloads
            .into_iter()
            .map(|p| {
                p.unwrap_or_else(|| Err(DsmError::Protocol("a reply went missing".into()).into()))
            })
            .collect()
    }

    /// A reply payload of exactly `out`'s bytes, copied into it.
    fn payload_into(owner: usize, payload: &[u8], out: &mut [T]) -> Result<(), Error> {
        let dst: &mut [u8] = bytemuck::cast_slice_mut(out);
        if payload.len() != dst.len() {
            return Err(DsmError::Protocol(format!(
                "rank {owner} replied {} bytes for {}",
                payload.len(),
                dst.len()
            ))
            .into());
        }
        dst.copy_from_slice(payload);
        Ok(())
    }

    /// Replaces this rank's element `at` by `f(element)` under the block's
    /// lock; returns the previous value.
    fn update_local(&mut self, at: usize, f: impl FnOnce(T) -> T) -> Result<T, Error> {
        let r = self.local_range(at, 1)?;
        let mut block = self.block();
        let old = block[r.start];
        block[r.start] = f(old);
        Ok(old)
    }

    /// Sends a one-element update and returns the element's previous value
    /// from the reply.
    fn remote_previous(&mut self, owner: usize, request: &[u8]) -> Result<T, Error> {
        let payload = self.round_trip(owner, request)?;
        let mut old = [T::zeroed()];
        Self::payload_into(owner, &payload, &mut old)?;
        Ok(old[0])
    }

    /// `at..at + n` if inside this rank's block, after serving the
    /// requests waiting when due ([`LocalServing`]: local accesses are
    /// also chances to serve).
    fn local_range(&mut self, at: usize, n: usize) -> Result<std::ops::Range<usize>, Error> {
        if self.serving.due() {
            self.serve_waiting()?;
        }
        let len = self.block().len();
        at.checked_add(n)
            .filter(|&end| end <= len)
            .map(|end| at..end)
            .ok_or_else(|| {
                DsmError::Refused {
                    owner: self.channel.rank(),
                    reason: "range outside its block",
                }
                .into()
            })
    }

    fn barrier_serving(&mut self) -> Result<(), Error> {
        let (me, n) = (self.channel.rank(), self.channel.size());
        if n == 1 {
            return Ok(());
        }
        if self.has_progress_thread() {
            return Ok(self.channel.barrier()?);
        }
        if me == 0 {
            while self.early_arrivals < n - 1 {
                if let Some(m) = self.handle_next()? {
                    return Err(DsmError::Protocol(format!(
                        "tag {} from rank {} while gathering the barrier",
                        m.tag, m.source
                    ))
                    .into());
                }
            }
            self.early_arrivals -= n - 1;
            for r in 1..n {
                self.channel.send(r, RELEASE, &[])?;
            }
        } else {
            self.channel.send(0, ARRIVE, &[])?;
            let m = self.next_awaited()?;
            if m.tag != RELEASE || m.source != 0 {
                return Err(DsmError::Protocol(format!(
                    "awaiting the barrier's release, got tag {} from rank {}",
                    m.tag, m.source
                ))
                .into());
            }
        }
        Ok(())
    }
}

/// A reply's payload, or the owner's refusal.
fn parse(owner: usize, reply: &[u8]) -> Result<Vec<u8>, Error> {
    let (status, payload) = wire::parse_reply(reply)
        .ok_or_else(|| DsmError::Protocol(format!("malformed reply from rank {owner}")))?;
    let reason = match status {
        wire::Status::Ok => return Ok(payload.to_vec()),
        wire::Status::OutOfRange => "range outside its block",
        wire::Status::Malformed => "malformed request",
        wire::Status::NotAnInteger => "integer operation on a non-integer element size",
    };
    Err(DsmError::Refused { owner, reason }.into())
}

/// The owner's side: applies a request to the block behind `block`.
fn serve_block<T: Pod>(block: &Mutex<Vec<T>>, request: &[u8]) -> Vec<u8> {
    let mut guard = block.lock().unwrap_or_else(|p| p.into_inner());
    wire::serve(
        bytemuck::cast_slice_mut(guard.as_mut_slice()),
        std::mem::size_of::<T>(),
        request,
    )
}

impl<T: Pod, C: Transport> Backend<T> for OwnerProtocol<T, C>
where
    Error: From<C::Error>,
{
    fn rank(&self) -> usize {
        self.channel.rank()
    }

    fn size(&self) -> usize {
        self.channel.size()
    }

    fn read(&mut self, owner: usize, at: usize, out: &mut [T]) -> Result<(), Error> {
        if owner == self.rank() {
            let r = self.local_range(at, out.len())?;
            out.copy_from_slice(&self.block()[r]);
            return Ok(());
        }
        let payload = self.round_trip(owner, &wire::request(wire::Op::Get, at, out.len(), &[]))?;
        Self::payload_into(owner, &payload, out)
    }

    fn write(&mut self, owner: usize, at: usize, data: &[T]) -> Result<(), Error> {
        if owner == self.rank() {
            let r = self.local_range(at, data.len())?;
            self.block()[r].copy_from_slice(data);
            return Ok(());
        }
        let request = wire::request(wire::Op::Put, at, data.len(), bytemuck::cast_slice(data));
        self.round_trip(owner, &request).map(drop)
    }

    /// One request per remote owner, all in flight at once.
    fn read_parts(
        &mut self,
        parts: &[(usize, usize, Range<usize>)],
        out: &mut [T],
    ) -> Result<(), Error> {
        let me = self.rank();
        let mut requests = Vec::new();
        for (owner, at, part) in parts {
            if *owner == me {
                self.read(me, *at, &mut out[part.clone()])?;
            } else {
                requests.push((
                    *owner,
                    wire::request(wire::Op::Get, *at, part.len(), &[]),
                    part.clone(),
                ));
            }
        }
        let sent: Vec<(usize, &[u8])> = requests
            .iter()
            .map(|(o, r, _)| (*o, r.as_slice()))
            .collect();
        let payloads = self.round_trips(&sent)?;
        for ((owner, _, part), payload) in requests.iter().zip(payloads) {
            Self::payload_into(*owner, &payload, &mut out[part.clone()])?;
        }
        Ok(())
    }

    /// One request per remote owner, all in flight at once.
    fn write_parts(
        &mut self,
        parts: &[(usize, usize, Range<usize>)],
        data: &[T],
    ) -> Result<(), Error> {
        let me = self.rank();
        let mut requests = Vec::new();
        for (owner, at, part) in parts {
            if *owner == me {
                self.write(me, *at, &data[part.clone()])?;
            } else {
                let bytes = bytemuck::cast_slice(&data[part.clone()]);
                requests.push((*owner, wire::request(wire::Op::Put, *at, part.len(), bytes)));
            }
        }
        let sent: Vec<(usize, &[u8])> = requests.iter().map(|(o, r)| (*o, r.as_slice())).collect();
        self.round_trips(&sent).map(drop)
    }

    fn fetch_add(&mut self, owner: usize, at: usize, value: T) -> Result<T, Error>
    where
        T: DsmInteger,
    {
        if owner == self.rank() {
            return self.update_local(at, |old| old.wrapping_add(value));
        }
        let request = wire::request(wire::Op::FetchAdd, at, 1, bytemuck::bytes_of(&value));
        self.remote_previous(owner, &request)
    }

    fn compare_and_swap(&mut self, owner: usize, at: usize, current: T, new: T) -> Result<T, Error>
    where
        T: DsmInteger,
    {
        if owner == self.rank() {
            return self.update_local(at, |old| if old == current { new } else { old });
        }
        let operands = [current, new];
        let request = wire::request(
            wire::Op::CompareSwap,
            at,
            1,
            bytemuck::cast_slice(&operands),
        );
        let payload = self.round_trip(owner, &request)?;
        let mut old = [T::zeroed()];
        Self::payload_into(owner, &payload, &mut old)?;
        Ok(old[0])
    }

    fn barrier(&mut self) -> Result<(), Error> {
        self.barrier_serving()
    }
}

impl<T: Pod, C: Transport> Drop for OwnerProtocol<T, C>
where
    Error: From<C::Error>,
{
    fn drop(&mut self) {
        // Serve until every rank is done with the array; a failure (a dead
        // peer) leaves nothing to serve.
        let _ = self.barrier_serving();
        #[cfg(feature = "mpi")]
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

#[cfg(feature = "mpi")]
pub use progress::SharedChannel;

#[cfg(feature = "mpi")]
mod progress {
    //! A progress thread that serves the owner's block over MPI at all
    //! times (needs `MPI_THREAD_MULTIPLE`).

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::Duration;

    use bytemuck::Pod;

    use super::{serve_block, OwnerProtocol, REPLY, REQUEST};
    use crate::dsm::DistArray;
    use crate::error::{Error, MpiError};
    use crate::mpi::{Comm, MpiTransport, SharedComm};
    use crate::sync::{WaitPolicy, Waiter};
    use crate::transport::{Arrival, Wait};
    use crate::transport::{Source, TagMatch, Transport};

    /// Longest sleep of an idle progress thread between polls.
    const MAX_IDLE_SLEEP: Duration = Duration::from_millis(1);

    /// The channel of an array served by a progress thread: MPI over a
    /// communicator the thread shares (`MPI_THREAD_MULTIPLE`).
    pub type SharedChannel = MpiTransport<Arc<SharedComm>>;

    /// The serving thread and its stop flag.
    pub(super) struct Server {
        stop: Arc<AtomicBool>,
        thread: JoinHandle<Result<(), MpiError>>,
    }

    impl Server {
        pub(super) fn stop(self) {
            self.stop.store(true, Ordering::Release);
            let _ = self.thread.join();
        }
    }

    /// Serves requests until `stop`: polls (`MPI_Improbe`); when idle it
    /// waits by the crate's policy without spinning (it is a helper thread
    /// beside its rank's own): yields the CPU between polls for a while
    /// (requests tend to come in runs), then sleeps a backoff up to
    /// [`MAX_IDLE_SLEEP`].
    fn serve_loop<T: Pod>(
        comm: &SharedComm,
        block: &Mutex<Vec<T>>,
        stop: &AtomicBool,
    ) -> Result<(), MpiError> {
        let policy = WaitPolicy::for_node()
            .with_spin(Duration::ZERO)
            .with_max_backoff(MAX_IDLE_SLEEP);
        let mut waiter = Waiter::new(&policy, None);
        while !stop.load(Ordering::Acquire) {
            match comm
                .recv(Source::Any, TagMatch::Tag(REQUEST), Wait::Now)
                .arrived()?
            {
                Some(m) => {
                    comm.send(m.source, REPLY, &serve_block(block, &m.data))?;
                    waiter.reset();
                }
                None => {
                    waiter.idle();
                }
            }
        }
        Ok(())
    }

    impl<T: Pod + Send> DistArray<T, OwnerProtocol<T, SharedChannel>> {
        /// A zeroed array of `len` elements served by the owner protocol
        /// over a duplicate of `comm`, with a thread on every rank that
        /// serves its block at all times (not only while the rank is inside
        /// a call on the array). Collective.
        ///
        /// # Errors
        ///
        /// [`MpiError::ThreadLevel`] unless MPI granted
        /// `MPI_THREAD_MULTIPLE`; as [`DistArray::owner`].
        pub fn with_progress_thread(comm: &Comm, len: usize) -> Result<Self, Error> {
            let shared = Arc::new(SharedComm::try_from(comm.dup()?)?);
            let channel = MpiTransport::shared(Arc::clone(&shared));
            let mut array = DistArray::owner(channel, len)?;
            let block = Arc::clone(&array.backend.block);
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let thread = std::thread::Builder::new()
                .name("shmpi-dsm-progress".into())
                .spawn(move || {
                    crate::sync::affinity::unbind_this_thread();
                    serve_loop(&shared, &block, &flag)
                })
                .map_err(|_| MpiError::ThreadLevel {
                    needed: "a progress thread (spawn failed)",
                    granted: "",
                })?;
            array.backend.server = Some(Server { stop, thread });
            // Every rank's server runs before anyone sends it a request.
            array.backend.channel.barrier()?;
            Ok(array)
        }
    }
}
