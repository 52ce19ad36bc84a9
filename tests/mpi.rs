//! MPI under a real `mpirun`: the test binary launches itself through the
//! library's launcher (`shmpi::mpirun`) with a role; every rank runs the
//! role, and the test fails when any rank fails (mpirun exits non-zero).

mod common;

use common::ensure;

use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use shmpi::mpi::{Mpi, MpiTransport, SharedComm, ThreadLevel};
use shmpi::mpirun::Mpirun;
use shmpi::transport::{Source, TagMatch};
use shmpi::MpiError;

const ROLE: &str = "SHMPI_MPI_TEST_ROLE";

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        std::process::exit(match run_role(&role) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("role {role}: {}", e.message().unwrap_or("failed"));
                1
            }
        });
    }
    let trials = vec![
        Trial::test("mpirun_2_ranks_transport_suite", || {
            launch("suite", 2, true)
        }),
        Trial::test("mpirun_4_ranks_transport_suite", || {
            launch("suite", 4, true)
        }),
        Trial::test("mpirun_2_ranks_errors_are_returned", || {
            launch("errors", 2, true)
        }),
        Trial::test("mpirun_2_ranks_threads_on_a_shared_comm", || {
            launch("threads", 2, true)
        }),
        Trial::test("mpirun_2_ranks_message_above_2_gib", || {
            launch("big", 2, true)
        }),
        Trial::test("mpirun_a_failing_rank_fails_the_job", || {
            launch("fail", 2, false)
        }),
        Trial::test("hybrid_suite_2_ranks_one_node", || launch_hybrid(2, None)),
        Trial::test("hybrid_suite_4_ranks_one_node", || launch_hybrid(4, None)),
        Trial::test("hybrid_suite_4_ranks_two_emulated_nodes", || {
            launch_hybrid(4, Some(2))
        }),
        Trial::test("hybrid_suite_3_ranks_each_its_own_node", || {
            launch_hybrid(3, Some(1))
        }),
    ];
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}

fn launch(role: &str, ranks: usize, expect_success: bool) -> Result<(), Failed> {
    let status = Mpirun::new(ranks, std::env::current_exe()?)
        .env(ROLE, role)
        .timeout(Duration::from_secs(120))
        .threads_per_rank(if role == "threads" { 3 } else { 1 })
        .command()
        .status()?;
    if status.success() == expect_success {
        Ok(())
    } else {
        Err(format!("mpirun -n {ranks} role {role}: {status}").into())
    }
}

/// The transport suite over `HybridWorld`; with `ranks_per_node`, ranks
/// are grouped into emulated nodes (`SHMPI_RANKS_PER_NODE`), so messages
/// between groups go over MPI.
fn launch_hybrid(ranks: usize, ranks_per_node: Option<usize>) -> Result<(), Failed> {
    let mut job = Mpirun::new(ranks, std::env::current_exe()?)
        .env(ROLE, "hybrid")
        .timeout(Duration::from_secs(120));
    if let Some(k) = ranks_per_node {
        job = job.env(shmpi::hybrid::RANKS_PER_NODE_ENV, k.to_string());
    }
    let status = job.command().status()?;
    if status.success() {
        Ok(())
    } else {
        Err(
            format!("mpirun -n {ranks} hybrid (ranks per node {ranks_per_node:?}): {status}")
                .into(),
        )
    }
}

fn run_role(role: &str) -> Result<(), Failed> {
    match role {
        "suite" => {
            let mpi = Mpi::init(ThreadLevel::Single)?;
            common::transport_suite::run(&mut MpiTransport::new(mpi.world()?))?;
            Ok(())
        }
        "errors" => role_errors(),
        "hybrid" => {
            let mpi = Mpi::init(ThreadLevel::Multiple)?;
            let mut world = shmpi::hybrid::HybridWorld::new(&mpi)?;
            let me = shmpi::transport::Transport::rank(&world);
            if let Ok(k) = std::env::var(shmpi::hybrid::RANKS_PER_NODE_ENV) {
                let k: usize = k.parse()?;
                let n = shmpi::transport::Transport::size(&world);
                for r in 0..n {
                    ensure(world.is_local(r) == (r / k == me / k), || {
                        format!("rank {me}: placement of {r}")
                    })?;
                }
            }
            common::transport_suite::run(&mut world)?;
            // A node array: each rank of the node writes its block, then
            // after the node barrier everyone reads everyone's.
            let (nr, nn) = (world.node().rank(), world.node().size());
            let a = world.node_array::<u64>(nn * 100)?;
            for i in 0..100 {
                a.view().set(nr * 100 + i, (nr * 1000 + i) as u64);
            }
            world.node_barrier()?;
            for r in 0..nn {
                for i in 0..100 {
                    let v = a.view().get(r * 100 + i);
                    ensure(v == Some((r * 1000 + i) as u64), || {
                        format!("rank {me}: node array [{r}][{i}] = {v:?}")
                    })?;
                }
            }
            world.node_barrier()?;
            // The same through an MPI shared-memory window.
            let w = world.node_window_array::<u64>(nn * 100)?;
            ensure(w.is_mpi_window(), || "window backing".into())?;
            for i in 0..100 {
                w.view().set(nr * 100 + i, (nr * 7 + i) as u64);
            }
            w.barrier(&world)?;
            for r in 0..nn {
                for i in 0..100 {
                    let v = w.view().get(r * 100 + i);
                    ensure(v == Some((r * 7 + i) as u64), || {
                        format!("rank {me}: window [{r}][{i}] = {v:?}")
                    })?;
                }
            }
            w.barrier(&world)?;
            drop(w); // collective MPI_Win_free on every node rank
                     // A halo exchange with requests: small to the left, large (it
                     // streams through a mailbox ring) to the right.
            let n = shmpi::transport::Transport::size(&world);
            let (l, r) = ((me + n - 1) % n, (me + 1) % n);
            let (small, large) = (vec![me as u8; 1000], vec![me as u8; 200_000]);
            let mut from_left = world.irecv(l, 61);
            let from_right = world.irecv(r, 60);
            let to_left = world.isend(l, 60, &small)?;
            let to_right = world.isend(r, 61, &large)?;
            let _ = world.test_recv(&mut from_left)?; // overlap: poll while "computing"
            world.wait_send(to_left)?;
            world.wait_send(to_right)?;
            let got_left = world.wait_recv(from_left)?;
            let got_right = world.wait_recv(from_right)?;
            ensure(got_left.data == vec![l as u8; 200_000], || {
                format!("rank {me}: halo from the left")
            })?;
            ensure(got_right.data == vec![r as u8; 1000], || {
                format!("rank {me}: halo from the right")
            })?;
            shmpi::transport::Transport::barrier(&mut world)?;
            Ok(())
        }
        "threads" => role_threads(),
        "big" => role_big(),
        "fail" => {
            let mpi = Mpi::init(ThreadLevel::Single)?;
            let world = mpi.world()?;
            if world.rank() == 1 {
                std::process::exit(3);
            }
            world.barrier()?;
            Ok(())
        }
        other => Err(format!("unknown role {other}").into()),
    }
}

fn role_errors() -> Result<(), Failed> {
    let mpi = Mpi::init(ThreadLevel::Single)?;
    ensure(mpi.owns_mpi(), || "shmpi initialised MPI".into())?;
    ensure(
        matches!(
            Mpi::init(ThreadLevel::Single),
            Err(MpiError::AlreadyInitialized)
        ),
        || "second handle".into(),
    )?;
    let world = mpi.world()?;
    let (me, n) = (world.rank(), world.size());
    ensure(
        matches!(world.send(n, 0, b""), Err(MpiError::InvalidRank { rank, size }) if rank == n && size == n),
        || "rank outside".into(),
    )?;
    let ub = world.tag_ub();
    ensure(
        matches!(
            world.send(0, -1, b""),
            Err(MpiError::InvalidTag { tag: -1, .. })
        ),
        || "negative tag".into(),
    )?;
    if ub < i32::MAX {
        ensure(
            matches!(world.send(0, ub + 1, b""), Err(MpiError::InvalidTag { .. })),
            || "tag above UB".into(),
        )?;
    }
    ensure(
        matches!(
            SharedComm::try_from(mpi.world()?),
            Err(MpiError::ThreadLevel { .. })
        ),
        || "SharedComm needs MULTIPLE".into(),
    )?;
    if me == 0 {
        world.send(1, 3, &[9u8; 100])?;
        world.send(1, 4, b"second")?;
        let mut req = world.isend(1, 5, b"non-blocking")?;
        while !req.test()? {}
        req.wait()?;
    } else {
        ensure(world.try_recv(0, 99)?.is_none(), || {
            "nothing with tag 99".into()
        })?;
        let st = world.probe(0, 3)?;
        ensure(st.len == 100 && st.source == 0 && st.tag == 3, || {
            format!("probe: {st:?}")
        })?;
        let mut small = [0u8; 10];
        match world.recv_into(0, 3, &mut small) {
            Err(MpiError::MessageTooLong {
                len: 100,
                capacity: 10,
            }) => {}
            other => return Err(format!("too long: {other:?}").into()),
        }
        // Kept: a later receive of any tag from 0 gets it first.
        let m = world.recv(0, TagMatch::Any)?;
        ensure(m.tag == 3 && m.data == [9u8; 100], || {
            "the kept message".into()
        })?;
        let mut buf = [0u8; 64];
        let st = world.recv_into(Source::Any, 4, &mut buf)?;
        ensure(&buf[..st.len] == b"second", || "second".into())?;
        let mut r = world.irecv(0, 5);
        while !r.test()? {}
        ensure(r.wait()?.data == b"non-blocking", || "irecv".into())?;
        ensure(
            matches!(
                world.recv_timeout(0, 77, Duration::from_millis(20)),
                Err(MpiError::Timeout { .. })
            ),
            || "timeout".into(),
        )?;
    }
    world.barrier()?;
    let comm = mpi.world()?;
    drop(mpi); // finalises
    ensure(
        matches!(comm.send(0, 0, b""), Err(MpiError::Finalized)),
        || "use after finalize".into(),
    )?;
    ensure(
        matches!(Mpi::init(ThreadLevel::Single), Err(MpiError::Finalized)),
        || "init after finalize".into(),
    )?;
    Ok(())
}

fn role_threads() -> Result<(), Failed> {
    let mpi = Mpi::init(ThreadLevel::Multiple)?;
    ensure(mpi.thread_level() == ThreadLevel::Multiple, || {
        format!("granted {:?}", mpi.thread_level())
    })?;
    let world = SharedComm::try_from(mpi.world()?)?;
    let me = world.rank();
    std::thread::scope(|s| -> Result<(), Failed> {
        let handles: Vec<_> = (0..3)
            .map(|t: i32| {
                let world = &world;
                s.spawn(move || -> Result<(), MpiError> {
                    for k in 0..200u32 {
                        if me == 0 {
                            world.send_pod(1, t, &[t as u32, k])?;
                        } else {
                            let m = world.recv(0, t)?;
                            let v: Vec<u32> = m
                                .data
                                .chunks_exact(4)
                                .map(bytemuck::pod_read_unaligned)
                                .collect();
                            if v != [t as u32, k] {
                                return Err(MpiError::Timeout {
                                    waited: Duration::ZERO,
                                });
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "thread panicked")??;
        }
        Ok(())
    })?;
    world.barrier()?;
    Ok(())
}

fn role_big() -> Result<(), Failed> {
    let mpi = Mpi::init(ThreadLevel::Single)?;
    let world = mpi.world()?;
    let len = (1usize << 31) + 5;
    if world.rank() == 0 {
        let mut data = vec![7u8; len];
        data[len - 1] = 42;
        data[1 << 30] = 1;
        world.send(1, 1, &data)?;
    } else {
        let st = world.probe(0, 1)?;
        ensure(st.len == 1 << 31, || {
            format!("probe sees the block part: {}", st.len)
        })?;
        let m = world.recv(0, 1)?;
        ensure(m.data.len() == len, || format!("length {}", m.data.len()))?;
        ensure(
            m.data[len - 1] == 42 && m.data[1 << 30] == 1 && m.data[5] == 7,
            || "content".into(),
        )?;
    }
    world.barrier()?;
    Ok(())
}
