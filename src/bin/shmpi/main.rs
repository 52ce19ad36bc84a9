//! The `shmpi` command. For now: `shmpi mpirun`, which launches an MPI job
//! through the library's launcher (`shmpi::mpirun`), so scripts and an
//! installed binary need no knowledge of Open MPI's flags.
//!
//! ```text
//! shmpi mpirun -n RANKS [--threads T] [--timeout SECS] [--tcp] [--] PROGRAM [ARGS...]
//! ```

use std::process::ExitCode;
use std::time::Duration;

use shmpi::mpirun::Mpirun;

const USAGE: &str =
    "usage: shmpi mpirun -n RANKS [--threads T] [--timeout SECS] [--tcp] [--] PROGRAM [ARGS...]";

fn mpirun(args: &[String]) -> Result<ExitCode, String> {
    let (mut ranks, mut threads, mut timeout, mut tcp) = (None, 1, None, false);
    let mut i = 0;
    let number = |v: Option<&String>, flag: &str| -> Result<u64, String> {
        v.and_then(|s| s.parse().ok())
            .ok_or(format!("{flag} needs a number\n{USAGE}"))
    };
    while i < args.len() {
        match args[i].as_str() {
            "-n" | "-np" => {
                ranks = Some(number(args.get(i + 1), "-n")? as usize);
                i += 2;
            }
            "--threads" => {
                threads = number(args.get(i + 1), "--threads")? as usize;
                i += 2;
            }
            "--timeout" => {
                timeout = Some(Duration::from_secs(number(args.get(i + 1), "--timeout")?));
                i += 2;
            }
            "--tcp" => {
                tcp = true;
                i += 1;
            }
            "--" => {
                i += 1;
                break;
            }
            _ => break,
        }
    }
    let ranks = ranks.ok_or(format!("-n is required\n{USAGE}"))?;
    let program = args.get(i).ok_or(format!("no program given\n{USAGE}"))?;
    let mut job = Mpirun::new(ranks, program)
        .args(&args[i + 1..])
        .threads_per_rank(threads)
        .force_tcp(tcp);
    if let Some(t) = timeout {
        job = job.timeout(t);
    }
    let status = job.command().status().map_err(|e| {
        format!("starting mpirun: {e} (is Open MPI installed? scripts/setup.sh installs it)")
    })?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("mpirun") => mpirun(&args[1..]),
        _ => Err(USAGE.to_owned()),
    };
    result.unwrap_or_else(|e| {
        eprintln!("shmpi: {e}");
        ExitCode::from(2)
    })
}
