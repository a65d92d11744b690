//! Compact JWS parsing and key selection: a token against a fixed key set (the Wycheproof
//! EC and RSA signing keys), and the input as a JWKS document.
#![no_main]

use gateway::internal::jws::{self, ASYMMETRIC, KeySet};
use libfuzzer_sys::fuzz_target;

const JWKS: &str = include_str!("../fixtures/jwks.json");

fuzz_target!(|data: &[u8]| {
    let keys = KeySet::from_json(JWKS.as_bytes()).expect("the fixed key set parses");
    if let Ok(token) = std::str::from_utf8(data)
        && let Ok(parsed) = jws::parse(token, 16 * 1024)
    {
        // Nothing the fuzzer writes is signed by these keys.
        assert!(parsed.verify(&keys, ASYMMETRIC).is_err(), "an unsigned token verified");
    }
    if let Ok(set) = KeySet::from_json(data) {
        let _ = set.has_kid("kid-ec-sign");
    }
});
