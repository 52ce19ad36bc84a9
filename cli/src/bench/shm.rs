//! Mailboxes between two processes, one per core, with the hardware's
//! limits measured in the same run (DESIGN.md, benchmark records).
//!
//! Paths: `limit.spin` (one cache line ping-ponged, both directions in it),
//! `limit.spin2` (one line per direction), `limit.sem` (process-shared
//! semaphore ping-pong), `limit.memcpy`; `shm.spin`, `shm.default`,
//! `shm.block` (copying send/receive), `shm.zerocopy` (loan/commit and
//! receive by reference: the payload is neither written nor read, only the
//! mechanism is timed, as iceoryx2 measures), `threads.default` (the same
//! rings between two threads of one process). Latency is one way: half the
//! round trip.
//!
//! The peer is this program again: [`measure`] starts the current
//! executable with [`PEER_ENV`] set, and the program's `main` must call
//! [`run_peer_if_requested`] first.

use shmpi::transport::Wait;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Config, Record, Report};
use shmpi::mailbox::{MailboxGroup, MailboxOptions, WaitStrategy, GROUP_ENV, RANK_ENV, SIZE_ENV};
use shmpi::segment::{Segment, SegmentName};
use shmpi::sync::affinity::{pin_this_thread, AffinityGuard};
use shmpi::sync::Semaphore;
use shmpi::transport::Transport;

/// Set (to the limits segment's name) in the peer process's environment.
pub const PEER_ENV: &str = "SHMPI_BENCH_PEER";

const CONTROL: i32 = 1000;
const DATA: i32 = 1;
const ACK: i32 = 2;
const LAT_SIZES: [usize; 5] = [8, 64, 1 << 10, 64 << 10, 1 << 20];
const BW_SIZES: [usize; 3] = [64 << 10, 1 << 20, 4 << 20];

// Offsets in the limits segment.
const LINE_A: usize = 0;
const LINE_B: usize = 64;
const SEM_PING: usize = 128;
const SEM_PONG: usize = 192;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Quit = 0,
    Spin1 = 1,
    Spin2 = 2,
    Sem = 3,
    Latency = 4,
    ZeroCopy = 5,
    Bandwidth = 6,
}

/// One experiment, as the parent tells the peer.
#[derive(Clone, Copy, Debug)]
struct Plan {
    kind: Kind,
    wait: WaitStrategy,
    size: usize,
    iters: u64,
    samples: usize,
}

impl Plan {
    fn encode(&self) -> [u64; 5] {
        let wait = match self.wait {
            WaitStrategy::Spin => 0,
            WaitStrategy::SpinThenBlock => 1,
            WaitStrategy::Block => 2,
        };
        [
            self.kind as u64,
            wait,
            self.size as u64,
            self.iters,
            self.samples as u64,
        ]
    }

    fn decode(w: &[u64]) -> Result<Plan, String> {
        let kind = match w.first() {
            Some(0) => Kind::Quit,
            Some(1) => Kind::Spin1,
            Some(2) => Kind::Spin2,
            Some(3) => Kind::Sem,
            Some(4) => Kind::Latency,
            Some(5) => Kind::ZeroCopy,
            Some(6) => Kind::Bandwidth,
            other => return Err(format!("bad plan {other:?}")),
        };
        let wait = match w.get(1) {
            Some(0) => WaitStrategy::Spin,
            Some(2) => WaitStrategy::Block,
            _ => WaitStrategy::SpinThenBlock,
        };
        Ok(Plan {
            kind,
            wait,
            size: *w.get(2).ok_or("short plan")? as usize,
            iters: *w.get(3).ok_or("short plan")?,
            samples: *w.get(4).ok_or("short plan")? as usize,
        })
    }
}

fn spin_until(word: &AtomicU64, value: u64) {
    while word.load(Ordering::Acquire) != value {
        std::hint::spin_loop();
    }
}

/// The side of an experiment that each process runs. `lead` is the parent.
struct Side<'a> {
    group: &'a mut MailboxGroup,
    limits: &'a Segment,
    lead: bool,
    buf: Vec<u8>,
}

impl Side<'_> {
    fn peer(&self) -> usize {
        1 - self.group.rank()
    }

    /// Runs `plan` and returns the samples (parent) in the metric's unit.
    fn run(&mut self, plan: Plan) -> Result<Vec<f64>, String> {
        let e = |e: shmpi::MailboxError| e.to_string();
        self.group.set_wait_strategy(plan.wait);
        let mut samples = Vec::with_capacity(plan.samples);
        let peer = self.peer();
        let line_a = self.limits.atomic_u64(LINE_A).map_err(|e| e.to_string())?;
        let line_b = self.limits.atomic_u64(LINE_B).map_err(|e| e.to_string())?;
        let ping = Semaphore::open_in(self.limits, SEM_PING).map_err(|e| e.to_string())?;
        let pong = Semaphore::open_in(self.limits, SEM_PONG).map_err(|e| e.to_string())?;
        let mut counter = 0u64;
        for _ in 0..plan.samples {
            let start = Instant::now();
            for _ in 0..plan.iters {
                counter += 1;
                match (plan.kind, self.lead) {
                    (Kind::Spin1, true) => {
                        line_a.store(2 * counter - 1, Ordering::Release);
                        spin_until(line_a, 2 * counter);
                    }
                    (Kind::Spin1, false) => {
                        spin_until(line_a, 2 * counter - 1);
                        line_a.store(2 * counter, Ordering::Release);
                    }
                    (Kind::Spin2, true) => {
                        line_a.store(counter, Ordering::Release);
                        spin_until(line_b, counter);
                    }
                    (Kind::Spin2, false) => {
                        spin_until(line_a, counter);
                        line_b.store(counter, Ordering::Release);
                    }
                    (Kind::Sem, true) => {
                        ping.post().map_err(|e| e.to_string())?;
                        pong.wait().map_err(|e| e.to_string())?;
                    }
                    (Kind::Sem, false) => {
                        ping.wait().map_err(|e| e.to_string())?;
                        pong.post().map_err(|e| e.to_string())?;
                    }
                    (Kind::Latency, true) => {
                        self.group
                            .send(peer, DATA, &self.buf[..plan.size])
                            .map_err(e)?;
                        self.group
                            .recv_into(peer, DATA, &mut self.buf, Wait::Forever)
                            .map_err(e)?;
                    }
                    (Kind::Latency, false) => {
                        let (_, _, len) = self
                            .group
                            .recv_into(peer, DATA, &mut self.buf, Wait::Forever)
                            .map_err(e)?;
                        self.group.send(peer, DATA, &self.buf[..len]).map_err(e)?;
                    }
                    (Kind::ZeroCopy, true) => {
                        self.group.loan(peer, DATA, plan.size).map_err(e)?.commit();
                        drop(self.group.recv_ref(peer, DATA, Wait::Forever).map_err(e)?);
                    }
                    (Kind::ZeroCopy, false) => {
                        let len = self
                            .group
                            .recv_ref(peer, DATA, Wait::Forever)
                            .map_err(e)?
                            .len();
                        self.group.loan(peer, DATA, len).map_err(e)?.commit();
                    }
                    (Kind::Bandwidth, true) => {
                        self.group
                            .send(peer, DATA, &self.buf[..plan.size])
                            .map_err(e)?;
                    }
                    (Kind::Bandwidth, false) => {
                        self.group
                            .recv_into(peer, DATA, &mut self.buf, Wait::Forever)
                            .map_err(e)?;
                    }
                    (Kind::Quit, _) => return Ok(samples),
                }
            }
            if plan.kind == Kind::Bandwidth {
                if self.lead {
                    self.group
                        .recv_into(peer, ACK, &mut self.buf, Wait::Forever)
                        .map_err(e)?;
                } else {
                    self.group.send(peer, ACK, &[]).map_err(e)?;
                }
            }
            let secs = start.elapsed().as_secs_f64();
            samples.push(if plan.kind == Kind::Bandwidth {
                (plan.iters as f64 * plan.size as f64) / secs / 1e6
            } else {
                secs * 1e9 / plan.iters as f64 / 2.0
            });
        }
        // Reset the limit lines for the next experiment (both sides agree:
        // the next plan message orders these stores before the next use).
        if self.lead {
            line_a.store(0, Ordering::Release);
            line_b.store(0, Ordering::Release);
        }
        Ok(samples)
    }
}

fn latency_iters(cfg: &Config, size: usize, wait: WaitStrategy) -> u64 {
    let base: u64 = match size {
        s if s <= 1 << 10 => 20_000,
        s if s <= 64 << 10 => 2_000,
        _ => 100,
    };
    let base = if wait == WaitStrategy::Block {
        base / 10
    } else {
        base
    };
    cfg.iterations_or(if cfg.quick { (base / 4).max(10) } else { base })
}

/// Runs every measurement (a peer process and a peer thread are started
/// and ended here) and returns the records. `progress` is told what is
/// being measured.
///
/// # Errors
///
/// A description of what failed (starting the peer, a mailbox error).
pub fn measure(cfg: &Config, progress: &mut dyn FnMut(&str)) -> Result<Report, String> {
    // Pinned to core 0 while measuring; the caller's CPU set comes back
    // afterwards (processes it starts later inherit it).
    let _restore = AffinityGuard::save();
    pin_this_thread(0);
    measure_pinned(cfg, progress)
}

fn measure_pinned(cfg: &Config, progress: &mut dyn FnMut(&str)) -> Result<Report, String> {
    let s = |e: shmpi::Error| e.to_string();
    let options = MailboxOptions::default();
    let name = SegmentName::unique("bench");
    let _group_segment = MailboxGroup::create_segment(&name, 2, &options).map_err(s)?;
    let limits = Segment::builder(SegmentName::unique("bench-limits").as_str())
        .size(256)
        .create_init(|seg| {
            Semaphore::create_in(seg, SEM_PING, 0)?;
            Semaphore::create_in(seg, SEM_PONG, 0)?;
            Ok(())
        })
        .map_err(s)?;
    let mut peer = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .env(GROUP_ENV, name.as_str())
        .env(RANK_ENV, "1")
        .env(SIZE_ENV, "2")
        .env(PEER_ENV, limits.name().as_str())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut group = MailboxGroup::join(&name, 0, &options).map_err(s)?;
    let max_loan = group.max_record_payload();
    let mut side = Side {
        group: &mut group,
        limits: &limits,
        lead: true,
        buf: vec![0x5A; 4 << 20],
    };
    let samples = if cfg.quick { 3 } else { 7 };
    let mut report = Report::default();
    let mut measure =
        |side: &mut Side, path: &str, metric: &'static str, plan: Plan| -> Result<(), String> {
            if !cfg.wants(path) {
                return Ok(());
            }
            progress(&format!("{path} {}", super::human_size(plan.size)));
            side.group
                .send_pod(1, CONTROL, &plan.encode())
                .map_err(|e| e.to_string())?;
            let mut got = side.run(plan)?;
            got.remove(0); // warm-up
            report
                .records
                .push(Record::from_samples(path, metric, plan.size, &got));
            Ok(())
        };
    let plan = |kind, wait, size, iters| Plan {
        kind,
        wait,
        size,
        iters,
        samples: samples + 1,
    };
    use WaitStrategy::{Block, Spin, SpinThenBlock};
    let small = latency_iters(cfg, 8, Spin);
    measure(
        &mut side,
        "limit.spin",
        "latency_ns",
        plan(Kind::Spin1, Spin, 8, small),
    )?;
    measure(
        &mut side,
        "limit.spin2",
        "latency_ns",
        plan(Kind::Spin2, Spin, 8, small),
    )?;
    measure(
        &mut side,
        "limit.sem",
        "latency_ns",
        plan(Kind::Sem, Block, 8, small / 10),
    )?;
    for (path, wait) in [
        ("shm.spin", Spin),
        ("shm.default", SpinThenBlock),
        ("shm.block", Block),
    ] {
        for size in cfg.latency_sizes(&LAT_SIZES) {
            let p = plan(Kind::Latency, wait, size, latency_iters(cfg, size, wait));
            measure(&mut side, path, "latency_ns", p)?;
        }
    }
    for size in [8, 64, 1 << 10, 64 << 10, max_loan] {
        let p = plan(
            Kind::ZeroCopy,
            SpinThenBlock,
            size,
            latency_iters(cfg, 8, Spin),
        );
        measure(&mut side, "shm.zerocopy", "latency_ns", p)?;
    }
    for (path, wait) in [("shm.spin", Spin), ("shm.default", SpinThenBlock)] {
        for size in BW_SIZES {
            let window = ((64 << 20) / size as u64).clamp(4, 256) / if cfg.quick { 4 } else { 1 };
            measure(
                &mut side,
                path,
                "bandwidth_mbps",
                plan(Kind::Bandwidth, wait, size, window.max(2)),
            )?;
        }
    }
    side.group
        .send_pod(1, CONTROL, &plan(Kind::Quit, Spin, 0, 0).encode())
        .map_err(|e| e.to_string())?;
    let status = peer.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("peer failed: {status}"));
    }
    drop(group);
    if cfg.wants("threads.default") {
        threads_latency(cfg, samples, &mut report)?;
    }
    if cfg.wants_family("team.barrier") || cfg.wants_family("limit.barrier") {
        super::barrier::measure(cfg, samples, &mut report)?;
    }
    if cfg.wants("limit.memcpy") {
        memcpy_bandwidth(cfg, samples, &mut report);
    }
    report.records.retain(|r| cfg.wants(&r.path));
    Ok(report)
}

/// `threads.default`: the same rings between two pinned threads.
fn threads_latency(cfg: &Config, samples: usize, report: &mut Report) -> Result<(), String> {
    let mut members =
        MailboxGroup::threads(2, &MailboxOptions::default()).map_err(|e| e.to_string())?;
    let mut echo = members.pop().expect("two members");
    let mut lead = members.pop().expect("two members");
    for size in cfg.latency_sizes(&LAT_SIZES) {
        let iters = latency_iters(cfg, size, WaitStrategy::SpinThenBlock);
        let rounds = iters * (samples as u64 + 1);
        let results = std::thread::scope(|s| -> Result<Vec<f64>, String> {
            let peer = s.spawn(|| -> Result<(), String> {
                pin_this_thread(1);
                let mut buf = vec![0u8; size];
                for _ in 0..rounds {
                    let (_, _, len) = echo
                        .recv_into(0, DATA, &mut buf, Wait::Forever)
                        .map_err(|e| e.to_string())?;
                    echo.send(0, DATA, &buf[..len]).map_err(|e| e.to_string())?;
                }
                Ok(())
            });
            let mut buf = vec![0x5Au8; size];
            let mut out = Vec::new();
            for _ in 0..=samples {
                let start = Instant::now();
                for _ in 0..iters {
                    lead.send(1, DATA, &buf).map_err(|e| e.to_string())?;
                    lead.recv_into(1, DATA, &mut buf, Wait::Forever)
                        .map_err(|e| e.to_string())?;
                }
                out.push(start.elapsed().as_secs_f64() * 1e9 / iters as f64 / 2.0);
            }
            peer.join()
                .map_err(|_| "echo thread panicked".to_string())??;
            out.remove(0);
            Ok(out)
        })?;
        report.records.push(Record::from_samples(
            "threads.default",
            "latency_ns",
            size,
            &results,
        ));
    }
    Ok(())
}

/// `limit.memcpy`: copy bandwidth of this core, same sizes as the
/// bandwidth rows.
fn memcpy_bandwidth(cfg: &Config, samples: usize, report: &mut Report) {
    for size in BW_SIZES {
        let src = vec![0xA5u8; size];
        let mut dst = vec![0u8; size];
        let reps = ((256 << 20) / size).max(4) / if cfg.quick { 4 } else { 1 };
        let mut out = Vec::new();
        for _ in 0..=samples {
            let start = Instant::now();
            for _ in 0..reps {
                dst.copy_from_slice(std::hint::black_box(&src));
                std::hint::black_box(&mut dst);
            }
            out.push((reps * size) as f64 / start.elapsed().as_secs_f64() / 1e6);
        }
        out.remove(0);
        report.records.push(Record::from_samples(
            "limit.memcpy",
            "bandwidth_mbps",
            size,
            &out,
        ));
    }
}

fn peer() -> Result<(), String> {
    pin_this_thread(1);
    let limits_name = SegmentName::new(&std::env::var(PEER_ENV).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let limits = Segment::open(&limits_name).map_err(|e| e.to_string())?;
    let mut group = MailboxGroup::from_env().map_err(|e| e.to_string())?;
    let mut side = Side {
        group: &mut group,
        limits: &limits,
        lead: false,
        buf: vec![0; 4 << 20],
    };
    loop {
        side.group.set_wait_strategy(WaitStrategy::SpinThenBlock);
        let m = side
            .group
            .recv(0, CONTROL, Duration::from_secs(600))
            .map_err(|e| e.to_string())?;
        let words: Vec<u64> = m
            .data
            .chunks_exact(8)
            .map(bytemuck::pod_read_unaligned)
            .collect();
        let plan = Plan::decode(&words)?;
        if plan.kind == Kind::Quit {
            return Ok(());
        }
        side.run(plan)?;
    }
}

/// The ratios the mailbox issue set targets for, from `report`, as a
/// Markdown table.
pub fn target_ratios(report: &Report) -> String {
    let lat = |p: &'static str, s: usize| (p, "latency_ns", s);
    let bw = |p: &'static str, s: usize| (p, "bandwidth_mbps", s);
    let max_loan = report
        .records
        .iter()
        .filter(|r| r.path == "shm.zerocopy")
        .map(|r| r.size)
        .max()
        .unwrap_or(0);
    let rows = [
        (
            "shm.default 8 B latency / limit.spin2",
            report.ratio(lat("shm.default", 8), lat("limit.spin2", 8)),
            "≤ 1.25",
            true,
        ),
        (
            "shm.default 8 B latency / limit.spin",
            report.ratio(lat("shm.default", 8), lat("limit.spin", 8)),
            "(ambition: → 1)",
            true,
        ),
        (
            "shm.zerocopy latency at the largest loan / at 8 B",
            report.ratio(lat("shm.zerocopy", max_loan), lat("shm.zerocopy", 8)),
            "≤ 2",
            true,
        ),
        (
            "shm.spin bandwidth 1 MiB / limit.memcpy 1 MiB",
            report.ratio(bw("shm.spin", 1 << 20), bw("limit.memcpy", 1 << 20)),
            "≥ 0.5",
            false,
        ),
        (
            "shm.block 8 B latency / limit.sem",
            report.ratio(lat("shm.block", 8), lat("limit.sem", 8)),
            "0.5 – 1.2",
            true,
        ),
        (
            "shm.zerocopy 8 B / shm.default 8 B",
            report.ratio(lat("shm.zerocopy", 8), lat("shm.default", 8)),
            "≤ 1",
            true,
        ),
        (
            "team.barrier / limit.barrier (2 threads)",
            report.ratio(lat("team.barrier", 2), lat("limit.barrier", 2)),
            "≤ 1.5",
            true,
        ),
    ];
    let mut out = String::from("| ratio (medians, this run) | value | target |\n|---|---:|---|\n");
    for (what, value, target, _) in rows {
        out.push_str(&format!(
            "| {what} | {} | {target} |\n",
            value.map_or("–".to_owned(), |v| format!("{v:.2}"))
        ));
    }
    out
}

/// In the peer process (started by [`measure`] with [`PEER_ENV`] set):
/// serves the experiments, then exits the process. Elsewhere: returns.
pub fn run_peer_if_requested() {
    if std::env::var_os(PEER_ENV).is_some() && std::env::var_os(GROUP_ENV).is_some() {
        let code = match peer() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("shmpi bench peer: {e}");
                1
            }
        };
        std::process::exit(code);
    }
}
