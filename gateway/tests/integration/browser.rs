//! Browser sign-in end to end: the authorization code flow with PKCE against real OIDC
//! providers (oauth2-mock-server for the refusals, whose ID tokens the test can spoil; panva's
//! oidc-provider with a real login page for the console in Chromium), the sealed session
//! cookie, CSRF, logout, and a restart. Each refusal is proven, and so is acceptance.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use gateway::config::{
    AuthorizationConfig, BrowserLoginConfig, BrowserSessionsConfig, ClientAuth, Config, OidcProviderConfig, Reference,
};
use gateway::internal::apikeys;
use gateway::internal::{KeyRing, SESSION_COOKIE, Sessions};
use http_body_util::{BodyExt, Empty};
use identity::{AuthMethod, Principal, PrincipalKind};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::auth::{Idp, free_port};
use crate::common::{self, Client, Reply, Stack, metrics_text};

const CLIENT_ID: &str = "portcullis-console";

/// Session keys in files, referenced as the config must (`${file:...}`).
fn key_reference(dir: &Path, name: &str, key: &[u8; 32]) -> Reference {
    let path = dir.join(name);
    std::fs::write(&path, STANDARD.encode(key)).unwrap();
    Reference::new(format!("${{file:{}}}", path.display()))
}

/// Browser sign-in at `issuer` on the API listener at `port`, sessions sealed with `keys`.
fn browser_config(config: &mut Config, issuer: &str, port: u16, keys: Vec<Reference>, secret: Option<Reference>) {
    let mut provider = OidcProviderConfig::new("idp", issuer, vec![CLIENT_ID.into()]);
    provider.claims.tenant = Some("tenant".into());
    let mut login = BrowserLoginConfig::new(CLIENT_ID, format!("https://127.0.0.1:{port}/auth/callback"));
    login.client_secret = secret;
    login.scopes = ["openid", "email", "profile", "tenant"].map(String::from).to_vec();
    provider.browser_login = Some(login);
    config.auth.oidc = vec![provider];
    config.auth.browser_sessions = Some(BrowserSessionsConfig::new(keys));
    config.api.listen = SocketAddr::from(([127, 0, 0, 1], port));
}

fn origin(stack_port: u16) -> String {
    format!("https://127.0.0.1:{stack_port}")
}

/// The `Set-Cookie` header that sets `name`, whole.
fn set_cookie(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with(&format!("{name}=")))
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_string()
}

fn location(reply: &Reply) -> String {
    reply
        .headers
        .get("location")
        .unwrap_or_else(|| panic!("no Location: {} {}", reply.status, reply.text()))
        .to_str()
        .unwrap()
        .to_string()
}

/// A GET to the provider over plain HTTP (loopback): status and headers.
async fn provider_get(url: &str) -> (u16, http::HeaderMap) {
    let uri: http::Uri = url.parse().unwrap();
    let tcp =
        tokio::net::TcpStream::connect(format!("{}:{}", uri.host().unwrap(), uri.port_u16().unwrap())).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::get(uri.path_and_query().unwrap().as_str())
        .header("host", uri.authority().unwrap().as_str())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let _ = response.into_body().collect().await;
    (status, headers)
}

/// A browser without a browser: the gateway's API listener, cookies by hand.
struct Browser {
    addr: SocketAddr,
    client: Client,
    origin: String,
}

impl Browser {
    fn new(stack: &Stack) -> Self {
        Self::at(&stack.pki, stack.gateway.api_addr)
    }

    fn at(pki: &common::Pki, addr: SocketAddr) -> Self {
        Self { addr, client: Client::new(pki, None), origin: origin(addr.port()) }
    }

    async fn get(&self, path: &str, cookies: &[(&str, &str)]) -> Reply {
        self.send("GET", path, cookies, &[], "").await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        cookies: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let cookie = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if !cookie.is_empty() {
            all.push(("cookie", &cookie));
        }
        self.client.request(self.addr, method, path, &all, body).await.unwrap()
    }

    /// `/auth/login` until the provider has been discovered: the 302 to the provider.
    async fn login(&self, query: &str) -> Reply {
        for _ in 0..100 {
            let reply = self.get(&format!("/auth/login{query}"), &[]).await;
            if reply.status != 503 {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the provider was never discovered");
    }

    /// Starts a sign-in and has the provider approve it: the callback path and the login cookie.
    async fn approved(&self) -> (String, String) {
        let started = self.login("?return_to=%2Fconsole%3Ftab%3D1").await;
        assert_eq!(started.status, 302, "{}", started.text());
        let login_cookie = cookie_value(&set_cookie(&started, "__Host-portcullis-login").expect("a login cookie"));
        let authorize = location(&started);
        for part in ["code_challenge_method=S256", "code_challenge=", "state=", "nonce=", "response_type=code"] {
            assert!(authorize.contains(part), "{part} missing in {authorize}");
        }
        let (status, headers) = provider_get(&authorize).await;
        assert_eq!(status, 302, "the provider did not approve");
        let back = headers["location"].to_str().unwrap().to_string();
        let path = back.strip_prefix(&self.origin).unwrap_or_else(|| panic!("{back} is not the gateway's")).to_string();
        (path, login_cookie)
    }

    /// A whole sign-in: the session cookie's `Set-Cookie`.
    async fn sign_in(&self) -> String {
        let (callback, login_cookie) = self.approved().await;
        let reply = self.get(&callback, &[("__Host-portcullis-login", &login_cookie)]).await;
        assert_eq!(reply.status, 302, "{}", reply.text());
        assert_eq!(location(&reply), "/console?tab=1");
        set_cookie(&reply, SESSION_COOKIE).expect("a session cookie")
    }

    async fn sql(&self, session: &str, headers: &[(&str, &str)], sql: &str) -> Reply {
        self.send("POST", "/v1/sql", &[(SESSION_COOKIE, session)], headers, sql).await
    }
}

async fn stack_with_browser(idp: &Idp, dir: &Path, keys: &[[u8; 32]]) -> (Stack, u16) {
    let port = free_port();
    let references = keys.iter().enumerate().map(|(i, k)| key_reference(dir, &format!("key-{i}"), k)).collect();
    let secret_path = dir.join("client-secret");
    std::fs::write(&secret_path, "console-secret\n").unwrap();
    let secret = Reference::new(format!("${{file:{}}}", secret_path.display()));
    let issuer = idp.issuer.clone();
    let stack = Stack::start_with(ClientAuth::Optional, |c| {
        browser_config(c, &issuer, port, references, Some(secret));
    })
    .await;
    (stack, port)
}

fn events(stack: &Stack) -> Vec<Value> {
    let gateway::config::SinkConfig::File { path, .. } = &stack.config.audit.sinks[0] else { panic!("file sink") };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // Only whole lines: the gateway may be writing the last one as the test reads.
    text.split_inclusive('\n').filter(|l| l.ends_with('\n')).map(|l| serde_json::from_str(l).unwrap()).collect()
}

async fn wait_for_event(stack: &Stack, what: &str, found: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        if let Some(event) = events(stack).into_iter().find(&found) {
            return event;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no audit event for {what}");
}

#[tokio::test]
async fn sign_in_then_sql_with_csrf_logout_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut idp = Idp::start(0).await;
    idp.command(r#"idtoken {"tenant": "acme", "groups": ["acme"], "email": "johndoe@acme.test"}"#.into()).await;
    let (stack, port) = stack_with_browser(&idp, dir.path(), &[[1; 32]]).await;
    let browser = Browser::new(&stack);
    let origin = origin(port);

    let set = browser.sign_in().await;
    // The cookie's attributes, on the real response.
    let attributes: Vec<&str> = set.split("; ").collect();
    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(attributes.contains(&attribute), "{attribute} missing: {set}");
    }
    assert!(set.starts_with("__Host-") && !set.to_lowercase().contains("domain="), "{set}");
    let session = cookie_value(&set);
    assert!(!session.contains("johndoe") && session.len() > 40, "the cookie is readable: {session}");
    // Sign-in is an Authentication event with the browser flow; the session secret is not in it.
    let event =
        wait_for_event(&stack, "the sign-in", |e| e["class_uid"] == 3002 && e["unmapped"]["flow"] == "browser").await;
    assert_eq!(event["status"], "Success");
    assert_eq!(event["user"]["uid"], "johndoe", "{event}");
    assert!(!event.to_string().contains(&session[..20]));

    // Who am I, and the CSRF token the console sends.
    let whoami = browser.get("/auth/session", &[(SESSION_COOKIE, &session)]).await;
    assert_eq!(whoami.status, 200, "{}", whoami.text());
    let whoami = whoami.json();
    assert_eq!((whoami["principal"].as_str(), whoami["tenant"].as_str()), (Some("johndoe"), Some("acme")));
    let csrf = whoami["csrf_token"].as_str().unwrap().to_string();

    // SQL as the signed-in person: same origin and the token.
    let good = [("origin", origin.as_str()), ("x-csrf-token", csrf.as_str())];
    let reply =
        browser.sql(&session, &good, "SELECT current_principal() AS p, tenant FROM my_orders ORDER BY order_id").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let rows = reply.json();
    assert_eq!(rows.as_array().unwrap().len(), 4, "{rows}");
    assert!(rows.as_array().unwrap().iter().all(|r| r["p"] == "johndoe" && r["tenant"] == "acme"), "{rows}");
    let request_id = reply.headers["x-request-id"].to_str().unwrap().to_string();
    let event = wait_for_event(&stack, "the query", |e| {
        e["class_uid"] == 6003 && e["metadata"]["correlation_uid"] == request_id
    })
    .await;
    assert_eq!(event["unmapped"]["auth_method"], "browser", "{event}");

    // CSRF: each missing or wrong piece is refused with 403 csrf_failed, and nothing runs.
    for (headers, why) in [
        (vec![("origin", "https://evil.example"), ("x-csrf-token", csrf.as_str())], "Origin is not this gateway"),
        (vec![("sec-fetch-site", "cross-site"), ("x-csrf-token", csrf.as_str())], "Sec-Fetch-Site"),
        (vec![("origin", origin.as_str())], "CSRF token missing"),
        (vec![("origin", origin.as_str()), ("x-csrf-token", "not-the-token")], "does not match"),
        (vec![("x-csrf-token", csrf.as_str())], "needs Origin or Sec-Fetch-Site"),
    ] {
        let reply = browser.sql(&session, &headers, "SELECT 1").await;
        assert_eq!(reply.status, 403, "{headers:?}: {}", reply.text());
        assert_eq!(reply.json()["error"]["code"], "csrf_failed");
        assert!(reply.json()["error"]["message"].as_str().unwrap().contains(why), "{}", reply.text());
    }
    // A catalog read needs no token (SameSite=Lax keeps the cookie off cross-site sub-requests).
    let datasets = browser.get("/v1/datasets", &[(SESSION_COOKIE, &session)]).await;
    assert_eq!(datasets.status, 200, "{}", datasets.text());
    // The gateway restarts with the same key (and an API key added): the session survives.
    let key = apikeys::generate().unwrap();
    let Stack { pki, engine: _engine, gateway: first, mut config } = stack;
    first.shutdown().await;
    config.auth.api_keys = Some(common::inline_key("etl", &key.hash));
    let restarted = gateway::server::start(gateway::server::prepare(config.clone()).unwrap()).await.unwrap();
    let browser = Browser::at(&pki, restarted.api_addr);
    let whoami = browser.get("/auth/session", &[(SESSION_COOKIE, &session)]).await;
    assert_eq!(whoami.status, 200, "after a restart: {}", whoami.text());
    assert_eq!(browser.sql(&session, &good, "SELECT 1").await.status, 200);
    // API key (and bearer) requests carry no ambient credential: no CSRF rule applies.
    let reply = browser
        .send("POST", "/v1/sql", &[], &[("origin", "https://evil.example"), ("x-api-key", &key.key)], "SELECT 1")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Logout: same origin + token; the cookie is cleared and the session refused from then on.
    let refused = browser
        .send("POST", "/auth/logout", &[(SESSION_COOKIE, &session)], &[("origin", "https://evil.example")], "")
        .await;
    assert_eq!(refused.status, 403, "a cross-site logout: {}", refused.text());
    let out = browser.send("POST", "/auth/logout", &[(SESSION_COOKIE, &session)], &good, "").await;
    assert_eq!(out.status, 200, "{}", out.text());
    let cleared = set_cookie(&out, SESSION_COOKIE).unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let end = out.json()["location"].as_str().unwrap().to_string();
    assert!(end.starts_with(&format!("{}/endsession", idp.issuer)) || end.ends_with("/auth/signed-out"), "{end}");
    let after = browser.sql(&session, &good, "SELECT 1").await;
    assert_eq!(after.status, 401, "{}", after.text());
    assert!(after.text().contains("signed out"), "{}", after.text());
    restarted.shutdown().await;
    idp.stop().await;
}

/// A refused callback: its status, code and message, as JSON (fetch) and as a page (navigation).
fn assert_refused(reply: &Reply, status: u16, code: &str, why: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains(why), "{body} (wanted {why})");
    assert!(set_cookie(reply, SESSION_COOKIE).is_none(), "a refused sign-in set a session");
}

#[tokio::test]
async fn callbacks_that_must_not_sign_anyone_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut idp = Idp::start(0).await;
    idp.command(r#"idtoken {"tenant": "acme"}"#.into()).await;
    let (stack, _) = stack_with_browser(&idp, dir.path(), &[[1; 32]]).await;
    let browser = Browser::new(&stack);
    let login = "__Host-portcullis-login";

    // No state, an unknown state.
    assert_refused(&browser.get("/auth/callback?code=x", &[]).await, 400, "login_state_invalid", "no state");
    let reply = browser.get("/auth/callback?code=x&state=made-up", &[(login, "x")]).await;
    assert_refused(&reply, 400, "login_state_invalid", "unknown or already used");
    // A browser navigating gets a page that says the same, escaped, with a way to start again.
    let page =
        browser.send("GET", "/auth/callback?code=x&state=%3Cscript%3E", &[], &[("accept", "text/html")], "").await;
    assert_eq!(page.status, 400);
    assert!(page.text().contains("unknown or already used") && page.text().contains("/auth/login"), "{}", page.text());
    assert!(!page.text().contains("<script>"));
    assert!(page.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));

    // The callback opened in another browser (no login cookie, or another one): login CSRF.
    let (callback, _) = browser.approved().await;
    assert_refused(&browser.get(&callback, &[]).await, 400, "login_state_invalid", "another browser");
    let (callback, _) = browser.approved().await;
    assert_refused(
        &browser.get(&callback, &[(login, "someone-else")]).await,
        400,
        "login_state_invalid",
        "another browser",
    );

    // A replayed callback (same code, same state): the state was used up by the first.
    let (callback, cookie) = browser.approved().await;
    assert_eq!(browser.get(&callback, &[(login, &cookie)]).await.status, 302);
    assert_refused(&browser.get(&callback, &[(login, &cookie)]).await, 400, "login_state_invalid", "already used");

    // A code stolen from one sign-in, injected into another's callback: the other's PKCE
    // verifier does not match the code's challenge, so the provider refuses the exchange.
    let (stolen, _) = browser.approved().await;
    let code = stolen.split(['?', '&']).find(|p| p.starts_with("code=")).unwrap();
    let (victim, cookie) = browser.approved().await;
    let state = victim.split(['?', '&']).find(|p| p.starts_with("state=")).unwrap();
    let injected = browser.get(&format!("/auth/callback?{code}&{state}"), &[(login, &cookie)]).await;
    assert!(matches!(injected.status, 403 | 502), "an injected code signed someone in: {}", injected.text());
    assert!(set_cookie(&injected, SESSION_COOKIE).is_none());

    // The provider's ID token with a nonce other than this sign-in's.
    idp.command(r#"idtoken {"tenant": "acme", "nonce": "someone-elses-nonce"}"#.into()).await;
    let (callback, cookie) = browser.approved().await;
    assert_refused(&browser.get(&callback, &[(login, &cookie)]).await, 401, "id_token_invalid", "once");
    // An expired ID token.
    let past = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 3600;
    idp.command(format!(r#"idtoken {{"tenant": "acme", "iat": {}, "exp": {past}}}"#, past - 600)).await;
    let (callback, cookie) = browser.approved().await;
    assert_refused(&browser.get(&callback, &[(login, &cookie)]).await, 401, "id_token_invalid", "xpired");
    // An ID token for another client.
    idp.command(r#"idtoken {"tenant": "acme", "aud": "another-client"}"#.into()).await;
    let (callback, cookie) = browser.approved().await;
    assert_refused(&browser.get(&callback, &[(login, &cookie)]).await, 401, "id_token_invalid", "udience");
    idp.command(r#"idtoken {"tenant": "acme"}"#.into()).await;

    // The provider said no; another issuer answered (RFC 9207 mix-up).
    let (callback, cookie) = browser.approved().await;
    let state = callback.split(['?', '&']).find(|p| p.starts_with("state=")).unwrap();
    let denied = format!("/auth/callback?error=access_denied&error_description=user%20cancelled&{state}");
    assert_refused(&browser.get(&denied, &[(login, &cookie)]).await, 403, "login_refused", "access_denied");
    let (callback, cookie) = browser.approved().await;
    let mixed = format!("{callback}&iss=https%3A%2F%2Fevil.example");
    assert_refused(&browser.get(&mixed, &[(login, &cookie)]).await, 403, "login_refused", "not from the provider");

    // Return-to URLs stay on this gateway (no open redirect).
    for bad in ["https%3A%2F%2Fevil.example%2F", "%2F%2Fevil.example", "%2F%5Cevil.example", "javascript%3Aalert(1)"] {
        let reply = browser.get(&format!("/auth/login?return_to={bad}"), &[]).await;
        assert_refused(&reply, 400, "return_to_invalid", "path on this gateway");
    }
    // ... and counted by result (the registry is the process's: at least these).
    let metrics = metrics_text(stack.gateway.health_addr).await;
    for result in ["ok", "login_state_invalid", "id_token_invalid", "login_refused"] {
        let line = format!("gateway_browser_sign_ins_total{{result=\"{result}\"}} ");
        assert!(metrics.lines().any(|l| l.starts_with(&line)), "{line} missing:\n{metrics}");
    }
    // Every refused callback above is an Authentication event with its reason.
    for code in ["login_state_invalid", "id_token_invalid", "login_refused"] {
        wait_for_event(&stack, code, |e| {
            e["class_uid"] == 3002 && e["unmapped"]["flow"] == "browser" && e["status_code"] == code
        })
        .await;
    }
    idp.stop().await;
}

#[tokio::test]
async fn session_cookies_that_must_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let idp = Idp::start(0).await;
    let key = [3u8; 32];
    let (stack, _) = stack_with_browser(&idp, dir.path(), &[key]).await;
    let browser = Browser::new(&stack);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut principal = Principal::new(PrincipalKind::User, "alice", "alice", AuthMethod::Browser);
    principal.tenant = Some("acme".into());
    // Sealed as the gateway seals, with its key or another.
    let seal = |keys: &[[u8; 32]], iat: u64, seen: u64| {
        let sessions = Sessions::new(KeyRing::from_raw(keys).unwrap(), 8 * 3600, 3600);
        let mut session = sessions.start(principal.clone(), "idp", iat).unwrap();
        session.seen = seen;
        cookie_value(sessions.cookie(&session).unwrap().to_str().unwrap())
    };
    let good = seal(&[key], now, now);
    assert_eq!(browser.get("/auth/session", &[(SESSION_COOKIE, &good)]).await.status, 200);

    let mut tampered = good.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let mut refused_ids = Vec::new();
    for (cookie, why) in [
        (tampered, "tampered with"),
        (seal(&[[4u8; 32]], now, now), "a key this gateway does not have"),
        (seal(&[key], now - 2 * 3600, now - 2 * 3600), "idle too long"),
        (seal(&[key], now - 9 * 3600, now - 60), "absolute lifetime"),
        ("not-a-sealed-value".into(), "malformed"),
    ] {
        for path in ["/v1/datasets", "/auth/session"] {
            let reply = browser.get(path, &[(SESSION_COOKIE, &cookie)]).await;
            assert_eq!(reply.status, 401, "{path} {why}: {}", reply.text());
            assert!(reply.text().contains(why) && reply.text().contains("sign in again"), "{path}: {}", reply.text());
            refused_ids.push(reply.headers["x-request-id"].to_str().unwrap().to_string());
        }
    }
    // The console itself sends a browser with a bad cookie to sign in again.
    let console = browser.get("/console", &[(SESSION_COOKIE, "not-a-sealed-value")]).await;
    assert_eq!((console.status, location(&console).as_str()), (302, "/auth/login?return_to=%2Fconsole"));
    refused_ids.push(console.headers["x-request-id"].to_str().unwrap().to_string());
    // Every refused cookie, on the API and on the browser's own routes, is a failed sign-in
    // in the audit trail (the request id ties each to its request).
    for id in &refused_ids {
        wait_for_event(&stack, "a refused session cookie", |e| {
            e["class_uid"] == 3002 && e["status"] == "Failure" && e["metadata"]["correlation_uid"] == id.as_str()
        })
        .await;
    }
    // The console's page and assets carry the security headers; the page needs a session.
    let page = browser.get("/console", &[(SESSION_COOKIE, &good)]).await;
    assert_eq!(page.status, 200);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    for (name, value) in
        [("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer"), ("cache-control", "no-store")]
    {
        assert_eq!(page.headers[name], value, "{name}");
    }
    assert!(page.headers["strict-transport-security"].to_str().unwrap().starts_with("max-age="));
    let script = browser.get("/console/app.js", &[]).await;
    assert_eq!(script.status, 200);
    assert!(script.headers["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert_eq!(browser.get("/console/nothing.js", &[]).await.status, 404);
    assert_eq!(browser.send("DELETE", "/auth/login", &[], &[], "").await.status, 405);
}

/// Two people of different tenants sign in at a real provider's login page in Chromium, run
/// the same query in the console and see their own rows; another tenant's dataset is refused
/// on the page with the API's words; CSV downloads the rows fetched; a 16,384-row result pages,
/// sorts and filters; names complete and colour; a reload keeps the history; dark mode and a
/// phone's width; logout ends the session. Screenshots in
/// `$CARGO_TARGET_TMPDIR/console-screenshots/`.
#[tokio::test]
async fn the_console_in_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(
        Path::new("/usr/bin/chromium").exists() || std::env::var_os("CHROMIUM").is_some(),
        "Chromium is needed: apt-get install chromium"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let origin = origin(port);
    let mut idp = tokio::process::Command::new("node")
        .env("EXIT_WITH_STDIN", "1")
        .arg(root.join("gateway/tests/js/interactive.mjs"))
        .arg(format!("{origin}/auth/callback"))
        .arg(format!("{origin}/auth/signed-out"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(idp.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
    let issuer = ready.strip_prefix("ready ").unwrap_or_else(|| panic!("provider said {ready}")).to_string();
    let keys = vec![key_reference(dir.path(), "key", &[7; 32])];
    let secret_path = dir.path().join("client-secret");
    std::fs::write(&secret_path, "console-secret").unwrap();
    let secret = Reference::new(format!("${{file:{}}}", secret_path.display()));
    let policies = common::shipped_policies();
    let stack = Stack::start_with(ClientAuth::Optional, |c| {
        browser_config(c, &issuer, port, keys, Some(secret));
        c.authorization = AuthorizationConfig::new(policies);
    })
    .await;
    Browser::new(&stack).login("").await; // discovered

    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let output = tokio::process::Command::new("node")
        .current_dir(&root)
        .arg("gateway/tests/js/console.mjs")
        .arg(&origin)
        .arg(&artifacts)
        .args(["alice", "bob"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "the browser run failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();

    for (user, tenant, email) in [("alice", "acme", "alice@acme.example"), ("bob", "globex", "bob@globex.example")] {
        let r = &results[user];
        assert_eq!(r["login_page"], issuer, "{user} was not sent to the provider's login page");
        let who = r["who"].as_str().unwrap();
        assert!(who.contains(user) && who.contains(email) && who.contains(tenant), "{user}: {who}");
        // Their own rows, and only theirs.
        let own = &r["own"];
        assert_eq!(own["error"], Value::Null, "{user}: {own}");
        assert_eq!(own["columns"], json!(["order_id", "tenant", "customer_id", "amount"]));
        let rows = own["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 4, "{user}: {own}");
        assert!(rows.iter().all(|row| row[1] == tenant), "{user} saw another tenant's rows: {own}");
        assert!(own["status"].as_str().unwrap().starts_with("4 rows in"), "{own}");
        // The CSV download: a header and the same rows, from the rows fetched (no new query).
        let csv = r["csv"].as_str().unwrap();
        assert_eq!(csv.lines().next(), Some("order_id,tenant"), "{csv}");
        assert_eq!(csv.lines().skip(1).filter(|l| l.ends_with(&format!(",{tenant}"))).count(), 4, "{csv}");
        assert_eq!(r["csv_requests"], 0, "{user}: the CSV download ran the query again");
        // 16,384 rows: all kept, shown 500 at a time, sorted and filtered in the page.
        assert!(r["big"]["status"].as_str().unwrap().starts_with("16,384 rows in"), "{}", r["big"]);
        assert_eq!(r["big_range"], "rows 1–500 of 16,384", "{user}");
        assert_eq!(r["big_page3"], json!({"range": "rows 1,001–1,500 of 16,384", "rows": 500}), "{user}");
        let own_ids: Vec<i64> = rows.iter().map(|row| row[0].as_str().unwrap().parse().unwrap()).collect();
        let highest = own_ids.iter().max().unwrap().to_string();
        assert_eq!(r["big_sorted"]["sort"], "descending", "{user}");
        assert_eq!(r["big_sorted"]["first"], json!([highest, highest, highest]), "{user}: {}", r["big_sorted"]);
        // Every row has the filtered order id in one of its seven columns unless none does: 4^7 - 3^7.
        assert_eq!(r["big_filtered"], "rows 1–500 of 14,197 (filtered from 16,384)", "{user}");
        // Completion offered the dataset and Tab took it; SQL coloured.
        assert!(r["suggested"].as_array().unwrap().contains(&json!("my_orders")), "{}", r["suggested"]);
        assert_eq!(r["completed"], "SELECT order_id FROM my_orders", "{user}");
        assert_eq!(r["coloured"]["kw"], json!(["SELECT", "FROM"]), "{}", r["coloured"]);
        assert_eq!(r["coloured"]["ds"], json!(["my_orders"]), "{}", r["coloured"]);
        assert_eq!(r["coloured"]["col"], json!(["order_id"]), "{}", r["coloured"]);
        // A reload keeps the draft and the history (this browser, this person).
        assert_eq!(r["after_reload"]["editor"], "SELECT order_id FROM my_orders", "{user}");
        let history = r["after_reload"]["history"].as_array().unwrap();
        assert!(history.contains(&json!("SELECT * FROM globex.orders")), "{user}: {history:?}");
        // Dark when the system is; nothing wider than a 360 px screen, light or dark.
        assert_eq!(r["dark"]["background"], "rgb(15, 20, 28)", "{user}");
        assert_eq!(r["narrow"]["background"], "rgb(245, 246, 248)", "{user}");
        for narrow in [&r["narrow"], &r["narrow_dark"]] {
            assert_eq!(narrow["width"], 360, "{user}");
            assert!(
                narrow["scroll_width"].as_u64().unwrap() <= 360,
                "{user}: the page is wider than the phone: {narrow}"
            );
        }
        // The session cookie, as the browser stored it.
        let cookie =
            r["cookies"].as_array().unwrap().iter().find(|c| c["name"] == SESSION_COOKIE).expect("session cookie");
        assert_eq!(
            (cookie["secure"].as_bool(), cookie["httpOnly"].as_bool(), cookie["sameSite"].as_str()),
            (Some(true), Some(true), Some("Lax"))
        );
        // Logout ended the session.
        assert_eq!(r["session_after_logout"], 401, "{user}");
        assert_eq!(r["console_after_logout"], issuer, "{user}: /console after logout should go to sign in");
        assert!(r["signed_out_text"].as_str().unwrap().contains("signed out"), "{r}");
    }
    // Alice asked for globex's dataset: the page shows the API's 403, naming the dataset.
    let other = &results["alice"]["other"];
    let error = other["error"].as_str().unwrap_or_else(|| panic!("no error shown: {other}"));
    assert!(error.contains("403 forbidden") && error.contains("datafusion.globex.orders"), "{error}");
    // Bob may read it: it is his tenant's.
    assert_eq!(results["bob"]["other"]["error"], Value::Null, "{}", results["bob"]["other"]);
    for shot in [
        "console-alice.png",
        "console-bob.png",
        "console-alice-refused.png",
        "console-alice-dark.png",
        "console-alice-narrow.png",
        "console-alice-narrow-dark.png",
    ] {
        assert!(std::fs::metadata(artifacts.join(shot)).unwrap().len() > 10_000, "{shot}");
    }
    let _ = idp.kill().await;
}

/// The provider issued a refresh token: when the ID token expires the claims are renewed at
/// the provider (new groups show), concurrent requests with the old cookie share the renewal,
/// and a provider that refuses the refresh token ends the session.
#[tokio::test]
async fn sessions_renew_at_the_provider_and_end_when_it_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut idp = Idp::start(0).await;
    idp.command(r#"idtoken {"tenant": "acme", "groups": ["acme"], "exp_in": 2}"#.into()).await;
    let (stack, _) = stack_with_browser(&idp, dir.path(), &[[1; 32]]).await;
    let browser = Browser::new(&stack);
    let session = cookie_value(&browser.sign_in().await);
    let whoami = browser.get("/auth/session", &[(SESSION_COOKIE, &session)]).await;
    assert_eq!(whoami.json()["groups"], json!(["acme"]));
    assert!(set_cookie(&whoami, SESSION_COOKIE).is_none(), "renewed before the ID token expired");

    // The ID token expires; the provider now says the person is also in `auditors`.
    idp.command(r#"idtoken {"tenant": "acme", "groups": ["acme", "auditors"], "exp_in": 600}"#.into()).await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let old = [(SESSION_COOKIE, session.as_str())];
    // The first is refused (no such route) after authenticating: the renewed cookie, with the
    // provider's rotated refresh token, still comes back.
    let (first, second) = tokio::join!(browser.get("/v1/no-such-route", &old), browser.get("/auth/session", &old));
    assert_eq!((first.status, second.status), (404, 200), "{} / {}", first.text(), second.text());
    assert_eq!(second.json()["groups"], json!(["acme", "auditors"]), "the claims were not renewed");
    let renewed = cookie_value(&set_cookie(&first, SESSION_COOKIE).expect("a renewed cookie"));
    assert_ne!(renewed, session);
    let again = browser.get("/auth/session", &[(SESSION_COOKIE, &renewed)]).await;
    assert_eq!(again.json()["groups"], json!(["acme", "auditors"]));

    // The provider revokes the session: the next renewal ends it.
    idp.command(r#"idtoken {"tenant": "acme", "groups": ["acme"], "exp_in": 2}"#.into()).await;
    let short = {
        let session = cookie_value(&browser.sign_in().await);
        tokio::time::sleep(Duration::from_millis(3100)).await;
        session
    };
    idp.command("refresh refuse".into()).await;
    let refused = browser.get("/v1/datasets", &[(SESSION_COOKIE, &short)]).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert!(refused.text().contains("no longer accepts this session"), "{}", refused.text());
    let console = browser.get("/console", &[(SESSION_COOKIE, &short)]).await;
    assert_eq!((console.status, location(&console).as_str()), (302, "/auth/login?return_to=%2Fconsole"));
    idp.stop().await;
}

/// What reaches the engine from a cookie request: the stamp, never the cookie or the CSRF
/// token (an upstream that records the request head stands in for the engine).
#[tokio::test]
async fn the_engine_never_sees_the_session_cookie_or_the_csrf_token() {
    let recorder = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", recorder.local_addr().unwrap());
    let heads = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut heads = Vec::new();
        for _ in 0..2 {
            let (mut socket, _) = recorder.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "the gateway closed before a whole head");
                head.extend_from_slice(&buf[..n]);
            }
            socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]").await.unwrap();
            heads.push(String::from_utf8_lossy(&head).to_lowercase());
        }
        heads
    });
    let dir = tempfile::tempdir().unwrap();
    let idp = Idp::start(0).await;
    let port = free_port();
    let key = apikeys::generate().unwrap();
    let (issuer, hash) = (idp.issuer.clone(), key.hash.clone());
    let keys = vec![key_reference(dir.path(), "key", &[9; 32])];
    let stack = Stack::start_with(ClientAuth::Optional, |c| {
        browser_config(c, &issuer, port, keys, None);
        c.auth.api_keys = Some(common::inline_key("etl", &hash));
        c.api.upstream = upstream;
    })
    .await;
    let browser = Browser::new(&stack);
    let sessions = Sessions::new(KeyRing::from_raw(&[[9; 32]]).unwrap(), 8 * 3600, 3600);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let session =
        sessions.start(Principal::new(PrincipalKind::User, "alice", "alice", AuthMethod::Browser), "idp", now).unwrap();
    let cookie = cookie_value(sessions.cookie(&session).unwrap().to_str().unwrap());
    let origin = origin(port);
    let headers = [("origin", origin.as_str()), ("x-csrf-token", session.csrf.as_str())];
    let cookies = [(SESSION_COOKIE, cookie.as_str()), ("theme", "dark")];
    assert_eq!(browser.send("POST", "/v1/sql", &cookies, &headers, "SELECT 1").await.status, 200);
    // An API key wins over a session cookie that comes along; the cookie still stays here.
    let with_key = [("x-api-key", key.key.as_str())];
    assert_eq!(browser.send("POST", "/v1/sql", &cookies, &with_key, "SELECT 1").await.status, 200);
    for head in heads.await.unwrap() {
        assert!(head.contains(identity::STAMP_HEADER), "no stamp: {head}");
        for secret in ["cookie:", "pck_", "x-csrf-token", &session.csrf.to_lowercase(), "x-api-key"] {
            assert!(!head.contains(secret), "{secret} reached the engine: {head}");
        }
    }
    drop(idp);
}

/// `require_client_certificate` holds for a browser session as for any credential: on the
/// API and on the session routes.
#[tokio::test]
async fn a_required_client_certificate_is_required_of_browsers_too() {
    let dir = tempfile::tempdir().unwrap();
    let idp = Idp::start(0).await;
    let port = free_port();
    let issuer = idp.issuer.clone();
    let keys = vec![key_reference(dir.path(), "key", &[8; 32])];
    let stack = Stack::start_with(ClientAuth::Optional, |c| {
        browser_config(c, &issuer, port, keys, None);
        c.api.auth.require_client_certificate = true;
    })
    .await;
    let sessions = Sessions::new(KeyRing::from_raw(&[[8; 32]]).unwrap(), 8 * 3600, 3600);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let session =
        sessions.start(Principal::new(PrincipalKind::User, "alice", "alice", AuthMethod::Browser), "idp", now).unwrap();
    let cookie = cookie_value(sessions.cookie(&session).unwrap().to_str().unwrap());
    let without = Browser::new(&stack);
    for path in ["/auth/session", "/v1/datasets"] {
        let reply = without.get(path, &[(SESSION_COOKIE, &cookie)]).await;
        assert_eq!(reply.status, 401, "{path}: {}", reply.text());
        assert!(reply.text().contains("client certificate is required"), "{path}: {}", reply.text());
    }
    let with = Browser { client: Client::new(&stack.pki, Some("workload")), ..Browser::new(&stack) };
    for path in ["/auth/session", "/v1/datasets"] {
        let reply = with.get(path, &[(SESSION_COOKIE, &cookie)]).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    drop(idp);
}

/// docs/gateway.md's "Try it locally" starts the provider with `&`: from a script (stdin at
/// its end) it must keep running after the script ends, until it is killed, and the secret
/// file the next line writes lands in the state folder.
#[tokio::test]
async fn the_documented_provider_command_runs_on_in_the_background() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let docs = std::fs::read_to_string(root.join("docs/gateway.md")).unwrap();
    let start = docs.lines().find(|l| l.starts_with("PORT=9400 node gateway/tests/js/interactive.mjs")).unwrap();
    let secret = docs.lines().find(|l| l.contains("echo console-secret >")).unwrap();
    assert!(secret.contains(".portcullis/"), "the secret file must go to the state folder: {secret}");
    let port = free_port();
    let script = format!("{}\necho $!", start.replace("9400", &port.to_string()));
    // The provider keeps the script's stderr: a file, so reading the script's output does
    // not wait for the provider to end.
    let log = tempfile::NamedTempFile::new().unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&root)
        .stdin(Stdio::null())
        .stderr(log.reopen().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", std::fs::read_to_string(log.path()).unwrap_or_default());
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // The script is over; the provider still answers discovery.
    let url = format!("http://127.0.0.1:{port}/.well-known/openid-configuration");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    while status != 200 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            status = provider_get(&url).await.0;
        }
    }
    let alive = std::process::Command::new("kill").arg("-0").arg(&pid).status().unwrap().success();
    std::process::Command::new("kill").arg(&pid).status().unwrap();
    assert_eq!(status, 200, "the provider did not answer after its script ended");
    assert!(alive, "the provider {pid} is gone");
}
