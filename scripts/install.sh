#!/usr/bin/env bash
# Installs the C library, its header and a pkg-config file:
#   scripts/install.sh PREFIX        e.g. /usr/local, or $HOME/.local
# then:  PKG_CONFIG_PATH=PREFIX/lib/pkgconfig cc prog.c $(pkg-config --cflags --libs shmpi)
# (add -Wl,-rpath,PREFIX/lib when PREFIX/lib is not on the loader's path).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:?usage: scripts/install.sh PREFIX}
scripts/setup.sh >/dev/null   # Open MPI, libclang, a C compiler, when missing
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
cargo build --locked --release -q --lib
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
# Linking the static library needs MPI's libraries too.
mpi_libs=$(mpicc -showme:link 2>/dev/null || true)
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 target/release/libshmpi.so "$prefix/lib/"
install -m 0644 target/release/libshmpi.a "$prefix/lib/"
install -m 0644 include/shmpi.h "$prefix/include/"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" \
    -e "s|@PRIVATE_LIBS@|$mpi_libs -lpthread -ldl -lm|" shmpi.pc.in > "$prefix/lib/pkgconfig/shmpi.pc"
echo "installed shmpi $version in $prefix (lib, include, lib/pkgconfig/shmpi.pc)"
