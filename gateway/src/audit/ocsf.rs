//! The OCSF 1.3 JSON form of an audit record (one line per event). Classes: API Activity
//! (6003) for every request and TLS failure, Authentication (3002) for sign-ins, Detection
//! Finding (2004) for bursts of refusals from one address.

use std::net::SocketAddr;

use identity::Principal;

use super::json::Json;
use super::record::{
    ApiRecord, Authorization, ConnectionRecord, Decision, FindingRecord, Record, SignInRecord, UNAUTHENTICATED,
};
use crate::authz::Answer;
use crate::authz::action::{Effect, effect};
use crate::config::SqlInAudit;

pub(crate) const OCSF_VERSION: &str = "1.3.0";
/// `metadata.product.name` of every event (how a reader tells the gateway's events apart).
pub(crate) const PRODUCT_NAME: &str = "Portcullis Gateway";
/// OCSF API Activity's `class_uid`.
pub(crate) const API_ACTIVITY: u64 = 6003;

/// Turns records into OCSF JSON lines.
#[derive(Debug, Clone)]
pub struct Formatter {
    sql: SqlInAudit,
    version: &'static str,
    /// Event ids: a random UUIDv4 per process, its low 48 bits XORed with a counter, so ids
    /// are unique without a random draw (a syscall) per event.
    id_base: u128,
    counter: u64,
}

impl Formatter {
    pub fn new(sql: SqlInAudit, version: &'static str) -> Self {
        Self { sql, version, id_base: uuid::Uuid::new_v4().as_u128(), counter: 0 }
    }

    fn next_id(&mut self) -> uuid::Uuid {
        self.counter += 1;
        uuid::Uuid::from_u128(self.id_base ^ u128::from(self.counter & 0xFFFF_FFFF_FFFF))
    }

    /// Appends `record` as one JSON line with a fresh unique event id.
    pub fn write_line(&mut self, record: &Record, out: &mut Vec<u8>) {
        let uid = self.next_id();
        let mut uid_buf = uuid::Uuid::encode_buffer();
        let uid = uid.hyphenated().encode_lower(&mut uid_buf);
        let mut json = Json::object(out);
        match record {
            Record::Api(api) => self.api(&mut json, api, uid),
            Record::Connection(connection) => self.connection(&mut json, connection, uid),
            Record::SignIn(signin) => self.signin(&mut json, signin, uid),
            Record::Finding(finding) => self.finding(&mut json, finding, uid),
        }
        json.finish();
        out.push(b'\n');
    }

    /// `metadata`: the event id, schema version, correlation id, product, and tags
    /// (principal and tenant, then `datasets`).
    fn metadata(
        &self,
        json: &mut Json<'_>,
        uid: &str,
        correlation: Option<&str>,
        p: Option<&Principal>,
        datasets: &[String],
    ) {
        json.begin("metadata");
        json.str("uid", uid);
        json.str("version", OCSF_VERSION);
        json.opt_str("correlation_uid", correlation);
        json.begin("product");
        json.str("name", PRODUCT_NAME);
        json.str("vendor_name", "Portcullis");
        json.str("version", self.version);
        json.end();
        if p.is_some() || !datasets.is_empty() {
            json.begin_array("tags");
            let tag = |json: &mut Json<'_>, name: &'static str, value: &str| {
                json.element();
                json.str("name", name);
                json.str("value", value);
                json.end();
            };
            if let Some(p) = p {
                tag(json, "principal", &p.id);
                if let Some(tenant) = &p.tenant {
                    tag(json, "tenant", tenant);
                }
            }
            for dataset in datasets {
                tag(json, "dataset", dataset);
            }
            json.end_array();
        }
        json.end();
    }

    fn api(&self, json: &mut Json<'_>, r: &ApiRecord, uid: &str) {
        let request_id = r.request_id.to_str().ok();
        let success = r.error.is_none() && r.status < 400 && r.grpc_status.is_none_or(|s| s == 0);
        // Allowed when policy allowed it (even if the engine then failed), or nothing refused it.
        let disposition = if r.decision == Decision::Allowed || success { (1, "Allowed") } else { (2, "Blocked") };
        header(json, Class::ApiActivity, activity(&r.actions), r.time_ms, if success { 1 } else { 3 });
        json.u64("status_id", if success { 1 } else { 2 });
        json.str("status", if success { "Success" } else { "Failure" });
        match r.grpc_status {
            Some(grpc) => json.str_parts("status_code", &["grpc:", itoa::Buffer::new().format(grpc)]),
            None => json.str("status_code", itoa::Buffer::new().format(r.status)),
        }
        json.opt_str(
            "status_detail",
            r.error.as_ref().map(|(_, message)| message.as_str()).or_else(|| {
                let (code, message) = r.upstream_error.as_ref()?;
                Some(if self.sql == SqlInAudit::Full { message.as_str() } else { code.as_str() })
            }),
        );
        json.u64("disposition_id", disposition.0);
        json.str("disposition", disposition.1);
        // Milliseconds (OCSF); microseconds in `unmapped.duration_us`.
        json.u64("duration", r.duration_us / 1000);
        self.metadata(json, uid, r.planned_by.as_deref().or(request_id), r.principal.as_deref(), &r.datasets);
        if let Some(p) = r.principal.as_deref() {
            json.begin("actor");
            user(json, p);
            if !r.policies.is_empty() {
                let decision = if r.decision == Decision::Denied { "Denied" } else { "Allowed" };
                json.begin_array("authorizations");
                for policy in &r.policies {
                    json.element();
                    json.str("decision", decision);
                    json.begin("policy");
                    json.str("uid", policy);
                    json.end();
                    json.end();
                }
                json.end_array();
            }
            if let Some(issuer) = p.issuer.as_deref() {
                json.named("idp", issuer);
            }
            json.end();
        }
        endpoint(json, r.peer);
        json.begin("http_request");
        json.str("http_method", r.method.as_str());
        json.begin("url");
        json.str("path", r.uri.path());
        json.end();
        json.opt_str("uid", request_id);
        json.end();
        json.begin("http_response");
        json.u64("code", u64::from(r.status));
        json.end();
        json.begin("api");
        match r.rpc {
            Some(rpc) => json.str("operation", rpc),
            None => json.str_parts("operation", &[r.method.as_str(), " ", r.uri.path()]),
        }
        json.begin("request");
        json.opt_str("uid", request_id);
        json.end();
        json.named("service", r.listener);
        json.end();
        if !r.datasets.is_empty() {
            json.begin_array("resources");
            for name in &r.datasets {
                json.element();
                json.str("name", name);
                json.str("type", "dataset");
                json.end();
            }
            json.end_array();
        }
        json.begin("traffic");
        json.u64("bytes_in", r.bytes_in);
        json.u64("bytes_out", r.bytes_out);
        json.end();
        json.begin("unmapped");
        // How the principal authenticated (`oidc`, `api_key`, `mtls`, `browser`).
        json.opt_str("auth_method", r.principal.as_deref().map(|p| p.auth_method.as_str()));
        json.opt_str(
            "decision",
            match r.decision {
                Decision::NotEvaluated => None,
                Decision::Allowed => Some("allow"),
                Decision::Denied => Some("deny"),
            },
        );
        if let Some(authorization) = &r.authorization {
            authorization_of(json, authorization, r.principal.as_deref());
        }
        access_of(json, r.access.as_ref(), r.rows);
        if let Some(limits) = &r.limits {
            limits_of(json, limits);
        }
        json.opt_str("error_code", r.error.as_ref().map(|(code, _)| *code));
        json.opt_str("engine_error_code", r.upstream_error.as_ref().map(|(code, _)| code.as_str()));
        json.opt_u64("grpc_status", r.grpc_status.map(u64::from));
        match (&r.sql, self.sql) {
            (Some(sql), SqlInAudit::Full) => json.str("sql", &String::from_utf8_lossy(sql)),
            (Some(sql), SqlInAudit::Hashed) => json.str("sql_sha256", &sha256_hex(sql)),
            _ => {}
        }
        json.u64("duration_us", r.duration_us);
        json.end();
    }

    /// A connection refused below HTTP, or the aggregate of requests without credentials: an
    /// API Activity event with `count`.
    fn connection(&self, json: &mut Json<'_>, r: &ConnectionRecord, uid: &str) {
        header(json, Class::ApiActivity, (99, "Other"), r.time_ms, 3);
        json.u64("status_id", 2);
        json.str("status", "Failure");
        json.str("status_code", r.reason);
        json.str("status_detail", &r.error);
        json.u64("disposition_id", 2);
        json.str("disposition", "Blocked");
        json.u64("duration", 0);
        // Events this one stands for.
        json.u64("count", r.count);
        self.metadata(json, uid, None, None, &[]);
        endpoint(json, r.peer);
        json.begin("http_request");
        json.str("http_method", "");
        json.begin("url");
        json.str("path", "");
        json.end();
        json.end();
        json.begin("http_response");
        json.u64("code", 0);
        json.end();
        json.begin("api");
        let operation = match r.reason {
            UNAUTHENTICATED => "request",
            reason if reason.starts_with("tls_") => "TLS handshake",
            _ => "connection",
        };
        json.str("operation", operation);
        json.begin("request");
        json.end();
        json.named("service", r.listener);
        json.end();
        json.begin("traffic");
        json.u64("bytes_in", 0);
        json.u64("bytes_out", 0);
        json.end();
        json.begin("unmapped");
        json.str("error_code", r.reason);
        json.u64("duration_us", 0);
        // The interval an aggregated event's `count` covers.
        json.opt_u64("window_secs", (r.window_secs > 0).then_some(r.window_secs));
        json.end();
    }

    fn signin(&self, json: &mut Json<'_>, r: &SignInRecord, uid: &str) {
        let request_id = r.request_id.to_str().ok();
        let success = r.failure.is_none();
        let method = r.principal.as_deref().map(|p| p.auth_method.as_str());
        header(json, Class::Authentication, (1, "Logon"), r.time_ms, if success { 1 } else { 3 });
        json.u64("status_id", if success { 1 } else { 2 });
        json.str("status", if success { "Success" } else { "Failure" });
        json.opt_str("status_code", r.failure.as_ref().map(|(reason, _)| *reason));
        json.opt_str("status_detail", r.failure.as_ref().map(|(_, message)| message.as_str()));
        json.opt_str(
            "auth_protocol",
            method.map(|m| match m {
                "oidc" => "OpenID Connect",
                "browser" => "OpenID Connect (browser sign-in)",
                "api_key" => "API key",
                "mtls" => "mTLS client certificate",
                other => other,
            }),
        );
        if let Some(p) = r.principal.as_deref() {
            json.bool("is_mfa", p.mfa);
        }
        self.metadata(json, uid, request_id, r.principal.as_deref(), &[]);
        if let Some(p) = r.principal.as_deref() {
            user(json, p);
        }
        endpoint(json, r.peer);
        json.named("service", r.listener);
        json.begin("unmapped");
        json.opt_str("auth_method", method);
        json.str("flow", r.flow);
        json.end();
    }

    fn finding(&self, json: &mut Json<'_>, r: &FindingRecord, uid: &str) {
        header(json, Class::DetectionFinding, (1, "Create"), r.time_ms, 4);
        json.str("severity", "High");
        json.u64("status_id", 1);
        self.metadata(json, uid, None, None, &[]);
        json.begin("finding_info");
        json.str("uid", uid);
        json.str("title", "Burst of refused requests from one source IP");
        let desc = format!("{} responses with status 401 or 403 to {} within {} s", r.count, r.ip, r.window_secs);
        json.str("desc", &desc);
        json.begin_array("types");
        json.string_element("Credential Access: Brute Force");
        json.end_array();
        json.end();
        json.begin("src_endpoint");
        json.ip("ip", r.ip);
        json.end();
        json.u64("count", u64::from(r.count));
        json.begin("unmapped");
        json.u64("window_secs", r.window_secs);
        json.end();
    }
}

/// OCSF API Activity's activity from the actions Cedar was asked about.
fn activity(actions: &[&'static str]) -> (u8, &'static str) {
    let any = |wanted| actions.iter().any(|a| effect(a) == Some(wanted));
    if any(Effect::Change) {
        (3, "Update")
    } else if any(Effect::Administer) {
        (99, "Other")
    } else if actions.is_empty() {
        (0, "Unknown")
    } else {
        (2, "Read")
    }
}

/// `unmapped.authorization`: with the principal, address, method and path recorded
/// elsewhere in the event, every input Cedar was given (`now`, `mfa`, `client_cert`, the
/// client certificate's identity, each request's action and dataset), which request was
/// refused, and the shadow set's answer where it differs.
fn authorization_of(json: &mut Json<'_>, a: &Authorization, p: Option<&Principal>) {
    let Some(enforced) = &a.verdict.enforced else { return };
    json.begin("authorization");
    json.u64("now", a.now);
    json.bool("mfa", p.is_some_and(|p| p.mfa));
    json.bool("client_cert", a.client_cert);
    json.opt_str("client_cert_identity", p.and_then(|p| p.client_cert.as_deref()));
    json.begin_array("requests");
    for ask in &a.verdict.asks {
        json.element();
        json.str("action", ask.action);
        if let Some(dataset) = &ask.dataset {
            json.str("dataset", &dataset.to_string());
        }
        json.end();
    }
    json.end_array();
    json.opt_u64("refused", enforced.refused.map(|i| i as u64));
    if let Some(shadow) = a.verdict.shadow.as_ref().filter(|s| s.allowed != enforced.allowed) {
        answer(json, "shadow", shadow);
    }
    if let Ok(allowed) = &a.verdict.outcome
        && !allowed.data.is_empty()
    {
        data_policies(json, "data_policies", &allowed.data);
    }
    if let (Some(change), Some(theirs)) = (a.verdict.data_change(), &a.verdict.shadow_data) {
        json.str("shadow_data_change", change);
        data_policies(json, "shadow_data_policies", theirs);
    }
    json.end();
}

/// `data_policies`: per governed dataset the statement read, the row filter, the masks and
/// the denied columns the engine enforced (what the caller's answer was made of).
fn data_policies(json: &mut Json<'_>, key: &'static str, data: &[identity::DatasetPolicy]) {
    json.begin_array(key);
    for policy in data {
        json.element();
        json.str("dataset", &policy.dataset);
        json.str("rows", &policy.rows.as_ref().map_or_else(|| "every row".to_string(), identity::RowFilter::to_sql));
        if !policy.row_policies.is_empty() {
            json.begin_array("row_policies");
            for id in &policy.row_policies {
                json.string_element(id);
            }
            json.end_array();
        }
        json.begin_array("masked");
        for mask in &policy.masks {
            json.element();
            json.str("column", &mask.column);
            json.str("mask", mask.mask.name());
            json.end();
        }
        json.end_array();
        json.begin_array("denied");
        for column in &policy.denied {
            json.string_element(column);
        }
        json.end_array();
        json.end();
    }
    json.end_array();
}

/// `unmapped.limits`: the caller's query-limits tier, the limit that refused the query or
/// cut its result, how long it queued, and the rows the gateway counted.
fn limits_of(json: &mut Json<'_>, limits: &super::record::LimitsRecord) {
    json.begin("limits");
    json.str("tier", &limits.tier);
    let tripped = limits.metered.as_ref().and_then(|m| m.tripped.get().copied());
    json.opt_str("applied", limits.applied.as_deref().or(tripped));
    if limits.queued_us > 0 {
        json.u64("queued_us", limits.queued_us);
    }
    json.opt_u64("rows_counted", limits.metered.as_ref().map(|m| m.rows.load(std::sync::atomic::Ordering::Relaxed)));
    json.end();
}

/// `unmapped.access`: what the statement read by the engine's report (the relations it names
/// and the base tables it reads through views, each with its columns, or the column it was
/// refused for) and the rows the engine sent.
fn access_of(json: &mut Json<'_>, access: Option<&http::HeaderValue>, rows: Option<u64>) {
    if access.is_none() && rows.is_none() {
        return;
    }
    json.begin("access");
    match access.map(|value| identity::AccessReport::from_header(value.as_bytes())) {
        Some(Ok(report)) => {
            for (key, reads) in [("read", &report.read), ("base", &report.base)] {
                json.begin_array(key);
                for read in reads {
                    json.element();
                    json.str("dataset", &read.dataset);
                    json.begin_array("columns");
                    for column in &read.columns {
                        json.string_element(column);
                    }
                    json.end_array();
                    json.end();
                }
                json.end_array();
            }
            if let Some(denied) = &report.denied {
                json.begin("denied");
                json.str("dataset", &denied.dataset);
                json.str("column", &denied.column);
                json.end();
            }
            if report.columns_omitted {
                json.bool("columns_omitted", true);
            }
        }
        Some(Err(_)) => json.str("report_error", "the engine's access report could not be read"),
        None => {}
    }
    json.opt_u64("rows", rows);
    json.end();
}

fn answer(json: &mut Json<'_>, key: &'static str, answer: &Answer) {
    json.begin(key);
    json.str("decision", if answer.allowed { "allow" } else { "deny" });
    json.begin_array("policies");
    for policy in &answer.policies {
        json.string_element(policy);
    }
    json.end_array();
    json.opt_u64("refused", answer.refused.map(|i| i as u64));
    json.end();
}

/// `user`: who the principal is.
fn user(json: &mut Json<'_>, p: &Principal) {
    json.begin("user");
    json.str("uid", &p.id);
    json.str("name", &p.subject);
    json.str("type", p.kind.as_str());
    json.opt_str("email_addr", p.email.as_deref());
    if !p.groups.is_empty() {
        json.begin_array("groups");
        for group in &p.groups {
            json.element();
            json.str("name", group);
            json.end();
        }
        json.end_array();
    }
    if let Some(tenant) = p.tenant.as_deref() {
        json.named("org", tenant);
    }
    json.end();
}

fn endpoint(json: &mut Json<'_>, peer: SocketAddr) {
    json.begin("src_endpoint");
    json.ip("ip", peer.ip());
    json.u64("port", u64::from(peer.port()));
    json.end();
}

fn sha256_hex(data: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = String::with_capacity(64);
    for byte in digest.as_ref() {
        use std::fmt::Write as _;
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The OCSF event classes the gateway emits.
#[derive(Debug, Clone, Copy)]
enum Class {
    ApiActivity,
    Authentication,
    DetectionFinding,
}

/// The classification and time every OCSF event starts with: first, so every line starts
/// with `{"class_uid":…` (syslog reads it from there).
fn header(
    json: &mut Json<'_>,
    class: Class,
    (activity_id, activity_name): (u8, &'static str),
    time: i64,
    severity_id: u8,
) {
    let (class_uid, class_name, category_uid, category_name) = match class {
        Class::ApiActivity => (API_ACTIVITY, "API Activity", 6, "Application Activity"),
        Class::Authentication => (3002, "Authentication", 3, "Identity & Access Management"),
        Class::DetectionFinding => (2004, "Detection Finding", 2, "Findings"),
    };
    json.u64("class_uid", class_uid);
    json.str("class_name", class_name);
    json.u64("category_uid", category_uid);
    json.str("category_name", category_name);
    json.u64("activity_id", u64::from(activity_id));
    json.str("activity_name", activity_name);
    json.u64("type_uid", class_uid * 100 + u64::from(activity_id));
    json.i64("time", time);
    json.u64("severity_id", u64::from(severity_id));
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{HeaderValue, Method, Uri};

    use super::*;

    fn engine_error_event(sql: SqlInAudit) -> serde_json::Value {
        let record = ApiRecord {
            time_ms: 0,
            request_id: HeaderValue::from_static("req-1"),
            listener: "api",
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            method: Method::POST,
            uri: Uri::from_static("/v1/sql"),
            rpc: None,
            principal: None,
            sql: Some(Bytes::from_static(b"SELECT secret_literal")),
            actions: vec!["query"],
            datasets: Vec::new(),
            decision: Decision::Allowed,
            policies: Vec::new(),
            authorization: None,
            status: 400,
            grpc_status: None,
            error: None,
            upstream_error: Some(("query_error".into(), "no column named secret_literal".into())),
            planned_by: None,
            access: None,
            rows: None,
            bytes_in: 0,
            bytes_out: 0,
            duration_us: 0,
            bookkeeping: false,
            limits: None,
        };
        let mut out = Vec::new();
        Formatter::new(sql, "test").write_line(&Record::Api(Box::new(record)), &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn the_engine_error_message_is_kept_only_where_the_sql_is() {
        // The engine's message can quote the SQL: only `sql: full` carries it.
        let full = engine_error_event(SqlInAudit::Full);
        assert_eq!(full["status_detail"], "no column named secret_literal");
        assert_eq!(full["unmapped"]["engine_error_code"], "query_error");
        for mode in [SqlInAudit::Hashed, SqlInAudit::Off] {
            let event = engine_error_event(mode);
            assert_eq!(event["status_detail"], "query_error");
            assert!(!event.to_string().contains("secret_literal"), "{event}");
        }
    }

    #[test]
    fn the_row_and_column_decisions_are_in_the_event() {
        use crate::authz::{Allowed, Verdict};
        use std::sync::Arc;
        let data: Arc<[identity::DatasetPolicy]> = Arc::from(vec![identity::DatasetPolicy {
            dataset: "datafusion.demo.customers".into(),
            denied: vec!["national_id".into()],
            masks: vec![identity::ColumnMask { column: "email".into(), mask: identity::Mask::EmailDomain }],
            unmasked: vec!["phone".into()],
            rows: Some(identity::RowFilter::Bool(false)),
            row_policies: vec!["customers-of-own-tenant".into()],
        }]);
        let verdict = Verdict {
            outcome: Ok(Allowed { data, ..Allowed::default() }),
            asks: Vec::new(),
            enforced: Some(Answer { allowed: true, policies: Vec::new(), refused: None }),
            shadow: None,
            shadow_data: None,
        };
        let mut json = Vec::new();
        let mut writer = Json::object(&mut json);
        writer.begin("unmapped");
        authorization_of(&mut writer, &Authorization { now: 1, client_cert: false, verdict: Arc::new(verdict) }, None);
        writer.end();
        writer.finish();
        let event: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let decided = &event["unmapped"]["authorization"]["data_policies"][0];
        assert_eq!(decided["dataset"], "datafusion.demo.customers");
        assert_eq!(decided["rows"], "FALSE");
        assert_eq!(decided["masked"][0], serde_json::json!({"column": "email", "mask": "email_domain"}));
        assert_eq!(decided["denied"], serde_json::json!(["national_id"]));
        assert_eq!(decided["row_policies"], serde_json::json!(["customers-of-own-tenant"]));
    }

    fn access_event(access: Option<&str>, rows: Option<u64>) -> serde_json::Value {
        let mut json = Vec::new();
        let mut writer = Json::object(&mut json);
        let access = access.map(|a| http::HeaderValue::from_str(a).unwrap());
        access_of(&mut writer, access.as_ref(), rows);
        writer.finish();
        serde_json::from_slice(&json).unwrap()
    }

    #[test]
    fn the_engines_access_report_and_rows_are_in_the_event_and_a_bad_report_is_named() {
        let report = identity::AccessReport {
            read: vec![identity::ReadColumns { dataset: "d.s.v".into(), columns: vec!["a".into()] }],
            base: vec![identity::ReadColumns { dataset: "d.s.t".into(), columns: vec!["a".into(), "b".into()] }],
            ..identity::AccessReport::default()
        };
        let event = access_event(Some(&report.to_header()), Some(7));
        assert_eq!(
            event["access"],
            serde_json::json!({
                "read": [{"dataset": "d.s.v", "columns": ["a"]}],
                "base": [{"dataset": "d.s.t", "columns": ["a", "b"]}],
                "rows": 7,
            })
        );
        let garbled = access_event(Some("{not json"), None);
        assert_eq!(
            garbled["access"],
            serde_json::json!({"report_error": "the engine's access report could not be read"})
        );
        assert_eq!(access_event(None, None), serde_json::json!({}));
    }

    #[test]
    fn a_refused_dataset_action_names_the_activity() {
        // A Cedar 403 on a dataset records the dataset action only.
        assert_eq!(activity(&["select"]), (2, "Read"));
        assert_eq!(activity(&["query", "select"]), (2, "Read"));
        for write in ["insert", "update", "delete", "write"] {
            assert_eq!(activity(&[write]), (3, "Update"));
        }
        assert_eq!(activity(&["ddl"]), (99, "Other"));
        assert_eq!(activity(&[]), (0, "Unknown"));
    }
}
