//! The C library's SONAME, `libshmpi.so.<C_ABI>`, whatever cargo names the
//! file (`libshmpi_capi.so`); scripts/install.sh reads it from the built
//! library and installs the library under it.

/// The C ABI's number. It increases with every release that breaks the C
/// ABI — a function removed or renamed, a signature, struct layout or
/// constant's meaning changed — and never otherwise (additions keep it);
/// it is independent of the crate's version (CHANGELOG, "SONAME policy").
const C_ABI: u32 = 1;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libshmpi.so.{C_ABI}");
}
