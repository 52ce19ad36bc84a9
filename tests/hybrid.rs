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
