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
    wide_table(c, &facts, &defaults, dirs.path());
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

/// Row and column policy on a 250-column table, 100 of its columns tagged, with a row
/// filter: `SELECT *` decided uncached (every declared column's `select`, every tagged one's
/// `unmask`, the row filter's partial evaluation) and repeated within the second.
fn wide_table(c: &mut Criterion, facts: &RequestFacts<'_>, defaults: &NameDefaults, dir: &Path) {
    let policies = dir.join("wide");
    std::fs::create_dir_all(&policies).unwrap();
    with_generated(&policies, 0);
    let schema = std::fs::read_to_string(policies.join("schema.cedarschema")).unwrap();
    let schema = schema
        .replace("resource: [Row::demo::customers]", "resource: [Row::demo::customers, Row::sales::wide]")
        + "namespace Row::sales { entity wide = { tenant: String, c000: Long }; }\n";
    std::fs::write(policies.join("schema.cedarschema"), schema).unwrap();
    std::fs::write(
        policies.join("70-wide.cedar"),
        "permit(principal, action == Action::\"select\", resource == Dataset::\"datafusion.sales.wide\");\n\
         permit(principal, action == Action::\"select_row\", resource is Row::sales::wide)\n\
         when { principal has tenant && resource.tenant == principal.tenant && resource.c000 < 1000 };\n",
    )
    .unwrap();
    let mut engine = String::from(
        "datasets:\n  - {name: sales.wide, path: wide.parquet}\ncolumns:\n  sales.wide:\n    tenant: {type: string}\n    c000: {type: long}\n",
    );
    for i in 1..250 {
        let tags = match i % 5 {
            _ if i > 100 => String::new(),
            0 => ", tags: [pii.email]".into(),
            1 => ", tags: [pii.phone]".into(),
            2 => ", tags: [pii.national_id]".into(),
            3 => ", tags: [pii.email, pii.national_id]".into(),
            _ => ", tags: [finance.secret]".into(),
        };
        engine.push_str(&format!("    c{i:03}: {{type: string{tags}}}\n"));
    }
    let engine_config = dir.join("wide-engine.yaml");
    std::fs::write(&engine_config, engine).unwrap();
    let config =
        AuthorizationConfig { engine_config: Some(engine_config.into()), ..AuthorizationConfig::new(policies) };
    let authz = Authorizer::load(&config).unwrap();
    let star = "SELECT * FROM sales.wide";
    let accesses = sql::analyze(star, defaults).unwrap();
    let allowed = authz.authorize(facts, &accesses).outcome.unwrap();
    assert_eq!(allowed.data.len(), 1, "one decision for the table");
    assert_eq!(allowed.data[0].masks.len() + allowed.data[0].unmasked.len(), 100);
    assert!(allowed.data[0].rows.is_some());
    c.bench_function("rows and columns: SELECT * on 250 columns, 100 tagged, row filter (uncached)", |b| {
        b.iter(|| authz.authorize(black_box(facts), black_box(&accesses)).outcome.unwrap())
    });
    let classify = |payload: &[u8]| Ok(sql::analyze(std::str::from_utf8(payload).unwrap(), defaults)?);
    c.bench_function("rows and columns: the same, repeated within the second (decision cache)", |b| {
        b.iter(|| {
            assert!(authz.authorize_request(black_box(facts), black_box(star.as_bytes()), classify).outcome.is_ok())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
