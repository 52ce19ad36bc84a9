//! MPI under a real `mpirun`: the test binary launches itself through the
//! library's launcher (`shmpi::mpirun`) with a role; every rank runs the
//! role, and the test fails when any rank fails (mpirun exits non-zero).

mod common;

use common::ensure;
use shmpi::transport::{Arrival, Wait};

use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use shmpi::dsm::{ByteArray, DistArray};
use shmpi::mpi::{Mpi, MpiTransport, SharedComm, ThreadLevel};
use shmpi::mpirun::{flavour, launcher, Cluster, Flavour, Mpirun};
use shmpi::segment::Segment;
use shmpi::transport::{Source, TagMatch};
use shmpi::{MpiError, SegmentError};

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
    let mut trials = vec![
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
        Trial::test("hybrid_killed_rank_ends_the_job_leaving_nothing", || {
            killed_rank(None, "kill")
        }),
        Trial::test("dsm_suite_2_ranks_every_backend", || launch("dsm", 2, true)),
        Trial::test("dsm_suite_4_ranks_every_backend", || launch("dsm", 4, true)),
        Trial::test("dsm_suite_4_ranks_two_emulated_nodes", || {
            launch_with("dsm", 4, &[(shmpi::hybrid::RANKS_PER_NODE_ENV, "2")])
        }),
        // Open MPI's one-sided components only (MPICH has no `osc`).
        Trial::test("dsm_rma_refused_under_debian_osc_defaults", || {
            launch_with("dsm-refused", 2, &[("OMPI_MCA_osc", "^ucx,pt2pt")])
        })
        .with_ignored_flag(flavour(&launcher()) != Flavour::OpenMpi),
        Trial::test("dsm_dead_owner_ends_the_job_leaving_nothing", || {
            killed_rank(None, "dsm-kill")
        }),
    ];
    // Across network-namespace hosts (scripts/netns-cluster.sh sets
    // SHMPI_CLUSTER); elsewhere these are reported as ignored.
    let cluster = Cluster::from_env().unwrap_or_else(|e| panic!("{e}"));
    let in_cluster = cluster.is_some();
    let c1 = cluster.clone();
    trials.extend([
        Trial::test(
            "cluster_hybrid_two_hosts_share_memory_within_talk_tcp_between",
            || launch("hosts", 4, true),
        )
        .with_ignored_flag(!in_cluster),
        Trial::test(
            "cluster_killed_rank_ends_the_job_leaving_nothing",
            move || killed_rank(c1.as_ref(), "kill"),
        )
        .with_ignored_flag(!in_cluster),
        Trial::test("cluster_dsm_suite_two_hosts", || launch("dsm", 4, true))
            .with_ignored_flag(!in_cluster),
        Trial::test(
            "cluster_dsm_dead_owner_ends_the_job_leaving_nothing",
            move || killed_rank(cluster.as_ref(), "dsm-kill"),
        )
        .with_ignored_flag(!in_cluster),
    ]);
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}

/// In-place epochs on a node array: each rank writes its part through a
/// borrow, everyone reads the whole after the barrier; in debug builds an
/// overlapping claim fails on both ranks (at the later claim, and at the
/// epoch's end on both), and the array stays usable.
fn node_array_epochs(
    world: &shmpi::hybrid::HybridWorld,
    mut a: shmpi::hybrid::NodeArray<u64>,
) -> Result<(), Failed> {
    let (nr, nn) = a.node_rank();
    let (mine, len) = (a.part(), a.len());
    let backing = if a.is_mpi_window() {
        "window"
    } else {
        "segment"
    };
    let mut epoch = a.epoch();
    // SAFETY: the node's ranks write disjoint parts (NodeArray::part).
    let (_, out) = unsafe { epoch.borrow(0..0, mine.clone())? };
    for (k, v) in out.iter_mut().enumerate() {
        *v = ((mine.start + k) * 3) as u64;
    }
    let mut epoch = epoch.next(world)?;
    // SAFETY: nobody writes in this epoch.
    let (all, _) = unsafe { epoch.borrow(0..len, 0..0)? };
    ensure(
        all.iter().enumerate().all(|(i, &v)| v == (i * 3) as u64),
        || format!("{backing}: node rank {nr} read another's writes wrong"),
    )?;
    // A split epoch: arrive, then write the part late, then complete.
    let epoch = epoch.next(world)?;
    let mut late = epoch.arrive()?;
    // SAFETY: each rank writes only its own part, which no other rank
    // touches in this epoch or the next.
    let (_, out) = unsafe { late.borrow(0..0, mine.clone())? };
    out.iter_mut().for_each(|v| *v += 1);
    // The late writes may race with the others' next epoch (that is what
    // the late part allows), so the whole is read an epoch later (debug
    // builds report reading it at once as an overlapping claim).
    let mut epoch = late.wait(world)?.next(world)?;
    // SAFETY: nobody writes in this epoch.
    let (all, _) = unsafe { epoch.borrow(0..len, 0..0)? };
    ensure(
        all.iter()
            .enumerate()
            .all(|(i, &v)| v == (i * 3 + 1) as u64),
        || {
            format!(
                "{backing}: node rank {nr}: a late write was not visible after the split barrier"
            )
        },
    )?;
    // Bounds and a read/write overlap within one borrow are refused.
    // SAFETY: refused before any borrow is made.
    ensure(unsafe { epoch.borrow(0..len + 1, 0..0) }.is_err(), || {
        "out of bounds".into()
    })?;
    // SAFETY: as above.
    ensure(unsafe { epoch.borrow(0..10, 5..6) }.is_err(), || {
        "read/write overlap".into()
    })?;
    let epoch = epoch.next(world)?;
    if cfg!(debug_assertions) && nn > 1 {
        // Node ranks 0 and 1 claim overlapping writes; both must hear of it.
        let mut epoch = epoch;
        let number = epoch.number();
        let claim = match nr {
            0 => Some(0..10),
            1 => Some(5..15),
            _ => None,
        };
        let early = claim.map(|w| {
            // SAFETY: deliberately broken promise, caught by the claim
            // table; the borrow is never used.
            unsafe { epoch.borrow(0..0, w) }.map(drop)
        });
        let ended = epoch.next(world);
        if let Some(early) = early {
            let late = matches!(
                ended,
                Err(shmpi::Error::Sync(shmpi::SyncError::OverlappingClaim { epoch, other }))
                    if epoch == number && other == 1 - nr
            );
            ensure(late, || {
                format!("{backing}: node rank {nr}: the overlap was not reported at the epoch's end (claim: {early:?})")
            })?;
        } else {
            ended?;
        }
        // A fresh epoch works.
        let mut epoch = a.epoch();
        // SAFETY: disjoint parts again.
        let (_, out) = unsafe { epoch.borrow(0..0, mine)? };
        out.fill(7);
        epoch.next(world)?;
    }
    Ok(())
}

/// `launch` with extra environment variables for the ranks.
fn launch_with(role: &str, ranks: usize, env: &[(&str, &str)]) -> Result<(), Failed> {
    let mut job = Mpirun::new(ranks, std::env::current_exe()?)
        .env(ROLE, role)
        .timeout(Duration::from_secs(120));
    for (k, v) in env {
        job = job.env(k, v);
    }
    let status = job.command().status()?;
    ensure(status.success(), || {
        format!("mpirun -n {ranks} role {role} {env:?}: {status}")
    })
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
            common::transport_suite::run(&mut MpiTransport::new(mpi.dup_world()?))?;
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
            node_array_epochs(&world, world.node_array::<u64>(nn * 64 + 3)?)?;
            node_array_epochs(&world, world.node_window_array::<u64>(nn * 64 + 3)?)?;
            drop(w); // collective MPI_Win_free on every node rank
                     // A halo exchange with requests: small to the left, large (it
                     // streams through a mailbox ring) to the right.
            let n = shmpi::transport::Transport::size(&world);
            let (l, r) = ((me + n - 1) % n, (me + 1) % n);
            let (small, large) = (vec![me as u8; 1000], vec![me as u8; 200_000]);
            let from_left = world.irecv(l, 61)?;
            let from_right = world.irecv(r, 60)?;
            let to_left = world.isend(l, 60, &small)?;
            let to_right = world.isend(r, 61, &large)?;
            let _ = world.test_recv(&from_left)?; // overlap: poll while "computing"
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
            requests_in_posting_order(&mut world, me)?;
            shmpi::transport::Transport::barrier(&mut world)?;
            Ok(())
        }
        "threads" => role_threads(),
        "big" => role_big(),
        "hosts" => role_hosts(),
        "dsm" => role_dsm(),
        "dsm-refused" => {
            let mpi = Mpi::init(ThreadLevel::Multiple)?;
            let world = mpi.dup_world()?;
            match DistArray::<u64, _>::rma(&world, 10) {
                Err(shmpi::Error::Mpi(MpiError::OneSidedUnsupported { setting, .. })) => {
                    ensure(setting == "^ucx,pt2pt", || format!("setting {setting:?}"))?
                }
                other => return Err(format!("expected a refusal, got {other:?}").into()),
            }
            // The owner protocol needs no one-sided MPI.
            let mut a = DistArray::<u64, _>::owner(MpiTransport::new(world.dup()?), 10)?;
            a.fetch_add(9, 1)?;
            a.barrier()?;
            ensure(a.get(9)? == world.size() as u64, || {
                "owner protocol sum".into()
            })
        }
        "dsm-kill" => {
            let mpi = Mpi::init(ThreadLevel::Multiple)?;
            let world = shmpi::hybrid::HybridWorld::new(&mpi)?;
            let mut a = DistArray::<u64, _>::owner(world.dup()?, 100)?;
            a.barrier()?;
            if shmpi::transport::Transport::rank(&world) == 1 {
                nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL)?;
            }
            // Rank 1 owns elements 25..50: its reply never comes.
            let v = a.get(30)?;
            Err(format!("read {v} from a dead owner").into())
        }
        "kill" => {
            let mpi = Mpi::init(ThreadLevel::Multiple)?;
            let mut world = shmpi::hybrid::HybridWorld::new(&mpi)?;
            let _shared = world.node_array::<u64>(1 << 16)?;
            shmpi::transport::Transport::barrier(&mut world)?;
            if shmpi::transport::Transport::rank(&world) == 1 {
                nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL)?;
            }
            // Waits for a message the dead rank never sends: only the
            // launcher can end this.
            let m = shmpi::transport::Transport::recv(
                &mut world,
                Source::Rank(1),
                TagMatch::Any,
                Wait::Forever,
            )?;
            Err(format!("received {m:?} from a dead rank").into())
        }
        "fail" => {
            let mpi = Mpi::init(ThreadLevel::Single)?;
            let world = mpi.dup_world()?;
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
    // A second holder shares the same MPI (reference-counted); dropping it
    // finalises nothing while the first lives.
    let second = Mpi::init(ThreadLevel::Multiple)?;
    ensure(
        second.owns_mpi() && second.thread_level() == mpi.thread_level(),
        || "second handle shares the first's MPI".into(),
    )?;
    let third = second.clone();
    ensure(Mpi::holders() == 3, || {
        format!("holders: {}", Mpi::holders())
    })?;
    drop((second, third));
    ensure(Mpi::holders() == 1, || {
        format!("holders after drops: {}", Mpi::holders())
    })?;
    let world = mpi.dup_world()?;
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
            SharedComm::try_from(mpi.dup_world()?),
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
        ensure(world.recv(0, 99, Wait::Now).arrived()?.is_none(), || {
            "nothing with tag 99".into()
        })?;
        let st = world.probe(0, 3, Wait::Forever)?;
        ensure(st.len == 100 && st.source == 0 && st.tag == 3, || {
            format!("probe: {st:?}")
        })?;
        let mut small = [0u8; 10];
        match world.recv_into(0, 3, &mut small, Wait::Forever) {
            Err(MpiError::MessageTooLong {
                len: 100,
                capacity: 10,
            }) => {}
            other => return Err(format!("too long: {other:?}").into()),
        }
        // Kept: a later receive of any tag from 0 gets it first.
        let m = world.recv(0, TagMatch::Any, Wait::Forever)?;
        ensure(m.tag == 3 && m.data == [9u8; 100], || {
            "the kept message".into()
        })?;
        let mut buf = [0u8; 64];
        let st = world.recv_into(Source::Any, 4, &mut buf, Wait::Forever)?;
        ensure(&buf[..st.len] == b"second", || "second".into())?;
        let mut r = world.irecv(0, 5);
        while !r.test()? {}
        ensure(r.wait()?.data == b"non-blocking", || "irecv".into())?;
        ensure(
            matches!(
                world.recv(0, 77, Duration::from_millis(20)),
                Err(MpiError::Timeout { .. })
            ),
            || "timeout".into(),
        )?;
    }
    world.barrier()?;
    let comm = mpi.dup_world()?;
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

/// Killing a rank of a hybrid job (its peers blocked receiving from it)
/// ends the job non-zero within the launcher's timeout, and leaves nothing
/// of shmpi's in /dev/shm — on network-namespace hosts, in any host's
/// private /dev/shm, as each host's daemon recorded it when it ended.
fn killed_rank(cluster: Option<&Cluster>, role: &str) -> Result<(), Failed> {
    let shm = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(shmpi::segment::UNIQUE_PREFIX))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let (before, reports_before) = (shm(), cluster.map(|c| c.leftovers().len()));
    let timeout = Duration::from_secs(60);
    let start = std::time::Instant::now();
    let status = Mpirun::new(4, std::env::current_exe()?)
        .cluster(cluster.cloned())
        .env(ROLE, role)
        .env(shmpi::hybrid::RANKS_PER_NODE_ENV, "2")
        .timeout(timeout)
        .command()
        .status()?;
    let took = start.elapsed();
    eprintln!("a killed rank ended the job in {took:?}: {status}");
    ensure(!status.success(), || "the job succeeded".into())?;
    ensure(took < timeout + Duration::from_secs(30), || {
        format!("the job outlived the launcher's timeout: {took:?}")
    })?;
    let left: Vec<String> = shm().into_iter().filter(|n| !before.contains(n)).collect();
    ensure(left.is_empty(), || format!("left in /dev/shm: {left:?}"))?;
    if let (Some(c), Some(n)) = (cluster, reports_before) {
        // Every host's daemon reports when its namespace ends.
        let hosts = c.hosts().len();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while c.leftovers().len() < n + hosts && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let reports = c.leftovers();
        ensure(reports.len() >= n + hosts, || {
            format!("{} of {hosts} hosts reported", reports.len() - n)
        })?;
        for (host, names) in reports {
            ensure(names.is_empty(), || format!("left on {host}: {names:?}"))?;
        }
    }
    Ok(())
}

/// Across network-namespace hosts: ranks are grouped by host (each host
/// its own node, by host name), a segment is visible on its own host only
/// (each host has its own /dev/shm), traffic inside a host went through
/// the node's mailboxes, and the generic suite passes.
fn role_hosts() -> Result<(), Failed> {
    use shmpi::transport::Transport;
    let mpi = Mpi::init(ThreadLevel::Multiple)?;
    let mut world = shmpi::hybrid::HybridWorld::new(&mpi)?;
    let me = world.rank();
    ensure(
        std::env::var("UCX_TLS").as_deref() == Ok("tcp,self"),
        || "the launcher did not restrict UCX to TCP".into(),
    )?;
    let host = nix::unistd::gethostname()?.to_string_lossy().into_owned();
    let host_id = host.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let hosts = world.world().allgather_u64(host_id)?;
    let mut distinct = hosts.clone();
    distinct.sort_unstable();
    distinct.dedup();
    ensure(distinct.len() == 2, || {
        format!("{} host names", distinct.len())
    })?;
    for (r, &h) in hosts.iter().enumerate() {
        ensure(world.is_local(r) == (h == host_id), || {
            format!("rank {me} on {host}: placement of rank {r}")
        })?;
    }
    // Rank 0 makes a segment; its name opens on rank 0's host only.
    let seg = if me == 0 {
        let name = shmpi::segment::SegmentName::unique("hosts");
        Some((Segment::builder(name.as_str()).size(4096).create()?, name))
    } else {
        None
    };
    let mut name = seg
        .as_ref()
        .map(|(_, n)| n.as_str().as_bytes().to_vec())
        .unwrap_or_default();
    world.broadcast(0, &mut name)?;
    let name = shmpi::segment::SegmentName::new(std::str::from_utf8(&name)?)?;
    if me != 0 {
        match Segment::builder(name.as_str()).open() {
            Ok(_) => ensure(world.is_local(0), || {
                format!("rank {me} on {host} opened rank 0's segment from another host")
            })?,
            Err(e) => ensure(
                !world.is_local(0) && matches!(e, SegmentError::NotFound { .. }),
                || format!("rank {me} on {host}: {e}"),
            )?,
        }
    }
    world.barrier()?;
    drop(seg);
    common::transport_suite::run(&mut world)?;
    // The suite's messages to ranks on this host went through its mailboxes.
    let group = world.node_mailbox().ok_or("no node mailbox")?;
    let (mine, local) = (world.node().rank(), world.node().size());
    let mut through_shm = 0;
    for peer in (0..local).filter(|&p| p != mine) {
        let c = group.counters(mine, peer)?.ok_or("no counters")?;
        ensure(c.messages > 0, || {
            format!("rank {me}: nothing went through shared memory to node rank {peer}")
        })?;
        through_shm += c.messages;
    }
    world.barrier()?;
    eprintln!("rank {me} on host {host}: {local} ranks share memory, {through_shm} messages sent through it");
    Ok(())
}

/// The distributed-array suite over every backend: the owner protocol on
/// a duplicated communicator, with a progress thread, on a duplicated
/// hybrid world, and MPI one-sided operations.
fn role_dsm() -> Result<(), Failed> {
    let mpi = Mpi::init(ThreadLevel::Multiple)?;
    let world = mpi.dup_world()?;
    common::dsm_suite::run(&mut |len| {
        DistArray::<u64, _>::owner(MpiTransport::new(world.dup()?), len)
    })?;
    common::dsm_suite::run(&mut |len| DistArray::<u64, _>::with_progress_thread(&world, len))?;
    let hybrid = shmpi::hybrid::HybridWorld::new(&mpi)?;
    common::dsm_suite::run(&mut |len| DistArray::<u64, _>::owner(hybrid.dup()?, len))?;
    common::dsm_suite::run(&mut |len| DistArray::<u64, _>::rma(&world, len))?;
    common::dsm_suite::run_bytes(&mut |len, elem| ByteArray::owner(hybrid.dup()?, len, elem))?;
    common::dsm_suite::run_bytes(&mut |len, elem| ByteArray::rma(&world, len, elem))?;
    Ok(())
}

fn role_threads() -> Result<(), Failed> {
    let mpi = Mpi::init(ThreadLevel::Multiple)?;
    ensure(mpi.thread_level() == ThreadLevel::Multiple, || {
        format!("granted {:?}", mpi.thread_level())
    })?;
    let world = SharedComm::try_from(mpi.dup_world()?)?;
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
                            let m = world.recv(0, t, Wait::Forever)?;
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
    let world = mpi.dup_world()?;
    let len = (1usize << 31) + 5;
    if world.rank() == 0 {
        let mut data = vec![7u8; len];
        data[len - 1] = 42;
        data[1 << 30] = 1;
        world.send(1, 1, &data)?;
    } else {
        let st = world.probe(0, 1, Wait::Forever)?;
        ensure(st.len == 1 << 31, || {
            format!("probe sees the block part: {}", st.len)
        })?;
        let m = world.recv(0, 1, Wait::Forever)?;
        ensure(m.data.len() == len, || format!("length {}", m.data.len()))?;
        ensure(
            m.data[len - 1] == 42 && m.data[1 << 30] == 1 && m.data[5] == 7,
            || "content".into(),
        )?;
    }
    world.barrier()?;
    Ok(())
}

/// Receive requests on a hybrid world are matched in posting order and
/// before later blocking receives, whichever is tested first; a request
/// dropped after matching gives its message back; a message too long for
/// a buffer stays; another world's request and bad arguments are refused.
fn requests_in_posting_order(
    world: &mut shmpi::hybrid::HybridWorld,
    me: usize,
) -> Result<(), Failed> {
    use shmpi::transport::Transport;
    let n = world.size();
    let (l, r) = ((me + n - 1) % n, (me + 1) % n);
    let first = world.irecv(l, 70)?;
    let second = world.irecv(l, 70)?;
    let any = world.irecv(Source::Any, 71)?;
    for (tag, byte) in [(70, 1u8), (70, 2), (71, 3), (71, 4)] {
        world.send(r, tag, &[byte])?;
    }
    let status = world.await_recv(&second, Wait::Forever)?;
    ensure(status.len == 1 && status.source == l, || {
        format!("rank {me}: {status:?}")
    })?;
    let got = world.wait_recv(second)?.data;
    ensure(got == [2], || {
        format!("rank {me}: the second request got {got:?}")
    })?;
    let blocking = world.recv(l, 71, Wait::Forever)?.data;
    ensure(blocking == [4], || {
        format!("rank {me}: a blocking receive after an open request got {blocking:?}")
    })?;
    let m = world.wait_recv(any)?;
    ensure(m.data == [3] && m.source == l, || {
        format!("rank {me}: {m:?}")
    })?;
    let got = world.wait_recv(first)?.data;
    ensure(got == [1], || {
        format!("rank {me}: the first request got {got:?}")
    })?;

    // A request dropped after it matched gives its message back, kept
    // while it does not fit.
    let dropped = world.irecv(l, 72)?;
    world.send(r, 72, &[5; 100])?;
    ensure(
        world.await_recv(&dropped, Wait::Forever)?.len == 100,
        || format!("rank {me}: length"),
    )?;
    drop(dropped);
    let mut small = [0u8; 10];
    ensure(
        matches!(
            world.recv_into(l, 72, &mut small, Wait::Now),
            Err(shmpi::Error::Mpi(shmpi::MpiError::MessageTooLong {
                len: 100,
                capacity: 10
            }))
        ),
        || format!("rank {me}: too long"),
    )?;
    let mut big = [0u8; 100];
    let (from, tag, len) = world.recv_into(l, 72, &mut big, Wait::Now)?;
    ensure((from, tag, len) == (l, 72, 100) && big == [5; 100], || {
        format!("rank {me}: the given-back message")
    })?;

    // Requests belong to their world; arguments are checked.
    let mut other = world.dup()?;
    let foreign = other.irecv(l, 73)?;
    ensure(world.test_recv(&foreign).is_err(), || {
        format!("rank {me}: another world's request accepted")
    })?;
    drop(foreign);
    ensure(
        world.irecv(n, 1).is_err() && world.irecv(l, -1).is_err(),
        || format!("rank {me}: bad irecv arguments accepted"),
    )?;
    let nothing = world.irecv(l, 74)?;
    ensure(world.test_recv(&nothing)?.is_none(), || {
        format!("rank {me}: phantom")
    })?;
    ensure(
        matches!(
            world.await_recv(&nothing, std::time::Duration::from_millis(5)),
            Err(shmpi::Error::Mpi(shmpi::MpiError::Timeout { .. }))
        ),
        || format!("rank {me}: timeout"),
    )?;
    drop(nothing);
    Transport::barrier(&mut other)?;
    Transport::barrier(world)?;
    Ok(())
}
