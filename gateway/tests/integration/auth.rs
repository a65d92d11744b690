//! Authentication end to end: a real OIDC provider process (oauth2-mock-server from npm,
//! serving discovery and the JWKS over HTTP), the gateway, and a real engine whose
//! `current_principal()` shows who the gateway vouched for. Every rejection is proven; so is
//! acceptance. Needs `npm ci --prefix gateway/tests/js` (done by `.ci/run`).

use crate::common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{Reply, Stack};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gateway::config::{ApiKeysConfig, AuthMethodName, ClientAuth, Config, ListenerAuthConfig, OidcProviderConfig};
use gateway::internal::apikeys;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// The OIDC provider: `gateway/tests/js/provider.mjs` driving oauth2-mock-server.
pub struct Idp {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    pub issuer: String,
}

impl Idp {
    pub async fn start(port: u16) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js");
        assert!(dir.join("node_modules/oauth2-mock-server").exists(), "run `npm ci --prefix gateway/tests/js` first");
        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("provider.mjs"))
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node (Node.js) is needed for the OIDC provider");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
        let issuer = ready.strip_prefix("ready ").unwrap_or_else(|| panic!("provider said {ready}")).to_string();
        Self { child, stdin, lines, issuer }
    }

    pub async fn command(&mut self, line: String) -> String {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        let answer = self.lines.next_line().await.unwrap().unwrap();
        assert!(!answer.starts_with("error"), "{line}: {answer}");
        answer
    }

    /// A token signed by key `kid`, with the default good claims overridden by `claims`.
    async fn token(&mut self, kid: &str, claims: Value, expires_in: i64) -> String {
        let mut all = json!({"aud": "portcullis", "sub": "alice", "email": "alice@acme.test", "groups": ["acme"], "amr": ["pwd", "mfa"]});
        all.as_object_mut().unwrap().extend(claims.as_object().unwrap().clone());
        self.command(format!("token {}", json!({"kid": kid, "expiresIn": expires_in, "claims": all}))).await
    }

    async fn good(&mut self) -> String {
        self.token("rsa-1", json!({}), 300).await
    }

    pub async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}

fn provider(name: &str, issuer: &str) -> OidcProviderConfig {
    OidcProviderConfig {
        leeway_secs: 5,
        unknown_kid_cooldown_secs: 1,
        ..OidcProviderConfig::new(name, issuer, vec!["portcullis".into()])
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const WHO: &str = "SELECT current_principal() AS p, current_principal_email() AS e, current_principal_groups() AS g";

async fn query(stack: &Stack, headers: &[(&str, &str)]) -> Reply {
    stack.client(None).request(stack.gateway.api_addr, "POST", "/v1/sql", headers, WHO).await.unwrap()
}

async fn with_bearer(stack: &Stack, token: &str) -> Reply {
    query(stack, &[("authorization", &format!("Bearer {token}"))]).await
}

/// A 401 whose challenge and message name `reason`, and that never echoes `secret`.
fn assert_refused(reply: &Reply, reason: &str, secret: &str) {
    assert_eq!(reply.status, 401, "{}", reply.text());
    let challenge = reply.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer realm=\"portcullis\""), "{challenge}");
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains(reason), "{} (wanted {reason})", reply.text());
    let tail = &secret[secret.len().saturating_sub(16)..];
    assert!(!reply.text().contains(tail) && !challenge.contains(tail), "the credential was echoed");
}

async fn wait_until(mut ok: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if ok().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached within 10 s");
}

#[tokio::test]
async fn tokens_from_a_real_provider_rotation_and_outage() {
    let mut idp = Idp::start(0).await;
    let issuer = idp.issuer.clone();
    let stack = Stack::start_with(ClientAuth::Optional, |c| c.auth.oidc = vec![provider("main", &issuer)]).await;

    // Accepted: the engine sees the token's subject, email and groups.
    let reply = with_bearer(&stack, &idp.good().await).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!([{"p": "alice", "e": "alice@acme.test", "g": ["acme"]}]));
    let es256 = idp.token("ec-1", json!({"sub": "bob", "groups": ["globex"]}), 300).await;
    assert_eq!(with_bearer(&stack, &es256).await.json()[0]["p"], "bob");

    // The provider rotates: a token under the new kid is accepted after one refetch.
    idp.command("rotate RS256 rsa-2".into()).await;
    let rotated = idp.token("rsa-2", json!({"sub": "carol"}), 300).await;
    let reply = with_bearer(&stack, &rotated).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()[0]["p"], "carol");

    // The provider goes away: keys already fetched keep verifying new (uncached) tokens.
    let minted = idp.token("ec-1", json!({"sub": "dave"}), 300).await;
    idp.stop().await;
    let reply = with_bearer(&stack, &minted).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()[0]["p"], "dave");
}

#[tokio::test]
async fn gateway_starts_while_the_provider_is_down_and_recovers() {
    let port = free_port();
    let issuer = format!("http://localhost:{port}");
    let stack = Stack::start_with(ClientAuth::Optional, |c| c.auth.oidc = vec![provider("late", &issuer)]).await;
    // Any well-formed token naming the issuer: no keys yet is a 503 that says so.
    let claims = URL_SAFE_NO_PAD
        .encode(json!({"iss": issuer, "aud": "portcullis", "sub": "x", "exp": 4_000_000_000u64}).to_string());
    let token = format!("eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0.{claims}.c2lnbmF0dXJl");
    let reply = with_bearer(&stack, &token).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "auth_unavailable");
    assert!(reply.text().contains("no keys yet"), "{}", reply.text());

    let mut idp = Idp::start(port).await;
    let good = idp.good().await;
    wait_until(async || with_bearer(&stack, &good).await.status == 200).await;
}

/// An ES256 token signed by a key the attacker holds, with any header.
fn attacker_token(header: Value, claims: &Value) -> String {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = key.public_key().as_ref().to_vec();
    let mut header = header;
    if header.get("jwk").is_some() {
        header["jwk"] = json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])});
    }
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = key.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

fn unsigned(header: Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[tokio::test]
async fn known_jwt_attacks_are_refused() {
    let mut idp = Idp::start(0).await;
    let mut other = Idp::start(0).await;
    let (issuer, other_issuer) = (idp.issuer.clone(), other.issuer.clone());
    let stack = Stack::start_with(ClientAuth::Optional, |c| {
        c.auth.oidc = vec![provider("main", &issuer), provider("other", &other_issuer)];
        c.api.auth.oidc_providers = Some(vec!["main".into()]);
        c.auth.max_token_bytes = 4096;
    })
    .await;
    let good = idp.good().await;
    assert_eq!(with_bearer(&stack, &good).await.status, 200);
    let parts: Vec<&str> = good.split('.').collect();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();

    // alg none, in any casing, with or without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token =
            format!("{}.{}.", URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": "rsa-1"}).to_string()), parts[1]);
        assert_refused(&with_bearer(&stack, &token).await, "token", &token);
        let token = unsigned(json!({"alg": alg, "kid": "rsa-1"}), &claims, b"x");
        assert_refused(&with_bearer(&stack, &token).await, "algorithm not allowed", &token);
    }

    // HS256 "signed" with the provider's RSA public key (the key-confusion attack): the
    // JWKS as text and the modulus bytes both serve as the HMAC secret an unsafe library uses.
    let jwks = reqwest_jwks(&issuer).await;
    let rsa = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == "rsa-1").unwrap().clone();
    for secret in [rsa.to_string().into_bytes(), URL_SAFE_NO_PAD.decode(rsa["n"].as_str().unwrap()).unwrap()] {
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": "rsa-1"}).to_string()), parts[1]);
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        assert_refused(&with_bearer(&stack, &token).await, "algorithm not allowed", &token);
    }

    // Keys offered by the token itself are never used: embedded jwk, jku, x5u.
    let cases = [
        json!({"alg": "ES256", "kid": "ec-1", "jwk": {}}),
        json!({"alg": "ES256", "kid": "attacker", "jwk": {}}),
        json!({"alg": "ES256", "kid": "ec-1", "jku": "https://attacker.example/jwks.json"}),
        json!({"alg": "ES256", "x5u": "https://attacker.example/cert.pem"}),
    ];
    for header in cases {
        let token = attacker_token(header.clone(), &claims);
        let reply = with_bearer(&stack, &token).await;
        let reason = if header["kid"] == "attacker" { "unknown key" } else { "signature invalid" };
        assert_refused(&reply, reason, &token);
    }

    // kid with path traversal or SQL text: just an unknown key.
    for kid in ["../../../../../../dev/null", "' OR '1'='1' --", "rsa-1\u{0}"] {
        let token = attacker_token(json!({"alg": "ES256", "kid": kid}), &claims);
        assert_refused(&with_bearer(&stack, &token).await, "unknown key", &token);
    }

    // Stripped signature; ECDSA signature r = s = 0; a flipped signature byte.
    let stripped = format!("{}.{}.", parts[0], parts[1]);
    assert_refused(&with_bearer(&stack, &stripped).await, "signature missing", &stripped);
    let zero = unsigned(json!({"alg": "ES256", "kid": "ec-1"}), &claims, &[0u8; 64]);
    assert_refused(&with_bearer(&stack, &zero).await, "signature invalid", &zero);
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[10] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&signature));
    assert_refused(&with_bearer(&stack, &flipped).await, "signature invalid", &flipped);

    // Claims: expired, not yet valid, wrong issuer, wrong audience, missing subject claim.
    let expired = idp.token("rsa-1", json!({}), -60).await;
    assert_refused(&with_bearer(&stack, &expired).await, "token expired", &expired);
    let early = idp.token("rsa-1", json!({"nbf": 4_000_000_000u64}), 300).await;
    assert_refused(&with_bearer(&stack, &early).await, "not yet valid", &early);
    let wrong_iss = idp.token("rsa-1", json!({"iss": "https://attacker.example"}), 300).await;
    assert_refused(&with_bearer(&stack, &wrong_iss).await, "issuer unknown", &wrong_iss);
    let wrong_aud = idp.token("rsa-1", json!({"aud": ["someone-else"]}), 300).await;
    assert_refused(&with_bearer(&stack, &wrong_aud).await, "audience not accepted", &wrong_aud);

    // Oversize, malformed base64 (padding, a stray character), not a JWT at all.
    let big = idp.token("rsa-1", json!({"pad": "x".repeat(5000)}), 300).await;
    assert_refused(&with_bearer(&stack, &big).await, "token too large", &big);
    let padded = format!("{}=.{}.{}", parts[0], parts[1], parts[2]);
    assert_refused(&with_bearer(&stack, &padded).await, "not base64url", &padded);
    let stray = format!("{}.{}!.{}", parts[0], parts[1], parts[2]);
    assert_refused(&with_bearer(&stack, &stray).await, "not base64url", &stray);
    assert_refused(&with_bearer(&stack, "not-a-jwt").await, "three dot-separated parts", "not-a-jwt");

    // A valid token from the second provider, on a listener that trusts only the first.
    let foreign = other.good().await;
    assert_refused(&with_bearer(&stack, &foreign).await, "issuer unknown or not trusted", &foreign);

    // No credentials: a bare challenge, no error code (RFC 6750 §3.1).
    let reply = query(&stack, &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.headers["www-authenticate"], "Bearer realm=\"portcullis\"");
    // A scheme the API does not take.
    let reply = query(&stack, &[("authorization", "Basic YWxpY2U6c2VjcmV0")]).await;
    assert_refused(&reply, "Basic credentials", "YWxpY2U6c2VjcmV0");
    other.stop().await;
}

/// The provider's JWKS as the gateway fetched it (discovery → jwks_uri).
async fn reqwest_jwks(issuer: &str) -> Value {
    let port: u16 = issuer.rsplit(':').next().unwrap().parse().unwrap();
    let text = http_get(port, "/jwks").await;
    serde_json::from_str(&text).unwrap()
}

async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_once("\r\n\r\n").unwrap().1.to_string()
}

fn keys_file(dir: &std::path::Path, entries: &[(&str, &str, Option<&str>)]) -> PathBuf {
    let path = dir.join("api-keys.yaml");
    let mut yaml = String::from("keys:\n");
    for (name, hash, expires) in entries {
        yaml.push_str(&format!("  - name: {name}\n    hash: {hash}\n    groups: [etl]\n"));
        if let Some(expires) = expires {
            yaml.push_str(&format!("    expires: {expires}\n"));
        }
    }
    // Write then rename, as config management tools do.
    let tmp = dir.join("api-keys.yaml.tmp");
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

#[tokio::test]
async fn api_keys_accept_refuse_expire_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (live, old, removed) =
        (apikeys::generate().unwrap(), apikeys::generate().unwrap(), apikeys::generate().unwrap());
    let file = keys_file(
        dir.path(),
        &[("svc-etl", &live.hash, None), ("svc-old", &old.hash, Some("2020-01-01")), ("svc-gone", &removed.hash, None)],
    );
    let stack = Stack::start_with(ClientAuth::Optional, |c| {
        c.auth.api_keys = Some(ApiKeysConfig { file: Some(file.clone().into()), keys: Vec::new() });
    })
    .await;
    let reply = query(&stack, &[("x-api-key", &live.key)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!([{"p": "svc-etl", "e": null, "g": ["etl"]}]));
    assert_refused(&query(&stack, &[("x-api-key", &old.key)]).await, "API key expired", &old.key);
    let unknown = apikeys::generate().unwrap().key;
    assert_refused(&query(&stack, &[("x-api-key", &unknown)]).await, "API key invalid", &unknown);
    assert_refused(&query(&stack, &[("x-api-key", "hunter2")]).await, "API key invalid", "hunter2");
    let both = [("x-api-key", live.key.as_str()), ("authorization", "Bearer abc.def.ghi")];
    assert_refused(&query(&stack, &both).await, "ambiguous", &live.key);
    // For clients that send their own `authorization` header (flightsql-dbapi): the key as
    // the bearer token.
    let bearer = format!("Bearer {}", live.key);
    let reply = query(&stack, &[("authorization", &bearer)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()[0]["p"], "svc-etl");
    assert_eq!(query(&stack, &[("x-api-key", &removed.key)]).await.status, 200);

    // The inventory lists names, groups and expiry, never a hash; revoking a key removes it
    // from the file, and the running gateway refuses it from the reload on.
    let apikey = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway")).arg("apikey").args(args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let path = file.to_str().unwrap();
    let (code, listed) = apikey(&["list", "--file", path, "--format", "json"]);
    assert_eq!(code, Some(0), "{listed}");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    assert_eq!(
        listed[1],
        json!({"name": "svc-old", "groups": ["etl"], "tenant": null, "expires": "2020-01-01", "expired": true})
    );
    assert!(!listed.to_string().contains("sha256"), "{listed}");
    let (code, said) = apikey(&["revoke", "svc-gone", "--file", path]);
    assert_eq!(code, Some(0), "{said}");
    let (code, said) = apikey(&["revoke", "svc-nobody", "--file", path]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("no key named \"svc-nobody\""), "{said}");
    wait_until(async || query(&stack, &[("x-api-key", &removed.key)]).await.status == 401).await;
    let (_, listed) = apikey(&["list", "--file", path]);
    assert!(listed.starts_with("2 keys in") && !listed.contains("svc-gone"), "{listed}");
    keys_file(dir.path(), &[("svc-etl", &live.hash, None)]);
    assert_eq!(query(&stack, &[("x-api-key", &live.key)]).await.status, 200);
    // A broken file is rejected; the keys loaded before keep working.
    std::fs::write(&file, "keys: [{name: x, hash: nope}]\n").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(query(&stack, &[("x-api-key", &live.key)]).await.status, 200);
}

#[tokio::test]
async fn listeners_choose_methods_and_can_require_a_certificate_too() {
    let mut idp = Idp::start(0).await;
    let issuer = idp.issuer.clone();
    let key = apikeys::generate().unwrap();
    let hash = key.hash.clone();
    let stack = Stack::start_with(ClientAuth::Optional, |c: &mut Config| {
        c.auth.oidc = vec![provider("main", &issuer)];
        c.auth.api_keys = Some(common::inline_key("svc", &hash));
        c.api.auth = ListenerAuthConfig {
            methods: Some(vec![AuthMethodName::Oidc]),
            oidc_providers: None,
            require_client_certificate: true,
        };
    })
    .await;
    let token = idp.good().await;
    // The API listener takes OIDC only, and only with a client certificate as well.
    assert_refused(&with_bearer(&stack, &token).await, "client certificate is required", &token);
    let with_cert = stack.client(Some("workload"));
    let bearer = format!("Bearer {token}");
    let reply =
        with_cert.request(stack.gateway.api_addr, "POST", "/v1/sql", &[("authorization", &bearer)], WHO).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    // The token gives the principal, not the certificate.
    assert_eq!(reply.json()[0]["p"], "alice");
    let reply =
        with_cert.request(stack.gateway.api_addr, "POST", "/v1/sql", &[("x-api-key", &key.key)], WHO).await.unwrap();
    assert_refused(&reply, "API keys not accepted on this listener", &key.key);
    // The certificate alone is not enough here either, and the refusal offers only what the
    // listener takes.
    let reply = with_cert.request(stack.gateway.api_addr, "POST", "/v1/sql", &[], WHO).await.unwrap();
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.json()["error"]["message"], "no credentials: send a bearer token", "{}", reply.text());
}

#[tokio::test]
async fn flight_clients_authenticate_with_api_key_handshake_and_bearer_jwt() {
    let mut idp = Idp::start(0).await;
    let issuer = idp.issuer.clone();
    let key = apikeys::generate().unwrap();
    let hash = key.hash.clone();
    let stack = Stack::start_with(ClientAuth::Optional, |c| {
        c.auth.oidc = vec![provider("main", &issuer)];
        c.auth.api_keys = Some(common::inline_key("svc-etl", &hash));
    })
    .await;
    let jwt = idp.good().await;
    let output = tokio::process::Command::from(testkit::python_command())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/flight_auth.py"))
        .env("FLIGHT_URI", format!("grpc+tls://localhost:{}", stack.gateway.flight_addr.port()))
        .env("CA_FILE", stack.pki.ca())
        .env("API_KEY", &key.key)
        .env("JWT", &jwt)
        .output()
        .await
        .unwrap();
    let stdout = testkit::python_stdout(&output, "Flight auth checks");
    assert!(stdout.contains("11 passed, 0 failed"), "{stdout}");
}

/// `gateway check` and `run` agree on a provider: `--online` fetches discovery and keys as
/// `run` does, so an issuer differing from the provider's by a trailing slash fails `check`
/// with a message saying so, where it used to pass `check` and fail every token at run time.
#[tokio::test]
async fn check_online_refuses_an_issuer_the_provider_does_not_use() {
    let idp = Idp::start(free_port()).await;
    let pki = common::Pki::new();
    let (stamp_key, _) = common::stamp_keys(pki.path());
    let (cert, key) = pki.leaf("server");
    let policies = common::allow_all_policies(pki.path());
    let check = move |issuer: &str| {
        let yaml = format!(
            "api: {{listen: '127.0.0.1:0', upstream: 'http://127.0.0.1:1'}}\nflight: {{listen: '127.0.0.1:0', upstream: 'http://127.0.0.1:1'}}\ntls: {{certificate_file: {}, key_file: {}}}\nstamp: {{key_file: {}}}\nauthorization: {{policies: {}}}\nauth:\n  oidc:\n    - {{name: main, issuer: '{issuer}', audiences: [portcullis]}}\n",
            cert.display(),
            key.display(),
            stamp_key.display(),
            policies.display()
        );
        let path = pki.path().join("gateway.yaml");
        std::fs::write(&path, yaml).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["check", "--online", "-c", path.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let issuer = idp.issuer.clone();
    let slashed = format!("{issuer}/");
    let (good, bad) = tokio::task::spawn_blocking(move || (check(&issuer), check(&slashed))).await.unwrap();
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    assert!(String::from_utf8_lossy(&good.stdout).contains("auth.oidc provider main: "), "{good:?}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("differ only by a trailing slash"), "{stderr}");
    idp.stop().await;
}

/// RFC 7519 NumericDates may carry a fraction; a token issued in the future (past the
/// leeway) is refused; identity claims with control characters are refused, since they
/// would reach SQL, Cedar, the stamp and audit lines.
#[tokio::test]
async fn token_times_and_identity_characters_at_the_edges() {
    let mut idp = Idp::start(0).await;
    let issuer = idp.issuer.clone();
    let stack = Stack::start_with(ClientAuth::Optional, |c| c.auth.oidc = vec![provider("main", &issuer)]).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as f64;
    let fractional = json!({"iat": now - 0.5, "nbf": now - 1.25, "exp": now + 300.75});
    let token = idp.token("rsa-1", fractional, 300).await;
    let reply = with_bearer(&stack, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // Within the 5 s leeway a clock a little ahead is fine; an hour ahead is not.
    let token = idp.token("rsa-1", json!({"iat": now as u64 + 2}), 300).await;
    assert_eq!(with_bearer(&stack, &token).await.status, 200);
    let token = idp.token("rsa-1", json!({"iat": now as u64 + 3600}), 300).await;
    assert_refused(&with_bearer(&stack, &token).await, "issued in the future", &token);
    let token = idp.token("rsa-1", json!({"exp": "tomorrow"}), 300).await;
    assert_refused(&with_bearer(&stack, &token).await, "exp claim is not a NumericDate", &token);
    for claims in [
        json!({"sub": "alice\u{0}root"}),
        json!({"sub": "alice\nINFO signed in as root"}),
        json!({"email": "alice@acme.test\r\nx-injected: 1"}),
        json!({"groups": ["acme", "admins\u{1b}[0m"]}),
        json!({"sub": "alice\u{202E}toor"}),
        json!({"sub": "al\u{200B}ice"}),
        json!({"email": "alice@acme.test\u{2066}"}),
        json!({"groups": ["ac\u{FEFF}me"]}),
    ] {
        let token = idp.token("rsa-1", claims.clone(), 300).await;
        assert_refused(&with_bearer(&stack, &token).await, "control characters", &token);
    }
}
