//! Recorded API Activity events read back: what `gateway policy replay` decides again.
//!
//! An event the gateway wrote for a call Cedar decided carries everything Cedar was given:
//! the principal in `actor.user` (and `unmapped.auth_method`), the address in
//! `src_endpoint`, method and path in `http_request`, and the rest in
//! `unmapped.authorization` (see `ocsf::authorization_of`). This reads one line into the
//! same facts and asks, or says why it cannot: a line that is not JSON (a torn write), JSON
//! that is not a Portcullis event, or an event that lacks a field it needs.

use std::net::IpAddr;

use identity::{AuthMethod, Principal, PrincipalKind};
use serde::Deserialize;

use super::ocsf::{API_ACTIVITY, PRODUCT_NAME as PRODUCT};
use crate::authz::action::action_named;
use crate::authz::data_change::{Decided, rank_of};
use crate::authz::sql::DatasetName;
use crate::authz::{Ask, RequestFacts};

/// A recorded call, as Cedar saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// When the request arrived (Unix milliseconds).
    pub time_ms: i64,
    pub request_id: String,
    pub principal: Principal,
    pub source_ip: IpAddr,
    pub client_cert: bool,
    pub method: String,
    pub path: String,
    pub now: u64,
    pub asks: Vec<Ask>,
    /// The ask the enforced set refused; `None` when the call was allowed.
    pub refused: Option<usize>,
    /// The row and column decisions enforced, as the event records them; `None` for an
    /// event written before they were recorded (nothing to compare with).
    pub data: Option<Vec<RecordedData>>,
}

/// One dataset's row and column decision as an event records it
/// (`unmapped.authorization.data_policies`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordedData {
    pub dataset: String,
    /// The row filter as SQL, or `every row`.
    pub rows: String,
    #[serde(default)]
    pub masked: Vec<RecordedMask>,
    #[serde(default)]
    pub denied: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordedMask {
    pub column: String,
    pub mask: String,
}

impl RecordedData {
    /// The decision in the form decisions are compared in.
    pub(crate) fn decided(&self) -> Decided {
        Decided {
            dataset: self.dataset.clone(),
            rows: self.rows.clone(),
            masks: self.masked.iter().map(|m| (m.column.clone(), rank_of(&m.mask))).collect(),
            denied: self.denied.clone(),
        }
    }
}

impl Recorded {
    /// The facts to decide this call with again.
    pub fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            principal: &self.principal,
            source_ip: self.source_ip,
            client_cert: self.client_cert,
            method: &self.method,
            path: &self.path,
            now: self.now,
        }
    }
}

/// What one line of an audit file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A call Cedar decided.
    Decided(Box<Recorded>),
    /// One of our events Cedar was not asked about: a sign-in, a finding, a refused
    /// connection, a call refused before authorization (401, 429, bad SQL).
    Undecided,
    /// A JSON object that is not one of our events (by `metadata.product.name`): another
    /// program's line in the same stream (`kubectl logs` of a pod, say).
    Foreign,
}

#[derive(Deserialize)]
struct Event {
    class_uid: Option<u64>,
    #[serde(default)]
    time: i64,
    metadata: Option<Metadata>,
    actor: Option<Actor>,
    src_endpoint: Option<Endpoint>,
    http_request: Option<HttpRequest>,
    #[serde(default)]
    unmapped: Unmapped,
}

#[derive(Deserialize)]
struct Metadata {
    product: Option<Named>,
}

#[derive(Deserialize)]
struct Named {
    name: Option<String>,
}

#[derive(Deserialize)]
struct Actor {
    user: Option<User>,
}

#[derive(Deserialize)]
struct User {
    uid: String,
    name: String,
    #[serde(rename = "type")]
    kind: PrincipalKind,
    email_addr: Option<String>,
    #[serde(default)]
    groups: Vec<Named>,
    org: Option<Named>,
}

#[derive(Deserialize)]
struct Endpoint {
    ip: IpAddr,
}

#[derive(Deserialize)]
struct HttpRequest {
    http_method: String,
    url: Url,
    uid: Option<String>,
}

#[derive(Deserialize)]
struct Url {
    path: String,
}

#[derive(Default, Deserialize)]
struct Unmapped {
    auth_method: Option<AuthMethod>,
    authorization: Option<Authorization>,
}

#[derive(Deserialize)]
struct Authorization {
    now: u64,
    #[serde(default)]
    mfa: bool,
    #[serde(default)]
    client_cert: bool,
    client_cert_identity: Option<String>,
    requests: Vec<Request>,
    refused: Option<usize>,
    data_policies: Option<Vec<RecordedData>>,
}

#[derive(Deserialize)]
struct Request {
    action: String,
    dataset: Option<String>,
}

/// Reads one line of an audit file; the error says what is wrong with it.
pub fn parse(line: &[u8]) -> Result<Line, String> {
    let event: Event = serde_json::from_slice(line).map_err(|e| {
        if e.is_eof() || e.is_syntax() {
            format!("not a JSON line (torn or truncated?): {e}")
        } else {
            format!("not a Portcullis audit event: {e}")
        }
    })?;
    let product = event.metadata.as_ref().and_then(|m| m.product.as_ref()).and_then(|p| p.name.as_deref());
    if product != Some(PRODUCT) {
        return Ok(Line::Foreign);
    }
    let Some(authorization) = event.unmapped.authorization.filter(|_| event.class_uid == Some(API_ACTIVITY)) else {
        return Ok(Line::Undecided);
    };
    let missing = |field: &str| format!("a decided call without {field}");
    let user = event.actor.and_then(|a| a.user).ok_or_else(|| missing("actor.user"))?;
    let auth_method = event.unmapped.auth_method.ok_or_else(|| missing("unmapped.auth_method"))?;
    let source_ip = event.src_endpoint.ok_or_else(|| missing("src_endpoint"))?.ip;
    let http = event.http_request.ok_or_else(|| missing("http_request"))?;
    let mut asks = Vec::with_capacity(authorization.requests.len());
    for request in authorization.requests {
        let action = action_named(&request.action)
            .ok_or_else(|| format!("unknown action {:?} in unmapped.authorization.requests", request.action))?;
        let dataset = match request.dataset {
            Some(name) => Some(
                DatasetName::parse_id(&name).ok_or_else(|| format!("dataset {name:?} is not catalog.schema.table"))?,
            ),
            None => None,
        };
        asks.push(Ask { action, dataset });
    }
    if authorization.refused.is_some_and(|i| i >= asks.len()) {
        return Err("unmapped.authorization.refused names no request".into());
    }
    let mut principal = Principal::new(user.kind, user.uid, user.name, auth_method);
    principal.email = user.email_addr;
    principal.groups = user.groups.into_iter().filter_map(|g| g.name).collect();
    principal.tenant = user.org.and_then(|o| o.name);
    principal.mfa = authorization.mfa;
    principal.client_cert = authorization.client_cert_identity;
    Ok(Line::Decided(Box::new(Recorded {
        time_ms: event.time,
        request_id: http.uid.unwrap_or_default(),
        principal,
        source_ip,
        client_cert: authorization.client_cert,
        method: http.http_method,
        path: http.url.path,
        now: authorization.now,
        asks,
        refused: authorization.refused,
        data: authorization.data_policies,
    })))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use http::{HeaderValue, Method, Uri};

    use super::*;
    use crate::audit::ocsf::Formatter;
    use crate::audit::record::{ApiRecord, Authorization as Given, Decision, Record};
    use crate::authz::{Allowed, Answer, AuthzError, Verdict};
    use crate::config::SqlInAudit;

    fn orders() -> DatasetName {
        DatasetName { catalog: "datafusion".into(), schema: "acme".into(), table: "orders".into() }
    }

    fn event(verdict: Verdict, principal: Option<Principal>) -> Vec<u8> {
        let record = ApiRecord {
            time_ms: 1_795_000_000_123,
            request_id: HeaderValue::from_static("req-7"),
            listener: "api",
            peer: SocketAddr::from(([10, 1, 2, 3], 40_000)),
            method: Method::POST,
            uri: Uri::from_static("/v1/sql"),
            rpc: None,
            principal: principal.map(Arc::new),
            sql: None,
            actions: Vec::new(),
            datasets: Vec::new(),
            decision: Decision::Denied,
            policies: Vec::new(),
            authorization: Some(Given { now: 1_795_000_000, client_cert: true, verdict: Arc::new(verdict) }),
            status: 403,
            grpc_status: None,
            error: None,
            upstream_error: None,
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
        Formatter::new(SqlInAudit::Off, "test").write_line(&Record::Api(Box::new(record)), &mut out);
        out
    }

    fn alice() -> Principal {
        let mut alice = Principal::new(PrincipalKind::User, "alice@acme.test", "sub-1", AuthMethod::Oidc);
        alice.email = Some("alice@acme.test".into());
        alice.groups = vec!["acme".into(), "analysts".into()];
        alice.tenant = Some("acme".into());
        alice.mfa = true;
        alice.client_cert = Some("spiffe://acme.test/laptop".into());
        alice
    }

    #[test]
    fn an_event_reads_back_as_what_cedar_was_given() {
        let asks = vec![
            Ask { action: "query", dataset: None },
            Ask { action: "select", dataset: Some(orders()) },
            Ask {
                action: "select",
                dataset: Some(DatasetName { catalog: "c".into(), schema: "s.x".into(), table: "t\"q".into() }),
            },
        ];
        let refused = Answer { allowed: false, policies: vec!["no-orders".into()], refused: Some(1) };
        let verdict = Verdict {
            outcome: Err(AuthzError::Denied { action: "select", resource: "dataset datafusion.acme.orders".into() }),
            asks: asks.clone(),
            enforced: Some(refused),
            shadow: Some(Answer { allowed: true, policies: vec!["p".into()], refused: None }),
            shadow_data: None,
        };
        let line = event(verdict, Some(alice()));
        let text = String::from_utf8_lossy(&line);
        // The shadow answer is there because it disagrees.
        assert!(text.contains(r#""shadow":{"decision":"allow","policies":["p"]}"#), "{text}");
        let Line::Decided(recorded) = parse(&line).unwrap() else { panic!("not decided: {text}") };
        let expected = alice();
        assert_eq!(recorded.principal, expected);
        assert_eq!(recorded.asks, asks);
        assert_eq!(recorded.refused, Some(1));
        assert_eq!(recorded.source_ip, IpAddr::from([10, 1, 2, 3]));
        assert!(recorded.client_cert);
        assert_eq!((recorded.method.as_str(), recorded.path.as_str()), ("POST", "/v1/sql"));
        assert_eq!((recorded.now, recorded.time_ms), (1_795_000_000, 1_795_000_000_123));
        assert_eq!(recorded.request_id, "req-7");
    }

    #[test]
    fn agreeing_sets_write_no_shadow_and_an_allowed_call_no_refusal() {
        let answer = Answer { allowed: true, policies: vec!["p".into()], refused: None };
        let verdict = Verdict {
            outcome: Ok(Allowed::default()),
            asks: vec![Ask { action: "query", dataset: None }],
            enforced: Some(answer.clone()),
            shadow: Some(answer),
            shadow_data: None,
        };
        let line = event(verdict, Some(alice()));
        assert!(!String::from_utf8_lossy(&line).contains("shadow"));
        let Line::Decided(recorded) = parse(&line).unwrap() else { panic!("not decided") };
        assert_eq!(recorded.refused, None);
    }

    #[test]
    fn lines_that_cannot_be_replayed_say_why() {
        let good = event(
            Verdict {
                outcome: Ok(Allowed::default()),
                asks: vec![Ask { action: "query", dataset: None }],
                enforced: Some(Answer { allowed: true, policies: vec![], refused: None }),
                shadow: None,
                shadow_data: None,
            },
            Some(alice()),
        );
        let torn = &good[..good.len() / 2];
        assert!(parse(torn).unwrap_err().contains("torn"));
        assert_eq!(parse(br#"{"hello":"world"}"#).unwrap(), Line::Foreign);
        assert!(parse(b"[1,2]").unwrap_err().contains("not a Portcullis audit event"));
        let text = String::from_utf8_lossy(&good).into_owned();
        let bad_action = text.replace(r#""action":"query""#, r#""action":"read""#);
        assert!(parse(bad_action.as_bytes()).unwrap_err().contains("unknown action \"read\""));
        let no_actor = text.replace(r#""actor":"#, r#""someone":"#);
        assert!(parse(no_actor.as_bytes()).unwrap_err().contains("actor.user"));
        // Cedar was never asked (no principal, or refused before authorization): undecided.
        let undecided = text.replace(r#""authorization":"#, r#""not_authorization":"#);
        assert_eq!(parse(undecided.as_bytes()).unwrap(), Line::Undecided);
    }
}
