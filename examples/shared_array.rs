//! Two real processes share one segment: the writer fills a typed array and
//! posts a process-shared semaphore; the reader (this program, started again
//! by the writer with the argument `reader`) waits on it, reads the array,
//! verifies every element and posts an acknowledgement.
//!
//! ```text
//! cargo run --example shared_array [-- ELEMENTS]
//! ```
//!
//! Layout of the segment's data region:
//!
//! | offset | object |
//! |---|---|
//! | 0   | `Semaphore` "data ready" |
//! | 64  | `Semaphore` "data verified" |
//! | 128 | `[f64; ELEMENTS]` |

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use shmpi::segment::{Segment, SegmentName};
use shmpi::sync::Semaphore;

const READY_AT: usize = 0;
const VERIFIED_AT: usize = 64;
const ARRAY_AT: usize = 128;
const TIMEOUT: Duration = Duration::from_secs(10);

fn element(i: usize) -> f64 {
    (i as f64).sqrt() * 0.5
}

fn writer(elements: usize) -> shmpi::Result<()> {
    let name = SegmentName::unique("demo");
    let seg = Segment::create(&name, ARRAY_AT + elements * 8)?;
    let ready = Semaphore::create_in(&seg, READY_AT, 0)?;
    let verified = Semaphore::create_in(&seg, VERIFIED_AT, 0)?;
    println!(
        "[writer {}] created {} ({} bytes, mode 0600)",
        std::process::id(),
        name,
        seg.len()
    );

    let exe = std::env::current_exe().expect("current_exe");
    let mut reader = Command::new(exe)
        .args(["reader", name.as_str(), &elements.to_string()])
        .spawn()
        .expect("spawn reader");

    let start = Instant::now();
    let handshake = || -> shmpi::Result<()> {
        let values: Vec<f64> = (0..elements).map(element).collect();
        seg.slice::<f64>(ARRAY_AT, elements)?
            .copy_from_slice(&values);
        let sum: f64 = values.iter().sum();
        println!(
            "[writer {}] wrote {elements} f64 values (sum {sum:.6}) in {:?}; posting 'data ready'",
            std::process::id(),
            start.elapsed()
        );
        ready.post()?;
        Ok(verified.wait_timeout(TIMEOUT)?)
    };
    let verdict = handshake();
    if verdict.is_err() {
        let _ = reader.kill();
    }
    let status = reader.wait().expect("wait for reader");
    verdict?;
    assert!(status.success(), "reader failed: {status}");
    println!(
        "[writer {}] reader verified the data; round trip {:?}; segment removed on exit",
        std::process::id(),
        start.elapsed()
    );
    Ok(())
}

fn reader(name: &str, elements: usize) -> shmpi::Result<()> {
    let name = SegmentName::new(name).expect("valid name from the writer");
    let seg = Segment::open(&name)?;
    let ready = Semaphore::open_in(&seg, READY_AT)?;
    println!(
        "[reader {}] opened {name}; waiting for 'data ready'",
        std::process::id()
    );
    ready.wait_timeout(TIMEOUT)?;
    let values = seg.slice::<f64>(ARRAY_AT, elements)?.to_vec();
    let bad = (0..elements).filter(|&i| values[i] != element(i)).count();
    let sum: f64 = values.iter().sum();
    println!(
        "[reader {}] read {elements} values, sum {sum:.6}, {bad} wrong",
        std::process::id()
    );
    assert_eq!(bad, 0, "reader found wrong values");
    Semaphore::open_in(&seg, VERIFIED_AT)?.post()?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("reader") => reader(&args[2], args[3].parse().expect("element count")),
        n => writer(n.and_then(|n| n.parse().ok()).unwrap_or(1 << 20)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shared_array: {e}");
            ExitCode::FAILURE
        }
    }
}
