//! With feature `mpi`: compiles the small C shim (src/mpi/shim.c) with the
//! MPI's own compiler wrapper, as rsmpi's mpi-sys does for its own shim.

fn main() {
    println!("cargo:rerun-if-changed=src/mpi/shim.c");
    #[cfg(feature = "mpi")]
    mpi_shim();
}

#[cfg(feature = "mpi")]
fn mpi_shim() {
    let lib = build_probe_mpi::probe().unwrap_or_else(|errors| {
        for e in errors {
            println!("cargo:warning=MPI not found: {e}");
        }
        panic!("feature `mpi` needs an MPI installation (scripts/setup.sh installs Open MPI)");
    });
    let mut build = cc::Build::new();
    build.file("src/mpi/shim.c").warnings(true);
    match lib.mpicc {
        Some(mpicc) => {
            build.compiler(mpicc);
        }
        None => {
            for inc in &lib.include_paths {
                build.include(inc);
            }
        }
    }
    build.compile("shmpi_mpi_shim");
}
