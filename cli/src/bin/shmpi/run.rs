//! `shmpi run` (a mailbox group of processes) and `shmpi mpirun`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use clap::Args;
use shmpi::mailbox::launch::GroupLaunch;
use shmpi::mailbox::MailboxOptions;
use shmpi::mpirun::Mpirun;

/// Arguments of `shmpi run`.
#[derive(Args)]
pub struct RunArgs {
    /// Number of processes.
    #[arg(short = 'n', value_parser = clap::value_parser!(u64).range(1..=4096))]
    processes: u64,
    /// Bytes of each member's outgoing message pool, its memory budget
    /// (default 3 MiB, in 128 KiB fragments; each member also reserves
    /// about 2.1 KiB per other member).
    #[arg(long)]
    pool: Option<usize>,
    /// End the job (killing what still runs) after this many seconds.
    #[arg(long)]
    timeout: Option<u64>,
    /// The program and its arguments.
    #[arg(required = true, last = true)]
    command: Vec<String>,
}

/// Arguments of `shmpi mpirun`.
#[derive(Args)]
pub struct MpirunArgs {
    /// Number of ranks.
    #[arg(short = 'n', alias = "np")]
    ranks: usize,
    /// Threads each rank runs (more than one: ranks are not bound to a core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// End the job, non-zero, after this many seconds.
    #[arg(long)]
    timeout: Option<u64>,
    /// Force the network path between ranks (`--mca btl tcp,self`).
    #[arg(long)]
    tcp: bool,
    /// The program and its arguments (`--` before them is optional); more
    /// programs of the same job follow `:` as `-n RANKS PROGRAM [ARGS]`
    /// (MPMD).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `shmpi mpirun -np N …` as mpirun spells it: clap has no single-dash
/// long options, so `-np` among the launcher's own options (before the
/// program) becomes `-n`; the program's arguments are left alone.
pub fn mpirun_np(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if args.get(1).and_then(|a| a.to_str()) != Some("mpirun") {
        return args;
    }
    let mut i = 2;
    while let Some(arg) = args.get(i).and_then(|a| a.to_str()) {
        match arg {
            "-np" => {
                args[i] = "-n".into();
                i += 2;
            }
            "-n" | "--threads" | "--timeout" => i += 2,
            "--" => break,
            a if a.starts_with('-') => i += 1,
            _ => break, // the program
        }
    }
    args
}

/// Copies `from` to `to` line by line, each prefixed with `[rank]`.
fn forward(
    rank: usize,
    from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let _ = writeln!(to, "[{rank}] {line}");
        }
    })
}

pub fn run(args: &RunArgs) -> Result<ExitCode, String> {
    let n = args.processes as usize;
    let mut options = MailboxOptions::default();
    if let Some(p) = args.pool {
        options.pool = p;
    }
    let (program, rest) = args.command.split_first().ok_or("no program given")?;
    let mut job = GroupLaunch::spawn(n, &options, |_| {
        let mut cmd = Command::new(program);
        cmd.args(rest).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    })
    .map_err(|e| format!("starting {program}: {e}"))?;
    let mut forwarders = Vec::new();
    for rank in 0..n {
        if let Some((out, err)) = job.take_output(rank) {
            if let Some(out) = out {
                forwarders.push(forward(rank, out, std::io::stdout()));
            }
            if let Some(err) = err {
                forwarders.push(forward(rank, err, std::io::stderr()));
            }
        }
    }
    let timeout = Duration::from_secs(args.timeout.unwrap_or(u64::MAX / 4));
    let statuses = job.wait(timeout).map_err(|e| format!("{program}: {e}"))?;
    for f in forwarders {
        let _ = f.join();
    }
    let failed: Vec<String> = statuses
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.success())
        .map(|(r, s)| format!("rank {r}: {s}"))
        .collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(format!("{program} failed ({})", failed.join(", ")))
    }
}

pub fn mpirun(args: &MpirunArgs) -> Result<ExitCode, String> {
    // `--` before the program is optional (clap keeps it in the list).
    let command = match args.command.split_first() {
        Some((first, rest)) if first == "--" => rest,
        _ => &args.command[..],
    };
    // MPMD: `A args : -n 1 B args : …` — further programs after `:`.
    let mut parts = command.split(|a| a == ":");
    let first = parts.next().unwrap_or_default();
    let (program, rest) = first.split_first().ok_or("no program given")?;
    let mut job = Mpirun::new(args.ranks, program)
        .args(rest)
        .threads_per_rank(args.threads)
        .force_tcp(args.tcp);
    for part in parts {
        let (ranks, app) = match part {
            [flag, n, app @ ..] if flag == "-n" || flag == "-np" => (
                n.parse::<usize>()
                    .map_err(|_| format!("after `:`, `{flag} {n}`: not a rank count"))?,
                app,
            ),
            _ => return Err("after `:`, give `-n RANKS PROGRAM [ARGS]`".to_owned()),
        };
        let (program, rest) = app.split_first().ok_or("no program after `:`")?;
        job = job.then(ranks, program, rest);
    }
    if let Some(t) = args.timeout {
        job = job.timeout(Duration::from_secs(t));
    }
    let status = job.command().status().map_err(|e| {
        format!("starting mpirun: {e} (is Open MPI installed? scripts/setup.sh installs it)")
    })?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}
