//! The Wycheproof JWS and JWK vectors against the gateway's verifier (`auth::jws`), the code
//! every bearer token goes through. For the algorithms the gateway allows, each case must get
//! Wycheproof's verdict; cases with any other algorithm (HMAC, `none`, ES512) must be refused.
//! The verifier is given what a provider publishes: the group's public key, or, where a group
//! has only a private or secret key, that key (which the gateway must refuse to use).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gateway::internal::jws::{self, ASYMMETRIC, KeySet};
use serde_json::Value;

fn header_alg(jws: &str) -> Option<String> {
    let header = URL_SAFE_NO_PAD.decode(jws.split('.').next()?).ok()?;
    serde_json::from_slice::<Value>(&header).ok()?.get("alg")?.as_str().map(str::to_string)
}

/// Runs one vector file; returns (checked against Wycheproof's verdict, refused as not allowed).
fn run(file: &str) -> (usize, usize) {
    let path = format!("{}/tests/fixtures/wycheproof/{file}", env!("CARGO_MANIFEST_DIR"));
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let (mut checked, mut refused) = (0, 0);
    let mut failures = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        let published = group.get("public").or_else(|| group.get("private")).unwrap();
        let keys = KeySet::from_json(&serde_json::to_vec(published).unwrap());
        for case in group["tests"].as_array().unwrap() {
            let token = case["jws"].as_str().unwrap();
            let accepted = match &keys {
                Ok(keys) => jws::parse(token, 16 * 1024).and_then(|parsed| parsed.verify(keys, ASYMMETRIC)).is_ok(),
                Err(_) => false,
            };
            let allowed = header_alg(token).is_some_and(|alg| jws::parse_algorithm(&alg).is_ok());
            let id = case["tcId"].as_u64().unwrap();
            if allowed {
                checked += 1;
                let expected = case["result"].as_str().unwrap() == "valid";
                if accepted != expected {
                    failures.push(format!("tcId {id} ({}): expected {expected}, got {accepted}", case["comment"]));
                }
            } else {
                refused += 1;
                if accepted {
                    failures.push(format!("tcId {id} ({}): algorithm not allowed, yet accepted", case["comment"]));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
    (checked, refused)
}

#[test]
fn json_web_signature_vectors() {
    let (checked, refused) = run("json_web_signature_test.json");
    eprintln!("JWS: {checked} cases with allowed algorithms got Wycheproof's verdict; {refused} others refused");
    // RS*, PS*, ES256 and the RFC 7520 examples: the bulk of the file.
    assert!(checked > 300, "{checked}");
    assert_eq!(checked + refused, 401);
}

#[test]
fn json_web_key_vectors() {
    let (checked, refused) = run("json_web_key_test.json");
    eprintln!("JWK: {checked} cases with allowed algorithms got Wycheproof's verdict; {refused} others refused");
    assert!(checked >= 10, "{checked}");
    assert_eq!(checked + refused, 26);
}
