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
//!
//! Several hosts on one machine: `scripts/netns-cluster.sh` makes network
//! namespace "hosts" and sets `SHMPI_CLUSTER` to a directory describing them
//! ([`Cluster`]); every job built here then runs across those hosts.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::mailbox::online_cpus;

/// The environment variable naming a cluster directory ([`Cluster`]).
pub const CLUSTER_ENV: &str = "SHMPI_CLUSTER";

/// Hosts to launch on instead of this one: network-namespace hosts made by
/// `scripts/netns-cluster.sh`, described by files in one directory:
///
/// - `hostfile`: Open MPI's host file (`ADDRESS slots=N` per host);
/// - `rsh-agent`: the program Open MPI runs instead of `ssh` to start its
///   daemon on a host (it enters the host's namespaces);
/// - `subnet`: the hosts' network (`10.x.y.0/24`), to which Open MPI's TCP
///   traffic is restricted;
/// - `leftovers/`: where each host writes what was left in its private
///   `/dev/shm` when its daemon ended ([`Cluster::leftovers`]).
///
/// Jobs across these hosts also get `UCX_TLS=tcp,self` (otherwise UCX finds
/// the other "host" through shared memory) and a zero spin budget
/// (`SHMPI_SPIN_US=0`: all ranks share this machine's cores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    dir: PathBuf,
    subnet: String,
}

impl Cluster {
    /// The cluster named by `SHMPI_CLUSTER`, if it is set.
    ///
    /// # Errors
    ///
    /// A message naming the file when the directory is incomplete.
    pub fn from_env() -> Result<Option<Cluster>, String> {
        match std::env::var_os(CLUSTER_ENV) {
            None => Ok(None),
            Some(dir) => Cluster::open(Path::new(&dir)).map(Some),
        }
    }

    /// Reads a cluster directory.
    ///
    /// # Errors
    ///
    /// A message naming the file when the directory is incomplete.
    pub fn open(dir: &Path) -> Result<Cluster, String> {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .map_err(|e| format!("cluster {}: {f}: {e}", dir.display()))
        };
        let subnet = read("subnet")?.trim().to_owned();
        read("hostfile")?;
        if !dir.join("rsh-agent").is_file() {
            return Err(format!("cluster {}: no rsh-agent", dir.display()));
        }
        Ok(Cluster {
            dir: dir.to_owned(),
            subnet,
        })
    }

    /// The hosts' addresses, in host-file order.
    pub fn hosts(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("hostfile"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    }

    /// What each host's daemon found of shmpi's in its private `/dev/shm`
    /// when it ended, one `(report file, object names)` pair per daemon
    /// that ended since the cluster was made.
    pub fn leftovers(&self) -> Vec<(String, Vec<String>)> {
        let Ok(dir) = std::fs::read_dir(self.dir.join("leftovers")) else {
            return Vec::new();
        };
        let mut out: Vec<(String, Vec<String>)> = dir
            .filter_map(Result::ok)
            .map(|e| {
                let names = std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .lines()
                    .filter(|n| n.starts_with(crate::segment::UNIQUE_PREFIX))
                    .map(str::to_owned)
                    .collect();
                (e.file_name().to_string_lossy().into_owned(), names)
            })
            .collect();
        out.sort();
        out
    }

    fn add_options(&self, cmd: &mut Command) {
        cmd.arg("--hostfile").arg(self.dir.join("hostfile"));
        cmd.args(["--mca", "plm_rsh_agent"])
            .arg(self.dir.join("rsh-agent"));
        for key in ["oob_tcp_if_include", "btl_tcp_if_include"] {
            cmd.args(["--mca", key, &self.subnet]);
        }
        cmd.args(["--bind-to", "none"]);
    }
}

/// The launcher program: `SHMPI_MPIRUN` if set, else `mpirun`.
pub fn launcher() -> PathBuf {
    std::env::var_os("SHMPI_MPIRUN").map_or_else(|| PathBuf::from("mpirun"), PathBuf::from)
}

/// Whether the launcher can be started here (`--version` succeeds).
pub fn available() -> bool {
    Command::new(launcher())
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Which launcher a program is, and so which options it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Open MPI's `mpirun` (ORTE/PRRTE).
    OpenMpi,
    /// MPICH's `mpiexec` (hydra).
    Mpich,
    /// Slurm's `srun` (MPI through its PMIx plugin).
    Slurm,
    /// Anything else: given the ranks and the program, nothing of another
    /// launcher's options.
    Other,
}

/// Detects the launcher behind `launcher` from `launcher --version`
/// (`mpirun (Open MPI) 4.1.4`, `HYDRA build details` / MPICH,
/// `slurm 22.05.8`), or its name (`srun`, whose `--version` fails outside
/// a cluster).
pub fn flavour(launcher: &Path) -> Flavour {
    if launcher.file_name().is_some_and(|n| n == "srun") {
        return Flavour::Slurm;
    }
    let Ok(out) = Command::new(launcher).arg("--version").output() else {
        return Flavour::Other;
    };
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    if text.contains("Open MPI") || text.contains("OpenRTE") {
        Flavour::OpenMpi
    } else if text.contains("HYDRA") || text.contains("MPICH") {
        Flavour::Mpich
    } else if text.to_ascii_lowercase().starts_with("slurm") {
        Flavour::Slurm
    } else {
        Flavour::Other
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
    cluster: Option<Cluster>,
    program: OsString,
    args: Vec<OsString>,
    /// Further programs of the same job (MPMD): ranks, program, arguments.
    others: Vec<(usize, OsString, Vec<OsString>)>,
    env: Vec<(OsString, OsString)>,
    extra: Vec<OsString>,
}

impl Mpirun {
    /// `ranks` copies of `program`, on this host or, when `SHMPI_CLUSTER`
    /// names a cluster that can be read, on its hosts.
    pub fn new(ranks: usize, program: impl Into<OsString>) -> Mpirun {
        Mpirun {
            launcher: launcher(),
            ranks,
            threads_per_rank: 1,
            timeout: None,
            force_tcp: false,
            cluster: Cluster::from_env().ok().flatten(),
            program: program.into(),
            args: Vec::new(),
            others: Vec::new(),
            env: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// Threads each rank runs (more than one: ranks are not bound to a core).
    pub fn threads_per_rank(mut self, threads: usize) -> Mpirun {
        self.threads_per_rank = threads.max(1);
        self
    }

    /// Launches with `program` instead of [`launcher()`] (`mpirun`,
    /// `mpiexec.mpich`, `srun`, …); its options follow its [`flavour`].
    pub fn launcher(mut self, program: impl Into<PathBuf>) -> Mpirun {
        self.launcher = program.into();
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

    /// Runs on `cluster`'s hosts (`None`: on this host only).
    pub fn cluster(mut self, cluster: Option<Cluster>) -> Mpirun {
        self.cluster = cluster;
        self
    }

    /// The hosts the job runs on, if not this one.
    pub fn cluster_hosts(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
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

    /// Adds `ranks` ranks of another program to the same job (MPMD:
    /// `mpirun -n 2 A : -n 1 B`); they share `MPI_COMM_WORLD`, after the
    /// ranks of the programs before.
    pub fn then<I, S>(mut self, ranks: usize, program: impl Into<OsString>, args: I) -> Mpirun
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.others.push((
            ranks,
            program.into(),
            args.into_iter().map(Into::into).collect(),
        ));
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
        self.total_ranks() > online_cpus()
    }

    /// True when the job's threads (ranks × threads per rank) outnumber
    /// this machine's online CPUs: a rank waiting in MPI must then yield
    /// its core, or it starves the thread it waits for (a distributed
    /// array's progress thread waited 65 µs per request instead of 7.8).
    pub fn threads_outnumber_cores(&self) -> bool {
        self.total_ranks() * self.threads_per_rank > online_cpus()
    }

    fn total_ranks(&self) -> usize {
        self.ranks + self.others.iter().map(|o| o.0).sum::<usize>()
    }

    /// Sets `key` for the job unless the caller's environment or
    /// [`env`](Self::env) already does: a user's own setting wins.
    fn default_env(&self, cmd: &mut Command, key: &str, value: &str) {
        let set = std::env::var_os(key).is_some() || self.env.iter().any(|(k, _)| k == key);
        if !set {
            cmd.env(key, value);
        }
    }

    /// The command line.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.launcher);
        let flavour = flavour(&self.launcher);
        if flavour == Flavour::OpenMpi || flavour == Flavour::Slurm {
            // Open MPI ranks, however started (srun's are Open MPI's here).
            if self.threads_outnumber_cores() {
                self.default_env(&mut cmd, "OMPI_MCA_mpi_yield_when_idle", "1");
            }
            // One-sided: Debian's default component crashes (DESIGN.md).
            self.default_env(&mut cmd, "OMPI_MCA_osc", "sm,ucx");
        }
        if flavour == Flavour::OpenMpi {
            if nix::unistd::geteuid().is_root() {
                cmd.arg("--allow-run-as-root");
            }
            if self.oversubscribed() {
                cmd.arg("--oversubscribe");
            }
            if let Some(cluster) = &self.cluster {
                cluster.add_options(&mut cmd);
                for (k, v) in [("UCX_TLS", "tcp,self"), (crate::mailbox::SPIN_ENV, "0")] {
                    if !self.env.iter().any(|(key, _)| key == k) {
                        cmd.arg("-x").arg(k).env(k, v);
                    }
                }
            } else if self.threads_per_rank > 1 || self.oversubscribed() {
                cmd.args(["--bind-to", "none"]);
            }
            if let Some(t) = self.timeout {
                cmd.args(["--timeout", &t.as_secs().max(1).to_string()]);
            }
            if self.force_tcp {
                cmd.args(["--mca", "btl", "tcp,self"]);
            }
            for (k, v) in &self.env {
                cmd.arg("-x").arg(k);
                cmd.env(k, v);
            }
        } else if flavour == Flavour::Slurm {
            // srun passes the whole environment on; MPI through PMIx.
            cmd.arg("--mpi=pmix");
            if self.oversubscribed() {
                cmd.arg("--overcommit");
            }
            if self.threads_per_rank > 1 {
                cmd.arg(format!("--cpus-per-task={}", self.threads_per_rank));
            }
            if let Some(t) = self.timeout {
                // Whole minutes: srun's time limit has no finer unit.
                cmd.arg(format!("--time={}", t.as_secs().div_ceil(60).max(1)));
            }
            for (k, v) in &self.env {
                cmd.env(k, v);
            }
        } else {
            // MPICH's Hydra: the timeout is an environment variable (other
            // launchers ignore it); the rest of Open MPI's options have no
            // equivalent or are not needed.
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
        for (ranks, program, args) in &self.others {
            cmd.arg(":").arg("-n").arg(ranks.to_string());
            cmd.arg(program).args(args);
        }
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(cmd: &Command, key: &str) -> Option<String> {
        cmd.get_envs()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v)
            .map(|v| v.to_string_lossy().into_owned())
    }

    #[test]
    fn mpi_yields_when_threads_outnumber_cores_and_a_callers_setting_wins() {
        if flavour(&launcher()) != Flavour::OpenMpi
            || std::env::var_os("OMPI_MCA_mpi_yield_when_idle").is_some()
        {
            return; // the Open MPI flags are what is checked here
        }
        let cpus = online_cpus();
        let threaded = Mpirun::new(1, "prog").threads_per_rank(cpus + 1);
        assert!(threaded.threads_outnumber_cores() && !threaded.oversubscribed());
        let cmd = threaded.command();
        assert_eq!(
            env_of(&cmd, "OMPI_MCA_mpi_yield_when_idle").as_deref(),
            Some("1")
        );
        let plain = Mpirun::new(1, "prog").command();
        assert_eq!(env_of(&plain, "OMPI_MCA_mpi_yield_when_idle"), None);
        let own = Mpirun::new(1, "prog")
            .threads_per_rank(cpus + 1)
            .env("OMPI_MCA_mpi_yield_when_idle", "0")
            .env("OMPI_MCA_osc", "pt2pt")
            .command();
        assert_eq!(
            env_of(&own, "OMPI_MCA_mpi_yield_when_idle").as_deref(),
            Some("0")
        );
        assert_eq!(env_of(&own, "OMPI_MCA_osc").as_deref(), Some("pt2pt"));
    }

    fn line(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn srun_gets_slurms_options_and_none_of_open_mpis() {
        let cpus = online_cpus();
        let cmd = Mpirun::new(cpus + 1, "prog")
            .launcher("/usr/bin/srun")
            .threads_per_rank(2)
            .timeout(Duration::from_secs(61))
            .args(["x"])
            .command();
        let args = line(&cmd);
        for want in [
            "--mpi=pmix",
            "--overcommit",
            "--cpus-per-task=2",
            "--time=2",
        ] {
            assert!(args.contains(&want.to_owned()), "{args:?}");
        }
        assert!(args.ends_with(&[
            "-n".into(),
            (cpus + 1).to_string(),
            "prog".into(),
            "x".into()
        ]));
        for foreign in ["--allow-run-as-root", "--oversubscribe", "--bind-to", "-x"] {
            assert!(!args.contains(&foreign.to_owned()), "{args:?}");
        }
        if std::env::var_os("OMPI_MCA_osc").is_none() {
            assert_eq!(env_of(&cmd, "OMPI_MCA_osc").as_deref(), Some("sm,ucx"));
        }
    }

    #[test]
    fn an_unknown_launcher_gets_no_ones_options() {
        let cmd = Mpirun::new(2, "prog").launcher("/bin/true").command();
        assert_eq!(line(&cmd), ["-n", "2", "prog"]);
        assert_eq!(flavour(Path::new("/no/such/launcher")), Flavour::Other);
    }
}
