#!/usr/bin/env bash
# Installs what shmpi's build, tests and demo need (plus any Debian packages
# named as arguments), and only what is missing:
# on a warm machine this costs a few dpkg queries. Run by test.sh and
# demo.sh; can be run on its own.
#
#   Debian packages: two MPIs (Open MPI, the default, and MPICH), libclang for rsmpi's bindgen,
#   pkg-config, a C compiler, gfortran (Debian's mpifort calls it; the
#   Fortran module), util-linux (unshare), iproute2 (the
#   network-namespace hosts) and valgrind.
#   Rust: rustfmt, clippy, cargo-nextest.
set -euo pipefail

SHMPI_APT_PACKAGES=(libopenmpi-dev openmpi-bin mpich libmpich-dev libclang-dev pkg-config build-essential gfortran util-linux iproute2 valgrind "$@")

shmpi_missing_packages() {
  local p
  for p in "${SHMPI_APT_PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || echo "$p"
  done
}

shmpi_setup() {
  local missing sudo=""
  mapfile -t missing < <(shmpi_missing_packages)
  if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # MPICH (tested beside it) must not take over the default
    # `mpicc`/`mpirun`: Open MPI stays the default.
    if [ -x /usr/bin/mpicc.openmpi ]; then
      $sudo update-alternatives --quiet --set mpi /usr/bin/mpicc.openmpi || true
      $sudo update-alternatives --quiet --set mpirun /usr/bin/mpirun.openmpi || true
    fi
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo is missing; install Rust from https://rustup.rs" >&2
    return 1
  fi
  if command -v rustup >/dev/null 2>&1; then
    local installed
    installed=$(rustup component list --installed 2>/dev/null || true)
    for c in rustfmt clippy; do
      grep -q "^$c" <<<"$installed" || rustup component add "$c"
    done
  fi
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "setup: installing cargo-nextest" >&2
    cargo install --locked cargo-nextest
  fi
}

shmpi_setup "$@"
