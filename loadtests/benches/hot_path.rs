//! The gateway's per-request hot path without the network (`cargo bench -p loadtests --bench
//! hot_path`): sanitize → authenticate (API key) → authorize (decision cache) → stamp, as one
//! request of `POST /v1/sql` goes through them; and the audit event of that request turned
//! into its JSON line (on the audit writer's thread in the gateway).
//!
//! Run by `loadtests/hot-path-instructions.sh` under callgrind with `HOT_PATH_ITERATIONS=N`
//! instead of criterion: instructions per request, repeatable on a noisy machine, so a
//! regression shows without a load run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)] // a benchmark with a broken setup should stop loudly

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use futures::FutureExt;
use gateway::config::{ApiKeyEntry, ApiKeysConfig, AuthorizationConfig, Config, SqlInAudit, StampConfig, TlsConfig};
use gateway::internal::Formatter;
use gateway::internal::{ApiRecord, Authorization, Decision, Record};
use gateway::internal::{Authenticator, ListenerAuth, apikeys};
use gateway::internal::{Authorizer, RequestFacts, Verdict, sql};
use http::{HeaderMap, HeaderValue, Method, Uri};
use identity::{Principal, StampIssuer, StampSigner};

const SQL: &str = "SELECT order_id, amount FROM acme.orders WHERE amount > 50";
const NOW: u64 = 1_795_000_000;

struct HotPath {
    auth: Authenticator,
    listener: ListenerAuth,
    authz: Authorizer,
    issuer: StampIssuer,
    /// The request's headers as a client sends them.
    headers: HeaderMap,
    peer: SocketAddr,
}

impl HotPath {
    fn new() -> Self {
        let key = apikeys::generate().unwrap();
        let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let mut config = Config::new(TlsConfig::default(), StampConfig::default(), AuthorizationConfig::new(policies));
        config.auth.api_keys = Some(ApiKeysConfig {
            file: None,
            keys: vec![ApiKeyEntry {
                name: "dev-acme".into(),
                hash: key.hash.clone(),
                groups: vec!["acme".into(), "analysts".into()],
                tenant: Some("acme".into()),
                expires: None,
            }],
        });
        let listener = ListenerAuth::from_config(&config.api, &config, "api").unwrap();
        let pair = identity::generate_stamp_keypair().unwrap();
        let signer = StampSigner::from_pem(pair.private_pkcs8_pem.as_bytes(), "portcullis-engine").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:8443"));
        headers.insert("user-agent", HeaderValue::from_static("wrk"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.insert("content-length", HeaderValue::from_static("57"));
        headers.insert("x-api-key", HeaderValue::from_str(&key.key).unwrap());
        Self {
            auth: Authenticator::from_config(&config).unwrap(),
            listener,
            authz: Authorizer::load(&config.authorization).unwrap(),
            issuer: StampIssuer::new(signer, 60, 1000),
            headers,
            peer: SocketAddr::from(([127, 0, 0, 1], 40_000)),
        }
    }

    /// One request through the stages; returns the stamp header value.
    fn request(&self) -> HeaderValue {
        let mut headers = self.headers.clone();
        let _request_id = gateway::internal::sanitize(&mut headers, self.peer);
        // Nothing on this path awaits (keys are loaded): poll once.
        let principal = self.auth.authenticate(&self.listener, &headers, None).now_or_never().unwrap().unwrap();
        let verdict = self.verdict(&principal);
        let Ok(allowed) = &verdict.outcome else { panic!("refused") };
        let stamp =
            self.issuer.stamp_for_at(&principal, &allowed.policy, &allowed.scope, &allowed.data, &None, NOW).unwrap();
        HeaderValue::from_str(&stamp).unwrap()
    }

    /// The authorize stage's verdict for `SQL` by `principal` (cached after the first).
    fn verdict(&self, principal: &Principal) -> Arc<Verdict> {
        let facts = RequestFacts {
            principal,
            source_ip: self.peer.ip(),
            client_cert: false,
            method: "POST",
            path: "/v1/sql",
            now: NOW,
        };
        let defaults = self.authz.defaults();
        self.authz.authorize_request(&facts, SQL.as_bytes(), |payload| {
            Ok(sql::analyze(std::str::from_utf8(payload).unwrap(), defaults)?)
        })
    }

    /// The audit record the pipeline builds for that request.
    fn record(&self) -> Record {
        let principal = self.auth.authenticate(&self.listener, &self.headers, None).now_or_never().unwrap().unwrap();
        let verdict = self.verdict(&principal);
        Record::Api(Box::new(ApiRecord {
            time_ms: 1_795_000_000_000,
            request_id: HeaderValue::from_static("3c1bcc88-5e81-4872-9b36-01f9b702ba92"),
            listener: "api",
            peer: self.peer,
            method: Method::POST,
            uri: Uri::from_static("/v1/sql"),
            rpc: None,
            principal: Some(principal),
            sql: Some(Bytes::from_static(SQL.as_bytes())),
            actions: vec!["query", "select"],
            datasets: vec!["datafusion.acme.orders".into()],
            decision: Decision::Allowed,
            policies: vec!["baseline-endpoints".into(), "tenant-reads-own-schema".into()],
            authorization: Some(Authorization { now: NOW, client_cert: false, verdict }),
            status: 200,
            grpc_status: None,
            error: None,
            upstream_error: None,
            planned_by: None,
            // What the engine reports for that statement.
            access: Some(HeaderValue::from_static(
                r#"{"read":[{"dataset":"datafusion.acme.orders","columns":["amount","tenant"]}],"base":[{"dataset":"datafusion.demo.orders","columns":["amount","tenant"]}]}"#,
            )),
            rows: Some(1),
            bytes_in: 57,
            bytes_out: 30,
            duration_us: 130,
            bookkeeping: false,
            limits: None,
        }))
    }
}

fn bench(c: &mut Criterion) {
    let path = HotPath::new();
    path.request();
    c.bench_function("hot path: sanitize → API key → authorize (cached) → stamp", |b| {
        b.iter(|| black_box(path.request()))
    });
    let record = path.record();
    let mut formatter = Formatter::new(SqlInAudit::Full, "0.1.0");
    let mut line = Vec::with_capacity(2048);
    c.bench_function("audit: one API Activity event as its JSON line", |b| {
        b.iter(|| {
            line.clear();
            formatter.write_line(black_box(&record), &mut line);
            black_box(line.len())
        })
    });
}

criterion_group!(benches, bench);

/// With `HOT_PATH_ITERATIONS=N` set: N requests and N audit lines, no criterion, for an
/// instruction count (callgrind) that the script divides by N.
fn main() {
    if let Some(n) = std::env::var("HOT_PATH_ITERATIONS").ok().and_then(|n| n.parse::<usize>().ok()) {
        let path = HotPath::new();
        let what = std::env::var("HOT_PATH_PART").unwrap_or_default();
        if what == "audit" {
            let record = path.record();
            let mut formatter = Formatter::new(SqlInAudit::Full, "0.1.0");
            let mut line = Vec::with_capacity(2048);
            for _ in 0..n {
                line.clear();
                formatter.write_line(black_box(&record), &mut line);
                black_box(line.len());
            }
        } else {
            for _ in 0..n {
                black_box(path.request());
            }
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
