//! The row-filter compiler (Cedar residual → the engine's row-filter language): any policy
//! text is compiled, refused with a named construct, or not a policy, never a panic; what
//! compiles prints as SQL and is already folded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some((_, Ok(filter))) = gateway::internal::compile_row_filter(text) {
        assert!(!filter.to_sql().is_empty());
    }
});
