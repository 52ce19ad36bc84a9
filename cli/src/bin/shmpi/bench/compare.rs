//! The seed's qualitative comparison, row by row, beside the figure
//! measured in this run that backs or contradicts it.

use shmpi_cli::bench::Report;

fn get(r: &Report, path: &str, metric: &str, size: usize) -> Option<f64> {
    r.find(path, metric, size)
        .map(|x| x.median)
        .filter(|v| v.is_finite())
}

fn ns(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v >= 10_000.0 => format!("{:.1} µs", v / 1000.0),
        Some(v) if v >= 1000.0 => format!("{:.2} µs", v / 1000.0),
        Some(v) => format!("{v:.0} ns"),
    }
}

fn rate(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.2} M msg/s", v / 1e6))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

fn times(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}×"))
}

/// The comparison table, Markdown.
pub fn table(r: &Report) -> String {
    let lat = |p: &str| get(r, p, "latency_ns", 8);
    let shm = lat("shm.default");
    let spin = lat("limit.spin");
    let sem = lat("limit.sem");
    let block = lat("shm.block");
    let mpi = lat("mpi.sm");
    let mpi_c = lat("mpi.c");
    let hybrid = lat("hybrid.intranode");
    let bw_shm = get(r, "shm.spin", "bandwidth_mbps", 1 << 20);
    let bw_mpi = get(r, "mpi.sm", "bandwidth_mbps", 1 << 20);
    let a_shm = get(r, "alltoall16.shm", "msgs_per_s", 64);
    let a_mpi = get(r, "alltoall16.mpi", "msgs_per_s", 64);
    let fault = get(r, "fault.detect", "time_ms", 0);
    let owner = lat("dsm.owner.get");
    let rma = lat("dsm.rma.get");
    let local = lat("dsm.local.get");
    let trip = lat("mpi.roundtrip");
    let inter = lat("hybrid.internode");
    let h_mpi = get(r, "heat2d.R2xT1", "time_ms", 128);
    let h_thr = get(r, "heat2d.R1xT2", "time_ms", 128);
    let tcp_inter = lat("mpi.tcp.internode");

    let msg_vs_store = ratio(shm, spin);
    let mpi_vs_shm = ratio(mpi, shm);
    let scal = ratio(a_shm, a_mpi);
    let verdict = |cond: Option<bool>, yes: &str, no: &str| match cond {
        None => "not measured".to_owned(),
        Some(true) => yes.to_owned(),
        Some(false) => no.to_owned(),
    };
    let rows = [
        (
            "Communication",
            "explicit: send and receive",
            "implicit: loads and stores",
            format!(
                "8 B from one process to another: a mailbox message {} against a bare cache-line hand-off {} ({})",
                ns(shm), ns(spin), times(msg_vs_store)
            ),
            verdict(msg_vs_store.map(|x| x > 1.0), "backs: being explicit costs the extra", "contradicts"),
        ),
        (
            "Synchronisation",
            "implied by the messages",
            "explicit: semaphores, barriers",
            format!(
                "a blocking mailbox message (data and wake-up) {} against a bare semaphore round {}",
                ns(block), ns(sem)
            ),
            verdict(ratio(block, sem).map(|x| x < 2.0), "backs: a message is a synchronisation that also carries data", "partly: the message costs more than the bare wake-up"),
        ),
        (
            "Performance",
            "lower",
            "higher",
            format!(
                "8 B: MPI {} (C: {}) against the shared-memory mailbox {} ({}); 1 MiB bandwidth MPI {} against mailbox {} MB/s; hybrid (mailbox inside MPI) {}; heat2d 128² per step: 2 ranks {} ms, 1 rank × 2 threads {} ms",
                ns(mpi), ns(mpi_c), ns(shm), times(mpi_vs_shm),
                bw_mpi.map_or("–".into(), |v| format!("{v:.0}")),
                bw_shm.map_or("–".into(), |v| format!("{v:.0}")),
                ns(hybrid),
                h_mpi.map_or("–".into(), |v| format!("{v:.3}")),
                h_thr.map_or("–".into(), |v| format!("{v:.3}"))
            ),
            verdict(mpi_vs_shm.map(|x| x > 1.0), "backs for small messages", "contradicts"),
        ),
        (
            "Scalability",
            "high: across hosts",
            "low: one host",
            format!(
                "16 processes all-to-all (64 B) on {} cores: mailboxes {} against MPI {} ({}); a group of 128 reserves {} and starts in {} (`mpirun -n 128` hello: {}); across hosts only messages go: {}",
                shmpi::mailbox::online_cpus(), rate(a_shm), rate(a_mpi), times(scal),
                get(r, "scale.mem", "bytes", 128).map_or("–".into(), |b| format!("{:.0} MB", b / 1e6)),
                get(r, "scale.setup", "time_ms", 128).map_or("–".into(), |t| format!("{t:.0} ms")),
                get(r, "mpi.setup", "time_ms", 128).map_or("–".into(), |t| format!("{t:.0} ms")),
                if inter.is_some() || tcp_inter.is_some() {
                    format!("hybrid {} / MPI over TCP {} one way", ns(inter), ns(tcp_inter))
                } else {
                    "(not measured: --hosts)".to_owned()
                }
            ),
            verdict(scal.map(|x| x >= 1.0), "on one host contradicted (shared memory keeps up); across hosts backed", "backs: shared memory falls behind"),
        ),
        (
            "Fault isolation",
            "a process owns its memory",
            "shared state outlives a crash",
            format!(
                "a SIGKILLed mailbox peer is detected in {} and the others go on; a dead MPI rank ends the whole Open MPI 4.1 job (no ULFM)",
                fault.map_or("–".into(), |v| format!("{v:.0} ms"))
            ),
            verdict(fault.map(|_| true), "contradicts here: the shared-memory side isolates, MPI does not", ""),
        ),
        (
            "Bridges",
            "shared memory emulated on messages: slow and costly",
            "messages on shared memory: fast",
            format!(
                "reading one remote element: owner protocol {} = {} an MPI round trip ({}); one-sided MPI {}; a local element {}",
                ns(owner), times(ratio(owner, trip)), ns(trip), ns(rma), ns(local)
            ),
            verdict(ratio(owner, local).map(|x| x > 2.0), "backs: a remote read costs a round trip", "contradicts"),
        ),
    ];
    let mut out = String::from(
        "| the seed says | message passing | shared memory | measured here | verdict |\n|---|---|---|---|---|\n",
    );
    for (what, mp, sm, measured, v) in rows {
        out.push_str(&format!("| {what} | {mp} | {sm} | {measured} | {v} |\n"));
    }
    out
}

/// heat2d in place, layout against layout, each ratio from this run:
/// threads against ranks, the team's speed-up against plain threads', the
/// node-shared grid against pure MPI. Empty when heat2d was not measured.
pub fn heat2d_table(r: &Report) -> String {
    let t = |path: &str, n: usize| get(r, path, "time_ms", n);
    let mut out = String::new();
    for &n in shmpi_cli::bench::heat2d::EDGES {
        let threads = ratio(t("heat2d.R1xT2", n), t("heat2d.R2xT1", n));
        let team = ratio(t("heat2d.R1xT1", n), t("heat2d.R1xT2", n));
        let limit = ratio(t("limit.heat2d.T1", n), t("limit.heat2d.T2", n));
        let node = ratio(t("heat2d.node.R2", n), t("heat2d.R2xT1", n));
        if threads.or(node).or(limit).is_none() {
            continue;
        }
        let f = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
        out.push_str(&format!(
            "| {n}² | {} | {} / {} = {} | {} |\n",
            f(threads),
            f(team),
            f(limit),
            f(ratio(team, limit)),
            f(node)
        ));
    }
    if out.is_empty() {
        return out;
    }
    format!(
        "| heat2d | 1 rank × 2 threads / 2 ranks | team speed-up / plain threads' | node-shared / pure MPI |\n|---|---:|---:|---:|\n{out}"
    )
}
