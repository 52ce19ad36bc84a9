//! One test body for every distributed-array backend: each rank runs
//! `run(make)` (SPMD) and checks on every rank. `make(len)` creates an
//! array collectively. Used over mailbox groups, MPI (owner protocol with
//! and without a progress thread, RMA), the hybrid world, and across the
//! network-namespace hosts.

use shmpi::dsm::{Backend, ByteArray, DistArray};
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

/// The suite for arrays whose element size is chosen at run time:
/// `make(len, elem_size)` creates a [`ByteArray`] collectively.
pub fn run_bytes(
    make: &mut dyn FnMut(usize, usize) -> shmpi::Result<ByteArray>,
) -> shmpi::Result<()> {
    // 1. Elements of 12, 24 and 3 bytes (moved as 4-, 8- and 1-byte
    //    words): whole elements written by their writers, read back as
    //    ranges across owners through unaligned buffers.
    for elem in [12usize, 24, 3] {
        let len = 23;
        let mut a = make(len, elem)?;
        let (me, ranks) = (a.rank(), a.size());
        assert_eq!(a.elem_size(), elem);
        let pattern = |i: usize| -> Vec<u8> { (0..elem).map(|b| (i * 7 + b) as u8).collect() };
        for i in (me..len).step_by(ranks) {
            a.put(i, &pattern(i))?;
        }
        a.barrier()?;
        let mut buf = vec![0u8; len * elem + 1];
        a.get_range(0, &mut buf[1..])?; // misaligned on purpose
        for i in 0..len {
            assert_eq!(
                &buf[1 + i * elem..1 + (i + 1) * elem],
                &pattern(i)[..],
                "rank {me}: element {i} of {elem} bytes"
            );
        }
        let mut one = vec![0u8; elem];
        a.get(len - 1, &mut one)?;
        assert_eq!(one, pattern(len - 1));
        a.barrier()?;
        // A range across owners written by one rank, read by all.
        if me == 0 {
            let data: Vec<u8> = (0..len * elem).map(|b| (b % 251) as u8).collect();
            a.put_range(0, &data)?;
        }
        a.barrier()?;
        a.get_range(0, &mut buf[..len * elem])?;
        assert!(buf[..len * elem]
            .iter()
            .enumerate()
            .all(|(b, &v)| v == (b % 251) as u8));
        // Wrong sizes are refused and do nothing.
        let bad = |r: shmpi::Result<()>| matches!(r, Err(Error::Dsm(DsmError::ElementSize { elem_size, .. })) if elem_size == elem);
        assert!(bad(a.get(0, &mut vec![0u8; elem + 1])));
        assert!(bad(a.put(0, &[])));
        assert!(bad(a.get_range(0, &mut vec![0u8; elem * 2 - 1])));
        assert!(
            bad(a.fetch_add(0, &one, &mut one.clone())),
            "not an integer"
        );
        assert!(matches!(
            a.get_range(len - 1, &mut vec![0u8; 2 * elem]),
            Err(Error::Dsm(DsmError::OutOfBounds { .. }))
        ));
        a.barrier()?;
    }

    // 2. Elements of 1, 2, 4 and 8 bytes: concurrent whole-element writes
    //    never tear; integers of 4 and 8 bytes: concurrent fetch-adds wrap
    //    in their width, compare-exchange counts; 1 and 2 bytes refuse
    //    integer operations.
    for elem in [1usize, 2, 4, 8] {
        let mut a = make(3, elem)?;
        let (me, ranks) = (a.rank(), a.size());
        // Rank r writes the element of all bytes r + 1, over and over;
        // every read sees one writer's value whole.
        let mine = vec![me as u8 + 1; elem];
        let mut got = vec![0u8; elem];
        for _ in 0..100 {
            a.put(2, &mine)?;
            a.get(2, &mut got)?;
            assert!(
                got.iter().all(|&b| b == got[0]) && (1..=ranks as u8).contains(&got[0]),
                "rank {me}: torn {elem}-byte element {got:?}"
            );
        }
        let one = narrow_ne(1, elem);
        let mut prev = vec![0u8; elem];
        if elem < 4 {
            assert!(matches!(
                a.fetch_add(0, &one, &mut prev),
                Err(Error::Dsm(DsmError::ElementSize { .. }))
            ));
            assert!(matches!(
                a.compare_exchange(0, &one, &one, &mut prev),
                Err(Error::Dsm(DsmError::ElementSize { .. }))
            ));
            a.barrier()?;
            continue;
        }
        let adds = 300;
        for _ in 0..adds {
            a.fetch_add(0, &one, &mut prev)?;
        }
        for _ in 0..40 {
            let mut seen = vec![0u8; elem];
            a.get(1, &mut seen)?;
            loop {
                let next = add_ne(&seen, 1);
                if a.compare_exchange(1, &seen, &next, &mut prev)? {
                    break;
                }
                seen.copy_from_slice(&prev);
            }
        }
        a.barrier()?;
        let total = (ranks * adds) as u64;
        let mut v = vec![0u8; elem];
        a.get(0, &mut v)?;
        assert_eq!(
            widen_ne(&v),
            total & mask(elem),
            "rank {me}: {elem}-byte sum"
        );
        a.get(1, &mut v)?;
        assert_eq!(widen_ne(&v), (ranks * 40) as u64 & mask(elem));
        a.barrier()?; // everyone has read before rank 0 changes it
                      // Wrapping in the element's width: add the two's complement of the
                      // sum, leaving zero.
        if me == 0 {
            let back = narrow_ne(total.wrapping_neg(), elem);
            a.fetch_add(0, &back, &mut prev)?;
        }
        a.barrier()?;
        a.get(0, &mut v)?;
        assert_eq!(widen_ne(&v), 0, "rank {me}: {elem}-byte wrap");
        a.barrier()?;
    }

    // 3. No element size, and ranks that disagree on it.
    assert!(matches!(
        make(4, 0),
        Err(Error::Dsm(DsmError::ElementSize { elem_size: 0, .. }))
    ));
    let probe = make(1, 8)?;
    let (me, ranks) = (probe.rank(), probe.size());
    drop(probe);
    match make(4, if me == 0 { 4 } else { 8 }) {
        Err(Error::Dsm(DsmError::Disagreement {
            what: "element size",
            min: 4,
            max: 8,
        })) => {}
        Err(e) => panic!("rank {me}: expected a disagreement, got {e}"),
        Ok(_) if ranks == 1 => {}
        Ok(_) => panic!("rank {me}: a disagreeing array was created"),
    }
    Ok(())
}

/// `v + k` for a native-endian unsigned integer of `v.len()` bytes,
/// wrapping in its width.
fn add_ne(v: &[u8], k: u64) -> Vec<u8> {
    narrow_ne(widen_ne(v).wrapping_add(k), v.len())
}

fn widen_ne(v: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    if cfg!(target_endian = "little") {
        w[..v.len()].copy_from_slice(v);
    } else {
        w[8 - v.len()..].copy_from_slice(v);
    }
    u64::from_ne_bytes(w) & mask(v.len())
}

fn narrow_ne(x: u64, len: usize) -> Vec<u8> {
    let b = x.to_ne_bytes();
    if cfg!(target_endian = "little") {
        b[..len].to_vec()
    } else {
        b[8 - len..].to_vec()
    }
}

fn mask(bytes: usize) -> u64 {
    if bytes >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * bytes)) - 1
    }
}
