//! The authorize stage's cost (`cargo bench -p loadtests --bench authz`): the SQL table
//! extraction, Cedar decisions (endpoint plus datasets) with the shipped policy set and with
//! 100 and 1,000 generated policies, and the stage as a request sees it when it repeats
//! within the second (decision cache). Policies are parsed once, at load; nothing here
//! parses a policy per request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)] // a benchmark with a broken setup should stop loudly

use std::hint::black_box;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::config::AuthorizationConfig;
use gateway::internal::{Authorizer, NameDefaults, RequestFacts, sql};
use identity::{AuthMethod, Principal, PrincipalKind};

const SIMPLE: &str = "SELECT order_id, amount FROM acme.orders WHERE amount > 50";
const COMPLEX: &str = "WITH big AS (SELECT customer_id, sum(amount) AS total FROM acme.orders GROUP BY customer_id) \
    SELECT c.name, b.total FROM acme.customers c JOIN big b ON c.customer_id = b.customer_id \
    WHERE b.total > (SELECT avg(amount) FROM acme.orders) UNION ALL SELECT name, 0 FROM my_customers";

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// The shipped set plus `extra` generated per-tenant policies (half permits, half forbids).
fn with_generated(dir: &Path, extra: usize) -> PathBuf {
    for entry in std::fs::read_dir(shipped()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let mut text = String::new();
    for i in 0..extra {
        if i % 2 == 0 {
            text.push_str(&format!(
                "permit(principal in Group::\"tenant-{i}\", action == Action::\"select\", resource == Dataset::\"datafusion.t{i}.orders\");\n"
            ));
        } else {
            text.push_str(&format!(
                "forbid(principal in Group::\"tenant-{i}\", action == Action::\"select\", resource) when {{ context.table == \"secret_{i}\" }};\n"
            ));
        }
    }
    std::fs::write(dir.join("90-generated.cedar"), text).unwrap();
    dir.to_path_buf()
}

fn bench(c: &mut Criterion) {
    let defaults = NameDefaults { catalog: "datafusion".into(), schema: "public".into() };
    c.bench_function("sql: tables of a simple SELECT", |b| {
        b.iter(|| sql::analyze(black_box(SIMPLE), &defaults).unwrap())
    });
    c.bench_function("sql: tables of a CTE + join + subquery + UNION", |b| {
        b.iter(|| sql::analyze(black_box(COMPLEX), &defaults).unwrap())
    });

    let mut principal = Principal::new(PrincipalKind::Service, "dev-acme", "dev-acme", AuthMethod::ApiKey);
    // Two of the generated policies name groups of this principal (they stay in its slice).
    principal.groups = vec!["acme".into(), "tenant-0".into(), "tenant-1".into()];
    principal.tenant = Some("acme".into());
    let facts = RequestFacts {
        principal: &principal,
        source_ip: IpAddr::from([127, 0, 0, 1]),
        client_cert: false,
        method: "POST",
        path: "/v1/sql",
        now: 1_795_000_000,
    };
    let simple = sql::analyze(SIMPLE, &defaults).unwrap();
    let complex = sql::analyze(COMPLEX, &defaults).unwrap();
    let dirs = tempfile::tempdir().unwrap();
    for (label, extra) in [("shipped set", 0usize), ("shipped + 100", 100), ("shipped + 1000", 1000)] {
        let dir = dirs.path().join(format!("p{extra}"));
        std::fs::create_dir_all(&dir).unwrap();
        let authz = Authorizer::load(&AuthorizationConfig::new(with_generated(&dir, extra))).unwrap();
        cases(c, label, &authz, &facts, &simple, &complex, &defaults);
    }
    // A shadow set beside the shipped one (the same set, so both decide every ask): what
    // `authorization.shadow` adds to a call.
    let authz = Authorizer::load(&AuthorizationConfig::new(shipped())).unwrap().with_shadow(&shipped()).unwrap();
    cases(c, "shipped set + shadow", &authz, &facts, &simple, &complex, &defaults);
}

fn cases(
    c: &mut Criterion,
    label: &str,
    authz: &Authorizer,
    facts: &RequestFacts<'_>,
    simple: &[sql::StatementAccess],
    complex: &[sql::StatementAccess],
    defaults: &NameDefaults,
) {
    authz.authorize(facts, simple).outcome.unwrap();
    c.bench_function(&format!("cedar, {label}: endpoint + 1 dataset"), |b| {
        b.iter(|| authz.authorize(black_box(facts), black_box(simple)).outcome.unwrap())
    });
    c.bench_function(&format!("cedar, {label}: endpoint + 3 datasets"), |b| {
        b.iter(|| authz.authorize(black_box(facts), black_box(complex)).outcome.unwrap())
    });
    let classify = |payload: &[u8]| Ok(sql::analyze(std::str::from_utf8(payload).unwrap(), defaults)?);
    c.bench_function(&format!("stage, {label}: repeated request (decision cache)"), |b| {
        b.iter(|| {
            assert!(authz.authorize_request(black_box(facts), black_box(COMPLEX.as_bytes()), classify).outcome.is_ok())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
