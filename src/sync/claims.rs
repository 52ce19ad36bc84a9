//! A side table of the ranges each party claims in an epoch of a shared
//! array, so that overlapping claims — a bug in the caller's promise that
//! parties stay off each other's ranges — are caught (debug builds) instead
//! of becoming silent data races.
//!
//! The table lives in the shared memory it describes, so it is untrusted
//! input like the rest: every value read from it is only compared, and a
//! scribbled table can cause a spurious error or hide an overlap, nothing
//! else.
//!
//! Layout: for each party two slots (epoch parity), each [`SLOT`] bytes of
//! `u64` words: `epoch + 1` (0: empty), the number of claims, then up to
//! [`CLAIMS`] claims of four words (read start, read end, write start,
//! write end, in elements).

use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use super::SyncError;

/// Bytes of one slot.
pub(crate) const SLOT: usize = 256;
/// Claims recorded per party and epoch (later ones are not checked).
const CLAIMS: usize = 7;
const WORDS: usize = SLOT / 8;

/// A party's view of the claim table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimTable {
    base: NonNull<AtomicU64>,
    parties: usize,
    me: usize,
}

/// Bytes the table takes for `parties` parties.
pub(crate) const fn table_bytes(parties: usize) -> usize {
    parties * 2 * SLOT
}

/// One claim: what a party reads and what it writes in an epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Claim {
    read: Range<u64>,
    write: Range<u64>,
}

fn overlap(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < a.end && b.start < b.end && a.start < b.end && b.start < a.end
}

impl Claim {
    /// One of the two writes what the other touches.
    fn conflicts(&self, other: &Claim) -> bool {
        overlap(&self.write, &other.write)
            || overlap(&self.write, &other.read)
            || overlap(&self.read, &other.write)
    }
}

impl ClaimTable {
    /// The table at `base` (8-byte aligned, [`table_bytes`]`(parties)`
    /// bytes of shared memory zeroed at creation), seen by party `me`.
    ///
    /// # Safety
    ///
    /// `base` is valid for that many bytes, aligned, and stays mapped as
    /// long as the table is used; other parties touch it only through
    /// their own `ClaimTable`.
    pub(crate) unsafe fn new(base: NonNull<u8>, parties: usize, me: usize) -> Self {
        ClaimTable {
            base: base.cast(),
            parties,
            me,
        }
    }

    fn word(&self, party: usize, epoch: u64, index: usize) -> &AtomicU64 {
        let slot = party * 2 + (epoch % 2) as usize;
        debug_assert!(party < self.parties && index < WORDS);
        // SAFETY: party < parties and index < WORDS keep the word inside the
        // table (the constructor's contract); atomics over shared memory.
        unsafe { &*self.base.as_ptr().add(slot * WORDS + index) }
    }

    /// The claims `party` recorded for `epoch` (none when its slot holds
    /// another epoch).
    ///
    /// A party may reuse the slot for the epoch two ahead while this reads
    /// it (a split epoch lets it claim the next epoch while this party is
    /// still checking the last one): its tag is written before its new
    /// claims, so a tag that changed during the read means the claims read
    /// may be the new epoch's, and none is reported. (That party checks
    /// the old epoch itself, against this party's slot, which still holds
    /// it: a conflict is still seen on one side.)
    fn claims(&self, party: usize, epoch: u64) -> Vec<Claim> {
        let tag = self.word(party, epoch, 0);
        if tag.load(Ordering::SeqCst) != epoch.wrapping_add(1) {
            return Vec::new();
        }
        let n = (self.word(party, epoch, 1).load(Ordering::SeqCst) as usize).min(CLAIMS);
        let claims: Vec<Claim> = (0..n)
            .map(|c| {
                let w = |k| {
                    self.word(party, epoch, 2 + 4 * c + k)
                        .load(Ordering::SeqCst)
                };
                Claim {
                    read: w(0)..w(1),
                    write: w(2)..w(3),
                }
            })
            .collect();
        if tag.load(Ordering::SeqCst) != epoch.wrapping_add(1) {
            return Vec::new();
        }
        claims
    }

    /// The first other party whose claims for `epoch` conflict with `mine`.
    fn conflict(&self, epoch: u64, mine: &[Claim]) -> Option<usize> {
        (0..self.parties).filter(|&p| p != self.me).find(|&p| {
            let theirs = self.claims(p, epoch);
            mine.iter().any(|m| theirs.iter().any(|t| m.conflicts(t)))
        })
    }

    /// Records this party's claim for `epoch`, then checks it against the
    /// claims the others recorded so far.
    ///
    /// # Errors
    ///
    /// [`SyncError::OverlappingClaim`] naming the first party in conflict.
    pub(crate) fn claim(
        &self,
        epoch: u64,
        read: &Range<usize>,
        write: &Range<usize>,
    ) -> Result<(), SyncError> {
        let tag = self.word(self.me, epoch, 0);
        let count = self.word(self.me, epoch, 1);
        if tag.load(Ordering::SeqCst) != epoch.wrapping_add(1) {
            count.store(0, Ordering::SeqCst);
            tag.store(epoch.wrapping_add(1), Ordering::SeqCst);
        }
        let n = count.load(Ordering::SeqCst) as usize;
        if n < CLAIMS {
            for (k, v) in [read.start, read.end, write.start, write.end]
                .into_iter()
                .enumerate()
            {
                self.word(self.me, epoch, 2 + 4 * n + k)
                    .store(v as u64, Ordering::SeqCst);
            }
            count.store(n as u64 + 1, Ordering::SeqCst);
        }
        let mine = Claim {
            read: read.start as u64..read.end as u64,
            write: write.start as u64..write.end as u64,
        };
        match self.conflict(epoch, std::slice::from_ref(&mine)) {
            Some(other) => Err(SyncError::OverlappingClaim { epoch, other }),
            None => Ok(()),
        }
    }

    /// At the end of `epoch` (after the barrier, when every party's claims
    /// are recorded): checks all of this party's claims against all of the
    /// others', so both parties of a conflict see it.
    ///
    /// # Errors
    ///
    /// [`SyncError::OverlappingClaim`].
    pub(crate) fn check(&self, epoch: u64) -> Result<(), SyncError> {
        let mine = self.claims(self.me, epoch);
        match self.conflict(epoch, &mine) {
            Some(other) => Err(SyncError::OverlappingClaim { epoch, other }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two parties over one zeroed table (u64 words: aligned).
    fn tables() -> (Vec<u64>, usize) {
        (vec![0u64; table_bytes(2) / 8], 2)
    }

    fn at(words: &mut [u64], me: usize) -> ClaimTable {
        let base = NonNull::new(words.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: the vector holds the table and outlives the test's use.
        unsafe { ClaimTable::new(base, 2, me) }
    }

    #[test]
    fn disjoint_claims_pass_and_overlaps_fail_on_both_sides() {
        let (mut words, _) = tables();
        let (a, b) = (at(&mut words, 0), at(&mut words, 1));
        // Epoch 0: both read 0..100, write their own halves of 100..200.
        a.claim(0, &(0..100), &(100..150)).unwrap();
        b.claim(0, &(0..100), &(150..200)).unwrap();
        a.check(0).unwrap();
        b.check(0).unwrap();
        // Epoch 1: b writes into a's range; b sees it at once, a at the end.
        a.claim(1, &(100..200), &(0..50)).unwrap();
        assert_eq!(
            b.claim(1, &(100..200), &(40..100)),
            Err(SyncError::OverlappingClaim { epoch: 1, other: 0 })
        );
        assert_eq!(
            a.check(1),
            Err(SyncError::OverlappingClaim { epoch: 1, other: 1 })
        );
        // Epoch 2 reuses epoch 0's slots: the old claims are forgotten.
        a.claim(2, &(0..100), &(100..200)).unwrap();
        b.check(2).unwrap();
        // A read of what another writes conflicts; empty ranges never do.
        b.claim(2, &(150..160), &(0..0)).unwrap_err();
        a.claim(2, &(0..0), &(0..0)).unwrap();
    }

    #[test]
    fn a_scribbled_table_is_only_compared() {
        let (mut words, _) = tables();
        words.iter_mut().for_each(|w| *w = u64::MAX);
        let a = at(&mut words, 0);
        // Party 1's slot claims to be epoch u64::MAX - 1 with 2^64 - 1
        // claims: read as at most CLAIMS claims, for that epoch only.
        a.claim(3, &(0..10), &(10..20)).unwrap();
        let _ = a.check(u64::MAX - 1);
    }
}
