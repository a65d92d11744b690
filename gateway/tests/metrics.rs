//! `/metrics` on the health listener: valid Prometheus text with the series the gateway's
//! stages record, after a mix of allowed, denied, unauthenticated and rate-limited requests.
// Test code: a failed unwrap, index or panic is a failed test; helpers are `pub` for the
// modules that share them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, unreachable_pub)]

#[path = "integration/common/mod.rs"]
mod common;

use std::collections::HashMap;

use common::{Stack, shipped_policies};
use gateway::config::{
    ApiKeyEntry, ApiKeysConfig, AuditConfig, ClientAuth, FsyncPolicy, QuotaConfig, RateLimitConfig, SinkConfig,
};
use gateway::internal::apikeys;
use http_body_util::{BodyExt, Empty};

async fn scrape(addr: std::net::SocketAddr) -> (String, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let request =
        http::Request::get("/metrics").header("host", "localhost").body(Empty::<bytes::Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (content_type, String::from_utf8(body.to_vec()).unwrap())
}

/// Parses the text format strictly enough to catch a malformed exposition: every sample's
/// family is declared by a TYPE line first, labels are `name="value"` pairs, values are numbers.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut families: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            families.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        value.parse::<f64>().unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| families.get(*f).is_some_and(|k| k == "histogram")))
            .unwrap_or(name);
        assert!(families.contains_key(family), "sample before its TYPE: {line}");
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}')).unwrap();
            for pair in inner.split("\",") {
                let (key, value) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
                assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
                assert!(!value.trim_end_matches('"').contains('"') || value.contains("\\\""), "{line}");
            }
        }
        samples.insert(series.to_string(), value.parse().unwrap());
    }
    samples
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_every_stage_recorded() {
    let key = apikeys::generate().unwrap();
    let hash = key.hash.clone();
    let audit_dir = tempfile::tempdir().unwrap();
    let audit_log = audit_dir.path().join("audit.log");
    let stack = Stack::start_with(ClientAuth::Optional, move |c| {
        c.audit = AuditConfig {
            sinks: vec![SinkConfig::File {
                path: audit_log.into(),
                max_bytes: 1 << 30,
                keep: 1,
                fsync: FsyncPolicy::Never,
            }],
            ..Default::default()
        };
        c.auth.api_keys = Some(ApiKeysConfig {
            file: None,
            keys: vec![ApiKeyEntry {
                name: "dev-acme".into(),
                hash,
                groups: vec!["acme".into()],
                tenant: Some("acme".into()),
                expires: None,
            }],
        });
        c.authorization.policies = shipped_policies().into();
        c.rate_limits = RateLimitConfig {
            per_principal: Some(QuotaConfig { requests: 3, per_secs: 60, burst: None }),
            ..Default::default()
        };
    })
    .await;
    let client = stack.client(None);
    let api = stack.gateway.api_addr;
    let sql = |key: &str, sql: &str| {
        let (client, key, sql) = (&client, key.to_string(), sql.to_string());
        async move { client.request(api, "POST", "/v1/sql", &[("x-api-key", &key)], &sql).await.unwrap().status }
    };
    let wrong = apikeys::generate().unwrap().key;
    let statuses = [
        sql(&key.key, "SELECT count(*) FROM acme.orders").await,
        sql(&key.key, "SELECT * FROM globex.orders").await,
        sql(&wrong, "SELECT 1").await,
        sql(&key.key, "SELECT 1").await,
        sql(&key.key, "SELECT 1").await,
    ];
    assert_eq!(statuses, [200, 403, 401, 200, 429]);
    // Handshakes that fail: a connection closed before its ClientHello, and a client
    // certificate from a CA the gateway does not trust.
    drop(tokio::net::TcpStream::connect(api).await.unwrap());
    let foreign = common::Pki::new();
    let mut stranger = stack.client(None);
    stranger.config = common::client_config(&stack.pki.ca(), Some(foreign.leaf("workload")), &[b"http/1.1"]);
    assert!(stranger.request(api, "POST", "/v1/sql", &[], "SELECT 1").await.is_err());
    // A Flight call refused in a trailers-only answer: its gRPC status is counted.
    let head = stack.grpc_head("ListFlights", &[], bytes::Bytes::from_static(&[0, 0, 0, 0, 0])).await;
    assert_eq!(head["grpc-status"], "16");

    // Audit events are written by the writer thread: wait until the five requests' are.
    let file_sink = format!(
        "gateway_audit_events_total{{sink=\"file:{}\",outcome=\"written\"}}",
        audit_dir.path().join("audit.log").display()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (content_type, text) = loop {
        let (content_type, text) = scrape(stack.gateway.health_addr).await;
        let samples = parse(&text);
        let written = samples.get(&file_sink).copied().unwrap_or(0.0);
        let queued = samples.get("gateway_audit_queue_depth").copied().unwrap_or(-1.0);
        // Five API Activity events, at least two sign-ins (one success, one failure), and
        // nothing left in the queue (the TLS failures' events may still be on their way).
        if written >= 7.0 && queued == 0.0 {
            break (content_type, text);
        }
        assert!(std::time::Instant::now() < deadline, "audit events not written: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let samples = parse(&text);
    let get = |series: &str| samples.get(series).copied().unwrap_or_else(|| panic!("missing {series} in\n{text}"));
    for status in ["200", "401", "403", "429"] {
        let series = format!("gateway_requests_total{{listener=\"api\",route=\"/v1/sql\",status=\"{status}\"}}");
        assert!(get(&series) >= 1.0, "{series}");
    }
    assert_eq!(get("gateway_requests_total{listener=\"api\",route=\"/v1/sql\",status=\"200\"}"), 2.0);
    let build =
        format!("gateway_build_info{{version=\"{}\",crypto_provider=\"aws-lc-rs\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(get(&build), 1.0);
    assert_eq!(get("gateway_grpc_responses_total{route=\"ListFlights\",grpc_status=\"unauthenticated\"}"), 1.0);
    assert!(get("gateway_connections_total{listener=\"api\"}") >= 7.0);
    assert!(get("gateway_connections_active{listener=\"api\"}") >= 0.0);
    assert_eq!(get("gateway_tls_handshake_failures_total{listener=\"api\",reason=\"bad_certificate\"}"), 1.0);
    assert_eq!(get("gateway_tls_handshake_failures_total{listener=\"api\",reason=\"connection_closed\"}"), 1.0);
    assert_eq!(get("gateway_auth_failures_total{reason=\"invalid_api_key\"}"), 1.0);
    assert_eq!(get("gateway_authz_decisions_total{result=\"allowed\"}"), 2.0);
    assert_eq!(get("gateway_authz_decisions_total{result=\"denied\"}"), 1.0);
    assert_eq!(get("gateway_rate_limited_total{limiter=\"principal\"}"), 1.0);
    assert_eq!(get("gateway_upstream_latency_seconds_count{listener=\"api\"}"), 2.0);
    assert_eq!(get("gateway_upstream_latency_seconds_bucket{listener=\"api\",le=\"+Inf\"}"), 2.0);
    let expiry = get("gateway_certificate_expiry_seconds{certificate=\"server\"}");
    assert!(expiry > 25.0 * 86_400.0 && expiry <= 30.0 * 86_400.0, "the test certificate lives 30 days: {expiry}");
    assert!(get("gateway_certificate_expiry_seconds{certificate=\"client_ca[0]\"}") > 0.0);
    assert_eq!(get("gateway_audit_dropped_total"), 0.0);
    assert_eq!(get("gateway_audit_queue_depth"), 0.0);
    assert_eq!(get("gateway_audit_queue_full_total"), 0.0);
    assert!(text.contains("# TYPE gateway_audit_spool_bytes gauge"));
    for family in ["gateway_jwks_refreshes_total", "gateway_reloads_total"] {
        assert!(text.contains(&format!("# TYPE {family} counter")), "{family}");
    }
}

/// The sample alert rules parse, and every series they use is one the gateway exports.
#[test]
fn alert_rules_use_exported_series() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../compose/helm/portcullis/files/prometheus-alerts.yaml");
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exported = gateway::internal::render_metrics(0);
    let mut alerts = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let (alert, expr) = (rule["alert"].as_str().unwrap(), rule["expr"].as_str().unwrap());
            alerts.push(alert.to_string());
            let names =
                expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("gateway_"));
            for name in names {
                assert!(exported.contains(&format!("# TYPE {name} ")), "{alert} uses {name}, which is not exported");
            }
        }
    }
    for wanted in
        ["CertificateExpiringSoon", "RefusalBurst", "AuditSpoolGrowing", "AuditEventsDropped", "UpstreamErrors"]
    {
        assert!(alerts.iter().any(|a| a.ends_with(wanted)), "{wanted} missing");
    }
}
