//! One interface for every message path: [`Transport`].
//!
//! Mailboxes on shared memory, MPI and the hybrid router implement it, so
//! programs, tests and benchmarks run unchanged over each. Receives match
//! like MPI's (MPI 4.0, §3.5): a receive names a source or [`Source::Any`]
//! and a tag or [`TagMatch::Any`]; a message that arrives and does not match
//! waits in a local queue in arrival order; messages between one pair of
//! ranks with one tag are received in the order they were sent.
//!
//! Collectives are default methods built on send and receive (linear, root
//! based, deterministic: reductions combine contributions in rank order);
//! implementations with better ones (MPI's own, hierarchical ones) override
//! them. They use tags above [`TAG_MAX`], which applications leave alone.

use std::time::Duration;

use bytemuck::Pod;

use crate::error::{Error, MailboxError, MpiError, TransportError};

/// The largest tag applications use; tags above it are reserved for
/// collectives.
pub const TAG_MAX: i32 = 0x3FFF_FFFF;

const TAG_BARRIER_IN: i32 = TAG_MAX + 1;
const TAG_BARRIER_OUT: i32 = TAG_MAX + 2;
const TAG_BROADCAST: i32 = TAG_MAX + 3;
const TAG_REDUCE: i32 = TAG_MAX + 4;
const TAG_GATHER: i32 = TAG_MAX + 5;

/// Where a receive accepts messages from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Any rank (`MPI_ANY_SOURCE`).
    Any,
    /// One rank.
    Rank(usize),
}

impl From<usize> for Source {
    fn from(rank: usize) -> Source {
        Source::Rank(rank)
    }
}

/// Which tags a receive accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagMatch {
    /// Any application tag, `0..=TAG_MAX` (`MPI_ANY_TAG`). The reserved
    /// tags of collectives are never matched by it, as MPI keeps collective
    /// traffic in a context of its own.
    Any,
    /// One tag.
    Tag(i32),
}

impl From<i32> for TagMatch {
    fn from(tag: i32) -> TagMatch {
        TagMatch::Tag(tag)
    }
}

/// What a probe (or a receive into a buffer) found: the message's
/// envelope and length, without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The sender.
    pub source: usize,
    /// The tag.
    pub tag: i32,
    /// Payload bytes.
    pub len: usize,
}

impl Message {
    /// The message's envelope and length.
    pub fn status(&self) -> Status {
        Status {
            source: self.source,
            tag: self.tag,
            len: self.data.len(),
        }
    }
}

/// How long a receive waits for a matching message: every receive —
/// owned (`recv`), into a buffer (`recv_into`), by reference (`recv_ref`)
/// — on a mailbox group, an MPI communicator or any [`Transport`] takes
/// one. A [`Duration`] converts into [`Wait::For`].
///
/// ```
/// use std::time::Duration;
/// use shmpi::prelude::*;
///
/// let mut members = MailboxGroup::threads(2, &MailboxOptions::default())?;
/// let (mut b, mut a) = (members.pop().unwrap(), members.pop().unwrap());
/// // Nothing sent yet: `Now` does not wait, `For` waits that long; both
/// // consume nothing, and `arrived()` turns "nothing" into `None`.
/// assert!(b.recv(0, 7, Wait::Now).arrived()?.is_none());
/// assert!(b.recv(0, 7, Duration::from_millis(1)).arrived()?.is_none());
/// a.send(1, 7, b"hi")?;
/// assert_eq!(b.recv(0, 7, Wait::Forever)?.data, b"hi");
/// # Ok::<(), shmpi::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Wait {
    /// Until a message matches, or its source (for [`Source::Any`]: every
    /// other rank) is gone.
    #[default]
    Forever,
    /// Up to this long; then the receive fails with the path's `Timeout`
    /// error, nothing consumed.
    For(Duration),
    /// Not at all: a message that has arrived, else the path's
    /// `WouldBlock` error, nothing consumed.
    Now,
}

impl From<Duration> for Wait {
    fn from(timeout: Duration) -> Wait {
        Wait::For(timeout)
    }
}

impl Wait {
    /// The timeout of a wait that has one (`Now`: zero).
    pub fn timeout(self) -> Option<Duration> {
        match self {
            Wait::Forever => None,
            Wait::For(t) => Some(t),
            Wait::Now => Some(Duration::ZERO),
        }
    }
}

/// An error that can mean "nothing matched within the [`Wait`]" — a
/// timeout or a would-block — rather than a failure.
pub trait NothingYet {
    /// Whether the receive ended because nothing matched in time (nothing
    /// was consumed).
    fn is_nothing_yet(&self) -> bool;
}

/// A receive's result with "nothing arrived in time" as `None`: what a
/// `try_recv` returns elsewhere.
///
/// ```
/// use shmpi::prelude::*;
///
/// let mut members = MailboxGroup::threads(2, &MailboxOptions::default())?;
/// let b = &mut members[1];
/// assert!(b.recv(Source::Any, TagMatch::Any, Wait::Now).arrived()?.is_none());
/// // A real failure stays an error.
/// assert!(b.recv(9, 1, Wait::Now).arrived().is_err());
/// # Ok::<(), shmpi::Error>(())
/// ```
pub trait Arrival<T, E> {
    /// `Ok(Some(v))` for a message, `Ok(None)` when nothing matched within
    /// the wait ([`NothingYet`]), else the error.
    ///
    /// # Errors
    ///
    /// Every error that is not [`NothingYet`].
    fn arrived(self) -> Result<Option<T>, E>;
}

impl NothingYet for MailboxError {
    fn is_nothing_yet(&self) -> bool {
        matches!(
            self,
            MailboxError::Timeout { .. } | MailboxError::WouldBlock
        )
    }
}

impl NothingYet for MpiError {
    fn is_nothing_yet(&self) -> bool {
        matches!(self, MpiError::Timeout { .. } | MpiError::WouldBlock)
    }
}

impl NothingYet for Error {
    fn is_nothing_yet(&self) -> bool {
        match self {
            Error::Mailbox(e) => e.is_nothing_yet(),
            Error::Mpi(e) => e.is_nothing_yet(),
            _ => false,
        }
    }
}

impl<T, E: NothingYet> Arrival<T, E> for Result<T, E> {
    fn arrived(self) -> Result<Option<T>, E> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_nothing_yet() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl TagMatch {
    /// Whether `tag` is accepted.
    pub fn accepts(self, tag: i32) -> bool {
        match self {
            TagMatch::Any => (0..=TAG_MAX).contains(&tag),
            TagMatch::Tag(t) => t == tag,
        }
    }
}

impl Source {
    /// Whether a message from `rank` is accepted.
    pub fn accepts(self, rank: usize) -> bool {
        match self {
            Source::Any => true,
            Source::Rank(r) => r == rank,
        }
    }
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sender's rank.
    pub source: usize,
    /// The tag.
    pub tag: i32,
    /// The payload.
    pub data: Vec<u8>,
}

/// A received message of `Pod` elements.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedMessage<T> {
    /// The sender's rank.
    pub source: usize,
    /// The tag.
    pub tag: i32,
    /// The elements.
    pub data: Vec<T>,
}

/// Reduction operations (MPI's predefined ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// `MPI_SUM`.
    Sum,
    /// `MPI_PROD`.
    Prod,
    /// `MPI_MIN`.
    Min,
    /// `MPI_MAX`.
    Max,
    /// `MPI_BAND` (integers only).
    BitAnd,
    /// `MPI_BOR` (integers only).
    BitOr,
    /// `MPI_BXOR` (integers only).
    BitXor,
}

impl ReduceOp {
    /// The name, for errors.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Prod => "product",
            ReduceOp::Min => "min",
            ReduceOp::Max => "max",
            ReduceOp::BitAnd => "bitwise and",
            ReduceOp::BitOr => "bitwise or",
            ReduceOp::BitXor => "bitwise xor",
        }
    }
}

/// Numeric element types that reductions combine.
pub trait Reducible: Pod {
    /// The type's name, for errors.
    const NAME: &'static str;
    /// `a op b`, or `None` when `op` is not defined for the type.
    fn combine(op: ReduceOp, a: Self, b: Self) -> Option<Self>;
}

macro_rules! reducible_int {
    ($($t:ty),*) => {$(
        impl Reducible for $t {
            const NAME: &'static str = stringify!($t);
            fn combine(op: ReduceOp, a: Self, b: Self) -> Option<Self> {
                Some(match op {
                    ReduceOp::Sum => a.wrapping_add(b),
                    ReduceOp::Prod => a.wrapping_mul(b),
                    ReduceOp::Min => a.min(b),
                    ReduceOp::Max => a.max(b),
                    ReduceOp::BitAnd => a & b,
                    ReduceOp::BitOr => a | b,
                    ReduceOp::BitXor => a ^ b,
                })
            }
        }
    )*};
}
reducible_int!(i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);

macro_rules! reducible_float {
    ($($t:ty),*) => {$(
        impl Reducible for $t {
            const NAME: &'static str = stringify!($t);
            fn combine(op: ReduceOp, a: Self, b: Self) -> Option<Self> {
                match op {
                    ReduceOp::Sum => Some(a + b),
                    ReduceOp::Prod => Some(a * b),
                    ReduceOp::Min => Some(a.min(b)),
                    ReduceOp::Max => Some(a.max(b)),
                    _ => None,
                }
            }
        }
    )*};
}
reducible_float!(f32, f64);

/// Bytes as `T` elements (copied: a byte buffer is not aligned for `T` in
/// general). Every typed receive and collective of every transport decodes
/// through here.
pub(crate) fn cast_vec<T: Pod>(bytes: &[u8]) -> Result<Vec<T>, TransportError> {
    let elem = std::mem::size_of::<T>();
    if elem == 0 || !bytes.len().is_multiple_of(elem) {
        return Err(TransportError::TypeMismatch {
            len: bytes.len(),
            elem,
        });
    }
    Ok(bytes
        .chunks_exact(elem)
        .map(bytemuck::pod_read_unaligned)
        .collect())
}

fn combine_into<T: Reducible>(
    acc: &mut [T],
    other: &[T],
    op: ReduceOp,
) -> Result<(), TransportError> {
    for (a, &b) in acc.iter_mut().zip(other) {
        *a = T::combine(op, *a, b).ok_or(TransportError::UnsupportedOp {
            op: op.name(),
            ty: T::NAME,
        })?;
    }
    Ok(())
}

/// A way to exchange messages between `size()` ranks.
///
/// # Examples
///
/// The same function runs over any transport; here over threads:
///
/// ```
/// use shmpi::mailbox::{MailboxGroup, MailboxOptions};
/// use shmpi::transport::{ReduceOp, Transport, Wait};
///
/// // Generic code returns the path's own error (`T::Error`); to return
/// // `shmpi::Error` instead, add `where shmpi::Error: From<T::Error>`.
/// fn ring_sum<T: Transport>(t: &mut T) -> Result<u64, T::Error> {
///     let (me, n) = (t.rank(), t.size());
///     t.send_pod((me + 1) % n, 7, &[me as u64])?;
///     let got = t.recv_pod::<u64>((me + n - 1) % n, 7, Wait::Forever)?;
///     assert_eq!(got.data, [((me + n - 1) % n) as u64]);
///     Ok(t.allreduce(&[me as u64], ReduceOp::Sum)?[0])
/// }
///
/// let members = MailboxGroup::threads(3, &MailboxOptions::default())?;
/// let sums: Vec<u64> = std::thread::scope(|s| {
///     let handles: Vec<_> = members.into_iter().map(|mut m| s.spawn(move || ring_sum(&mut m))).collect();
///     handles.into_iter().map(|h| h.join().unwrap()).collect::<Result<Vec<_>, _>>()
/// })?;
/// assert_eq!(sums, [3, 3, 3]);
/// # Ok::<(), shmpi::Error>(())
/// ```
pub trait Transport {
    /// What this path's operations fail with: the error its object's own
    /// methods return — [`MailboxError`] for a mailbox group, [`MpiError`]
    /// for MPI, [`Error`] for the hybrid world — so an object has one
    /// error type. It converts into [`Error`] (`?` in a function returning
    /// `shmpi::Result`, given `shmpi::Error: From<T::Error>` in generic
    /// code) and tells "nothing in time" apart ([`NothingYet`]).
    type Error: std::error::Error
        + From<TransportError>
        + NothingYet
        + Into<Error>
        + Send
        + Sync
        + 'static;

    /// This rank.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;

    /// Sends `data` to `dest` with `tag`, waiting while the path is full.
    ///
    /// # Errors
    ///
    /// Invalid rank or tag, a dead or departed peer, a failure of the path.
    fn send(&mut self, dest: usize, tag: i32, data: &[u8]) -> Result<(), Self::Error>;

    /// Receives the first message that matches `source` and `tag`,
    /// waiting as `wait` says.
    ///
    /// # Errors
    ///
    /// A timeout ([`Wait::For`]) or would-block ([`Wait::Now`]) — both
    /// [`NothingYet`], nothing consumed — a dead peer, a failure of the
    /// path.
    fn recv_matching(
        &mut self,
        source: Source,
        tag: TagMatch,
        wait: Wait,
    ) -> Result<Message, Self::Error>;

    /// Receives from `source` (a rank or [`Source::Any`]) with `tag` (or
    /// [`TagMatch::Any`]), waiting as `wait` says (a [`Wait`] or a
    /// [`Duration`]).
    ///
    /// # Errors
    ///
    /// As [`recv_matching`](Self::recv_matching).
    fn recv(
        &mut self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
        wait: impl Into<Wait>,
    ) -> Result<Message, Self::Error>
    where
        Self: Sized,
    {
        self.recv_matching(source.into(), tag.into(), wait.into())
    }

    /// Sends a slice of `Pod` values.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    fn send_pod<T: Pod>(&mut self, dest: usize, tag: i32, values: &[T]) -> Result<(), Self::Error>
    where
        Self: Sized,
    {
        self.send(dest, tag, bytemuck::cast_slice(values))
    }

    /// Receives a message of `Pod` values.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), and [`TransportError::TypeMismatch`] when the
    /// length is not a multiple of `T`'s size (the message is consumed).
    fn recv_pod<T: Pod>(
        &mut self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
        wait: impl Into<Wait>,
    ) -> Result<TypedMessage<T>, Self::Error>
    where
        Self: Sized,
    {
        let m = self.recv(source, tag, wait)?;
        Ok(TypedMessage {
            source: m.source,
            tag: m.tag,
            data: cast_vec(&m.data)?,
        })
    }

    /// Waits until every rank has called `barrier`.
    ///
    /// # Errors
    ///
    /// A failure of the path (a dead rank).
    fn barrier(&mut self) -> Result<(), Self::Error>
    where
        Self: Sized,
    {
        let (me, n) = (self.rank(), self.size());
        if me == 0 {
            for r in 1..n {
                self.recv(r, TAG_BARRIER_IN, Wait::Forever)?;
            }
            for r in 1..n {
                self.send(r, TAG_BARRIER_OUT, &[])?;
            }
        } else {
            self.send(0, TAG_BARRIER_IN, &[])?;
            self.recv(0, TAG_BARRIER_OUT, Wait::Forever)?;
        }
        Ok(())
    }

    /// Makes every rank's `data` equal to `root`'s.
    ///
    /// # Errors
    ///
    /// [`TransportError::InvalidRoot`], or a failure of the path.
    fn broadcast<T: Pod>(&mut self, root: usize, data: &mut Vec<T>) -> Result<(), Self::Error>
    where
        Self: Sized,
    {
        let (me, n) = (self.rank(), self.size());
        check_root(root, n)?;
        if me == root {
            for r in (0..n).filter(|&r| r != root) {
                self.send_pod(r, TAG_BROADCAST, data)?;
            }
        } else {
            *data = self.recv_pod::<T>(root, TAG_BROADCAST, Wait::Forever)?.data;
        }
        Ok(())
    }

    /// Combines every rank's `data` element-wise with `op`; the result (in
    /// rank order, so floating-point sums are reproducible) at `root`.
    ///
    /// # Errors
    ///
    /// [`TransportError::CountMismatch`] when ranks give different lengths,
    /// [`TransportError::UnsupportedOp`], or a failure of the path.
    fn reduce<T: Reducible>(
        &mut self,
        root: usize,
        data: &[T],
        op: ReduceOp,
    ) -> Result<Option<Vec<T>>, Self::Error>
    where
        Self: Sized,
    {
        let (me, n) = (self.rank(), self.size());
        check_root(root, n)?;
        // Every rank refuses an undefined operation before communicating,
        // so no rank is left waiting.
        if T::combine(op, T::zeroed(), T::zeroed()).is_none() {
            return Err(TransportError::UnsupportedOp {
                op: op.name(),
                ty: T::NAME,
            }
            .into());
        }
        if me != root {
            self.send_pod(root, TAG_REDUCE, data)?;
            return Ok(None);
        }
        let mut parts: Vec<Option<Vec<T>>> = vec![None; n];
        parts[root] = Some(data.to_vec());
        for r in (0..n).filter(|&r| r != root) {
            let got = self.recv_pod::<T>(r, TAG_REDUCE, Wait::Forever)?.data;
            if got.len() != data.len() {
                return Err(TransportError::CountMismatch {
                    rank: r,
                    found: got.len(),
                    expected: data.len(),
                }
                .into());
            }
            parts[r] = Some(got);
        }
        let mut parts = parts.into_iter().flatten();
        let mut acc = parts.next().unwrap_or_default();
        for p in parts {
            combine_into(&mut acc, &p, op)?;
        }
        Ok(Some(acc))
    }

    /// [`reduce`](Self::reduce) to rank 0, then [`broadcast`](Self::broadcast).
    ///
    /// # Errors
    ///
    /// As those two.
    fn allreduce<T: Reducible>(&mut self, data: &[T], op: ReduceOp) -> Result<Vec<T>, Self::Error>
    where
        Self: Sized,
    {
        let mut result = self.reduce(0, data, op)?.unwrap_or_default();
        self.broadcast(0, &mut result)?;
        Ok(result)
    }

    /// Collects every rank's `data` at `root`, indexed by rank.
    ///
    /// # Errors
    ///
    /// [`TransportError::InvalidRoot`], or a failure of the path.
    fn gather<T: Pod>(
        &mut self,
        root: usize,
        data: &[T],
    ) -> Result<Option<Vec<Vec<T>>>, Self::Error>
    where
        Self: Sized,
    {
        let (me, n) = (self.rank(), self.size());
        check_root(root, n)?;
        if me != root {
            self.send_pod(root, TAG_GATHER, data)?;
            return Ok(None);
        }
        let mut all = Vec::with_capacity(n);
        for r in 0..n {
            all.push(if r == root {
                data.to_vec()
            } else {
                self.recv_pod::<T>(r, TAG_GATHER, Wait::Forever)?.data
            });
        }
        Ok(Some(all))
    }
}

fn check_root(root: usize, size: usize) -> Result<(), TransportError> {
    if root < size {
        Ok(())
    } else {
        Err(TransportError::InvalidRoot { root, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions() {
        assert_eq!(i32::combine(ReduceOp::Max, -3, 2), Some(2));
        assert_eq!(
            u8::combine(ReduceOp::Sum, 250, 10),
            Some(4),
            "wraps like MPI's C"
        );
        assert_eq!(u16::combine(ReduceOp::BitXor, 0b1100, 0b1010), Some(0b0110));
        assert_eq!(f64::combine(ReduceOp::Prod, 1.5, 2.0), Some(3.0));
        assert_eq!(f32::combine(ReduceOp::BitAnd, 1.0, 2.0), None);
        let mut acc = [1.0f64, 2.0];
        assert!(combine_into(&mut acc, &[1.0, 1.0], ReduceOp::BitOr).is_err());
    }

    #[test]
    fn typed_casts() {
        assert_eq!(cast_vec::<u32>(&[1, 0, 0, 0, 2, 0, 0, 0]).unwrap(), [1, 2]);
        assert!(matches!(
            cast_vec::<u32>(&[1, 2, 3]),
            Err(TransportError::TypeMismatch { len: 3, elem: 4 })
        ));
        assert!(cast_vec::<u64>(&[]).unwrap().is_empty());
    }

    #[test]
    fn matching() {
        assert!(
            Source::Any.accepts(3) && Source::Rank(3).accepts(3) && !Source::Rank(2).accepts(3)
        );
        assert!(TagMatch::Any.accepts(9) && !TagMatch::Tag(1).accepts(9));
        assert!(
            !TagMatch::Any.accepts(TAG_BARRIER_IN),
            "collective traffic is not 'any tag'"
        );
    }
}
