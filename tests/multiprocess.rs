//! Tests with real processes: the test binary re-executes itself with a
//! role (environment variable `SHMPI_TEST_ROLE`), so parent and children
//! run the same code. A custom harness (libtest-mimic, which nextest
//! understands) lets a role run instead of the tests, and lets tests that
//! need root (mount namespaces, other uids) be reported as ignored when the
//! suite runs unprivileged.
//!
//! Cleanup: the parent creates every segment, so its `Segment` handle
//! unlinks the name on drop, also while unwinding from a failed assertion;
//! children are killed and reaped by [`ChildProcess`]'s drop and by a
//! watchdog timeout.

use shmpi::transport::{Arrival, Wait};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod common;

use common::ensure;

use libtest_mimic::{Arguments, Failed, Trial};
use shmpi::mailbox::launch::GroupLaunch;
use shmpi::mailbox::{MailboxGroup, MailboxOptions};
use shmpi::segment::{Segment, SegmentName};
use shmpi::sync::{Barrier, LockError, RobustMutex, Semaphore};
use shmpi::transport::{Source, TagMatch};
use shmpi::MailboxError;
use shmpi::{SegmentError, SpaceResource, SyncError};

const ROLE: &str = "SHMPI_TEST_ROLE";
const SEG: &str = "SHMPI_TEST_SEGMENT";
const ID: &str = "SHMPI_TEST_ID";
const PROCS: &str = "SHMPI_TEST_PROCS";

/// How long any child may run before the watchdog kills it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a role waits on a peer before it reports a hang.
const WAIT: Duration = Duration::from_secs(20);

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let code = match run_role(&role) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!(
                    "role {role} (pid {}): {}",
                    std::process::id(),
                    e.message().unwrap_or("failed")
                );
                1
            }
        };
        std::process::exit(code);
    }
    let root = nix::unistd::geteuid().is_root();
    let root_only = |t: Trial| if root { t } else { t.with_ignored_flag(true) };
    let trials = vec![
        Trial::test("segment_shared_by_2_processes", || shared_by(2)),
        Trial::test("segment_shared_by_4_processes", || shared_by(4)),
        Trial::test(
            "semaphore_100k_round_trips_between_processes",
            semaphore_round_trips,
        ),
        Trial::test("barrier_4_processes_1000_rounds", barrier_rounds),
        Trial::test("robust_mutex_owner_sigkilled", robust_mutex_owner_killed),
        Trial::test("mailbox_transport_suite_2_processes", || mailbox_suite(2)),
        Trial::test("mailbox_transport_suite_4_processes", || mailbox_suite(4)),
        Trial::test(
            "mailbox_peer_sigkilled_mid_stream_20_times",
            mailbox_kill_loop,
        ),
        Trial::test("mailbox_member_rejoins_after_crash", mailbox_rejoin),
        Trial::test(
            "mailbox_any_source_reports_each_death_once_460_rounds",
            mailbox_death_reported_once,
        ),
        Trial::test(
            "mailbox_live_corruption_word_by_word_no_crash_no_hang",
            mailbox_live_corruption,
        ),
        Trial::test("dsm_owner_protocol_over_mailboxes_4_processes", || {
            dsm_suite(4)
        }),
        Trial::test("dsm_owner_protocol_over_mailboxes_2_processes", || {
            dsm_suite(2)
        }),
        root_only(Trial::test(
            "full_dev_shm_is_no_space_and_leaves_nothing",
            full_dev_shm,
        )),
        root_only(Trial::test("default_mode_denies_another_uid", another_uid)),
        root_only(Trial::test(
            "object_owned_by_another_uid_is_refused",
            foreign_owner,
        )),
    ];
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}

// ---------------------------------------------------------------- harness

/// A child process that is killed and reaped if still running on drop.
struct ChildProcess {
    child: std::process::Child,
    role: String,
}

impl ChildProcess {
    fn spawn(mut cmd: Command, role: &str) -> ChildProcess {
        cmd.env(ROLE, role).stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning role {role}: {e}"));
        ChildProcess {
            child,
            role: role.to_owned(),
        }
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Waits for a successful exit, killing the child at the deadline.
    fn wait_ok(mut self) -> Result<(), Failed> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("role {} exited with {status}", self.role).into())
                };
            }
            if start.elapsed() > CHILD_TIMEOUT {
                return Err(format!(
                    "role {} still running after {CHILD_TIMEOUT:?}; killed",
                    self.role
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The test binary itself, set up to run `role` on segment `seg`.
fn role_command(seg: &SegmentName, id: usize, procs: usize) -> Command {
    role_command_at(
        &std::env::current_exe().expect("current_exe"),
        seg,
        id,
        procs,
    )
}

/// [`role_command`] for a copy of the test binary at `program`.
fn role_command_at(
    program: &std::path::Path,
    seg: &SegmentName,
    id: usize,
    procs: usize,
) -> Command {
    let mut cmd = Command::new(program);
    cmd.env(SEG, seg.as_str())
        .env(ID, id.to_string())
        .env(PROCS, procs.to_string());
    cmd
}

fn spawn(role: &str, seg: &SegmentName, id: usize, procs: usize) -> ChildProcess {
    ChildProcess::spawn(role_command(seg, id, procs), role)
}

fn wait_all(children: Vec<ChildProcess>) -> Result<(), Failed> {
    children.into_iter().try_for_each(ChildProcess::wait_ok)
}

fn env_usize(key: &str) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn run_role(role: &str) -> Result<(), Failed> {
    match role {
        "no-space" => return role_no_space(),
        "suite" => {
            return common::transport_suite::run(&mut MailboxGroup::from_env()?).map_err(Into::into)
        }
        "dsm" => return role_dsm(),
        "stream-victim" => return role_stream_victim(),
        "stream-survivor" => return role_stream_survivor(),
        "rejoiner" => return role_rejoiner(),
        "death-victim" | "death-streamer" => return role_death_sender(role),
        "death-survivor" => return role_death_survivor(),
        "corrupt-member" => return role_corrupt_member(),
        _ => {}
    }
    let name = SegmentName::new(&std::env::var(SEG)?)?;
    let (id, procs) = (env_usize(ID), env_usize(PROCS));
    match role {
        "share" => role_share(&name, id, procs),
        "pong" => role_pong(&name),
        "barrier" => role_barrier(&name, id, procs),
        "hold-mutex" => role_hold_mutex(&name),
        "other-uid" => role_other_uid(&name),
        other => Err(format!("unknown role {other}").into()),
    }
}

// ------------------------------------------- N processes share one segment

const BLOCK: usize = 1000;
const ARRAY_AT: usize = 64; // after a Barrier

fn value(id: usize, i: usize) -> u64 {
    ((id as u64) << 32) | (i as u64 * 7919)
}

fn shared_by(procs: usize) -> Result<(), Failed> {
    let name = SegmentName::unique("mp-share");
    let seg = Segment::create(&name, ARRAY_AT + procs * BLOCK * 8)?;
    Barrier::create_in(&seg, 0, procs as u32)?;
    let children = (0..procs)
        .map(|id| spawn("share", &name, id, procs))
        .collect();
    wait_all(children)?;
    let all = seg.slice::<u64>(ARRAY_AT, procs * BLOCK)?.to_vec();
    for (k, v) in all.iter().enumerate() {
        ensure(*v == value(k / BLOCK, k % BLOCK), || {
            format!("parent: element {k} is {v:#x}")
        })?;
    }
    Ok(())
}

/// Writes its own block, waits for everyone, checks everyone's blocks.
fn role_share(name: &SegmentName, id: usize, procs: usize) -> Result<(), Failed> {
    let seg = Segment::open(name)?;
    let all = seg.slice::<u64>(ARRAY_AT, procs * BLOCK)?;
    for i in 0..BLOCK {
        all.set(id * BLOCK + i, value(id, i));
    }
    Barrier::open_in(&seg, 0)?.wait_timeout(WAIT)?;
    for (k, v) in all.to_vec().iter().enumerate() {
        ensure(*v == value(k / BLOCK, k % BLOCK), || {
            format!("process {id}: element {k} is {v:#x}")
        })?;
    }
    println!(
        "process {id} of {procs}: wrote {BLOCK} values, read all {}",
        procs * BLOCK
    );
    Ok(())
}

// ------------------------------------- semaphore hand-off between processes

const ROUND_TRIPS: u64 = 100_000;

fn semaphore_round_trips() -> Result<(), Failed> {
    let name = SegmentName::unique("mp-sem");
    let seg = Segment::create(&name, 3 * 64)?;
    let ping = Semaphore::create_in(&seg, 0, 0)?;
    let pong = Semaphore::create_in(&seg, 64, 0)?;
    let slot = seg.atomic_u64(128)?;
    let child = spawn("pong", &name, 1, 2);
    for i in 0..ROUND_TRIPS {
        slot.store(2 * i, Ordering::Relaxed);
        ping.post()?;
        pong.wait_timeout(WAIT)?;
        let got = slot.load(Ordering::Relaxed);
        ensure(got == 2 * i + 1, || {
            format!("round {i}: expected {}, read {got}", 2 * i + 1)
        })?;
    }
    child.wait_ok()
}

fn role_pong(name: &SegmentName) -> Result<(), Failed> {
    let seg = Segment::open(name)?;
    let ping = Semaphore::open_in(&seg, 0)?;
    let pong = Semaphore::open_in(&seg, 64)?;
    let slot = seg.atomic_u64(128)?;
    for i in 0..ROUND_TRIPS {
        ping.wait_timeout(WAIT)?;
        let got = slot.load(Ordering::Relaxed);
        ensure(got == 2 * i, || format!("pong round {i}: read {got}"))?;
        slot.store(got + 1, Ordering::Relaxed);
        pong.post()?;
    }
    Ok(())
}

// ------------------------------------------------------ 4-process barrier

const BARRIER_ROUNDS: u64 = 1000;

fn barrier_rounds() -> Result<(), Failed> {
    let procs = 4;
    let name = SegmentName::unique("mp-barrier");
    let seg = Segment::create(&name, ARRAY_AT + procs * 8)?;
    Barrier::create_in(&seg, 0, procs as u32)?;
    let children = (0..procs)
        .map(|id| spawn("barrier", &name, id, procs))
        .collect();
    wait_all(children)
}

/// Each round: publish the round number, barrier, check that every process
/// published it, barrier (so nobody runs ahead into the next round).
fn role_barrier(name: &SegmentName, id: usize, procs: usize) -> Result<(), Failed> {
    let seg = Segment::open(name)?;
    let barrier = Barrier::open_in(&seg, 0)?;
    let slots = seg.slice::<u64>(ARRAY_AT, procs)?;
    let mut leaders = 0;
    for round in 1..=BARRIER_ROUNDS {
        slots.set(id, round);
        leaders += u32::from(barrier.wait_timeout(WAIT)?.is_leader());
        for k in 0..procs {
            let v = slots.get(k).unwrap_or(0);
            ensure(v == round, || {
                format!("process {id} round {round}: slot {k} holds {v}")
            })?;
        }
        barrier.wait_timeout(WAIT)?;
    }
    println!("process {id}: {BARRIER_ROUNDS} rounds, leader {leaders} times");
    Ok(())
}

// ------------------------------------------------- robust mutex, owner dies

fn mutex_layout() -> (usize, usize) {
    let sem_at = RobustMutex::<u64>::SIZE.next_multiple_of(Semaphore::ALIGN);
    (sem_at, sem_at + Semaphore::SIZE)
}

fn robust_mutex_owner_killed() -> Result<(), Failed> {
    let (sem_at, size) = mutex_layout();
    let name = SegmentName::unique("mp-mutex");
    let seg = Segment::create(&name, size)?;
    let mutex = RobustMutex::<u64>::create_in(&seg, 0, 0)?;
    let locked = Semaphore::create_in(&seg, sem_at, 0)?;

    let kill_holder = || -> Result<ChildProcess, Failed> {
        let child = spawn("hold-mutex", &name, 1, 2);
        locked.wait_timeout(WAIT)?;
        // Killed, not reaped: the kernel releases the robust futex at exit.
        nix::sys::signal::kill(child.pid(), nix::sys::signal::Signal::SIGKILL)?;
        Ok(child)
    };

    // 1. Owner dies; we are told, repair, mark consistent, carry on.
    let _first = kill_holder()?;
    match mutex.lock_timeout(WAIT) {
        Err(LockError::OwnerDied(recovered)) => {
            ensure(recovered.get() == 41, || {
                format!("value after crash: {}", recovered.get())
            })?;
            recovered.set(42);
            drop(recovered.make_consistent()?);
        }
        Ok(_) => return Err("lock succeeded without reporting the dead owner".into()),
        Err(LockError::Sync(e)) => return Err(e.into()),
    }
    let g = mutex
        .lock_timeout(WAIT)
        .map_err(LockError::into_sync_error)?;
    ensure(g.get() == 42, || {
        format!("value after recovery: {}", g.get())
    })?;
    drop(g);

    // 2. Owner dies again; this time the state is not made consistent.
    let _second = kill_holder()?;
    match mutex.lock_timeout(WAIT) {
        Err(LockError::OwnerDied(recovered)) => drop(recovered),
        other => return Err(format!("expected OwnerDied, got {:?}", other.err()).into()),
    }
    match mutex.lock_timeout(WAIT) {
        Err(LockError::Sync(SyncError::NotRecoverable)) => {}
        other => return Err(format!("expected NotRecoverable, got {:?}", other.err()).into()),
    }
    // Re-creating resets it.
    let mutex = RobustMutex::<u64>::create_in(&seg, 0, 7)?;
    let g = mutex.try_lock().map_err(LockError::into_sync_error)?;
    ensure(g.get() == 7, || "value after re-creation".into())?;
    Ok(())
}

fn role_hold_mutex(name: &SegmentName) -> Result<(), Failed> {
    let (sem_at, _) = mutex_layout();
    let seg = Segment::open(name)?;
    let mutex = RobustMutex::<u64>::open_in(&seg, 0)?;
    let locked = Semaphore::open_in(&seg, sem_at)?;
    let guard = mutex
        .lock_timeout(WAIT)
        .map_err(LockError::into_sync_error)?;
    guard.set(41);
    locked.post()?;
    std::thread::sleep(CHILD_TIMEOUT); // until SIGKILL
    Err("holder was not killed".into())
}

// --------------------------------------------- a full /dev/shm (root only)

fn full_dev_shm() -> Result<(), Failed> {
    // A private mount namespace with a 1 MiB tmpfs on /dev/shm; the role
    // runs inside it. The namespace (and its tmpfs) vanish with the child.
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o size=1m shmpi-test /dev/shm && exec \"$0\"")
        .arg(std::env::current_exe()?);
    ChildProcess::spawn(cmd, "no-space").wait_ok()
}

fn shm_entries() -> Result<Vec<String>, Failed> {
    Ok(std::fs::read_dir("/dev/shm")?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect())
}

fn role_no_space() -> Result<(), Failed> {
    let total = nix::sys::statvfs::statvfs("/dev/shm")?;
    let size = total.blocks() as u64 * total.fragment_size() as u64;
    ensure(size <= 1 << 20, || {
        format!("/dev/shm is {size} bytes: not the test's tmpfs")
    })?;
    let big = Segment::create(&SegmentName::unique("nospace"), 4 << 20);
    ensure(
        matches!(
            big,
            Err(SegmentError::NoSpace {
                resource: SpaceResource::Filesystem,
                ..
            })
        ),
        || format!("4 MiB in a 1 MiB /dev/shm: {big:?}"),
    )?;
    let first = Segment::create(&SegmentName::unique("nospace"), 600 << 10)?;
    let second = Segment::create(&SegmentName::unique("nospace"), 600 << 10);
    ensure(matches!(second, Err(SegmentError::NoSpace { .. })), || {
        format!("second 600 KiB: {second:?}")
    })?;
    let left = shm_entries()?;
    ensure(left == [first.name().file_name()], || {
        format!("after failures: {left:?}")
    })?;
    drop(first);
    let left = shm_entries()?;
    ensure(left.is_empty(), || format!("after drop: {left:?}"))?;
    println!(
        "1 MiB /dev/shm: 4 MiB and a second 600 KiB refused with NoSpace, nothing left behind"
    );
    Ok(())
}

// ----------------------------------------------- permissions (root only)

const NOBODY: u32 = 65534;

fn another_uid() -> Result<(), Failed> {
    use std::os::unix::process::CommandExt;
    let private = Segment::create(&SegmentName::unique("mp-private"), 64)?;
    let open = Segment::builder(SegmentName::unique("mp-open").as_str())
        .size(64)
        .mode(0o666)
        .create()?;
    open.atomic_u64(0)?.store(0x5EED, Ordering::Release);
    // `nobody` may not be able to reach this binary (a clone in a 0700
    // home directory): run a copy it can reach.
    let copy = ReachableCopy::of_current_exe()?;
    let mut cmd = role_command_at(&copy.path, private.name(), 0, 2);
    cmd.env("SHMPI_TEST_OPEN_SEGMENT", open.name().as_str())
        .uid(NOBODY)
        .gid(NOBODY);
    ChildProcess::spawn(cmd, "other-uid").wait_ok()
}

/// A copy of this test binary in a fresh directory under /tmp, readable
/// and executable by every user; removed on drop.
struct ReachableCopy {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl ReachableCopy {
    fn of_current_exe() -> std::io::Result<ReachableCopy> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("shmpi-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let path = dir.join("multiprocess");
        std::fs::copy(std::env::current_exe()?, &path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(ReachableCopy { dir, path })
    }
}

impl Drop for ReachableCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn role_other_uid(private: &SegmentName) -> Result<(), Failed> {
    let me = nix::unistd::geteuid().as_raw();
    ensure(me == NOBODY, || format!("running as uid {me}"))?;
    let denied = Segment::open(private);
    ensure(
        matches!(denied, Err(SegmentError::PermissionDenied { .. })),
        || format!("mode 0600 segment of another uid: {denied:?}"),
    )?;
    let open = SegmentName::new(&std::env::var("SHMPI_TEST_OPEN_SEGMENT")?)?;
    let refused = Segment::open(&open);
    ensure(
        matches!(refused, Err(SegmentError::ForeignOwner { owner: 0, .. })),
        || format!("mode 0666 segment owned by root, no opt-in: {refused:?}"),
    )?;
    let trusted = Segment::builder(open.as_str())
        .allow_foreign_owner(true)
        .open()?;
    let v = trusted.atomic_u64(0)?.load(Ordering::Acquire);
    ensure(v == 0x5EED, || {
        format!("read {v:#x} through the opted-in mapping")
    })?;
    println!(
        "uid {me}: 0600 segment denied, foreign 0666 segment refused without opt-in, read with it"
    );
    Ok(())
}

fn foreign_owner() -> Result<(), Failed> {
    let name = SegmentName::unique("mp-chown");
    let seg = Segment::create(&name, 64)?;
    nix::unistd::fchown(seg.fd(), Some(NOBODY.into()), Some(NOBODY.into()))?;
    let refused = Segment::open(&name);
    ensure(
        matches!(
            refused,
            Err(SegmentError::ForeignOwner {
                owner: NOBODY,
                expected: 0,
                ..
            })
        ),
        || format!("planted object: {refused:?}"),
    )?;
    ensure(
        matches!(
            Segment::open_raw(&name),
            Err(SegmentError::ForeignOwner { .. })
        ),
        || "open_raw must refuse it too".into(),
    )?;
    Segment::builder(name.as_str())
        .allow_foreign_owner(true)
        .open()?;
    Ok(())
}

// ------------------------------------------------ mailboxes between processes

fn self_command(role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.env(ROLE, role).stdin(Stdio::null());
    cmd
}

fn check_statuses(statuses: Vec<std::process::ExitStatus>) -> Result<(), Failed> {
    for (rank, status) in statuses.iter().enumerate() {
        ensure(status.success(), || {
            format!("member {rank} exited with {status}")
        })?;
    }
    Ok(())
}

fn mailbox_suite(procs: usize) -> Result<(), Failed> {
    let options = MailboxOptions {
        pool: 128 << 10,
        fragment: 16 << 10,
        ..MailboxOptions::default()
    };
    let job = GroupLaunch::spawn(procs, &options, |_| self_command("suite"))?;
    check_statuses(job.wait(CHILD_TIMEOUT)?)
}

fn dsm_suite(procs: usize) -> Result<(), Failed> {
    let job = GroupLaunch::spawn(procs, &MailboxOptions::default(), |_| self_command("dsm"))?;
    check_statuses(job.wait(CHILD_TIMEOUT)?)
}

/// The distributed-array suite over the owner protocol, each array on a
/// mailbox group of its own (named after the launched group, ephemeral).
fn role_dsm() -> Result<(), Failed> {
    let launched = MailboxGroup::from_env()?;
    let (id, procs) = (launched.rank(), launched.members());
    let base = std::env::var(shmpi::mailbox::GROUP_ENV)?;
    let mut arrays = 0;
    let mut make = || -> shmpi::Result<MailboxGroup> {
        arrays += 1;
        let bare = format!("{base}.dsm{arrays}");
        let name = SegmentName::new(&bare)
            .map_err(|source| shmpi::SegmentError::InvalidName { name: bare, source })?;
        let options = MailboxOptions {
            ephemeral: true,
            ..MailboxOptions::default()
        };
        MailboxGroup::create_or_join(&name, id, procs, &options)
    };
    common::dsm_suite::run(&mut |len| shmpi::dsm::DistArray::owner(make()?, len))?;
    common::dsm_suite::run_bytes(&mut |len, elem| {
        shmpi::dsm::ByteArray::owner(make()?, len, elem)
    })?;
    Ok(())
}

/// Rank 0 streams messages of random sizes (some larger than the ring) to
/// ranks 1 and 2 until it is killed; rank 1 receives from 0, rank 2 from any
/// source. Both must end with PeerDied { id: 0 } — within the 10 s watchdog.
/// Waits until `members` have joined `job`'s group. A member killed before
/// it joined never was one (nobody can report its death), so the kill
/// tests kill only after this.
fn all_joined(job: &GroupLaunch, members: usize) -> Result<(), Failed> {
    let by = Instant::now() + Duration::from_secs(10);
    while MailboxGroup::joined(job.segment())? < members {
        ensure(Instant::now() < by, || "the members did not join".into())?;
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

fn mailbox_kill_loop() -> Result<(), Failed> {
    let options = MailboxOptions {
        pool: 64 << 10,
        fragment: 16 << 10,
        ..MailboxOptions::default()
    };
    let mut detection = Vec::new();
    for round in 0..20 {
        let mut job = GroupLaunch::spawn(3, &options, |rank| {
            self_command(if rank == 0 {
                "stream-victim"
            } else {
                "stream-survivor"
            })
        })?;
        all_joined(&job, 3)?;
        std::thread::sleep(Duration::from_millis(30 + 7 * round));
        ensure(job.kill(0), || "could not kill the victim".into())?;
        let killed = Instant::now();
        let statuses = job.wait(Duration::from_secs(10))?;
        detection.push(killed.elapsed());
        for (rank, status) in statuses.iter().enumerate().skip(1) {
            ensure(status.success(), || {
                format!("round {round}: survivor {rank} exited with {status}")
            })?;
        }
    }
    detection.sort();
    println!(
        "death detected and both survivors exited: median {:?}, max {:?} (20 rounds; a figure, not an assertion)",
        detection[10], detection[19]
    );
    Ok(())
}

fn role_stream_victim() -> Result<(), Failed> {
    let mut m = MailboxGroup::from_env()?;
    let mut seq = 0u64;
    loop {
        let len = [0usize, 100, 5000, 50_000, 200_000][(seq % 5) as usize];
        for dest in 1..3 {
            m.send(dest, 1, &vec![(seq % 251) as u8; len])?;
        }
        seq += 1;
    }
}

fn role_stream_survivor() -> Result<(), Failed> {
    let mut m = MailboxGroup::from_env()?;
    let source = if m.rank() == 1 {
        Source::Rank(0)
    } else {
        Source::Any
    };
    let mut received = 0u64;
    loop {
        match m.recv(source, 1, Wait::Forever) {
            Ok(msg) => {
                let lens = [0usize, 100, 5000, 50_000, 200_000];
                let expect = lens[(received % 5) as usize];
                ensure(msg.data.len() == expect, || {
                    format!("message {received}: {} bytes", msg.data.len())
                })?;
                ensure(
                    msg.data.iter().all(|&b| b == (received % 251) as u8),
                    || "corrupt payload".into(),
                )?;
                received += 1;
            }
            Err(MailboxError::PeerDied { id: 0 }) => {
                return ensure(m.lost_wakeups() == 0, || {
                    format!("{} lost wake-ups", m.lost_wakeups())
                })
            }
            Err(e) => return Err(format!("after {received} messages: {e}").into()),
        }
    }
}

/// The parent is member 0; member 1 is a child that dies and is replaced.
fn mailbox_rejoin() -> Result<(), Failed> {
    let name = SegmentName::unique("mp-rejoin");
    let options = MailboxOptions::default();
    let _segment = MailboxGroup::create_segment(&name, 2, &options)?;
    let mut me = MailboxGroup::join(&name, 0, &options)?;
    let spawn_member = |incarnation: &str| {
        let mut cmd = self_command("rejoiner");
        cmd.env(shmpi::mailbox::GROUP_ENV, name.as_str())
            .env(shmpi::mailbox::RANK_ENV, "1")
            .env(shmpi::mailbox::SIZE_ENV, "2")
            .env("SHMPI_TEST_INCARNATION", incarnation);
        ChildProcess::spawn(cmd, "rejoiner")
    };
    // First incarnation: sends two messages, then hangs until killed.
    let first = spawn_member("first");
    ensure(me.recv(1, 1, Wait::Forever)?.data == b"first: one", || {
        "first message".into()
    })?;
    // Let its second message arrive, unread, before the crash.
    while me.counters(1, 0)?.map_or(0, |c| c.messages) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    nix::sys::signal::kill(first.pid(), nix::sys::signal::Signal::SIGKILL)?;
    ensure(me.recv(1, 1, Wait::Forever)?.data == b"first: two", || {
        "the dead member's last message is still delivered".into()
    })?;
    match me.recv(1, 1, Duration::from_secs(10)) {
        Err(MailboxError::PeerDied { id: 1 }) => {}
        other => return Err(format!("expected PeerDied, got {other:?}").into()),
    }
    // Second incarnation joins under the same id and carries on.
    let second = spawn_member("second");
    ensure(me.recv(1, 1, Wait::Forever)?.data == b"second: one", || {
        "rejoined member's message".into()
    })?;
    me.send(1, 2, b"welcome back")?;
    match me.recv(1, 1, Duration::from_secs(10)) {
        Err(MailboxError::PeerLeft { id: 1 }) => {}
        other => return Err(format!("expected PeerLeft, got {other:?}").into()),
    }
    second.wait_ok()?;
    drop(first);
    Ok(())
}

fn role_rejoiner() -> Result<(), Failed> {
    let incarnation = std::env::var("SHMPI_TEST_INCARNATION")?;
    let mut m = MailboxGroup::from_env()?;
    m.send(0, 1, format!("{incarnation}: one").as_bytes())?;
    if incarnation == "first" {
        m.send(0, 1, b"first: two")?;
        std::thread::sleep(CHILD_TIMEOUT); // until SIGKILL
        return Err("not killed".into());
    }
    let reply = m.recv(0, 2, Wait::Forever)?;
    ensure(reply.data == b"welcome back", || "reply".into())?;
    Ok(())
}

// ------------------------------------- a death is reported exactly once

/// Rounds of [`mailbox_death_reported_once`]: 460 catch a 1 % defect with
/// 99 % probability. `SHMPI_KILL_ROUNDS` overrides.
fn kill_rounds() -> usize {
    std::env::var("SHMPI_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(460)
}

/// A small deterministic generator (xorshift) for the roles' timings.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the
/// machine, so a child's "seen at" compares with the parent's "killed at".
fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Issue 12, defect 1. Member 0 (the victim) and member 1 (the streamer)
/// send numbered messages to member 2 in bursts with pauses of about one
/// liveness slice; member 2 receives from any source. The victim is
/// SIGKILLed at a random moment. Member 2 must see every message of each
/// sender in order, `PeerDied { id: 0 }` exactly once (after the victim's
/// last message), `PeerLeft { id: 1 }` exactly once, then `AllPeersGone`
/// — all within its timeouts. Before the fix the death was dropped when
/// the liveness check found it together with a message (~1 % of rounds).
fn mailbox_death_reported_once() -> Result<(), Failed> {
    let options = MailboxOptions {
        pool: 32 << 10,
        fragment: 8 << 10,
        ..MailboxOptions::default()
    };
    let rounds = kill_rounds();
    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
    let mut detection = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let mut job = GroupLaunch::spawn(3, &options, |rank| {
            let mut cmd = self_command(["death-victim", "death-streamer", "death-survivor"][rank]);
            cmd.env(
                "SHMPI_TEST_SEED",
                (round as u64 * 7919 + rank as u64 + 1).to_string(),
            );
            if rank == 2 {
                cmd.stdout(Stdio::piped());
            }
            cmd
        })?;
        all_joined(&job, 3)?;
        std::thread::sleep(Duration::from_millis(5 + rng.below(40)));
        ensure(job.kill(0), || "could not kill the victim".into())?;
        let killed = monotonic_ns();
        let (stdout, _) = job.take_output(2).unwrap_or((None, None));
        let statuses = job.wait(CHILD_TIMEOUT)?;
        for (rank, status) in statuses.iter().enumerate().skip(1) {
            ensure(status.success(), || {
                format!("round {round}: member {rank} exited with {status}")
            })?;
        }
        let mut out = String::new();
        if let Some(mut stdout) = stdout {
            std::io::Read::read_to_string(&mut stdout, &mut out)?;
        }
        let seen: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("death-seen "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("round {round}: survivor printed {out:?}"))?;
        detection.push(Duration::from_nanos(seen.saturating_sub(killed)));
    }
    detection.sort();
    println!(
        "{rounds} rounds: every death reported exactly once after the victim's last message; \
         kill to report median {:?}, max {:?} (a figure, not an assertion)",
        detection[rounds / 2],
        detection[rounds - 1]
    );
    Ok(())
}

/// Members 0 and 1 of [`mailbox_death_reported_once`]: numbered messages
/// (some streamed: larger than the 16 KiB ring) to member 2, in bursts.
/// The victim sends until killed, the streamer 10 bursts, then leaves.
fn role_death_sender(role: &str) -> Result<(), Failed> {
    let mut m = MailboxGroup::from_env()?;
    let mut rng = Xorshift(std::env::var("SHMPI_TEST_SEED")?.parse()?);
    let bursts = if role == "death-victim" {
        usize::MAX
    } else {
        10
    };
    let mut seq = 0u64;
    for _ in 0..bursts {
        for _ in 0..1 + rng.below(4) {
            let len = [8, 8, 100, 3000, 20_000][rng.below(5) as usize];
            let mut msg = vec![seq as u8; len];
            msg[..8].copy_from_slice(&seq.to_le_bytes());
            m.send_timeout(2, 1, &msg, WAIT)?;
            seq += 1;
        }
        std::thread::sleep(Duration::from_micros(2_000 + rng.below(10_000)));
    }
    Ok(())
}

/// Member 2 of [`mailbox_death_reported_once`].
fn role_death_survivor() -> Result<(), Failed> {
    let mut m = MailboxGroup::from_env()?;
    let mut next = [0u64; 2];
    let (mut died, mut left) = (0, 0);
    loop {
        match m.recv(Source::Any, 1, WAIT) {
            Ok(msg) => {
                ensure(msg.source < 2, || format!("message from {}", msg.source))?;
                ensure(died == 0 || msg.source != 0, || {
                    "a message from the victim after its death was reported".into()
                })?;
                let seq = u64::from_le_bytes(msg.data[..8].try_into()?);
                ensure(seq == next[msg.source], || {
                    format!(
                        "member {}: message {seq}, expected {}",
                        msg.source, next[msg.source]
                    )
                })?;
                ensure(msg.data[8..].iter().all(|&b| b == seq as u8), || {
                    "corrupt payload".into()
                })?;
                next[msg.source] += 1;
            }
            Err(MailboxError::PeerDied { id: 0 }) => {
                died += 1;
                if died == 1 {
                    println!("death-seen {}", monotonic_ns());
                }
            }
            Err(MailboxError::PeerLeft { id: 1 }) => left += 1,
            Err(MailboxError::AllPeersGone) => break,
            Err(e) => {
                return Err(format!("after {next:?} messages: {e}").into());
            }
        }
    }
    ensure(died == 1 && left == 1, || {
        format!("PeerDied reported {died} times, PeerLeft {left} times")
    })?;
    ensure(m.lost_wakeups() == 0, || {
        format!("{} lost wake-ups", m.lost_wakeups())
    })?;
    ensure(next[1] > 0, || "nothing from the streamer".into())
}

// ------------------------------------------------ corruption while running

/// Rounds of [`mailbox_live_corruption`] (`SHMPI_CORRUPTION_ROUNDS`
/// overrides), and rounds run under valgrind's memcheck on top, when
/// valgrind is installed (`SHMPI_CORRUPTION_VALGRIND_ROUNDS`).
fn corruption_rounds() -> (usize, usize) {
    let var = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let valgrind = Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (
        var("SHMPI_CORRUPTION_ROUNDS", 24),
        if valgrind {
            var("SHMPI_CORRUPTION_VALGRIND_ROUNDS", 2)
        } else {
            0
        },
    )
}

/// The words of a live group that another process may scribble on:
/// (offset in the object, width in bytes), in layout order.
fn corruption_targets(layout: &shmpi::mailbox::GroupLayout) -> Vec<(usize, usize)> {
    use shmpi::segment::HEADER_SIZE;
    let n = layout.params.members;
    // (offset, width) inside the header, a member block, a ring's control.
    const HEADER: [(usize, usize); 5] = [(8, 4), (16, 8), (24, 4), (28, 4), (32, 4)];
    // doorbell, sleeping flag, state, pid, incarnation, receive sleeps,
    // lost wake-ups, doorbell mode, fragments in use
    const MEMBER: [(usize, usize); 9] = [
        (0, 4),
        (4, 4),
        (8, 4),
        (12, 4),
        (16, 4),
        (24, 8),
        (32, 8),
        (40, 4),
        (64, 8),
    ];
    // head, receiver sleeps; tail, messages, bytes, sender sleeps
    const CONTROL: [(usize, usize); 6] = [(0, 8), (8, 8), (64, 8), (72, 8), (80, 8), (88, 8)];
    fn at(base: usize, words: &[(usize, usize)]) -> impl Iterator<Item = (usize, usize)> + '_ {
        words.iter().map(move |&(o, w)| (base + o, w))
    }
    let mut t: Vec<(usize, usize)> = at(0, &HEADER).collect();
    for id in 0..n {
        t.extend(at(layout.member_offset(id), &MEMBER));
    }
    for src in 0..n {
        for dst in (0..n).filter(|&d| d != src) {
            let r = layout.ring_offset(src, dst);
            t.extend(at(r, &CONTROL));
            // The first records: stamp, meta (length and flags), tag, and
            // where a streamed message's total length sits.
            let ring = r + 128;
            for k in 0..48 {
                let g = ring + k * layout.geometry.granularity();
                t.extend([(g, 8), (g + 8, 4), (g + 12, 4), (g + 16, 8)]);
            }
        }
    }
    t.into_iter().map(|(o, w)| (HEADER_SIZE + o, w)).collect()
}

/// A value to write over a word that holds `old`: the edges, near misses
/// and noise.
fn corrupt_value(rng: &mut Xorshift, old: u64, width: usize) -> u64 {
    let mask = if width == 4 {
        u64::from(u32::MAX)
    } else {
        u64::MAX
    };
    let v = match rng.below(8) {
        0 => 0,
        1 => mask,
        2 => old.wrapping_add(1 + rng.below(128)),
        3 => old.wrapping_sub(1 + rng.below(128)),
        4 => old ^ (1 << rng.below(width as u64 * 8)),
        5 => 1 << rng.below(width as u64 * 8),
        6 => mask >> 1,
        _ => rng.below(u64::MAX),
    };
    v & mask
}

/// Issue 12: while three members send and receive (every call in its
/// `_timeout` form, messages streamed and whole, loans, references), this
/// process scribbles on the group word by word: header, doorbells, member
/// states, ring indices, record stamps, lengths and tags, stream totals.
/// Every member must return an error or go on — no crash, abort or panic
/// (a non-zero exit or a signal), no call that returns later than its
/// deadline + 1 s (+ 5 s under valgrind), no invalid memory access (the
/// valgrind rounds; memcheck's exit code 97).
fn mailbox_live_corruption() -> Result<(), Failed> {
    let options = MailboxOptions {
        pool: 32 << 10,
        fragment: 8 << 10,
        ..MailboxOptions::default()
    };
    let (rounds, valgrind_rounds) = corruption_rounds();
    let mut rng = Xorshift(0xC0FF_EE00_D15E_A5E5);
    let mut writes = 0usize;
    let mut totals: std::collections::BTreeMap<String, u64> = Default::default();
    for round in 0..rounds + valgrind_rounds {
        let valgrind = round >= rounds;
        let mut job = GroupLaunch::spawn(3, &options, |rank| {
            let mut cmd = if valgrind {
                let mut v = Command::new("valgrind");
                v.args(["-q", "--error-exitcode=97", "--"])
                    .arg(std::env::current_exe().expect("current_exe"));
                v.env(ROLE, "corrupt-member").stdin(Stdio::null());
                v
            } else {
                self_command("corrupt-member")
            };
            cmd.env(
                "SHMPI_TEST_SEED",
                (round as u64 * 131 + rank as u64 + 7).to_string(),
            )
            .env("SHMPI_TEST_RUN_MS", if valgrind { "1500" } else { "400" })
            .env(
                "SHMPI_TEST_SLACK_MS",
                if valgrind { "5000" } else { "1000" },
            )
            .stdout(Stdio::piped());
            cmd
        })?;
        let seg = Segment::open_raw(job.name())?;
        let group = Segment::open(job.name())?;
        let report = MailboxGroup::inspect(&group)?;
        let layout = shmpi::mailbox::GroupParams {
            members: report.members.len(),
            lane: report.lane,
            granularity: options.granularity,
            fragment: report.fragment,
            fragments: report.fragments,
            flags: 0,
        }
        .validate(None)?;
        // Scribble only once every member is in (a header corrupted before
        // a join is the join's error, tested elsewhere).
        let joined = Instant::now();
        while MailboxGroup::inspect(&group)?
            .members
            .contains(&shmpi::mailbox::PeerStatus::Vacant)
        {
            ensure(joined.elapsed() < Duration::from_secs(60), || {
                "members did not join".into()
            })?;
            std::thread::sleep(Duration::from_millis(1));
        }
        let targets = corruption_targets(&layout);
        let mut next = rng.below(targets.len() as u64) as usize;
        let outputs: Vec<_> = (0..3).map(|r| job.take_output(r)).collect();
        let started = Instant::now();
        let limit = Duration::from_secs(if valgrind { 120 } else { 30 });
        let mut statuses = vec![None; 3];
        while statuses.iter().any(Option::is_none) {
            // One word every ~200 µs, in layout order from a random start.
            let (offset, width) = targets[next % targets.len()];
            next += 1;
            if width == 4 {
                let w = seg.atomic_u32(offset)?;
                let v = corrupt_value(&mut rng, w.load(Ordering::Relaxed).into(), 4);
                w.store(v as u32, Ordering::Relaxed);
            } else {
                let w = seg.atomic_u64(offset)?;
                let v = corrupt_value(&mut rng, w.load(Ordering::Relaxed), 8);
                w.store(v, Ordering::Relaxed);
            }
            writes += 1;
            std::thread::sleep(Duration::from_micros(200));
            for (rank, status) in statuses.iter_mut().enumerate() {
                if status.is_none() {
                    *status = job.try_wait(rank)?;
                }
            }
            ensure(started.elapsed() < limit, || {
                format!("round {round}: a member still runs after {limit:?} (hang)")
            })?;
        }
        for (rank, (status, out)) in statuses.into_iter().zip(outputs).enumerate() {
            let status = status.expect("waited");
            let mut text = String::new();
            if let Some((Some(mut stdout), _)) = out {
                std::io::Read::read_to_string(&mut stdout, &mut text)?;
            }
            ensure(status.success(), || {
                format!("round {round} (valgrind {valgrind}): member {rank} ended with {status}: {text}")
            })?;
            for line in text.lines() {
                if let Some((kind, count)) =
                    line.strip_prefix("count ").and_then(|l| l.rsplit_once(' '))
                {
                    *totals.entry(kind.to_owned()).or_default() += count.parse::<u64>()?;
                }
            }
        }
    }
    println!(
        "{rounds} rounds + {valgrind_rounds} under valgrind, {writes} words scribbled: \
         crashes 0, hangs 0; calls by outcome: {totals:?}"
    );
    Ok(())
}

/// A member of [`mailbox_live_corruption`]: random operations, each in
/// its `_timeout` (or `try_`) form, for `SHMPI_TEST_RUN_MS`; prints how
/// many calls ended in each outcome ("count KIND N"). A call that returns
/// more than `SHMPI_TEST_SLACK_MS` after its deadline fails the member.
fn role_corrupt_member() -> Result<(), Failed> {
    let ms = |k: &str| -> Result<Duration, Failed> {
        Ok(Duration::from_millis(std::env::var(k)?.parse()?))
    };
    let (run_for, slack) = (ms("SHMPI_TEST_RUN_MS")?, ms("SHMPI_TEST_SLACK_MS")?);
    let mut m = MailboxGroup::from_env()?;
    let mut rng = Xorshift(std::env::var("SHMPI_TEST_SEED")?.parse()?);
    let (id, n) = (m.rank(), m.members());
    let timeout = Duration::from_millis(20);
    let mut buf = vec![0u8; 64 << 10];
    let mut outcomes: std::collections::BTreeMap<String, u64> = Default::default();
    let start = Instant::now();
    while start.elapsed() < run_for {
        let peer = (id + 1 + rng.below(n as u64 - 1) as usize) % n;
        let len = [0, 8, 200, 3000, 12_000, 40_000][rng.below(6) as usize];
        let data = vec![id as u8; len];
        let began = Instant::now();
        let result = match rng.below(7) {
            0 | 1 => m.send_timeout(peer, 1, &data, timeout),
            2 => m.recv(Source::Any, TagMatch::Any, timeout).map(drop),
            3 => m
                .recv_into(peer, TagMatch::Any, &mut buf, timeout)
                .map(drop),
            4 => m
                .recv_ref(Source::Any, TagMatch::Any, timeout)
                .map(|r| drop(r.to_vec())),
            5 => m
                .loan_timeout(peer, 2, len.min(m.max_record_payload()), timeout)
                .map(|mut loan| {
                    loan.write(0, &[7; 8]);
                    loan.commit();
                }),
            _ => m.try_send(peer, 3, &data[..len.min(100)]).and_then(|()| {
                m.recv(Source::Any, TagMatch::Any, Wait::Now)
                    .arrived()
                    .map(drop)
            }),
        };
        let took = began.elapsed();
        ensure(took <= timeout + slack, || {
            format!("a call returned {took:?} after it began (timeout {timeout:?}): a hang")
        })?;
        let kind = match &result {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("{e:?}")
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("?")
                .to_owned(),
        };
        *outcomes.entry(kind).or_default() += 1;
    }
    for (kind, count) in outcomes {
        println!("count {kind} {count}");
    }
    Ok(())
}
