//! Starting the N processes of a mailbox group without MPI.
//!
//! [`GroupLaunch::spawn`] creates the group's segment, then starts one
//! process per member with [`GROUP_ENV`], [`RANK_ENV`] and [`SIZE_ENV`] set, so
//! each joins with [`MailboxGroup::from_env`]. The launcher owns the name:
//! it is removed when the launch is dropped, and any member still running
//! then is killed and reaped.

use crate::sync::wait::{Waiter, SETUP_POLL};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::{MailboxGroup, MailboxOptions, GROUP_ENV, RANK_ENV, SIZE_ENV};
use crate::error::{Error, MailboxError};
use crate::segment::{Segment, SegmentName};

/// True when a launcher started this process as a member of a group, so
/// [`MailboxGroup::from_env`] can join it: shmpi's (`shmpi run`,
/// [`GroupLaunch`]: [`GROUP_ENV`] is set) or Slurm's `srun` (a job step's
/// task, [`crate::slurm::SlurmTask`]). A program that is both launcher and
/// member asks this to know which it is.
///
/// ```
/// // Neither here (a doctest is no group member, nor a Slurm step).
/// if std::env::var_os("SHMPI_GROUP").is_none() && std::env::var_os("SLURM_STEP_ID").is_none() {
///     assert!(!shmpi::mailbox::launch::is_member());
/// }
/// ```
pub fn is_member() -> bool {
    std::env::var_os(GROUP_ENV).is_some()
        || crate::slurm::SlurmTask::from_env().is_ok_and(|t| t.is_some())
}

/// The running processes of one group.
///
/// # Examples
///
/// ```no_run
/// use std::process::Command;
/// use std::time::Duration;
/// use shmpi::mailbox::{launch::GroupLaunch, MailboxOptions};
///
/// let job = GroupLaunch::spawn(4, &MailboxOptions::default(), |_rank| {
///     Command::new("target/release/examples/mailbox_ring")
/// })?;
/// let statuses = job.wait(Duration::from_secs(60))?;
/// assert!(statuses.iter().all(|s| s.success()));
/// # Ok::<(), shmpi::Error>(())
/// ```
pub struct GroupLaunch {
    segment: Segment,
    children: Vec<Child>,
}

impl GroupLaunch {
    /// Creates a group of `members` and starts `command(rank)` for each.
    ///
    /// # Errors
    ///
    /// The group's creation errors, or [`MailboxError::Launch`] when a
    /// process cannot be started (those already started are killed).
    pub fn spawn(
        members: usize,
        options: &MailboxOptions,
        mut command: impl FnMut(usize) -> Command,
    ) -> Result<GroupLaunch, Error> {
        let name = SegmentName::unique("group");
        let segment = MailboxGroup::create_segment(&name, members, options)?;
        let mut launch = GroupLaunch {
            segment,
            children: Vec::with_capacity(members),
        };
        for rank in 0..members {
            let mut cmd = command(rank);
            cmd.env(GROUP_ENV, name.as_str())
                .env(RANK_ENV, rank.to_string())
                .env(SIZE_ENV, members.to_string());
            let child = cmd.spawn().map_err(|e| MailboxError::Launch {
                program: format!("{:?}", cmd.get_program()),
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            })?;
            launch.children.push(child);
        }
        Ok(launch)
    }

    /// The group's name.
    pub fn name(&self) -> &SegmentName {
        self.segment.name()
    }

    /// The group's segment, as the launcher created it: valid (mapped, with
    /// its descriptor) until the launch is dropped, even after the members
    /// have left and removed the name.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Takes member `rank`'s standard output and error, when its command
    /// piped them (`Stdio::piped()`), e.g. to forward them with a prefix.
    pub fn take_output(
        &mut self,
        rank: usize,
    ) -> Option<(
        Option<std::process::ChildStdout>,
        Option<std::process::ChildStderr>,
    )> {
        let child = self.children.get_mut(rank)?;
        Some((child.stdout.take(), child.stderr.take()))
    }

    /// Process id of member `rank`.
    pub fn pid(&self, rank: usize) -> Option<u32> {
        self.children.get(rank).map(Child::id)
    }

    /// Sends SIGKILL to member `rank` (for fault tests); it is reaped by
    /// [`wait`](Self::wait) or on drop.
    pub fn kill(&mut self, rank: usize) -> bool {
        self.children
            .get_mut(rank)
            .is_some_and(|c| c.kill().is_ok())
    }

    /// Member `rank`'s exit status if it has exited, without waiting
    /// (`None` also for a rank outside the job).
    ///
    /// # Errors
    ///
    /// [`MailboxError::Launch`] when `waitpid` fails.
    pub fn try_wait(&mut self, rank: usize) -> Result<Option<ExitStatus>, Error> {
        let Some(child) = self.children.get_mut(rank) else {
            return Ok(None);
        };
        child.try_wait().map_err(|e| {
            MailboxError::Launch {
                program: format!("member {rank}"),
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            }
            .into()
        })
    }

    /// Waits for every member to exit, up to `timeout`; then kills the rest.
    ///
    /// # Errors
    ///
    /// [`MailboxError::Timeout`] when some member was still running.
    pub fn wait(mut self, timeout: Duration) -> Result<Vec<ExitStatus>, Error> {
        let start = Instant::now();
        let mut statuses: Vec<Option<ExitStatus>> = vec![None; self.children.len()];
        let mut waiter = Waiter::new(&SETUP_POLL, None);
        loop {
            for (child, status) in self.children.iter_mut().zip(statuses.iter_mut()) {
                if status.is_none() {
                    *status = child.try_wait().ok().flatten();
                }
            }
            if statuses.iter().all(Option::is_some) {
                return Ok(statuses.into_iter().flatten().collect());
            }
            if start.elapsed() > timeout {
                return Err(MailboxError::Timeout { waited: timeout }.into());
            }
            waiter.idle();
        }
    }
}

impl Drop for GroupLaunch {
    fn drop(&mut self) {
        for child in &mut self.children {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
