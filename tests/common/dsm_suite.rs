//! One test body for every distributed-array backend: each rank runs
//! `run(make)` (SPMD) and checks on every rank. `make(len)` creates an
//! array collectively. Used over mailbox groups, MPI (owner protocol with
//! and without a progress thread, RMA), the hybrid world, and across the
//! network-namespace hosts.

use shmpi::dsm::{Backend, DistArray};
use shmpi::{DsmError, Error};

/// A small deterministic generator (xorshift64*), seeded per rank so any
/// rank can replay any other's choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as usize % n
    }
}

/// Fetch-adds per rank in the counting test.
const K: usize = 400;

pub fn run<B: Backend<u64>>(
    make: &mut dyn FnMut(usize) -> shmpi::Result<DistArray<u64, B>>,
) -> shmpi::Result<()> {
    // 1. Every rank adds 1..=3 at K random indices; the sums are exact.
    let len = 37; // not a multiple of any rank count: uneven blocks
    let mut a = make(len)?;
    let (me, n) = (a.backend().rank(), a.backend().size());
    let mut rng = Rng::new(me as u64 + 1);
    for _ in 0..K {
        let i = rng.below(len);
        let add = 1 + rng.below(3) as u64;
        a.fetch_add(i, add)?;
    }
    a.barrier()?;
    let mut expected = vec![0u64; len];
    for r in 0..n {
        let mut rng = Rng::new(r as u64 + 1);
        for _ in 0..K {
            let i = rng.below(len);
            expected[i] += 1 + rng.below(3) as u64;
        }
    }
    let mut all = vec![0u64; len];
    a.get_range(0, &mut all)?;
    assert_eq!(all, expected, "rank {me}: fetch_add sums");
    a.barrier()?;

    // 2. Disjoint ranges written concurrently (each spans owners), then
    //    read by everyone, element by element and as ranges.
    let span = 10;
    let mut b = make(span * n)?;
    let mine: Vec<u64> = (0..span).map(|k| (me * 1000 + k) as u64).collect();
    b.put_range(me * span, &mine)?;
    b.barrier()?;
    for r in 0..n {
        let mut got = vec![0u64; span];
        b.get_range(r * span, &mut got)?;
        let want: Vec<u64> = (0..span).map(|k| (r * 1000 + k) as u64).collect();
        assert_eq!(got, want, "rank {me}: range of rank {r}");
        assert_eq!(b.get(r * span + span - 1)?, want[span - 1]);
    }
    b.barrier()?;
    // Single puts, concurrently on interleaved elements.
    for k in (me..span * n).step_by(n) {
        b.put(k, k as u64 * 3)?;
    }
    b.barrier()?;
    for k in 0..span * n {
        assert_eq!(b.get(k)?, k as u64 * 3, "rank {me}: element {k}");
    }
    b.barrier()?;

    // 3. Compare-exchange loops on overlapping locations: a distributed
    //    counter, and a lock protecting a plain read-modify-write.
    let mut c = make(3)?;
    let rounds = 60;
    for _ in 0..rounds {
        let mut seen = c.get(0)?;
        loop {
            match c.compare_exchange(0, seen, seen + 1)? {
                Ok(_) => break,
                Err(actual) => seen = actual,
            }
        }
        // Lock (element 1: 0 free, rank + 1 held), then get + put on
        // element 2, which only the holder touches.
        while c.compare_exchange(1, 0, me as u64 + 1)?.is_err() {
            std::thread::yield_now();
        }
        let v = c.get(2)?;
        c.put(2, v + 1)?;
        assert_eq!(c.compare_exchange(1, me as u64 + 1, 0)?, Ok(me as u64 + 1));
    }
    c.barrier()?;
    assert_eq!(c.get(0)?, (n * rounds) as u64, "rank {me}: counter");
    assert_eq!(
        c.get(2)?,
        (n * rounds) as u64,
        "rank {me}: value under the lock"
    );
    assert_eq!(c.get(1)?, 0, "rank {me}: lock released");
    c.barrier()?;

    // 4. Bad input: an error naming index and length; nothing is done.
    let err = |r: shmpi::Result<u64>| match r {
        Err(Error::Dsm(e)) => e,
        other => panic!("rank {me}: expected an error, got {other:?}"),
    };
    assert_eq!(err(c.get(3)), DsmError::OutOfBounds { index: 3, len: 3 });
    assert_eq!(
        err(c.fetch_add(usize::MAX, 1)),
        DsmError::OutOfBounds {
            index: usize::MAX,
            len: 3
        }
    );
    let mut two = [0u64; 2];
    assert!(matches!(
        c.get_range(2, &mut two),
        Err(Error::Dsm(DsmError::OutOfBounds { index: 3, len: 3 }))
    ));
    assert!(matches!(
        c.put_range(usize::MAX, &two),
        Err(Error::Dsm(DsmError::OutOfBounds { .. }))
    ));
    c.barrier()?;
    drop((a, b, c));

    // 5. Ranks that disagree on the length: every rank gets the error.
    match make(if me == 0 { 10 } else { 11 }) {
        Err(Error::Dsm(DsmError::Disagreement {
            what: "length",
            min: 10,
            max: 11,
        })) => {}
        Err(e) => panic!("rank {me}: expected a disagreement, got {e}"),
        Ok(_) if n == 1 => {}
        Ok(_) => panic!("rank {me}: a disagreeing array was created"),
    }
    Ok(())
}
