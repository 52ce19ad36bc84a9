//! The members' outgoing payload pools: fragments a sender writes a message
//! (or a zero-copy loan) into, announced by a descriptor in the lane to the
//! receiver, who reads it in place and hands the fragment back.
//!
//! Each pool's free map (in its owner's member block) has one bit per
//! fragment, set while the fragment is free. Only the owner clears bits
//! (allocating: an atomic read-modify-write, allowed because a send that
//! fits inline in a lane never comes here), receivers only set them
//! (freeing). Another process may scribble on a free map: then a fragment
//! in flight may be handed out twice — garbage in a message, never an
//! access outside the pool, since every index is checked against the
//! layout and every allocation loop is bounded.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use super::layout::{GroupLayout, MemberBlock};

/// All pools of a group, seen from one member.
pub(crate) struct Pools {
    /// The first byte of the data region of the group's segment.
    base: NonNull<u8>,
    layout: GroupLayout,
    me: usize,
    /// Which member each of our fragments was last lent to: when that
    /// member dies holding it, we take it back.
    lent_to: Vec<Option<usize>>,
}

impl Pools {
    /// # Safety
    ///
    /// `base` is the first byte of the data region of a mapping that holds
    /// `layout` (validated against the mapping's length) and outlives the
    /// returned value.
    pub(crate) unsafe fn new(base: NonNull<u8>, layout: GroupLayout, me: usize) -> Pools {
        Pools {
            base,
            layout,
            me,
            lent_to: vec![None; layout.params.fragments],
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

    fn free_map(&self, member: usize) -> &[AtomicU64] {
        let words = self.fragments().div_ceil(64);
        // SAFETY: member < members (callers pass validated ids); the block
        // lies inside the mapping (constructor contract) and is atomics
        // only; `words` <= the free map's length (fragments <= 512).
        let block = unsafe {
            &*self
                .base
                .as_ptr()
                .add(self.layout.member_offset(member))
                .cast::<MemberBlock>()
        };
        &block.free[..words]
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

    /// Takes a free fragment of our own pool for a message to `dest`.
    pub(crate) fn try_alloc(&mut self, dest: usize) -> Option<u32> {
        let f = self.take_free_bit()?;
        self.lent_to[f] = Some(dest);
        Some(f as u32)
    }

    fn take_free_bit(&self) -> Option<usize> {
        let fragments = self.fragments();
        for (w, word) in self.free_map(self.me).iter().enumerate() {
            let mut bits = word.load(Ordering::Acquire);
            // Only we clear bits, so a bit seen set stays set — unless
            // another process scribbles: then try the next, at most 64.
            for _ in 0..64 {
                if bits == 0 {
                    break;
                }
                let b = bits.trailing_zeros();
                let f = w * 64 + b as usize;
                if f >= fragments {
                    break;
                }
                let old = word.fetch_and(!(1 << b), Ordering::Acquire);
                if old & (1 << b) != 0 {
                    return Some(f);
                }
                bits = old & !(1 << b);
            }
        }
        None
    }

    /// Hands fragment `f` of `owner`'s pool back (a receiver that read it,
    /// or the owner abandoning a loan). `f` must be a checked index.
    pub(crate) fn free(&self, owner: usize, f: u32) {
        let word = &self.free_map(owner)[f as usize / 64];
        word.fetch_or(1 << (f % 64), Ordering::Release);
    }

    /// Members holding fragments of our pool right now (lent and not yet
    /// handed back).
    pub(crate) fn borrowers(&self) -> Vec<usize> {
        let map = self.free_map(self.me);
        let mut who: Vec<usize> = (0..self.fragments())
            .filter(|&f| map[f / 64].load(Ordering::Relaxed) & (1 << (f % 64)) == 0)
            .filter_map(|f| self.lent_to[f])
            .collect();
        who.sort_unstable();
        who.dedup();
        who
    }

    /// Takes back every fragment lent to `dead`, which will never hand
    /// them back. Returns how many.
    pub(crate) fn reclaim(&mut self, dead: usize) -> usize {
        let mut n = 0;
        for f in 0..self.fragments() {
            if self.lent_to[f] == Some(dead) {
                self.lent_to[f] = None;
                self.free(self.me, f as u32);
                n += 1;
            }
        }
        n
    }
}

/// Fragments marked in use in a free map of `fragments` bits.
pub(crate) fn in_use(map: &[AtomicU64], fragments: usize) -> usize {
    (0..fragments)
        .filter(|&f| map[f / 64].load(Ordering::Relaxed) & (1 << (f % 64)) == 0)
        .count()
}

/// Marks every fragment of a new pool free.
pub(crate) fn init_free_map(map: &[AtomicU64], fragments: usize) {
    for (w, word) in map.iter().enumerate() {
        let bits = fragments.saturating_sub(w * 64).min(64);
        let value = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        word.store(value, Ordering::Relaxed);
    }
}
