//! MPI-style matching on the receiver's side: messages that arrived but
//! matched no receive yet wait in arrival order, and a receive from any
//! source visits the senders round-robin, starting after the one it served
//! last (fair: no sender starves another). Order is kept per (source, tag)
//! because each source's messages come from one FIFO lane and queue in
//! the order they were read. Pure: no shared memory.

use std::collections::VecDeque;

use crate::transport::{Message, Source, TagMatch};

/// A member's queue of arrived, unmatched messages and its round-robin
/// position.
#[derive(Debug)]
pub(crate) struct Matching {
    queue: VecDeque<Message>,
    next_any: usize,
    me: usize,
    members: usize,
}

impl Matching {
    /// For member `me` of `members`.
    pub(crate) fn new(me: usize, members: usize) -> Matching {
        Matching {
            queue: VecDeque::new(),
            next_any: (me + 1) % members,
            me,
            members,
        }
    }

    /// Takes the first queued message `source` and `tag` accept.
    #[inline]
    pub(crate) fn take(&mut self, source: Source, tag: TagMatch) -> Option<Message> {
        if self.queue.is_empty() {
            return None;
        }
        let i = self
            .queue
            .iter()
            .position(|m| source.accepts(m.source) && tag.accepts(m.tag))?;
        self.queue.remove(i)
    }

    /// The first queued message `source` and `tag` accept, left queued.
    pub(crate) fn peek(&self, source: Source, tag: TagMatch) -> Option<&Message> {
        self.queue
            .iter()
            .find(|m| source.accepts(m.source) && tag.accepts(m.tag))
    }

    /// True when no message waits.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues a message that arrived (after those already queued).
    #[inline]
    pub(crate) fn push(&mut self, m: Message) {
        self.queue.push_back(m);
    }

    /// Puts a message back at the front (a receive that could not take it).
    pub(crate) fn put_back(&mut self, m: Message) {
        self.queue.push_front(m);
    }

    /// True when a message from `source` that `tag` accepts is queued.
    #[inline]
    pub(crate) fn holds_from(&self, source: usize, tag: TagMatch) -> bool {
        self.queue
            .iter()
            .any(|m| m.source == source && tag.accepts(m.tag))
    }

    /// The senders a receive from `source` looks at, in order: the one it
    /// names, or every other member round-robin from after the last served.
    #[inline]
    pub(crate) fn senders(&self, source: Source) -> impl Iterator<Item = usize> {
        let (first, count) = match source {
            Source::Rank(s) => (s, 1),
            Source::Any => (self.next_any, self.members),
        };
        let (me, n) = (self.me, self.members);
        // first < n and k < n: one conditional subtraction, no division
        // (this runs on every poll of a receive).
        (0..count)
            .map(move |k| {
                if first + k >= n {
                    first + k - n
                } else {
                    first + k
                }
            })
            .filter(move |&p| p != me)
    }

    /// Records that a receive from any source was served by `peer`: the
    /// next one starts after it.
    #[inline]
    pub(crate) fn served(&mut self, peer: usize) {
        self.next_any = if peer + 1 == self.members {
            0
        } else {
            peer + 1
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(source: usize, tag: i32) -> Message {
        Message {
            source,
            tag,
            data: vec![tag as u8],
        }
    }

    #[test]
    fn queued_messages_match_in_arrival_order_per_source_and_tag() {
        let mut m = Matching::new(0, 3);
        m.push(msg(1, 5));
        m.push(msg(2, 5));
        m.push(msg(1, 6));
        m.push(msg(1, 5));
        assert_eq!(m.take(Source::Rank(1), TagMatch::Tag(6)), Some(msg(1, 6)));
        assert!(m.holds_from(2, TagMatch::Any) && !m.holds_from(2, TagMatch::Tag(6)));
        assert_eq!(m.take(Source::Any, TagMatch::Tag(5)), Some(msg(1, 5)));
        assert_eq!(m.take(Source::Any, TagMatch::Tag(5)), Some(msg(2, 5)));
        assert_eq!(m.take(Source::Any, TagMatch::Any), Some(msg(1, 5)));
        assert_eq!(m.take(Source::Any, TagMatch::Any), None);
    }

    #[test]
    fn any_source_is_round_robin_and_skips_me() {
        let mut m = Matching::new(1, 4);
        assert_eq!(m.senders(Source::Any).collect::<Vec<_>>(), [2, 3, 0]);
        m.served(3);
        assert_eq!(m.senders(Source::Any).collect::<Vec<_>>(), [0, 2, 3]);
        assert_eq!(m.senders(Source::Rank(2)).collect::<Vec<_>>(), [2]);
        assert_eq!(m.senders(Source::Rank(1)).count(), 0);
    }
}
