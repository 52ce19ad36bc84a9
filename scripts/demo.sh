#!/usr/bin/env bash
# THE main job: build shmpi and show two real processes cooperating through
# a shared-memory segment (a typed array and a process-shared semaphore).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== building"
cargo build --release --locked --examples
echo
echo "== two processes share a segment: one writes 1M f64, the other waits on a semaphore and verifies"
./target/release/examples/shared_array 1048576
