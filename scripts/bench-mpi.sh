#!/usr/bin/env bash
# The MPI layer against C on the same MPI, in one run (issue 16), each
# figure against its baseline measured in the same round:
#   mpi.sm            shmpi `recv_into` at MPI_THREAD_SINGLE (probe + receive)
#     vs mpi.c        C MPI_Send/MPI_Recv (c_examples/osu_latency)
#   mpi.c.probe, mpi.c.mprobe   C receiving safely, the two ways
#   mpi.sm.multiple   shmpi at MPI_THREAD_MULTIPLE (matched probe)
#     vs mpi.c.multiple   C MPI_Mprobe/MPI_Mrecv at MPI_THREAD_MULTIPLE
#   dsm.*.single      dsm_bench --single: the owner protocol, RMA and a local
#                     element at MPI_THREAD_SINGLE, against the C round trip
#                     (twice mpi.c's one-way 8 B)
#   dsm.*.multiple    dsm_bench at MULTIPLE: the progress-thread get against
#                     the MULTIPLE C round trip (twice mpi.c.multiple's 8 B)
#                     and against shmpi's own round trip in the same job
#
#   scripts/bench-mpi.sh [OUTDIR] [ROUNDS]   records (one `shmpi-record` line
#                                       each) in OUTDIR (default
#                                       target/bench-mpi), ROUNDS alternating
#                                       rounds (default 5), then the target
#                                       ratios per round and their medians
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-mpi}
rounds=${2:-5}
mkdir -p "$out"
cargo build --locked --release -q --examples --bin shmpi
make -s -C c_examples >/dev/null
run() { target/release/shmpi mpirun --timeout 600 "$@"; }
ex=target/release/examples
osu=target/c_examples/osu_latency
records() { # file, then the launcher's arguments
  local file=$1
  shift
  run "$@" | grep '^shmpi-record' >>"$file"
}
for round in $(seq "$rounds"); do
  rec="$out/round$round"
  : >"$rec.records"
  : >"$rec.dsm-single.records"
  : >"$rec.dsm-multiple.records"
  records "$rec.records" -n 2 $osu --records
  records "$rec.records" -n 2 $ex/mpi_pingpong --records
  records "$rec.records" -n 2 $osu --probe --records
  records "$rec.records" -n 2 $osu --mprobe --records
  records "$rec.records" -n 2 $osu --multiple --records
  records "$rec.records" -n 2 $ex/mpi_pingpong --thread-level multiple --path mpi.sm.multiple --records
  records "$rec.dsm-single.records" -n 2 $ex/dsm_bench --single --records
  records "$rec.dsm-multiple.records" -n 2 --threads 2 $ex/dsm_bench --records
done
# Records: shmpi-record path metric size median min max n. Columns, each
# with its target where the issue sets one; "safe C" is the cheaper of C's
# two receives that keep a too-long message (probe, mprobe) in the round.
cols="sm/c@8(<=1.1) sm/c@1M(<=1.03) sm/safeC@8 mult/c.mult@8(<=1.2) mult/c.mult@1M(<=1.2)"
cols="$cols owner/Crt(<=1.5) owner/safeCrt rma/Crt(<=0.2) progress/CrtM(<=3) progress/rtM local.get_ns(<=20)"
echo "ratios per round: $cols"
for round in $(seq "$rounds"); do
  rec="$out/round$round"
  awk -v round="$round" '
    $3 == "latency_ns" {
      level = FILENAME ~ /dsm-single/ ? ".single" : FILENAME ~ /dsm-multiple/ ? ".multiple" : ""
      t[$2 level " " $4] = $5
    }
    END {
      safe = t["mpi.c.probe 8"] < t["mpi.c.mprobe 8"] ? t["mpi.c.probe 8"] : t["mpi.c.mprobe 8"]
      rt = 2 * t["mpi.c 8"]
      rtm = 2 * t["mpi.c.multiple 8"]
      printf "round %d: %.2f %.2f %.2f %.2f %.2f %.2f %.2f %.3f %.2f %.2f %.1f\n", round,
        t["mpi.sm 8"] / t["mpi.c 8"], t["mpi.sm 1048576"] / t["mpi.c 1048576"],
        t["mpi.sm 8"] / safe,
        t["mpi.sm.multiple 8"] / t["mpi.c.multiple 8"],
        t["mpi.sm.multiple 1048576"] / t["mpi.c.multiple 1048576"],
        t["dsm.owner.get.single 8"] / rt, t["dsm.owner.get.single 8"] / (2 * safe),
        t["dsm.rma.get.single 8"] / rt,
        t["dsm.owner.get.progress.multiple 8"] / rtm,
        t["dsm.owner.get.progress.multiple 8"] / t["mpi.roundtrip.multiple 8"],
        t["dsm.local.get.single 8"]
    }' "$rec.records" "$rec.dsm-single.records" "$rec.dsm-multiple.records"
done | tee "$out/ratios.txt"
# The median of each column over the rounds.
awk '{ for (i = 3; i <= NF; i++) v[i, NR] = $i; n = NR; f = NF }
  END {
    line = "median:"
    for (i = 3; i <= f; i++) {
      m = 0
      for (r = 1; r <= n; r++) a[r] = v[i, r]
      # insertion sort of the column
      for (r = 2; r <= n; r++) { x = a[r]; k = r - 1; while (k >= 1 && a[k] > x) { a[k + 1] = a[k]; k-- }; a[k + 1] = x }
      m = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      line = line sprintf(" %s", m)
    }
    print line
  }' "$out/ratios.txt"
echo "records in $out/"
