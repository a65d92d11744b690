//! The config loader, `${env:..}` and `${file:..}` references included: any YAML is loaded
//! or refused with a field name, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(error) = gateway::config::Config::from_yaml(text, "fuzz.yaml") {
        let _ = error.to_string();
    }
    let _ = gateway::config::resolve_reference(text, "fuzz");
});
