#!/usr/bin/env bash
# The hybrid mode's measurements, in one run (issue 5), each against its
# baseline measured in the same run:
#   hybrid.intranode vs mpi.sm     2 ranks on this host
#   hybrid.internode vs mpi.tcp    1 rank on each of two network-namespace
#                                  hosts (scripts/netns-cluster.sh)
#   heat2d (issue 15), grid edges 128, 256, 1024, 2048, computed in place:
#     heat2d.R1xT2 vs heat2d.R2xT1      threads against ranks
#     heat2d.R1xT1 / .R1xT2 vs limit.heat2d.T1 / .T2   the team's speed-up
#                                       against plain threads'
#     heat2d.node.R2 vs heat2d.R2xT1    node-shared grid against pure MPI
#     and on 2 emulated nodes: heat2d.R4xT1, heat2d.node.R4, heat2d.R2xT2;
#     across the two namespace hosts (one rank each): heat2d.R2xT1 and
#     heat2d.node.R2 at 128² and 1024² in heat2d.hosts.records
#
#   scripts/bench-hybrid.sh [OUTDIR] [ROUNDS]   JSON records (DESIGN.md) in
#                                        OUTDIR (default target/bench-hybrid),
#                                        heat2d in ROUNDS alternating rounds
#                                        (default 5), then the ratios per round
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-hybrid}
rounds=${2:-5}
mkdir -p "$out"
cargo build --locked --release -q --examples --bin shmpi
run() { target/release/shmpi mpirun --timeout 600 "$@"; }
ex=target/release/examples

run -n 2 $ex/mpi_pingpong --json "$out/mpi.sm.json"
run -n 2 $ex/hybrid_pingpong --json "$out/hybrid.intranode.json"
# heat2d: every layout at every edge in each round, the rounds one after
# another, so a slow spell of the machine does not land on one
# configuration only. Each run checks its grid against a serial run.
heat() { # file, then the launcher's arguments
  local file=$1
  shift
  "$@" | grep '^shmpi-record' >>"$file"
}
for round in $(seq "$rounds"); do
  rec="$out/heat2d.round$round.records"
  : >"$rec"
  for n in 128 256 1024 2048; do
    heat "$rec" $ex/heat2d $n --limit --threads 1
    heat "$rec" $ex/heat2d $n --limit --threads 2
    heat "$rec" run -n 1 $ex/heat2d $n --threads 1
    heat "$rec" run -n 2 $ex/heat2d $n --threads 1
    heat "$rec" run -n 1 --threads 2 $ex/heat2d $n --threads 2
    heat "$rec" run -n 2 $ex/heat2d $n --node
    # Two emulated nodes (oversubscribed on a 2-core machine).
    heat "$rec" env SHMPI_RANKS_PER_NODE=2 target/release/shmpi mpirun --timeout 600 -n 4 $ex/heat2d $n --threads 1
    heat "$rec" env SHMPI_RANKS_PER_NODE=2 target/release/shmpi mpirun --timeout 600 -n 4 $ex/heat2d $n --node
    heat "$rec" env SHMPI_RANKS_PER_NODE=1 target/release/shmpi mpirun --timeout 600 -n 2 --threads 2 $ex/heat2d $n --threads 2
  done
done
# The targets' ratios, round by round (records: path metric size median …).
echo "heat2d ratios per round (target): R1xT2/R2xT1 (<= 1.1 at 128-1024), team speed-up / limit's (>= 0.9 at 1024, 2048), node.R2/R2xT1 (<= 1.0)"
for round in $(seq "$rounds"); do
  awk -v round="$round" '
    { t[$2 " " $4] = $5 }
    END {
      line = "round " round ":"
      split("128 256 1024 2048", ns, " ")
      for (i = 1; i <= 4; i++) {
        n = ns[i]
        threads = t["heat2d.R1xT2 " n] / t["heat2d.R2xT1 " n]
        team = t["heat2d.R1xT1 " n] / t["heat2d.R1xT2 " n]
        lim = t["limit.heat2d.T1 " n] / t["limit.heat2d.T2 " n]
        node = t["heat2d.node.R2 " n] / t["heat2d.R2xT1 " n]
        line = line sprintf("  %d²: %.2f %.2f %.2f", n, threads, team / lim, node)
      }
      print line
    }' "$out/heat2d.round$round.records"
done
# Across two hosts, one rank each: everything crosses TCP.
status=0
scripts/netns-cluster.sh --slots 1 -- sh -c "
  target/release/shmpi mpirun -n 2 --timeout 600 $ex/mpi_pingpong --path mpi.tcp --json $out/mpi.tcp.json &&
  target/release/shmpi mpirun -n 2 --timeout 600 $ex/hybrid_pingpong --json $out/hybrid.internode.json &&
  : > $out/heat2d.hosts.out &&
  for n in 128 1024; do
    target/release/shmpi mpirun -n 2 --timeout 600 $ex/heat2d \$n --threads 1 >> $out/heat2d.hosts.out &&
    target/release/shmpi mpirun -n 2 --timeout 600 $ex/heat2d \$n --node >> $out/heat2d.hosts.out || exit 1
  done &&
  grep '^shmpi-record' $out/heat2d.hosts.out > $out/heat2d.hosts.records" || status=$?
[ "$status" -eq 77 ] && echo "the *.internode rows need network namespaces: skipped"
echo "records in $out/"
[ "$status" -eq 0 ] || [ "$status" -eq 77 ]
