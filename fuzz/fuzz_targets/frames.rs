//! The HTTP/2 control-frame counter the listener runs over every h2 connection's bytes:
//! any byte stream, split anywhere, counts the same and never panics.
#![no_main]

use gateway::listener::frames::FrameCounter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    let whole = FrameCounter::default().feed(bytes);
    let mut pieces = FrameCounter::default();
    let size = usize::from(split).max(1);
    let split: u32 = bytes.chunks(size).map(|chunk| pieces.feed(chunk)).sum();
    assert_eq!(whole, split, "the count depends on how the bytes were split");
    assert!(whole as usize <= bytes.len() / 9 + 1);
});
