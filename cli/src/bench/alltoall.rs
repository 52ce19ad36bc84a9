//! All-to-all message rate: every rank sends to every other rank at once,
//! through any [`Transport`] — shared-memory mailboxes or MPI — so the two
//! can be compared with many processes on few cores.
//!
//! [`steady_rate`] measures the steady state: a calibration round sizes a
//! run to a wall-clock target, so that start-up and the closing barrier are
//! a few per cent of the measured time (a fixed small count measured
//! start-up, not the rate, and could print the opposite verdict).

use shmpi::transport::{Arrival, Wait};
use std::time::{Duration, Instant};

use shmpi::error::TransportError;
use shmpi::transport::{Source, TagMatch, Transport};

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
/// use shmpi_cli::bench::alltoall;
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
pub fn run<T: Transport>(t: &mut T, per_peer: usize, size: usize) -> Result<Option<f64>, T::Error> {
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
        while let Some(m) = t
            .recv_matching(Source::Any, TagMatch::Tag(TAG), Wait::Now)
            .arrived()?
        {
            check(&m.data, m.source, &mut next_from)?;
            received += 1;
        }
    }
    while received < expected {
        let m = t.recv(Source::Any, TAG, Wait::Forever)?;
        check(&m.data, m.source, &mut next_from)?;
        received += 1;
    }
    t.barrier()?;
    let secs = start.elapsed().as_secs_f64();
    Ok((me == 0).then(|| (n * expected) as f64 / secs))
}

/// Messages per peer of the calibration round of [`steady_rate`].
const CALIBRATION_PER_PEER: usize = 200;

/// The job's steady all-to-all rate: calibration rounds from
/// 200 messages per peer, four times more each, until
/// one lasts a quarter of `target` (they also bring every rank up to
/// speed), then a run sized from the last to last about `target`; rank 0
/// decides the sizes and broadcasts them. Returns, on rank 0, what the
/// sized run measured ([`Steady`]); `None` elsewhere. Collective.
///
/// # Errors
///
/// As [`run`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmpi_cli::bench::alltoall;
/// use shmpi::mailbox::{MailboxGroup, MailboxOptions};
///
/// let ranks = MailboxGroup::threads(2, &MailboxOptions::default())?;
/// let out: Vec<_> = std::thread::scope(|s| {
///     let h: Vec<_> = ranks
///         .into_iter()
///         .map(|mut r| s.spawn(move || alltoall::steady_rate(&mut r, Duration::from_millis(20), 64)))
///         .collect();
///     h.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// let steady = out[0].as_ref().unwrap().unwrap();
/// assert!(steady.rate > 0.0 && steady.messages > 0);
/// # Ok::<(), shmpi::Error>(())
/// ```
pub fn steady_rate<T: Transport>(
    t: &mut T,
    target: Duration,
    size: usize,
) -> Result<Option<Steady>, T::Error> {
    let n = t.size();
    // Never more than 50 M messages in one run.
    let most = (50_000_000 / (n * n.saturating_sub(1)).max(1)) as u64;
    let mut per_peer = CALIBRATION_PER_PEER as u64;
    let final_size = loop {
        let start = Instant::now();
        run(t, per_peer as usize, size)?;
        let took = start.elapsed().as_secs_f64();
        // [next size, 1 when it is the final run's]
        let mut decision = vec![0u64, 0];
        if t.rank() == 0 {
            let long_enough = took >= target.as_secs_f64() / 4.0 || per_peer >= most;
            decision = if long_enough {
                let scale = target.as_secs_f64() / took.max(1e-6);
                vec![((per_peer as f64 * scale) as u64).clamp(1, most), 1]
            } else {
                vec![(per_peer * 4).min(most), 0]
            };
        }
        t.broadcast(0, &mut decision)?;
        let (next, last) = (
            decision.first().copied().unwrap_or(1).max(1),
            decision.get(1).copied().unwrap_or(1),
        );
        if last == 1 {
            break next;
        }
        per_peer = next;
    };
    let start = Instant::now();
    let rate = run(t, final_size as usize, size)?;
    let run_time = start.elapsed();
    let start = Instant::now();
    t.barrier()?;
    let barrier = start.elapsed();
    Ok(rate.map(|rate| Steady {
        rate,
        run: run_time,
        barrier,
        messages: final_size * (n * n.saturating_sub(1)) as u64,
    }))
}

/// What [`steady_rate`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Steady {
    /// Messages per second, all ranks' messages together.
    pub rate: f64,
    /// Duration of the measured run (between its two barriers).
    pub run: Duration,
    /// One barrier of the job, measured after the run: what the closing
    /// barrier adds to the run.
    pub barrier: Duration,
    /// Messages of the measured run.
    pub messages: u64,
}

/// Checks that a message is the next one from its source.
fn check(data: &[u8], source: usize, next_from: &mut [u64]) -> Result<(), TransportError> {
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
        }),
    }
}
