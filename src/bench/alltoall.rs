//! All-to-all message rate: every rank sends to every other rank at once,
//! through any [`Transport`] — shared-memory mailboxes or MPI — so the two
//! can be compared with many processes on few cores.

use std::time::Instant;

use crate::error::{Error, TransportError};
use crate::transport::{Source, TagMatch, Transport};

const TAG: i32 = 7;

/// Every rank sends `per_peer` messages of `size` bytes (at least 8) to
/// every other rank, round-robin, and receives all it is sent, checking
/// each message's origin and sequence. Returns, on rank 0, the job's rate
/// in messages per second (all ranks' messages over the time between two
/// barriers); `None` elsewhere.
///
/// # Errors
///
/// The transport's errors; [`TransportError::CountMismatch`] when a
/// message is missing, duplicated or out of order.
///
/// # Examples
///
/// ```
/// use shmpi::bench::alltoall;
/// use shmpi::mailbox::{MailboxGroup, MailboxOptions};
///
/// let ranks = MailboxGroup::threads(3, &MailboxOptions::default())?;
/// let rates: Vec<_> = std::thread::scope(|s| {
///     let h: Vec<_> = ranks
///         .into_iter()
///         .map(|mut r| s.spawn(move || alltoall::run(&mut r, 100, 64)))
///         .collect();
///     h.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// assert!(rates[0].as_ref().unwrap().unwrap() > 0.0);
/// # Ok::<(), shmpi::Error>(())
/// ```
pub fn run<T: Transport>(t: &mut T, per_peer: usize, size: usize) -> Result<Option<f64>, Error> {
    let (me, n) = (t.rank(), t.size());
    let mut payload = vec![0u8; size.max(8)];
    let mut next_from = vec![0u64; n];
    t.barrier()?;
    let start = Instant::now();
    let mut received = 0;
    let expected = per_peer * (n - 1);
    for seq in 0..per_peer as u64 {
        for k in 1..n {
            let dest = (me + k) % n;
            payload[..8].copy_from_slice(&seq.to_le_bytes());
            t.send(dest, TAG, &payload)?;
        }
        // Take what has arrived, so rings drain while everyone sends.
        while let Some(m) = t.try_recv_matching(Source::Any, TagMatch::Tag(TAG))? {
            check(&m.data, m.source, &mut next_from)?;
            received += 1;
        }
    }
    while received < expected {
        let m = t.recv(Source::Any, TAG)?;
        check(&m.data, m.source, &mut next_from)?;
        received += 1;
    }
    t.barrier()?;
    let secs = start.elapsed().as_secs_f64();
    Ok((me == 0).then(|| (n * expected) as f64 / secs))
}

/// Checks that a message is the next one from its source.
fn check(data: &[u8], source: usize, next_from: &mut [u64]) -> Result<(), Error> {
    let seq = data
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes);
    let want = next_from.get_mut(source);
    match (seq, want) {
        (Some(seq), Some(want)) if seq == *want => {
            *want += 1;
            Ok(())
        }
        (seq, want) => Err(TransportError::OutOfSequence {
            source_rank: source,
            expected: want.map_or(0, |w| *w),
            found: seq.unwrap_or(u64::MAX),
        }
        .into()),
    }
}
