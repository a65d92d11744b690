//! The row counter the gateway runs over every metered result (JSON, CSV, Arrow IPC, Flight
//! gRPC): any byte stream, split anywhere, gives the same answer (a count or an error) and
//! never panics.
#![no_main]

use gateway::internal::RowCounter;
use libfuzzer_sys::fuzz_target;

const TYPES: [&[u8]; 4] =
    [b"application/json", b"text/csv", b"application/vnd.apache.arrow.stream", b"application/grpc"];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, bytes)) = data.split_first() else { return };
    let media = TYPES[usize::from(choice) % TYPES.len()];
    let count = |size: usize| {
        let mut counter = RowCounter::for_content_type(media).expect("a counted type");
        let mut rows = 0u64;
        for piece in bytes.chunks(size) {
            rows += counter.feed(piece)?;
        }
        Ok::<u64, &'static str>(rows)
    };
    let whole = count(bytes.len().max(1));
    let split = count(usize::from(choice / 4).max(1));
    assert_eq!(whole.is_ok(), split.is_ok(), "an error depends on how the bytes were split");
    if let (Ok(whole), Ok(split)) = (whole, split) {
        assert_eq!(whole, split, "the count depends on how the bytes were split");
    }
});
