//! Arbitrary bytes as an owner-protocol request against a block of any
//! element size: the owner must answer every request with a well-formed
//! reply, never panic, and never change the block's length. Run with
//! `cargo +nightly fuzz run dsm_wire` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmpi::dsm::wire;

fuzz_target!(|input: (u8, u8, &[u8])| {
    let (elem, elems, request) = input;
    let elem = usize::from(elem % 17);
    let mut block = vec![0u8; elem * usize::from(elems)];
    let len = block.len();
    let reply = wire::serve(&mut block, elem, request);
    assert!(wire::parse_reply(&reply).is_some());
    assert_eq!(block.len(), len);
});
