//! Arbitrary record sequences through the receiver's reassembly (whole
//! messages, streamed chunks with `FLAG_MORE`/`FLAG_CONT`, abort records,
//! impossible flag combinations, lengths and totals): classification and
//! the assembler must never panic, never copy out of bounds, and never
//! allocate from an announced total. Run with `cargo +nightly fuzz run
//! framing` from `fuzz/`; `src/mailbox/framing.rs` runs the same code
//! under proptest on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmpi::mailbox::framing::{classify, Assembler, Completed};

fuzz_target!(|records: Vec<(u32, u32, Vec<u8>, Option<u16>)>| {
    let mut assembler = Assembler::default();
    let mut sink = vec![0u8; 1 << 16];
    for (flags, tag_word, payload, sink_len) in records {
        let Ok((frame, tag)) = classify(flags, tag_word, payload.len()) else {
            continue;
        };
        let offered = sink_len.map(|n| &mut sink[..usize::from(n)]);
        if let Ok(Some(Completed::Direct { len, .. })) =
            assembler.accept(frame, tag, &payload[..], offered)
        {
            assert!(len <= 1 << 16);
        }
    }
});
