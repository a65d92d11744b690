//! The OCSF encoder, its reader and the syslog framer: whatever a client puts in a path, SQL
//! text or identity, each event is one line of valid JSON that gives those strings back as
//! they were, `gateway policy replay` reads back the principal and the Cedar requests the
//! event records, and each syslog frame's length is right.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use gateway::internal::SyslogReceiver;
use gateway::internal::Formatter;
use gateway::internal::recorded::{self, Line};
use gateway::internal::{ApiRecord, Authorization, Decision, Record};
use gateway::internal::sql::DatasetName;
use gateway::internal::{Answer, Ask, AuthzError, Verdict};
use gateway::config::SqlInAudit;
use identity::{AuthMethod, Principal, PrincipalKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{1}');
    let (id, path, sql) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut principal = Principal::new(PrincipalKind::User, id, id, AuthMethod::Oidc);
    principal.groups = vec![sql.to_string()];
    let dataset = DatasetName { catalog: "c".into(), schema: path.to_string(), table: sql.to_string() };
    let asks = vec![Ask { action: "query", dataset: None }, Ask { action: "select", dataset: Some(dataset) }];
    let verdict = Verdict {
        outcome: Err(AuthzError::Denied { action: "select", resource: path.to_string() }),
        asks: asks.clone(),
        enforced: Some(Answer { allowed: false, policies: vec![id.to_string()], refused: Some(1) }),
        shadow: Some(Answer { allowed: true, policies: vec![sql.to_string()], refused: None }),
        shadow_data: None,
    };
    let uri = http::Uri::builder().path_and_query(format!("/{}", path.escape_default())).build();
    let record = ApiRecord {
        time_ms: 1_800_000_000_000,
        request_id: http::HeaderValue::from_static("req-1"),
        listener: "api",
        peer: "192.0.2.1:4000".parse().expect("an address"),
        method: http::Method::POST,
        uri: uri.unwrap_or_else(|_| http::Uri::from_static("/")),
        rpc: None,
        principal: Some(Arc::new(principal.clone())),
        sql: Some(Bytes::copy_from_slice(sql.as_bytes())),
        actions: vec!["query"],
        datasets: vec![path.to_string()],
        decision: Decision::Denied,
        policies: vec![id.to_string()],
        authorization: Some(Authorization { now: 1_800_000_000, client_cert: false, verdict: Arc::new(verdict) }),
        status: 403,
        grpc_status: None,
        error: Some(("forbidden", sql.to_string())),
        upstream_error: Some((id.to_string(), sql.to_string())),
        planned_by: None,
        // An engine's report that is not one still makes one JSON line.
        access: http::HeaderValue::from_bytes(sql.as_bytes()).ok(),
        rows: Some(sql.len() as u64),
        bytes_in: 0,
        bytes_out: 0,
        duration_us: 1,
        bookkeeping: false,
        limits: None,
    };
    let mut out = Vec::new();
    Formatter::new(SqlInAudit::Full, "fuzz").write_line(&Record::Api(Box::new(record)), &mut out);
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "an event is one line");
    let event: serde_json::Value = serde_json::from_slice(&out).expect("an event is JSON");
    // The writer escapes only what needs it: every string comes back as it went in.
    assert_eq!(event["actor"]["user"]["uid"], id, "user id round-trips");
    assert_eq!(event["unmapped"]["sql"], sql, "SQL round-trips");
    assert_eq!(event["status_detail"], sql, "message round-trips");
    assert_eq!(event["resources"][0]["name"], path, "dataset round-trips");
    assert_eq!(event["unmapped"]["authorization"]["shadow"]["policies"][0], sql, "shadow policy round-trips");
    match recorded::parse(&out) {
        Ok(Line::Decided(call)) => {
            assert_eq!(call.principal, principal, "the principal reads back");
            assert_eq!(call.asks, asks, "the Cedar requests read back");
            assert_eq!(call.refused, Some(1), "the refusal reads back");
        }
        other => panic!("an event of ours does not read back: {other:?}"),
    }
    let syslog = SyslogReceiver::new("127.0.0.1:1", None, 13, id).expect("a receiver");
    let frames = syslog.frame_lines(&out, 1);
    let (length, rest) = std::str::from_utf8(&frames).expect("ASCII").split_once(' ').expect("a length");
    assert_eq!(length.parse::<usize>().expect("a number"), rest.len(), "octet count");
});
