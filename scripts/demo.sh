#!/usr/bin/env bash
# THE main job: build shmpi (timed on its own), then measure the two ways
# parallel processes communicate on this machine and show a bridge at work:
#  1. `shmpi bench --quick`: latency, bandwidth and cost of shared memory,
#     mailboxes, MPI, the hybrid world and the distributed array, placed
#     beside the seed's table of adjectives — and a plot;
#  2. heat2d: a 2-D heat grid over MPI ranks (halo messages) and the threads
#     of each rank (shared memory), checked bit for bit against a serial run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

out=target/demo
mkdir -p "$out"
echo "== building (timed apart from the demo)"
build_start=$SECONDS
cargo build --release --locked --examples --bin shmpi
make -s -C c_examples
build_time=$((SECONDS - build_start))

demo_start=$SECONDS
echo
echo "== 1. shmpi bench --quick: message passing against shared memory, measured here"
target/release/shmpi bench --quick --json "$out/bench.json" --plot "$out/latency.svg" \
  --c-baseline target/c_examples/osu_latency
echo
echo "== 2. heat2d: 2 MPI ranks x 2 threads, halos through the hybrid world, checked against a serial run"
target/release/shmpi mpirun -n 2 --threads 2 --timeout 120 target/release/examples/heat2d 256 500 --threads 2
echo
echo "build: ${build_time} s; demo: $((SECONDS - demo_start)) s"
echo "table above; records: $out/bench.json; plot: $out/latency.svg"
