//! The single-producer/single-consumer byte ring behind every mailbox.
//!
//! Pure algorithm, no system calls: it works on any memory that implements
//! [`RingMemory`] — a shared-memory segment in production, a heap buffer
//! with loom's atomics in the model checks (`tests/loom_ring.rs`).
//!
//! # Format
//!
//! The ring is `capacity` bytes (a power of two) cut into granules of
//! `granularity` bytes (a power of two, at least 16; 64 by default so that a
//! record never shares a cache line with another). A record starts on a
//! granule and is contiguous (never wraps), so a loan is one pointer:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8   | stamp: `position + 1`, stored last with release ordering |
//! | 8..12  | meta: payload length (bits 0..=28) and flags |
//! | 12..16 | tag |
//! | 16..   | payload, padded to the granule |
//!
//! A record that does not fit before the end of the ring is preceded by a
//! *pad* record that covers the rest of it.
//!
//! The consumer polls the stamp of the record at its head — the record's
//! own cache line, not a separate index — so a small message costs one cache
//! line transfer. Stamps cannot be confused with payload: before it
//! publishes a record, the producer zeroes the stamp word where the NEXT
//! record will start (one store, whatever the record's size). So the word
//! the consumer polls at its head holds 0, an old stamp of a smaller
//! position, or the right stamp — never stale payload. (When the ring is
//! exactly full that word is the header of the consumer's own head record,
//! an old stamp, and is left alone.) The consumer writes nothing into the
//! records: it publishes only its head, for flow control, which the producer
//! reads only when its cached copy says the ring is full.
//!
//! # Trust
//!
//! The other side may be buggy or hostile. Every length, flag and index read
//! from the ring is validated against the geometry; a violation is
//! [`RingError::Corrupt`], never an out-of-bounds access or a panic.

use std::sync::atomic::Ordering;

/// Bytes of the record header.
pub const RECORD_HEADER: usize = 16;

/// Meta flag: a pad record; the rest of the ring is skipped.
pub const FLAG_PAD: u32 = 1 << 31;
/// Meta flag: another record of the same message follows.
pub const FLAG_MORE: u32 = 1 << 30;
/// Meta flag: this record continues a message begun in an earlier record.
pub const FLAG_CONT: u32 = 1 << 29;
/// Meta flag: the message being streamed is abandoned (its sender gave up
/// at a deadline); the receiver discards what it assembled. Carries no
/// payload and no other flag.
pub const FLAG_ABORT: u32 = 1 << 28;
/// Meta flag: the record's payload is a descriptor of data in the sender's
/// pool, not the data itself.
pub const FLAG_POOL: u32 = 1 << 27;
/// Mask of the payload length in `meta`.
pub const LEN_MASK: u32 = (1 << 27) - 1;
/// The framing flags a producer may set on a record.
pub const FRAME_FLAGS: u32 = FLAG_MORE | FLAG_CONT | FLAG_ABORT | FLAG_POOL;

/// Largest position (bytes through the ring since creation) accepted from
/// shared memory: 2^62 bytes is centuries of traffic, and the bound keeps
/// every position computation far from overflow.
pub const MAX_POSITION: u64 = 1 << 62;

/// A 64-bit atomic word: `std`'s in shared memory, loom's in the models.
pub trait RingWord {
    /// Atomic load.
    fn load(&self, order: Ordering) -> u64;
    /// Atomic store.
    fn store(&self, value: u64, order: Ordering);
}

impl RingWord for std::sync::atomic::AtomicU64 {
    #[inline]
    fn load(&self, order: Ordering) -> u64 {
        std::sync::atomic::AtomicU64::load(self, order)
    }
    #[inline]
    fn store(&self, value: u64, order: Ordering) {
        std::sync::atomic::AtomicU64::store(self, value, order)
    }
}

/// The memory a ring lives in.
///
/// # Safety
///
/// Implementations promise that `bytes()` points to `geometry().capacity`
/// bytes valid for reads and writes for the lifetime of `self`, and that
/// `stamp(o)` for every granule offset `o < capacity` returns the word whose
/// storage is (or stands for) bytes `o..o + 8`.
pub unsafe trait RingMemory {
    /// The atomic word type.
    type Word: RingWord;
    /// Capacity and granularity.
    fn geometry(&self) -> Geometry;
    /// The consumer's published position (bytes consumed, monotonic).
    fn head(&self) -> &Self::Word;
    /// The producer's published position (bytes produced, monotonic).
    fn tail(&self) -> &Self::Word;
    /// The stamp word of the granule at byte `offset` (a multiple of the
    /// granularity, below the capacity).
    fn stamp(&self, offset: usize) -> &Self::Word;
    /// The first byte of the ring.
    fn bytes(&self) -> *mut u8;
}

/// A ring capacity or record granularity that is not allowed: a caller's
/// option, or a value read from a group header (the caller decides which it
/// was and reports it as such).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// Not a power of two from [`Geometry::MIN_CAPACITY`] to
    /// [`Geometry::MAX_CAPACITY`].
    #[error("ring capacity {0} is not a power of two from 1 KiB to 256 MiB")]
    Capacity(usize),
    /// Not a power of two from [`RECORD_HEADER`] to capacity / 16.
    #[error("record granularity {granularity} is not a power of two from 16 bytes to capacity/16 ({capacity}/16)")]
    Granularity {
        /// The granularity given.
        granularity: usize,
        /// The capacity it goes with.
        capacity: usize,
    },
}

/// Something in a ring is impossible: corrupted by another process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// A field read from shared memory is out of range.
    #[error("corrupt ring: {0}")]
    Corrupt(&'static str),
    /// A record of this payload size can never fit the ring.
    #[error("a record of {len} payload bytes exceeds the ring's limit of {max}")]
    TooLarge {
        /// Payload bytes requested.
        len: usize,
        /// The largest payload a record can carry.
        max: usize,
    },
}

/// A ring's capacity and record granularity, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    capacity: usize,
    granularity: usize,
}

impl Geometry {
    /// Smallest capacity accepted.
    pub const MIN_CAPACITY: usize = 1024;
    /// Largest capacity accepted (256 MiB: a record's payload length then
    /// fits the 27 bits of [`LEN_MASK`]).
    pub const MAX_CAPACITY: usize = 1 << 28;

    /// Checks the parameters: both powers of two, granularity at least
    /// [`RECORD_HEADER`] and at most capacity / 16, capacity within
    /// [`MIN_CAPACITY`](Self::MIN_CAPACITY)..=[`MAX_CAPACITY`](Self::MAX_CAPACITY).
    ///
    /// # Errors
    ///
    /// [`GeometryError`] naming the violated rule (the same check serves a
    /// caller's options and a header read from shared memory).
    pub fn new(capacity: usize, granularity: usize) -> Result<Geometry, GeometryError> {
        if !capacity.is_power_of_two()
            || !(Self::MIN_CAPACITY..=Self::MAX_CAPACITY).contains(&capacity)
        {
            return Err(GeometryError::Capacity(capacity));
        }
        if !granularity.is_power_of_two()
            || granularity < RECORD_HEADER
            || granularity > capacity / 16
        {
            return Err(GeometryError::Granularity {
                granularity,
                capacity,
            });
        }
        Ok(Geometry {
            capacity,
            granularity,
        })
    }

    /// Ring bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Record alignment in bytes.
    pub fn granularity(&self) -> usize {
        self.granularity
    }

    /// Largest record (header included): half the ring, so a record always
    /// fits after at most one pad.
    pub fn max_record(&self) -> usize {
        self.capacity / 2
    }

    /// Largest payload one record carries: the limit of a zero-copy loan.
    pub fn max_payload(&self) -> usize {
        self.max_record() - RECORD_HEADER
    }

    /// Where position `pos` falls in the ring (a mask: the capacity is a
    /// power of two; no division on the hot path).
    #[inline]
    pub fn offset_of(&self, pos: u64) -> usize {
        (pos & (self.capacity as u64 - 1)) as usize
    }

    /// Bytes a record with `payload` bytes occupies.
    pub fn record_len(&self, payload: usize) -> usize {
        // Granularity is a power of two: round up with a mask, no division.
        (RECORD_HEADER + payload + self.granularity - 1) & !(self.granularity - 1)
    }
}

/// Space reserved for one record, not yet visible to the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pos: u64,
    offset: usize,
    payload_len: usize,
    record_len: usize,
}

impl Reservation {
    /// Payload bytes reserved.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// The ring position just past the record: once the consumer's head
    /// reaches it, the consumer has released the record.
    pub fn end(&self) -> u64 {
        self.pos + self.record_len as u64
    }
}

/// The producer's private state.
#[derive(Debug, Clone)]
pub struct Producer {
    tail: u64,
    head_cache: u64,
    /// Stamp words of the granules in `[tail, zeroed_to)` are zero and no
    /// record covers them yet (see [`ZERO_AHEAD`]).
    zeroed_to: u64,
}

/// How far ahead of a record the producer clears stamp words, in bytes.
/// The next record's stamp word must read 0 (or an old stamp) before a
/// record is published. Clearing it at every commit touched a line the
/// consumer held (it polled there a lap ago): an invalidation on the
/// critical path of every message (17 ns of a 120 ns ping-pong here).
/// Clearing a run of granules at once pays that once per run.
pub const ZERO_AHEAD: usize = 512;

impl Producer {
    /// Resumes from the published tail, stepping over records that were
    /// published but whose tail update was lost (a producer that died in
    /// between): this makes a restarted producer safe.
    ///
    /// # Errors
    ///
    /// [`RingError::Corrupt`] when the published indices are inconsistent.
    pub fn recover<M: RingMemory>(mem: &M) -> Result<Producer, RingError> {
        let g = mem.geometry();
        let head = mem.head().load(Ordering::Acquire);
        let mut tail = mem.tail().load(Ordering::Acquire);
        if tail > MAX_POSITION
            || tail < head
            || tail - head > g.capacity as u64
            || !tail.is_multiple_of(g.granularity() as u64)
        {
            return Err(RingError::Corrupt("ring indices out of range"));
        }
        loop {
            let offset = g.offset_of(tail);
            if mem.stamp(offset).load(Ordering::Acquire) != tail + 1 {
                break;
            }
            // SAFETY: offset is a granule inside the ring (RingMemory contract);
            // the header is 16 bytes and granules are at least 16.
            let meta = unsafe { read_u32(mem.bytes().add(offset + 8)) };
            let record = validated_record_len(&g, offset, meta)?;
            tail += record as u64;
            if tail - head > g.capacity as u64 {
                return Err(RingError::Corrupt("published records exceed the ring"));
            }
        }
        mem.tail().store(tail, Ordering::Release);
        Ok(Producer {
            tail,
            head_cache: head,
            zeroed_to: tail,
        })
    }

    /// Reserves a contiguous record for `payload_len` bytes, writing a pad
    /// first when the ring's end is too close. `Ok(None)` when the consumer
    /// has not freed enough space yet.
    ///
    /// # Errors
    ///
    /// [`RingError::TooLarge`] when the payload exceeds
    /// [`Geometry::max_payload`]; [`RingError::Corrupt`] when the consumer's
    /// published head is impossible.
    #[inline]
    pub fn try_reserve<M: RingMemory>(
        &mut self,
        mem: &M,
        payload_len: usize,
    ) -> Result<Option<Reservation>, RingError> {
        let g = mem.geometry();
        if payload_len > g.max_payload() {
            return Err(RingError::TooLarge {
                len: payload_len,
                max: g.max_payload(),
            });
        }
        let record_len = g.record_len(payload_len);
        let offset = g.offset_of(self.tail);
        let to_end = g.capacity - offset;
        let pad = if record_len > to_end { to_end } else { 0 };
        let need = (pad + record_len) as u64;
        if self.tail + need - self.head_cache > g.capacity as u64 {
            let head = mem.head().load(Ordering::Acquire);
            if head > self.tail || self.tail - head > g.capacity as u64 || head < self.head_cache {
                return Err(RingError::Corrupt("consumer position out of range"));
            }
            self.head_cache = head;
            if self.tail + need - head > g.capacity as u64 {
                return Ok(None);
            }
        }
        if pad > 0 {
            // The record follows at the ring's start, which is free (the
            // space check above covered pad + record): clear its stamp word
            // before the pad makes the consumer look there.
            mem.stamp(0).store(0, Ordering::Relaxed);
            // SAFETY: offset is a granule inside the ring with 16 header
            // bytes; the space is free (checked against the head above).
            unsafe { write_u32(mem.bytes().add(offset + 8), FLAG_PAD) };
            mem.stamp(offset).store(self.tail + 1, Ordering::Release);
            self.tail += pad as u64;
        }
        Ok(Some(Reservation {
            pos: self.tail,
            offset: g.offset_of(self.tail),
            payload_len,
            record_len,
        }))
    }

    /// Where the reserved payload goes (`payload_len` bytes, contiguous).
    #[inline]
    pub fn payload_ptr<M: RingMemory>(mem: &M, r: &Reservation) -> *mut u8 {
        // SAFETY: offset + record_len <= capacity (a record never wraps), and
        // RECORD_HEADER + payload_len <= record_len.
        unsafe { mem.bytes().add(r.offset + RECORD_HEADER) }
    }

    /// Publishes the record with `flags` (of [`FRAME_FLAGS`])
    /// and `tag`: clears the next record's stamp word, writes the header
    /// fields, then the stamp (release), then the tail.
    #[inline]
    pub fn commit<M: RingMemory>(&mut self, mem: &M, r: Reservation, flags: u32, tag: u32) {
        debug_assert_eq!(r.pos, self.tail, "reservations commit in order");
        let next = r.pos + r.record_len as u64;
        if next >= self.zeroed_to {
            self.zero_ahead(mem, next);
        }
        let meta = (r.payload_len as u32 & LEN_MASK) | (flags & FRAME_FLAGS);
        // SAFETY: the header lies inside the reserved record.
        unsafe {
            write_u32(mem.bytes().add(r.offset + 8), meta);
            write_u32(mem.bytes().add(r.offset + 12), tag);
        }
        mem.stamp(r.offset).store(r.pos + 1, Ordering::Release);
        self.tail = r.pos + r.record_len as u64;
        mem.tail().store(self.tail, Ordering::Release);
    }

    /// Clears the stamp words of the free granules from `from` on, up to
    /// [`ZERO_AHEAD`] bytes (a quarter of the ring at most), never reaching
    /// the consumer's unreleased records (`head + capacity`: when the ring
    /// is exactly full the word at `from` is the head record's own stamp,
    /// an old one, and stays). Records are written in position order, so a
    /// cleared granule stays clear until a record covers it.
    #[cold]
    fn zero_ahead<M: RingMemory>(&mut self, mem: &M, from: u64) {
        let g = mem.geometry();
        let ahead = ZERO_AHEAD.min(g.capacity / 4).max(g.granularity) as u64;
        let end = (from + ahead).min(self.head_cache + g.capacity as u64);
        let mut pos = from;
        while pos < end {
            mem.stamp(g.offset_of(pos)).store(0, Ordering::Relaxed);
            pos += g.granularity as u64;
        }
        self.zeroed_to = self.zeroed_to.max(pos);
    }

    /// Bytes produced so far.
    pub fn position(&self) -> u64 {
        self.tail
    }
}

/// A published record at the consumer's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef {
    offset: usize,
    record_len: usize,
    len: usize,
    flags: u32,
    tag: u32,
}

impl RecordRef {
    /// Payload bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The [`FRAME_FLAGS`] bits (the framing layer checks their
    /// combination).
    pub fn flags(&self) -> u32 {
        self.flags
    }
    /// The tag word.
    pub fn tag(&self) -> u32 {
        self.tag
    }
}

/// The consumer's private state.
#[derive(Debug, Clone)]
pub struct Consumer {
    head: u64,
}

impl Consumer {
    /// Resumes from the published head.
    ///
    /// # Errors
    ///
    /// [`RingError::Corrupt`] when the head is not on a granule boundary
    /// (records start only there).
    pub fn recover<M: RingMemory>(mem: &M) -> Result<Consumer, RingError> {
        let head = mem.head().load(Ordering::Acquire);
        if head > MAX_POSITION {
            return Err(RingError::Corrupt("consumer position out of range"));
        }
        if !head.is_multiple_of(mem.geometry().granularity() as u64) {
            return Err(RingError::Corrupt(
                "consumer position not on a record boundary",
            ));
        }
        Ok(Consumer { head })
    }

    /// The record at the head, if one is published; pads are consumed on
    /// the way. The record stays in the ring until [`release`](Self::release).
    ///
    /// # Errors
    ///
    /// [`RingError::Corrupt`] when the record's header is impossible.
    #[inline]
    pub fn peek<M: RingMemory>(&mut self, mem: &M) -> Result<Option<RecordRef>, RingError> {
        let g = mem.geometry();
        loop {
            let offset = g.offset_of(self.head);
            if mem.stamp(offset).load(Ordering::Acquire) != self.head + 1 {
                return Ok(None);
            }
            // SAFETY: offset is a granule inside the ring; the header's 16
            // bytes fit in it.
            let (meta, tag) = unsafe {
                (
                    read_u32(mem.bytes().add(offset + 8)),
                    read_u32(mem.bytes().add(offset + 12)),
                )
            };
            let record_len = validated_record_len(&g, offset, meta)?;
            let rec = RecordRef {
                offset,
                record_len,
                len: (meta & LEN_MASK) as usize,
                flags: meta & FRAME_FLAGS,
                tag,
            };
            if meta & FLAG_PAD != 0 {
                self.release(mem, rec);
                continue;
            }
            return Ok(Some(rec));
        }
    }

    /// The payload of a peeked record (`rec.len()` bytes).
    #[inline]
    pub fn payload_ptr<M: RingMemory>(mem: &M, rec: &RecordRef) -> *const u8 {
        // SAFETY: validated: offset + record_len <= capacity and the payload
        // lies inside the record.
        unsafe { mem.bytes().add(rec.offset + RECORD_HEADER) }
    }

    /// Frees a peeked record: publishes the new head (release: the
    /// producer may overwrite the record once it sees it).
    #[inline]
    pub fn release<M: RingMemory>(&mut self, mem: &M, rec: RecordRef) {
        self.head += rec.record_len as u64;
        mem.head().store(self.head, Ordering::Release);
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.head
    }
}

/// The length of the record at `offset` whose meta word is `meta`, checked
/// against the geometry.
fn validated_record_len(g: &Geometry, offset: usize, meta: u32) -> Result<usize, RingError> {
    // Every bit of `meta` is a flag or length bit: no unknown bits exist.
    if meta & FLAG_PAD != 0 {
        if meta != FLAG_PAD {
            return Err(RingError::Corrupt("pad record with length or flags"));
        }
        return Ok(g.capacity - offset);
    }
    let len = (meta & LEN_MASK) as usize;
    if len > g.max_payload() {
        return Err(RingError::Corrupt("record length exceeds the ring's limit"));
    }
    let record_len = g.record_len(len);
    if offset + record_len > g.capacity {
        return Err(RingError::Corrupt("record runs past the end of the ring"));
    }
    Ok(record_len)
}

/// # Safety
///
/// `p` must be valid for a 4-byte read.
unsafe fn read_u32(p: *const u8) -> u32 {
    // SAFETY: caller's contract; unaligned read allowed, volatile because
    // another process may write the memory.
    unsafe { p.cast::<u32>().read_volatile() }
}

/// # Safety
///
/// `p` must be valid for a 4-byte write.
unsafe fn write_u32(p: *mut u8, v: u32) {
    // SAFETY: caller's contract.
    unsafe { p.cast::<u32>().write_volatile(v) }
}

/// A ring on the heap with `std` atomics: for threads of one process, unit
/// tests and property tests.
pub struct HeapRing {
    geometry: Geometry,
    head: std::sync::atomic::AtomicU64,
    tail: std::sync::atomic::AtomicU64,
    words: Box<[std::sync::atomic::AtomicU64]>,
}

impl HeapRing {
    /// A zeroed ring.
    pub fn new(geometry: Geometry) -> HeapRing {
        HeapRing {
            geometry,
            head: 0.into(),
            tail: 0.into(),
            words: (0..geometry.capacity / 8).map(|_| 0.into()).collect(),
        }
    }
}

// SAFETY: `words` is `capacity` bytes of 8-byte words; `bytes()` points at
// them and `stamp(o)` is the word at byte o, so both views are the same
// storage. Non-stamp bytes are accessed through raw pointers only.
unsafe impl RingMemory for HeapRing {
    type Word = std::sync::atomic::AtomicU64;
    fn geometry(&self) -> Geometry {
        self.geometry
    }
    fn head(&self) -> &Self::Word {
        &self.head
    }
    fn tail(&self) -> &Self::Word {
        &self.tail
    }
    fn stamp(&self, offset: usize) -> &Self::Word {
        &self.words[offset / 8]
    }
    fn bytes(&self) -> *mut u8 {
        self.words.as_ptr().cast::<u8>().cast_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring(cap: usize) -> HeapRing {
        HeapRing::new(Geometry::new(cap, 64).unwrap())
    }

    fn push(p: &mut Producer, m: &HeapRing, data: &[u8], tag: u32) -> bool {
        match p.try_reserve(m, data.len()).unwrap() {
            None => false,
            Some(r) => {
                // SAFETY: the reservation has data.len() payload bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        data.as_ptr(),
                        Producer::payload_ptr(m, &r),
                        data.len(),
                    )
                };
                p.commit(m, r, 0, tag);
                true
            }
        }
    }

    fn pop(c: &mut Consumer, m: &HeapRing) -> Option<(Vec<u8>, u32)> {
        let rec = c.peek(m).unwrap()?;
        let mut v = vec![0; rec.len()];
        // SAFETY: the record has rec.len() payload bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(Consumer::payload_ptr(m, &rec), v.as_mut_ptr(), v.len())
        };
        c.release(m, rec);
        Some((v, rec.tag()))
    }

    #[test]
    fn geometry_rules() {
        assert!(Geometry::new(1 << 16, 64).is_ok());
        assert!(Geometry::new(1000, 64).is_err());
        assert!(Geometry::new(1 << 16, 8).is_err());
        assert!(Geometry::new(1 << 16, 1 << 13).is_err());
        let g = Geometry::new(1 << 18, 64).unwrap();
        assert_eq!(g.max_payload(), (1 << 17) - 16);
        assert_eq!(g.record_len(0), 64);
        assert_eq!(g.record_len(48), 64);
        assert_eq!(g.record_len(49), 128);
    }

    #[test]
    fn push_pop_full_empty_and_wrap() {
        let m = ring(1024);
        let mut p = Producer::recover(&m).unwrap();
        let mut c = Consumer::recover(&m).unwrap();
        assert!(pop(&mut c, &m).is_none());
        let mut n = 0u32;
        while push(&mut p, &m, &n.to_le_bytes(), n) {
            n += 1;
        }
        assert_eq!(n, 16, "1024 / 64-byte records");
        for i in 0..n {
            assert_eq!(pop(&mut c, &m), Some((i.to_le_bytes().to_vec(), i)));
        }
        // Many laps with sizes that force pads.
        for i in 0..10_000u32 {
            let data = vec![i as u8; (i as usize * 37) % 400];
            assert!(push(&mut p, &m, &data, i));
            assert_eq!(pop(&mut c, &m), Some((data, i)));
        }
        assert!(push(&mut p, &m, &[], 1) && pop(&mut c, &m) == Some((vec![], 1)));
        assert!(matches!(
            p.try_reserve(&m, 512),
            Err(RingError::TooLarge { .. })
        ));
    }

    #[test]
    fn payload_that_looks_like_a_stamp_is_not_a_record() {
        let m = ring(1024);
        let mut p = Producer::recover(&m).unwrap();
        let mut c = Consumer::recover(&m).unwrap();
        // A 200-byte payload full of words equal to future stamps.
        let words: Vec<u8> = (0..25u64)
            .flat_map(|k| (64 * k + 1).to_le_bytes())
            .collect();
        for _ in 0..50 {
            assert!(push(&mut p, &m, &words, 0));
            assert_eq!(pop(&mut c, &m).unwrap().0, words);
            assert!(pop(&mut c, &m).is_none(), "stale payload read as a record");
        }
    }

    #[test]
    fn corrupt_headers_are_errors() {
        let m = ring(1024);
        let mut p = Producer::recover(&m).unwrap();
        let mut c = Consumer::recover(&m).unwrap();
        assert!(push(&mut p, &m, b"hello", 1));
        // SAFETY: offset 8 is inside the ring's first granule.
        unsafe { write_u32(m.bytes().add(8), 5000) };
        assert_eq!(
            c.peek(&m),
            Err(RingError::Corrupt("record length exceeds the ring's limit"))
        );
        // SAFETY: as above.
        unsafe { write_u32(m.bytes().add(8), FLAG_PAD | 3) };
        assert!(c.peek(&m).is_err());
        m.head.store(9999, Ordering::Release);
        assert!(Consumer::recover(&m).is_err(), "head off a record boundary");
        let mut p2 = Producer {
            tail: 64,
            head_cache: 0,
            zeroed_to: 64,
        };
        assert!(p2.try_reserve(&m, 2000).is_err());
        assert!(Producer::recover(&m).is_err());
    }

    #[test]
    fn positions_near_the_end_of_u64_are_corrupt_not_an_overflow() {
        let m = ring(1024);
        for pos in [u64::MAX - 63, MAX_POSITION + 64, !127] {
            m.head.store(pos, Ordering::Release);
            m.tail.store(pos, Ordering::Release);
            assert!(Consumer::recover(&m).is_err(), "head {pos:#x}");
            assert!(Producer::recover(&m).is_err(), "tail {pos:#x}");
        }
    }

    #[test]
    fn recover_steps_over_a_record_whose_tail_update_was_lost() {
        let m = ring(1024);
        let mut p = Producer::recover(&m).unwrap();
        assert!(push(&mut p, &m, b"one", 1));
        assert!(push(&mut p, &m, b"two", 2));
        m.tail.store(64, Ordering::Release); // "died" before storing the second tail
        let mut p2 = Producer::recover(&m).unwrap();
        assert_eq!(p2.position(), 128);
        assert!(push(&mut p2, &m, b"three", 3));
        let mut c = Consumer::recover(&m).unwrap();
        let got: Vec<u32> = std::iter::from_fn(|| pop(&mut c, &m).map(|(_, t)| t)).collect();
        assert_eq!(got, [1, 2, 3]);
    }

    proptest! {
        /// Arbitrary bytes written over the ring never make the consumer
        /// panic or read out of bounds: it returns records or Corrupt.
        #[test]
        fn consumer_survives_arbitrary_ring_contents(
            bytes in proptest::collection::vec(any::<u8>(), 1024),
            head in 0u64..4096,
        ) {
            let m = ring(1024);
            // SAFETY: the ring has exactly 1024 bytes.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), m.bytes(), 1024) };
            // Make the record at the head look published half of the time.
            let head = head & !63;
            if head % 128 == 0 {
                m.stamp(head as usize % 1024).store(head + 1, Ordering::Relaxed);
            }
            let mut c = Consumer { head };
            for _ in 0..64 {
                match c.peek(&m) {
                    Ok(Some(rec)) => {
                        prop_assert!(rec.offset + RECORD_HEADER + rec.len() <= 1024);
                        c.release(&m, rec);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }

        /// Random interleavings of pushes and pops deliver every message, in
        /// order, intact.
        #[test]
        fn fifo_under_random_sizes(sizes in proptest::collection::vec(0usize..500, 1..200)) {
            let m = ring(2048);
            let mut p = Producer::recover(&m).unwrap();
            let mut c = Consumer::recover(&m).unwrap();
            let mut expected = std::collections::VecDeque::new();
            for (i, &s) in sizes.iter().enumerate() {
                let data = vec![i as u8; s];
                while !push(&mut p, &m, &data, i as u32) {
                    let got = pop(&mut c, &m).expect("full ring has a record");
                    prop_assert_eq!(Some(got), expected.pop_front());
                }
                expected.push_back((data, i as u32));
            }
            while let Some(got) = pop(&mut c, &m) {
                prop_assert_eq!(Some(got), expected.pop_front());
            }
            prop_assert!(expected.is_empty());
        }
    }
}
