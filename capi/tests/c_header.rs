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
