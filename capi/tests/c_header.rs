//! `capi/include/shmpi.h` is what cbindgen generates from `capi/src/`
//! now: a stale committed header fails here. `SHMPI_UPDATE_HEADER=1 cargo
//! test -p shmpi-capi --test c_header` rewrites it.

use std::path::Path;

#[test]
fn committed_header_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    // The C API's crate (cbindgen follows its `mod` items).
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses capi/src")
        .write(&mut generated);
    let path = root.join("include/shmpi.h");
    if std::env::var_os("SHMPI_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("writing include/shmpi.h");
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/shmpi.h is stale: run `SHMPI_UPDATE_HEADER=1 cargo test -p shmpi-capi --test c_header` and commit it"
    );
}

/// The Fortran module's named constants (`integer, parameter, public ::
/// SHMPI_X = v`) are the header's (`#define SHMPI_X v`): a constant
/// renumbered in C cannot drift in Fortran.
#[test]
fn fortran_constants_are_the_headers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("include/shmpi.h")).expect("shmpi.h");
    let module = std::fs::read_to_string(root.join("fortran/shmpi.f90")).expect("shmpi.f90");
    let defines: std::collections::HashMap<&str, &str> = header
        .lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, value)| (name, value.trim()))
        .collect();
    let mut checked = 0;
    for line in module.lines() {
        let Some((_, rest)) = line.split_once("integer, parameter, public ::") else {
            continue;
        };
        let Some((name, value)) = rest.split_once('=') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        assert_eq!(
            defines.get(name).copied(),
            Some(value),
            "{name} is {value} in shmpi.f90"
        );
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} constants found in shmpi.f90");
}
