//! Arbitrary bytes as a mailbox group header and as ring contents: the
//! layout validation and the consumer must never panic or read out of
//! bounds, whatever its position word says (positions near `u64::MAX`
//! included). Run with `cargo +nightly fuzz run mailbox` from `fuzz/`.
#![no_main]

use std::sync::atomic::Ordering;

use libfuzzer_sys::fuzz_target;
use shmpi::mailbox::ring::{Consumer, Geometry, HeapRing, RingMemory};
use shmpi::mailbox::GroupParams;

fuzz_target!(|input: (&[u8], usize, u64, &[u8])| {
    let (header, segment_len, head, ring_bytes) = input;
    if let Ok(params) = GroupParams::from_bytes(header) {
        if let Ok(layout) = params.validate(Some(segment_len)) {
            assert!(layout.total <= segment_len);
        }
    }
    let ring = HeapRing::new(Geometry::new(1024, 64).unwrap());
    let n = ring_bytes.len().min(1024);
    // SAFETY: the ring has 1024 bytes; we copy at most that many.
    unsafe { std::ptr::copy_nonoverlapping(ring_bytes.as_ptr(), ring.bytes(), n) };
    ring.head().store(head, Ordering::Relaxed);
    let Ok(mut c) = Consumer::recover(&ring) else { return };
    for _ in 0..64 {
        match c.peek(&ring) {
            Ok(Some(rec)) => c.release(&ring, rec),
            _ => break,
        }
    }
});
