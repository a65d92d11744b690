//! Row filters, masks and column denies, as the gateway signs them, enforced by a real engine
//! and read back like an attacker: every raw value of a masked or denied column, and every
//! filtered row's name, is searched for in every byte of every answer, over HTTP (JSON, CSV,
//! Arrow) and Flight SQL (statements, tickets fetched later, prepared statements).

use crate::common::{TestEngine, dataset, now, test_config, user};
use arrow_flight::sql::client::FlightSqlServiceClient;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::writer::StreamWriter;
use futures::TryStreamExt;
use identity::{ColumnMask, Comparison, DatasetPolicy, Grant, Mask, RowFilter, STAMP_HEADER};
use tonic::transport::Channel;

pub(crate) const CONFIG: &str = "demo_data: true
views:
  - {name: contacts, sql: 'SELECT name, email, phone, tenant FROM demo.customers'}
columns:
  demo.customers:
    customer_id: {type: long}
    tenant: {type: string}
    email: {tags: [pii.email]}
    phone: {tags: [pii.phone]}
    national_id: {tags: [pii.national_id]}
";

/// Every value a masked or denied column holds, and the names of the rows acme's filter hides.
const RAW: &[&str] = &[
    "ada@lovelace.example",
    "grace@hopper.example",
    "alan@turing.example",
    "hank@globex.example",
    "frank@grimes.example",
    "edna@springfield.example",
    "+44 20 7946 0101",
    "+1 202 555 0102",
    "+44 161 496 0103",
    "+1 312 555 0104",
    "+1 415 555 0105",
    "+1 604 555 0106",
    "AB123456C",
    "123-45-6702",
    "CD654321E",
    "987-65-4304",
    "555-12-3405",
    "046-454-286",
    "Hank",
    "Frank",
    "Edna",
];

/// acme's analyst: acme's rows only, emails to their domain, phones to the last four digits,
/// national ids denied.
pub(crate) fn analyst_policy(mask: Mask) -> Vec<DatasetPolicy> {
    vec![DatasetPolicy {
        dataset: dataset("demo.customers"),
        denied: vec!["national_id".into()],
        masks: vec![
            ColumnMask { column: "email".into(), mask },
            ColumnMask { column: "phone".into(), mask: Mask::Last4 },
        ],
        unmasked: vec![],
        rows: Some(RowFilter::IsTrue(Box::new(RowFilter::Compare {
            op: Comparison::Eq,
            left: Box::new(RowFilter::Column("tenant".into())),
            right: Box::new(RowFilter::String("acme".into())),
        }))),
        row_policies: Vec::new(),
    }]
}

pub(crate) fn stamp(engine: &TestEngine, scope: &[&str], data: &[DatasetPolicy]) -> String {
    let scope: Vec<String> = scope.iter().map(|d| dataset(d)).collect();
    let grant = Grant { scope: &scope, data, ..Grant::default() };
    engine.signer.sign_with(&user("alice", &["acme"]), grant, now(), 60).unwrap()
}

fn leaks(bytes: &[u8]) -> Vec<&'static str> {
    RAW.iter().copied().filter(|raw| bytes.windows(raw.len()).any(|w| w == raw.as_bytes())).collect()
}

/// The statement shapes that must not reveal a raw value or a filtered row: each either
/// answers (masked, filtered) or is refused, and neither answer carries a raw value.
const SHAPES: &[&str] = &[
    "SELECT name, email, phone FROM demo.customers",
    "SELECT c.email AS e, c.phone AS p FROM demo.customers AS c",
    "SELECT CAST(email AS VARCHAR) || '!' AS e, substr(phone, 1, 20) AS p FROM demo.customers",
    "SELECT upper(email) AS e, concat(phone, email) AS p FROM demo.customers",
    "WITH c AS (SELECT * FROM demo.customers) SELECT email FROM c",
    "WITH customers AS (SELECT email FROM demo.customers) SELECT * FROM customers",
    "SELECT (SELECT max(email) FROM demo.customers) AS e",
    "SELECT email FROM (SELECT email, phone FROM demo.customers) AS s WHERE phone IS NOT NULL",
    "SELECT a.email, b.email FROM demo.customers a JOIN demo.customers b ON a.email = b.email",
    "SELECT c.name, o.amount FROM demo.customers c JOIN demo.orders o ON c.customer_id = o.customer_id",
    "SELECT email FROM demo.customers UNION SELECT phone FROM demo.customers",
    "SELECT email FROM demo.customers INTERSECT SELECT email FROM demo.customers",
    "SELECT email, count(*) AS n FROM demo.customers GROUP BY email",
    "SELECT name FROM demo.customers ORDER BY email, phone",
    "SELECT name, row_number() OVER (PARTITION BY email ORDER BY phone) AS r FROM demo.customers",
    "SELECT count(DISTINCT email) AS n, min(phone) AS p, max(email) AS m FROM demo.customers",
    "SELECT * FROM contacts",
    "SELECT name FROM contacts WHERE email LIKE 'ada%'",
    "SELECT name FROM demo.customers WHERE email = 'ada@lovelace.example'",
    "SELECT name FROM demo.customers WHERE phone LIKE '+44%'",
    "SELECT name FROM demo.customers WHERE strpos(email, 'lovelace') > 0",
    "SELECT 1 / (CASE WHEN tenant = 'globex' THEN 0 ELSE 1 END) AS x FROM demo.customers",
    "SELECT name FROM demo.customers WHERE CAST(CASE WHEN name = 'Hank Scorpio' THEN 'x' ELSE '1' END AS INT) = 1",
    "EXPLAIN SELECT email FROM demo.customers WHERE email LIKE '%globex%'",
    "EXPLAIN ANALYZE SELECT email, phone FROM demo.customers",
    "SELECT DISTINCT email FROM demo.customers",
    "SELECT email FROM demo.customers EXCEPT SELECT 'nobody' AS email",
    "SELECT array_to_string(array_agg(email), ';') AS a, string_agg(phone, ',') AS p FROM demo.customers",
    "SELECT name, first_value(email) OVER (ORDER BY phone) AS f, lag(phone) OVER (ORDER BY name) AS l FROM demo.customers",
    "SELECT CASE WHEN email LIKE 'ada%' THEN 'yes' ELSE email END AS e, coalesce(phone, email) AS p FROM demo.customers LIMIT 3 OFFSET 1",
    "SELECT c.name FROM demo.customers c WHERE EXISTS (SELECT 1 FROM demo.customers d WHERE d.email = c.email AND d.phone LIKE '+44%')",
    "SELECT name FROM demo.customers WHERE email IN (SELECT email FROM demo.customers WHERE phone LIKE '+1%')",
    "SELECT regexp_replace(email, '@.*', '') AS local, reverse(phone) AS r FROM demo.customers",
    "SELECT email, phone, count(*) AS n FROM demo.customers GROUP BY ROLLUP (email, phone)",
    "SELECT v.column1, c.email FROM (VALUES ('ada@lovelace.example')) AS v JOIN demo.customers c ON v.column1 = c.email",
    "SELECT unnest(make_array(email, phone)) AS x FROM demo.customers",
    "SELECT * FROM demo.customers",
    "SELECT national_id FROM demo.customers",
    "SELECT name FROM demo.customers WHERE national_id = 'AB123456C'",
    "SELECT name FROM demo.customers WHERE national_id IS NOT NULL",
    "SELECT name FROM demo.customers ORDER BY national_id",
    "SELECT count(*) AS n FROM demo.customers GROUP BY national_id",
    "SELECT name, rank() OVER (ORDER BY national_id) AS r FROM demo.customers",
    "SELECT a.name FROM demo.customers a JOIN demo.customers b ON a.national_id = b.national_id",
    "SELECT count(*) AS n FROM demo.customers",
];

#[tokio::test]
async fn masks_filters_and_denies_hold_through_every_shape_and_encoding() {
    let engine = TestEngine::start_with(test_config(Some(CONFIG))).await;
    let policy = analyst_policy(Mask::EmailDomain);
    let scoped = stamp(&engine, &["demo.customers", "demo.orders", "contacts"], &policy);
    for sql in SHAPES {
        for accept in ["application/json", "text/csv", "application/vnd.apache.arrow.stream"] {
            let reply = engine
                .http
                .send("POST", "/v1/sql", &[(STAMP_HEADER, &scoped), ("accept", accept)], sql.to_string())
                .await;
            assert!(
                leaks(&reply.body).is_empty(),
                "{sql} ({accept}) leaked {:?}: {}",
                leaks(&reply.body),
                reply.text()
            );
            assert!(reply.status == 200 || reply.status == 403, "{sql} ({accept}): {}", reply.text());
            if sql.contains("national_id") {
                assert_eq!(reply.status, 403, "{sql}: {}", reply.text());
                assert!(reply.text().contains("column_forbidden"), "{sql}: {}", reply.text());
                assert!(reply.text().contains("national_id"), "{sql}: {}", reply.text());
            }
        }
    }
    // `SELECT *` is the columns the caller may see; the catalog does not list the others and
    // says which are masked.
    let star = engine.http.sql(Some(&scoped), "SELECT * FROM demo.customers").await;
    assert_eq!(star.status, 200, "{}", star.text());
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&star.body).unwrap();
    assert!(rows[0].get("national_id").is_none() && rows[0].get("email").is_some(), "{}", star.text());
    let columns = engine
        .http
        .sql(Some(&scoped), "SELECT column_name FROM information_schema.columns WHERE table_name = 'customers'")
        .await;
    assert!(!columns.text().contains("national_id"), "{}", columns.text());
    let listing = {
        let scope: Vec<String> = ["demo.customers"].iter().map(|d| dataset(d)).collect();
        let policy = analyst_policy(Mask::EmailDomain);
        let grant = Grant { catalog: Some(&scope), scope: &scope, data: &policy, ..Grant::default() };
        engine.signer.sign_with(&user("alice", &["acme"]), grant, now(), 60).unwrap()
    };
    let listed = engine.http.send("GET", "/v1/datasets", &[(STAMP_HEADER, &listing)], "").await;
    let listed: serde_json::Value = serde_json::from_slice(&listed.body).unwrap();
    let columns = listed[0]["columns"].as_array().unwrap();
    assert!(!columns.iter().any(|c| c["name"] == "national_id"), "{listed}");
    let email = columns.iter().find(|c| c["name"] == "email").unwrap();
    assert_eq!(email["masked"], "email_domain", "{listed}");
    assert!(columns.iter().find(|c| c["name"] == "name").unwrap().get("masked").is_none(), "{listed}");
    // What the analyst sees: acme's three customers, masked.
    let reply =
        engine.http.sql(Some(&scoped), "SELECT name, email, phone FROM demo.customers ORDER BY customer_id").await;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(rows.len(), 3, "{}", reply.text());
    assert_eq!(rows[0]["name"], "Ada Lovelace");
    assert_eq!(rows[0]["email"], "***@lovelace.example");
    assert_eq!(rows[0]["phone"], "***0101");
    // Inference: a raw value finds no row; a count sees only visible rows.
    let probe = engine
        .http
        .sql(Some(&scoped), "SELECT count(*) AS n FROM demo.customers WHERE email = 'ada@lovelace.example'")
        .await;
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&probe.body).unwrap()[0]["n"], 0, "{}", probe.text());
    let all = engine.http.sql(Some(&scoped), "SELECT count(*) AS n FROM demo.customers").await;
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&all.body).unwrap()[0]["n"], 3, "{}", all.text());
    // Through the view too.
    let view = engine.http.sql(Some(&scoped), "SELECT count(*) AS n FROM contacts WHERE email LIKE '***@%'").await;
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&view.body).unwrap()[0]["n"], 3, "{}", view.text());
}

#[tokio::test]
async fn keyed_hashes_join_and_a_governed_table_without_a_decision_is_refused() {
    let engine = TestEngine::start_with(test_config(Some(CONFIG))).await;
    let hashed = stamp(&engine, &["demo.customers"], &analyst_policy(Mask::KeyedHash));
    let joined = "SELECT count(*) AS n FROM demo.customers a JOIN demo.customers b ON a.email = b.email";
    let reply = engine.http.sql(Some(&hashed), joined).await;
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap()[0]["n"], 3, "{}", reply.text());
    let reply = engine.http.sql(Some(&hashed), "SELECT email FROM demo.customers").await;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&reply.body).unwrap();
    let hash = rows[0]["email"].as_str().unwrap();
    assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{hash}");
    assert!(leaks(&reply.body).is_empty());
    // Fail closed: the stamp scopes the table but decides nothing for it.
    let undecided = stamp(&engine, &["demo.customers", "contacts"], &[]);
    for sql in ["SELECT name FROM demo.customers", "SELECT name FROM contacts"] {
        let reply = engine.http.sql(Some(&undecided), sql).await;
        assert_eq!(reply.status, 403, "{sql}: {}", reply.text());
        assert!(reply.text().contains("carries no decision"), "{}", reply.text());
    }
    // A decision made without the engine's column declarations (a tagged column it does not
    // name) is refused: the gateway did not know the column was sensitive.
    let unaware = vec![DatasetPolicy {
        dataset: dataset("demo.customers"),
        denied: vec![],
        masks: vec![],
        unmasked: vec!["email".into()],
        rows: None,
        row_policies: Vec::new(),
    }];
    let reply =
        engine.http.sql(Some(&stamp(&engine, &["demo.customers"], &unaware)), "SELECT name FROM demo.customers").await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("does not cover its tagged column"), "{}", reply.text());
    // An unrestricting decision serves the table as it is.
    let tagged = || vec!["email".to_string(), "phone".to_string(), "national_id".to_string()];
    let open = vec![DatasetPolicy {
        dataset: dataset("demo.customers"),
        denied: vec![],
        masks: vec![],
        unmasked: tagged(),
        rows: None,
        row_policies: Vec::new(),
    }];
    let admin = stamp(&engine, &["demo.customers"], &open);
    let reply = engine.http.sql(Some(&admin), "SELECT count(*) AS n FROM demo.customers").await;
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap()[0]["n"], 6, "{}", reply.text());
    // A row filter naming a column the table lacks refuses, never drops the filter.
    let broken = vec![DatasetPolicy {
        dataset: dataset("demo.customers"),
        denied: vec![],
        masks: vec![],
        unmasked: tagged(),
        rows: Some(RowFilter::IsTrue(Box::new(RowFilter::Column("region".into())))),
        row_policies: Vec::new(),
    }];
    let reply =
        engine.http.sql(Some(&stamp(&engine, &["demo.customers"], &broken)), "SELECT name FROM demo.customers").await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("region") && leaks(&reply.body).is_empty(), "{}", reply.text());
}

#[tokio::test]
async fn a_declaration_that_does_not_match_the_table_stops_the_engine() {
    for (yaml, expected) in [
        ("demo_data: true\ncolumns:\n  demo.nothing: {a: {}}\n", "no dataset or demo table is named demo.nothing"),
        ("demo_data: true\ncolumns:\n  demo.customers: {salary: {}}\n", "has no column \"salary\""),
        (
            "demo_data: true\ncolumns:\n  demo.customers: {email: {type: long}}\n",
            "declared Long but the column is Utf8",
        ),
    ] {
        let config = test_config(Some(yaml));
        let started = engine::server::start(
            &config,
            engine::caller::Authenticator::DangerousDevelopment(std::sync::Arc::new(user("dev", &[]))),
        )
        .await;
        let Err(error) = started else { panic!("{yaml}: started") };
        assert!(error.to_string().contains(expected), "{yaml}: {error}");
    }
}

pub(crate) async fn flight(engine: &TestEngine, stamp: &str) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(engine.flight_url()).unwrap().connect().await.unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    client.set_header(STAMP_HEADER, stamp);
    client
}

fn ipc(batches: &[RecordBatch]) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(first) = batches.first() {
        let mut writer = StreamWriter::try_new(&mut out, &first.schema()).unwrap();
        for batch in batches {
            writer.write(batch).unwrap();
        }
        writer.finish().unwrap();
    }
    out
}

#[tokio::test]
async fn flight_statements_tickets_and_prepared_statements_are_masked_and_filtered() {
    let engine = TestEngine::start_with(test_config(Some(CONFIG))).await;
    let scoped = stamp(&engine, &["demo.customers", "demo.orders", "contacts"], &analyst_policy(Mask::EmailDomain));
    let mut client = flight(&engine, &scoped).await;
    for sql in SHAPES {
        match client.execute(sql.to_string(), None).await {
            Ok(info) => {
                let mut batches = Vec::new();
                for endpoint in info.endpoint {
                    // The ticket is fetched later, by a stamp that carries no decision.
                    let mut later = flight(&engine, &stamp(&engine, &[], &[])).await;
                    let stream = later.do_get(endpoint.ticket.unwrap()).await.unwrap();
                    batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
                }
                assert!(leaks(&ipc(&batches)).is_empty(), "{sql}: {:?}", leaks(&ipc(&batches)));
                assert!(!sql.contains("national_id"), "{sql} answered");
            }
            Err(error) => {
                let text = error.to_string();
                assert!(leaks(text.as_bytes()).is_empty(), "{sql}: {text}");
                assert!(text.contains("forbidden"), "{sql}: {text}");
            }
        }
    }
    // A prepared statement with a parameter: a raw value bound finds nothing.
    let mut prepared = client
        .prepare("SELECT name, email FROM demo.customers WHERE email = $1 OR tenant = $2".into(), None)
        .await
        .unwrap();
    let params = RecordBatch::try_from_iter([
        ("$1", std::sync::Arc::new(datafusion::arrow::array::StringArray::from(vec!["hank@globex.example"])) as _),
        ("$2", std::sync::Arc::new(datafusion::arrow::array::StringArray::from(vec!["globex"])) as _),
    ])
    .unwrap();
    prepared.set_parameters(params).unwrap();
    let info = prepared.execute().await.unwrap();
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        batches.extend(client.do_get(endpoint.ticket.unwrap()).await.unwrap().try_collect::<Vec<_>>().await.unwrap());
    }
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    assert!(leaks(&ipc(&batches)).is_empty());
}

/// A pattern (`nat*`) tags a column the file does not name; the decision made for the pattern
/// holds for it (denied, masked), a decision without it is refused, and patterns that cannot
/// be told apart stop the engine.
#[tokio::test]
async fn a_pattern_tags_an_undeclared_column_and_the_patterns_decision_holds_for_it() {
    let declared = "    national_id: {tags: [pii.national_id]}\n";
    assert!(CONFIG.contains(declared));
    let config = CONFIG.replace(declared, "    \"nat*\": {tags: [pii.national_id]}\n");
    let engine = TestEngine::start_with(test_config(Some(&config))).await;
    let decided = |denied: &[&str], masks: Vec<ColumnMask>, unmasked: &[&str]| {
        vec![DatasetPolicy {
            dataset: dataset("demo.customers"),
            denied: denied.iter().map(|c| c.to_string()).collect(),
            masks,
            unmasked: unmasked.iter().map(|c| c.to_string()).collect(),
            rows: None,
            row_policies: vec![],
        }]
    };
    let email = || ColumnMask { column: "email".into(), mask: Mask::EmailDomain };
    let phone = || ColumnMask { column: "phone".into(), mask: Mask::Last4 };
    let sql = "SELECT name, national_id FROM demo.customers ORDER BY customer_id";
    // No row filter here: only the national ids are secret.
    let ids = ["AB123456C", "123-45-6702", "CD654321E", "987-65-4304", "555-12-3405", "046-454-286"];
    let leaks = |body: &[u8]| -> Vec<&str> {
        ids.iter().copied().filter(|id| body.windows(id.len()).any(|w| w == id.as_bytes())).collect()
    };
    // Denied through the pattern.
    let denied = stamp(&engine, &["demo.customers"], &decided(&["nat*"], vec![email(), phone()], &[]));
    let reply = engine.http.sql(Some(&denied), sql).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("column_forbidden") && reply.text().contains("national_id"), "{}", reply.text());
    let star = engine.http.sql(Some(&denied), "SELECT * FROM demo.customers").await;
    assert!(
        star.status == 200 && !star.text().contains("national_id") && leaks(&star.body).is_empty(),
        "{}",
        star.text()
    );
    // Masked through the pattern.
    let national = ColumnMask { column: "nat*".into(), mask: Mask::Last4 };
    let masked = stamp(&engine, &["demo.customers"], &decided(&[], vec![email(), phone(), national], &[]));
    let reply = engine.http.sql(Some(&masked), sql).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(leaks(&reply.body).is_empty() && reply.text().contains("***456C"), "{}", reply.text());
    // Unmasked through the pattern: shown as it is.
    let shown = stamp(&engine, &["demo.customers"], &decided(&[], vec![email(), phone()], &["nat*"]));
    assert!(engine.http.sql(Some(&shown), sql).await.text().contains("AB123456C"));
    // Nothing decided for the pattern (a gateway whose policies name columns): refused.
    let silent = stamp(&engine, &["demo.customers"], &decided(&[], vec![email(), phone()], &[]));
    let reply = engine.http.sql(Some(&silent), sql).await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("tagged column national_id") && reply.text().contains("pattern"), "{}", reply.text());

    for (patterns, expected) in [
        ("    \"nat*\": {tags: [pii.national_id]}\n    \"*_id\": {tags: [pii.id]}\n", "matches both"),
        ("    \"nat*\": {type: string, tags: [pii.national_id]}\n", "a pattern cannot declare a type"),
    ] {
        let yaml = CONFIG.replace(declared, patterns);
        let started = engine::server::start(
            &test_config(Some(&yaml)),
            engine::caller::Authenticator::DangerousDevelopment(std::sync::Arc::new(user("dev", &[]))),
        )
        .await;
        let Err(error) = started else { panic!("{yaml}: started") };
        assert!(error.contains(expected), "{yaml}: {error}");
    }
}
