#!/usr/bin/env bash
# THE test command: installs what is missing, then runs every check of the
# project. Prints the time of each phase and ends with `N passed, N failed`
# (N counts tests in test phases and one check for every other phase).
# Exits non-zero on any failure. An overall watchdog (SHMPI_SUITE_TIMEOUT
# seconds, default 1800) ends a hung suite.
#   scripts/test.sh           the suite (what CI runs), the MPI parts under
#                             Open MPI and under MPICH
set -uo pipefail
cd "$(dirname "$0")/.."

if [ -z "${SHMPI_SUITE_WATCHDOG:-}" ]; then
  export SHMPI_SUITE_WATCHDOG=1
  exec timeout --kill-after=30 "${SHMPI_SUITE_TIMEOUT:-1800}" "$0" "$@"
fi

scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

export CARGO_TERM_COLOR=never
passed=0
failed=0
report=()
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

# phase NAME KIND COMMAND...: KIND is `tests` (count the tests it reports)
# or `check` (one check).
phase() {
  local name=$1 kind=$2; shift 2
  local out="$log/$name.log" start=$SECONDS status p=0 f=0
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$out"
  status=${PIPESTATUS[0]}
  if [ "$kind" = tests ]; then
    # nextest: "N tests run: N passed, N failed"; libtest: "N passed; N failed".
    p=$(grep -oE '[0-9]+ passed' "$out" | awk '{s+=$1} END {print s+0}')
    f=$(grep -oE '[0-9]+ failed' "$out" | awk '{s+=$1} END {print s+0}')
  fi
  local result=ok
  if [ "$status" -eq 77 ]; then
    # A skip says why (its last line), and counts neither way.
    result="SKIPPED ($(tail -n 1 "$out"))"; p=0; f=0
  else
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    if [ "$kind" = check ] && [ "$status" -eq 0 ]; then p=1; fi
    [ "$status" -eq 0 ] || result=FAILED
  fi
  passed=$((passed + p)); failed=$((failed + f))
  report+=("$(printf '%-28s %5ss  %s' "$name" $((SECONDS - start)) "$result")")
}

shm_objects() { ls -A /dev/shm 2>/dev/null | grep -E '^shmpi\.' | sort; }
before=$(shm_objects)

# The library's default build (what `cargo add shmpi` gives) is the
# shared-memory half: nothing of MPI, libclang, the CLI or libffi.
no_mpi_in_tree() {
  if cargo tree --locked -p shmpi -e normal,build --prefix none |
    grep -E '^(mpi|mpi-sys|mpi-derive|build-probe-mpi|bindgen|clang-sys|libffi|libffi-sys|clap|plotters) v'; then
    echo "the shared-memory half depends on the above"; return 1
  fi
}

# A new project depending on shmpi by path with default features, built
# and run where MPI and libclang do not exist: a private mount namespace
# masks their programs, libraries and headers. Skipped (77) where mount
# namespaces are refused.
lean_dependency() {
  local dir
  dir=$(mktemp -d)
  mkdir -p "$dir/src"
  cat > "$dir/Cargo.toml" <<TOML
[package]
name = "lean-user"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
shmpi = { path = "$PWD" }

[workspace]
TOML
  cat > "$dir/src/main.rs" <<'RUST'
use shmpi::prelude::*;
fn main() -> shmpi::Result<()> {
    let name = SegmentName::unique("lean");
    let seg = Segment::create(&name, 4096)?;
    seg.slice::<u64>(0, 8)?.copy_from_slice(&[7; 8]);
    let sum: u64 = Segment::open(&name)?.slice::<u64>(0, 8)?.to_vec().iter().sum();
    assert_eq!(sum, 56);
    println!("a shmpi segment without MPI: sum {sum}");
    Ok(())
}
RUST
  cp Cargo.lock "$dir/"
  if ! unshare -m true 2>/dev/null; then
    rm -rf "$dir"; echo "mount namespaces refused here (not root?)"; return 77
  fi
  CARGO_TARGET_DIR=$PWD/target/lean unshare -m sh -ec '
    mount --make-rprivate /
    for d in /usr/lib/x86_64-linux-gnu/openmpi /usr/lib/x86_64-linux-gnu/mpich \
      /usr/include/x86_64-linux-gnu/mpich /usr/lib/x86_64-linux-gnu/pmix2 /usr/lib/llvm-*; do
      [ -d "$d" ] && mount -t tmpfs none "$d"
    done
    for f in /usr/bin/mpi* /usr/bin/ompi* /usr/bin/orte* /usr/lib/x86_64-linux-gnu/libmpi* \
      /usr/lib/x86_64-linux-gnu/libclang*; do
      [ -e "$f" ] && mount --bind /dev/null "$f"
    done
    ! command -v mpicc >/dev/null || [ ! -s "$(command -v mpicc)" ]
    cd "$1" && cargo build -q && cargo run -q' sh "$dir"
  local status=$?
  rm -rf "$dir"
  return $status
}

leftovers() {
  local left
  left=$(comm -13 <(echo "$before") <(shm_objects))
  if [ -n "$left" ]; then
    echo "left in /dev/shm by the suite (now removed):"; echo "$left"
    echo "$left" | while read -r n; do rm -f "/dev/shm/$n"; done
    return 1
  fi
  echo "nothing of shmpi's left in /dev/shm"
}

# 1,000,000 messages all-to-all, random sizes up to twice a pool fragment
# (so they stream), optimised build: 4 processes blocking and default, 2
# spinning, 16 and 64 (8 and 32 per core) default. The example checks every
# message.
mailbox_stress() {
  cargo build --locked --release -q --example mailbox_stress || return 1
  local cfg
  for cfg in "-n 4 --wait default" "-n 4 --wait block" "-n 2 --wait spin" "-n 16 --wait default" "-n 64 --wait default"; do
    # shellcheck disable=SC2086
    timeout 300 target/release/examples/mailbox_stress $cfg --messages 1000000 || return 1
  done
  # The asymmetric doorbell protocol (opt-in), sleeping and spinning.
  for cfg in "-n 4 --wait block" "-n 16 --wait default"; do
    # shellcheck disable=SC2086
    SHMPI_DOORBELL=membarrier timeout 300 target/release/examples/mailbox_stress $cfg --messages 1000000 || return 1
  done
}

# The MPI examples assert their own results; run them as users do, through
# the library's launcher (SHMPI_MPIRUN picks MPICH's), from the examples
# directory $1.
run_mpi_examples() {
  local ex=$1
  scripts/mpirun.sh -n 2 --timeout 120 $ex/mpi_ring 1000 &&
    scripts/mpirun.sh -n 4 --timeout 120 $ex/mpi_ring 100 &&
    scripts/mpirun.sh -n 2 --timeout 120 $ex/mpi_pingpong --quick &&
    SHMPI_RANKS_PER_NODE=2 scripts/mpirun.sh -n 4 --timeout 120 $ex/hybrid_pingpong &&
    scripts/mpirun.sh -n 1 --threads 2 --timeout 120 $ex/heat2d 128 100 --threads 2 &&
    scripts/mpirun.sh -n 2 --timeout 120 $ex/heat2d 128 100 --threads 1 &&
    scripts/mpirun.sh -n 2 --threads 2 --timeout 120 $ex/heat2d 128 100 --threads 2 &&
    scripts/mpirun.sh -n 4 --timeout 120 $ex/heat2d 128 100 --threads 1 &&
    SHMPI_RANKS_PER_NODE=2 scripts/mpirun.sh -n 4 --threads 2 --timeout 120 $ex/heat2d 128 100 --threads 2 &&
    scripts/mpirun.sh -n 2 --timeout 120 $ex/heat2d 128 100 --node &&
    SHMPI_RANKS_PER_NODE=2 scripts/mpirun.sh -n 4 --timeout 120 $ex/heat2d 130 100 --node &&
    scripts/mpirun.sh -n 2 --threads 2 --timeout 120 $ex/dsm_histogram --draws 5000 &&
    scripts/mpirun.sh -n 4 --timeout 120 $ex/dsm_histogram --draws 2000 &&
    scripts/mpirun.sh -n 2 --threads 2 --timeout 120 $ex/dsm_bench --quick &&
    scripts/mpirun.sh -n 2 --timeout 120 $ex/rsmpi_interop &&
    SHMPI_RANKS_PER_NODE=2 scripts/mpirun.sh -n 4 --timeout 120 $ex/rsmpi_interop
}

# Under Open MPI (the default), with the C baseline built by the same MPI.
mpi_examples() {
  cargo build --locked --release -q --examples --bin shmpi || return 1
  make -s -C c_examples || return 1
  run_mpi_examples target/release/examples &&
    scripts/mpirun.sh -n 2 --timeout 120 target/c_examples/osu_latency --quick
}

# MPICH (Debian's mpich, ch4:ucx) beside Open MPI: the crate built against
# it in its own target directory (MPICC=mpicc.mpich), its MPI test file and
# every MPI example run under MPICH's launcher (SHMPI_MPIRUN).
mpich_tests() {
  SHMPI_MPIRUN=mpiexec.mpich MPICC=mpicc.mpich CARGO_TARGET_DIR=target/mpich \
    cargo test --locked --release --test mpi -- --test-threads 1
}
mpich_examples() {
  cargo build --locked --release -q --bin shmpi || return 1
  MPICC=mpicc.mpich CARGO_TARGET_DIR=target/mpich cargo build --locked --release -q --examples || return 1
  SHMPI_MPIRUN=mpiexec.mpich run_mpi_examples target/mpich/release/examples
}

# Two network-namespace hosts, 2 ranks each (scripts/netns-cluster.sh):
# the cluster tests (placement by host, private /dev/shm, mailboxes inside
# a host and TCP between, a killed rank) and heat2d across the hosts. The
# script fails if a host's /dev/shm kept anything of shmpi's, and exits 77
# (a skip, with its reason) where namespaces are refused.
cluster_tests() {
  cargo build --locked --release -q --examples --bin shmpi || return 1
  cargo nextest run --locked --profile ci --no-run --test mpi || return 1
  scripts/netns-cluster.sh -- sh -c '
    cargo nextest run --locked --profile ci --test mpi --test-threads 1 --run-ignored all -E "test(/^cluster_/)" &&
    target/release/shmpi mpirun -n 4 --threads 2 --timeout 120 target/release/examples/heat2d 128 100 --threads 2 &&
    target/release/shmpi mpirun -n 4 --timeout 120 target/release/examples/heat2d 96 50 --threads 1 &&
    target/release/shmpi mpirun -n 4 --timeout 120 target/release/examples/heat2d 96 50 --node &&
    target/release/shmpi mpirun -n 4 --timeout 120 target/release/examples/dsm_histogram --draws 500'
}

# A real single-node Slurm (scripts/slurm-cluster.sh starts and stops it):
# srun forms a mailbox group per node from Slurm's environment (every task
# checks what it received), an MPI job through Slurm's PMIx plugin, and the
# one-sided backend: refused, with its reason, where nobody set
# OMPI_MCA_osc (srun is not shmpi's launcher), working once it is set; and
# shmpi's launcher over srun (SHMPI_MPIRUN=srun: Slurm's options only).
slurm_tests() {
  cargo build --locked --release -q --examples --bin shmpi || return 1
  scripts/slurm-cluster.sh -- sh -c '
    ex=target/release/examples
    [ "$(srun -O -n 4 $ex/mailbox_stress --messages 100000 | tee /dev/stderr |
      grep -c "messages received in order, intact")" = 4 ] &&
    srun --mpi=pmix -n 2 $ex/mpi_ring 100 &&
    OMPI_MCA_osc=sm,ucx srun --mpi=pmix -O -n 2 $ex/dsm_histogram --draws 500 &&
    srun --mpi=pmix -n 2 $ex/dsm_histogram --draws 10 2>&1 | grep -q "one-sided MPI refused" &&
    SHMPI_MPIRUN=srun target/release/shmpi mpirun -n 4 --threads 2 --timeout 120 $ex/heat2d 64 20 --threads 2 &&
    SHMPI_MPIRUN=srun target/release/shmpi mpirun -n 2 --timeout 120 $ex/dsm_histogram --draws 200'
}

# valgrind memcheck as the C and Fortran examples run under it: Open
# MPI's suppressions plus ours (each entry says why); any other error or
# a definite leak fails.
MEMCHECK=(valgrind -q --num-callers=40 --error-exitcode=97 --leak-check=full
  --errors-for-leak-kinds=definite --show-leak-kinds=definite
  --suppressions=/usr/share/openmpi/openmpi-valgrind.supp
  --suppressions=c_examples/shmpi-valgrind.supp)

# The C API: the C examples built against the build tree, each run under
# valgrind memcheck (Open MPI's suppressions plus ours, each entry saying
# why; any other error or definite leak fails), the MPI one under mpirun
# with 2 and 4 ranks (node_heat: in place on a node array; mpmd_shmpi in
# an MPMD job beside a plain MPI program, mpmd_peer); then the
# README's path for C programmers: install to
# a prefix and build an example with pkg-config.
c_api() {
  cargo build --locked --release -q --lib --bin shmpi || return 1
  make -s -C c_examples || return 1
  local vg=("${MEMCHECK[@]}")
  timeout 300 "${vg[@]}" target/c_examples/shm_pingpong &&
    timeout 300 "${vg[@]}" target/c_examples/mailbox_ring 4 &&
    timeout 300 "${vg[@]}" target/c_examples/mutex_crash &&
    target/release/shmpi mpirun -n 2 --timeout 300 "${vg[@]}" target/c_examples/mpi_hybrid &&
    SHMPI_RANKS_PER_NODE=2 target/release/shmpi mpirun -n 4 --timeout 300 "${vg[@]}" target/c_examples/mpi_hybrid &&
    target/release/shmpi mpirun -n 2 --timeout 300 "${vg[@]}" target/c_examples/node_heat &&
    SHMPI_RANKS_PER_NODE=2 target/release/shmpi mpirun -n 4 --timeout 300 "${vg[@]}" target/c_examples/node_heat &&
    target/release/shmpi mpirun -n 2 --timeout 300 "${vg[@]}" target/c_examples/mpmd_shmpi : -n 1 target/c_examples/mpmd_peer || return 1
  local prefix abi
  prefix=$(mktemp -d)
  # The C ABI's number, whose SONAME the installed library must carry.
  abi=$(sed -n 's/^const C_ABI: u32 = \([0-9]*\);/\1/p' capi/build.rs)
  scripts/install.sh "$prefix" &&
    PKG_CONFIG_PATH="$prefix/lib/pkgconfig" make -s -C c_examples OUT="$prefix/examples" &&
    "$prefix/examples/mailbox_ring" 3 &&
    readelf -d "$prefix/lib/libshmpi.so" | grep -q "SONAME.*\[libshmpi.so.$abi\]" &&
    ldd "$prefix/examples/mailbox_ring" | grep -q "libshmpi.so.$abi => $prefix/lib/libshmpi.so.$abi"
  local status=$?
  rm -rf "$prefix"
  return $status
}

# The Fortran module as its users get it: installed with the C library
# into a prefix, found through pkg-config's fmoddir, and its example — a
# ring over the hybrid world, matrices sent as they are, bad input through
# ierror, the world's collectives, distributed arrays on both backends, a
# node array updated in place — run under valgrind and mpirun with 2 ranks
# and with 4 as two emulated nodes.
fortran_module() {
  cargo build --locked --release -q --bin shmpi || return 1
  local prefix moddir
  prefix=$(mktemp -d)
  scripts/install.sh "$prefix" &&
    moddir=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --variable=fmoddir shmpi) &&
    [ -f "$moddir/shmpi.mod" ] && [ -f "$prefix/lib/libshmpi_f.a" ] &&
    PKG_CONFIG_PATH="$prefix/lib/pkgconfig" make -s -C c_examples OUT="$prefix/examples" fortran &&
    target/release/shmpi mpirun -n 2 --timeout 300 "${MEMCHECK[@]}" "$prefix/examples/hybrid_ring" &&
    SHMPI_RANKS_PER_NODE=2 target/release/shmpi mpirun -n 4 --timeout 300 "${MEMCHECK[@]}" "$prefix/examples/hybrid_ring"
  local status=$?
  rm -rf "$prefix"
  return $status
}

# `shmpi bench --quick` runs every row it can here and writes its JSON and
# plot (timings are not judged: the check is that each family of rows was
# measured and the files are whole).
bench_smoke() {
  cargo build --locked --release -q --bin shmpi || return 1
  make -s -C c_examples || return 1
  local dir
  dir=$(mktemp -d)
  target/release/shmpi bench --quick --json "$dir/bench.json" --plot "$dir/latency.svg" \
    --c-baseline target/c_examples/osu_latency > "$dir/out.md" || { cat "$dir/out.md"; rm -rf "$dir"; return 1; }
  head -n 12 "$dir/out.md"
  local missing=""
  for path in limit.spin shm.default shm.zerocopy threads.default fault.detect alltoall16.shm alltoall32.shm \
    mpi.sm mpi.tcp mpi.c hybrid.intranode hybrid.intranode.any.over dsm.owner.get dsm.rma.get alltoall16.mpi heat2d.R2xT1 heat2d.R1xT2 heat2d.R1xT1 heat2d.node.R2 limit.heat2d.T1 limit.heat2d.T2 \
    scale.mem scale.setup scale.job mpi.setup team.barrier limit.barrier alltoall32.mpi; do
    grep -q "\"path\": \"$path\"" "$dir/bench.json" || missing="$missing $path"
  done
  grep -q "</svg>" "$dir/latency.svg" || missing="$missing (plot)"
  rm -rf "$dir"
  [ -z "$missing" ] || { echo "not measured:$missing"; return 1; }
}

# The docs as docs.rs builds them (all features, `--cfg docsrs`, which
# turns on the nightly doc_cfg marks; RUSTC_BOOTSTRAP stands in for
# nightly): they build without warnings and mark what needs `mpi`.
docsrs() {
  local out=target/docsrs
  RUSTC_BOOTSTRAP=1 RUSTDOCFLAGS="--cfg docsrs -D warnings" \
    cargo doc --locked --no-deps -p shmpi --all-features --target-dir "$out" || return 1
  grep -q 'Available on <strong>crate feature <code>mpi</code></strong> only' \
    "$out/doc/shmpi/hybrid/struct.HybridWorld.html" || { echo "no feature mark on HybridWorld"; return 1; }
  echo "feature-gated items are marked"
}

# Packaging: what `cargo publish` would upload, for every package of the
# workspace, builds on its own; where crates.io answers, the registry's
# checks too (a dry run uploads nothing).
package_check() {
  # Verification builds the workspace's crates as registry packages (from
  # target/package/tmp-registry) in target/debug, and cargo takes a
  # registry package of an unchanged version for unchanged: an earlier
  # run's build would be verified instead of this one. Forget those builds
  # (their fingerprints; the dependencies stay built) and the unpacked
  # copies (never crates.io's).
  rm -rf target/package "${CARGO_TARGET_DIR:-target}"/debug/.fingerprint/shmpi-*
  find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -mindepth 2 -maxdepth 2 -name 'shmpi*-[0-9]*' \
    ! -path '*/index.crates.io-*' -exec rm -rf {} + 2>/dev/null
  if cargo search --limit 1 shmpi >/dev/null 2>&1; then
    cargo publish --workspace --dry-run --locked --allow-dirty
  else
    echo "crates.io does not answer here: cargo package only"
    cargo package --workspace --locked --allow-dirty
  fi
}

phase fmt                check cargo fmt --check
phase clippy             check cargo clippy --all-targets --locked -- -D warnings
phase clippy-no-mpi      check cargo clippy --all-targets --locked --no-default-features -- -D warnings
phase no-mpi-deps        check no_mpi_in_tree
phase no-mpi-smoke       check cargo run --locked -q -p shmpi --example shared_array -- 10000
phase lean-dependency    check lean_dependency
# The shared-memory half, without MPI (every package of the workspace
# with its default features off): its whole suite that runs in one
# process (the process tests run below, once), and every doctest, the
# README's included.
phase no-mpi-tests       tests cargo nextest run --locked --profile ci --no-default-features -E 'not binary(multiprocess) and not binary(loom_ring) and not binary(cli)'
phase no-mpi-doctests    tests cargo test --locked --no-default-features --doc
phase unit-tests         tests cargo nextest run --locked --profile ci -E 'not binary(multiprocess) and not binary(loom_ring) and not binary(mpi) and not binary(cli)'
phase loom               tests cargo nextest run --locked --profile ci --release -E 'binary(loom_ring)'
phase process-tests      tests cargo nextest run --locked --profile ci -E 'binary(multiprocess) or binary(mpi) or binary(cli)' --test-threads 1
phase mpi-examples       check mpi_examples
phase mpich-tests        tests mpich_tests
phase mpich-examples     check mpich_examples
phase cluster            tests cluster_tests
phase slurm              check slurm_tests
phase c-api              check c_api
phase fortran            check fortran_module
phase bench-smoke        check bench_smoke
phase mailbox-stress     check mailbox_stress
phase doctests           tests cargo test --locked --doc
phase doc                check env RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps
phase doc-no-mpi         check env RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --no-default-features
phase docs-rs            check docsrs
phase package            check package_check
phase shm-leftovers      check leftovers

echo
echo "phase                         time  result"
printf '%s\n' "${report[@]}"
echo "total ${SECONDS}s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
