//! `shmpi ls`, `inspect`, `rm`, `gc`: what is in /dev/shm. A segment's
//! contents are untrusted: a corrupt or truncated header is reported as
//! such, never a crash.

use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shmpi::bench::json_string;
use shmpi::mailbox::{MailboxGroup, PeerStatus};
use shmpi::segment::{HeaderFields, Segment, SegmentKind, SegmentName, HEADER_SIZE};
use shmpi::SegmentError;

const SHM_DIR: &str = "/dev/shm";

/// What one object in /dev/shm is.
struct Entry {
    name: String,
    kind: String,
    size: u64,
    /// The decoded header, for a shmpi segment.
    header: Option<HeaderFields>,
    /// `alive`, `dead`, `corrupt: …`, or `foreign`.
    state: String,
    age: Option<Duration>,
    shmpi: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether some process holds the segment open through shmpi (its presence
/// lock); `None` when the name is not one shmpi can check.
fn in_use(name: &str) -> Option<bool> {
    Segment::in_use(&SegmentName::new(name).ok()?).ok()
}

/// Reads one entry: its header (if any) and whether anyone uses it.
fn examine(name: &str) -> Entry {
    let path = std::path::Path::new(SHM_DIR).join(name);
    let meta = std::fs::metadata(&path).ok();
    let size = meta.as_ref().map_or(0, |m| m.len());
    let mtime_age = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    let mut head = Vec::with_capacity(HEADER_SIZE);
    let read =
        std::fs::File::open(&path).and_then(|f| f.take(HEADER_SIZE as u64).read_to_end(&mut head));
    let header = HeaderFields::from_bytes(&head)
        .ok()
        .filter(|h| h.magic == shmpi::segment::MAGIC);
    let Some(h) = header else {
        return Entry {
            name: name.to_owned(),
            kind: "foreign".to_owned(),
            size,
            header: None,
            state: match read {
                Err(e) => format!("unreadable: {e}"),
                Ok(_) if head.len() < HEADER_SIZE && name.starts_with("shmpi") => {
                    format!("corrupt: {} bytes, shorter than a header", head.len())
                }
                Ok(_) => "foreign".to_owned(),
            },
            age: mtime_age,
            shmpi: name.starts_with("shmpi") && head.len() < HEADER_SIZE,
        };
    };
    let state = match h.validate(size, None) {
        Err(e) => format!("corrupt: {e}"),
        Ok(_) => match in_use(name) {
            Some(true) => "alive".to_owned(),
            Some(false) => "dead".to_owned(),
            None => "unknown".to_owned(),
        },
    };
    Entry {
        name: name.to_owned(),
        kind: SegmentKind(h.kind).name().to_owned(),
        size,
        header: Some(h),
        state,
        age: Some(Duration::from_millis(
            now_ms().saturating_sub(h.created_unix_ms),
        )),
        shmpi: true,
    }
}

fn entries() -> Result<Vec<Entry>, String> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(|e| format!("{SHM_DIR}: {e}"))?;
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names.iter().map(|n| examine(n)).collect())
}

fn human_age(age: Option<Duration>) -> String {
    match age.map(|a| a.as_secs()) {
        None => "–".to_owned(),
        Some(s) if s < 120 => format!("{s} s"),
        Some(s) if s < 7200 => format!("{} min", s / 60),
        Some(s) if s < 172_800 => format!("{} h", s / 3600),
        Some(s) => format!("{} d", s / 86_400),
    }
}

/// The states `shmpi ls --state` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum State {
    /// A shmpi segment some process holds.
    Alive,
    /// A shmpi segment nobody holds (what `shmpi gc` removes).
    Dead,
    /// Not shmpi's.
    Foreign,
    /// A shmpi name whose header does not check.
    Corrupt,
    /// Could not be read.
    Unreadable,
}

impl State {
    fn holds(self, entry: &Entry) -> bool {
        let word = match self {
            State::Alive => "alive",
            State::Dead => "dead",
            State::Foreign => "foreign",
            State::Corrupt => "corrupt",
            State::Unreadable => "unreadable",
        };
        entry.state == word || entry.state.starts_with(&format!("{word}:"))
    }
}

pub fn ls(json: bool, states: &[State]) -> Result<ExitCode, String> {
    let mut all = entries()?;
    if !states.is_empty() {
        all.retain(|e| states.iter().any(|s| s.holds(e)));
    }
    if json {
        let rows: Vec<String> = all
            .iter()
            .map(|e| {
                format!(
                    "{{\"name\": {}, \"kind\": {}, \"size\": {}, \"creator_pid\": {}, \"state\": {}, \"age_s\": {}, \"shmpi\": {}}}",
                    json_string(&e.name),
                    json_string(&e.kind),
                    e.size,
                    e.header.map_or("null".to_owned(), |h| h.creator_pid.to_string()),
                    json_string(&e.state),
                    e.age.map_or("null".to_owned(), |a| a.as_secs().to_string()),
                    e.shmpi
                )
            })
            .collect();
        println!("[{}]", rows.join(",\n "));
        return Ok(ExitCode::SUCCESS);
    }
    let width = all.iter().map(|e| e.name.len()).max().unwrap_or(4).max(4);
    println!(
        "{:width$}  {:13} {:>12}  {:>8}  {:30}  age",
        "name", "kind", "size", "creator", "state"
    );
    for e in &all {
        println!(
            "{:width$}  {:13} {:>12}  {:>8}  {:30}  {}",
            e.name,
            e.kind,
            e.size,
            e.header
                .map_or("–".to_owned(), |h| h.creator_pid.to_string()),
            e.state,
            human_age(e.age)
        );
    }
    if all.is_empty() {
        println!("(nothing in {SHM_DIR})");
    }
    Ok(ExitCode::SUCCESS)
}

/// The object name a command was given: a shared-memory object name only
/// (`SegmentName`'s rules), never a path.
fn object_name(name: &str) -> Result<SegmentName, String> {
    SegmentName::new(name)
        .map_err(|e| format!("{name:?} is not a shared-memory object name (no paths): {e}"))
}

pub fn inspect(name: &str) -> Result<ExitCode, String> {
    let name = object_name(name)?;
    let bare = name.file_name();
    if !std::path::Path::new(SHM_DIR).join(bare).exists() {
        return Err(format!("{bare}: no such shared-memory object in {SHM_DIR}"));
    }
    let e = examine(bare);
    if let Some(problem) = e.state.strip_prefix("unreadable: ") {
        return Err(format!("{bare}: unreadable: {problem}"));
    }
    println!(
        "name     {}\nkind     {}\nsize     {} bytes\nstate    {}",
        e.name, e.kind, e.size, e.state
    );
    if let Some(h) = &e.header {
        println!(
            "creator  pid {}, uid {}, {} ago\nheader   version {}, data at byte {}, {} bytes in all, ready word {:#x}",
            h.creator_pid,
            h.creator_uid,
            human_age(e.age),
            h.version,
            h.data_offset,
            h.total_size,
            h.ready
        );
    }
    if e.state.starts_with("corrupt") {
        eprintln!("shmpi inspect: {bare}: {}", e.state);
        return Ok(ExitCode::FAILURE);
    }
    if !e.shmpi {
        return Ok(ExitCode::SUCCESS);
    }
    if e.kind == SegmentKind::MAILBOX_GROUP.name() {
        let seg = Segment::builder(bare)
            .expect_kind(SegmentKind::MAILBOX_GROUP)
            .ready_timeout(Duration::ZERO)
            .allow_foreign_owner(true)
            .open()
            .map_err(|e| format!("{bare}: {e}"))?;
        let report =
            MailboxGroup::inspect(&seg).map_err(|e| format!("{bare}: corrupt group: {e}"))?;
        println!(
            "group    {} members, {} bytes reserved ({} per member: a pool of {} × {} bytes, lanes of {} bytes)",
            report.members.len(),
            report.reserved,
            report.reserved_per_member,
            report.fragments,
            report.fragment,
            report.lane
        );
        println!(
            "doorbell {}",
            if report.membarrier {
                "membarrier (asymmetric: plain loads on sends, membarrier(2) before a sleep)"
            } else {
                "fenced (a swap on every send)"
            }
        );
        for (id, status) in report.members.iter().enumerate() {
            let s = match status {
                PeerStatus::Vacant => "vacant",
                PeerStatus::Alive => "alive",
                PeerStatus::Left => "left",
                PeerStatus::Dead => "dead",
            };
            println!(
                "  member {id}: {s}, pool {} of {} fragments in use, {} lost wake-ups",
                report.pool_in_use[id], report.fragments, report.lost_wakeups[id]
            );
        }
        println!("  lane      messages        bytes  queued  sender sleeps  receiver sleeps");
        for (src, dst, c) in &report.rings {
            println!(
                "  {src:>3} → {dst:<3} {:>9} {:>12} {:>7} {:>14} {:>16}",
                c.messages, c.bytes, c.queued_bytes, c.sender_sleeps, c.receiver_sleeps
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rm(names: &[String]) -> Result<ExitCode, String> {
    let mut failed = 0;
    for name in names {
        let removed = object_name(name)
            .and_then(|n| Segment::remove(&n).map_err(|e| e.to_string()).map(|()| n));
        match removed {
            Ok(n) => println!("removed {}", n.file_name()),
            Err(e) => {
                eprintln!("shmpi rm: {e}");
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A shmpi segment nobody uses: its presence lock is free (which covers a
/// group's members: each holds the segment open) — or a shmpi object too
/// short to hold a header.
fn garbage(e: &Entry) -> bool {
    e.shmpi
        && (e.state == "dead" || (e.state.starts_with("corrupt") && in_use(&e.name) == Some(false)))
}

/// Removes what nobody uses. Each candidate is removed by
/// [`Segment::remove_if_unused`]: the presence byte taken exclusively and
/// the inode checked before the unlink, so a segment that someone opened
/// or created since the listing is left alone.
pub fn gc(dry_run: bool) -> Result<ExitCode, String> {
    let (mut n, mut failed) = (0, 0);
    for e in entries()?.iter().filter(|e| garbage(e)) {
        let Ok(name) = SegmentName::new(&e.name) else {
            continue;
        };
        n += 1;
        if dry_run {
            println!("would remove {} ({}, {})", e.name, e.kind, e.state);
            continue;
        }
        match Segment::remove_if_unused(&name) {
            Ok(true) => println!("removed {} ({}, {})", e.name, e.kind, e.state),
            Ok(false) => println!("kept {}: in use again, or gone", e.name),
            Err(SegmentError::NotFound { .. }) => println!("kept {}: gone", e.name),
            Err(err) => {
                eprintln!("shmpi gc: {}: {err}", e.name);
                failed += 1;
            }
        }
    }
    if n == 0 {
        println!("nothing to collect");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
