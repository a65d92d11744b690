//! The engine's HTTP API against a real engine on loopback: authentication, every rejection,
//! row-level security, encodings and limits.

use crate::common::{TestEngine, now, test_config, user};
use identity::{STAMP_HEADER, StampSigner, generate_stamp_keypair};

fn rows(reply: &crate::common::reqwest_lite::Reply) -> Vec<serde_json::Value> {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json().as_array().unwrap().clone()
}

fn error_code(reply: &crate::common::reqwest_lite::Reply) -> String {
    reply.json()["error"]["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn health_needs_no_stamp() {
    let engine = TestEngine::start().await;
    let reply = engine.http.send("GET", "/health", &[], "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "ok\n");
}

#[tokio::test]
async fn identity_functions_return_the_stamped_principal() {
    let engine = TestEngine::start().await;
    let stamp = engine.stamp(&user("alice", &["acme", "analysts"]));
    let reply = engine
        .http
        .sql(Some(&stamp), "SELECT current_principal() AS p, current_principal_subject() AS s, current_principal_email() AS e, current_principal_groups() AS g")
        .await;
    let row = &rows(&reply)[0];
    assert_eq!(row["p"], "alice");
    assert_eq!(row["s"], "sub-alice");
    assert_eq!(row["e"], "alice@example.com");
    assert_eq!(row["g"], serde_json::json!(["acme", "analysts"]));
}

#[tokio::test]
async fn no_email_is_null_and_no_groups_is_an_empty_list() {
    let engine = TestEngine::start().await;
    let mut svc =
        identity::Principal::new(identity::PrincipalKind::Service, "etl", "key-1", identity::AuthMethod::ApiKey);
    svc.groups.clear();
    let reply = engine.http.sql(Some(&engine.stamp(&svc)), "SELECT * FROM whoami").await;
    let row = &rows(&reply)[0];
    assert_eq!(row["principal"], "etl");
    assert!(row["email"].is_null());
    assert_eq!(row["groups"], serde_json::json!([]));
}

#[tokio::test]
async fn same_view_different_rows_per_principal() {
    let engine = TestEngine::start().await;
    let alice = engine.stamp(&user("alice", &["acme"]));
    let bob = engine.stamp(&user("bob", &["globex"]));
    let nobody = engine.stamp(&user("eve", &[]));
    let tenants = |reply: &crate::common::reqwest_lite::Reply| {
        rows(reply).iter().map(|r| r["tenant"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let sql = "SELECT tenant FROM my_orders ORDER BY order_id";
    let a = tenants(&engine.http.sql(Some(&alice), sql).await);
    let b = tenants(&engine.http.sql(Some(&bob), sql).await);
    assert_eq!(a, vec!["acme"; 4]);
    assert_eq!(b, vec!["globex"; 4]);
    assert!(rows(&engine.http.sql(Some(&nobody), sql).await).is_empty());
    // Ownership view keyed on current_principal().
    let managed = rows(&engine.http.sql(Some(&bob), "SELECT order_id FROM my_managed_orders ORDER BY order_id").await);
    let ids: Vec<i64> = managed.iter().map(|r| r["order_id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![1005, 1006, 1008]);
}

#[tokio::test]
async fn missing_stamp_is_401() {
    let engine = TestEngine::start().await;
    let reply = engine.http.sql(None, "SELECT 1").await;
    assert_eq!(reply.status, 401);
    assert_eq!(error_code(&reply), "unauthenticated");
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("missing"));
    let reply = engine.http.send("GET", "/v1/datasets", &[], "").await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn every_bad_stamp_is_401_and_never_echoed() {
    let engine = TestEngine::start().await;
    let alice = user("alice", &["acme"]);
    let good = engine.stamp(&alice);

    let other_key = generate_stamp_keypair().unwrap();
    let foreign = StampSigner::from_pem(other_key.private_pkcs8_pem.as_bytes(), identity::DEFAULT_AUDIENCE).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let mut tampered_sig = parts.clone();
    let flipped = if parts[3].starts_with('A') { "B" } else { "A" };
    let new_sig = format!("{flipped}{}", &parts[3][1..]);
    tampered_sig[3] = &new_sig;

    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed", "not-a-stamp".into(), "malformed"),
        ("bad signature", tampered_sig.join("."), "signature"),
        ("wrong key", foreign.sign(&alice, now(), 60).unwrap(), "unknown key"),
        ("expired", engine.signer.sign(&alice, now() - 120, 60).unwrap(), "expired"),
        ("not yet valid", engine.signer.sign(&alice, now() + 600, 60).unwrap(), "not yet valid"),
        ("oversized", format!("v1.{}", "a".repeat(20_000)), "too large"),
    ];
    for (name, stamp, expected) in cases {
        let reply = engine.http.sql(Some(&stamp), "SELECT 1").await;
        assert_eq!(reply.status, 401, "{name}: {}", reply.text());
        let message = reply.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(expected), "{name}: {message}");
        assert!(!reply.text().contains(&stamp[..stamp.len().min(40)]) || name == "malformed", "{name}: stamp echoed");
    }
    // Signed by a key the engine trusts, but for another audience.
    let other_audience = StampSigner::from_pem(engine.signer_pem.as_bytes(), "another-engine").unwrap();
    let reply = engine.http.sql(Some(&other_audience.sign(&alice, now(), 60).unwrap()), "SELECT 1").await;
    assert_eq!(reply.status, 401);
    assert!(reply.text().contains("audience"), "{}", reply.text());
}

#[tokio::test]
async fn bad_sql_is_400_with_the_reason() {
    let engine = TestEngine::start().await;
    let stamp = engine.stamp(&user("alice", &["acme"]));
    let reply = engine.http.sql(Some(&stamp), "SELEC 1").await;
    assert_eq!(reply.status, 400);
    assert_eq!(error_code(&reply), "query_error");
    assert!(reply.text().contains("SELEC"), "{}", reply.text());
    let scoped = engine.scoped_stamp(&user("alice", &["acme"]), &["no_such_table"]);
    let reply = engine.http.sql(Some(&scoped), "SELECT * FROM no_such_table").await;
    assert_eq!(reply.status, 400);
    assert!(reply.text().contains("no_such_table"), "{}", reply.text());
    let reply = engine.http.sql(Some(&stamp), "SELECT 1; SELECT 2").await;
    assert_eq!(reply.status, 400);
    let reply = engine.http.sql(Some(&stamp), "   ").await;
    assert_eq!(reply.status, 400);
    // Errors raised when execution starts still get a status, not a truncated 200.
    let reply = engine.http.sql(Some(&stamp), "SELECT 1/0").await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let reply = engine.http.send("POST", "/v1/sql", &[(STAMP_HEADER, &stamp)], vec![0xff, 0xfe, 0x00]).await;
    assert_eq!(reply.status, 400);
    assert!(reply.text().contains("UTF-8"));
}

#[tokio::test]
async fn writes_and_session_changes_are_refused_by_default() {
    let engine = TestEngine::start().await;
    let stamp = engine.stamp(&user("alice", &["acme"]));
    for sql in [
        "CREATE TABLE t AS SELECT 1",
        "CREATE VIEW v AS SELECT 1",
        "DROP VIEW my_orders",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "INSERT INTO demo.orders SELECT * FROM demo.orders",
        "COPY (SELECT 1) TO '/tmp/portcullis-should-not-exist.csv'",
        "SET portcullis.principal = 'bob'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let reply = engine.http.sql(Some(&stamp), sql).await;
        assert_eq!(reply.status, 403, "{sql}: {}", reply.text());
        assert_eq!(error_code(&reply), "forbidden");
    }
    assert!(!std::path::Path::new("/tmp/portcullis-should-not-exist.csv").exists());
    // The view is still there and still filters.
    let reply = engine.http.sql(Some(&stamp), "SELECT count(*) AS n FROM my_orders").await;
    assert_eq!(rows(&reply)[0]["n"], 4);
}

#[tokio::test]
async fn ddl_and_dml_when_enabled() {
    let config = test_config(Some("sql:\n  allow_ddl: true\n  allow_dml: true\n"));
    let engine = TestEngine::start_with(config).await;
    let stamp = engine.scoped_stamp(&user("alice", &[]), &["notes"]);
    let reply = engine.http.sql(Some(&stamp), "CREATE TABLE notes (id INT, owner VARCHAR)").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = engine.http.sql(Some(&stamp), "INSERT INTO notes VALUES (1, current_principal())").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = engine.http.sql(Some(&stamp), "SELECT owner FROM notes").await;
    assert_eq!(rows(&reply)[0]["owner"], "alice");
    // Session settings stay refused even then.
    let reply = engine.http.sql(Some(&stamp), "SET portcullis.principal = 'bob'").await;
    assert_eq!(reply.status, 403);
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let config = test_config(Some("limits:\n  max_sql_bytes: 64\n"));
    let engine = TestEngine::start_with(config).await;
    let stamp = engine.stamp(&user("alice", &[]));
    let reply = engine.http.sql(Some(&stamp), &format!("SELECT '{}'", "x".repeat(100))).await;
    assert_eq!(reply.status, 413);
    assert_eq!(error_code(&reply), "payload_too_large");
    assert_eq!(engine.http.sql(Some(&stamp), "SELECT 1").await.status, 200);
}

#[tokio::test]
async fn encodings_follow_accept() {
    let engine = TestEngine::start().await;
    let stamp = engine.stamp(&user("alice", &["acme"]));
    let sql = "SELECT order_id, amount FROM my_orders ORDER BY order_id LIMIT 2";
    let csv = engine.http.send("POST", "/v1/sql", &[(STAMP_HEADER, &stamp), ("accept", "text/csv")], sql).await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.headers["content-type"], "text/csv");
    assert_eq!(csv.text(), "order_id,amount\n1001,120.5\n1002,75.0\n");

    let arrow = engine
        .http
        .send("POST", "/v1/sql", &[(STAMP_HEADER, &stamp), ("accept", "application/vnd.apache.arrow.stream")], sql)
        .await;
    assert_eq!(arrow.status, 200);
    let reader =
        datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow.body.to_vec()), None).unwrap();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    assert_eq!(batches[0].schema().field(0).name(), "order_id");

    let empty = engine
        .http
        .send("POST", "/v1/sql", &[(STAMP_HEADER, &stamp), ("accept", "text/csv")], "SELECT 1 AS a WHERE false")
        .await;
    assert_eq!(empty.text(), "a\n");
    let empty = engine.http.sql(Some(&stamp), "SELECT 1 AS a WHERE false").await;
    assert_eq!(empty.text(), "[]");

    let refused = engine.http.send("POST", "/v1/sql", &[(STAMP_HEADER, &stamp), ("accept", "text/html")], sql).await;
    assert_eq!(refused.status, 406);
}

#[tokio::test]
async fn small_results_are_sent_whole_and_large_ones_stream() {
    let engine = TestEngine::start().await;
    let stamp = engine.stamp(&user("alice", &["acme"]));
    let small = engine.http.sql(Some(&stamp), "SELECT 1 AS one").await;
    assert_eq!(small.status, 200);
    assert_eq!(small.headers["content-length"], small.body.len().to_string());
    assert!(!small.headers.contains_key("transfer-encoding"));
    assert_eq!(small.json(), serde_json::json!([{"one": 1}]));

    // Several batches, well over 64 KiB encoded: streamed (chunked), every row arrives.
    let large = engine.http.sql(Some(&stamp), "SELECT value FROM generate_series(1, 200000)").await;
    assert_eq!(large.status, 200);
    assert_eq!(large.headers["transfer-encoding"], "chunked");
    assert!(!large.headers.contains_key("content-length"));
    assert_eq!(rows(&large).len(), 200_000);
}

#[tokio::test]
async fn datasets_lists_the_tables_and_views_the_stamp_names() {
    let engine = TestEngine::start().await;
    let alice = user("alice", &[]);
    let listed = ["datafusion.demo.customers", "datafusion.demo.orders", "datafusion.public.my_orders"];
    let stamp =
        engine.listing_stamp(&alice, &[&listed[..], &["datafusion.public.whoami", "datafusion.nope.x"]].concat());
    let reply = engine.http.send("GET", "/v1/datasets", &[(STAMP_HEADER, &stamp)], "").await;
    assert_eq!(reply.status, 200);
    let list = reply.json();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["demo.customers", "demo.orders", "my_orders", "whoami"]);
    // Fail closed: a stamp without a listing lists nothing; SQL's catalog follows the stamp.
    let plain = engine.stamp(&alice);
    let reply = engine.http.send("GET", "/v1/datasets", &[(STAMP_HEADER, &plain)], "").await;
    assert_eq!(reply.json(), serde_json::json!([]));
    let catalog = "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables \
                   WHERE table_schema <> 'information_schema' ORDER BY t";
    let reply = engine.http.sql(Some(&plain), catalog).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(rows(&reply).is_empty(), "{}", reply.text());
    let reply = engine.http.sql(Some(&stamp), catalog).await;
    let tables: Vec<String> = rows(&reply).iter().map(|r| r["t"].as_str().unwrap().to_string()).collect();
    assert_eq!(tables, ["demo.customers", "demo.orders", "public.my_orders", "public.whoami"]);
    let reply = engine.http.sql(Some(&stamp), "SHOW TABLES").await;
    assert!(!reply.text().contains("globex") && reply.text().contains("my_orders"), "{}", reply.text());
    // Lookups are not listings: a plain stamp still reads any table by name.
    let reply = engine.http.sql(Some(&plain), "SELECT count(*) AS n FROM globex.orders").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let orders = list.as_array().unwrap().iter().find(|d| d["name"] == "demo.orders").unwrap();
    assert_eq!(orders["kind"], "table");
    assert_eq!(orders["columns"][0]["name"], "order_id");
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let engine = TestEngine::start().await;
    assert_eq!(engine.http.send("GET", "/nope", &[], "").await.status, 404);
    assert_eq!(engine.http.send("GET", "/v1/sql", &[], "").await.status, 405);
    let reply = engine.http.send("GET", "/health", &[("x-request-id", "abc-123")], "").await;
    assert_eq!(reply.headers["x-request-id"], "abc-123");
    let reply = engine.http.send("GET", "/health", &[("x-request-id", "bad id with spaces")], "").await;
    assert_ne!(reply.headers["x-request-id"], "bad id with spaces");
}

#[tokio::test]
async fn datasets_from_files_in_every_format() {
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    std::fs::write(path.join("people.csv"), "id,name\n1,ada\n2,grace\n").unwrap();
    std::fs::write(path.join("people.json"), r#"[{"id": 1, "name": "ada"}, {"id": 2, "name": "grace"}]"#).unwrap();
    std::fs::write(path.join("people.ndjson"), "{\"id\": 1, \"name\": \"ada\"}\n{\"id\": 2, \"name\": \"grace\"}\n")
        .unwrap();
    std::fs::create_dir(path.join("parts")).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    for (i, name) in [(1, "ada"), (2, "grace")] {
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![i])), Arc::new(StringArray::from(vec![name]))],
        )
        .unwrap();
        let file = std::fs::File::create(path.join("parts").join(format!("{i}.parquet"))).unwrap();
        let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }
    let yaml = "datasets:
  - {name: csv_people, path: people.csv}
  - {name: files.json_people, path: people.json}
  - {name: ndjson_people, path: people.ndjson}
  - {name: parquet_people, path: parts, format: parquet}
views:
  - {name: everyone, sql: 'SELECT name FROM csv_people UNION ALL SELECT name FROM parquet_people'}
";
    std::fs::write(path.join("engine.yaml"), yaml).unwrap();
    let mut config = engine::config::Config::from_file(&path.join("engine.yaml")).unwrap();
    config.http_listen = "127.0.0.1:0".parse().unwrap();
    config.flight_listen = "127.0.0.1:0".parse().unwrap();
    let engine = TestEngine::start_with(config).await;
    let stamp = engine.stamp(&user("alice", &[]));
    for table in ["csv_people", "files.json_people", "ndjson_people", "parquet_people"] {
        let reply = engine.http.sql(Some(&stamp), &format!("SELECT name FROM {table} ORDER BY id")).await;
        let names: Vec<String> = rows(&reply).iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(names, vec!["ada", "grace"], "{table}");
    }
    let reply = engine.http.sql(Some(&stamp), "SELECT count(*) AS n FROM everyone").await;
    assert_eq!(rows(&reply)[0]["n"], 4);
}

#[tokio::test]
async fn startup_errors_name_the_dataset_or_view() {
    let config = test_config(Some("datasets:\n  - {name: t, path: /nonexistent/x.csv}\n"));
    let err = engine::query::QueryEngine::new(&config).await.unwrap_err();
    assert!(err.contains("datasets[0] (t)"), "{err}");
    let config = test_config(Some("views:\n  - {name: v, sql: 'SELECT * FROM missing'}\n"));
    let err = engine::query::QueryEngine::new(&config).await.unwrap_err();
    assert!(err.contains("views[0] (v)"), "{err}");
    let config = test_config(Some("views:\n  - {name: v, sql: 'CREATE TABLE x AS SELECT 1'}\n"));
    assert!(engine::query::QueryEngine::new(&config).await.is_err());
}

#[tokio::test]
async fn development_mode_serves_the_fixed_principal_without_stamp() {
    let running = crate::common::start_dev(user("dev", &["globex"])).await;
    let client = crate::common::reqwest_lite::Client::new(running.http_addr);
    let reply = client.sql(None, "SELECT DISTINCT tenant FROM my_orders").await;
    assert_eq!(rows(&reply), vec![serde_json::json!({"tenant": "globex"})]);
    // A stamp cannot change who the dev principal is.
    let reply = client.sql(Some("v1.x.y.z"), "SELECT current_principal() AS p").await;
    assert_eq!(rows(&reply)[0]["p"], "dev");
}

/// A view named `bank` beside the demo tables: the shape of the Kelvin-sign bypass, where
/// the gateway took `bank` for the CTE `banK` and authorized no dataset.
const BANK: &str = "demo_data: true\nviews:\n  - {name: bank, sql: 'SELECT * FROM demo.customers'}\n";

#[tokio::test]
async fn the_engine_resolves_only_the_datasets_the_stamp_scopes() {
    let engine = TestEngine::start_with(test_config(Some(BANK))).await;
    let alice = user("alice", &["acme"]);
    let nothing = engine.scoped_stamp(&alice, &[]);
    let bank = engine.scoped_stamp(&alice, &["bank"]);
    let refused = |reply: &crate::common::reqwest_lite::Reply, dataset: &str| {
        assert_eq!(reply.status, 403, "{}", reply.text());
        assert_eq!(error_code(reply), "forbidden");
        assert!(reply.text().contains(&format!("dataset {dataset} was not authorized")), "{}", reply.text());
        assert!(!reply.text().contains("Hank"), "{}", reply.text());
    };
    // The gateway read a CTE (U+212A folds to k only in Unicode); DataFusion reads the table.
    let kelvin = "WITH ban\u{212A} AS (SELECT 1 AS x) SELECT * FROM bank";
    refused(&engine.http.sql(Some(&nothing), kelvin).await, "datafusion.public.bank");
    // A real CTE needs no dataset; the table itself, a subquery over it, DESCRIBE and a join
    // each need theirs.
    let cte = engine.http.sql(Some(&nothing), "WITH bank AS (SELECT 1 AS x) SELECT * FROM bank").await;
    assert_eq!(cte.status, 200, "{}", cte.text());
    for sql in ["SELECT * FROM bank", "SELECT 1 WHERE EXISTS (SELECT 1 FROM bank)", "DESCRIBE bank"] {
        refused(&engine.http.sql(Some(&nothing), sql).await, "datafusion.public.bank");
    }
    let joined = "SELECT count(*) AS n FROM bank JOIN demo.orders USING (customer_id)";
    refused(&engine.http.sql(Some(&bank), joined).await, "datafusion.demo.orders");
    for sql in ["SELECT count(*) AS n FROM bank", "DESCRIBE bank", "SELECT count(*) AS n FROM datafusion.public.bank"] {
        let reply = engine.http.sql(Some(&bank), sql).await;
        assert_eq!(reply.status, 200, "{sql}: {}", reply.text());
    }
    // The information schema resolves for anyone; its rows are what the listing shows (none).
    let listed = engine.http.sql(Some(&nothing), "SELECT table_name FROM information_schema.tables").await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert!(rows(&listed).is_empty(), "{}", listed.text());
    // Table functions are not datasets, unless a table of that name could be meant.
    let series = engine.http.sql(Some(&nothing), "SELECT count(*) AS n FROM generate_series(1, 3)").await;
    assert_eq!(rows(&series)[0]["n"], 3, "{}", series.text());
    // A stamp without the claim grants no dataset (fail closed) but still runs plain SQL.
    let bare = engine.signer.sign(&alice, crate::common::now(), 60).unwrap();
    assert_eq!(engine.http.sql(Some(&bare), "SELECT 1").await.status, 200);
    refused(&engine.http.sql(Some(&bare), "SELECT * FROM bank").await, "datafusion.public.bank");
}

#[tokio::test]
async fn a_table_named_like_a_table_function_needs_the_scope() {
    let config = test_config(Some("demo_data: true\nviews:\n  - {name: range, sql: 'SELECT * FROM demo.customers'}\n"));
    let engine = TestEngine::start_with(config).await;
    let nothing = engine.scoped_stamp(&user("alice", &[]), &[]);
    for sql in ["SELECT * FROM range", "SELECT * FROM range(1, 3)"] {
        let reply = engine.http.sql(Some(&nothing), sql).await;
        assert_eq!(reply.status, 403, "{sql}: {}", reply.text());
    }
    let scoped = engine.scoped_stamp(&user("alice", &[]), &["range"]);
    assert_eq!(engine.http.sql(Some(&scoped), "SELECT count(*) FROM range").await.status, 200);
}

/// Every other tenant's raw value an answer to acme must never carry.
const GLOBEX_VALUES: [&str; 9] =
    ["globex", "Hank", "Frank", "Edna", "999.99", "15.75", "220", "hank@globex", "springfield"];

/// Questions about rows a view filters out, asked through expressions that fail on the rows
/// where the question's answer is yes: `{p}` is the question.
pub const ORACLES: [&str; 8] = [
    "SELECT customer_id FROM my_customers WHERE CAST(CASE WHEN {p} THEN name ELSE '1' END AS INT) = 1",
    "SELECT order_id FROM my_orders WHERE 1 / CAST(CASE WHEN {p} THEN 0 ELSE 1 END AS BIGINT) = 1",
    "SELECT order_id FROM my_orders WHERE regexp_like('x', CASE WHEN {p} THEN '(' ELSE 'x' END)",
    "SELECT order_id FROM my_orders WHERE arrow_cast(CASE WHEN {p} THEN 'no' ELSE '1' END, 'Int64') = 1",
    "SELECT order_id FROM my_orders WHERE substr('abc', 1, CASE WHEN {p} THEN -1 ELSE 1 END) = 'a'",
    "SELECT count(*) AS n FROM my_orders WHERE amount > 0 AND 1 / CAST(CASE WHEN {p} THEN 0 ELSE 1 END AS BIGINT) = 1",
    "SELECT sum(1 / CAST(CASE WHEN {p} THEN 0 ELSE 1 END AS BIGINT)) AS n FROM my_orders",
    "SELECT count(*) AS n FROM my_orders o JOIN my_customers c ON o.customer_id = c.customer_id \
     AND 1 / CAST(CASE WHEN {p} THEN 0 ELSE 1 END AS BIGINT) = 1",
];

/// Predicates true only on rows acme's views remove, and one true nowhere: the answers to
/// each pair must be the same bytes.
pub const HIDDEN: [&str; 3] = ["tenant = 'globex'", "customer_id > 3", "tenant <> 'acme'"];
pub const NOWHERE: &str = "tenant = 'nobody'";

#[tokio::test]
async fn row_filters_are_barriers_no_error_reveals_a_filtered_row() {
    let engine = TestEngine::start().await;
    let stamp = engine.stamp(&user("alice", &["acme"]));
    for oracle in ORACLES {
        // In the join, both sides have the columns: name the customers'.
        let qualify = |p: &str| {
            if oracle.contains(" c ON ") {
                p.replace("tenant", "c.tenant").replace("customer_id >", "c.customer_id >")
            } else {
                p.to_string()
            }
        };
        let baseline = engine.http.sql(Some(&stamp), &oracle.replace("{p}", &qualify(NOWHERE))).await;
        assert_eq!(baseline.status, 200, "{oracle}: {}", baseline.text());
        for hidden in HIDDEN {
            let reply = engine.http.sql(Some(&stamp), &oracle.replace("{p}", &qualify(hidden))).await;
            assert_eq!(
                (reply.status, reply.text()),
                (baseline.status, baseline.text()),
                "{oracle} with {hidden} answered differently from a predicate true nowhere"
            );
            for value in GLOBEX_VALUES {
                assert!(!reply.text().contains(value), "{oracle} with {hidden} returned {value}");
            }
        }
    }
    // The barrier keeps the rows right, and a leakproof filter still reaches the view's scan.
    let rows_of = |reply: &crate::common::reqwest_lite::Reply| rows(reply).len();
    let equal = engine.http.sql(Some(&stamp), "SELECT * FROM my_orders WHERE status = 'shipped'").await;
    assert_eq!(rows_of(&equal), 2, "{}", equal.text());
    let plan = engine.http.sql(Some(&stamp), "EXPLAIN SELECT * FROM my_orders WHERE status = 'shipped'").await;
    assert!(plan.text().contains("BarrierExec"), "{}", plan.text());
}

#[tokio::test]
async fn a_filter_on_a_column_the_view_computes_stays_above_the_view() {
    // The view's own cast fails on the rows it filters out; a caller's `n = 1` must not
    // carry that cast below the filter (only columns passed through unchanged take filters).
    let yaml = "demo_data: true\nviews:\n  - name: scored\n    sql: >\n      SELECT customer_id, CAST(CASE WHEN tenant = 'globex' THEN name ELSE '1' END AS INT) AS n\n      FROM demo.customers WHERE array_has(current_principal_groups(), tenant)\n";
    let engine = TestEngine::start_with(test_config(Some(yaml))).await;
    let stamp = engine.stamp(&user("alice", &["acme"]));
    for sql in ["SELECT customer_id FROM scored WHERE n = 1", "SELECT count(*) AS c FROM scored WHERE customer_id = 1"]
    {
        let reply = engine.http.sql(Some(&stamp), sql).await;
        assert_eq!(reply.status, 200, "{sql}: {}", reply.text());
    }
}
