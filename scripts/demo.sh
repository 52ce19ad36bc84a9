#!/usr/bin/env bash
# THE main job: build shmpi, then show the two models and a bridge at work:
#  1. shared memory: two processes share a segment (a typed array and a
#     process-shared semaphore);
#  2. message passing on shared memory: 4 processes exchange 200,000
#     messages all-to-all through mailboxes, every one checked;
#  3. message passing with MPI: a token around 4 ranks under mpirun.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

echo "== building"
cargo build --release --locked --examples --bin shmpi
echo
echo "== 1. shared memory: one process writes 1M f64, the other waits on a semaphore and verifies"
./target/release/examples/shared_array 1048576
echo
echo "== 2. mailboxes: 4 processes, all-to-all, random sizes (some larger than the ring)"
./target/release/examples/mailbox_stress -n 4 --messages 200000
echo
echo "== 3. MPI: a token around 4 ranks, checksum checked every lap"
scripts/mpirun.sh -n 4 --timeout 60 target/release/examples/mpi_ring 1000
