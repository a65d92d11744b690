//! What one audit event records, and its OCSF 1.3 JSON form (one line per event).
//!
//! Records are built on the request path from what the stages already have (no
//! formatting there); the writer thread turns them into JSON with [`Formatter`]. Classes:
//! API Activity (6003) for every request and TLS failure, Authentication (3002) for sign-ins,
//! Detection Finding (2004) for bursts of refusals from one address.
//!
//! No field ever holds a credential: the stages strip tokens and keys before a record sees
//! the request, and error messages name the problem, not the value.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Uri};
use identity::Principal;
use serde::Serialize;

use crate::config::SqlInAudit;

pub const OCSF_VERSION: &str = "1.3.0";

/// One thing that happened, waiting in the queue.
#[derive(Debug)]
pub enum Record {
    Api(Box<ApiRecord>),
    Connection(ConnectionRecord),
    SignIn(Box<SignInRecord>),
    Finding(FindingRecord),
}

/// Cedar's answer, if the request got that far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    NotEvaluated,
    Allowed,
    Denied,
}

/// One request, whatever its outcome.
#[derive(Debug)]
pub struct ApiRecord {
    /// Unix milliseconds when the request arrived.
    pub time_ms: i64,
    pub request_id: HeaderValue,
    /// `api` or `flight`.
    pub listener: &'static str,
    pub peer: SocketAddr,
    pub method: Method,
    /// Only the path is recorded (a query string could carry anything).
    pub uri: Uri,
    /// The Flight RPC, for gRPC calls.
    pub rpc: Option<&'static str>,
    pub principal: Option<Arc<Principal>>,
    /// The SQL the request carried (HTTP body, or the Flight command's query).
    pub sql: Option<Bytes>,
    /// The actions Cedar was asked about (`query`, `write`, ...; for a refused dataset,
    /// its action too: `select`, `insert`, ...).
    pub actions: Vec<&'static str>,
    pub datasets: Vec<String>,
    pub decision: Decision,
    pub policies: Vec<String>,
    pub status: u16,
    /// For gRPC: the status from the trailers (or the refusal).
    pub grpc_status: Option<u16>,
    /// The refusal's category and message (never a credential).
    pub error: Option<(&'static str, String)>,
    /// The engine's own error, when it answered one: its code (`invalid_sql`, or the gRPC
    /// status name) and message. The message can quote the SQL, so an event carries it only
    /// with `audit.sql: full`.
    pub upstream_error: Option<(String, String)>,
    /// For a call that runs what another planned (a DoGet of a statement ticket): the
    /// planning request's id, the event's correlation id.
    pub planned_by: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_us: u64,
}

/// Connections refused below HTTP (a failed TLS handshake, a connection limit, a header
/// deadline, an HTTP/2 protocol error...): the first from a source in an interval as it
/// happens (`count` 1), the rest of that interval as one event with their count.
#[derive(Debug)]
pub struct ConnectionRecord {
    pub time_ms: i64,
    pub listener: &'static str,
    pub peer: SocketAddr,
    /// A code from the closed set of connection refusals (the listener's `Refusal`).
    pub reason: &'static str,
    /// The first refusal's message (an aggregate: the last one's).
    pub error: String,
    pub count: u64,
    /// 0 for the first refusal, else the interval the count covers.
    pub window_secs: u64,
}

/// A sign-in: success (principal set) or failure (reason set).
#[derive(Debug)]
pub struct SignInRecord {
    pub time_ms: i64,
    pub request_id: HeaderValue,
    pub listener: &'static str,
    pub peer: SocketAddr,
    pub principal: Option<Arc<Principal>>,
    /// `handshake` for the Flight Handshake, else how the credential was presented.
    pub flow: &'static str,
    pub failure: Option<(&'static str, String)>,
}

/// One address produced a burst of 401/403 responses.
#[derive(Debug)]
pub struct FindingRecord {
    pub time_ms: i64,
    pub ip: IpAddr,
    pub count: u32,
    pub window_secs: u64,
}

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
        let result = match record {
            Record::Api(api) => serde_json::to_writer(&mut *out, &self.api(api, uid)),
            Record::Connection(connection) => serde_json::to_writer(&mut *out, &self.connection(connection, uid)),
            Record::SignIn(signin) => serde_json::to_writer(&mut *out, &self.signin(signin, uid)),
            Record::Finding(finding) => serde_json::to_writer(&mut *out, &self.finding(finding, uid)),
        };
        // Serializing plain structs into a Vec cannot fail; if it ever did, the line is
        // still a JSON object saying so rather than a torn line.
        if result.is_err() {
            out.extend_from_slice(b"{\"class_uid\":0,\"message\":\"event could not be serialized\"}");
        }
        out.push(b'\n');
    }

    fn metadata<'a>(&self, uid: &'a str, correlation: Option<&'a str>, tags: Vec<Tag<'a>>) -> Metadata<'a> {
        Metadata {
            uid,
            version: OCSF_VERSION,
            correlation_uid: correlation,
            product: Product { name: "Portcullis Gateway", vendor_name: "Portcullis", version: self.version },
            tags,
        }
    }

    fn api<'a>(&self, r: &'a ApiRecord, uid: &'a str) -> ApiActivity<'a> {
        let request_id = r.request_id.to_str().ok();
        let success = r.error.is_none() && r.status < 400 && r.grpc_status.is_none_or(|s| s == 0);
        let activity = activity(&r.actions);
        let mut tags = principal_tags(r.principal.as_deref());
        tags.extend(r.datasets.iter().map(|d| Tag { name: "dataset", value: d }));
        let (sql, sql_sha256) = match (&r.sql, self.sql) {
            (Some(sql), SqlInAudit::Full) => (Some(String::from_utf8_lossy(sql)), None),
            (Some(sql), SqlInAudit::Hashed) => (None, Some(sha256_hex(sql))),
            _ => (None, None),
        };
        // Allowed when policy allowed it (even if the engine then failed), or nothing refused it.
        let disposition = if r.decision == Decision::Allowed || success { (1, "Allowed") } else { (2, "Blocked") };
        let operation = match r.rpc {
            Some(rpc) => rpc.to_string(),
            None => format!("{} {}", r.method, r.uri.path()),
        };
        ApiActivity {
            header: Header::new(Class::ApiActivity, activity, r.time_ms, if success { 1 } else { 3 }),
            status_id: if success { 1 } else { 2 },
            status: if success { "Success" } else { "Failure" },
            status_code: r.grpc_status.map_or_else(|| r.status.to_string(), |g| format!("grpc:{g}")),
            status_detail: r.error.as_ref().map(|(_, message)| message.as_str()).or_else(|| {
                let (code, message) = r.upstream_error.as_ref()?;
                Some(if self.sql == SqlInAudit::Full { message.as_str() } else { code.as_str() })
            }),
            disposition_id: disposition.0,
            disposition: disposition.1,
            duration: r.duration_us / 1000,
            count: None,
            metadata: self.metadata(uid, r.planned_by.as_deref().or(request_id), tags),
            actor: r.principal.as_deref().map(|p| Actor {
                user: user(p),
                authorizations: r
                    .policies
                    .iter()
                    .map(|uid| Authorization { decision: "Allowed", policy: Named { uid } })
                    .collect(),
                idp: p.issuer.as_deref().map(|name| Idp { name }),
            }),
            src_endpoint: Endpoint { ip: r.peer.ip(), port: r.peer.port() },
            http_request: HttpRequest {
                http_method: r.method.as_str(),
                url: Url { path: r.uri.path() },
                uid: request_id,
            },
            http_response: HttpResponse { code: r.status },
            api: Api { operation, request: RequestUid { uid: request_id }, service: Service { name: r.listener } },
            resources: r.datasets.iter().map(|name| Resource { name, r#type: "dataset" }).collect(),
            traffic: Traffic { bytes_in: r.bytes_in, bytes_out: r.bytes_out },
            unmapped: ApiUnmapped {
                auth_method: r.principal.as_deref().map(|p| p.auth_method.as_str()),
                decision: match r.decision {
                    Decision::NotEvaluated => None,
                    Decision::Allowed => Some("allow"),
                    Decision::Denied => Some("deny"),
                },
                error_code: r.error.as_ref().map(|(code, _)| *code),
                engine_error_code: r.upstream_error.as_ref().map(|(code, _)| code.as_str()),
                grpc_status: r.grpc_status,
                sql,
                sql_sha256,
                duration_us: r.duration_us,
                window_secs: None,
            },
        }
    }

    fn connection<'a>(&self, r: &'a ConnectionRecord, uid: &'a str) -> ApiActivity<'a> {
        ApiActivity {
            header: Header::new(Class::ApiActivity, (99, "Other"), r.time_ms, 3),
            status_id: 2,
            status: "Failure",
            status_code: r.reason.into(),
            status_detail: Some(&r.error),
            disposition_id: 2,
            disposition: "Blocked",
            duration: 0,
            count: Some(r.count),
            metadata: self.metadata(uid, None, Vec::new()),
            actor: None,
            src_endpoint: Endpoint { ip: r.peer.ip(), port: r.peer.port() },
            http_request: HttpRequest { http_method: "", url: Url { path: "" }, uid: None },
            http_response: HttpResponse { code: 0 },
            api: Api {
                operation: if r.reason.starts_with("tls_") { "TLS handshake".into() } else { "connection".into() },
                request: RequestUid { uid: None },
                service: Service { name: r.listener },
            },
            resources: Vec::new(),
            traffic: Traffic { bytes_in: 0, bytes_out: 0 },
            unmapped: ApiUnmapped {
                auth_method: None,
                decision: None,
                error_code: Some(r.reason),
                engine_error_code: None,
                grpc_status: None,
                sql: None,
                sql_sha256: None,
                duration_us: 0,
                window_secs: (r.window_secs > 0).then_some(r.window_secs),
            },
        }
    }

    fn signin<'a>(&self, r: &'a SignInRecord, uid: &'a str) -> Authentication<'a> {
        let request_id = r.request_id.to_str().ok();
        let success = r.failure.is_none();
        let method = r.principal.as_deref().map(|p| p.auth_method.as_str());
        Authentication {
            header: Header::new(Class::Authentication, (1, "Logon"), r.time_ms, if success { 1 } else { 3 }),
            status_id: if success { 1 } else { 2 },
            status: if success { "Success" } else { "Failure" },
            status_code: r.failure.as_ref().map(|(reason, _)| *reason),
            status_detail: r.failure.as_ref().map(|(_, message)| message.as_str()),
            auth_protocol: method.map(|m| match m {
                "oidc" => "OpenID Connect",
                "api_key" => "API key",
                "mtls" => "mTLS client certificate",
                other => other,
            }),
            is_mfa: r.principal.as_deref().map(|p| p.mfa),
            metadata: self.metadata(uid, request_id, principal_tags(r.principal.as_deref())),
            user: r.principal.as_deref().map(user),
            src_endpoint: Endpoint { ip: r.peer.ip(), port: r.peer.port() },
            service: Service { name: r.listener },
            unmapped: SignInUnmapped { auth_method: method, flow: r.flow },
        }
    }

    fn finding<'a>(&self, r: &'a FindingRecord, uid: &'a str) -> Finding<'a> {
        Finding {
            header: Header::new(Class::DetectionFinding, (1, "Create"), r.time_ms, 4),
            severity: "High",
            status_id: 1,
            metadata: self.metadata(uid, None, Vec::new()),
            finding_info: FindingInfo {
                uid,
                title: "Burst of refused requests from one source IP",
                desc: format!("{} responses with status 401 or 403 to {} within {} s", r.count, r.ip, r.window_secs),
                types: ["Credential Access: Brute Force"],
            },
            src_endpoint: IpOnly { ip: r.ip },
            count: r.count,
            unmapped: FindingUnmapped { window_secs: r.window_secs },
        }
    }
}

/// OCSF API Activity's activity from the actions Cedar was asked about.
fn activity(actions: &[&'static str]) -> (u8, &'static str) {
    if actions.iter().any(|a| matches!(*a, "write" | "insert" | "update" | "delete")) {
        (3, "Update")
    } else if actions.iter().any(|a| matches!(*a, "admin" | "ddl")) {
        (99, "Other")
    } else if actions.is_empty() {
        (0, "Unknown")
    } else {
        (2, "Read")
    }
}

fn user(p: &Principal) -> User<'_> {
    User {
        uid: &p.id,
        name: &p.subject,
        r#type: p.kind.as_str(),
        email_addr: p.email.as_deref(),
        groups: p.groups.iter().map(|name| Group { name }).collect(),
        org: p.tenant.as_deref().map(|name| Org { name }),
    }
}

/// Tags SIEM rules group by: tenant and principal (datasets are added by the caller).
fn principal_tags(p: Option<&Principal>) -> Vec<Tag<'_>> {
    let Some(p) = p else { return Vec::new() };
    let mut tags = vec![Tag { name: "principal", value: &p.id }];
    if let Some(tenant) = &p.tenant {
        tags.push(Tag { name: "tenant", value: tenant });
    }
    tags
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

/// The classification and time every OCSF event starts with.
#[derive(Serialize)]
struct Header {
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u8,
    activity_name: &'static str,
    type_uid: u32,
    time: i64,
    severity_id: u8,
}

impl Header {
    fn new(class: Class, (activity_id, activity_name): (u8, &'static str), time: i64, severity_id: u8) -> Self {
        let (class_uid, class_name, category_uid, category_name) = match class {
            Class::ApiActivity => (6003, "API Activity", 6, "Application Activity"),
            Class::Authentication => (3002, "Authentication", 3, "Identity & Access Management"),
            Class::DetectionFinding => (2004, "Detection Finding", 2, "Findings"),
        };
        Self {
            class_uid,
            class_name,
            category_uid,
            category_name,
            activity_id,
            activity_name,
            type_uid: class_uid * 100 + u32::from(activity_id),
            time,
            severity_id,
        }
    }
}

#[derive(Serialize)]
struct Metadata<'a> {
    uid: &'a str,
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_uid: Option<&'a str>,
    product: Product,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<Tag<'a>>,
}

#[derive(Serialize)]
struct Product {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct Tag<'a> {
    name: &'static str,
    value: &'a str,
}

#[derive(Serialize)]
struct ApiActivity<'a> {
    /// First, so every line starts with `{"class_uid":…` (syslog reads it from there).
    #[serde(flatten)]
    header: Header,
    status_id: u8,
    status: &'static str,
    status_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_detail: Option<&'a str>,
    disposition_id: u8,
    disposition: &'static str,
    /// Milliseconds (OCSF); microseconds in `unmapped.duration_us`.
    duration: u64,
    /// Events this one stands for (aggregated connection refusals).
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    metadata: Metadata<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<Actor<'a>>,
    src_endpoint: Endpoint,
    http_request: HttpRequest<'a>,
    http_response: HttpResponse,
    api: Api<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resources: Vec<Resource<'a>>,
    traffic: Traffic,
    unmapped: ApiUnmapped<'a>,
}

#[derive(Serialize)]
struct Actor<'a> {
    user: User<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    authorizations: Vec<Authorization<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idp: Option<Idp<'a>>,
}

#[derive(Serialize)]
struct User<'a> {
    uid: &'a str,
    name: &'a str,
    r#type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_addr: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<Group<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org: Option<Org<'a>>,
}

#[derive(Serialize)]
struct Group<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Org<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Idp<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Authorization<'a> {
    decision: &'static str,
    policy: Named<'a>,
}

#[derive(Serialize)]
struct Named<'a> {
    uid: &'a str,
}

#[derive(Serialize)]
struct Endpoint {
    ip: IpAddr,
    port: u16,
}

#[derive(Serialize)]
struct IpOnly {
    ip: IpAddr,
}

#[derive(Serialize)]
struct HttpRequest<'a> {
    http_method: &'a str,
    url: Url<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
}

#[derive(Serialize)]
struct Url<'a> {
    path: &'a str,
}

#[derive(Serialize)]
struct HttpResponse {
    code: u16,
}

#[derive(Serialize)]
struct Api<'a> {
    operation: String,
    request: RequestUid<'a>,
    service: Service,
}

#[derive(Serialize)]
struct RequestUid<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
}

#[derive(Serialize)]
struct Service {
    name: &'static str,
}

#[derive(Serialize)]
struct Resource<'a> {
    name: &'a str,
    r#type: &'static str,
}

#[derive(Serialize)]
struct Traffic {
    bytes_in: u64,
    bytes_out: u64,
}

#[derive(Serialize)]
struct ApiUnmapped<'a> {
    /// How the principal authenticated (`oidc`, `api_key`, `mtls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    engine_error_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sql: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sql_sha256: Option<String>,
    duration_us: u64,
    /// The interval an aggregated event's `count` covers.
    #[serde(skip_serializing_if = "Option::is_none")]
    window_secs: Option<u64>,
}

#[derive(Serialize)]
struct Authentication<'a> {
    /// First, so every line starts with `{"class_uid":…` (syslog reads it from there).
    #[serde(flatten)]
    header: Header,
    status_id: u8,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_mfa: Option<bool>,
    metadata: Metadata<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User<'a>>,
    src_endpoint: Endpoint,
    service: Service,
    unmapped: SignInUnmapped,
}

#[derive(Serialize)]
struct SignInUnmapped {
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_method: Option<&'static str>,
    flow: &'static str,
}

#[derive(Serialize)]
struct Finding<'a> {
    /// First, so every line starts with `{"class_uid":…` (syslog reads it from there).
    #[serde(flatten)]
    header: Header,
    severity: &'static str,
    status_id: u8,
    metadata: Metadata<'a>,
    finding_info: FindingInfo<'a>,
    src_endpoint: IpOnly,
    count: u32,
    unmapped: FindingUnmapped,
}

#[derive(Serialize)]
struct FindingInfo<'a> {
    uid: &'a str,
    title: &'static str,
    desc: String,
    types: [&'static str; 1],
}

#[derive(Serialize)]
struct FindingUnmapped {
    window_secs: u64,
}

#[cfg(test)]
mod tests {
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
            status: 400,
            grpc_status: None,
            error: None,
            upstream_error: Some(("query_error".into(), "no column named secret_literal".into())),
            planned_by: None,
            bytes_in: 0,
            bytes_out: 0,
            duration_us: 0,
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
