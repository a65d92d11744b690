//! The OCSF encoder and the syslog framer: whatever a client puts in a path, SQL text or
//! identity, each event is one line of valid JSON that gives those strings back as they
//! were, and each syslog frame's length is right.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use gateway::audit::deliver::SyslogReceiver;
use gateway::audit::event::Formatter;
use gateway::audit::{ApiRecord, Decision, Record};
use gateway::config::SqlInAudit;
use identity::{AuthMethod, Principal, PrincipalKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{1}');
    let (id, path, sql) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut principal = Principal::new(PrincipalKind::User, id, id, AuthMethod::Oidc);
    principal.groups = vec![sql.to_string()];
    let uri = http::Uri::builder().path_and_query(format!("/{}", path.escape_default())).build();
    let record = ApiRecord {
        time_ms: 1_800_000_000_000,
        request_id: http::HeaderValue::from_static("req-1"),
        listener: "api",
        peer: "192.0.2.1:4000".parse().expect("an address"),
        method: http::Method::POST,
        uri: uri.unwrap_or_else(|_| http::Uri::from_static("/")),
        rpc: None,
        principal: Some(Arc::new(principal)),
        sql: Some(Bytes::copy_from_slice(sql.as_bytes())),
        actions: vec!["query"],
        datasets: vec![path.to_string()],
        decision: Decision::Denied,
        policies: vec![id.to_string()],
        status: 403,
        grpc_status: None,
        error: Some(("forbidden", sql.to_string())),
        upstream_error: Some((id.to_string(), sql.to_string())),
        planned_by: None,
        bytes_in: 0,
        bytes_out: 0,
        duration_us: 1,
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
    let syslog = SyslogReceiver::new("127.0.0.1:1", None, 13, id).expect("a receiver");
    let frames = syslog.frame_lines(&out, 1);
    let (length, rest) = std::str::from_utf8(&frames).expect("ASCII").split_once(' ').expect("a length");
    assert_eq!(length.parse::<usize>().expect("a number"), rest.len(), "octet count");
});
