//! The members' outgoing payload pools: fragments a sender writes a message
//! (or a zero-copy loan) into, announced by a descriptor in the lane to the
//! receiver, who reads it in place.
//!
//! **A fragment comes back through the lane.** The receiver releases a
//! lane record only after it has read the fragment the record names
//! (copied it out, or dropped its in-place reference), and it releases
//! records in order. So the sender knows a fragment is free again once the
//! receiver's head in that lane has passed the record's end — a position
//! the sender reads anyway for flow control. Nothing else is shared: the
//! free list is the sender's own, no receiver writes into the sender's
//! state, and a send or receive through the pool makes no atomic
//! read-modify-write. (A shared free bitmap, tried first, cost two
//! cache-line transfers and two atomic operations per message.)
//!
//! A head that another process scribbled on is checked against the lane's
//! tail before it frees anything; at worst a fragment is reused while a
//! receiver still reads it — garbage in a message, never an access outside
//! the pool, since every index is checked against the layout.

use std::collections::VecDeque;
use std::ptr::NonNull;

use super::layout::GroupLayout;

/// Our pool, and the way to every member's fragments.
pub(crate) struct Pools {
    /// The first byte of the data region of the group's segment.
    base: NonNull<u8>,
    layout: GroupLayout,
    /// Our free fragments; the last one freed is reused first (it is the
    /// one most likely still in cache).
    free: Vec<u32>,
    /// Per destination: fragments announced in its lane, with the lane
    /// position just past their record, oldest first.
    in_flight: Vec<VecDeque<(u64, u32)>>,
    /// Lanes where a previous incarnation of this member (a rejoin) may have
    /// left records naming our fragments: `(dest, tail at attach)`. Until
    /// every one is consumed, no fragment is handed out.
    quarantine: Vec<(usize, u64)>,
    /// Set until the quarantine is lifted (all its lanes consumed, or
    /// their receivers dead).
    quarantined: bool,
}

impl Pools {
    /// `lanes(dest)` gives our lane to `dest`'s head and tail at attach.
    ///
    /// # Safety
    ///
    /// `base` is the first byte of the data region of a mapping that holds
    /// `layout` (validated against the mapping's length) and outlives the
    /// returned value.
    pub(crate) unsafe fn new(
        base: NonNull<u8>,
        layout: GroupLayout,
        me: usize,
        lanes: impl Fn(usize) -> (u64, u64),
    ) -> Pools {
        let n = layout.params.members;
        let quarantine: Vec<(usize, u64)> = (0..n)
            .filter(|&d| d != me)
            .filter_map(|d| {
                let (head, tail) = lanes(d);
                (head < tail).then_some((d, tail))
            })
            .collect();
        let free = if quarantine.is_empty() {
            (0..layout.params.fragments as u32).rev().collect()
        } else {
            Vec::new()
        };
        Pools {
            base,
            layout,
            free,
            in_flight: vec![VecDeque::new(); n],
            quarantined: !quarantine.is_empty(),
            quarantine,
        }
    }

    /// Bytes of one fragment.
    pub(crate) fn fragment_len(&self) -> usize {
        self.layout.params.fragment
    }

    /// Fragments in each pool.
    pub(crate) fn fragments(&self) -> usize {
        self.layout.params.fragments
    }

    /// Our fragments in use: lent and not yet seen back.
    pub(crate) fn in_use(&self) -> usize {
        self.fragments() - self.free.len()
    }

    /// The first byte of fragment `f` of `member`'s pool (`f` below
    /// [`fragments`](Self::fragments), `member` a validated id).
    pub(crate) fn fragment_ptr(&self, member: usize, f: u32) -> *mut u8 {
        assert!(
            (f as usize) < self.fragments(),
            "fragment index checked by the caller"
        );
        // SAFETY: pool_offset(member) + (f + 1) * fragment <= layout.total
        // (validated layout; f < fragments asserted), inside the mapping.
        unsafe {
            self.base
                .as_ptr()
                .add(self.layout.pool_offset(member) + f as usize * self.fragment_len())
        }
    }

    /// A free fragment for a message to `dest`. `heads(d)` is how far the
    /// receiver `d` has consumed our lane to it (already checked against
    /// the lane's tail).
    pub(crate) fn try_alloc(&mut self, dest: usize, heads: impl Fn(usize) -> u64) -> Option<u32> {
        // Collect only when the free list runs dry: reading a receiver's
        // head costs a cache-line transfer when it has just moved, which on
        // every send would cost more than reusing a fragment slightly less
        // recently used.
        let _ = dest;
        if self.free.is_empty() {
            for d in 0..self.in_flight.len() {
                if !self.in_flight[d].is_empty() {
                    self.collect(d, heads(d));
                }
            }
            self.lift_quarantine(&heads);
        }
        self.free.pop()
    }

    /// Fragment `f` was announced to `dest` by the record ending at lane
    /// position `end`.
    pub(crate) fn lent(&mut self, dest: usize, end: u64, f: u32) {
        self.in_flight[dest].push_back((end, f));
    }

    /// A fragment allocated but never announced (an abandoned loan).
    pub(crate) fn give_back(&mut self, f: u32) {
        self.free.push(f);
    }

    /// Frees what `dest` has consumed up to lane position `head`.
    fn collect(&mut self, dest: usize, head: u64) {
        while let Some(&(end, f)) = self.in_flight[dest].front() {
            if end > head {
                break;
            }
            self.in_flight[dest].pop_front();
            self.free.push(f);
        }
    }

    fn lift_quarantine(&mut self, heads: &impl Fn(usize) -> u64) {
        if !self.quarantined {
            return;
        }
        self.quarantine.retain(|&(d, tail)| heads(d) < tail);
        if self.quarantine.is_empty() {
            self.quarantined = false;
            let lent: Vec<u32> = self.in_flight.iter().flatten().map(|&(_, f)| f).collect();
            self.free = (0..self.fragments() as u32)
                .rev()
                .filter(|f| !lent.contains(f))
                .collect();
        }
    }

    /// Members that hold fragments of our pool (or may: a quarantined lane).
    pub(crate) fn borrowers(&self) -> Vec<usize> {
        (0..self.in_flight.len())
            .filter(|&d| {
                !self.in_flight[d].is_empty() || self.quarantine.iter().any(|&(q, _)| q == d)
            })
            .collect()
    }

    /// Takes back everything lent to `dead`, which will never consume it.
    pub(crate) fn reclaim(&mut self, dead: usize) {
        let lent: Vec<u32> = self.in_flight[dead].drain(..).map(|(_, f)| f).collect();
        self.free.extend(lent);
        self.quarantine.retain(|&(d, _)| d != dead);
        self.lift_quarantine(&|_| u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::GroupParams;

    fn pools(fragments: usize, lanes: impl Fn(usize) -> (u64, u64)) -> Pools {
        let layout = GroupParams {
            members: 3,
            lane: 2048,
            granularity: 64,
            fragment: 1024,
            fragments,
            flags: 0,
        }
        .validate(None)
        .unwrap();
        // The pointer is never dereferenced in these tests.
        // SAFETY: no fragment_ptr call; the contract concerns those only.
        unsafe { Pools::new(NonNull::dangling(), layout, 0, lanes) }
    }

    #[test]
    fn fragments_come_back_when_the_receiver_passes_their_record() {
        let mut p = pools(2, |_| (0, 0));
        let a = p.try_alloc(1, |_| 0).unwrap();
        p.lent(1, 64, a);
        let b = p.try_alloc(2, |_| 0).unwrap();
        p.lent(2, 64, b);
        assert_eq!(p.try_alloc(1, |_| 0), None, "both lent, nothing consumed");
        assert_eq!(p.in_use(), 2);
        // Receiver 2 consumed its record: its fragment is free again.
        assert_eq!(p.try_alloc(1, |d| if d == 2 { 64 } else { 0 }), Some(b));
        // Receiver 1's head passes its record: the same fragment, hot.
        p.lent(1, 128, b);
        assert_eq!(p.try_alloc(1, |d| if d == 1 { 128 } else { 0 }), Some(b));
        p.lent(1, 192, b);
        assert_eq!(p.borrowers(), [1]);
        p.reclaim(1);
        assert_eq!(p.in_use(), 0, "what a dead receiver held is back");
    }

    #[test]
    fn a_rejoined_sender_waits_for_its_predecessors_records() {
        let mut p = pools(4, |d| if d == 2 { (100, 164) } else { (0, 0) });
        assert_eq!(p.try_alloc(1, |_| 0), None, "quarantined");
        assert_eq!(p.borrowers(), [2]);
        assert!(p.try_alloc(1, |d| if d == 2 { 164 } else { 0 }).is_some());
        assert_eq!(p.in_use(), 1);
        let mut q = pools(4, |d| if d == 2 { (100, 164) } else { (0, 0) });
        q.reclaim(2);
        assert!(q.try_alloc(1, |_| 0).is_some(), "a dead receiver lifts it");
    }
}
