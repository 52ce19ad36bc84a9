#!/usr/bin/env bash
# Installs the C library, its header and a pkg-config file:
#   scripts/install.sh PREFIX        e.g. /usr/local, or $HOME/.local
# giving PREFIX/lib/libshmpi.so.N (N: the C ABI's number, its SONAME; a
# library of another N already there stays, for the programs linked to it)
# with the libshmpi.so link, PREFIX/lib/libshmpi.a,
# PREFIX/include/shmpi.h and PREFIX/lib/pkgconfig/shmpi.pc; and where
# mpifort and its mpi_f08 module are there, the Fortran module:
# PREFIX/lib/libshmpi_f.a and shmpi.mod in PREFIX/lib/fortran/gfortran-mod-N
# (N: the module format; `pkg-config --variable=fmoddir shmpi`). Then:
#   PKG_CONFIG_PATH=PREFIX/lib/pkgconfig cc prog.c $(pkg-config --cflags --libs shmpi)
# (add -Wl,-rpath,PREFIX/lib when PREFIX/lib is not on the loader's path).
# Files that did not change keep their time (make-friendly).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:?usage: scripts/install.sh PREFIX}
scripts/setup.sh >/dev/null   # Open MPI, libclang, a C compiler, when missing
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
# The C library is its own package (capi/): cargo names it libshmpi_capi.
cargo build --locked --release -q -p shmpi-capi
built=${CARGO_TARGET_DIR:-target}/release
# The workspace's version (the first `version =` line of Cargo.toml).
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
# The SONAME the library carries (capi/build.rs sets it).
soname=$(readelf -d "$built/libshmpi_capi.so" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
[ -n "$soname" ] || { echo "install: $built/libshmpi_capi.so has no SONAME" >&2; exit 1; }
# Linking the static library needs MPI's libraries too.
mpi_libs=$(mpicc -showme:link 2>/dev/null || true)
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -C -m 0755 "$built/libshmpi_capi.so" "$prefix/lib/$soname"
ln -sfn "$soname" "$prefix/lib/libshmpi.so"
install -C -m 0644 "$built/libshmpi_capi.a" "$prefix/lib/libshmpi.a"
install -C -m 0644 capi/include/shmpi.h "$prefix/include/"
# The Fortran module (capi/fortran): compiled by the MPI's own mpifort,
# since it uses mpi_f08; its .mod goes where Debian keeps compiler-specific
# modules, named after the format gfortran wrote.
fmodline=""
if command -v mpifort >/dev/null 2>&1 && mpifort --version >/dev/null 2>&1; then
  fbuild=$(mktemp -d)
  mpifort -O2 -g -fPIC -c capi/fortran/shmpi.f90 -J "$fbuild" -o "$fbuild/shmpi_mod.o"
  cc -O2 -g -fPIC -Wall -Wextra -c capi/fortran/shmpi_f.c -I capi/include -o "$fbuild/shmpi_f.o"
  ar rcs "$fbuild/libshmpi_f.a" "$fbuild/shmpi_mod.o" "$fbuild/shmpi_f.o"
  # (sed reads it all: no early exit, so no SIGPIPE under pipefail)
  modver=$(gzip -dc "$fbuild/shmpi.mod" | sed -n "1s/.*module version '\([0-9]*\)'.*/\1/p")
  fmoddir="$prefix/lib/fortran/gfortran-mod-${modver:-15}"
  install -d "$fmoddir"
  install -C -m 0644 "$fbuild/shmpi.mod" "$fmoddir/"
  install -C -m 0644 "$fbuild/libshmpi_f.a" "$prefix/lib/"
  rm -rf "$fbuild"
  fmodline="fmoddir=\${libdir}/fortran/gfortran-mod-${modver:-15}"
else
  echo "install: no mpifort here: the Fortran module is not built" >&2
fi
pc=$(mktemp)
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" -e "s|@FMODDIR@|$fmodline|" \
    -e "s|@PRIVATE_LIBS@|$mpi_libs -lpthread -ldl -lm|" capi/shmpi.pc.in > "$pc"
install -C -m 0644 "$pc" "$prefix/lib/pkgconfig/shmpi.pc"
rm -f "$pc"
echo "installed shmpi $version in $prefix (lib/$soname, lib/libshmpi.a, include/shmpi.h, lib/pkgconfig/shmpi.pc${fmodline:+, lib/libshmpi_f.a and the Fortran module})"
