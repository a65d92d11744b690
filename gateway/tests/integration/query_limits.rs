//! Guardrails per caller (`query_limits`) end to end, gateway and engine both real: a capped
//! tier's statement timeout and memory share end its heavy queries with the documented
//! error while an uncapped caller's identical queries complete and a third caller's
//! `SELECT 1` keeps answering; row caps (truncate and fail), the Cedar lift and the
//! rows-per-window budget through every client (`tests/python/query_limits.py`); the
//! concurrency cap queues then refuses; and every limit is counted and audited.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{self, Client, Reply, Stack};
use gateway::config::{ApiKeyEntry, ApiKeysConfig, ClientAuth, QueryLimitsConfig};
use gateway::internal::apikeys;

/// The capped tiers' result cap, and the rows of the statement the checks run.
const CAP: u64 = 1000;
const ROWS: u64 = 5000;
const WINDOW_SECS: u64 = 3;
/// A cap whose rows are more than the engine reads ahead before a head (4 MiB of JSON).
const WIDE_CAP: u64 = 300_000;

fn tiers() -> QueryLimitsConfig {
    serde_yaml_ng::from_str(&format!(
        "
groups:
  capped: {{statement_timeout_secs: 1, memory_percent: 1, max_result_rows: {CAP}}}
  strict: {{max_result_rows: {CAP}, on_exceed: fail}}
  budget: {{rows_per_window: {{rows: {budget}, window_secs: {WINDOW_SECS}}}}}
  single: {{concurrent_queries: 1}}
  wide: {{max_result_rows: {WIDE_CAP}}}
queue_wait_secs: 3
",
        budget = ROWS * 3 / 2
    ))
    .unwrap()
}

struct Keys {
    entries: Vec<ApiKeyEntry>,
    keys: std::collections::HashMap<&'static str, String>,
}

fn keys() -> Keys {
    let mut keys = Keys { entries: Vec::new(), keys: Default::default() };
    for (name, groups) in [
        ("capped", &["capped"][..]),
        ("strict", &["strict"]),
        ("bulk", &["capped", "bulk-export"]),
        ("budget", &["budget"]),
        ("single", &["single"]),
        ("wide", &["wide"]),
        ("free", &[]),
        ("probe", &[]),
    ] {
        let key = apikeys::generate().unwrap();
        keys.entries.push(ApiKeyEntry {
            name: name.into(),
            hash: key.hash,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            tenant: None,
            expires: None,
        });
        keys.keys.insert(name, key.key);
    }
    keys
}

/// A stack under the shipped policies (`70-limits.cedar` lifts `bulk-export`), the tiers
/// above, an engine pool of 512 MiB and an audit file.
async fn stack(audit: std::path::PathBuf) -> (Stack, std::collections::HashMap<&'static str, String>) {
    let Keys { entries, keys } = keys();
    let yaml = format!("{}\nlimits:\n  memory_pool_bytes: 536870912\n", engine::config::EMBEDDED_DEFAULT);
    let engine_config = engine::config::Config::from_yaml(&yaml, "engine.yaml").unwrap();
    let stack = Stack::start_with_engine(ClientAuth::Optional, engine_config, move |c| {
        c.authorization.policies = common::shipped_policies().into();
        c.authorization.engine_config = Some(common::embedded_engine_config().into());
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys: entries });
        c.query_limits = tiers();
        c.audit.sinks = vec![gateway::config::SinkConfig::File {
            path: audit.into(),
            max_bytes: 1 << 30,
            keep: 1,
            fsync: gateway::config::FsyncPolicy::Never,
        }];
    })
    .await;
    (stack, keys)
}

async fn sql(stack: &Stack, key: &str, sql: &str) -> Reply {
    stack.client(None).request(stack.gateway.api_addr, "POST", "/v1/sql", &[("x-api-key", key)], sql).await.unwrap()
}

/// A statement that runs several seconds (a debug build: about 6), far past the capped
/// tier's 1 s.
const LONG: &str = "SELECT sum(value % 7) AS s FROM range(0, 80000000)";
/// A join whose build side (3M rows, which cannot spill) needs far more than 1% of the pool
/// (5 MiB), and fits the whole pool.
const WIDE: &str = "SELECT count(*) AS matched FROM range(0, 3000000) a JOIN range(0, 3000000) b ON a.value = b.value";

#[tokio::test]
async fn a_capped_tiers_heavy_queries_end_while_others_complete_and_a_probe_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let (stack, keys) = stack(audit.clone()).await;
    let stack = Arc::new(stack);
    let stop = Arc::new(AtomicBool::new(false));
    let (probes, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let prober = {
        let (stack, stop, probes, failures, key) =
            (Arc::clone(&stack), stop.clone(), probes.clone(), failures.clone(), keys["probe"].clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let reply = sql(&stack, &key, "SELECT 1 AS one").await;
                probes.fetch_add(1, Ordering::Relaxed);
                if reply.status != 200 {
                    eprintln!("probe failed: {} {}", reply.status, reply.text());
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let started = Instant::now();
    let timed_out = sql(&stack, &keys["capped"], LONG).await;
    assert_eq!(timed_out.status, 503, "{}", timed_out.text());
    assert_eq!(timed_out.json()["error"]["code"], "resource_exhausted");
    let message = timed_out.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("statement_timeout_secs of tier group:capped (1 s)"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10), "stopped at its timeout, not run to the end");
    let completed = sql(&stack, &keys["free"], LONG).await;
    assert_eq!(completed.status, 200, "{}", completed.text());

    let refused = sql(&stack, &keys["capped"], WIDE).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    let message = refused.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("memory share") && message.contains("tier group:capped"), "{message}");
    let completed = sql(&stack, &keys["free"], WIDE).await;
    assert_eq!(completed.status, 200, "{}", completed.text());
    assert_eq!(completed.json()[0]["matched"], 3_000_000);
    // Over Flight the timeout ends the DoGet's stream after its schema: the status and the
    // limit come in the trailers.
    let stopped = flight_error(&stack, &keys["capped"], LONG).await;
    assert_eq!(stopped.code(), tonic::Code::ResourceExhausted, "{stopped:?}");
    assert!(stopped.message().contains("statement_timeout_secs of tier group:capped"), "{stopped:?}");
    assert!(stopped.metadata().get(identity::LIMIT_HEADER).is_none(), "the engine's report reached the client");

    stop.store(true, Ordering::Relaxed);
    prober.await.unwrap();
    assert!(probes.load(Ordering::Relaxed) >= 5, "too few probes ran");
    assert_eq!(failures.load(Ordering::Relaxed), 0, "a third caller's SELECT 1 failed");
    // The engine counts what its limits stopped, by tier; so does the gateway, and each
    // event names the limit.
    let engine = common::metrics_text(stack.engine.http_addr).await;
    let gateway = common::metrics_text(stack.gateway.health_addr).await;
    for limit in ["statement_timeout_secs", "memory_percent"] {
        let line = format!("engine_statement_limits_total{{tier=\"group:capped\",limit=\"{limit}\"}}");
        assert!(engine.lines().any(|l| l.starts_with(&line)), "{line} missing:\n{engine}");
        let line = format!("gateway_query_limits_total{{tier=\"group:capped\",event=\"{limit}\"}}");
        assert!(gateway.lines().any(|l| l.starts_with(&line)), "{line} missing:\n{gateway}");
    }
    common::wait_for("the DoGet's event", || {
        common::read_events(&audit)
            .iter()
            .any(|e| e["api"]["operation"] == "DoGet" && e["unmapped"]["limits"]["applied"] == "statement_timeout_secs")
    })
    .await;
    let events = common::read_events(&audit);
    let applied = |limit: &str| events.iter().filter(|e| e["unmapped"]["limits"]["applied"] == limit).count();
    assert!(applied("statement_timeout_secs") >= 2, "HTTP and Flight");
    assert_eq!(applied("memory_percent"), 1);
}

/// The gRPC status a Flight SQL statement of `key` ends with (from GetFlightInfo, or from
/// the DoGet's stream).
async fn flight_error(stack: &Stack, key: &str, sql: &str) -> tonic::Status {
    use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
    use futures::StreamExt;
    use prost::Message;
    let mut client = arrow_flight::flight_service_client::FlightServiceClient::new(
        common::grpc_channel(stack, stack.gateway.flight_addr.port()).await,
    );
    fn with_key<T>(message: T, key: &str) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert("x-api-key", key.parse().unwrap());
        request
    }
    let command = CommandStatementQuery { query: sql.into(), transaction_id: None };
    let descriptor = arrow_flight::FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
    let info = match client.get_flight_info(with_key(descriptor, key)).await {
        Ok(info) => info.into_inner(),
        Err(status) => return status,
    };
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = match client.do_get(with_key(ticket, key)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return status,
    };
    while let Some(message) = stream.next().await {
        if let Err(status) = message {
            return status;
        }
    }
    panic!("{sql}: the stream ended without an error");
}

#[tokio::test]
async fn row_caps_the_cedar_lift_and_the_budget_hold_on_every_client_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let (stack, keys) = stack(audit.clone()).await;
    let config = serde_json::json!({
        "http": format!("https://localhost:{}", stack.gateway.api_addr.port()),
        "flight": format!("grpc+tls://localhost:{}", stack.gateway.flight_addr.port()),
        "ca": stack.pki.ca(),
        "keys": {"capped": keys["capped"], "strict": keys["strict"], "bulk": keys["bulk"], "budget": keys["budget"]},
        "cap": CAP,
        "rows": ROWS,
        "window_secs": WINDOW_SECS,
        // Several batches, so the cap falls inside one.
        "sql": format!("SELECT value AS n, 'row ' || value AS label FROM range(0, {ROWS})"),
    });
    let output = tokio::process::Command::from(testkit::python_command())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/query_limits.py"))
        .env("CONFIG", config.to_string())
        .output()
        .await
        .unwrap();
    let stdout = testkit::python_stdout(&output, "query limit checks");
    assert!(stdout.contains("9 passed, 0 failed"), "{stdout}");

    let metrics = common::metrics_text(stack.gateway.health_addr).await;
    for (tier, event) in [("group:capped", "truncated"), ("group:budget", "rows_per_window")] {
        let line = format!("gateway_query_limits_total{{tier=\"{tier}\",event=\"{event}\"}}");
        assert!(metrics.lines().any(|l| l.starts_with(&line)), "{line} missing:\n{metrics}");
    }
    // Every event of a capped caller names its tier; a truncated result, the cap it hit and
    // the rows the gateway counted; a refused query, the limit that refused it.
    common::wait_for("the audit events", || {
        common::read_events(&audit).iter().any(|e| e["unmapped"]["limits"]["applied"] == "rows_per_window")
    })
    .await;
    let events = common::read_events(&audit);
    let capped = |e: &&serde_json::Value| e["unmapped"]["limits"]["applied"] == "max_result_rows";
    let (failed, truncated): (Vec<_>, Vec<_>) = events.iter().filter(capped).partition(|e| e["status"] == "Failure");
    assert!(failed.len() >= 4, "fail mode over HTTP ×3 and Flight: {}", failed.len());
    assert!(failed.iter().all(|e| e["unmapped"]["limits"]["tier"] == "group:strict"), "{failed:?}");
    assert!(truncated.len() >= 5, "HTTP ×3, Flight, ADBC: {}", truncated.len());
    for event in &truncated {
        assert_eq!(event["unmapped"]["limits"]["tier"], "group:capped", "{event}");
        assert_eq!(event["unmapped"]["limits"]["rows_counted"], CAP, "{event}");
    }
    let refused: Vec<_> = events.iter().filter(|e| e["unmapped"]["limits"]["applied"] == "rows_per_window").collect();
    assert!(refused.len() >= 2, "HTTP and Flight refusals: {}", refused.len());
    for event in refused {
        assert_eq!(event["unmapped"]["error_code"], "row_budget_exhausted", "{event}");
    }
    // The gateway's own count of what the bulk exporter received, every protocol.
    let bulk: Vec<u64> = events
        .iter()
        .filter(|e| e["unmapped"]["limits"]["tier"] == "group:capped" && e["unmapped"]["access"]["rows"] == ROWS)
        .map(|e| e["unmapped"]["limits"]["rows_counted"].as_u64().unwrap_or_default())
        .collect();
    assert!(bulk.len() >= 5 && bulk.iter().all(|n| *n == ROWS), "{bulk:?}");
}

#[tokio::test]
async fn the_concurrency_cap_queues_then_refuses_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let (stack, keys) = stack(audit.clone()).await;
    let stack = Arc::new(stack);
    // A query of several seconds holds the single slot; a second waits its 3 s and is
    // refused, while another caller's query is not held up.
    let holder = {
        let (stack, key) = (Arc::clone(&stack), keys["single"].clone());
        tokio::spawn(async move { sql(&stack, &key, LONG).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let second = sql(&stack, &keys["single"], "SELECT 1").await;
    assert_eq!(second.status, 429, "{}", second.text());
    assert_eq!(second.json()["error"]["code"], "too_many_queries");
    assert!(started.elapsed() >= Duration::from_millis(2900), "it queued before the refusal");
    assert_eq!(second.headers["retry-after"], "1");
    assert_eq!(sql(&stack, &keys["free"], "SELECT 1").await.status, 200);
    assert_eq!(holder.await.unwrap().status, 200);
    // A query that has to wait less than its 3 s gets the slot when it frees.
    let holder = {
        let (stack, key) = (Arc::clone(&stack), keys["single"].clone());
        tokio::spawn(async move { sql(&stack, &key, "SELECT sum(value % 7) FROM range(0, 5000000)").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sql(&stack, &keys["single"], "SELECT 1").await.status, 200);
    assert_eq!(holder.await.unwrap().status, 200);
    let metrics = common::metrics_text(stack.gateway.health_addr).await;
    for event in ["concurrent_queries", "queued"] {
        let line = format!("gateway_query_limits_total{{tier=\"group:single\",event=\"{event}\"}}");
        assert!(metrics.lines().any(|l| l.starts_with(&line)), "{line} missing:\n{metrics}");
    }
    // The refusal names its limit; the query that waited says how long.
    let limits = |e: &serde_json::Value| e["unmapped"]["limits"].clone();
    common::wait_for("the audit events", || {
        common::read_events(&audit).iter().any(|e| limits(e)["queued_us"].as_u64().is_some_and(|us| us > 0))
    })
    .await;
    let events = common::read_events(&audit);
    let refused = events.iter().find(|e| limits(e)["applied"] == "concurrent_queries").expect("the refusal's event");
    assert_eq!(refused["unmapped"]["error_code"], "too_many_queries", "{refused}");
    assert!(limits(refused)["queued_us"].as_u64().is_some_and(|us| us >= 2_900_000), "{refused}");
}

/// The gateway's row count of what the engine's own encoders write (JSON, CSV, Arrow IPC) and
/// of Flight `FlightData` in gRPC frames, with values that look like framing (quotes, braces,
/// newlines, a continuation marker's bytes), split at every chunk size a network might.
#[tokio::test]
async fn every_encoding_the_engine_writes_is_counted_exactly_however_it_is_split() {
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use futures::TryStreamExt;
    use gateway::internal::RowCounter;
    use prost::Message;

    let schema =
        Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false), Field::new("text", DataType::Utf8, true)]));
    let awkward = ["{\"a\": [1, 2]}", "line\nbreak", "say \"hi\"", "back\\slash", "]}", "\u{ffff}\u{0}", "a,b"];
    let batches: Vec<RecordBatch> = [1usize, 7, 300, 2]
        .iter()
        .enumerate()
        .map(|(b, &rows)| {
            let n = Int64Array::from_iter_values((0..rows).map(|i| (b * 1000 + i) as i64));
            let text = StringArray::from_iter((0..rows).map(|i| (i % 5 != 4).then(|| awkward[i % awkward.len()])));
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(n), Arc::new(text)]).unwrap()
        })
        .collect();
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let count = |media: &[u8], bytes: &[u8], size: usize| {
        let mut counter = RowCounter::for_content_type(media).unwrap();
        bytes.chunks(size).map(|piece| counter.feed(piece).unwrap()).sum::<u64>()
    };
    for media in [engine::encode::JSON, engine::encode::CSV, engine::encode::ARROW_STREAM] {
        let mut encoder = engine::encode::Encoder::new(media, Arc::clone(&schema)).unwrap();
        let mut body = Vec::new();
        for batch in &batches {
            body.extend_from_slice(&encoder.batch(batch).unwrap());
        }
        body.extend_from_slice(&encoder.finish().unwrap());
        for size in [1, 2, 3, 7, 8, 64, 4096, body.len()] {
            assert_eq!(count(media.as_bytes(), &body, size), rows, "{media} in pieces of {size}");
        }
    }
    let stream = futures::stream::iter(batches.clone().into_iter().map(Ok));
    let messages: Vec<arrow_flight::FlightData> =
        arrow_flight::encode::FlightDataEncoderBuilder::new().build(stream).try_collect().await.unwrap();
    let mut grpc = Vec::new();
    for (i, mut message) in messages.into_iter().enumerate() {
        if i == 1 {
            message.app_metadata = bytes::Bytes::from_static(b"{\"truncated\":\"max_result_rows\"}");
        }
        let encoded = message.encode_to_vec();
        grpc.push(0);
        grpc.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        grpc.extend_from_slice(&encoded);
    }
    for size in [1, 2, 5, 6, 13, 1024, grpc.len()] {
        assert_eq!(count(b"application/grpc", &grpc, size), rows, "Flight in pieces of {size}");
    }
    // A compressed message, or bytes after the end of an IPC stream, are refused, not guessed.
    let mut compressed = grpc.clone();
    compressed[0] = 1;
    assert!(RowCounter::for_content_type(b"application/grpc").unwrap().feed(&compressed).is_err());
    let mut trailing = Vec::new();
    let mut encoder = engine::encode::Encoder::new(engine::encode::ARROW_STREAM, Arc::clone(&schema)).unwrap();
    trailing.extend_from_slice(&encoder.batch(&batches[0]).unwrap());
    trailing.extend_from_slice(&encoder.finish().unwrap());
    trailing.extend_from_slice(b"more");
    assert!(RowCounter::for_content_type(engine::encode::ARROW_STREAM.as_bytes()).unwrap().feed(&trailing).is_err());
}

/// The gateway does not trust the engine to hold a cap: in front of an engine that ignores
/// stamps (development mode, so no caller's limits reach it), a capped caller's result ends
/// at the gateway once it counts more rows than the cap, and that is counted.
#[tokio::test]
async fn a_result_over_the_cap_from_an_engine_that_ignores_it_is_ended_by_the_gateway() {
    let pki = common::Pki::new();
    let mut engine_config = engine::config::Config::embedded_default().unwrap();
    engine_config.http_listen = "127.0.0.1:0".parse().unwrap();
    engine_config.flight_listen = "127.0.0.1:0".parse().unwrap();
    let anyone =
        identity::Principal::new(identity::PrincipalKind::Service, "anyone", "anyone", identity::AuthMethod::ApiKey);
    let careless = engine::caller::Authenticator::DangerousDevelopment(Arc::new(anyone));
    let engine = engine::server::start(&engine_config, careless).await.unwrap();
    let (stamp_key, _) = common::stamp_keys(pki.path());
    let mut config = common::gateway_config(
        &pki,
        ClientAuth::Optional,
        format!("http://{}", engine.http_addr),
        format!("http://{}", engine.flight_addr),
        stamp_key,
    );
    let Keys { entries, keys } = keys();
    config.auth.api_keys = Some(ApiKeysConfig { file: None, keys: entries });
    config.query_limits = tiers();
    config.authorization.policies = common::shipped_policies().into();
    config.authorization.engine_config = Some(common::embedded_engine_config().into());
    let gateway = gateway::server::start(gateway::server::prepare(config).unwrap()).await.unwrap();
    let many = format!("SELECT value AS n FROM range(0, {})", 100 * ROWS);
    for accept in [engine::encode::JSON, engine::encode::ARROW_STREAM] {
        let reply = Client::new(&pki, None)
            .request(gateway.api_addr, "POST", "/v1/sql", &[("x-api-key", &keys["capped"]), ("accept", accept)], &many)
            .await;
        assert!(reply.is_err(), "{accept}: the whole result went through: {:?}", reply.map(|r| r.body.len()));
    }
    let metrics = common::metrics_text(gateway.health_addr).await;
    let line = "gateway_query_limits_total{tier=\"group:capped\",event=\"engine_overran_cap\"} 2";
    assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    // Without a cap the same result goes through whole.
    let whole = Client::new(&pki, None)
        .request(gateway.api_addr, "POST", "/v1/sql", &[("x-api-key", &keys["free"])], &many)
        .await
        .unwrap();
    assert_eq!(whole.json().as_array().map(Vec::len), Some(100 * ROWS as usize));
}

/// A capped result larger than what the engine reads ahead (4 MiB) streams: cut at its cap,
/// with the flag in a trailer (HTTP/1.1 with `TE: trailers`) instead of the head.
#[tokio::test]
async fn a_large_capped_result_streams_and_says_it_was_cut_in_a_trailer() {
    let dir = tempfile::tempdir().unwrap();
    let (stack, keys) = stack(dir.path().join("audit.log")).await;
    let sql = format!("SELECT value AS n, 'row ' || value AS label FROM range(0, {})", 2 * WIDE_CAP);
    let reply = stack
        .client(None)
        .request(stack.gateway.api_addr, "POST", "/v1/sql", &[("x-api-key", &keys["wide"]), ("te", "trailers")], &sql)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.body.len() > 4 << 20, "{} bytes: not past the read-ahead", reply.body.len());
    assert_eq!(reply.json().as_array().map(Vec::len), Some(WIDE_CAP as usize));
    assert!(!reply.headers.contains_key("portcullis-truncated"), "{:?}", reply.headers);
    let trailers = reply.trailers.clone().unwrap_or_default();
    assert_eq!(
        trailers.get("portcullis-truncated").map(|v| v.to_str().unwrap()),
        Some("max_result_rows"),
        "{trailers:?}"
    );
    assert!(!trailers.keys().any(|k| k.as_str().starts_with("x-portcullis-")), "{trailers:?}");
    assert!(
        !reply.headers.get("trailer").is_some_and(|v| v.to_str().unwrap().contains("x-portcullis")),
        "{:?}",
        reply.headers
    );
}
