//! Changing policies without fear, end to end: a shadow set decided beside the enforced one
//! under load (and a broken shadow file refused while it runs), and `gateway policy replay`
//! of this test's own HTTP and Flight SQL traffic against candidate sets.
//!
//! The shadow test is the only one in this binary whose gateway has a shadow set: it asserts
//! exact counts of the process-wide disagreement metric.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Reply, Stack, metrics_text, read_events, wait_for};
use gateway::config::{ApiKeyEntry, ApiKeysConfig, AuditConfig, ClientAuth, FsyncPolicy, SinkConfig};
use gateway::internal::apikeys;
use serde_json::Value;

const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway");

/// The shipped set with its one tenant-read policy split into a grant per tenant, so a
/// candidate can take one tenant's away.
fn per_tenant_policies(dir: &Path, tenants: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    common::copy_shipped_policies(dir);
    let mut text = String::new();
    for tenant in tenants {
        text.push_str(&format!(
            "@id(\"tenant-read-{tenant}\")\npermit(principal, action == Action::\"select\", resource)\n\
             when {{ principal has tenant && principal.tenant == \"{tenant}\" && resource has tenant && resource.tenant == \"{tenant}\" }};\n"
        ));
    }
    std::fs::write(dir.join("20-tenant-isolation.cedar"), text).unwrap();
    dir.to_path_buf()
}

struct Keys {
    acme: String,
    globex: String,
}

/// A stack with `policies`, two API keys (`acme-reader`, `globex-reader`, each its tenant),
/// audit events in `log`, and `adjust` applied last.
async fn stack(policies: &Path, log: &Path, adjust: impl FnOnce(&mut gateway::config::Config)) -> (Stack, Keys) {
    let acme = apikeys::generate().unwrap();
    let globex = apikeys::generate().unwrap();
    let entry = |name: &str, hash: &str, tenant: &str| ApiKeyEntry {
        name: name.into(),
        hash: hash.into(),
        groups: vec![tenant.into()],
        tenant: Some(tenant.into()),
        expires: None,
    };
    let keys = vec![entry("acme-reader", &acme.hash, "acme"), entry("globex-reader", &globex.hash, "globex")];
    let (policies, log) = (policies.to_path_buf(), log.to_path_buf());
    let stack = Stack::start_with(ClientAuth::Optional, move |c| {
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys });
        c.authorization.policies = policies.into();
        c.audit = AuditConfig {
            sinks: vec![SinkConfig::File { path: log.into(), max_bytes: 1 << 30, keep: 1, fsync: FsyncPolicy::Batch }],
            ..Default::default()
        };
        adjust(c);
    })
    .await;
    (stack, Keys { acme: acme.key, globex: globex.key })
}

async fn sql(stack: &Stack, key: &str, sql: &str) -> Reply {
    stack.client(None).request(stack.gateway.api_addr, "POST", "/v1/sql", &[("x-api-key", key)], sql).await.unwrap()
}

/// One series' value (0 when absent).
fn series(metrics: &str, name_and_labels: &str) -> u64 {
    metrics.lines().find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok()).unwrap_or(0)
}

/// The calls the load sends: (which key, SQL, the enforced status, whether the shadow set
/// (no globex grant) decides it otherwise).
const MIX: [(bool, &str, u16, bool); 4] = [
    (false, "SELECT count(*) AS n FROM acme.orders", 200, false),
    (true, "SELECT count(*) AS n FROM globex.orders", 200, true),
    (true, "SELECT count(*) AS n FROM acme.orders", 403, false),
    (false, "SELECT count(*) AS n FROM globex.customers", 403, false),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_set_is_decided_beside_the_enforced_one_and_never_changes_an_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let enforced = per_tenant_policies(&dir.path().join("enforced"), &["acme", "globex"]);
    let shadow = per_tenant_policies(&dir.path().join("shadow"), &["acme"]);
    let log = dir.path().join("audit.log");
    let shadow_dir = shadow.clone();
    let (stack, keys) = stack(&enforced, &log, move |c| c.authorization.shadow = Some(shadow_dir.into())).await;
    let (stack, keys) = (Arc::new(stack), Arc::new(keys));
    let sent: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
    let (failed, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (stack, keys, sent, failed, stop) =
            (Arc::clone(&stack), Arc::clone(&keys), Arc::clone(&sent), Arc::clone(&failed), Arc::clone(&stop));
        load.push(tokio::spawn(async move {
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                let (globex, query, status, _) = MIX[i % MIX.len()];
                let reply = sql(&stack, if globex { &keys.globex } else { &keys.acme }, query).await;
                sent[i % MIX.len()].fetch_add(1, Ordering::Relaxed);
                if reply.status != status {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("{query}: {} {}", reply.status, reply.text());
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    // A broken shadow file: refused, and the old shadow set keeps deciding (and counting).
    std::fs::write(shadow.join("70-broken.cedar"), "permit(principal, action resource);").unwrap();
    let rejected = "gateway_reloads_total{what=\"shadow_policies\",result=\"rejected\"}";
    let deadline = Instant::now() + Duration::from_secs(20);
    while series(&metrics_text(stack.gateway.health_addr).await, rejected) == 0 {
        assert!(Instant::now() < deadline, "the broken shadow file was not refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let disagreements = "gateway_authz_shadow_disagreements_total{enforced=\"allow\",shadow=\"deny\"}";
    let before = series(&metrics_text(stack.gateway.health_addr).await, disagreements);
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let metrics = metrics_text(stack.gateway.health_addr).await;
    let sent: Vec<usize> = sent.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "the shadow set changed an outcome");
    assert!(sent.iter().sum::<usize>() > 40, "the load ran only {sent:?}");
    // Exactly the calls the shadow set decides otherwise, cached repeats included.
    assert_eq!(series(&metrics, disagreements), sent[1] as u64, "{metrics}");
    assert!(series(&metrics, disagreements) > before, "the old shadow set stopped counting: {metrics}");
    assert_eq!(
        series(&metrics, "gateway_authz_shadow_disagreements_total{enforced=\"deny\",shadow=\"allow\"}"),
        0,
        "{metrics}"
    );
    // Every event: the enforced answer, and the shadow one exactly where they differ.
    let total = sent.iter().sum::<usize>();
    wait_for("every call's event", || read_events(&log).iter().filter(|e| e["class_uid"] == 6003).count() >= total)
        .await;
    let events = read_events(&log);
    let mut shadowed = 0;
    for event in events.iter().filter(|e| e["class_uid"] == 6003) {
        let authorization = &event["unmapped"]["authorization"];
        let globex_reads_globex = event["actor"]["user"]["uid"] == "globex-reader"
            && event["resources"][0]["name"] == "datafusion.globex.orders";
        if globex_reads_globex {
            shadowed += 1;
            assert_eq!(event["http_response"]["code"], 200, "{event}");
            assert_eq!(authorization["shadow"]["decision"], "deny", "{event}");
            assert_eq!(authorization["shadow"]["refused"], 1, "{event}");
            assert_eq!(event["unmapped"]["decision"], "allow", "{event}");
            assert_eq!(event["actor"]["authorizations"][0]["decision"], "Allowed", "{event}");
        } else {
            assert!(authorization.get("shadow").is_none(), "{event}");
        }
    }
    assert_eq!(shadowed, sent[1], "events with the shadow answer");
}

#[tokio::test]
async fn a_broken_shadow_set_stops_the_gateway_from_starting_and_names_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let shadow = per_tenant_policies(&dir.path().join("shadow"), &["acme"]);
    std::fs::write(shadow.join("70-broken.cedar"), "permit(principal, action, resource) when { resource.nope };")
        .unwrap();
    let pki = common::Pki::new();
    let (stamp_key, _) = common::stamp_keys(pki.path());
    let mut config = common::gateway_config(
        &pki,
        ClientAuth::Optional,
        "http://127.0.0.1:1".into(),
        "http://127.0.0.1:1".into(),
        stamp_key,
    );
    config.authorization.shadow = Some(shadow.into());
    let Err(error) = gateway::server::prepare(config) else { panic!("a broken shadow set was accepted") };
    let error = error.to_string();
    assert!(error.contains("authorization.shadow") && error.contains("70-broken.cedar"), "{error}");
}

/// `gateway policy replay ARGS --format json`: exit code and report.
fn replay(args: &[&std::ffi::OsStr]) -> (i32, Value, String) {
    let output =
        std::process::Command::new(GATEWAY).args(["policy", "replay", "--format", "json"]).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap(), report, format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)))
}

/// Flight SQL through the gateway with ADBC, as each key: reads of its own tenant's orders.
async fn flight_traffic(stack: &Stack, keys: &Keys) {
    let script = r#"
import os, adbc_driver_flightsql.dbapi as f
for key, table in ((os.environ["ACME_KEY"], "acme.orders"), (os.environ["GLOBEX_KEY"], "globex.orders")):
    kw = {"adbc.flight.sql.client_option.tls_root_certs": open(os.environ["CA_FILE"]).read(),
          "adbc.flight.sql.rpc.call_header.x-api-key": key}
    with f.connect(os.environ["FLIGHT_URI"], db_kwargs=kw, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) AS n FROM {table}")
        assert cur.fetch_arrow_table().to_pylist()[0]["n"] > 0
print("flight ok")
"#;
    let output = tokio::process::Command::from(testkit::python_command())
        .args(["-c", script])
        .env("FLIGHT_URI", format!("grpc+tls://localhost:{}", stack.gateway.flight_addr.port()))
        .env("CA_FILE", stack.pki.ca())
        .env("ACME_KEY", &keys.acme)
        .env("GLOBEX_KEY", &keys.globex)
        .output()
        .await
        .unwrap();
    testkit::python_stdout(&output, "the ADBC traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_traffic_replays_against_candidate_sets() {
    let dir = tempfile::tempdir().unwrap();
    let enforced = per_tenant_policies(&dir.path().join("enforced"), &["acme", "globex"]);
    let log = dir.path().join("audit.log");
    let (stack, keys) = stack(&enforced, &log, |_| {}).await;
    // HTTP: reads allowed and refused for both tenants, one call without a credential and
    // one the gateway cannot classify (neither reaches Cedar).
    for (key, query, status) in [
        (&keys.acme, "SELECT * FROM acme.orders", 200),
        (&keys.acme, "SELECT * FROM globex.orders", 403),
        (&keys.globex, "SELECT * FROM globex.orders", 200),
        (&keys.globex, "SELECT * FROM globex.customers", 200),
        (&keys.globex, "SELECT * FROM acme.customers", 403),
        (&keys.globex, "SELEKT nonsense", 400),
    ] {
        let reply = sql(&stack, key, query).await;
        assert_eq!(reply.status, status, "{query}: {}", reply.text());
    }
    assert_eq!(sql(&stack, "not-a-key", "SELECT 1").await.status, 401);
    flight_traffic(&stack, &keys).await;
    wait_for("the Flight calls' events", || {
        read_events(&log).iter().filter(|e| e["api"]["operation"] == "DoGet").count() >= 2
    })
    .await;
    let events = read_events(&log);
    let decided: Vec<&Value> = events.iter().filter(|e| e["unmapped"]["authorization"].is_object()).collect();
    // What a candidate without globex's grant must flip: globex's allowed reads of globex
    // datasets (HTTP and the Flight call that planned the query), by dataset.
    let mut expected: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for event in &decided {
        let requests = event["unmapped"]["authorization"]["requests"].as_array().unwrap();
        let globex_dataset = requests.iter().find_map(|r| r["dataset"].as_str().filter(|d| d.contains(".globex.")));
        if event["actor"]["user"]["uid"] == "globex-reader"
            && event["unmapped"]["decision"] == "allow"
            && let Some(dataset) = globex_dataset
        {
            expected.entry(dataset.to_string()).or_default().push(event["http_request"]["uid"].as_str().unwrap());
        }
    }
    assert_eq!(expected["datafusion.globex.orders"].len(), 2, "HTTP and Flight: {expected:?}");
    assert_eq!(expected["datafusion.globex.customers"].len(), 1, "{expected:?}");
    assert!(decided.iter().any(|e| e["api"]["service"]["name"] == "flight"), "no decided Flight call");

    // (a) The same set: nothing flips.
    let (code, report, output) =
        replay(&["--events".as_ref(), log.as_os_str(), "--dir".as_ref(), enforced.as_os_str()]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(report["replayed"], decided.len(), "{output}");
    assert_eq!(report["flipped"], 0, "{output}");
    assert_eq!(report["problems"]["count"], 0, "{output}");
    assert!(report["undecided"].as_u64().unwrap() >= 2, "the 401 and the bad SQL: {output}");

    // (b) Without globex's grant: exactly globex's allowed reads flip to deny, by dataset,
    // each with an example request id. Read from a gzip copy in a folder of rotated files.
    let candidate = per_tenant_policies(&dir.path().join("candidate"), &["acme"]);
    let rotated = dir.path().join("rotated");
    std::fs::create_dir_all(&rotated).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &std::fs::read(&log).unwrap()).unwrap();
    std::fs::write(rotated.join("audit.log.1"), gz.finish().unwrap()).unwrap();
    std::fs::write(rotated.join("audit.log"), "").unwrap();
    let (code, report, output) =
        replay(&["--events".as_ref(), rotated.as_os_str(), "--dir".as_ref(), candidate.as_os_str()]);
    assert_eq!(code, 3, "{output}");
    assert_eq!(report["replayed"], decided.len(), "{output}");
    let flips = report["flips"].as_array().unwrap();
    assert_eq!(flips.len(), expected.len(), "{output}");
    for flip in flips {
        assert_eq!(flip["direction"], "allow_to_deny", "{flip}");
        assert_eq!(flip["principal"], "Service::\"globex-reader\"", "{flip}");
        assert_eq!(flip["action"], "select", "{flip}");
        let dataset = flip["resource"].as_str().unwrap().trim_start_matches("Dataset::\"").trim_end_matches('"');
        let ids = &expected[dataset];
        assert_eq!(flip["requests"], ids.len(), "{flip}");
        assert_eq!(flip["example_request_id"], ids[0], "{flip}");
    }
    // The text report names them too.
    let text = std::process::Command::new(GATEWAY)
        .args(["policy", "replay", "--events"])
        .arg(&log)
        .arg("--dir")
        .arg(&candidate)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("allow → deny: 3 calls"), "{text}");
    assert!(
        text.contains("Service::\"globex-reader\" select on Dataset::\"datafusion.globex.orders\": 2 calls"),
        "{text}"
    );
    assert!(text.contains("deny → allow: 0 calls"), "{text}");

    // (c) The other way: a grant that lets acme read globex's orders flips acme's refusal.
    let opened = per_tenant_policies(&dir.path().join("opened"), &["acme", "globex"]);
    std::fs::write(
        opened.join("80-grant.cedar"),
        "@id(\"acme-reads-globex-orders\")\npermit(principal == Service::\"acme-reader\", action == Action::\"select\", resource == Dataset::\"datafusion.globex.orders\");\n",
    )
    .unwrap();
    let (code, report, output) = replay(&["--events".as_ref(), log.as_os_str(), "--dir".as_ref(), opened.as_os_str()]);
    assert_eq!(code, 3, "{output}");
    assert_eq!(report["flipped"], 1, "{output}");
    assert_eq!(report["flips"][0]["direction"], "deny_to_allow", "{output}");
    assert_eq!(report["flips"][0]["principal"], "Service::\"acme-reader\"", "{output}");
    assert_eq!(report["flips"][0]["resource"], "Dataset::\"datafusion.globex.orders\"", "{output}");

    // (d) Lines that cannot be replayed are counted and named; exit 1 for them only with --strict.
    let damaged = dir.path().join("damaged.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap();
    // A foreign line, a line longer than any event (17 MiB), then a torn last line.
    let huge = "x".repeat(17 << 20);
    std::fs::write(
        &damaged,
        format!("{text}{{\"message\":\"from another program\"}}\n{huge}\n{}", &last[..last.len() / 2]),
    )
    .unwrap();
    let args = ["--events".as_ref(), damaged.as_os_str(), "--dir".as_ref(), enforced.as_os_str()];
    let (code, report, output) = replay(&args);
    assert_eq!(code, 0, "{output}");
    // Another program's JSON is skipped (not ours, by metadata.product.name), not a problem.
    assert_eq!((&report["problems"]["count"], &report["skipped"]), (&Value::from(2), &Value::from(1)), "{output}");
    assert_eq!(report["replayed"], decided.len(), "{output}");
    let lines = text.lines().count();
    let named = report["problems"]["lines"].to_string();
    assert!(named.contains(&format!("damaged.log:{}: a line over 16 MiB", lines + 2)), "{named}");
    assert!(named.contains(&format!("damaged.log:{}: not a JSON line (torn", lines + 3)), "{named}");
    let (code, _, output) = replay(&[args.as_slice(), &["--strict".as_ref()]].concat());
    assert_eq!(code, 1, "{output}");

    // (e) A time window that holds none of it, and a file that is not there.
    let (code, report, output) =
        replay(&[args.as_slice(), &["--since".as_ref(), "2999-01-01T00:00:00Z".as_ref()]].concat());
    assert_eq!(
        (code, &report["replayed"], &report["outside_window"]),
        (0, &Value::from(0), &Value::from(decided.len())),
        "{output}"
    );
    // (f) What `kubectl logs` gives (events on stdout between log lines), on standard input:
    // the same flips as from the file, the log lines skipped.
    let mut interleaved = String::new();
    for (i, line) in text.lines().enumerate() {
        interleaved
            .push_str(&format!("2026-12-07T10:00:{:02}.000000Z  INFO gateway::server: serving request={i}\n", i % 60));
        interleaved.push_str(line);
        interleaved.push('\n');
    }
    let from_file = replay(&["--events".as_ref(), log.as_os_str(), "--dir".as_ref(), candidate.as_os_str()]);
    let mut piped = std::process::Command::new(GATEWAY)
        .args(["policy", "replay", "--format", "json", "--events", "-", "--dir"])
        .arg(&candidate)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut piped.stdin.take().unwrap(), interleaved.as_bytes()).unwrap();
    let piped = piped.wait_with_output().unwrap();
    let from_stdin: Value = serde_json::from_slice(&piped.stdout).unwrap();
    assert_eq!((from_file.0, piped.status.code()), (3, Some(3)), "{from_stdin}");
    assert_eq!(from_stdin["flips"], from_file.1["flips"], "{from_stdin}");
    assert_eq!(from_stdin["replayed"], from_file.1["replayed"]);
    assert_eq!(from_stdin["skipped"], text.lines().count(), "{from_stdin}");
    assert_eq!(from_stdin["problems"]["count"], 0, "{from_stdin}");

    let missing = dir.path().join("missing.log");
    let (code, _, output) = replay(&["--events".as_ref(), missing.as_os_str(), "--dir".as_ref(), enforced.as_os_str()]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("missing.log"), "{output}");
}
