//! Arbitrary bytes as a segment header: parsing and validation must never
//! panic, and an accepted header must describe a data region inside the
//! object. Run with `cargo +nightly fuzz run header` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmpi::segment::{HeaderFields, HEADER_SIZE};

fuzz_target!(|input: (&[u8], u64)| {
    let (bytes, actual_size) = input;
    if let Ok(h) = HeaderFields::from_bytes(bytes) {
        let _ = h.may_become_ready();
        if let Ok((offset, len)) = h.validate(actual_size, None) {
            assert!(offset >= HEADER_SIZE);
            assert_eq!((offset as u64).checked_add(len as u64), Some(actual_size));
        }
    }
});
