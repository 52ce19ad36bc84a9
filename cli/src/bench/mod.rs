//! Benchmark records in one shape for every benchmark program (the
//! benchmark records), so results from different runs and tools can be
//! compared and plotted.
//!
//! ```json
//! {"schema": 1, "tool": {"name": "shmpi", "version": "0.1.0"},
//!  "timestamp": "2026-11-30T07:11:04Z",
//!  "machine": {"cpus": 2, "mpi": null, "host": "..."},
//!  "records": [{"path": "shm.default", "metric": "latency_ns", "size": 8,
//!               "median": 83.0, "min": 80.1, "max": 95.2, "n": 5}]}
//! ```
//!
//! ([`ReportFile`]; [`SCHEMA`] is its version.)
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

/// What a measurement runs, and for how long.
///
/// ```
/// use shmpi_cli::bench::Config;
///
/// let cfg = Config {
///     only: vec!["shm.default".into(), "mpi.*".into()],
///     sizes: Some(vec![8, 4096]),
///     ..Config::default()
/// };
/// assert!(cfg.wants("shm.default") && cfg.wants("mpi.sm") && !cfg.wants("shm.spin"));
/// assert!(cfg.wants_family("shm.") && !cfg.wants_family("heat2d."));
/// assert_eq!(cfg.latency_sizes(&[8, 64]), [8, 4096]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Fewer iterations and samples: seconds rather than a minute.
    pub quick: bool,
    /// Only the paths these patterns match: a path (`shm.default`) or a
    /// prefix ending in `*` (`mpi.*`). Empty: every path.
    pub only: Vec<String>,
    /// Message sizes of the latency rows (`None`: each row's own).
    pub sizes: Option<Vec<usize>>,
    /// Round trips per sample of the latency rows (`None`: chosen by
    /// size).
    pub iterations: Option<u64>,
}

impl Config {
    /// True when `path` is to be measured.
    pub fn wants(&self, path: &str) -> bool {
        self.only.is_empty()
            || self.only.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == p,
            })
    }

    /// True when some path starting with `family` may be wanted (a
    /// measurement that makes several paths runs when any is).
    pub fn wants_family(&self, family: &str) -> bool {
        self.only.is_empty()
            || self.only.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => prefix.starts_with(family) || family.starts_with(prefix),
                None => p.starts_with(family),
            })
    }

    /// The latency rows' sizes: the chosen ones, or `default`.
    pub fn latency_sizes(&self, default: &[usize]) -> Vec<usize> {
        self.sizes.clone().unwrap_or_else(|| default.to_vec())
    }

    /// Round trips per sample: the chosen number, or `default`.
    pub fn iterations_or(&self, default: u64) -> u64 {
        self.iterations.unwrap_or(default).max(1)
    }
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
/// In JSON a figure that could not be measured (NaN) is `null`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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
    /// use shmpi_cli::bench::Record;
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
    /// use shmpi_cli::bench::Record;
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

    /// The report as a [`ReportFile`]: the common schema with its
    /// version, this tool and the time, measured on this machine.
    pub fn to_file(&self) -> ReportFile {
        ReportFile {
            schema: SCHEMA,
            tool: Tool {
                name: "shmpi".to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            },
            timestamp: rfc3339(std::time::SystemTime::now()),
            machine: Machine::here(self.mpi.clone()),
            records: self.records.clone(),
        }
    }

    /// The report as JSON ([`to_file`](Self::to_file)).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.to_file())
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        text
    }

    /// Reads a report written by [`write_json`](Self::write_json) (or any
    /// writer of the schema).
    ///
    /// # Errors
    ///
    /// The file system's error, or the JSON's (as `InvalidData`).
    pub fn read_json(path: impl AsRef<std::path::Path>) -> std::io::Result<ReportFile> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
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

/// Version of the JSON file's layout ([`ReportFile`]); raised when a field
/// changes meaning or goes away (new fields do not raise it).
pub const SCHEMA: u32 = 1;

/// A report as a JSON file: DESIGN.md's schema, plus its version, the tool
/// that wrote it and when.
///
/// ```
/// use shmpi_cli::bench::{Record, Report, ReportFile};
///
/// let report = Report {
///     records: vec![Record::from_samples("shm.default", "latency_ns", 8, &[83.0, 80.0, 95.0])],
///     mpi: None,
/// };
/// let text = report.to_json();
/// let file: ReportFile = serde_json::from_str(&text).unwrap();
/// assert_eq!(file.schema, shmpi_cli::bench::SCHEMA);
/// assert_eq!(file.records, report.records);
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportFile {
    /// [`SCHEMA`] of the writer.
    pub schema: u32,
    /// The program that wrote it.
    pub tool: Tool,
    /// When it was written (RFC 3339, UTC).
    pub timestamp: String,
    /// Where it was measured.
    pub machine: Machine,
    /// The records, in measurement order.
    pub records: Vec<Record>,
}

/// The program that wrote a [`ReportFile`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tool {
    /// `shmpi`.
    pub name: String,
    /// The crate's version.
    pub version: String,
}

/// The machine a [`ReportFile`] was measured on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    /// Online CPUs.
    pub cpus: usize,
    /// The MPI library, if MPI was measured.
    pub mpi: Option<String>,
    /// The host name.
    pub host: String,
}

impl Machine {
    /// This machine, with `mpi` as the MPI library measured.
    pub fn here(mpi: Option<String>) -> Machine {
        Machine {
            cpus: shmpi::mailbox::online_cpus(),
            mpi,
            host: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
        }
    }
}

/// `now` as RFC 3339 in UTC, to the second (`2026-11-30T07:11:04Z`).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_secs(1_796_022_664);
/// assert_eq!(shmpi_cli::bench::rfc3339(t), "2026-11-30T07:11:04Z");
/// ```
pub fn rfc3339(now: std::time::SystemTime) -> String {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A [`Record`] as JSON has it: any metric name (checked against
/// [`METRICS`] on the way in), `null` for a figure not measured.
#[derive(serde::Deserialize)]
struct RecordJson {
    path: String,
    metric: String,
    size: usize,
    median: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    n: usize,
}

impl<'de> serde::Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Record, D::Error> {
        let r = <RecordJson as serde::Deserialize>::deserialize(d)?;
        Record::try_from(r).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<RecordJson> for Record {
    type Error = String;

    fn try_from(r: RecordJson) -> Result<Record, String> {
        let metric = METRICS
            .iter()
            .find(|m| **m == r.metric)
            .copied()
            .ok_or_else(|| format!("unknown metric {:?}", r.metric))?;
        let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
        Ok(Record {
            path: r.path,
            metric,
            size: r.size,
            median: nan(r.median),
            min: nan(r.min),
            max: nan(r.max),
            n: r.n,
        })
    }
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
        assert!(json.contains("\"median\": 55.0"), "{json}");
        assert!(json.contains("\"path\": \"shm.\\\"x\\\"\""), "{json}");
        assert!(json.contains("\"median\": null"), "{json}");
        let back: ReportFile = serde_json::from_str(&json).unwrap();
        assert_eq!(back.records[0], report.records[0]);
        assert!(back.records[1].median.is_nan());
        assert_eq!(back.schema, SCHEMA);
        assert!(
            serde_json::from_str::<ReportFile>(&json.replace("latency_ns", "furlongs")).is_err()
        );
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
