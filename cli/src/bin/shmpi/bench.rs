//! `shmpi bench`: the seed's comparison of message passing and shared
//! memory, measured on this machine. The shared-memory rows run here (a
//! peer process is this program again); the MPI, hybrid and
//! distributed-array rows run in `mpirun` jobs of this program
//! (`shmpi bench-worker`), which hand their records back on standard
//! output; the all-to-all rows start 2 to 32 processes of each kind.

mod compare;
mod plot;

use std::io::{IsTerminal, Write};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use shmpi::mailbox::launch::GroupLaunch;
use shmpi::mailbox::{MailboxGroup, MailboxOptions};
use shmpi::mpirun::{Cluster, Mpirun};
use shmpi_cli::bench::{alltoall, scale, shm, Config, Record, Report};

/// Processes of the all-to-all rows (the seed's "scalability").
fn alltoall_procs(quick: bool) -> &'static [usize] {
    if quick {
        &[16, 32]
    } else {
        &[2, 4, 8, 16, 32]
    }
}
/// Wall-clock target of one all-to-all run: long enough that start-up and
/// the closing barrier are a few per cent of it.
fn alltoall_seconds(quick: bool) -> f64 {
    if quick {
        0.4
    } else {
        1.0
    }
}
/// Bytes per all-to-all message.
const ALLTOALL_SIZE: usize = 64;

/// Arguments of `shmpi bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// A run of under a minute (fewer iterations and samples).
    #[arg(long)]
    quick: bool,
    /// Write the records as JSON (DESIGN.md's schema).
    #[arg(long, value_name = "FILE")]
    json: Option<String>,
    /// Plot latency against message size (log-log SVG).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<String>,
    /// Also measure across the hosts of `scripts/netns-cluster.sh --slots 1
    /// -- shmpi bench --hosts` (the `*.internode` rows).
    #[arg(long)]
    hosts: bool,
    /// The C baseline (`c_examples/osu_latency`, built by `make -C
    /// c_examples`) for the `mpi.c` rows; found in the build tree when not
    /// given.
    #[arg(long, value_name = "PROGRAM")]
    c_baseline: Option<String>,
    #[command(flatten)]
    selection: Selection,
    /// How to print the results: the seed's table and every record, or
    /// OSU's columns (`# Size  Latency (us)`) for each latency path.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// How `shmpi bench` prints its results.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The seed's table, the heat2d ratios and every record (Markdown).
    Table,
    /// OSU micro-benchmarks' layout, one block per latency path.
    Osu,
}

/// Which rows a run measures, and how long: shared by `shmpi bench` and
/// the workers it starts.
#[derive(Args, Clone, Default)]
pub struct Selection {
    /// Only these paths: names or prefixes ending in `*`, comma-separated
    /// (`--only 'shm.default,mpi.*'`).
    #[arg(long, value_delimiter = ',', value_name = "PATHS")]
    only: Vec<String>,
    /// Message sizes of the latency rows, in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    sizes: Vec<usize>,
    /// Round trips per sample of the latency rows.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    iterations: Option<u64>,
}

impl Selection {
    fn config(&self, quick: bool) -> Config {
        Config {
            quick,
            only: self.only.clone(),
            sizes: (!self.sizes.is_empty()).then(|| self.sizes.clone()),
            iterations: self.iterations,
        }
    }

    /// The same selection as a worker's arguments.
    fn worker_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.only.is_empty() {
            out.push(format!("--only={}", self.only.join(",")));
        }
        if !self.sizes.is_empty() {
            let sizes: Vec<String> = self.sizes.iter().map(usize::to_string).collect();
            out.push(format!("--sizes={}", sizes.join(",")));
        }
        if let Some(n) = self.iterations {
            out.push(format!("--iterations={n}"));
        }
        out
    }
}

/// Which worker to run.
#[derive(Clone, Copy, ValueEnum)]
pub enum WorkerKind {
    /// MPI ping-pong (`mpi.sm`/`mpi.tcp`, under the path given).
    Pingpong,
    /// Hybrid-world ping-pong and distributed-array reads.
    HybridDsm,
    /// Hybrid-world ping-pong of rank pairs, oversubscribed.
    HybridOver,
    /// All-to-all over MPI.
    AlltoallMpi,
    /// All-to-all over a mailbox group (`shmpi run`-style environment).
    AlltoallShm,
    /// A mailbox member that waits to be killed (fault detection).
    Victim,
    /// heat2d at every grid edge, ranks × team threads in place
    /// (`heat2d.R{r}xT{t}`).
    Heat2d,
    /// heat2d at every grid edge, the node's ranks in place on one node
    /// array (`heat2d.node.R{r}`).
    Heat2dNode,
    /// An MPI hello: initialise, finalise (`mpi.setup`).
    Hello,
}

/// Arguments of the hidden `shmpi bench-worker`.
#[derive(Args)]
pub struct WorkerArgs {
    kind: WorkerKind,
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value = "mpi.sm")]
    path: String,
    /// Wall-clock target of an all-to-all run.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Threads per rank (heat2d).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(flatten)]
    selection: Selection,
}

/// Progress on stderr, one line rewritten, when stderr is a terminal.
struct Progress {
    tty: bool,
    start: Instant,
}

impl Progress {
    fn say(&self, what: &str) {
        if self.tty {
            eprint!("\r\x1b[2K[{:>3} s] {what}", self.start.elapsed().as_secs());
            let _ = std::io::stderr().flush();
        }
    }

    fn done(&self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }
}

/// Records a worker job printed on its standard output.
fn collect(mut cmd: Command, what: &str) -> Result<Vec<Record>, String> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(6).collect();
        return Err(format!(
            "{what}: {} ({})",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(Record::from_line)
        .collect())
}

fn this_program() -> Result<String, String> {
    std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| format!("cannot find this program: {e}"))
}

/// An `mpirun` job of `program`'s (this program's) worker.
fn mpi_job(program: &str, ranks: usize, kind: &str, args: &BenchArgs, extra: &[&str]) -> Mpirun {
    let mut worker = vec!["bench-worker".to_owned(), kind.to_owned()];
    if args.quick {
        worker.push("--quick".to_owned());
    }
    worker.extend(args.selection.worker_args());
    worker.extend(extra.iter().map(|a| (*a).to_owned()));
    Mpirun::new(ranks, program)
        .args(worker)
        .timeout(Duration::from_secs(600))
}

/// Runs a worker job: its records join the report, or its failure the notes.
fn gather(report: &mut Report, notes: &mut Vec<String>, what: &str, cmd: Command) {
    match collect(cmd, what) {
        Ok(records) => report.records.extend(records),
        Err(e) => notes.push(format!("{what} not measured: {e}")),
    }
}

/// Time from SIGKILL of a mailbox peer to `PeerDied` at a receiver.
fn fault_detection(program: &str, samples: usize) -> Result<Record, String> {
    let mut times = Vec::new();
    for _ in 0..samples {
        let options = MailboxOptions::default();
        let name = shmpi::segment::SegmentName::unique("bench-fault");
        let _seg = MailboxGroup::create_segment(&name, 2, &options).map_err(|e| e.to_string())?;
        let mut victim = Command::new(program)
            .args(["bench-worker", "victim"])
            .env(shmpi::mailbox::GROUP_ENV, name.as_str())
            .env(shmpi::mailbox::RANK_ENV, "1")
            .env(shmpi::mailbox::SIZE_ENV, "2")
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut me = MailboxGroup::join(&name, 0, &options).map_err(|e| e.to_string())?;
        me.recv(1, 1, Duration::from_secs(30))
            .map_err(|e| e.to_string())?;
        let killed = Instant::now();
        let _ = victim.kill();
        match me.recv(1, 2, Duration::from_secs(30)) {
            Err(shmpi::MailboxError::PeerDied { .. }) => {
                times.push(killed.elapsed().as_secs_f64() * 1e3);
            }
            other => return Err(format!("expected PeerDied, got {other:?}")),
        }
        let _ = victim.wait();
    }
    Ok(Record::from_samples("fault.detect", "time_ms", 0, &times))
}

pub fn bench(args: &BenchArgs) -> Result<ExitCode, String> {
    let cfg = args.selection.config(args.quick);
    let progress = Progress {
        tty: std::io::stderr().is_terminal(),
        start: Instant::now(),
    };
    let program = this_program()?;
    let mut report = Report::default();
    let mut notes: Vec<String> = Vec::new();

    progress.say("shared memory: limits, mailboxes, threads");
    let shm_families = [
        "limit.spin",
        "limit.sem",
        "limit.memcpy",
        "limit.barrier",
        "shm.",
        "threads.",
        "team.",
    ];
    if shm_families.iter().any(|f| cfg.wants_family(f)) {
        let shm_report = shm::measure(&cfg, &mut |what| {
            progress.say(&format!("shared memory: {what}"))
        })?;
        report.records.extend(shm_report.records);
    }

    for &n in shmpi_cli::bench::heat2d::EDGES {
        if !cfg.wants_family("limit.heat2d.") {
            break;
        }
        for threads in [1, 2] {
            progress.say(&format!(
                "heat2d {n}²: plain threads, the limit ({threads})"
            ));
            let steps = shmpi_cli::bench::heat2d::steps_for(n, args.quick);
            match shmpi_cli::bench::heat2d::limit(n, steps, threads).map_err(|e| e.to_string()) {
                Ok(out) => report
                    .records
                    .push(shmpi_cli::bench::heat2d::checked(out)?.record),
                Err(e) => notes.push(format!("limit.heat2d.T{threads} not measured: {e}")),
            }
        }
    }

    if cfg.wants("fault.detect") {
        progress.say("fault isolation: killing a mailbox peer");
        match fault_detection(&program, if args.quick { 3 } else { 7 }) {
            Ok(r) => report.records.push(r),
            Err(e) => notes.push(format!("fault detection not measured: {e}")),
        }
    }

    let seconds = alltoall_seconds(args.quick).to_string();
    for &n in alltoall_procs(args.quick) {
        if !cfg.wants(&format!("alltoall{n}.shm")) {
            continue;
        }
        progress.say(&format!(
            "all-to-all: {n} processes over shared-memory mailboxes"
        ));
        match alltoall_shm(&program, n, &seconds) {
            Ok(records) => report.records.extend(records),
            Err(e) => notes.push(format!(
                "all-to-all of {n} over mailboxes not measured: {e}"
            )),
        }
    }

    if cfg.wants_family("scale.") {
        progress.say("scale: what a mailbox group of N processes reserves and costs to start");
        match scale::measure(args.quick, &mut |what| progress.say(what)) {
            Ok(r) => report.records.extend(r.records),
            Err(e) => notes.push(format!("scale rows not measured: {e}")),
        }
    }

    if !cfg!(feature = "mpi") {
        notes.push("MPI rows skipped: this shmpi was built without its `mpi` feature".into());
    } else if !shmpi::mpirun::available() {
        notes
            .push("MPI rows skipped: no `mpirun` here (scripts/setup.sh installs Open MPI)".into());
    } else {
        // On this host (also when run under the namespace hosts).
        let local =
            |ranks, kind, extra: &[&str]| mpi_job(&program, ranks, kind, args, extra).cluster(None);
        // (what, the families of paths it measures, the job)
        let mut jobs: Vec<(String, Vec<String>, Command)> = vec![
            (
                "MPI ping-pong (shared-memory transport)".into(),
                vec!["mpi.sm".into()],
                local(2, "pingpong", &["--path", "mpi.sm"]).command(),
            ),
            (
                "MPI ping-pong over TCP".into(),
                vec!["mpi.tcp".into()],
                local(2, "pingpong", &["--path", "mpi.tcp"])
                    .force_tcp(true)
                    .command(),
            ),
            (
                "hybrid world and distributed arrays".into(),
                vec!["hybrid.".into(), "dsm.".into(), "mpi.roundtrip".into()],
                local(2, "hybrid-dsm", &[]).threads_per_rank(2).command(),
            ),
            (
                "hybrid world, 4 ranks on this node (oversubscribed when it has fewer cores)"
                    .into(),
                vec!["hybrid.intranode".into()],
                local(4, "hybrid-over", &[]).command(),
            ),
            (
                "heat2d: 1 rank x 1 thread".into(),
                vec!["heat2d.R1xT1".into()],
                local(1, "heat2d", &["--threads", "1"]).command(),
            ),
            (
                "heat2d: 2 ranks x 1 thread (pure MPI)".into(),
                vec!["heat2d.R2xT1".into()],
                local(2, "heat2d", &["--threads", "1"]).command(),
            ),
            (
                "heat2d: 1 rank x 2 threads in place".into(),
                vec!["heat2d.R1xT2".into()],
                local(1, "heat2d", &["--threads", "2"])
                    .threads_per_rank(2)
                    .command(),
            ),
            (
                "heat2d: 2 ranks in place on a node array".into(),
                vec!["heat2d.node".into()],
                local(2, "heat2d-node", &[]).command(),
            ),
        ];
        for &n in alltoall_procs(args.quick) {
            jobs.push((
                format!("all-to-all: {n} MPI ranks"),
                vec![format!("alltoall{n}.mpi")],
                local(n, "alltoall-mpi", &["--seconds", &seconds]).command(),
            ));
        }
        for (what, families, cmd) in jobs {
            if families.iter().any(|f| cfg.wants_family(f)) {
                progress.say(&what);
                gather(&mut report, &mut notes, &what, cmd);
            }
        }
        for &n in scale::sizes(args.quick) {
            if !cfg.wants("mpi.setup") {
                break;
            }
            progress.say(&format!("mpi.setup: mpirun -n {n} of an MPI hello"));
            let mut cmd = local(n, "hello", &[]).command();
            let start = Instant::now();
            match cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output() {
                Ok(out) if out.status.success() => report.records.push(Record::from_samples(
                    "mpi.setup",
                    "time_ms",
                    n,
                    &[start.elapsed().as_secs_f64() * 1e3],
                )),
                Ok(out) => notes.push(format!(
                    "mpi.setup at {n} ranks not measured: {}",
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("failed")
                )),
                Err(e) => notes.push(format!("mpi.setup at {n} ranks not measured: {e}")),
            }
        }
        let baseline = args.c_baseline.clone().or_else(|| {
            let p = "target/c_examples/osu_latency";
            std::path::Path::new(p).is_file().then(|| p.to_owned())
        });
        match baseline {
            Some(_) if !cfg.wants_family("mpi.c") => {}
            Some(c_program) => {
                progress.say("the C baseline (osu_latency)");
                let flags = if args.quick { vec!["--records", "--quick"] } else { vec!["--records"] };
                let job = Mpirun::new(2, &c_program)
                    .cluster(None)
                    .timeout(Duration::from_secs(300))
                    .args(flags);
                gather(&mut report, &mut notes, "mpi.c (the C baseline)", job.command());
            }
            None => notes.push("mpi.c (the C baseline) skipped: build it with `make -C c_examples`, or pass --c-baseline PROGRAM".into()),
        }
        if args.hosts {
            match Cluster::from_env() {
                Ok(Some(cluster)) => {
                    let across = |kind, extra: &[&str]| {
                        mpi_job(&program, 2, kind, args, extra).cluster(Some(cluster.clone()))
                    };
                    for (what, cmd) in [
                        ("across hosts: MPI ping-pong", across("pingpong", &["--path", "mpi.tcp.internode"]).command()),
                        ("across hosts: hybrid world and distributed arrays", across("hybrid-dsm", &["--path", "internode"]).threads_per_rank(2).command()),
                    ] {
                        progress.say(what);
                        gather(&mut report, &mut notes, what, cmd);
                    }
                }
                Ok(None) => notes.push("--hosts needs the namespace hosts: run `scripts/netns-cluster.sh --slots 1 -- shmpi bench --hosts`".into()),
                Err(e) => notes.push(format!("--hosts: {e}")),
            }
        } else if cfg.only.is_empty() {
            notes.push("cross-host rows (*.internode) not measured: run `scripts/netns-cluster.sh --slots 1 -- shmpi bench --hosts`".into());
        }
        #[cfg(feature = "mpi")]
        {
            // Callable before MPI is initialised (MPI-3.1 §8.1.1).
            report.mpi = Some(shmpi::mpi::library_version());
        }
    }
    progress.done();
    // Rows made whole by a measurement (and the C baseline's fixed sizes)
    // are cut to what was asked for.
    report.records.retain(|r| {
        cfg.wants(&r.path)
            && (r.metric != "latency_ns" || cfg.sizes.as_ref().is_none_or(|s| s.contains(&r.size)))
    });
    if args.format == Format::Osu {
        print!("{}", osu_blocks(&report));
        for n in &notes {
            println!("# {n}");
        }
        return write_outputs(args, &report);
    }

    let spin = report
        .records
        .iter()
        .find(|r| r.path == "limit.spin")
        .map_or("not measured".to_owned(), |r| format!("{:.0} ns", r.median));
    println!(
        "# shmpi bench: {} CPUs, {} run, {:.0} s; this run's cache-line hand-off (limit.spin): {spin}; doorbells: {}\n",
        shmpi::mailbox::online_cpus(),
        if args.quick { "quick" } else { "full" },
        progress.start.elapsed().as_secs_f64(),
        MailboxGroup::protocol_for_new_groups()
    );
    println!("{}", compare::table(&report));
    let heat = compare::heat2d_table(&report);
    if !heat.is_empty() {
        println!("heat2d in place, per step, ratios of this run (targets: ≤ 1.1 at 128²–1024², ≥ 0.9 at 1024² and 2048², ≤ 1.0):\n\n{heat}");
    }
    println!(
        "## All records (medians of n samples, min–max)\n\n{}",
        report.to_markdown()
    );
    for n in &notes {
        println!("- {n}");
    }
    write_outputs(args, &report)
}

/// The JSON file and the plot, when asked for.
fn write_outputs(args: &BenchArgs, report: &Report) -> Result<ExitCode, String> {
    if let Some(path) = &args.json {
        report
            .write_json(path)
            .map_err(|e| format!("{path}: {e}"))?;
        println!("\nrecords: {path}");
    }
    if let Some(path) = &args.plot {
        plot::latency(report, path)?;
        println!("plot: {path}");
    }
    Ok(ExitCode::SUCCESS)
}

/// OSU micro-benchmarks' layout: for each path with latency rows, a
/// header and `size latency-in-µs` lines, in size order.
fn osu_blocks(report: &Report) -> String {
    let mut paths: Vec<&str> = Vec::new();
    for r in report.records.iter().filter(|r| r.metric == "latency_ns") {
        if !paths.contains(&r.path.as_str()) {
            paths.push(&r.path);
        }
    }
    let mut out = String::new();
    for path in paths {
        out.push_str(&format!(
            "# shmpi {path} (one-way latency, median)\n# Size          Latency (us)\n"
        ));
        let mut rows: Vec<_> = report
            .records
            .iter()
            .filter(|r| r.path == path && r.metric == "latency_ns")
            .collect();
        rows.sort_by_key(|r| r.size);
        for r in rows {
            out.push_str(&format!("{:<24}{:.2}\n", r.size, r.median / 1e3));
        }
        out.push('\n');
    }
    out
}

/// An all-to-all job of `n` members over mailboxes; rank 0's record.
fn alltoall_shm(program: &str, n: usize, seconds: &str) -> Result<Vec<Record>, String> {
    let mut job = GroupLaunch::spawn(n, &MailboxOptions::default(), |_| {
        let mut cmd = Command::new(program);
        cmd.args(["bench-worker", "alltoall-shm", "--seconds", seconds])
            .stdout(Stdio::piped());
        cmd
    })
    .map_err(|e| e.to_string())?;
    let out = job.take_output(0).and_then(|(o, _)| o);
    let statuses = job
        .wait(Duration::from_secs(600))
        .map_err(|e| e.to_string())?;
    if let Some(bad) = statuses.iter().find(|s| !s.success()) {
        return Err(format!("a member failed: {bad}"));
    }
    let mut text = String::new();
    if let Some(mut o) = out {
        use std::io::Read;
        let _ = o.read_to_string(&mut text);
    }
    Ok(text.lines().filter_map(Record::from_line).collect())
}

/// One rank of an all-to-all job: the steady rate (`alltoall{N}.{kind}`),
/// printed by rank 0; a run whose closing barrier is not small beside it
/// says so on stderr.
fn alltoall_worker<T: shmpi::transport::Transport>(
    t: &mut T,
    kind: &str,
    seconds: f64,
) -> Result<(), String> {
    let n = t.size();
    let target = Duration::from_secs_f64(seconds.max(0.001));
    let steady = alltoall::steady_rate(t, target, ALLTOALL_SIZE).map_err(|e| e.to_string())?;
    if let Some(s) = steady {
        let share = s.barrier.as_secs_f64() / s.run.as_secs_f64();
        if share > 0.05 {
            eprintln!(
                "alltoall{n}.{kind}: a barrier is {:.1} % of the {:.0} ms run",
                share * 100.0,
                s.run.as_secs_f64() * 1e3
            );
        }
        let path = format!("alltoall{n}.{kind}");
        println!(
            "{}",
            Record::from_samples(&path, "msgs_per_s", ALLTOALL_SIZE, &[s.rate]).to_line()
        );
    }
    Ok(())
}

/// Prints the records of rank 0 in the line format `collect` reads.
#[cfg(feature = "mpi")]
fn emit(report: Option<Report>) {
    if let Some(r) = report {
        for rec in r.records {
            println!("{}", rec.to_line());
        }
    }
}

pub fn worker(args: &WorkerArgs) -> Result<ExitCode, String> {
    let cfg = args.selection.config(args.quick);
    let e = |e: shmpi::Error| e.to_string();
    match args.kind {
        WorkerKind::AlltoallShm => {
            let mut group = MailboxGroup::from_env().map_err(e)?;
            alltoall_worker(&mut group, "shm", args.seconds)?;
        }
        WorkerKind::Victim => {
            let mut group = MailboxGroup::from_env().map_err(e)?;
            group.send(0, 1, b"ready").map_err(|e| e.to_string())?;
            std::thread::sleep(Duration::from_secs(60));
        }
        #[cfg(feature = "mpi")]
        WorkerKind::Pingpong
        | WorkerKind::HybridDsm
        | WorkerKind::HybridOver
        | WorkerKind::AlltoallMpi
        | WorkerKind::Heat2d
        | WorkerKind::Heat2dNode
        | WorkerKind::Hello => {
            mpi_worker(args, &cfg)?;
        }
        #[cfg(not(feature = "mpi"))]
        _ => return Err("this shmpi was built without MPI".into()),
    }
    let _ = cfg;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "mpi")]
fn mpi_worker(args: &WorkerArgs, cfg: &Config) -> Result<(), String> {
    use shmpi::mpi::{Mpi, MpiTransport, ThreadLevel};
    let e = |e: shmpi::Error| e.to_string();
    match args.kind {
        WorkerKind::Pingpong => {
            let mpi = Mpi::init(ThreadLevel::Single).map_err(|e| e.to_string())?;
            let world = mpi.dup_world().map_err(|e| e.to_string())?;
            emit(shmpi_cli::bench::mpi::pingpong(&world, &args.path, cfg).map_err(e)?);
        }
        WorkerKind::HybridDsm => {
            let mpi = Mpi::init(ThreadLevel::Multiple).map_err(|e| e.to_string())?;
            let world = mpi.dup_world().map_err(|e| e.to_string())?;
            let mut hybrid = shmpi::hybrid::HybridWorld::new(&mpi).map_err(e)?;
            let mut out = shmpi_cli::bench::mpi::hybrid(&mut hybrid, cfg).map_err(e)?;
            let dsm = shmpi_cli::bench::mpi::dsm(&world, cfg).map_err(e)?;
            if let (Some(o), Some(d)) = (out.as_mut(), dsm) {
                // Across hosts the paths say so.
                let suffix = if args.path == "internode" {
                    ".internode"
                } else {
                    ""
                };
                o.records.extend(d.records.into_iter().map(|mut r| {
                    if r.path.starts_with("dsm.") || r.path == "mpi.roundtrip" {
                        r.path.push_str(suffix);
                    }
                    r
                }));
            }
            emit(out);
        }
        WorkerKind::HybridOver => {
            let mpi = Mpi::init(ThreadLevel::Single).map_err(|e| e.to_string())?;
            let mut hybrid = shmpi::hybrid::HybridWorld::new(&mpi).map_err(e)?;
            emit(shmpi_cli::bench::mpi::hybrid_oversubscribed(&mut hybrid, cfg).map_err(e)?);
        }
        WorkerKind::Hello => {
            Mpi::init(ThreadLevel::Single).map_err(|e| e.to_string())?;
        }
        WorkerKind::Heat2d | WorkerKind::Heat2dNode => {
            use shmpi_cli::bench::heat2d;
            let mpi = Mpi::init(ThreadLevel::Multiple).map_err(|e| e.to_string())?;
            let mut world = shmpi::hybrid::HybridWorld::new(&mpi).map_err(e)?;
            for &n in heat2d::EDGES {
                let steps = heat2d::steps_for(n, cfg.quick);
                let out = if matches!(args.kind, WorkerKind::Heat2dNode) {
                    heat2d::run_node(&mut world, n, steps)
                } else {
                    heat2d::run(&mut world, n, steps, args.threads)
                };
                if let Some(out) = out.map_err(e)? {
                    println!("{}", heat2d::checked(out)?.record.to_line());
                }
            }
        }
        WorkerKind::AlltoallMpi => {
            let mpi = Mpi::init(ThreadLevel::Single).map_err(|e| e.to_string())?;
            let mut t = MpiTransport::new(mpi.dup_world().map_err(|e| e.to_string())?);
            alltoall_worker(&mut t, "mpi", args.seconds)?;
        }
        _ => {}
    }
    Ok(())
}
