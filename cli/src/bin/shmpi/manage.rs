//! `shmpi ls`, `inspect`, `rm`, `gc`: what is in /dev/shm. A segment's
//! contents are untrusted: a corrupt or truncated header is reported as
//! such, never a crash.

use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
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

impl Entry {
    /// The entry as `ls --json` and `inspect --json` give it.
    fn to_json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "kind": self.kind,
            "size": self.size,
            "creator_pid": self.header.map(|h| h.creator_pid),
            "creator_uid": self.header.map(|h| h.creator_uid),
            "state": self.state,
            "age_s": self.age.map(|a| a.as_secs()),
            "shmpi": self.shmpi,
        })
    }
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
        let rows: Vec<_> = all.iter().map(Entry::to_json).collect();
        crate::json::print("ls", json!({ "segments": rows }));
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

fn peer_status(status: &PeerStatus) -> &'static str {
    match status {
        PeerStatus::Vacant => "vacant",
        PeerStatus::Alive => "alive",
        PeerStatus::Left => "left",
        PeerStatus::Dead => "dead",
    }
}

pub fn inspect(name: &str, json: bool) -> Result<ExitCode, String> {
    let name = object_name(name)?;
    let bare = name.file_name();
    if !std::path::Path::new(SHM_DIR).join(bare).exists() {
        return Err(format!("{bare}: no such shared-memory object in {SHM_DIR}"));
    }
    let e = examine(bare);
    if let Some(problem) = e.state.strip_prefix("unreadable: ") {
        return Err(format!("{bare}: unreadable: {problem}"));
    }
    let corrupt = e.state.starts_with("corrupt");
    let group = if !corrupt && e.shmpi && e.kind == SegmentKind::MAILBOX_GROUP.name() {
        let seg = Segment::builder(bare)
            .expect_kind(SegmentKind::MAILBOX_GROUP)
            .ready_timeout(Duration::ZERO)
            .allow_foreign_owner(true)
            .open()
            .map_err(|e| format!("{bare}: {e}"))?;
        Some(MailboxGroup::inspect(&seg).map_err(|e| format!("{bare}: corrupt group: {e}"))?)
    } else {
        None
    };
    if json {
        let mut doc = e.to_json();
        if let Some(h) = &e.header {
            doc["header"] = json!({
                "version": h.version,
                "data_offset": h.data_offset,
                "total_size": h.total_size,
                "ready": h.ready,
                "created_unix_ms": h.created_unix_ms,
            });
        }
        if let Some(g) = &group {
            doc["group"] = json!({
                "members": g.members.iter().enumerate().map(|(id, st)| json!({
                    "rank": id,
                    "status": peer_status(st),
                    "pool_in_use": g.pool_in_use[id],
                    "lost_wakeups": g.lost_wakeups[id],
                })).collect::<Vec<_>>(),
                "reserved": g.reserved,
                "reserved_per_member": g.reserved_per_member,
                "fragments": g.fragments,
                "fragment": g.fragment,
                "lane": g.lane,
                "doorbell": if g.membarrier { "membarrier" } else { "fenced" },
                "rings": g.rings.iter().map(|(src, dst, c)| json!({
                    "src": src, "dst": dst, "messages": c.messages, "bytes": c.bytes,
                    "queued_bytes": c.queued_bytes, "sender_sleeps": c.sender_sleeps,
                    "receiver_sleeps": c.receiver_sleeps,
                })).collect::<Vec<_>>(),
            });
        }
        crate::json::print("inspect", json!({ "segment": doc }));
        return Ok(if corrupt {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
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
    if corrupt {
        eprintln!("shmpi inspect: {bare}: {}", e.state);
        return Ok(ExitCode::FAILURE);
    }
    if let Some(report) = group {
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
            println!(
                "  member {id}: {}, pool {} of {} fragments in use, {} lost wake-ups",
                peer_status(status),
                report.pool_in_use[id],
                report.fragments,
                report.lost_wakeups[id]
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

pub fn rm(names: &[String], json: bool) -> Result<ExitCode, String> {
    let (mut removed, mut errors) = (Vec::new(), Vec::new());
    for name in names {
        let outcome = object_name(name)
            .and_then(|n| Segment::remove(&n).map_err(|e| e.to_string()).map(|()| n));
        match outcome {
            Ok(n) => removed.push(n.file_name().to_owned()),
            Err(e) => errors.push((name.clone(), e)),
        }
    }
    if json {
        let errors: Vec<_> = errors
            .iter()
            .map(|(name, error)| json!({"name": name, "error": error}))
            .collect();
        crate::json::print("rm", json!({"removed": removed, "errors": errors}));
    } else {
        for n in &removed {
            println!("removed {n}");
        }
        for (_, e) in &errors {
            eprintln!("shmpi rm: {e}");
        }
    }
    Ok(if errors.is_empty() {
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
pub fn gc(dry_run: bool, json: bool) -> Result<ExitCode, String> {
    // (name, kind, state, what happened)
    let mut outcomes: Vec<(String, String, String, String)> = Vec::new();
    let mut failed = 0;
    for e in entries()?.iter().filter(|e| garbage(e)) {
        let Ok(name) = SegmentName::new(&e.name) else {
            continue;
        };
        let outcome = if dry_run {
            "would remove".to_owned()
        } else {
            match Segment::remove_if_unused(&name) {
                Ok(true) => "removed".to_owned(),
                Ok(false) => "kept: in use again, or gone".to_owned(),
                Err(SegmentError::NotFound { .. }) => "kept: gone".to_owned(),
                Err(err) => {
                    failed += 1;
                    format!("error: {err}")
                }
            }
        };
        outcomes.push((e.name.clone(), e.kind.clone(), e.state.clone(), outcome));
    }
    if json {
        let rows: Vec<_> = outcomes
            .iter()
            .map(|(name, kind, state, outcome)| {
                json!({"name": name, "kind": kind, "state": state, "outcome": outcome})
            })
            .collect();
        crate::json::print("gc", json!({"dry_run": dry_run, "segments": rows}));
    } else {
        for (name, kind, state, outcome) in &outcomes {
            match outcome.strip_prefix("error: ") {
                Some(err) => eprintln!("shmpi gc: {name}: {err}"),
                None => match outcome.strip_prefix("kept") {
                    Some(why) => println!("kept {name}{why}"),
                    None => println!("{outcome} {name} ({kind}, {state})"),
                },
            }
        }
        if outcomes.is_empty() {
            println!("nothing to collect");
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
