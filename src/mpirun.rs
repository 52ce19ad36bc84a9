//! Launching MPI jobs: the one place that knows how `mpirun` must be called
//! on these machines. Tests, examples, `scripts/mpirun.sh` and the `shmpi`
//! command all build their command lines here.
//!
//! What it knows (Open MPI 4.1, Debian; see DESIGN.md):
//! - as root, Open MPI refuses to start without `--allow-run-as-root`;
//! - more ranks than online CPUs needs `--oversubscribe`, and then
//!   `mpi_yield_when_idle` so that waiting ranks give their core away;
//! - a rank that runs several threads (or shares a core) must not be pinned
//!   to one core: `--bind-to none`;
//! - Debian's defaults leave only the `rdma` one-sided component, whose
//!   compare-and-swap crashes: `OMPI_MCA_osc=sm,ucx`;
//! - `--timeout` ends a hung job with a non-zero exit.
//!
//! MPICH's launcher (hydra) takes none of Open MPI's options; with it only
//! `-n`, the program and `MPIEXEC_TIMEOUT` are passed. `SHMPI_MPIRUN`
//! names another launcher than `mpirun` (e.g. `mpiexec.mpich`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::mailbox::online_cpus;

/// Which launcher `mpirun` on the `PATH` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Open MPI's `mpirun` (ORTE/PRRTE).
    OpenMpi,
    /// MPICH's `mpiexec` (hydra).
    Mpich,
}

/// Detects the launcher behind `launcher` (`mpirun --version`).
pub fn flavour(launcher: &Path) -> Flavour {
    let out = Command::new(launcher).arg("--version").output();
    match out {
        Ok(o)
            if String::from_utf8_lossy(&o.stdout).contains("HYDRA")
                || String::from_utf8_lossy(&o.stdout).contains("MPICH") =>
        {
            Flavour::Mpich
        }
        _ => Flavour::OpenMpi,
    }
}

/// A job to launch: builder for an `mpirun` command line.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmpi::mpirun::Mpirun;
///
/// let cmd = Mpirun::new(4, "target/release/examples/mpi_ring")
///     .timeout(Duration::from_secs(60))
///     .threads_per_rank(2)
///     .command();
/// let line: Vec<String> = std::iter::once(cmd.get_program())
///     .chain(cmd.get_args())
///     .map(|s| s.to_string_lossy().into_owned())
///     .collect();
/// assert!(line.contains(&"--bind-to".to_owned()));
/// assert!(line.ends_with(&["target/release/examples/mpi_ring".to_owned()]));
/// ```
#[derive(Debug, Clone)]
pub struct Mpirun {
    launcher: PathBuf,
    ranks: usize,
    threads_per_rank: usize,
    timeout: Option<Duration>,
    force_tcp: bool,
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    extra: Vec<OsString>,
}

impl Mpirun {
    /// `ranks` copies of `program`.
    pub fn new(ranks: usize, program: impl Into<OsString>) -> Mpirun {
        Mpirun {
            launcher: std::env::var_os("SHMPI_MPIRUN")
                .map_or_else(|| PathBuf::from("mpirun"), PathBuf::from),
            ranks,
            threads_per_rank: 1,
            timeout: None,
            force_tcp: false,
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// Threads each rank runs (more than one: ranks are not bound to a core).
    pub fn threads_per_rank(mut self, threads: usize) -> Mpirun {
        self.threads_per_rank = threads.max(1);
        self
    }

    /// Ends the whole job, non-zero, after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Mpirun {
        self.timeout = Some(timeout);
        self
    }

    /// Forces the network path between ranks (`--mca btl tcp,self`).
    pub fn force_tcp(mut self, tcp: bool) -> Mpirun {
        self.force_tcp = tcp;
        self
    }

    /// Appends program arguments.
    pub fn args<I, S>(mut self, args: I) -> Mpirun
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for every rank.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Mpirun {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Passes options to the launcher as they are.
    pub fn launcher_args<I, S>(mut self, args: I) -> Mpirun
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.extra.extend(args.into_iter().map(Into::into));
        self
    }

    /// True when the job has more ranks than this machine has online CPUs.
    pub fn oversubscribed(&self) -> bool {
        self.ranks > online_cpus()
    }

    /// The command line.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.launcher);
        if flavour(&self.launcher) == Flavour::OpenMpi {
            if nix::unistd::geteuid().is_root() {
                cmd.arg("--allow-run-as-root");
            }
            if self.oversubscribed() {
                cmd.arg("--oversubscribe");
                cmd.env("OMPI_MCA_mpi_yield_when_idle", "1");
            }
            if self.threads_per_rank > 1 || self.oversubscribed() {
                cmd.args(["--bind-to", "none"]);
            }
            if let Some(t) = self.timeout {
                cmd.args(["--timeout", &t.as_secs().max(1).to_string()]);
            }
            if self.force_tcp {
                cmd.args(["--mca", "btl", "tcp,self"]);
            }
            // One-sided: Debian's default component crashes (DESIGN.md).
            cmd.env("OMPI_MCA_osc", "sm,ucx");
            for (k, v) in &self.env {
                cmd.arg("-x").arg(k);
                cmd.env(k, v);
            }
        } else {
            // Hydra: the timeout is an environment variable; the rest of
            // Open MPI's options have no equivalent or are not needed.
            if let Some(t) = self.timeout {
                cmd.env("MPIEXEC_TIMEOUT", t.as_secs().max(1).to_string());
            }
            for (k, v) in &self.env {
                cmd.env(k, v);
            }
        }
        cmd.args(&self.extra);
        cmd.arg("-n").arg(self.ranks.to_string());
        cmd.arg(&self.program).args(&self.args);
        cmd
    }
}
