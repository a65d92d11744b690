//! Rows and columns under Cedar, end to end: the shipped policies (plus a column deny) decide
//! in the gateway, the engine enforces, and real clients (HTTP, pyarrow Flight SQL, ADBC) of
//! ten principals look for every raw value they must not see in every byte they get back
//! (`tests/python/data_policy.py`). The row filters are checked against Cedar itself: the rows
//! each principal receives are exactly those Cedar allows `select_row` on, one row at a time.

use crate::common::{self, Reply, Stack};
use gateway::config::{ApiKeyEntry, ApiKeysConfig, ClientAuth};
use gateway::internal::apikeys;

/// National ids are for compliance staff: everyone else may not even name the column.
const DENY_NATIONAL_ID: &str = r#"@id("national-id-for-compliance")
forbid(principal, action == Action::"select", resource is Column)
when { resource.tags.contains("pii.national_id") }
unless { principal in Group::"compliance" || principal in Group::"platform-admins" };
"#;

struct Caller {
    name: &'static str,
    groups: &'static [&'static str],
    tenant: Option<&'static str>,
    /// Which rows Cedar shows: a tenant, "all" or "none".
    rows: &'static str,
    unmask: &'static [&'static str],
    denied: &'static [&'static str],
}

const CALLERS: &[Caller] = &[
    Caller {
        name: "acme-analyst",
        groups: &["acme"],
        tenant: Some("acme"),
        rows: "acme",
        unmask: &[],
        denied: &["national_id"],
    },
    Caller {
        name: "globex-analyst",
        groups: &["globex"],
        tenant: Some("globex"),
        rows: "globex",
        unmask: &[],
        denied: &["national_id"],
    },
    Caller {
        name: "acme-support",
        groups: &["acme", "support"],
        tenant: Some("acme"),
        rows: "acme",
        unmask: &["email", "phone"],
        denied: &["national_id"],
    },
    Caller {
        name: "globex-support",
        groups: &["globex", "support"],
        tenant: Some("globex"),
        rows: "globex",
        unmask: &["email", "phone"],
        denied: &["national_id"],
    },
    Caller { name: "auditor", groups: &["auditors"], tenant: None, rows: "all", unmask: &[], denied: &["national_id"] },
    Caller {
        name: "compliance",
        groups: &["compliance", "acme"],
        tenant: Some("acme"),
        rows: "acme",
        unmask: &[],
        denied: &[],
    },
    Caller {
        name: "auditing-compliance",
        groups: &["compliance", "auditors"],
        tenant: None,
        rows: "all",
        unmask: &[],
        denied: &[],
    },
    Caller {
        name: "admin",
        groups: &["platform-admins"],
        tenant: None,
        rows: "all",
        unmask: &["email", "phone", "national_id"],
        denied: &[],
    },
    Caller { name: "tenantless", groups: &[], tenant: None, rows: "none", unmask: &[], denied: &["national_id"] },
    Caller {
        name: "acme-writer",
        groups: &["acme", "writers"],
        tenant: Some("acme"),
        rows: "acme",
        unmask: &[],
        denied: &["national_id"],
    },
];

#[tokio::test]
async fn ten_principals_see_only_their_rows_and_masked_columns_through_every_client() {
    let dir = tempfile::tempdir().unwrap();
    common::copy_shipped_policies(dir.path());
    std::fs::write(dir.path().join("55-national-id.cedar"), DENY_NATIONAL_ID).unwrap();
    let mut entries = Vec::new();
    let mut principals = Vec::new();
    for caller in CALLERS {
        let (key, entry) = api_key(caller.name, caller.groups, caller.tenant);
        entries.push(entry);
        principals.push(serde_json::json!({
            "name": caller.name, "key": key, "rows": caller.rows,
            "unmask": caller.unmask, "denied": caller.denied,
        }));
    }
    let policies = dir.path().to_path_buf();
    let stack = Stack::start_with(ClientAuth::Optional, move |c| {
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys: entries });
        c.authorization.policies = policies.into();
    })
    .await;
    let config = serde_json::json!({
        "http": format!("https://localhost:{}", stack.gateway.api_addr.port()),
        "flight": format!("grpc+tls://localhost:{}", stack.gateway.flight_addr.port()),
        "ca": stack.pki.ca(),
        "customers": concat!(env!("CARGO_MANIFEST_DIR"), "/../engine/demo/customers.csv"),
        "principals": principals,
    });
    let output = tokio::process::Command::from(testkit::python_command())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/data_policy.py"))
        .env("CONFIG", config.to_string())
        .output()
        .await
        .unwrap();
    let stdout = testkit::python_stdout(&output, "row and column policy checks");
    assert!(stdout.contains(&format!("{} passed, 0 failed", CALLERS.len() * 3)), "{stdout}");
}

/// Row policies with comparisons, `like`, `has`, a set, a permit per group and two forbids,
/// over a table of random rows.
const DEAL_POLICIES: &str = r#"@id("deals-own-tenant")
permit(principal, action == Action::"select_row", resource is Row::sales::deals)
when { principal has tenant && resource.tenant == principal.tenant && resource.amount < 900 };
@id("deals-eu-team")
permit(principal in Group::"eu", action == Action::"select_row", resource is Row::sales::deals)
when { resource has region && resource.region like "eu-*" };
@id("deals-partners")
permit(principal in Group::"partners", action == Action::"select_row", resource is Row::sales::deals)
when { ["t1", "t2"].contains(resource.tenant) && !(resource.amount > 500) };
@id("deals-big-for-finance-only")
forbid(principal, action == Action::"select_row", resource is Row::sales::deals)
when { resource.amount >= 950 } unless { principal in Group::"finance" };
@id("deals-archive-hidden")
forbid(principal, action == Action::"select_row", resource is Row::sales::deals)
when { resource has region && resource.region == "archive" };
"#;

const REGIONS: &[&str] = &["eu-west", "eu-north", "us-east", "archive", ""];
const TENANTS: &[&str] = &["t1", "t2", "t3", "t4"];
const GROUPS: &[&str] = &["eu", "finance", "partners"];
const BOUNDARIES: &[i64] = &[499, 500, 501, 899, 900, 901, 949, 950, 951];

/// xorshift64: the same rows and principals on every run, varied by the seed.
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[tokio::test]
async fn the_rows_returned_are_exactly_the_rows_cedar_allows_through_every_statement_shape() {
    let dir = tempfile::tempdir().unwrap();
    let mut random = Random(0x5eed_cafe_f00d);
    // 60 random rows.
    let mut csv = String::from("id,tenant,region,amount\n");
    let mut rows = Vec::new();
    for id in 1..=60 {
        let tenant = TENANTS[random.below(TENANTS.len())];
        let region = REGIONS[random.below(REGIONS.len())];
        // Half the amounts on the policies' boundaries, where `<` and `<=` differ.
        let amount = match random.below(2) {
            0 => BOUNDARIES[random.below(BOUNDARIES.len())],
            _ => random.below(1000) as i64,
        };
        csv.push_str(&format!("{id},{tenant},{region},{amount}\n"));
        rows.push((id, tenant, region, amount));
    }
    std::fs::write(dir.path().join("deals.csv"), csv).unwrap();
    let engine_yaml = dir.path().join("engine.yaml");
    std::fs::write(
        &engine_yaml,
        "datasets:\n  - {name: sales.deals, path: deals.csv, classification: shared}\n\
         views:\n  - {name: sales.deal_ids, sql: SELECT id FROM sales.deals, classification: shared}\n\
         columns:\n  sales.deals:\n    id: {type: long}\n    tenant: {type: string}\n    region: {type: string, nullable: true}\n    amount: {type: long}\n",
    )
    .unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    common::copy_shipped_policies(&policies);
    let schema = std::fs::read_to_string(policies.join("schema.cedarschema")).unwrap();
    let schema = schema
        .replace("resource: [Row::demo::customers]", "resource: [Row::demo::customers, Row::sales::deals]")
        + "namespace Row::sales { entity deals = { id: Long, tenant: String, region?: String, amount: Long }; }\n";
    std::fs::write(policies.join("schema.cedarschema"), schema).unwrap();
    std::fs::write(policies.join("70-deals.cedar"), DEAL_POLICIES).unwrap();
    // 24 random principals (a tenant or none, any groups).
    let mut entries = Vec::new();
    let mut callers = Vec::new();
    for i in 0..24 {
        let tenant = [TENANTS, &[""]].concat()[random.below(TENANTS.len() + 1)];
        let groups: Vec<&str> = GROUPS.iter().copied().filter(|_| random.below(2) == 1).collect();
        let name = format!("caller-{i}");
        let (key, entry) = api_key(&name, &groups, (!tenant.is_empty()).then_some(tenant));
        entries.push(entry);
        callers.push((name, key, tenant, groups.iter().map(|g| g.to_string()).collect::<Vec<_>>()));
    }
    let engine_config = engine::config::Config::from_file(&engine_yaml).unwrap();
    let (policies_dir, engine_file) = (policies.clone(), engine_yaml.clone());
    let stack = Stack::start_with_engine(ClientAuth::Optional, engine_config, move |c| {
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys: entries });
        c.authorization.policies = policies_dir.into();
        c.authorization.engine_config = Some(engine_file.into());
    })
    .await;
    // What each caller gets, by every shape; all shapes must agree.
    let ids = |reply: &Reply, column: &str| -> Vec<i64> {
        assert_eq!(reply.status, 200, "{}", reply.text());
        let mut ids: Vec<i64> = reply.json().as_array().unwrap().iter().map(|r| r[column].as_i64().unwrap()).collect();
        ids.sort_unstable();
        ids
    };
    let mut cases = Vec::new();
    for (name, key, tenant, groups) in &callers {
        let visible = ids(&sql(&stack, key, "SELECT id FROM sales.deals").await, "id");
        for shape in [
            "WITH deals AS (SELECT * FROM sales.deals) SELECT id FROM deals",
            "SELECT id FROM sales.deal_ids",
            "SELECT d.id FROM sales.deals d WHERE EXISTS (SELECT 1 FROM sales.deals e WHERE e.id = d.id)",
            "SELECT id FROM sales.deals WHERE id IN (SELECT id FROM sales.deals WHERE amount >= 0)",
            "SELECT id FROM (SELECT id, row_number() OVER (ORDER BY amount) AS r FROM sales.deals) AS w",
        ] {
            assert_eq!(ids(&sql(&stack, key, shape).await, "id"), visible, "{name}: {shape}");
        }
        let doubled =
            ids(&sql(&stack, key, "SELECT id FROM sales.deals UNION ALL SELECT id FROM sales.deals").await, "id");
        assert_eq!(doubled.len(), visible.len() * 2, "{name}");
        let counted = sql(&stack, key, "SELECT count(*) OVER () AS n FROM sales.deals LIMIT 1").await;
        let counted = counted.json().as_array().unwrap().first().map_or(0, |r| r["n"].as_i64().unwrap());
        assert_eq!(counted as usize, visible.len(), "{name}");
        // The oracle: Cedar, asked per row with the concrete row, must agree with every id.
        for (id, row_tenant, region, amount) in &rows {
            let mut attrs = serde_json::json!({"id": id, "tenant": row_tenant, "amount": amount});
            if !region.is_empty() {
                attrs["region"] = serde_json::json!(region);
            }
            let mut principal = serde_json::json!({"type": "Service", "id": name, "groups": groups});
            if !tenant.is_empty() {
                principal["tenant"] = serde_json::json!(tenant);
            }
            let expect = if visible.contains(&i64::from(*id)) { "allow" } else { "deny" };
            cases.push(serde_json::json!({
                "name": format!("{name} row {id}"), "principal": principal, "action": "select_row",
                "resource": {"type": "Row::sales::deals", "attrs": attrs}, "expect": expect,
            }));
        }
    }
    let allowed = cases.iter().filter(|c| c["expect"] == "allow").count();
    assert!(allowed > 20 && allowed < cases.len() - 20, "the random principals see some rows, not all: {allowed}");
    std::fs::create_dir_all(policies.join("tests")).unwrap();
    std::fs::write(policies.join("tests").join("oracle.json"), serde_json::to_string(&cases).unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["policy", "test", "--engine-config", engine_yaml.to_str().unwrap(), policies.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "Cedar disagrees with the rows the engine returned:\n{stdout}");
    assert!(stdout.contains(&format!("{} passed, 0 failed", cases.len())), "{stdout}");
}

/// A shadow set that would unmask emails for everyone: reported as widening, never enforced.
#[tokio::test]
async fn a_shadow_set_that_unmasks_a_column_is_reported_and_never_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let (enforced, shadow) = (dir.path().join("enforced"), dir.path().join("shadow"));
    for folder in [&enforced, &shadow] {
        std::fs::create_dir_all(folder).unwrap();
        common::copy_shipped_policies(folder);
    }
    std::fs::write(
        shadow.join("55-unmask-emails.cedar"),
        "@id(\"unmask-emails\")\npermit(principal, action == Action::\"unmask\", resource is Column) when { resource.tags.contains(\"pii.email\") };\n",
    )
    .unwrap();
    let (key, entry) = api_key("acme-analyst", &["acme"], Some("acme"));
    let audit = dir.path().join("audit.log");
    let audit_file = audit.clone();
    let stack = Stack::start_with(ClientAuth::Optional, move |c| {
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys: vec![entry] });
        c.authorization.policies = enforced.into();
        c.authorization.shadow = Some(shadow.into());
        c.audit.sinks = vec![audit_sink(audit_file)];
    })
    .await;
    let reply = sql(&stack, &key, "SELECT name, email FROM demo.customers ORDER BY customer_id").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("***@lovelace.example") && !reply.text().contains("ada@"), "{}", reply.text());
    let metrics = gateway::internal::render_metrics(0);
    assert!(metrics.contains(r#"gateway_authz_shadow_data_changes_total{change="widens"}"#), "{metrics}");
    common::wait_for("the audit event", || {
        common::read_events(&audit).iter().any(|e| e["unmapped"]["authorization"]["shadow_data_change"] == "widens")
    })
    .await;
    let events = common::read_events(&audit);
    let event = events.iter().find(|e| e["unmapped"]["authorization"]["shadow_data_change"] == "widens").unwrap();
    let theirs = &event["unmapped"]["authorization"]["shadow_data_policies"][0];
    assert!(!theirs["masked"].as_array().unwrap().iter().any(|m| m["column"] == "email"), "{event}");
    let ours = &event["unmapped"]["authorization"]["data_policies"][0];
    assert!(ours["masked"].as_array().unwrap().iter().any(|m| m["column"] == "email"), "{event}");
    // `policy replay` of the recorded call against the candidate reports the same widening;
    // against the enforced set itself, nothing.
    let replay = |candidate: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["policy", "replay", "--format", "json", "--events", audit.to_str().unwrap()])
            .args(["--engine-config", common::embedded_engine_config().to_str().unwrap()])
            .args(["--dir", candidate.to_str().unwrap()])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    let report = replay(&dir.path().join("shadow"));
    let flips = report["flips"].as_array().unwrap();
    assert!(
        flips.iter().any(|f| f["direction"] == "columns_widen"
            && f["resource"] == "Dataset::\"datafusion.demo.customers\""
            && f["principal"] == "Service::\"acme-analyst\""),
        "{report}"
    );
    assert_eq!(replay(&dir.path().join("enforced"))["flipped"], 0);
}

/// Access history: every query's audit event records what it read as written and through
/// views, the row filter's policies, the rows the client received (HTTP JSON, CSV and Arrow,
/// pyarrow Flight SQL, ADBC), and on a refusal the column it was refused for; the client
/// receives none of the engine's report.
#[tokio::test]
async fn every_query_event_records_what_it_read_and_the_rows_the_client_received() {
    let dir = tempfile::tempdir().unwrap();
    common::copy_shipped_policies(dir.path());
    std::fs::write(dir.path().join("55-national-id.cedar"), DENY_NATIONAL_ID).unwrap();
    let (key, entry) = api_key("acme-analyst", &["acme"], Some("acme"));
    let audit = dir.path().join("audit.log");
    let (policies, audit_file) = (dir.path().to_path_buf(), audit.clone());
    let stack = Stack::start_with(ClientAuth::Optional, move |c| {
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys: vec![entry] });
        c.authorization.policies = policies.into();
        c.audit.sinks = vec![audit_sink(audit_file)];
    })
    .await;
    let statements = serde_json::json!({
        "join": "SELECT c.name, o.amount FROM demo.customers c JOIN my_orders o ON c.customer_id = o.customer_id WHERE o.status = 'shipped'",
        "big": "SELECT unnest(range(0, 100000)) AS n",
    });
    let config = serde_json::json!({
        "http": format!("https://localhost:{}", stack.gateway.api_addr.port()),
        "flight": format!("grpc+tls://localhost:{}", stack.gateway.flight_addr.port()),
        "ca": stack.pki.ca(),
        "key": key,
        "statements": statements,
    });
    let output = tokio::process::Command::from(testkit::python_command())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/access_history.py"))
        .env("CONFIG", config.to_string())
        .output()
        .await
        .unwrap();
    let stdout = testkit::python_stdout(&output, "access history clients");
    let received: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(received["big-arrow"], 100_000, "{stdout}");
    let refused = stack
        .client(None)
        .request(
            stack.gateway.api_addr,
            "POST",
            "/v1/sql",
            &[("x-api-key", &key), ("x-request-id", "denied-column")],
            "SELECT name FROM demo.customers ORDER BY national_id",
        )
        .await
        .unwrap();
    assert_eq!(refused.status, 403, "{}", refused.text());
    for reply in [&refused, &sql(&stack, &key, "SELECT name FROM demo.customers").await] {
        assert!(!reply.headers.keys().any(|k| k.as_str().starts_with("x-portcullis-")), "{:?}", reply.headers);
    }
    // Over gRPC too, the engine's report stays in the gateway: a DoGet's response metadata and
    // trailers carry no x-portcullis-* key, only the status.
    {
        use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
        use prost::Message;
        let mut client = arrow_flight::flight_service_client::FlightServiceClient::new(
            common::grpc_channel(&stack, stack.gateway.flight_addr.port()).await,
        );
        fn with_key<T>(message: T, key: &str) -> tonic::Request<T> {
            let mut request = tonic::Request::new(message);
            request.metadata_mut().insert("x-api-key", key.parse().unwrap());
            request
        }
        let command = CommandStatementQuery { query: "SELECT name FROM demo.customers".into(), transaction_id: None };
        let descriptor = arrow_flight::FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let info = client.get_flight_info(with_key(descriptor, &key)).await.unwrap().into_inner();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let response = client.do_get(with_key(ticket, &key)).await.unwrap();
        let ours = |map: &tonic::metadata::MetadataMap| {
            let names = map.keys().map(|key| match key {
                tonic::metadata::KeyRef::Ascii(key) => key.as_str().to_string(),
                tonic::metadata::KeyRef::Binary(key) => key.as_str().to_string(),
            });
            names.filter(|name| name.starts_with("x-portcullis-")).count()
        };
        assert_eq!(ours(response.metadata()), 0, "{:?}", response.metadata());
        let mut stream = response.into_inner();
        while stream.message().await.unwrap().is_some() {}
        let trailers = stream.trailers().await.unwrap().unwrap_or_default();
        assert_eq!(ours(&trailers), 0, "{trailers:?}");
    }
    // The event that answered each call with the engine's report: the POST, or the Flight
    // DoGet that streamed the rows (ADBC also fetches the server's SqlInfo, which reports none).
    let answered = |events: &[serde_json::Value], id: &str| -> Option<serde_json::Value> {
        events
            .iter()
            .find(|e| {
                e["http_request"]["uid"] == id
                    && matches!(e["api"]["operation"].as_str(), Some("DoGet" | "POST /v1/sql"))
                    && e["unmapped"]["access"].is_object()
            })
            .cloned()
    };
    common::wait_for("every call's event", || {
        let events = common::read_events(&audit);
        received.keys().chain(["denied-column".to_string()].iter()).all(|id| answered(&events, id).is_some())
    })
    .await;
    let events = common::read_events(&audit);
    for (id, rows) in &received {
        let event = answered(&events, id).unwrap();
        assert_eq!(&event["unmapped"]["access"]["rows"], rows, "{id}: {event}");
    }
    let joined = answered(&events, "join-json").unwrap();
    let read = |dataset: &str, columns: &[&str]| serde_json::json!({"dataset": dataset, "columns": columns});
    assert_eq!(
        joined["unmapped"]["access"]["read"],
        serde_json::json!([
            read("datafusion.demo.customers", &["customer_id", "name"]),
            read("datafusion.public.my_orders", &["amount", "customer_id", "status"]),
        ]),
        "{joined}"
    );
    // Underneath, the view's own filter reads `tenant` too; the row policy's does not count.
    assert_eq!(
        joined["unmapped"]["access"]["base"],
        serde_json::json!([
            read("datafusion.demo.customers", &["customer_id", "name"]),
            read("datafusion.demo.orders", &["amount", "customer_id", "status", "tenant"]),
        ]),
        "{joined}"
    );
    let decided = &joined["unmapped"]["authorization"]["data_policies"][0];
    assert_eq!(decided["row_policies"], serde_json::json!(["customers-of-own-tenant"]), "{joined}");
    let flight = answered(&events, "join-flight").unwrap();
    assert_eq!(flight["unmapped"]["access"]["base"], joined["unmapped"]["access"]["base"], "{flight}");
    let denied = answered(&events, "denied-column").unwrap();
    assert_eq!(
        denied["unmapped"]["access"]["denied"],
        serde_json::json!({"dataset": "datafusion.demo.customers", "column": "national_id"}),
        "{denied}"
    );
}

/// A column the engine's file tags by pattern (`nation*`), not by name: the gateway decides
/// for the pattern by its tags, the engine holds the decision for the column: masked under the
/// shipped policies, refused under a column deny; never shown raw.
#[tokio::test]
async fn a_column_tagged_by_a_pattern_is_masked_or_denied_through_the_gateway() {
    let declared = "    national_id: {tags: [pii.national_id]}\n";
    let shipped = std::fs::read_to_string(common::embedded_engine_config()).unwrap();
    assert!(shipped.contains(declared));
    let yaml = shipped.replace(declared, "    \"nation*\": {tags: [pii.national_id]}\n");
    let raw: Vec<String> =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../engine/demo/customers.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .filter_map(|line| line.rsplit(',').next().map(str::to_string))
            .collect();
    assert!(raw.len() >= 6 && raw.contains(&"AB123456C".to_string()), "{raw:?}");
    for deny in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        common::copy_shipped_policies(dir.path());
        if deny {
            std::fs::write(dir.path().join("55-national-id.cedar"), DENY_NATIONAL_ID).unwrap();
        }
        let engine_file = dir.path().join("engine.yaml");
        std::fs::write(&engine_file, &yaml).unwrap();
        let (key, entry) = api_key("auditor", &["auditors"], None);
        let policies = dir.path().to_path_buf();
        let engine_config = engine::config::Config::from_yaml(&yaml, "pattern config").unwrap();
        let stack = Stack::start_with_engine(ClientAuth::Optional, engine_config, move |c| {
            c.auth.api_keys = Some(ApiKeysConfig { file: None, keys: vec![entry] });
            c.authorization.policies = policies.into();
            c.authorization.engine_config = Some(engine_file.into());
        })
        .await;
        for query in ["SELECT name, national_id FROM demo.customers", "SELECT * FROM demo.customers"] {
            let reply = sql(&stack, &key, query).await;
            let text = reply.text();
            assert!(!raw.iter().any(|value| text.contains(value.as_str())), "{query}: {text}");
            if deny && query.contains("national_id") {
                assert_eq!(reply.status, 403, "{text}");
                assert!(text.contains("column_forbidden") && text.contains("national_id"), "{text}");
            } else {
                assert_eq!(reply.status, 200, "{query}: {text}");
                let rows = reply.json();
                // Every customer (auditors see every row), national ids hashed or left out.
                assert_eq!(rows.as_array().unwrap().len(), raw.len(), "{text}");
                let national = &rows[0]["national_id"];
                assert!(if deny { national.is_null() } else { national.as_str().unwrap().len() == 64 }, "{text}");
            }
        }
    }
}

/// An API key for `name` in `groups` of `tenant`: the key, and its entry in the config.
fn api_key(name: &str, groups: &[&str], tenant: Option<&str>) -> (String, ApiKeyEntry) {
    let key = apikeys::generate().unwrap();
    let entry = ApiKeyEntry {
        name: name.into(),
        hash: key.hash,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        tenant: tenant.map(Into::into),
        expires: None,
    };
    (key.key, entry)
}

/// The audit sink a test reads back: a file at `path`, never rotated or synced.
fn audit_sink(path: std::path::PathBuf) -> gateway::config::SinkConfig {
    gateway::config::SinkConfig::File {
        path: path.into(),
        max_bytes: 1 << 30,
        keep: 1,
        fsync: gateway::config::FsyncPolicy::Never,
    }
}

async fn sql(stack: &Stack, key: &str, sql: &str) -> Reply {
    stack.client(None).request(stack.gateway.api_addr, "POST", "/v1/sql", &[("x-api-key", key)], sql).await.unwrap()
}
