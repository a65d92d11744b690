//! Audit end to end: OCSF events for every outcome (and no secret anywhere), the HTTP sink
//! through an outage and a gateway restart with nothing missing, `on_failure: deny`, and
//! syslog over TCP and TLS parsed as RFC 5424.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::common::{Reply, Stack, read_events, wait_for};
use base64::Engine as _;
use bytes::Bytes;
use gateway::config::{
    ApiKeyEntry, ApiKeysConfig, AuditConfig, ClientAuth, FindingConfig, FsyncPolicy, HttpFormat, OnAuditFailure,
    QuotaConfig, RateLimitConfig, Reference, SessionBookkeeping, SinkConfig, SqlInAudit,
};
use gateway::internal::apikeys;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Everything the gateway logs in this test binary, at debug level, for the secrets check.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buffer);
        // The crates' own logs (every test in this binary writes them once this is set):
        // hyper's and h2's debug output would only grow the buffer.
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("gateway=debug,identity=debug,engine=debug"))
            .with_ansi(false)
            .with_writer(move || Shared(Arc::clone(&sink)))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
}

struct Shared(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn key_entry(name: &str, hash: &str, tenant: Option<&str>) -> ApiKeyEntry {
    ApiKeyEntry { name: name.into(), hash: hash.into(), groups: vec![], tenant: tenant.map(Into::into), expires: None }
}

/// Allow everything except calls by the `blocked` service (a Cedar forbid).
fn policies_with_a_forbid(dir: &Path) -> std::path::PathBuf {
    let policies = common::allow_all_policies(dir);
    std::fs::write(
        policies.join("forbid.cedar"),
        "@id(\"no-blocked\")\nforbid(principal == Service::\"blocked\", action, resource);\n",
    )
    .unwrap();
    policies
}

fn api_events<'a>(events: &'a [Value], request_id: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["class_uid"] == 6003 && e["metadata"]["correlation_uid"] == request_id).collect()
}

fn request_id(reply: &Reply) -> String {
    reply.headers["x-request-id"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn every_outcome_is_an_ocsf_event_and_no_secret_is_written() {
    let logs = captured_logs();
    let good = apikeys::generate().unwrap();
    let blocked = apikeys::generate().unwrap();
    let limited = apikeys::generate().unwrap();
    let keys = vec![
        key_entry("reader", &good.hash, Some("acme")),
        key_entry("blocked", &blocked.hash, None),
        key_entry("limited", &limited.hash, None),
    ];
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let log_path = log.clone();
    let stack = Stack::start_with(ClientAuth::Optional, move |c| {
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys });
        c.authorization.policies = policies_with_a_forbid(log_path.parent().unwrap()).into();
        c.rate_limits = RateLimitConfig {
            principals: HashMap::from([("limited".into(), QuotaConfig { requests: 1, per_secs: 3600, burst: None })]),
            ..Default::default()
        };
        c.audit = AuditConfig {
            sinks: vec![SinkConfig::File {
                path: log_path.into(),
                max_bytes: 1 << 30,
                keep: 1,
                fsync: FsyncPolicy::Batch,
            }],
            sql: SqlInAudit::Full,
            signin_interval_secs: 0,
            finding: FindingConfig { threshold: 3, window_secs: 60 },
            ..Default::default()
        };
    })
    .await;
    let api = stack.gateway.api_addr;
    let client = stack.client(None);
    let wrong_key = apikeys::generate().unwrap().key;
    let bogus_token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZWNyZXQtc3ViamVjdCJ9.c2VjcmV0LXNpZ25hdHVyZQ";
    let sql = |key: String, sql: &'static str| {
        let client = &client;
        async move { client.request(api, "POST", "/v1/sql", &[("x-api-key", &key)], sql).await.unwrap() }
    };
    let allowed = sql(good.key.clone(), "SELECT 'audited-text' AS x").await;
    assert_eq!(allowed.status, 200);
    let denied = sql(blocked.key.clone(), "SELECT 1").await;
    assert_eq!(denied.status, 403);
    let first = sql(limited.key.clone(), "SELECT 1").await;
    assert_eq!(first.status, 200);
    let throttled = sql(limited.key.clone(), "SELECT 1").await;
    assert_eq!(throttled.status, 429);
    let spoofed = client
        .request(
            api,
            "POST",
            "/v1/sql",
            &[("x-api-key", &good.key), ("x-portcullis-identity", "forged-stamp-value")],
            "SELECT 2",
        )
        .await
        .unwrap();
    assert_eq!(spoofed.status, 200);
    let mut unauthenticated = Vec::new();
    for _ in 0..2 {
        unauthenticated.push(sql(wrong_key.clone(), "SELECT 1").await);
    }
    let bearer = format!("Bearer {bogus_token}");
    unauthenticated
        .push(client.request(api, "POST", "/v1/sql", &[("authorization", &bearer)], "SELECT 1").await.unwrap());
    assert!(unauthenticated.iter().all(|r| r.status == 401));
    let mtls = stack.client(Some("workload")).sql(api, "SELECT 3").await.unwrap();
    assert_eq!(mtls.status, 200);
    // The Flight Handshake with Basic auth whose password is the API key.
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("svc:{}", good.key)));
    let handshake = stack.grpc_head("Handshake", &[("authorization", &basic)], Bytes::from_static(&[0; 5])).await;
    let session = handshake["authorization"].to_str().unwrap().to_string();
    // A Flight call: the RPC is the operation, the status comes from the trailers.
    let listed = stack.grpc_head("ListActions", &[("x-api-key", &good.key)], Bytes::from_static(&[0; 5])).await;
    let flight_id = listed["x-request-id"].to_str().unwrap().to_string();
    // A TLS failure: a client certificate from another CA.
    let stranger = common::Pki::new();
    let mut foreign = stack.client(None);
    foreign.config = common::client_config(&stack.pki.ca(), Some(stranger.leaf("workload")), &[b"http/1.1"]);
    assert!(foreign.sql(api, "SELECT 1").await.is_err());

    let events_path = log.clone();
    wait_for("the TLS failure event", || {
        read_events(&events_path).iter().any(|e| e["status_code"] == "tls_handshake_failed")
    })
    .await;
    let events = read_events(&log);

    // Allowed: principal, tenant tag, SQL, policies, bytes, status.
    let [event] = api_events(&events, &request_id(&allowed))[..] else { panic!("one event per request") };
    assert_eq!(event["class_name"], "API Activity");
    assert_eq!(event["type_uid"], 600302);
    assert_eq!(event["status"], "Success");
    assert_eq!(event["disposition"], "Allowed");
    assert_eq!(event["http_response"]["code"], 200);
    assert_eq!(event["http_request"]["url"]["path"], "/v1/sql");
    assert_eq!(event["actor"]["user"]["uid"], "reader");
    assert_eq!(event["actor"]["user"]["type"], "service");
    assert_eq!(event["unmapped"]["auth_method"], "api_key");
    assert_eq!(event["actor"]["user"]["org"]["name"], "acme");
    assert_eq!(event["actor"]["authorizations"][0]["policy"]["uid"], "allow-all");
    assert_eq!(event["unmapped"]["sql"], "SELECT 'audited-text' AS x");
    assert!(event["traffic"]["bytes_out"].as_u64().unwrap() > 0);
    assert_eq!(event["traffic"]["bytes_in"], 26);
    assert_eq!(event["src_endpoint"]["ip"], "127.0.0.1");
    assert_eq!(event["metadata"]["version"], "1.3.0");
    assert!(
        event["metadata"]["tags"].as_array().unwrap().iter().any(|t| t["name"] == "tenant" && t["value"] == "acme")
    );
    // Denied by the forbid: blocked, with Cedar's decision.
    let [event] = api_events(&events, &request_id(&denied))[..] else { panic!() };
    assert_eq!((event["status"].as_str(), event["disposition"].as_str()), (Some("Failure"), Some("Blocked")));
    assert_eq!(event["unmapped"]["decision"], "deny");
    assert_eq!(event["http_response"]["code"], 403);
    assert_eq!(event["unmapped"]["error_code"], "forbidden");
    let [event] = api_events(&events, &request_id(&throttled))[..] else { panic!() };
    assert_eq!(event["unmapped"]["error_code"], "rate_limited");
    assert_eq!(event["actor"]["user"]["uid"], "limited");
    for reply in &unauthenticated {
        let [event] = api_events(&events, &request_id(reply))[..] else { panic!() };
        assert_eq!(event["http_response"]["code"], 401);
        assert!(event.get("actor").is_none());
    }
    let [event] = api_events(&events, &flight_id)[..] else { panic!("one event for the Flight call") };
    assert_eq!(event["api"]["operation"], "ListActions");
    assert_eq!(event["api"]["service"]["name"], "flight");
    assert_eq!(event["status_code"], "grpc:0");
    assert_eq!(event["unmapped"]["grpc_status"], 0);
    let [event] = api_events(&events, &request_id(&mtls))[..] else { panic!() };
    assert_eq!(event["actor"]["user"]["type"], "workload");

    // Sign-ins: failures with their reason, successes with the method; the Handshake too.
    let signins: Vec<&Value> = events.iter().filter(|e| e["class_uid"] == 3002).collect();
    let failed: Vec<_> = signins.iter().filter(|e| e["status"] == "Failure").collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(failed.iter().any(|e| e["status_code"] == "invalid_api_key"));
    // A bearer token on a gateway without OIDC providers.
    assert!(failed.iter().any(|e| e["status_code"] == "method_not_allowed"));
    assert!(signins.iter().any(|e| e["status"] == "Success" && e["auth_protocol"] == "mTLS client certificate"));
    assert!(
        signins
            .iter()
            .any(|e| e["unmapped"]["flow"] == "handshake" && e["status"] == "Success" && e["user"]["uid"] == "reader")
    );
    // Three 401/403 from one address crossed the threshold: one finding.
    let findings: Vec<_> = events.iter().filter(|e| e["class_uid"] == 2004).collect();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["src_endpoint"]["ip"], "127.0.0.1");
    // The TLS failure.
    assert!(events.iter().any(|e| e["class_uid"] == 6003 && e["status_code"] == "tls_handshake_failed"));
    // Every event id is unique.
    let ids: HashSet<&str> = events.iter().map(|e| e["metadata"]["uid"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len());

    // No secret in any event or log line.
    let secrets = [
        good.key.as_str(),
        blocked.key.as_str(),
        limited.key.as_str(),
        wrong_key.as_str(),
        bogus_token,
        "forged-stamp-value",
        session.trim_start_matches("Bearer "),
        basic.trim_start_matches("Basic "),
    ];
    let audit_text = std::fs::read_to_string(&log).unwrap();
    let log_text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(!log_text.is_empty(), "logs were captured");
    for secret in secrets {
        assert!(!audit_text.contains(secret), "a secret is in the audit log: {secret}");
        assert!(!log_text.contains(secret), "a secret is in the logs: {secret}");
    }
    // The stamp the gateway minted is a secret too (a bearer assertion for the engine).
    assert!(!audit_text.contains("eyJ"), "something token-shaped is in the audit log");
}

/// A webhook receiver that can be stopped and started again on the same port; it records
/// every event it is sent and the Authorization header.
struct Receiver {
    addr: SocketAddr,
    /// Whole events (small runs); the big run keeps only request ids, to measure the gateway.
    keep_events: bool,
    events: Arc<Mutex<Vec<Value>>>,
    ids: Arc<Mutex<HashMap<String, usize>>>,
    authorization: Arc<Mutex<Option<String>>>,
    tasks: Option<tokio::task::JoinSet<()>>,
    connections: Option<Arc<Mutex<tokio::task::JoinSet<()>>>>,
}

impl Receiver {
    async fn start(addr: SocketAddr, keep_events: bool) -> Self {
        let mut receiver = Self {
            addr,
            keep_events,
            events: Arc::default(),
            ids: Arc::default(),
            authorization: Arc::default(),
            tasks: None,
            connections: None,
        };
        receiver.resume().await;
        receiver
    }

    async fn resume(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let (events, authorization, ids) =
            (Arc::clone(&self.events), Arc::clone(&self.authorization), Arc::clone(&self.ids));
        let keep = self.keep_events;
        let mut tasks = tokio::task::JoinSet::new();
        let connections = Arc::new(Mutex::new(tokio::task::JoinSet::new()));
        let held = Arc::clone(&connections);
        tasks.spawn(async move {
            let connections = held;
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (events, authorization, ids) = (Arc::clone(&events), Arc::clone(&authorization), Arc::clone(&ids));
                let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let (events, authorization, ids) =
                        (Arc::clone(&events), Arc::clone(&authorization), Arc::clone(&ids));
                    async move {
                        if let Some(value) = request.headers().get("authorization") {
                            *authorization.lock().unwrap() = Some(value.to_str().unwrap().to_string());
                        }
                        let splunk = request.headers().contains_key("authorization")
                            && request.headers()["authorization"].to_str().unwrap().starts_with("Splunk ");
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let received: Vec<Value> = if splunk {
                            // HEC: concatenated {"event": ...} objects.
                            serde_json::Deserializer::from_slice(&body)
                                .into_iter::<Value>()
                                .map(|v| v.unwrap()["event"].clone())
                                .collect()
                        } else {
                            serde_json::from_slice(&body).unwrap()
                        };
                        let mut ids = ids.lock().unwrap();
                        for event in received.iter().filter(|e| e["class_uid"] == 6003) {
                            if let Some(id) = event["metadata"]["correlation_uid"].as_str() {
                                *ids.entry(id.to_string()).or_default() += 1;
                            }
                        }
                        if keep {
                            events.lock().unwrap().extend(received);
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(b"{}"))))
                    }
                });
                connections.lock().unwrap().spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        self.tasks = Some(tasks);
        self.connections = Some(connections);
    }

    /// Stops listening and closes every open connection.
    fn stop(&mut self) {
        self.tasks = None;
        if let Some(connections) = self.connections.take() {
            connections.lock().unwrap().abort_all();
        }
    }

    fn request_ids(&self) -> HashMap<String, usize> {
        self.ids.lock().unwrap().clone()
    }
}

/// ADBC's normal use (connect, query, close, which sends CloseSession) through the gateway:
/// no refusal, and 25 sessions from one address raise no brute-force finding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_adbc_sessions_are_served_and_raise_no_finding() {
    let (stack, key, _dir, log_path) = stack_with_an_acme_key(|audit| {
        audit.finding = FindingConfig { threshold: 3, window_secs: 60 };
        // Every call an event: this test follows the bookkeeping calls too.
        audit.session_bookkeeping = SessionBookkeeping::Events;
    })
    .await;
    let script = r#"
import os, adbc_driver_flightsql.dbapi as f
kw = {"adbc.flight.sql.client_option.tls_root_certs": open(os.environ["CA_FILE"]).read(),
      "adbc.flight.sql.rpc.call_header.x-api-key": os.environ["API_KEY"]}
for i in range(25):
    with f.connect(os.environ["FLIGHT_URI"], db_kwargs=kw, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM acme.customers")
        assert cur.fetch_arrow_table().to_pylist() == [{"n": 3}]
with f.connect(os.environ["FLIGHT_URI"], db_kwargs=kw, autocommit=True) as conn, conn.cursor() as cur:
    # A prepared statement: CreatePreparedStatement, DoPut (bind), GetFlightInfo, DoGet.
    cur.execute("SELECT name FROM acme.customers WHERE customer_id = $1", parameters=(1,))
    cur.fetchall()
    try:
        cur.execute("SELECT nosuchcol FROM acme.customers")
        cur.fetchall()
    except Exception:
        pass
    else:
        raise AssertionError("a typo ran")
print("25 sessions")
"#;
    run_python(&stack, &key.key, script, "the ADBC sessions").await;
    // Requests without any credential (a probe, a misconfigured client) are not probing either.
    for _ in 0..4 {
        let reply =
            stack.client(None).request(stack.gateway.api_addr, "POST", "/v1/sql", &[], "SELECT 1").await.unwrap();
        assert_eq!(reply.status, 401);
    }
    wait_for("the CloseSession and 401 events", || {
        let events = read_events(&log_path);
        events.iter().filter(|e| e["api"]["operation"] == "DoAction CloseSession").count() >= 25
            && events.iter().filter(|e| e["http_response"]["code"] == 401).count() >= 4
    })
    .await;
    let events = read_events(&log_path);
    let refused: Vec<_> =
        events.iter().filter(|e| e["status"] == "Failure" && e["api"]["service"]["name"] == "flight").collect();
    let refused: Vec<_> =
        refused.into_iter().filter(|e| e["status_detail"].as_str().is_none_or(|d| !d.contains("nosuchcol"))).collect();
    assert!(refused.is_empty(), "ordinary ADBC calls were refused: {refused:?}");
    assert!(!events.iter().any(|e| e["class_uid"] == 2004), "a finding for ordinary sessions");
    // The engine's own error is named in the event (the typo's message, with audit.sql full).
    let typo = events
        .iter()
        .find(|e| e["status_detail"].as_str().is_some_and(|d| d.contains("nosuchcol")))
        .unwrap_or_else(|| panic!("no event names the engine's error: {events:?}"));
    let operation = typo["api"]["operation"].as_str().unwrap();
    assert!(["GetFlightInfo", "DoAction CreatePreparedStatement"].contains(&operation), "{typo}");
    // A DoAction's event names its action (from the closed set the gateway passes).
    assert!(events.iter().any(|e| e["api"]["operation"] == "DoAction CreatePreparedStatement"
        && e["unmapped"]["sql"].as_str().is_some_and(|s| s.contains("customer_id = $1"))));
    assert_eq!(typo["unmapped"]["engine_error_code"], "invalid_argument");
    // Every DoGet carries, as its correlation id, the request id of the call that planned it
    // (GetFlightInfo, or for a prepared statement the CreatePreparedStatement before that),
    // and the datasets that call was authorized on.
    let planners: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| {
            e["api"]["operation"] == "GetFlightInfo"
                || e["api"]["operation"].as_str().is_some_and(|o| o.starts_with("DoAction "))
        })
        .filter_map(|e| e["http_request"]["uid"].as_str())
        .collect();
    let gets: Vec<&Value> = events.iter().filter(|e| e["api"]["operation"] == "DoGet").collect();
    for get in &gets {
        let correlation = get["metadata"]["correlation_uid"].as_str().unwrap();
        assert!(planners.contains(correlation) && correlation != get["http_request"]["uid"], "{get}");
    }
    // One prepared statement's calls (create, bind, execute, fetch, close) share one
    // correlation id: the create's request id, not a chain of planners.
    let created = events
        .iter()
        .find(|e| {
            e["api"]["operation"] == "DoAction CreatePreparedStatement"
                && e["unmapped"]["sql"].as_str().is_some_and(|s| s.contains("customer_id = $1"))
        })
        .unwrap();
    let root = created["http_request"]["uid"].as_str().unwrap();
    let mut operations: Vec<&str> = events
        .iter()
        .filter(|e| e["metadata"]["correlation_uid"] == root && e["http_request"]["uid"] != root)
        .filter_map(|e| e["api"]["operation"].as_str())
        .collect();
    operations.sort_unstable();
    operations.dedup();
    for expected in ["DoAction ClosePreparedStatement", "DoGet", "DoPut", "GetFlightInfo"] {
        assert!(operations.contains(&expected), "{expected} not correlated with {root}: {operations:?}");
    }
    let with_rows = gets.iter().filter(|e| e["resources"][0]["name"] == "datafusion.acme.customers").count();
    assert!(with_rows >= 26, "{with_rows} of {} DoGet events name the dataset their statement read", gets.len());
}

/// An ADBC connect, one query and close, with `audit.session_bookkeeping` at its default
/// (`counted`): the sign-in and the query's three calls are events; the server's SqlInfo,
/// ClosePreparedStatement and CloseSession are counted in a metric instead. A bookkeeping
/// call that fails is an event all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adbc_query_is_four_events_and_its_session_bookkeeping_is_counted() {
    let (stack, key, _dir, log_path) = stack_with_an_acme_key(|_| {}).await;
    let counted = |page: &str, operation: &str| -> u64 {
        let series = format!("gateway_audit_bookkeeping_total{{operation=\"{operation}\"}} ");
        page.lines().find_map(|l| l.strip_prefix(series.as_str())).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    let operations =
        ["GetFlightInfo GetSqlInfo", "DoGet GetSqlInfo", "DoAction ClosePreparedStatement", "DoAction CloseSession"];
    let before = common::metrics_text(stack.gateway.health_addr).await;
    let script = r#"
import os, adbc_driver_flightsql.dbapi as f, pyarrow.flight as flight
kw = {"adbc.flight.sql.client_option.tls_root_certs": open(os.environ["CA_FILE"]).read(),
      "adbc.flight.sql.rpc.call_header.x-api-key": os.environ["API_KEY"]}
with f.connect(os.environ["FLIGHT_URI"], db_kwargs=kw, autocommit=True) as conn, conn.cursor() as cur:
    cur.execute("SELECT count(*) AS n FROM acme.customers")
    assert cur.fetch_arrow_table().to_pylist() == [{"n": 3}]
# A bookkeeping call that fails (no such prepared statement): still an event.
client = flight.connect(os.environ["FLIGHT_URI"], tls_root_certs=open(os.environ["CA_FILE"]).read())
options = flight.FlightCallOptions(headers=[(b"x-api-key", os.environ["API_KEY"].encode())])
try:
    list(client.do_action(flight.Action("ClosePreparedStatement", b"not a handle"), options=options))
except Exception as error:
    assert "not a Flight SQL message" in str(error), error
else:
    raise AssertionError("closing nothing succeeded")
print("one query")
"#;
    run_python(&stack, &key.key, script, "the ADBC query").await;
    wait_for("the failed close's event", || {
        read_events(&log_path).iter().any(|e| e["api"]["operation"] == "DoAction ClosePreparedStatement")
    })
    .await;
    let events = read_events(&log_path);
    let mut seen: Vec<String> = events
        .iter()
        .map(|e| match e["api"]["operation"].as_str() {
            Some(operation) => format!("{operation} {}", e["status"].as_str().unwrap_or("")),
            None => e["class_name"].as_str().unwrap_or("").to_string(),
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            "Authentication",
            "DoAction ClosePreparedStatement Failure",
            "DoAction CreatePreparedStatement Success",
            "DoGet Success",
            "GetFlightInfo Success",
        ],
        "{events:?}"
    );
    let after = common::metrics_text(stack.gateway.health_addr).await;
    for operation in operations {
        assert!(counted(&after, operation) > counted(&before, operation), "{operation} not counted:\n{after}");
    }
}

/// A stack with one API key of tenant acme and an audit file (its path), `adjust`ed.
async fn stack_with_an_acme_key(
    adjust: impl FnOnce(&mut AuditConfig),
) -> (Stack, apikeys::NewKey, tempfile::TempDir, std::path::PathBuf) {
    let key = apikeys::generate().unwrap();
    let keys = vec![key_entry("reader", &key.hash, Some("acme"))];
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("audit.log");
    let mut audit = AuditConfig {
        sinks: vec![SinkConfig::File {
            path: log_path.clone().into(),
            max_bytes: 1 << 30,
            keep: 1,
            fsync: FsyncPolicy::Batch,
        }],
        ..Default::default()
    };
    adjust(&mut audit);
    let stack = Stack::start_with(ClientAuth::Optional, move |c| {
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys });
        c.audit = audit;
    })
    .await;
    (stack, key, dir, log_path)
}

/// Runs a Python client `script` against the stack's Flight listener (`FLIGHT_URI`, `CA_FILE`,
/// `API_KEY` in its environment); it must succeed.
async fn run_python(stack: &Stack, api_key: &str, script: &str, what: &str) {
    let output = tokio::process::Command::from(testkit::python_command())
        .args(["-c", script])
        .env("FLIGHT_URI", format!("grpc+tls://localhost:{}", stack.gateway.flight_addr.port()))
        .env("CA_FILE", stack.pki.ca())
        .env("API_KEY", api_key)
        .output()
        .await
        .unwrap();
    testkit::python_stdout(&output, what);
}

fn http_sink(url: String, format: HttpFormat, token: Option<&str>) -> SinkConfig {
    SinkConfig::Http {
        url,
        format,
        token: token.map(Reference::new),
        ca_file: None,
        batch_events: 500,
        max_backoff_secs: 1,
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A keep-alive HTTP/1.1 connection to the gateway.
async fn keep_alive(stack: &Stack) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tls = stack.client(None).connect(stack.gateway.api_addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn http_sink_loses_nothing_through_an_outage_under_20000_requests() {
    let mut receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), false).await;
    let keys: Vec<_> = (0..3).map(|_| apikeys::generate().unwrap()).collect();
    let entries = vec![
        key_entry("reader", &keys[0].hash, None),
        key_entry("blocked", &keys[1].hash, None),
        key_entry("limited", &keys[2].hash, None),
    ];
    let spool = tempfile::tempdir().unwrap();
    let url = format!("http://{}/events", receiver.addr);
    let spool_dir = spool.path().to_path_buf();
    let stack = Stack::start_with(ClientAuth::Optional, move |c| {
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys: entries });
        c.authorization.policies = policies_with_a_forbid(&spool_dir).into();
        c.rate_limits = RateLimitConfig {
            principals: HashMap::from([("limited".into(), QuotaConfig { requests: 1, per_secs: 3600, burst: None })]),
            ..Default::default()
        };
        c.audit = AuditConfig {
            sinks: vec![http_sink(url, HttpFormat::Json, None)],
            spool_dir: Some(spool_dir.join("spool").into()),
            on_failure: OnAuditFailure::Allow,
            ..Default::default()
        };
    })
    .await;
    let wrong = apikeys::generate().unwrap().key;
    // Mixed: allowed (1 in 10: it runs SQL in the engine), denied, unauthenticated, rate-limited.
    let credentials: Vec<String> = vec![keys[1].key.clone(), wrong, keys[2].key.clone()];
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let rss_before = rss_kib();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for phase in 0..3 {
        if phase == 1 {
            receiver.stop();
        }
        if phase == 2 {
            receiver.resume().await;
        }
        let per_phase = [5_000, 10_000, 5_000][phase];
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..4 {
            let mut sender = keep_alive(&stack).await;
            let (credentials, reader, sent) = (credentials.clone(), keys[0].key.clone(), Arc::clone(&sent));
            workers.spawn(async move {
                let mut statuses = HashMap::new();
                for i in 0..per_phase / 4 {
                    let key = if i % 10 == 0 { &reader } else { &credentials[(i + worker) % 3] };
                    let request = http::Request::post("/v1/sql")
                        .header("host", "localhost")
                        .header("x-api-key", key.as_str())
                        .body(Full::new(Bytes::from_static(b"SELECT 1")))
                        .unwrap();
                    sender.ready().await.unwrap();
                    let response = sender.send_request(request).await.unwrap();
                    let id = response.headers()["x-request-id"].to_str().unwrap().to_string();
                    *statuses.entry(response.status().as_u16()).or_insert(0) += 1;
                    response.into_body().collect().await.unwrap();
                    sent.lock().unwrap().push(id);
                }
                statuses
            });
        }
        while let Some(result) = workers.join_next().await {
            for (status, n) in result.unwrap() {
                *statuses.entry(status).or_default() += n;
            }
        }
        if phase == 1 {
            // Everything sent while the receiver was down waits in the spool.
            let backlog: u64 = std::fs::read_dir(spool.path().join("spool/0-http"))
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum();
            assert!(backlog > 1_000_000, "the spool holds the outage's events ({backlog} bytes)");
        }
    }
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 20_000);
    for status in [200, 401, 403, 429] {
        assert!(statuses.get(&status).copied().unwrap_or(0) > 500, "{statuses:?}");
    }
    wait_for("every request's event at the receiver", || {
        let received = receiver.request_ids();
        sent.iter().all(|id| received.contains_key(id))
    })
    .await;
    let received = receiver.request_ids();
    let missing = sent.iter().filter(|id| !received.contains_key(*id)).count();
    assert_eq!(missing, 0);
    // Gateway memory stayed bounded: the backlog lived on disk, not in the process.
    let grown_mib = rss_kib().saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 256, "RSS grew by {grown_mib} MiB");
    let metrics = gateway::internal::render_metrics(0);
    assert!(metrics.contains("gateway_audit_dropped_total 0"), "{metrics}");
}

#[tokio::test]
async fn a_restarted_gateway_delivers_what_it_spooled() {
    // Reserve a port for the receiver, then leave it closed: the sink is down.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let key = apikeys::generate().unwrap();
    let entries = vec![key_entry("reader", &key.hash, None)];
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().join("spool");
    let url = format!("http://{port}/services/collector");
    let stack = Stack::start_with(ClientAuth::Optional, move |c| {
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys: entries });
        c.audit = AuditConfig {
            sinks: vec![http_sink(url, HttpFormat::SplunkHec, Some("hec-token-0123456789"))],
            spool_dir: Some(spool_dir.into()),
            ..Default::default()
        };
    })
    .await;
    let client = stack.client(None);
    let mut sent = Vec::new();
    for _ in 0..50 {
        let reply = client
            .request(stack.gateway.api_addr, "POST", "/v1/sql", &[("x-api-key", &key.key)], "SELECT 1")
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        sent.push(request_id(&reply));
    }
    let Stack { gateway, config, engine, pki } = stack;
    gateway.shutdown().await;
    let spooled: u64 = std::fs::read_dir(spool.path().join("spool/0-http"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(spooled > 0, "the events wait in the spool");

    let receiver = Receiver::start(port, true).await;
    let restarted = gateway::server::start(gateway::server::prepare(config).unwrap()).await.unwrap();
    wait_for("the spooled events", || {
        let received = receiver.request_ids();
        sent.iter().all(|id| received.contains_key(id))
    })
    .await;
    assert_eq!(receiver.authorization.lock().unwrap().as_deref(), Some("Splunk hec-token-0123456789"));
    let events = receiver.events.lock().unwrap().clone();
    assert!(!serde_json::to_string(&events).unwrap().contains("hec-token"));
    restarted.shutdown().await;
    drop((engine, pki));
}

#[tokio::test]
async fn on_failure_deny_refuses_while_the_audit_file_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("audit.log");
    let key = apikeys::generate().unwrap();
    let entries = vec![key_entry("reader", &key.hash, None)];
    let path = log.clone();
    let stack = Stack::start_with(ClientAuth::Optional, move |c| {
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys: entries });
        c.audit = AuditConfig {
            sinks: vec![SinkConfig::File { path: path.into(), max_bytes: 1 << 30, keep: 1, fsync: FsyncPolicy::Batch }],
            on_failure: OnAuditFailure::Deny,
            ..Default::default()
        };
    })
    .await;
    let client = stack.client(None);
    let select = || {
        let (client, key, api) = (&client, key.key.clone(), stack.gateway.api_addr);
        async move { client.request(api, "POST", "/v1/sql", &[("x-api-key", &key)], "SELECT 1").await.unwrap() }
    };
    assert_eq!(select().await.status, 200);
    // The volume goes away: the writer cannot reopen the file.
    std::fs::remove_dir_all(&logs).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let reply = select().await;
        if reply.status == 503 {
            break reply;
        }
        assert!(Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused.json()["error"]["code"], "audit_unavailable");
    let refused_id = request_id(&refused);
    // Back: the gateway serves again, and the events kept in memory are written.
    std::fs::create_dir(&logs).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if select().await.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let path = log.clone();
    wait_for("the refused request's event", || !api_events(&read_events(&path), &refused_id).is_empty()).await;
    let events = read_events(&log);
    assert_eq!(api_events(&events, &refused_id)[0]["unmapped"]["error_code"], "audit_unavailable");
}

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`.
fn parse_rfc5424(message: &str) -> (u16, String, Value) {
    let rest = message.strip_prefix('<').unwrap();
    let (pri, rest) = rest.split_once('>').unwrap();
    let pri: u16 = pri.parse().unwrap();
    assert!(pri <= 191);
    let mut fields = rest.splitn(8, ' ');
    assert_eq!(fields.next(), Some("1"), "version");
    let timestamp = fields.next().unwrap();
    time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("timestamp {timestamp}: {e}"));
    for field in [fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap()] {
        assert!(!field.is_empty() && field.chars().all(|c| c.is_ascii_graphic()), "{field}");
    }
    let msgid = fields.next().unwrap().to_string();
    assert_eq!(fields.next(), Some("-"), "no structured data");
    let json = serde_json::from_str(fields.next().unwrap()).unwrap();
    (pri, msgid, json)
}

/// Reads octet-counted frames (`LEN SP MSG`) until `count` messages arrived.
async fn read_frames(stream: &mut (impl tokio::io::AsyncRead + Unpin), count: usize) -> Vec<String> {
    let mut buffer = Vec::new();
    let mut messages = Vec::new();
    while messages.len() < count {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "the gateway closed the syslog connection");
        buffer.extend_from_slice(&chunk[..n]);
        while let Some(space) = buffer.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buffer[..space]).unwrap().parse().unwrap();
            if buffer.len() < space + 1 + len {
                break;
            }
            messages.push(String::from_utf8(buffer[space + 1..space + 1 + len].to_vec()).unwrap());
            buffer.drain(..space + 1 + len);
        }
    }
    messages
}

#[tokio::test]
async fn syslog_over_tcp_and_tls_is_rfc_5424() {
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let secure = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain_addr, secure_addr) = (plain.local_addr().unwrap(), secure.local_addr().unwrap());
    let key = apikeys::generate().unwrap();
    let entries = vec![key_entry("reader", &key.hash, Some("acme"))];
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().to_path_buf();
    let stack = Stack::start_with(ClientAuth::Optional, move |c| {
        let ca = c.tls.client_ca_file.clone();
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys: entries });
        c.audit = AuditConfig {
            sinks: vec![
                SinkConfig::Syslog {
                    address: plain_addr.to_string(),
                    tls_ca_file: None,
                    tls_server_name: None,
                    facility: 13,
                    app_name: "portcullis".into(),
                },
                SinkConfig::Syslog {
                    address: secure_addr.to_string(),
                    tls_ca_file: ca,
                    tls_server_name: Some("localhost".into()),
                    facility: 10,
                    app_name: "portcullis".into(),
                },
            ],
            spool_dir: Some(spool_dir.into()),
            ..Default::default()
        };
    })
    .await;
    let client = stack.client(None);
    let ok = client
        .request(stack.gateway.api_addr, "POST", "/v1/sql", &[("x-api-key", &key.key)], "SELECT 1")
        .await
        .unwrap();
    let refused = client.request(stack.gateway.api_addr, "POST", "/v1/sql", &[], "SELECT 1").await.unwrap();
    assert_eq!((ok.status, refused.status), (200, 401));

    // Plain TCP: sign-in + two API Activity events + the failed sign-in.
    let (mut tcp, _) = plain.accept().await.unwrap();
    let messages = read_frames(&mut tcp, 4).await;
    let parsed: Vec<_> = messages.iter().map(|m| parse_rfc5424(m)).collect();
    let find =
        |id: &str| parsed.iter().find(|(_, _, e)| e["metadata"]["correlation_uid"] == id && e["class_uid"] == 6003);
    let (pri, msgid, _) = find(&request_id(&ok)).unwrap();
    assert_eq!((*pri, msgid.as_str()), (13 * 8 + 6, "api_activity"));
    let (pri, _, event) = find(&request_id(&refused)).unwrap();
    assert_eq!(*pri, 13 * 8 + 4, "a refusal is a warning");
    assert_eq!(event["http_response"]["code"], 401);
    assert!(parsed.iter().any(|(_, msgid, e)| msgid == "authentication" && e["status"] == "Failure"));

    // TLS (RFC 5425), verified against the CA: the same events.
    let (tcp, _) = secure.accept().await.unwrap();
    let (chain, key) = (stack.pki.leaf("server").0, stack.pki.leaf("server").1);
    use rustls_pki_types::pem::PemObject;
    let chain = rustls_pki_types::CertificateDer::pem_file_iter(chain).unwrap().map(|c| c.unwrap()).collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(gateway::internal::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let mut tls = tokio_rustls::TlsAcceptor::from(Arc::new(config)).accept(tcp).await.unwrap();
    let messages = read_frames(&mut tls, 4).await;
    let (pri, _, _) = parse_rfc5424(&messages[0]);
    assert_eq!(pri / 8, 10, "the configured facility");
    assert!(messages.iter().any(|m| m.contains(&request_id(&ok))));
}

/// A flood of requests without credentials does not flood the audit trail: the first few
/// from the source are audited in full, the rest are counted into one aggregate event per
/// source and interval, and the burst raises a finding.
#[tokio::test]
async fn a_flood_without_credentials_is_counted_not_written_out_and_raises_a_finding() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let log_path = log.clone();
    let stack = Stack::start_with(ClientAuth::Optional, move |c| {
        c.audit = AuditConfig {
            sinks: vec![SinkConfig::file(log_path, FsyncPolicy::Batch)],
            refusal_interval_secs: 1,
            finding: FindingConfig { threshold: 5, window_secs: 60 },
            ..Default::default()
        };
    })
    .await;
    let full = gateway::internal::FULL_UNAUTHENTICATED;
    let flood = 200u64;
    let client = stack.client(None);
    let mut ids = Vec::new();
    for _ in 0..flood {
        let reply = client.request(stack.gateway.api_addr, "GET", "/v1/datasets", &[], "").await.unwrap();
        assert_eq!(reply.status, 401);
        ids.push(request_id(&reply));
    }
    // Written one by one (API Activity), and counted into aggregates (one per source and
    // 1 s interval that went past the first `full`): together, every request.
    let tally = |events: &[Value]| {
        let one_by_one = ids.iter().filter(|id| !api_events(events, id).is_empty()).count() as u64;
        let aggregates: Vec<u64> = events
            .iter()
            .filter(|e| e["status_code"] == "unauthenticated" && e["api"]["operation"] == "request")
            .map(|e| e["count"].as_u64().unwrap())
            .collect();
        (one_by_one, aggregates)
    };
    wait_for("every request written or counted", || {
        let (one_by_one, aggregates) = tally(&read_events(&log));
        one_by_one + aggregates.iter().sum::<u64>() == flood
    })
    .await;
    let events = read_events(&log);
    let (one_by_one, aggregates) = tally(&events);
    assert!(!aggregates.is_empty());
    // At most `full` in full per interval the flood spanned (each such interval has an aggregate).
    assert!(one_by_one <= full * (aggregates.len() as u64 + 1), "{one_by_one} written one by one");
    assert!(one_by_one < flood / 4, "{one_by_one} of {flood} written one by one");
    let failed_signins = events.iter().filter(|e| e["class_uid"] == 3002 && e["status"] == "Failure").count() as u64;
    assert_eq!(failed_signins, one_by_one);
    // 200 without credentials is over 10 × the finding threshold of 5: one finding.
    let findings: Vec<_> = events.iter().filter(|e| e["class_uid"] == 2004).collect();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(events.len() as u64, 2 * one_by_one + aggregates.len() as u64 + 1, "nothing else was written");
}
