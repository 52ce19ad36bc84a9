//! The `shmpi` command on real segments: listing, inspecting, collecting
//! garbage (never a foreign object), corrupt segments reported without a
//! crash, and `shmpi run`.

use std::process::Command;

use shmpi::mailbox::{MailboxGroup, MailboxOptions};
use shmpi::segment::{Segment, SegmentName};

/// `shmpi gc` removes any dead shmpi segment in /dev/shm — another test's
/// too — so the tests of this file take turns: this lock under `cargo
/// test` (threads), a nextest test group (`.config/nextest.toml`) under
/// nextest (one process per test).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn shmpi(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shmpi"))
        .args(args)
        .output()
        .expect("running shmpi");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Removes a /dev/shm entry when dropped (also when the test fails).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/dev/shm/{}", self.0));
    }
}

fn line_of<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} not listed:\n{text}"))
}

#[test]
fn ls_gc_and_rm_tell_alive_dead_foreign_and_corrupt_apart() {
    let _turn = turn();
    let pid = std::process::id();
    // Alive: this process holds it.
    let alive = SegmentName::unique("cli-alive");
    let seg = Segment::create(&alive, 4096).unwrap();
    let _c1 = Cleanup(alive.file_name().to_owned());
    // Dead: created by a process that is gone (persisted, never removed).
    let dead = SegmentName::unique("cli-dead");
    let _c2 = Cleanup(dead.file_name().to_owned());
    {
        let mut s = Segment::create(&dead, 4096).unwrap();
        s.persist();
    } // closed: nobody holds it now
      // Foreign: not shmpi's.
    let foreign = format!("cli-foreign-{pid}");
    std::fs::write(format!("/dev/shm/{foreign}"), b"someone else's").unwrap();
    let _c3 = Cleanup(foreign.clone());
    // Corrupt: a shmpi name, too short for a header.
    let corrupt = format!("shmpi.cli-corrupt-{pid}");
    std::fs::write(format!("/dev/shm/{corrupt}"), b"SHMPI").unwrap();
    let _c4 = Cleanup(corrupt.clone());

    let (ok, text) = shmpi(&["ls"]);
    assert!(ok, "{text}");
    assert!(
        line_of(&text, alive.file_name()).contains("alive"),
        "{text}"
    );
    assert!(line_of(&text, dead.file_name()).contains("dead"), "{text}");
    assert!(line_of(&text, &foreign).contains("foreign"), "{text}");
    assert!(line_of(&text, &corrupt).contains("corrupt"), "{text}");
    // --state selects (repeatable, comma-separated).
    let (ok, text) = shmpi(&["ls", "--state", "dead,corrupt"]);
    assert!(
        ok && text.contains(dead.file_name()) && text.contains(&corrupt),
        "{text}"
    );
    assert!(
        !text.contains(alive.file_name()) && !text.contains(&foreign),
        "{text}"
    );
    let (ok, text) = shmpi(&["ls", "--state", "alive", "--state", "foreign"]);
    assert!(
        ok && text.contains(alive.file_name()) && text.contains(&foreign),
        "{text}"
    );
    assert!(!text.contains(dead.file_name()), "{text}");
    let (ok, _) = shmpi(&["ls", "--state", "sleepy"]);
    assert!(!ok);
    let (ok, json) = shmpi(&["ls", "--json"]);
    assert!(
        ok && json.contains(&format!("\"name\": \"{foreign}\"")),
        "{json}"
    );
    // The envelope every --json output has (README), and the rows.
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["schema"], shmpi_cli::bench::SCHEMA);
    assert_eq!(doc["command"], "ls");
    assert_eq!(doc["tool"]["name"], "shmpi");
    assert!(doc["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(doc["machine"]["cpus"].as_u64().unwrap() >= 1);
    let row = |name: &str| {
        doc["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in {json}"))
    };
    assert_eq!(row(dead.file_name())["state"], "dead");
    assert_eq!(row(alive.file_name())["creator_pid"], pid);
    assert_eq!(row(&foreign)["shmpi"], false);
    let (ok, text) = shmpi(&["inspect", "--json", alive.file_name()]);
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        ok && doc["segment"]["header"]["total_size"].as_u64().is_some(),
        "{text}"
    );
    let (ok, text) = shmpi(&["inspect", "--json", &corrupt]);
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        !ok && doc["segment"]["state"]
            .as_str()
            .unwrap()
            .starts_with("corrupt")
    );
    let (ok, text) = shmpi(&["gc", "--dry-run", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(ok && doc["dry_run"] == true, "{text}");
    let outcomes = doc["segments"].as_array().unwrap();
    assert!(outcomes
        .iter()
        .any(|r| r["name"] == dead.file_name() && r["outcome"] == "would remove"));
    assert!(!outcomes.iter().any(|r| r["name"] == alive.file_name()));

    let (ok, text) = shmpi(&["gc", "--dry-run"]);
    assert!(
        ok && text.contains(dead.file_name()) && text.contains(&corrupt),
        "{text}"
    );
    assert!(
        !text.contains(alive.file_name()) && !text.contains(&foreign),
        "{text}"
    );
    assert!(std::path::Path::new(&format!("/dev/shm/{}", dead.file_name())).exists());

    let (ok, text) = shmpi(&["gc"]);
    assert!(ok, "{text}");
    assert!(!std::path::Path::new(&format!("/dev/shm/{}", dead.file_name())).exists());
    assert!(!std::path::Path::new(&format!("/dev/shm/{corrupt}")).exists());
    assert!(
        std::path::Path::new(&format!("/dev/shm/{foreign}")).exists(),
        "gc touched a foreign object"
    );
    assert!(std::path::Path::new(&format!("/dev/shm/{}", alive.file_name())).exists());

    let (ok, text) = shmpi(&["rm", &foreign]);
    assert!(
        ok && !std::path::Path::new(&format!("/dev/shm/{foreign}")).exists(),
        "{text}"
    );
    let (ok, _) = shmpi(&["rm", "no-such-segment-anywhere"]);
    assert!(!ok);
    let (ok, text) = shmpi(&["rm", "--json", "no-such-segment-anywhere"]);
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        !ok && doc["errors"][0]["name"] == "no-such-segment-anywhere",
        "{text}"
    );
    drop(seg);
}

#[test]
fn inspect_shows_a_groups_members_and_rings_and_survives_garbage() {
    let _turn = turn();
    let name = SegmentName::unique("cli-group");
    let _c = Cleanup(name.file_name().to_owned());
    let mut a = MailboxGroup::create_or_join(&name, 0, 2, &MailboxOptions::default()).unwrap();
    let b = MailboxGroup::join(&name, 1, &MailboxOptions::default()).unwrap();
    a.send(1, 5, b"hello").unwrap();
    let (ok, text) = shmpi(&["inspect", name.file_name()]);
    assert!(ok, "{text}");
    assert!(
        text.contains("mailbox-group") && text.contains("2 members"),
        "{text}"
    );
    assert!(
        text.contains("member 0: alive") && text.contains("member 1: alive"),
        "{text}"
    );
    assert!(text.contains("0 lost wake-ups"), "{text}");
    if std::env::var_os(shmpi::mailbox::DOORBELL_ENV).is_none() {
        assert!(text.contains("doorbell fenced"), "{text}");
    }
    let ring = text
        .lines()
        .find(|l| l.contains("0 → 1"))
        .expect("ring 0 → 1");
    assert_eq!(
        ring.split_whitespace().nth(3),
        Some("1"),
        "one message: {ring}"
    );
    let (ok, text) = shmpi(&["inspect", "--json", name.file_name()]);
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let group = &doc["segment"]["group"];
    assert!(ok && group["members"][1]["status"] == "alive", "{text}");
    let ring = group["rings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["src"] == 0 && r["dst"] == 1)
        .expect("ring 0 → 1");
    assert_eq!(ring["messages"], 1, "{text}");
    drop(b);
    let (_, text) = shmpi(&["inspect", name.file_name()]);
    assert!(text.contains("member 1: left"), "{text}");
    drop(a);

    // A header with the magic but nonsense fields: reported, no crash.
    let bad = format!("shmpi.cli-bad-{}", std::process::id());
    let _c2 = Cleanup(bad.clone());
    let mut bytes = vec![0xEEu8; 4096];
    bytes[..8].copy_from_slice(&shmpi::segment::MAGIC.to_ne_bytes());
    std::fs::write(format!("/dev/shm/{bad}"), &bytes).unwrap();
    let (ok, text) = shmpi(&["inspect", &bad]);
    assert!(!ok && text.contains("corrupt"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    let (ok, text) = shmpi(&["ls"]);
    assert!(ok && line_of(&text, &bad).contains("corrupt"), "{text}");
}

#[test]
fn run_starts_a_group_and_prefixes_output_with_ranks() {
    let _turn = turn();
    let (ok, text) = shmpi(&[
        "run",
        "-n",
        "3",
        "--",
        "sh",
        "-c",
        "echo rank $SHMPI_RANK of $SHMPI_SIZE",
    ]);
    assert!(ok, "{text}");
    for r in 0..3 {
        assert!(text.contains(&format!("[{r}] rank {r} of 3")), "{text}");
    }
    let (ok, text) = shmpi(&["run", "-n", "2", "--", "sh", "-c", "exit $SHMPI_RANK"]);
    assert!(!ok && text.contains("rank 1"), "{text}");
}

/// Issue 12, defects 8 and 9: commands take shared-memory object names
/// only (a path is refused and nothing outside /dev/shm is touched), and a
/// command that did not do what was asked exits non-zero with a reason.
#[test]
fn names_not_paths_and_honest_exit_codes() {
    let _turn = turn();
    let outside = std::env::temp_dir().join(format!("shmpi-cli-victim-{}", std::process::id()));
    std::fs::write(&outside, b"keep me").unwrap();
    let relative = format!("../..{}", outside.display());
    for args in [
        vec!["rm", relative.as_str()],
        vec!["rm", outside.to_str().unwrap()],
        vec!["inspect", relative.as_str()],
    ] {
        let (ok, text) = shmpi(&args);
        assert!(!ok, "shmpi {args:?} succeeded: {text}");
        assert!(text.contains("not a shared-memory object name"), "{text}");
    }
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    std::fs::remove_file(&outside).unwrap();

    let missing = SegmentName::unique("cli-missing");
    let (ok, text) = shmpi(&["inspect", missing.file_name()]);
    assert!(!ok, "inspect of a missing name succeeded: {text}");
    assert!(text.contains("no such shared-memory object"), "{text}");
    let (ok, text) = shmpi(&["rm", missing.file_name()]);
    assert!(!ok && text.contains(missing.file_name()), "{text}");
}

/// `shmpi mpirun -np N` as mpirun spells it (issue 17); the program's own
/// `-np` is passed through untouched.
#[test]
fn mpirun_takes_np_like_mpirun() {
    let _turn = turn();
    let (ok, text) = shmpi(&[
        "mpirun",
        "-np",
        "2",
        "--timeout",
        "60",
        "sh",
        "-c",
        "echo rank $OMPI_COMM_WORLD_RANK$PMI_RANK: $0",
        "-np",
    ]);
    assert!(ok, "{text}");
    for r in 0..2 {
        assert!(text.contains(&format!("rank {r}: -np")), "{text}");
    }
}

/// `shmpi bench` measures only what is asked (`--only`, `--sizes`,
/// `--iterations`) and prints OSU's columns (`--format osu`); its JSON file
/// has the common envelope (issue 17).
#[test]
fn bench_selects_paths_and_sizes_and_speaks_osu() {
    let _turn = turn();
    let dir = std::env::temp_dir().join(format!("shmpi-cli-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("bench.json");
    let (ok, text) = shmpi(&[
        "bench",
        "--only",
        "shm.default,threads.*",
        "--sizes",
        "8,4096",
        "--iterations",
        "500",
        "--format",
        "osu",
        "--json",
        json.to_str().unwrap(),
    ]);
    let file = std::fs::read_to_string(&json);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "{text}");
    assert!(text.contains("# Size          Latency (us)"), "{text}");
    let doc: serde_json::Value = serde_json::from_str(&file.unwrap()).unwrap();
    assert_eq!(doc["schema"], shmpi_cli::bench::SCHEMA);
    let mut rows: Vec<(String, u64, String)> = doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_owned(),
                r["size"].as_u64().unwrap(),
                r["metric"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(_, _, metric)| metric == "latency_ns")
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("shm.default".to_owned(), 8, "latency_ns".to_owned()),
            ("shm.default".to_owned(), 4096, "latency_ns".to_owned()),
            ("threads.default".to_owned(), 8, "latency_ns".to_owned()),
            ("threads.default".to_owned(), 4096, "latency_ns".to_owned()),
        ]
    );
    for line in ["8 ", "4096 "] {
        assert!(text.lines().any(|l| l.starts_with(line)), "{text}");
    }
    let (ok, _) = shmpi(&["bench", "--iterations", "0"]);
    assert!(!ok, "zero iterations must be refused");
}
