//! The `shmpi` command: manage shared-memory segments, start jobs, and
//! measure message passing against shared memory on this machine.
//!
//! ```text
//! shmpi ls [--json]                  segments in /dev/shm
//! shmpi inspect NAME                 a segment's header; a group's members and rings
//! shmpi rm NAME...                   remove segments
//! shmpi gc [--dry-run]               remove shmpi segments nobody uses any more
//! shmpi run -n N -- PROGRAM ARGS     N processes of a mailbox group, output prefixed by rank
//! shmpi mpirun -n N -- PROGRAM ARGS  an MPI job through the library's launcher
//! shmpi bench [--quick] [--json F] [--plot F.svg] [--hosts]
//! ```

mod bench;
mod json;
mod manage;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "shmpi",
    version,
    about = "Shared memory and message passing: manage segments, start jobs, measure both models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the segments in /dev/shm: name, kind, size, creator, alive or
    /// dead, age. Objects without a shmpi header are listed as foreign.
    Ls {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only objects in this state (repeatable; comma-separated).
        #[arg(long, value_enum, value_delimiter = ',')]
        state: Vec<manage::State>,
    },
    /// Show a segment's header and, for a mailbox group, its members and
    /// every ring's occupancy and counters.
    Inspect {
        /// The segment's name (as `shmpi ls` shows it).
        name: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove segments by name (foreign ones too: they are named).
    Rm {
        /// Names to remove.
        #[arg(required = true)]
        names: Vec<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove shmpi segments whose creator and members are all gone.
    Gc {
        /// Show what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Start N processes of a mailbox group (each joins with
    /// `MailboxGroup::from_env()`), forward their output prefixed with
    /// their rank, and fail if any fails.
    Run(run::RunArgs),
    /// Start an MPI job through the library's launcher (root, binding,
    /// oversubscription, timeouts, one-sided components).
    Mpirun(run::MpirunArgs),
    /// Measure latency, bandwidth and cost of each model on this machine.
    Bench(bench::BenchArgs),
    /// A benchmark's worker process (started by `shmpi bench`).
    #[command(hide = true)]
    BenchWorker(bench::WorkerArgs),
}

fn main() -> ExitCode {
    shmpi_cli::bench::shm::run_peer_if_requested();
    shmpi_cli::bench::scale::run_member_if_requested();
    let cli = Cli::parse_from(run::mpirun_np(std::env::args_os().collect()));
    let result = match cli.command {
        Command::Ls { json, state } => manage::ls(json, &state),
        Command::Inspect { name, json } => manage::inspect(&name, json),
        Command::Rm { names, json } => manage::rm(&names, json),
        Command::Gc { dry_run, json } => manage::gc(dry_run, json),
        Command::Run(args) => run::run(&args),
        Command::Mpirun(args) => run::mpirun(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::BenchWorker(args) => bench::worker(&args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("shmpi: {e}");
        ExitCode::FAILURE
    })
}
