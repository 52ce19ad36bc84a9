//! Benchmark records in one shape for every benchmark program (DESIGN.md,
//! "Benchmark records"), so results from different runs and tools can be
//! compared and plotted.
//!
//! ```json
//! {"machine": {"cpus": 2, "mpi": null, "host": "..."},
//!  "records": [{"path": "shm.default", "metric": "latency_ns", "size": 8,
//!               "median": 83.0, "min": 80.1, "max": 95.2, "n": 5}]}
//! ```
//!
//! Timings are for benchmarks only, never for pass/fail tests.
//!
//! The measurements themselves live here too, so the examples and the
//! `shmpi bench` command run the same code: [`shm`] (mailboxes between two
//! processes, and the hardware's limits), `mpi` (feature `mpi`: MPI, hybrid and
//! distributed-array paths, under `mpirun`), [`alltoall`] (many processes
//! sending to each other through any transport), [`barrier`] (the team
//! barrier against a minimal spin barrier).

pub mod alltoall;
pub mod barrier;
pub mod heat2d;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod scale;
pub mod shm;

use std::fmt::Write as _;

/// `count` samples of `job`, which performs `ops` operations, in ns per
/// operation; a first run (cold caches, threads starting) is made and
/// dropped.
///
/// # Errors
///
/// The first error of `job`.
pub(crate) fn ns_per_op<E>(
    count: usize,
    ops: u64,
    mut job: impl FnMut() -> Result<(), E>,
) -> Result<Vec<f64>, E> {
    let mut out = Vec::with_capacity(count + 1);
    for _ in 0..=count {
        let start = std::time::Instant::now();
        job()?;
        out.push(start.elapsed().as_secs_f64() * 1e9 / ops.max(1) as f64);
    }
    out.remove(0);
    Ok(out)
}

/// How long a measurement runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Config {
    /// Fewer iterations and samples: seconds rather than a minute.
    pub quick: bool,
}

/// The metrics records carry.
pub const METRICS: [&str; 5] = [
    "latency_ns",
    "bandwidth_mbps",
    "time_ms",
    "msgs_per_s",
    "bytes",
];

/// How a worker process hands records to the process that launched it: one
/// line each on its standard output, starting with this.
pub const RECORD_LINE: &str = "shmpi-record";

/// One measured figure: the median of `n` repetitions, with their spread.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Which path was measured (`shm.default`, `limit.spin`, ...).
    pub path: String,
    /// `latency_ns` (one way: half the round trip), `bandwidth_mbps`
    /// (10^6 bytes/s), `time_ms`, `msgs_per_s` or `bytes` (see [`METRICS`]).
    pub metric: &'static str,
    /// Message size in bytes.
    pub size: usize,
    /// Median of the repetitions.
    pub median: f64,
    /// Smallest repetition.
    pub min: f64,
    /// Largest repetition.
    pub max: f64,
    /// Number of repetitions.
    pub n: usize,
}

impl Record {
    /// Summarises `samples` (at least one).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmpi::bench::Record;
    ///
    /// let r = Record::from_samples("shm.spin", "latency_ns", 8, &[90.0, 80.0, 100.0]);
    /// assert_eq!((r.median, r.min, r.max, r.n), (90.0, 80.0, 100.0, 3));
    /// ```
    pub fn from_samples(path: &str, metric: &'static str, size: usize, samples: &[f64]) -> Record {
        let mut s: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        s.sort_by(f64::total_cmp);
        let median = match s.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        };
        Record {
            path: path.to_owned(),
            metric,
            size,
            median,
            min: s.first().copied().unwrap_or(f64::NAN),
            max: s.last().copied().unwrap_or(f64::NAN),
            n: s.len(),
        }
    }
}

impl Record {
    /// The record as one tab-separated line for [`Record::from_line`].
    pub fn to_line(&self) -> String {
        format!(
            "{RECORD_LINE}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.path, self.metric, self.size, self.median, self.min, self.max, self.n
        )
    }

    /// Parses a line written by [`Record::to_line`]; `None` for any other
    /// line.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmpi::bench::Record;
    ///
    /// let r = Record::from_samples("mpi.sm", "latency_ns", 8, &[400.0, 420.0]);
    /// assert_eq!(Record::from_line(&r.to_line()), Some(r));
    /// assert_eq!(Record::from_line("hello"), None);
    /// ```
    pub fn from_line(line: &str) -> Option<Record> {
        let mut f = line.trim_end().split('\t');
        if f.next()? != RECORD_LINE {
            return None;
        }
        let path = f.next()?.to_owned();
        let metric = f.next()?;
        let metric = *METRICS.iter().find(|m| **m == metric)?;
        let size = f.next()?.parse().ok()?;
        let mut num = || f.next()?.parse::<f64>().ok();
        let (median, min, max) = (num()?, num()?, num()?);
        let n = f.next()?.parse().ok()?;
        Some(Record {
            path,
            metric,
            size,
            median,
            min,
            max,
            n,
        })
    }
}

/// A set of records from one run on one machine.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The records, in measurement order.
    pub records: Vec<Record>,
    /// The MPI library measured, if any.
    pub mpi: Option<String>,
}

impl Report {
    /// The record of `path`, `metric` and `size`, if measured.
    pub fn find(&self, path: &str, metric: &str, size: usize) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| r.path == path && r.metric == metric && r.size == size)
    }

    /// `median(a) / median(b)` when both were measured.
    pub fn ratio(&self, a: (&str, &str, usize), b: (&str, &str, usize)) -> Option<f64> {
        Some(self.find(a.0, a.1, a.2)?.median / self.find(b.0, b.1, b.2)?.median)
    }

    /// The report as JSON in the common schema.
    pub fn to_json(&self) -> String {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        let mut out = format!(
            "{{\"machine\": {{\"cpus\": {}, \"mpi\": {}, \"host\": {}}},\n \"records\": [",
            crate::mailbox::online_cpus(),
            self.mpi.as_deref().map_or("null".to_owned(), json_string),
            json_string(&host)
        );
        for (i, r) in self.records.iter().enumerate() {
            let _ = write!(
                out,
                "{}\n  {{\"path\": {}, \"metric\": {}, \"size\": {}, \"median\": {}, \"min\": {}, \"max\": {}, \"n\": {}}}",
                if i == 0 { "" } else { "," },
                json_string(&r.path),
                json_string(r.metric),
                r.size,
                json_number(r.median),
                json_number(r.min),
                json_number(r.max),
                r.n
            );
        }
        out.push_str("\n]}\n");
        out
    }

    /// Writes [`to_json`](Self::to_json) to `path`.
    ///
    /// # Errors
    ///
    /// The file system's error.
    pub fn write_json(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_json())
    }

    /// The report as a Markdown table: medians with min–max.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from(
            "| path | metric | size | median | min–max | n |\n|---|---|---:|---:|---:|---:|\n",
        );
        for r in &self.records {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {}–{} | {} |",
                r.path,
                r.metric,
                match (r.metric, r.size) {
                    (_, 0) => "–".to_owned(),
                    // A workload's size is its own (heat2d: the grid's side;
                    // scale.*: processes).
                    ("time_ms" | "bytes", n) => n.to_string(),
                    (_, n) => human_size(n),
                },
                figure(r.median),
                figure(r.min),
                figure(r.max),
                r.n
            );
        }
        out
    }
}

/// `1024` → `1 KiB`.
pub fn human_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

fn figure(v: f64) -> String {
    if !v.is_finite() {
        "–".to_owned()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".to_owned()
    }
}

/// `s` as a JSON string literal (quotes, escapes).
///
/// # Examples
///
/// ```
/// assert_eq!(shmpi::bench::json_string("a\"b"), r#""a\"b""#);
/// ```
pub fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_markdown() {
        let report = Report {
            records: vec![
                Record::from_samples("limit.spin", "latency_ns", 8, &[50.0, 60.0]),
                Record::from_samples("shm.\"x\"", "bandwidth_mbps", 1 << 20, &[f64::NAN]),
            ],
            mpi: None,
        };
        let json = report.to_json();
        assert!(json.contains("\"median\": 55.000"));
        assert!(json.contains("\"path\": \"shm.\\\"x\\\"\""));
        assert!(json.contains("\"median\": null"));
        assert!(report
            .to_markdown()
            .contains("| limit.spin | latency_ns | 8 B | 55.0 | 50.0–60.0 | 2 |"));
        assert_eq!(
            report.ratio(
                ("limit.spin", "latency_ns", 8),
                ("limit.spin", "latency_ns", 8)
            ),
            Some(1.0)
        );
        assert_eq!(human_size(64 << 10), "64 KiB");
    }
}
