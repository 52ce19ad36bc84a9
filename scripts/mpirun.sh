#!/usr/bin/env bash
# Thin wrapper over the library's launcher (src/mpirun.rs), which knows
# Open MPI's flags on these machines (root, oversubscribe, binding, timeout,
# one-sided components):
#   scripts/mpirun.sh -n 4 [--threads T] [--timeout SECS] [--tcp] PROGRAM [ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --release -q --bin shmpi
exec target/release/shmpi mpirun "$@"
