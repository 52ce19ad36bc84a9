//! Synchronisation primitives between the threads of one process, and their
//! error cases. (Between processes: tests/multiprocess.rs.)

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmpi::segment::{Segment, SegmentName};
use shmpi::sync::{Barrier, LockError, RobustMutex, Semaphore};
use shmpi::SyncError;

fn segment(tag: &str, size: usize) -> Segment {
    Segment::create(&SegmentName::unique(tag), size).unwrap()
}

#[test]
fn objects_that_were_never_created_are_refused() {
    let seg = segment("sync-uninit", 1024);
    seg.slice::<u8>(0, 1024).unwrap().fill(0x5A);
    assert!(matches!(
        Semaphore::open_in(&seg, 0),
        Err(SyncError::NotInitialised {
            expected: "semaphore",
            ..
        })
    ));
    assert!(matches!(
        RobustMutex::<u64>::open_in(&seg, 0),
        Err(SyncError::NotInitialised { .. })
    ));
    assert!(matches!(
        Barrier::open_in(&seg, 0),
        Err(SyncError::NotInitialised { .. })
    ));
}

#[test]
fn placement_is_checked() {
    let seg = segment("sync-place", 100);
    assert!(matches!(
        Semaphore::create_in(&seg, 64, 0),
        Err(SyncError::Placement(_))
    ));
    assert!(
        matches!(
            Semaphore::create_in(&seg, 8, 0),
            Err(SyncError::Placement(_))
        ),
        "misaligned"
    );
    assert!(matches!(
        Barrier::create_in(&seg, usize::MAX - 8, 2),
        Err(SyncError::Placement(_))
    ));
    assert!(matches!(
        Barrier::create_in(&seg, 0, 0),
        Err(SyncError::InvalidArgument(_))
    ));
}

#[test]
fn semaphore_counts_and_times_out() {
    let seg = segment("sync-sem", Semaphore::SIZE);
    let sem = Semaphore::create_in(&seg, 0, 3).unwrap();
    assert_eq!(sem.value().unwrap(), 3);
    for _ in 0..3 {
        sem.try_wait().unwrap();
    }
    assert_eq!(sem.try_wait(), Err(SyncError::WouldBlock));
    let t = Instant::now();
    assert_eq!(
        sem.wait_timeout(Duration::from_millis(30)),
        Err(SyncError::Timeout {
            waited: Duration::from_millis(30)
        })
    );
    assert!(t.elapsed() >= Duration::from_millis(30));
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(10));
            sem.post().unwrap();
        });
        sem.wait_timeout(Duration::from_secs(10)).unwrap();
    });
    assert!(matches!(
        Semaphore::create_in(&seg, 0, u32::MAX),
        Err(SyncError::InvalidArgument(_))
    ));
}

#[test]
fn mutex_excludes_threads_and_checks_value_size() {
    let seg = segment("sync-mutex", 256);
    let m = RobustMutex::<u64>::create_in(&seg, 0, 0).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1000 {
                    let g = m.lock().map_err(LockError::into_sync_error).unwrap();
                    g.update(|v| *v += 1);
                }
            });
        }
    });
    assert_eq!(
        m.lock().map_err(LockError::into_sync_error).unwrap().get(),
        4000
    );
    assert!(matches!(
        RobustMutex::<u32>::open_in(&seg, 0),
        Err(SyncError::Mismatch {
            found: 8,
            expected: 4,
            ..
        })
    ));
}

#[test]
fn mutex_try_and_timeout_forms() {
    let seg = segment("sync-mutex-t", 256);
    let m = RobustMutex::<[u32; 4]>::create_in(&seg, 0, [1, 2, 3, 4]).unwrap();
    let held = m.lock().map_err(LockError::into_sync_error).unwrap();
    // Relocking from the owning thread is reported, not a deadlock.
    assert!(matches!(
        m.try_lock(),
        Err(LockError::Sync(SyncError::WouldBlock))
    ));
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(
                m.try_lock(),
                Err(LockError::Sync(SyncError::WouldBlock))
            ));
            assert!(matches!(
                m.lock_timeout(Duration::from_millis(20)),
                Err(LockError::Sync(SyncError::Timeout { .. }))
            ));
        });
    });
    assert_eq!(held.get(), [1, 2, 3, 4]);
}

#[test]
fn barrier_timeout_withdraws_and_barrier_stays_usable() {
    let seg = segment("sync-barrier", Barrier::SIZE);
    let b = Barrier::create_in(&seg, 0, 3).unwrap();
    // Two of three arrive and time out: both withdraw.
    std::thread::scope(|s| {
        let h = s.spawn(|| b.wait_timeout(Duration::from_millis(20)));
        assert!(matches!(
            b.wait_timeout(Duration::from_millis(20)),
            Err(SyncError::Timeout { .. })
        ));
        assert!(matches!(h.join().unwrap(), Err(SyncError::Timeout { .. })));
    });
    // A full round still needs all three, and exactly one is the leader.
    let leaders = std::sync::atomic::AtomicU32::new(0);
    for _ in 0..50 {
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    if b.wait_timeout(Duration::from_secs(10)).unwrap().is_leader() {
                        leaders.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
    }
    assert_eq!(leaders.load(Ordering::Relaxed), 50);
}

#[test]
fn corrupt_barrier_state_is_an_error_not_a_hang() {
    let seg = segment("sync-barrier-bad", Barrier::SIZE);
    let b = Barrier::create_in(&seg, 0, 2).unwrap();
    // Another process scribbles "5 arrived" into the state word (offset 8).
    seg.atomic_u64(8).unwrap().store(5, Ordering::Release);
    assert!(matches!(
        b.wait_timeout(Duration::from_secs(1)),
        Err(SyncError::Mismatch { .. })
    ));
}
