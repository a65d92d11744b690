//! The smoke run's own check (not a target): a planted bug that `.ci/fuzz` must report as a
//! crash, so a clean run of the real targets means something.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"planted") {
        panic!("planted crash");
    }
});
