//! What a mailbox group costs as it grows: `scale.mem` (bytes every object
//! of the group occupies in `/dev/shm`, from `st_blocks`, measured from
//! outside after every ordered pair has exchanged a maximum-size loan and
//! a streamed message — the peak), `scale.setup` (from creating the group
//! to every member joined) and `scale.job` (a job that forms a group,
//! sends one message per ordered pair and ends), for N processes (`size`
//! is N). Compare with `mpi.setup` (`mpirun -n N` of an MPI hello, in
//! `shmpi bench`).
//!
//! The members are this program again: [`measure`] starts the current
//! executable with [`SCALE_ENV`] set, and the program's `main` must call
//! [`run_member_if_requested`] first.

use shmpi::transport::Wait;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Record, Report};
use shmpi::mailbox::launch::GroupLaunch;
use shmpi::mailbox::{MailboxGroup, MailboxOptions};
use shmpi::transport::{Source, TagMatch};

/// Set in a member's environment: `peak` or `job`.
pub const SCALE_ENV: &str = "SHMPI_BENCH_SCALE";

/// Group sizes measured: 2, 16, 64, 128 and 256 (quick: 16 and 128).
pub fn sizes(quick: bool) -> &'static [usize] {
    if quick {
        &[16, 128]
    } else {
        &[2, 16, 64, 128, 256]
    }
}

/// Measures every size of [`sizes`] with the default options.
///
/// # Errors
///
/// A member that failed, or a group that could not be created.
pub fn measure(quick: bool, progress: &mut dyn FnMut(&str)) -> Result<Report, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut report = Report::default();
    for &n in sizes(quick) {
        progress(&format!("scale: {n} processes"));
        report.records.extend(group(&exe, n, "peak")?);
        report.records.extend(group(&exe, n, "job")?);
    }
    Ok(report)
}

/// One job of `n` members of `program` in `mode` (`peak` or `job`).
fn group(program: &std::path::Path, n: usize, mode: &str) -> Result<Vec<Record>, String> {
    let err = |e: shmpi::Error| e.to_string();
    let start = Instant::now();
    let job = GroupLaunch::spawn(n, &MailboxOptions::default(), |_| {
        let mut cmd = Command::new(program);
        cmd.env(SCALE_ENV, mode);
        cmd
    })
    .map_err(err)?;
    let mut job = job;
    let mut records = Vec::new();
    if mode == "peak" {
        while MailboxGroup::joined(job.segment()).map_err(err)? < n {
            if start.elapsed() > Duration::from_secs(120) {
                return Err(format!("{n} members did not join in 120 s"));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let joined = start.elapsed();
        records.push(Record::from_samples(
            "scale.setup",
            "time_ms",
            n,
            &[joined.as_secs_f64() * 1e3],
        ));
    }
    let mut ended = vec![None; n];
    while ended.iter().any(Option::is_none) {
        for (rank, status) in ended.iter_mut().enumerate() {
            if status.is_none() {
                *status = job.try_wait(rank).map_err(err)?;
            }
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(format!("the {n}-process group still runs after 600 s"));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let elapsed = start.elapsed();
    if let Some(bad) = ended.iter().flatten().find(|s| !s.success()) {
        return Err(format!("a member of the {n}-process group failed: {bad}"));
    }
    if mode == "peak" {
        // The launcher's own handle: the name may be gone (the last member
        // out removes it), the object is not while it is mapped.
        let st = nix::sys::stat::fstat(job.segment().fd()).map_err(|e| e.to_string())?;
        let bytes = st.st_blocks as f64 * 512.0;
        records.push(Record::from_samples("scale.mem", "bytes", n, &[bytes]));
    } else {
        records.push(Record::from_samples(
            "scale.job",
            "time_ms",
            n,
            &[elapsed.as_secs_f64() * 1e3],
        ));
    }
    Ok(records)
}

/// When this process was started as a member by [`measure`]: runs the
/// member and exits. Call first thing in `main`.
pub fn run_member_if_requested() {
    let Ok(mode) = std::env::var(SCALE_ENV) else {
        return;
    };
    let code = match member(&mode) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("scale member: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn member(mode: &str) -> Result<(), shmpi::Error> {
    let mut m = MailboxGroup::from_env()?;
    let (me, n) = (m.rank(), m.members());
    let peers: Vec<usize> = (1..n).map(|k| (me + k) % n).collect();
    let expected = if mode == "peak" {
        // Start together (setup is measured up to here), then every
        // ordered pair: a maximum-size loan and a streamed message.
        shmpi::transport::Transport::barrier(&mut m)?;
        let big = vec![me as u8; m.max_record_payload() + 1];
        for &p in &peers {
            let max = m.max_record_payload();
            let mut loan = m.loan(p, 1, max)?;
            loan.write(0, &[me as u8; 8]);
            loan.commit();
            m.send(p, 2, &big)?;
        }
        2 * peers.len()
    } else {
        for &p in &peers {
            m.send(p, 1, &(me as u64).to_le_bytes())?;
        }
        peers.len()
    };
    let mut received = 0;
    while received < expected {
        match m.recv(Source::Any, TagMatch::Any, Wait::Forever) {
            Ok(_) => received += 1,
            // A member that is done leaves; its messages were delivered first.
            Err(shmpi::MailboxError::PeerLeft { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
