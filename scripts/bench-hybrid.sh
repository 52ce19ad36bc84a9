#!/usr/bin/env bash
# The hybrid mode's measurements, in one run (issue 5), each against its
# baseline measured in the same run:
#   hybrid.intranode vs mpi.sm     2 ranks on this host
#   hybrid.internode vs mpi.tcp    1 rank on each of two network-namespace
#                                  hosts (scripts/netns-cluster.sh)
#   heat2d.R1xT2 vs heat2d.R2xT1   a grid that fits in cache (128²) and one
#                                  that does not (2048²)
#
#   scripts/bench-hybrid.sh [OUTDIR]     JSON records (DESIGN.md) in OUTDIR
#                                        (default target/bench-hybrid)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-hybrid}
mkdir -p "$out"
cargo build --locked --release -q --examples --bin shmpi
run() { target/release/shmpi mpirun --timeout 600 "$@"; }
ex=target/release/examples

run -n 2 $ex/mpi_pingpong --json "$out/mpi.sm.json"
run -n 2 $ex/hybrid_pingpong --json "$out/hybrid.intranode.json"
# Alternating runs, three of each, so a slow spell of the machine does not
# land on one configuration only.
for grid in "128 3000" "2048 20"; do
  set -- $grid
  for rep in 1 2 3; do
    run -n 2 $ex/heat2d "$1" "$2" --threads 1 --json "$out/heat2d.R2xT1.$1.$rep.json"
    run -n 1 --threads 2 $ex/heat2d "$1" "$2" --threads 2 --json "$out/heat2d.R1xT2.$1.$rep.json"
  done
done
# Across two hosts, one rank each: everything crosses TCP.
status=0
scripts/netns-cluster.sh --slots 1 -- sh -c "
  target/release/shmpi mpirun -n 2 --timeout 600 $ex/mpi_pingpong --path mpi.tcp --json $out/mpi.tcp.json &&
  target/release/shmpi mpirun -n 2 --timeout 600 $ex/hybrid_pingpong --json $out/hybrid.internode.json" || status=$?
[ "$status" -eq 77 ] && echo "the *.internode rows need network namespaces: skipped"
echo "records in $out/"
[ "$status" -eq 0 ] || [ "$status" -eq 77 ]
