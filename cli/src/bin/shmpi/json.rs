//! The `--json` output of every command: one document on standard output
//! in a documented envelope (README, "The `shmpi` command"):
//!
//! ```json
//! {"schema": 1, "tool": {"name": "shmpi", "version": "0.1.0"},
//!  "timestamp": "2026-11-30T07:11:04Z",
//!  "machine": {"cpus": 2, "mpi": null, "host": "vm"},
//!  "command": "ls", ...the command's own fields}
//! ```
//!
//! `schema` is [`shmpi_cli::bench::SCHEMA`], shared with the benchmark files.

use std::time::SystemTime;

use serde_json::{json, Value};
use shmpi_cli::bench::{rfc3339, Machine, SCHEMA};

/// Prints `body`'s fields (an object) inside the envelope.
pub fn print(command: &str, body: Value) {
    let mut doc = json!({
        "schema": SCHEMA,
        "tool": {"name": "shmpi", "version": env!("CARGO_PKG_VERSION")},
        "timestamp": rfc3339(SystemTime::now()),
        "machine": Machine::here(None),
        "command": command,
    });
    if let (Some(fields), Value::Object(own)) = (doc.as_object_mut(), body) {
        fields.extend(own);
    }
    match serde_json::to_string_pretty(&doc) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("shmpi: JSON: {e}"),
    }
}
