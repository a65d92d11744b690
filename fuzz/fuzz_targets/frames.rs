//! The HTTP/2 control-frame counter the listener runs over every h2 connection's bytes, and
//! the follower of the frames it writes (which sets a flood's GOAWAY code): any byte stream,
//! split anywhere, gives the same answer, changes only GOAWAY codes, and never panics.
#![no_main]

use gateway::internal::{FrameCounter, Outgoing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    let whole = FrameCounter::default().feed(bytes);
    let mut pieces = FrameCounter::default();
    let size = usize::from(split).max(1);
    let split: u32 = bytes.chunks(size).map(|chunk| pieces.feed(chunk)).sum();
    assert_eq!(whole, split, "the count depends on how the bytes were split");
    assert!(whole as usize <= bytes.len() / 9 + 1);

    let calm = |chunk: usize| -> Vec<u8> {
        let mut outgoing = Outgoing::default();
        let mut out = Vec::with_capacity(bytes.len());
        for piece in bytes.chunks(chunk) {
            out.extend(outgoing.calm(piece).unwrap_or_else(|| piece.to_vec()));
            outgoing.advance(piece);
        }
        out
    };
    let calmed = calm(bytes.len().max(1));
    assert_eq!(calmed, calm(size), "the rewrite depends on how the bytes were split");
    assert_eq!(calmed.len(), bytes.len());
    let changed = calmed.iter().zip(bytes).filter(|(a, b)| a != b).count();
    assert!(changed <= bytes.len() / 9 * 4, "more bytes changed than GOAWAY codes hold");
});
