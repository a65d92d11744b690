//! Cedar authorization end to end: the shipped policies in front of the real engine, over
//! HTTP and Flight SQL with real clients, and policy hot reload under load.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{Reply, Stack, shipped_policies};
use gateway::config::{ApiKeyEntry, ApiKeysConfig, ClientAuth};
use gateway::internal::apikeys;

/// A stack with the shipped policies (or a copy at `policies`) and two API keys: `acme-reader`
/// (tenant acme) and `acme-etl` (tenant acme, group writers).
async fn stack(policies: &Path) -> (Stack, String, String) {
    let reader = apikeys::generate().unwrap();
    let etl = apikeys::generate().unwrap();
    let entry = |name: &str, hash: &str, groups: &[&str]| ApiKeyEntry {
        name: name.into(),
        hash: hash.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        tenant: Some("acme".into()),
        expires: None,
    };
    let keys = vec![entry("acme-reader", &reader.hash, &["acme"]), entry("acme-etl", &etl.hash, &["acme", "writers"])];
    let policies = policies.to_path_buf();
    let stack = Stack::start_with(ClientAuth::Optional, move |c| {
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys });
        c.authorization.policies = policies.into();
    })
    .await;
    (stack, reader.key, etl.key)
}

async fn sql(stack: &Stack, key: &str, sql: &str) -> Reply {
    stack.client(None).request(stack.gateway.api_addr, "POST", "/v1/sql", &[("x-api-key", key)], sql).await.unwrap()
}

fn assert_denied(reply: &Reply, message: &str, sql: &str) {
    assert_eq!(reply.status, 403, "{sql}: {}", reply.text());
    let json = reply.json();
    assert_eq!(json["error"]["code"], "forbidden", "{sql}");
    assert!(json["error"]["message"].as_str().unwrap().contains(message), "{sql}: {} (wanted {message})", reply.text());
}

#[tokio::test]
async fn a_tenant_cannot_read_another_tenants_dataset_by_any_spelling() {
    let (stack, key, _) = stack(&shipped_policies()).await;
    // Allowed: its own tenant's dataset, however spelled.
    for query in ["SELECT * FROM acme.orders", "select * from ACME.Orders", "SELECT * FROM \"acme\".orders"] {
        let reply = sql(&stack, &key, query).await;
        assert_eq!(reply.status, 200, "{query}: {}", reply.text());
        let rows = reply.json();
        assert!(!rows.as_array().unwrap().is_empty(), "{query}");
        assert!(rows.as_array().unwrap().iter().all(|r| r["tenant"] == "acme"), "{query}: {rows}");
    }
    let denied = "select on dataset datafusion.globex.";
    for query in [
        "SELECT * FROM globex.orders",
        "SELECT * FROM GLOBEX.ORDERS",
        "SELECT * FROM \"globex\".\"orders\"",
        "SELECT * FROM datafusion.globex.orders",
        "SELECT /* acme.orders */ * FROM globex.orders -- acme.orders",
        "SELECT * FROM acme.orders WHERE customer_id IN (SELECT customer_id FROM globex.customers)",
        "SELECT * FROM (SELECT * FROM globex.orders) AS t",
        "WITH mine AS (SELECT * FROM globex.orders) SELECT * FROM mine",
        "WITH globex AS (SELECT 1) SELECT * FROM globex.orders",
        "SELECT * FROM acme.orders a JOIN globex.customers c ON a.customer_id = c.customer_id",
        "SELECT order_id FROM acme.orders UNION SELECT order_id FROM globex.orders",
        "SELECT 1; SELECT * FROM globex.orders",
        "EXPLAIN SELECT * FROM globex.orders",
    ] {
        assert_denied(&sql(&stack, &key, query).await, denied, query);
    }
    // The all-tenant table and datasets the entities file does not know are not readable either.
    assert_denied(&sql(&stack, &key, "SELECT * FROM demo.orders").await, "datafusion.demo.orders", "demo.orders");
    // A spelling the engine does not serve is not a dataset at all (the gateway reads the
    // engine's file): 404, never the other tenant's rows.
    let globex = sql(&stack, &key, "SELECT * FROM \"Globex\".orders").await;
    assert_eq!(globex.status, 404, "{}", globex.text());
    assert_eq!(globex.json()["error"]["code"], "dataset_not_found");
    // The catalog is describe-only, and lists only what the caller may read: not even the
    // other tenant's table names (or its schema's).
    for query in ["SELECT table_schema, table_name FROM information_schema.tables", "SHOW TABLES"] {
        let reply = sql(&stack, &key, query).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(reply.text().contains("acme") && reply.text().contains("my_orders"), "{}", reply.text());
        assert!(!reply.text().contains("globex"), "{query}: {}", reply.text());
        // demo.orders holds every tenant's rows unfiltered: not listed; demo.customers is (shared, row-filtered).
        assert!(
            !reply.text().contains("\"table_schema\":\"demo\",\"table_name\":\"orders\""),
            "{query}: {}",
            reply.text()
        );
    }
    // Everyone reads the per-caller views: same query, the caller's own rows.
    let reply = sql(&stack, &key, "SELECT DISTINCT tenant FROM my_orders").await;
    assert_eq!(reply.json(), serde_json::json!([{"tenant": "acme"}]));
}

#[tokio::test]
async fn a_dataset_is_onboarded_by_the_engine_config_alone_and_an_unknown_one_is_404() {
    // The engine's file is the one place a dataset is added: its tenant label makes it a
    // Cedar entity that the shipped tenant policy applies to, with no entities.json edit.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("invoices.csv");
    std::fs::write(&csv, "invoice_id,amount\n1,10\n2,20\n").unwrap();
    let engine_yaml = dir.path().join("engine.yaml");
    let extra = format!(
        "datasets:\n  - {{name: acme.invoices, path: {0}, tenant: acme}}\n  - {{name: globex.invoices, path: {0}, tenant: globex}}\n",
        csv.display()
    );
    std::fs::write(&engine_yaml, format!("{}{extra}", engine::config::EMBEDDED_DEFAULT)).unwrap();
    let engine_config = engine::config::Config::from_file(&engine_yaml).unwrap();
    let key = apikeys::generate().unwrap();
    let entry = ApiKeyEntry {
        name: "acme-reader".into(),
        hash: key.hash.clone(),
        groups: vec!["acme".into()],
        tenant: Some("acme".into()),
        expires: None,
    };
    let engine_file = engine_yaml.clone();
    let stack = Stack::start_with_engine(ClientAuth::Optional, engine_config, move |c| {
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys: vec![entry] });
        c.authorization.policies = shipped_policies().into();
        c.authorization.engine_config = Some(engine_file.into());
    })
    .await;
    let reply = sql(&stack, &key.key, "SELECT sum(amount) AS total FROM acme.invoices").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), serde_json::json!([{"total": 30}]));
    assert_denied(
        &sql(&stack, &key.key, "SELECT * FROM globex.invoices").await,
        "datafusion.globex.invoices",
        "globex",
    );
    // A table the engine does not serve: 404 naming it, not a 403 that sends the user to
    // the policy team.
    let reply = sql(&stack, &key.key, "SELECT * FROM acme.invoicez").await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "dataset_not_found");
    assert!(reply.text().contains("datafusion.acme.invoicez does not exist"), "{}", reply.text());
    let reply = stack
        .client(None)
        .request(stack.gateway.api_addr, "GET", "/v1/datasets", &[("x-api-key", &key.key)], "")
        .await
        .unwrap();
    assert!(reply.text().contains("\"acme.invoices\"") && !reply.text().contains("globex"), "{}", reply.text());

    // Live onboarding: one edit of the engine's file, watched by both processes, serves a
    // new dataset under the same tenant policy with no restart and no signal.
    let mut stack = stack;
    stack.engine.reload_on_change(engine_yaml.clone());
    let payments = "SELECT count(*) AS n FROM acme.payments";
    assert_eq!(sql(&stack, &key.key, payments).await.status, 404);
    let added = format!("{extra}  - {{name: acme.payments, path: {}, tenant: acme}}\n", csv.display());
    std::fs::write(&engine_yaml, format!("{}{added}", engine::config::EMBEDDED_DEFAULT)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let reply = loop {
        let reply = sql(&stack, &key.key, payments).await;
        if reply.status == 200 || std::time::Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), serde_json::json!([{"n": 2}]));
}

#[tokio::test]
async fn api_keys_are_read_only_and_sql_the_gateway_cannot_classify_is_refused() {
    let (stack, reader, etl) = stack(&shipped_policies()).await;
    // Even in the writers group, an API key writes nothing and changes no catalog.
    for key in [&reader, &etl] {
        for (query, message) in [
            ("INSERT INTO acme.orders SELECT * FROM acme.orders", "write on endpoint /v1/sql"),
            ("UPDATE acme.orders SET amount = 0", "write on endpoint /v1/sql"),
            ("DELETE FROM acme.orders", "write on endpoint /v1/sql"),
            ("CREATE TABLE acme.copy AS SELECT * FROM acme.orders", "admin on endpoint /v1/sql"),
            ("DROP TABLE acme.orders", "admin on endpoint /v1/sql"),
            ("COPY acme.orders TO '/tmp/portcullis-leak.csv' STORED AS CSV", "write on endpoint /v1/sql"),
            ("COPY (SELECT * FROM acme.orders) TO '/tmp/portcullis-leak.csv'", "write on endpoint /v1/sql"),
            ("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'", "admin on endpoint /v1/sql"),
        ] {
            assert_denied(&sql(&stack, key, query).await, message, query);
        }
    }
    assert!(!Path::new("/tmp/portcullis-leak.csv").exists());
    // Not understood, so not allowed: 400 for what does not parse, 403 for what is not classified.
    let reply = sql(&stack, &reader, "SELEKT * FROM acme.orders").await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "invalid_sql");
    assert_denied(&sql(&stack, &reader, "GRANT SELECT ON acme.orders TO bob").await, "GRANT statements", "GRANT");
    assert_denied(&sql(&stack, &reader, "SET datafusion.execution.batch_size = 1").await, "SET statements", "SET");
    // A route the gateway does not serve.
    let reply = stack
        .client(None)
        .request(stack.gateway.api_addr, "GET", "/v1/admin", &[("x-api-key", &reader)], "")
        .await
        .unwrap();
    assert_eq!(reply.status, 404, "{}", reply.text());
    // A route it serves, with the wrong method: 405 naming the right one, as the engine does.
    let reply = stack
        .client(None)
        .request(stack.gateway.api_addr, "GET", "/v1/sql", &[("x-api-key", &reader)], "")
        .await
        .unwrap();
    assert_eq!(reply.status, 405, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "method_not_allowed");
    assert_eq!(reply.headers.get("allow").map(|v| v.to_str().unwrap()), Some("POST"));
    // The read endpoints work for the same key, and list only what it may read.
    let reply = stack
        .client(None)
        .request(stack.gateway.api_addr, "GET", "/v1/datasets", &[("x-api-key", &reader)], "")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let mut listed: Vec<String> =
        reply.json().as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap().to_string()).collect();
    listed.sort();
    assert_eq!(
        listed,
        // demo.customers holds every tenant's rows, and row policy shows each its own.
        ["acme.customers", "acme.orders", "demo.customers", "my_customers", "my_managed_orders", "my_orders", "whoami"],
        "{}",
        reply.text()
    );
}

/// Every value of globex's rows in the demo customers file (ids and the tenant name aside,
/// which acme's own rows share or may know).
fn globex_customer_values() -> Vec<String> {
    let csv = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../engine/demo/customers.csv")).unwrap();
    csv.lines()
        .filter(|line| line.contains(",globex,"))
        .flat_map(|line| line.split(',').skip(2).map(str::to_string).collect::<Vec<_>>())
        .filter(|value| value.len() > 2)
        .collect()
}

/// A view's filter hides other tenants' rows; an expression that fails on one must not quote
/// it: the test knows every hidden value and looks for each in every byte returned.
#[tokio::test]
async fn errors_quote_no_row_a_view_hides() {
    let (stack, key, _) = stack(&shipped_policies()).await;
    let hidden = globex_customer_values();
    assert!(hidden.iter().any(|v| v == "Hank Scorpio"), "{hidden:?}");
    for column in ["name", "email", "country"] {
        for query in [
            format!(
                "SELECT customer_id FROM my_customers WHERE CAST(CASE WHEN tenant = 'globex' THEN {column} ELSE '1' END AS INT) = 1"
            ),
            format!(
                "SELECT customer_id FROM my_customers WHERE arrow_cast(CASE WHEN tenant = 'globex' THEN {column} ELSE '1' END, 'Int64') = 1"
            ),
            format!(
                "SELECT customer_id FROM my_customers WHERE regexp_like('x', CASE WHEN tenant = 'globex' THEN {column} || '(' ELSE 'x' END)"
            ),
            format!(
                "SELECT customer_id FROM my_customers WHERE CAST(substr(CASE WHEN tenant = 'globex' THEN {column} ELSE '1' END, 1, 3) AS INT) = 1"
            ),
        ] {
            let reply = sql(&stack, &key, &query).await;
            let text = reply.text();
            let leaked: Vec<&String> = hidden.iter().filter(|v| text.contains(v.as_str())).collect();
            assert!(leaked.is_empty(), "{query}: {leaked:?} in {text}");
            assert_ne!(reply.status, 500, "{query}: {text}");
        }
    }
}

/// DESCRIBE, SHOW COLUMNS and SHOW CREATE of a dataset need what reading it needs, and
/// EXPLAIN ANALYZE is refused.
#[tokio::test]
async fn a_denied_dataset_cannot_be_described() {
    let (stack, key, _) = stack(&shipped_policies()).await;
    for query in ["DESCRIBE globex.orders", "DESCRIBE payroll", "SHOW COLUMNS FROM globex.orders"] {
        let reply = sql(&stack, &key, query).await;
        assert!(reply.status == 403 || reply.status == 404, "{query}: {}", reply.text());
        assert!(!reply.text().contains("account_manager") && !reply.text().contains("Utf8"), "{}", reply.text());
    }
    assert_denied(&sql(&stack, &key, "DESCRIBE globex.orders").await, "datafusion.globex.orders", "DESCRIBE");
    let reply = sql(&stack, &key, "DESCRIBE acme.orders").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("account_manager"), "{}", reply.text());
    // EXPLAIN ANALYZE's row counts would say how many rows the view hides; EXPLAIN still works.
    let reply = sql(&stack, &key, "EXPLAIN ANALYZE SELECT * FROM my_orders").await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(
        reply.text().contains("EXPLAIN ANALYZE statements are not allowed") && !reply.text().contains("output_rows")
    );
    assert_eq!(sql(&stack, &key, "EXPLAIN SELECT * FROM my_orders").await.status, 200);
}

/// A forbid hot-reloaded after a Flight ticket and a prepared statement were issued reaches
/// them: both are refused as stale on their next use (they ran before it).
#[tokio::test]
async fn a_policy_change_reaches_issued_tickets_and_prepared_statements() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    common::copy_shipped_policies(dir.path());
    let (stack, key, _) = stack(dir.path()).await;
    let mut python = tokio::process::Command::from(testkit::python_command())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/flight_revocation.py"))
        .env("FLIGHT_URI", format!("grpc+tls://localhost:{}", stack.gateway.flight_addr.port()))
        .env("CA_FILE", stack.pki.ca())
        .env("ACME_KEY", &key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(python.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    while let Some(line) = stdout.next_line().await.unwrap() {
        printed.push_str(&line);
        printed.push('\n');
        if line == "issued" {
            break;
        }
    }
    assert!(printed.contains("issued"), "{printed}");
    std::fs::write(
        dir.path().join("70-revoke.cedar"),
        "@id(\"revoke-acme-reader\")\nforbid(principal == Service::\"acme-reader\", action == Action::\"select\", resource);",
    )
    .unwrap();
    let mut revoked = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if sql(&stack, &key, "SELECT * FROM acme.orders").await.status == 403 {
            revoked = true;
            break;
        }
    }
    assert!(revoked, "the forbid was not picked up within 10 s");
    let mut stdin = python.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    drop(stdin);
    let output = python.wait_with_output().await.unwrap();
    while let Some(line) = stdout.next_line().await.unwrap() {
        printed.push_str(&line);
        printed.push('\n');
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "revocation checks failed\n{printed}\n{stderr}");
    assert!(printed.contains("5 passed, 0 failed"), "{printed}");
}

#[tokio::test]
async fn flight_sql_clients_are_authorized_per_dataset() {
    let (stack, reader, _) = stack(&shipped_policies()).await;
    let output = tokio::process::Command::from(testkit::python_command())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/flight_authz.py"))
        .env("FLIGHT_URI", format!("grpc+tls://localhost:{}", stack.gateway.flight_addr.port()))
        .env("CA_FILE", stack.pki.ca())
        .env("ACME_KEY", &reader)
        .env("HIDDEN_VALUES", globex_customer_values().join("\n"))
        .output()
        .await
        .unwrap();
    let stdout = testkit::python_stdout(&output, "Flight authorization checks");
    assert!(stdout.contains("7 passed, 0 failed"), "{stdout}");
    // The engine's trailers-only INVALID_ARGUMENT for the SQL typo counts as 400, not 200.
    let metrics = gateway::internal::render_metrics(0);
    assert!(
        metrics.contains(r#"gateway_requests_total{listener="flight",route="GetFlightInfo",status="400"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_broken_policy_file_is_rejected_under_load_and_a_fixed_one_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    common::copy_shipped_policies(dir.path());
    let (stack, key, _) = stack(dir.path()).await;
    let stack = Arc::new(stack);
    let (sent, failed, stop) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stack, key, sent, failed, stop) =
            (Arc::clone(&stack), key.clone(), Arc::clone(&sent), Arc::clone(&failed), Arc::clone(&stop));
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let reply = sql(&stack, &key, "SELECT count(*) AS n FROM acme.orders").await;
                sent.fetch_add(1, Ordering::Relaxed);
                if reply.status != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Broken: a syntax error, and (separately) a policy that does not validate.
    std::fs::write(dir.path().join("70-broken.cedar"), "permit(principal, action resource);").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    std::fs::write(dir.path().join("70-broken.cedar"), "permit(principal, action, resource) when { resource.nope };")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let during = sent.load(Ordering::Relaxed);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed while a broken policy file was present");
    // Fixed: a valid file that forbids this key's reads; the new set serves from then on.
    std::fs::write(
        dir.path().join("70-broken.cedar"),
        "@id(\"freeze-acme-reader\")\nforbid(principal == Service::\"acme-reader\", action == Action::\"select\", resource);",
    )
    .unwrap();
    let mut picked_up = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let reply = sql(&stack, &key, "SELECT * FROM acme.orders").await;
        if reply.status == 403 {
            assert!(
                reply.text().contains("select on dataset datafusion.acme.orders is not allowed"),
                "{}",
                reply.text()
            );
            picked_up = true;
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert!(picked_up, "the fixed policy file was not picked up within 10 s");
    assert!(during > 20, "the load ran only {during} requests");
}

#[tokio::test]
async fn flight_calls_the_gateway_cannot_read_are_refused() {
    let (stack, key, _) = stack(&shipped_policies()).await;
    let auth = [("x-api-key", key.as_str())];
    let framed = |flag: u8, message: &[u8]| {
        let mut body = vec![flag];
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
        bytes::Bytes::from(body)
    };
    // A compressed first message cannot be inspected: PERMISSION_DENIED (7), never forwarded.
    let head = stack.grpc_head("GetFlightInfo", &auth, framed(1, b"anything")).await;
    assert_eq!(head["grpc-status"], "7", "{head:?}");
    assert!(head["grpc-message"].to_str().unwrap().contains("compressed"), "{head:?}");
    // A body that ends inside its first message, or bytes that are not a FlightDescriptor:
    // INVALID_ARGUMENT (3).
    let mut cut = framed(0, b"0123456789").to_vec();
    cut.truncate(8);
    let head = stack.grpc_head("GetFlightInfo", &auth, cut.into()).await;
    assert_eq!(head["grpc-status"], "3", "{head:?}");
    let head = stack.grpc_head("GetFlightInfo", &auth, framed(0, b"\xff\xff\xff")).await;
    assert_eq!(head["grpc-status"], "3", "{head:?}");
    // A first message over the size limit is refused unread: RESOURCE_EXHAUSTED (8).
    let mut huge = vec![0u8];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    let head = stack.grpc_head("GetFlightInfo", &auth, huge.into()).await;
    assert_eq!(head["grpc-status"], "8", "{head:?}");
    // An RPC outside the Flight service: UNIMPLEMENTED (12).
    let head = stack.grpc_head("NoSuchRpc", &auth, framed(0, b"")).await;
    assert_eq!(head["grpc-status"], "12", "{head:?}");
}
