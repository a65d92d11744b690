//! `gateway policy replay`'s throughput (`cargo bench -p loadtests --bench replay`): recorded
//! API Activity events decided again against the shipped policy set, on one thread and on
//! every core, and reading the events alone. The events are written by the gateway's own
//! formatter from real verdicts: four callers of two tenants, allowed and refused reads of
//! one to three datasets, 100 calls a second.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)] // a benchmark with a broken setup should stop loudly

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::config::{AuthorizationConfig, SqlInAudit};
use gateway::internal::Formatter;
use gateway::internal::recorded;
use gateway::internal::replay::{self, Window};
use gateway::internal::{ApiRecord, Authorization, Decision, Record};
use gateway::internal::{Authorizer, RequestFacts, sql};
use http::{HeaderValue, Method, Uri};
use identity::{AuthMethod, Principal, PrincipalKind};

const EVENTS: usize = 20_000;
const START: u64 = 1_795_000_000;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn principal(id: &str, tenant: &str) -> Principal {
    let mut p = Principal::new(PrincipalKind::Service, id, id, AuthMethod::ApiKey);
    p.groups = vec![tenant.into()];
    p.tenant = Some(tenant.into());
    p
}

/// `EVENTS` recorded calls, one JSON line each, as the file sink writes them.
fn recorded_events(authz: &Authorizer, path: &Path) {
    let callers =
        [principal("acme-reader", "acme"), principal("globex-reader", "globex"), principal("acme-etl", "acme")];
    let queries = [
        "SELECT * FROM acme.orders WHERE amount > 50",
        "SELECT * FROM globex.orders",
        "SELECT c.name, o.amount FROM acme.customers c JOIN acme.orders o ON c.customer_id = o.customer_id",
        "SELECT * FROM my_orders",
    ];
    let defaults = authz.defaults().clone();
    let mut formatter = Formatter::new(SqlInAudit::Hashed, "bench");
    let mut out = Vec::new();
    for i in 0..EVENTS {
        let principal = &callers[i % callers.len()];
        let query = queries[(i / 3) % queries.len()];
        let now = START + (i / 100) as u64;
        let peer = SocketAddr::from(([10, 0, (i % 7) as u8, 1], 40_000));
        let facts = RequestFacts {
            principal,
            source_ip: IpAddr::from([10, 0, (i % 7) as u8, 1]),
            client_cert: false,
            method: "POST",
            path: "/v1/sql",
            now,
        };
        let accesses = sql::analyze(query, &defaults).unwrap();
        let verdict = authz.authorize(&facts, &accesses);
        let allowed = verdict.outcome.is_ok();
        let record = ApiRecord {
            time_ms: i64::try_from(now * 1000).unwrap(),
            request_id: HeaderValue::from_str(&format!("req-{i}")).unwrap(),
            listener: "api",
            peer,
            method: Method::POST,
            uri: Uri::from_static("/v1/sql"),
            rpc: None,
            principal: Some(Arc::new(principal.clone())),
            sql: Some(bytes::Bytes::from_static(query.as_bytes())),
            actions: vec!["query"],
            datasets: Vec::new(),
            decision: if allowed { Decision::Allowed } else { Decision::Denied },
            policies: verdict.enforced.as_ref().map(|a| a.policies.clone()).unwrap_or_default(),
            authorization: Some(Authorization { now, client_cert: false, verdict: Arc::new(verdict) }),
            status: if allowed { 200 } else { 403 },
            grpc_status: None,
            error: None,
            upstream_error: None,
            planned_by: None,
            access: None,
            rows: None,
            bytes_in: query.len() as u64,
            bytes_out: 300,
            duration_us: 900,
            bookkeeping: false,
            limits: None,
        };
        formatter.write_line(&Record::Api(Box::new(record)), &mut out);
    }
    std::fs::write(path, out).unwrap();
}

fn bench(c: &mut Criterion) {
    let authz = Authorizer::load(&AuthorizationConfig::new(shipped())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    recorded_events(&authz, &file);
    let files = vec![file.clone()];
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let load = |n: usize| -> Vec<Authorizer> {
        (0..n).map(|_| Authorizer::load(&AuthorizationConfig::new(shipped())).unwrap()).collect()
    };
    let check = replay::replay(&load(1), &files, Window::default());
    assert_eq!((check.replayed, check.flipped(), check.problems), (EVENTS as u64, 0, 0));

    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    let lines = std::fs::read(&file).unwrap();
    group.bench_function("read the events only", |b| {
        b.iter(|| {
            let decided = lines
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .filter(|l| matches!(recorded::parse(l), Ok(recorded::Line::Decided(_))))
                .count();
            assert_eq!(decided, EVENTS);
        })
    });
    // A fresh candidate set per run (one per thread), as a real replay starts with empty caches.
    for threads in [1, cores] {
        group.bench_function(format!("decide again, {threads} threads"), |b| {
            b.iter_batched(
                || load(threads),
                |candidates| replay::replay(&candidates, &files, Window::default()),
                criterion::BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
