//! Policy test cases, the data files next to the policies (`policies/tests/*.json`, each a
//! JSON array of cases), and deciding one Cedar request as the gateway would with the
//! context a case or `gateway policy check` gives. The `gateway policy` commands read the
//! files and print; the deciding is here.

use std::net::IpAddr;

use identity::{AuthMethod, Principal, PrincipalKind};
use serde::Deserialize;

use super::authorizer::Authorizer;
use super::facts::{PRINCIPAL_KINDS, RequestFacts, principal_type};
use super::sql::DatasetName;
use super::verdict::{Evaluation, Resource};

/// The context fields a test or `check` may set; the rest take the defaults shown.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContextInput {
    /// Default `192.0.2.10` (a documentation address: neither loopback nor any range).
    source_ip: Option<IpAddr>,
    /// Default: now.
    now: Option<String>,
    #[serde(default)]
    mfa: bool,
    #[serde(default)]
    client_cert: bool,
    /// Default `POST`.
    method: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrincipalInput {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    #[serde(default)]
    groups: Vec<String>,
    tenant: Option<String>,
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResourceInput {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) id: String,
}

/// One case in `tests/*.json` (each file: a JSON array of cases).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Case {
    pub(crate) name: String,
    principal: PrincipalInput,
    action: String,
    pub(crate) resource: ResourceInput,
    #[serde(default)]
    context: ContextInput,
    /// `allow` or `deny`.
    expect: Expected,
    /// The determining policy ids expected (optional; compared as a set).
    policies: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Expected {
    Allow,
    Deny,
}

/// One case: its outcome, and the policies that determined its decision (for coverage).
pub(crate) fn run_case(authz: &Authorizer, case: &Case) -> (Result<(), String>, Vec<String>) {
    match run_case_inner(authz, case) {
        Ok((outcome, determining)) => (outcome, determining),
        Err(error) => (Err(error), Vec::new()),
    }
}

fn run_case_inner(authz: &Authorizer, case: &Case) -> Result<(Result<(), String>, Vec<String>), String> {
    let principal = principal(&case.principal.kind, &case.principal.id, &case.principal.groups)?;
    let principal =
        Principal { tenant: case.principal.tenant.clone(), email: case.principal.email.clone(), ..principal };
    let evaluation = decide(authz, principal, &case.action, &case.resource.kind, &case.resource.id, &case.context)?;
    let actual = if evaluation.allowed { Expected::Allow } else { Expected::Deny };
    let mut problems = Vec::new();
    if actual != case.expect {
        problems.push(format!("expected {:?}, got {actual:?}", case.expect));
    }
    if let Some(expected) = &case.policies {
        let mut expected = expected.clone();
        let mut got = evaluation.policies.clone();
        expected.sort();
        got.sort();
        if expected != got {
            problems.push(format!("expected determining policies {expected:?}, got {got:?}"));
        }
    }
    if problems.is_empty() {
        return Ok((Ok(()), evaluation.policies));
    }
    Ok((Err(format!("{}{}", problems.join("; "), reasons(&evaluation))), evaluation.policies))
}

/// Why Cedar decided as it did: the determining policies (or the default deny) and the
/// policies that failed to evaluate, one indented line each.
pub(crate) fn reasons(evaluation: &Evaluation) -> String {
    let mut out = String::new();
    if evaluation.policies.is_empty() {
        out.push_str(if evaluation.allowed { "" } else { "\n  no policy permits this (default deny)" });
    } else {
        out.push_str(&format!("\n  determining policies: {}", evaluation.policies.join(", ")));
    }
    for error in &evaluation.errors {
        out.push_str(&format!("\n  error: {error}"));
    }
    out
}

/// Decides one Cedar request as the gateway would, with the context a case or `check` gives.
pub(crate) fn decide(
    authz: &Authorizer,
    principal: Principal,
    action: &str,
    resource_kind: &str,
    resource_id: &str,
    context: &ContextInput,
) -> Result<Evaluation, String> {
    let now = match &context.now {
        Some(text) => time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("context.now {text:?}: {e}"))
            .and_then(|t| {
                u64::try_from(t.unix_timestamp()).map_err(|_| format!("context.now {text:?}: before 1970"))
            })?,
        None => process::unix_secs(),
    };
    let (resource, path) = match resource_kind {
        "Endpoint" => (Resource::Endpoint, resource_id.to_string()),
        "Dataset" => {
            let name = DatasetName::parse_id(resource_id)
                .ok_or_else(|| format!("Dataset::{resource_id:?}: expected catalog.schema.table"))?;
            (Resource::Dataset(name), "/v1/sql".to_string())
        }
        other => return Err(format!("resource type {other:?}: expected Endpoint or Dataset")),
    };
    let principal = Principal { mfa: context.mfa, ..principal };
    let facts = RequestFacts {
        principal: &principal,
        source_ip: context.source_ip.unwrap_or(IpAddr::from([192, 0, 2, 10])),
        client_cert: context.client_cert,
        method: context.method.as_deref().unwrap_or("POST"),
        path: &path,
        now,
    };
    authz.decide(&facts, action, &resource).map_err(|e| e.to_string())
}

/// A principal of the Cedar type `kind`, authenticated the way that type is.
pub(crate) fn principal(kind: &str, id: &str, groups: &[String]) -> Result<Principal, String> {
    let kind = PRINCIPAL_KINDS
        .into_iter()
        .find(|k| principal_type(*k) == kind)
        .ok_or_else(|| format!("principal type {kind:?}: expected User, Service or Workload"))?;
    let method = match kind {
        PrincipalKind::User => AuthMethod::Oidc,
        PrincipalKind::Service => AuthMethod::ApiKey,
        PrincipalKind::Workload => AuthMethod::Mtls,
    };
    let mut principal = Principal::new(kind, id, id, method);
    principal.groups = groups.to_vec();
    Ok(principal)
}

/// `Type::"id"` → (`Type`, `id`).
pub(crate) fn split_uid(uid: &str) -> Option<(String, String)> {
    let (kind, id) = uid.split_once("::")?;
    let id = id.strip_prefix('"')?.strip_suffix('"')?;
    Some((kind.to_string(), id.replace("\\\"", "\"")))
}
