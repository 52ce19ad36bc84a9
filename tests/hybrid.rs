//! Thread teams (no MPI needed). The hybrid world itself runs under mpirun:
//! tests/mpi.rs.

use proptest::prelude::*;
use shmpi::hybrid::{split_range, Team};

#[test]
fn team_rounds_see_each_others_writes_after_the_barrier() {
    // More threads than the 2 cores: the barrier must sleep, not spin.
    let mut team = Team::new(5, 1000 * 8).unwrap();
    let leaders = team.run(|me| -> shmpi::Result<u32> {
        let data = me.shared::<u64>(0, 1000)?;
        let mut leader = 0;
        for round in 1..=200u64 {
            for i in me.range(1000) {
                data.set(i, round * 10_000 + i as u64);
            }
            leader += u32::from(me.barrier()?.is_leader());
            for i in 0..1000 {
                assert_eq!(
                    data.get(i),
                    Some(round * 10_000 + i as u64),
                    "thread {} round {round}",
                    me.index()
                );
            }
            me.barrier()?;
        }
        Ok(leader)
    });
    let total: u32 = leaders.into_iter().map(Result::unwrap).sum();
    assert_eq!(total, 200, "one leader per first barrier of each round");
}

#[test]
fn team_views_are_checked_and_zero_threads_refused() {
    assert!(Team::new(0, 64).is_err());
    let mut team = Team::new(2, 64).unwrap();
    let r = team.run(|me| {
        (
            me.shared::<u64>(0, 8).is_ok(),
            me.shared::<u64>(8, 8).is_err(),
            me.size(),
        )
    });
    assert_eq!(r, vec![(true, true, 2); 2]);
}

proptest! {
    /// The ranges of all parts partition 0..len, in order, sizes differing
    /// by at most one.
    #[test]
    fn split_range_partitions(len in 0usize..10_000, parts in 1usize..64) {
        let ranges: Vec<_> = (0..parts).map(|i| split_range(len, parts, i)).collect();
        let mut next = 0;
        for r in &ranges {
            prop_assert_eq!(r.start, next);
            next = r.end;
        }
        prop_assert_eq!(next, len);
        let sizes: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
        prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
    }
}

#[test]
fn a_member_that_leaves_fails_the_others_barrier_instead_of_hanging() {
    let mut team = Team::new(3, 64).unwrap();
    let results = team.run(|me| {
        if me.index() == 2 {
            return Ok(()); // leaves without reaching the barrier
        }
        me.barrier().map(drop)
    });
    assert!(results[2].is_ok());
    for r in &results[..2] {
        assert!(
            matches!(r, Err(shmpi::SyncError::TeamMemberLeft { left }) if *left >= 1),
            "{r:?}"
        );
    }
    // The team is usable again afterwards.
    let again = team.run(|me| me.barrier().map(|_| me.index()));
    assert_eq!(
        again.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        [0, 1, 2]
    );
}

#[test]
fn funnelled_main_runs_on_the_calling_thread_beside_the_workers() {
    let mut team = Team::new(3, 3 * 8).unwrap();
    let caller = std::thread::current().id();
    let not_send = std::rc::Rc::new(5u64); // only the caller's thread may hold it
    let (main, workers) = team.run_funnelled(
        |me| {
            assert_eq!(std::thread::current().id(), caller);
            let v = me.shared::<u64>(0, 3).unwrap();
            v.set(0, *not_send);
            me.barrier().unwrap();
            me.barrier().unwrap();
            v.to_vec()
        },
        |me| {
            assert_ne!(std::thread::current().id(), caller);
            let v = me.shared::<u64>(0, 3).unwrap();
            me.barrier().unwrap();
            v.set(me.index(), v.get(0).unwrap() * me.index() as u64);
            me.barrier().unwrap();
            me.index()
        },
    );
    assert_eq!(main, [5, 5, 10]);
    assert_eq!(workers, [1, 2]);
}

#[test]
fn phased_team_computes_in_place_like_one_thread() {
    use shmpi::hybrid::BufferSplit;
    // A 1-D three-point smoothing of 1000 cells in units of 10, the first
    // and last two units member 0's, over 1..=4 threads: every thread count
    // gives the serial result bit for bit, and the buffers swap each phase.
    let (len, steps): (usize, usize) = (1000, 25);
    let serial = {
        let mut cur: Vec<f64> = (0..len).map(|i| (i % 17) as f64).collect();
        for _ in 0..steps {
            let next: Vec<f64> = (0..len)
                .map(|i| (cur[i.saturating_sub(1)] + cur[i] + cur[(i + 1).min(len - 1)]) / 3.0)
                .collect();
            cur = next;
        }
        cur
    };
    for threads in 1..=4 {
        let split = BufferSplit::new(len).unit(10).window(2..98);
        let mut team = Team::with_buffers::<f64>(threads, split).unwrap();
        for (i, v) in team.buffers_mut::<f64>().unwrap().0.iter_mut().enumerate() {
            *v = (i % 17) as f64;
        }
        let smooth = |read: &[f64], out: &mut [f64], at: usize| {
            for (k, o) in out.iter_mut().enumerate() {
                let i = at + k;
                *o = (read[i.saturating_sub(1)] + read[i] + read[(i + 1).min(len - 1)]) / 3.0;
            }
        };
        let results = team.run(|me| -> shmpi::Result<usize> {
            let mut phase = me.phase::<f64>()?;
            let first = phase.read_index();
            for _ in 0..steps {
                let v = phase.views();
                smooth(v.read, v.mine, v.at);
                if me.index() == 0 {
                    let tail_at = len - v.tail.len();
                    smooth(v.read, v.head, 0);
                    smooth(v.read, v.tail, tail_at);
                } else {
                    assert!(v.head.is_empty() && v.tail.is_empty());
                }
                phase = phase.next()?;
            }
            assert_eq!(phase.read_index(), (first + steps) % 2);
            Ok(first)
        });
        let firsts: Vec<usize> = results.into_iter().map(|r| r.unwrap()).collect();
        assert!(
            firsts.iter().all(|&f| f == firsts[0]),
            "members agree on roles"
        );
        let got = team.read_buffer::<f64>().unwrap();
        assert!(
            got.iter()
                .zip(&serial)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{threads} threads differ from the serial run"
        );
    }
}

#[test]
fn a_member_holding_a_phase_gets_no_second_phase_and_no_plain_barrier() {
    use shmpi::hybrid::BufferSplit;
    use shmpi::SyncError;
    let mut team = Team::with_buffers::<u32>(2, BufferSplit::new(64)).unwrap();
    let results = team.run(|me| -> shmpi::Result<()> {
        let phase = me.phase::<u32>()?;
        assert_eq!(me.phase::<u32>().unwrap_err(), SyncError::PhaseOpen);
        assert_eq!(me.barrier().unwrap_err(), SyncError::PhaseOpen);
        // Ending the phase (here by dropping it) frees the member again.
        drop(phase);
        me.barrier()?;
        let phase = me.phase::<u32>()?;
        phase.next()?;
        // The wrong element type is refused.
        assert!(matches!(
            me.phase::<u64>(),
            Err(SyncError::InvalidArgument(_))
        ));
        Ok(())
    });
    for r in results {
        r.unwrap();
    }
    // A team without buffers, and splits that do not fit, are refused.
    let mut plain = Team::new(1, 8).unwrap();
    assert!(plain.buffers_mut::<u32>().is_err());
    assert!(Team::with_buffers::<u8>(2, BufferSplit::new(10).unit(3)).is_err());
    assert!(Team::with_buffers::<u8>(2, BufferSplit::new(10).unit(2).window(3..6)).is_err());
}

#[test]
fn a_phase_waiting_for_a_member_that_left_fails_instead_of_hanging() {
    use shmpi::hybrid::BufferSplit;
    use shmpi::SyncError;
    let mut team = Team::with_buffers::<u8>(2, BufferSplit::new(8)).unwrap();
    let results = team.run(|me| -> shmpi::Result<()> {
        if me.index() == 1 {
            return Ok(()); // leaves at once
        }
        let phase = me.phase::<u8>()?;
        match phase.next() {
            Err(SyncError::TeamMemberLeft { left: 1 }) => Ok(()),
            other => panic!("expected TeamMemberLeft, got {other:?}"),
        }
    });
    for r in results {
        r.unwrap();
    }
}
