//! The SQL dataset extractor: any text is classified or refused, never a panic or a
//! stack overflow (the parser's recursion limit holds).
#![no_main]

use gateway::internal::sql::{NameDefaults, analyze};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let defaults = NameDefaults { catalog: "datafusion".into(), schema: "public".into() };
    if let Ok(statements) = analyze(text, &defaults) {
        assert!(!statements.is_empty(), "accepted SQL with no statement");
    }
});
