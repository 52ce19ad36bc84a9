//! One test body for every `Transport`: each rank runs `run(t)` (SPMD), and
//! the checks are made on every rank. Used over thread mailboxes, process
//! mailboxes, and later MPI and the hybrid world.

use shmpi::transport::Wait;
use shmpi::transport::{ReduceOp, Source, TagMatch, Transport};

/// A payload that tells its origin and can be checked byte by byte.
pub fn pattern(from: usize, to: usize, seq: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ from.wrapping_mul(7) ^ to.wrapping_mul(13) ^ seq) as u8)
        .collect()
}

/// Sizes that cover: empty, inside one cache line, one record, larger than
/// the ring (streamed in chunks).
pub const SIZES: [usize; 6] = [0, 1, 48, 4096, 70_000, 600_000];

pub fn run<T: Transport>(t: &mut T) -> shmpi::Result<()>
where
    shmpi::Error: From<T::Error>,
{
    let (me, n) = (t.rank(), t.size());
    assert!(n >= 2, "the suite needs two ranks");
    let right = (me + 1) % n;
    let left = (me + n - 1) % n;

    // 1. Point to point around the ring, every size, checked byte by byte.
    for (seq, &len) in SIZES.iter().enumerate() {
        t.send(right, 100 + seq as i32, &pattern(me, right, seq, len))?;
        let m = t.recv(left, 100 + seq as i32, Wait::Forever)?;
        assert_eq!((m.source, m.tag), (left, 100 + seq as i32));
        assert_eq!(
            m.data,
            pattern(left, me, seq, len),
            "size {len} from {left}"
        );
    }

    // 2. Matching: tags received in the opposite order of sending; order
    //    kept per (source, tag).
    for k in 0..3 {
        t.send(right, 1, &[1, k])?;
        t.send(right, 2, &[2, k])?;
    }
    for k in 0..3 {
        assert_eq!(t.recv(left, 2, Wait::Forever)?.data, [2, k]);
    }
    for k in 0..3 {
        assert_eq!(t.recv(left, TagMatch::Any, Wait::Forever)?.data, [1, k]);
    }

    // 3. Any source: everyone sends to rank 0, which hears from all.
    t.barrier()?;
    if me != 0 {
        t.send(0, 7, &(me as u64).to_le_bytes())?;
    } else {
        let mut seen = vec![false; n];
        for _ in 1..n {
            let m = t.recv(Source::Any, 7, Wait::Forever)?;
            assert_eq!(m.data, (m.source as u64).to_le_bytes());
            assert!(
                !std::mem::replace(&mut seen[m.source], true),
                "duplicate from {}",
                m.source
            );
        }
        assert!(seen[1..].iter().all(|&s| s));
    }

    // 4. Typed messages.
    let values: Vec<f64> = (0..1000).map(|i| (me * 1000 + i) as f64).collect();
    t.send_pod(right, 8, &values)?;
    let got = t.recv_pod::<f64>(left, 8, Wait::Forever)?;
    assert_eq!(
        got.data,
        (0..1000)
            .map(|i| (left * 1000 + i) as f64)
            .collect::<Vec<_>>()
    );
    t.send(right, 9, &[1, 2, 3])?;
    assert!(
        t.recv_pod::<u32>(left, 9, Wait::Forever).is_err(),
        "3 bytes are not a u32 slice"
    );

    // 5. Collectives.
    t.barrier()?;
    let mut b = if me == n - 1 { vec![42u32, 43] } else { vec![] };
    t.broadcast(n - 1, &mut b)?;
    assert_eq!(b, [42, 43]);
    let sum = t.allreduce(&[me as u64, 1], ReduceOp::Sum)?;
    assert_eq!(sum, [(n * (n - 1) / 2) as u64, n as u64]);
    let max = t.allreduce(&[me as f64 * 0.5], ReduceOp::Max)?;
    assert_eq!(max, [(n - 1) as f64 * 0.5]);
    let xor = t.allreduce(&[1u8 << (me % 8)], ReduceOp::BitXor)?;
    assert_eq!(xor[0], (0..n).fold(0u8, |a, r| a ^ (1 << (r % 8))));
    assert!(matches!(
        t.allreduce(&[1.0f32], ReduceOp::BitOr)
            .map_err(shmpi::Error::from),
        Err(shmpi::Error::Transport(
            shmpi::TransportError::UnsupportedOp { .. }
        ))
    ));
    let prod = t.reduce(0, &[2i64], ReduceOp::Prod)?;
    assert_eq!(prod, (me == 0).then(|| vec![1i64 << n]));
    let gathered = t.gather(1, &[me as u16; 3])?;
    if me == 1 {
        assert_eq!(
            gathered.unwrap(),
            (0..n).map(|r| vec![r as u16; 3]).collect::<Vec<_>>()
        );
    } else {
        assert!(gathered.is_none());
    }
    t.barrier()?;
    Ok(())
}
