//! The gateway's per-request authentication cost (`cargo bench -p loadtests --bench auth`): a JWT verified
//! from scratch (RS256, ES256), a cached token, an API key, and a browser session cookie
//! (unseal, principal, CSRF check). The keys come from files, so nothing here touches the network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)] // a benchmark with a broken setup should stop loudly

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use futures::FutureExt;
use gateway::config::{
    ApiKeyEntry, ApiKeysConfig, AuthorizationConfig, Config, OidcProviderConfig, StampConfig, TlsConfig,
};
use gateway::internal::{Authenticator, ListenerAuth, apikeys};
use gateway::internal::{KeyRing, Sessions, csrf};
use http::{HeaderMap, HeaderValue};
use identity::{AuthMethod, Principal, PrincipalKind};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

const ISSUER: &str = "https://idp.example.com";

/// The provider's two signing keys; tokens are signed here directly so the bench needs no
/// signing support from jsonwebtoken (whose features the gateway build shares).
struct Signers {
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
}

impl Signers {
    fn generate() -> Self {
        Signers {
            rsa: RsaKeyPair::generate(KeySize::Rsa2048).unwrap(),
            ec: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
        }
    }

    fn token(&self, alg: &str, sub: &str) -> String {
        let kid = if alg == "RS256" { "rsa" } else { "ec" };
        let header = serde_json::json!({"alg": alg, "typ": "JWT", "kid": kid});
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": "portcullis", "sub": sub, "exp": 4_000_000_000u64,
            "email": "alice@example.com", "groups": ["acme", "analysts"],
        });
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let rng = SystemRandom::new();
        let signature = if alg == "RS256" {
            let mut signature = vec![0; self.rsa.public_modulus_len()];
            self.rsa.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut signature).unwrap();
            signature
        } else {
            self.ec.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec()
        };
        format!("{input}.{}", B64.encode(signature))
    }

    /// Writes a JWKS file with both keys' public halves.
    fn write_jwks(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let public = self.rsa.public_key();
        let point = self.ec.public_key().as_ref(); // 0x04 || x || y
        let jwks = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "alg": "RS256", "use": "sig",
             "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
             "e": B64.encode(public.exponent().big_endian_without_leading_zero())},
            {"kty": "EC", "kid": "ec", "alg": "ES256", "use": "sig", "crv": "P-256",
             "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])},
        ]});
        let path = dir.join("jwks.json");
        std::fs::write(&path, jwks.to_string()).unwrap();
        path
    }
}

/// The key that seals browser session cookies.
const SESSION_KEY: [u8; 32] = [5; 32];

fn authenticator(jwks: &std::path::Path, cache_entries: usize, api_key_hash: &str) -> (Authenticator, ListenerAuth) {
    let mut config =
        Config::new(TlsConfig::default(), StampConfig::default(), AuthorizationConfig::new("unused-policies"));
    config.auth.token_cache_entries = cache_entries;
    config.auth.oidc = vec![OidcProviderConfig {
        jwks_file: Some(jwks.into()),
        ..OidcProviderConfig::new("idp", ISSUER, vec!["portcullis".into()])
    }];
    config.auth.api_keys = Some(ApiKeysConfig {
        file: None,
        keys: vec![ApiKeyEntry {
            name: "etl".into(),
            hash: api_key_hash.into(),
            groups: vec!["etl".into()],
            tenant: None,
            expires: None,
        }],
    });
    let listener = ListenerAuth::from_config(&config.api, &config, "api").unwrap();
    (Authenticator::from_config(&config).unwrap(), listener)
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    headers
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let signers = Signers::generate();
    let jwks = signers.write_jwks(dir.path());
    let key = apikeys::generate().unwrap();
    // A one-entry cache and two tokens used in turn: every call verifies from scratch.
    let (uncached, listener) = authenticator(&jwks, 1, &key.hash);
    let (cached, _) = authenticator(&jwks, 1000, &key.hash);
    let run = |auth: &Authenticator, headers: &HeaderMap| {
        // Nothing on these paths awaits (keys are loaded): poll once.
        auth.authenticate(&listener, headers, None).now_or_never().expect("did not complete").unwrap()
    };
    for name in ["RS256", "ES256"] {
        let pair = [bearer(&signers.token(name, "alice")), bearer(&signers.token(name, "bob"))];
        let mut turn = 0usize;
        c.bench_function(&format!("jwt {name}, uncached (signature verified)"), |b| {
            b.iter(|| {
                turn += 1;
                black_box(run(&uncached, &pair[turn % 2]))
            })
        });
    }
    let headers = bearer(&signers.token("ES256", "alice"));
    run(&cached, &headers);
    c.bench_function("jwt, cached", |b| b.iter(|| black_box(run(&cached, black_box(&headers)))));
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", HeaderValue::from_str(&key.key).unwrap());
    c.bench_function("api key", |b| b.iter(|| black_box(run(&cached, black_box(&headers)))));

    // A signed-in browser's SQL request: the sealed cookie opened (AES-256-GCM), the principal
    // read from it, and the same-origin + CSRF-token check the pipeline runs before SQL.
    let sessions = Sessions::new(KeyRing::from_raw(&[SESSION_KEY]).unwrap(), 8 * 3600, 3600);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut principal = Principal::new(PrincipalKind::User, "alice", "alice", AuthMethod::Browser);
    principal.email = Some("alice@example.com".into());
    principal.groups = vec!["acme".into(), "analysts".into()];
    principal.tenant = Some("acme".into());
    // Last seen in the future: within the re-seal interval for the whole run (no re-seal).
    let mut session = sessions.start(principal, "idp", now).unwrap();
    session.seen = now + 3000;
    let set_cookie = sessions.cookie(&session).unwrap();
    let value = set_cookie.to_str().unwrap().split(';').next().unwrap();
    let origin = "https://gateway.example.com";
    let mut headers = HeaderMap::new();
    headers.insert("cookie", HeaderValue::from_str(&format!("_ga=GA1.1.1; {value}")).unwrap());
    headers.insert("origin", HeaderValue::from_static(origin));
    headers.insert("x-csrf-token", HeaderValue::from_str(&session.csrf).unwrap());
    c.bench_function("browser session cookie (unseal, principal, CSRF check)", |b| {
        b.iter(|| {
            let opened = sessions.from_headers(black_box(&headers), now).unwrap().unwrap();
            csrf::check(&headers, origin, &opened.session).unwrap();
            black_box(opened.principal)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
