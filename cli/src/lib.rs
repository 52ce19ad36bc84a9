//! The library half of the `shmpi` command: the benchmark code behind
//! `shmpi bench` and the benchmark examples (`cli/examples/`), with the
//! records they write.
//!
//! This is the tool's own code, shared between its binary and its
//! examples, not an API for other crates: use the `shmpi` crate.

#![warn(
    missing_docs,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks
)]

pub mod bench;
