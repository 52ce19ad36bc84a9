//! How messages map onto ring records, and how a receiver reassembles them.
//!
//! Pure: no system calls and no shared-memory pointers of its own — a
//! record's payload is read through a [`Payload`] the caller supplies — so
//! unit tests, property tests and the fuzzer (`fuzz/fuzz_targets/framing.rs`)
//! run exactly the code that runs in production.
//!
//! # Records of one message
//!
//! | record | flags | payload |
//! |---|---|---|
//! | a whole message | none | the message |
//! | first of a streamed message | `MORE` | total length (8 bytes, native order), then data |
//! | a middle chunk | `CONT \| MORE` | data |
//! | the last chunk | `CONT` | data |
//! | abort | `ABORT` | nothing: the message being streamed is abandoned |
//!
//! Every record of a message carries its tag. The receiver trusts nothing:
//! a total above [`MAX_MESSAGE_LEN`], a chunk that overruns the announced
//! total, a stream that ends short, a tag that changes mid-message or an
//! impossible flag combination is [`FramingError::Corrupt`] — checked
//! before any byte is copied. Memory for a streamed message grows as its
//! chunks arrive; nothing is allocated from the announced total.

use super::ring::{FLAG_ABORT, FLAG_CONT, FLAG_MORE};
use super::MAX_MESSAGE_LEN;

/// Bytes of the total-length field that opens a streamed message.
pub const TOTAL_FIELD: usize = 8;

/// What one record is, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole message.
    Whole,
    /// The first record of a streamed message.
    First,
    /// A continuation; `last` when no record of the message follows.
    Cont {
        /// No `MORE` flag: the message ends with this record.
        last: bool,
    },
    /// The sender abandoned the message it was streaming.
    Abort,
}

/// A record that breaks the framing rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// Impossible header or contents: written by a buggy or hostile process.
    #[error("{0}")]
    Corrupt(&'static str),
    /// A new message began while one was being assembled: its sender died
    /// mid-message (and a new incarnation sends afresh). The partial message
    /// was discarded; the record that began the new one is left for the
    /// next call.
    #[error("a new message began before the streamed one ended")]
    Interrupted,
}

/// Reads a record header's flags and tag word; `len` is the length of the
/// message bytes the record carries (for a pool record, the descriptor's).
///
/// # Errors
///
/// [`FramingError::Corrupt`] for a tag above `i32::MAX`, an abort record
/// with a payload or other flags, or a first record too short for its
/// total field.
pub fn classify(flags: u32, tag_word: u32, len: usize) -> Result<(Frame, i32), FramingError> {
    let tag = i32::try_from(tag_word).map_err(|_| FramingError::Corrupt("negative tag"))?;
    let frame = if flags & FLAG_ABORT != 0 {
        if flags != FLAG_ABORT || len != 0 {
            return Err(FramingError::Corrupt(
                "abort record with a payload or other flags",
            ));
        }
        Frame::Abort
    } else {
        match (flags & FLAG_CONT != 0, flags & FLAG_MORE != 0) {
            (false, false) => Frame::Whole,
            (false, true) if len < TOTAL_FIELD => {
                return Err(FramingError::Corrupt(
                    "first chunk shorter than its length field",
                ))
            }
            (false, true) => Frame::First,
            (true, more) => Frame::Cont { last: !more },
        }
    };
    Ok((frame, tag))
}

/// Where a pool record's bytes are: a fragment of the sender's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// The fragment's index in the sender's pool.
    pub fragment: u32,
    /// Bytes of the message in it (from its start).
    pub len: u32,
}

impl Descriptor {
    /// Bytes of an encoded descriptor.
    pub const LEN: usize = 8;

    /// The lane record's payload for this descriptor.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0; Self::LEN];
        b[..4].copy_from_slice(&self.fragment.to_ne_bytes());
        b[4..].copy_from_slice(&self.len.to_ne_bytes());
        b
    }

    /// Decodes a lane record's payload, checked against the sender's pool
    /// (`fragments` fragments of `fragment` bytes).
    ///
    /// # Errors
    ///
    /// [`FramingError::Corrupt`] for a payload of the wrong length, a
    /// fragment outside the pool or a length beyond the fragment.
    pub fn decode(
        payload: &(impl Payload + ?Sized),
        fragments: usize,
        fragment: usize,
    ) -> Result<Descriptor, FramingError> {
        if payload.len() != Self::LEN {
            return Err(FramingError::Corrupt("pool descriptor of the wrong length"));
        }
        let mut b = [0; Self::LEN];
        payload.copy_to(0, &mut b);
        let d = Descriptor {
            fragment: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            len: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        };
        if d.fragment as usize >= fragments {
            return Err(FramingError::Corrupt("pool descriptor names no fragment"));
        }
        if d.len as usize > fragment {
            return Err(FramingError::Corrupt(
                "pool descriptor longer than a fragment",
            ));
        }
        Ok(d)
    }
}

/// The bytes of one record's payload, wherever they are.
pub trait Payload {
    /// Payload bytes.
    fn len(&self) -> usize;
    /// True for an empty payload.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies `dst.len()` bytes starting at byte `from` into `dst`.
    /// Callers keep `from + dst.len() <= self.len()`; implementations may
    /// panic otherwise (the framing code never asks for more).
    fn copy_to(&self, from: usize, dst: &mut [u8]);
}

impl Payload for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn copy_to(&self, from: usize, dst: &mut [u8]) {
        dst.copy_from_slice(&self[from..from + dst.len()]);
    }
}

/// A message that [`Assembler::accept`] completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completed {
    /// Assembled in an owned buffer.
    Owned {
        /// Its tag.
        tag: i32,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// Assembled in the caller's sink.
    Direct {
        /// Its tag.
        tag: i32,
        /// Bytes written to the sink.
        len: usize,
    },
}

#[derive(Debug)]
struct Partial {
    tag: i32,
    total: usize,
    data: Vec<u8>,
    /// Set while the message streams straight into the caller's sink:
    /// how many bytes it holds already.
    direct: Option<usize>,
}

impl Partial {
    fn received(&self) -> usize {
        self.direct.unwrap_or(self.data.len())
    }
}

/// The receiver's side of one ring: reassembles streamed messages.
#[derive(Debug, Default)]
pub struct Assembler {
    partial: Option<Partial>,
}

impl Assembler {
    /// True while a streamed message is half-assembled.
    pub fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// True while a message streams into the caller's sink.
    pub fn is_direct(&self) -> bool {
        self.partial.as_ref().is_some_and(|p| p.direct.is_some())
    }

    /// Forgets a half-assembled message (its sender is gone).
    pub fn reset(&mut self) {
        self.partial = None;
    }

    /// The sink of a message streaming into it goes away: what arrived so
    /// far (`sink[..received]`) moves to an owned buffer, and later chunks
    /// go there too.
    pub fn detach_sink(&mut self, sink: &[u8]) {
        if let Some(p) = self.partial.as_mut() {
            if let Some(got) = p.direct.take() {
                p.data = sink.get(..got).map_or_else(Vec::new, <[u8]>::to_vec);
            }
        }
    }

    /// Takes one record (`frame` and `tag` from [`classify`]). `sink`, when
    /// given, receives a streamed message that fits it instead of an owned
    /// buffer (the caller passes it only for a tag it accepts; a message
    /// that began in the sink needs it for every later chunk). Returns the
    /// message this record completes, if any.
    ///
    /// # Errors
    ///
    /// [`FramingError::Corrupt`] for a record that breaks the rules (the
    /// half-assembled message is dropped); [`FramingError::Interrupted`]
    /// when `frame` begins a new message while one is half-assembled: the
    /// caller leaves that record in its ring for the next call.
    pub fn accept<P: Payload + ?Sized>(
        &mut self,
        frame: Frame,
        tag: i32,
        payload: &P,
        sink: Option<&mut [u8]>,
    ) -> Result<Option<Completed>, FramingError> {
        let corrupt = |what| Err(FramingError::Corrupt(what));
        match (self.partial.take(), frame) {
            (None, Frame::Whole) => {
                let mut data = vec![0; payload.len()];
                payload.copy_to(0, &mut data);
                Ok(Some(Completed::Owned { tag, data }))
            }
            (None, Frame::First) => {
                let mut total = [0u8; TOTAL_FIELD];
                payload.copy_to(0, &mut total);
                let total = u64::from_ne_bytes(total);
                let first = payload.len() - TOTAL_FIELD;
                if total > MAX_MESSAGE_LEN as u64 || total < first as u64 {
                    return corrupt("streamed message length out of range");
                }
                let total = total as usize;
                let (data, direct) = match sink {
                    Some(buf) if total <= buf.len() => {
                        payload.copy_to(TOTAL_FIELD, &mut buf[..first]);
                        (Vec::new(), Some(first))
                    }
                    _ => {
                        let mut data = vec![0; first];
                        payload.copy_to(TOTAL_FIELD, &mut data);
                        (data, None)
                    }
                };
                self.partial = Some(Partial {
                    tag,
                    total,
                    data,
                    direct,
                });
                Ok(None)
            }
            (Some(mut p), Frame::Cont { last }) => {
                let got = p.received();
                let n = payload.len();
                if tag != p.tag || n > p.total - got {
                    return corrupt("continuation does not fit its message");
                }
                match (p.direct, sink) {
                    (Some(_), Some(buf)) => {
                        let Some(dst) = buf.get_mut(got..got + n) else {
                            return corrupt("a message streams into a smaller receive buffer");
                        };
                        payload.copy_to(0, dst);
                        p.direct = Some(got + n);
                    }
                    (Some(_), None) => {
                        return corrupt("a message streams into a receive buffer that is gone")
                    }
                    (None, _) => {
                        let start = p.data.len();
                        // Grows with what arrived, never with what was announced.
                        p.data.resize(start + n, 0);
                        payload.copy_to(0, &mut p.data[start..]);
                    }
                }
                let got = got + n;
                if !last {
                    self.partial = Some(p);
                    Ok(None)
                } else if got != p.total {
                    corrupt("streamed message ended short")
                } else if p.direct.is_some() {
                    Ok(Some(Completed::Direct { tag, len: got }))
                } else {
                    Ok(Some(Completed::Owned { tag, data: p.data }))
                }
            }
            // The rest of a message our predecessor (before a rejoin) had
            // begun to consume, or the abort of a message we never saw
            // begin: not ours to deliver.
            (None, Frame::Cont { .. } | Frame::Abort) => Ok(None),
            // The sender gave up on the message: drop what arrived.
            (Some(_), Frame::Abort) => Ok(None),
            // A new message while one was being streamed.
            (Some(_), Frame::Whole | Frame::First) => Err(FramingError::Interrupted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn first(total: u64, data: &[u8]) -> Vec<u8> {
        let mut v = total.to_ne_bytes().to_vec();
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn classify_rules() {
        assert_eq!(classify(0, 3, 10), Ok((Frame::Whole, 3)));
        assert_eq!(classify(FLAG_MORE, 3, 8), Ok((Frame::First, 3)));
        assert!(classify(FLAG_MORE, 3, 7).is_err());
        assert_eq!(
            classify(FLAG_CONT | FLAG_MORE, 3, 0),
            Ok((Frame::Cont { last: false }, 3))
        );
        assert_eq!(
            classify(FLAG_CONT, 3, 5),
            Ok((Frame::Cont { last: true }, 3))
        );
        assert_eq!(classify(FLAG_ABORT, 3, 0), Ok((Frame::Abort, 3)));
        assert!(classify(FLAG_ABORT, 3, 1).is_err());
        assert!(classify(FLAG_ABORT | FLAG_CONT, 3, 0).is_err());
        assert!(classify(0, u32::MAX, 0).is_err());
    }

    #[test]
    fn descriptors_are_checked_against_the_pool() {
        let d = Descriptor {
            fragment: 3,
            len: 100,
        };
        let bytes = d.encode();
        assert_eq!(Descriptor::decode(&bytes[..], 4, 128), Ok(d));
        assert!(
            Descriptor::decode(&bytes[..], 3, 128).is_err(),
            "no fragment 3"
        );
        assert!(
            Descriptor::decode(&bytes[..], 4, 64).is_err(),
            "longer than a fragment"
        );
        assert!(Descriptor::decode(&bytes[..7], 4, 128).is_err());
    }

    #[test]
    fn stream_reassembles_owned_and_direct() {
        let mut a = Assembler::default();
        let msg: Vec<u8> = (0..30).collect();
        let rec1 = first(30, &msg[..10]);
        assert_eq!(a.accept(Frame::First, 1, &rec1[..], None), Ok(None));
        assert_eq!(
            a.accept(Frame::Cont { last: false }, 1, &msg[10..20], None),
            Ok(None)
        );
        assert_eq!(
            a.accept(Frame::Cont { last: true }, 1, &msg[20..], None),
            Ok(Some(Completed::Owned {
                tag: 1,
                data: msg.clone()
            }))
        );
        let mut buf = [0u8; 40];
        assert_eq!(
            a.accept(Frame::First, 2, &rec1[..], Some(&mut buf)),
            Ok(None)
        );
        assert!(a.is_direct());
        a.accept(Frame::Cont { last: false }, 2, &msg[10..20], Some(&mut buf))
            .unwrap();
        assert_eq!(
            a.accept(Frame::Cont { last: true }, 2, &msg[20..], Some(&mut buf)),
            Ok(Some(Completed::Direct { tag: 2, len: 30 }))
        );
        assert_eq!(&buf[..30], &msg[..]);
    }

    #[test]
    fn abort_discards_and_the_next_message_is_whole() {
        let mut a = Assembler::default();
        a.accept(Frame::First, 1, &first(100, &[1; 10])[..], None)
            .unwrap();
        assert_eq!(a.accept(Frame::Abort, 1, &[][..], None), Ok(None));
        assert!(!a.in_progress());
        assert_eq!(
            a.accept(Frame::Whole, 4, &b"next"[..], None),
            Ok(Some(Completed::Owned {
                tag: 4,
                data: b"next".to_vec()
            }))
        );
    }

    #[test]
    fn a_moved_sink_keeps_what_arrived() {
        let mut a = Assembler::default();
        let mut buf = [0u8; 16];
        a.accept(Frame::First, 1, &first(12, b"abcd")[..], Some(&mut buf))
            .unwrap();
        a.detach_sink(&buf);
        assert!(a.in_progress() && !a.is_direct());
        assert_eq!(
            a.accept(Frame::Cont { last: true }, 1, &b"efghijkl"[..], None),
            Ok(Some(Completed::Owned {
                tag: 1,
                data: b"abcdefghijkl".to_vec()
            }))
        );
    }

    #[test]
    fn announced_totals_allocate_nothing_up_front() {
        let mut a = Assembler::default();
        // 4 GiB announced, 8 bytes sent: nothing near 4 GiB is allocated.
        a.accept(
            Frame::First,
            1,
            &first(MAX_MESSAGE_LEN as u64, b"12345678")[..],
            None,
        )
        .unwrap();
        assert!(a.partial.as_ref().unwrap().data.capacity() < 1 << 20);
        assert!(a
            .accept(
                Frame::First,
                1,
                &first(MAX_MESSAGE_LEN as u64 + 1, b"")[..],
                None
            )
            .is_err());
    }

    #[test]
    fn framing_violations_are_corrupt() {
        let mut a = Assembler::default();
        a.accept(Frame::First, 1, &first(10, b"12345")[..], None)
            .unwrap();
        assert!(matches!(
            a.accept(Frame::Cont { last: true }, 2, &b"67890"[..], None),
            Err(FramingError::Corrupt(_))
        ));
        a.accept(Frame::First, 1, &first(10, b"12345")[..], None)
            .unwrap();
        assert!(a
            .accept(Frame::Cont { last: true }, 1, &b"6789"[..], None)
            .is_err());
        a.accept(Frame::First, 1, &first(10, b"12345")[..], None)
            .unwrap();
        assert!(a
            .accept(Frame::Cont { last: false }, 1, &b"678901"[..], None)
            .is_err());
        assert!(a
            .accept(Frame::First, 1, &first(3, b"12345")[..], None)
            .is_err());
        a.accept(Frame::First, 1, &first(10, b"12345")[..], None)
            .unwrap();
        assert_eq!(
            a.accept(Frame::Whole, 1, &b"x"[..], None),
            Err(FramingError::Interrupted)
        );
        assert!(!a.in_progress());
    }

    /// One fuzz input: a sequence of records, each with raw header fields
    /// and a payload, and whether the caller offers a sink.
    pub(crate) fn run_records(records: &[(u32, u32, Vec<u8>, Option<usize>)]) {
        let mut a = Assembler::default();
        let mut sink = vec![0u8; 4096];
        for (flags, tag_word, payload, sink_len) in records {
            let Ok((frame, tag)) = classify(*flags, *tag_word, payload.len()) else {
                continue;
            };
            let s = sink_len.map(|n| &mut sink[..n.min(4096)]);
            if let Ok(Some(Completed::Direct { len, .. })) = a.accept(frame, tag, &payload[..], s) {
                assert!(len <= 4096);
            }
        }
    }

    proptest! {
        /// Arbitrary record sequences never panic or write out of bounds.
        #[test]
        fn arbitrary_record_sequences(
            records in proptest::collection::vec(
                (
                    prop_oneof![Just(0u32), Just(FLAG_MORE), Just(FLAG_CONT),
                                Just(FLAG_CONT | FLAG_MORE), Just(FLAG_ABORT), any::<u32>()],
                    prop_oneof![Just(1u32), any::<u32>()],
                    proptest::collection::vec(any::<u8>(), 0..64),
                    proptest::option::of(0usize..200),
                ),
                0..40,
            )
        ) {
            run_records(&records);
        }

        /// Any message split into chunks, with aborted streams between
        /// messages, comes out whole and in order.
        #[test]
        fn chunked_messages_reassemble(
            msgs in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..300), 1usize..64, any::<bool>()),
                1..10,
            )
        ) {
            let mut a = Assembler::default();
            for (msg, chunk, abort_before) in &msgs {
                if *abort_before {
                    a.accept(Frame::First, 9, &first(1000, &[7; 3])[..], None).unwrap();
                    prop_assert_eq!(a.accept(Frame::Abort, 9, &[][..], None), Ok(None));
                }
                let head = msg.len().min(*chunk);
                let mut done = a.accept(Frame::First, 5, &first(msg.len() as u64, &msg[..head])[..], None).unwrap();
                let mut at = head;
                while at < msg.len() || done.is_none() {
                    let end = (at + chunk).min(msg.len());
                    done = a.accept(Frame::Cont { last: end == msg.len() }, 5, &msg[at..end], None).unwrap();
                    at = end;
                }
                prop_assert_eq!(done, Some(Completed::Owned { tag: 5, data: msg.clone() }));
            }
        }
    }
}
