//! The `Authorization` header parser (Bearer, Basic) and API-key verification against a
//! key set: nothing but the real key is accepted.
#![no_main]

use std::sync::OnceLock;

use gateway::internal::apikeys::ApiKeys;
use gateway::config::{ApiKeyEntry, ApiKeysConfig};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static ApiKeys {
    static KEYS: OnceLock<ApiKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = gateway::internal::apikeys::generate().expect("a key");
        let entry = ApiKeyEntry { name: "svc".into(), hash: key.hash, groups: vec![], tenant: None, expires: None };
        ApiKeys::load(&ApiKeysConfig { file: None, keys: vec![entry] }).expect("a key set")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = gateway::internal::credentials(data);
    if let Ok(presented) = std::str::from_utf8(data) {
        assert!(keys().verify(presented, 1_800_000_000).is_err(), "a guessed API key was accepted");
    }
});
