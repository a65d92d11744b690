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
    /// For a row (`Row::<schema>::<table>`): unused, give any.
    #[serde(default)]
    pub(crate) id: String,
    /// For a row: its column values (a column left out is NULL).
    #[serde(default)]
    attrs: serde_json::Map<String, serde_json::Value>,
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
    /// For `select` on a dataset: what row and column policy leaves of it (optional).
    data: Option<ExpectedData>,
}

/// A case's expected row and column decision for its dataset (each part optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedData {
    /// For the dataset (or, for a view, the governed dataset it reads): `catalog.schema.table`.
    dataset: Option<String>,
    /// The row filter as `gateway policy check` prints it (`every row` when none).
    rows: Option<String>,
    /// Column → mask name; columns not listed are not masked.
    masks: Option<std::collections::BTreeMap<String, String>>,
    /// Denied columns (any order).
    denied: Option<Vec<String>>,
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

fn principal_of(case: &Case) -> Result<Principal, String> {
    principal(&case.principal.kind, &case.principal.id, &case.principal.groups)
}

/// How `got` differs from what a case expects.
fn data_problems(expected: &ExpectedData, got: &identity::DatasetPolicy) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(rows) = &expected.rows {
        let actual = got.rows.as_ref().map_or_else(|| "every row".to_string(), identity::RowFilter::to_sql);
        if *rows != actual {
            problems.push(format!("expected rows {rows}, got {actual}"));
        }
    }
    if let Some(masks) = &expected.masks {
        let actual: std::collections::BTreeMap<String, String> =
            got.masks.iter().map(|m| (m.column.clone(), m.mask.name().to_string())).collect();
        if *masks != actual {
            problems.push(format!("expected masks {masks:?}, got {actual:?}"));
        }
    }
    if let Some(denied) = &expected.denied {
        let (mut want, mut actual) = (denied.clone(), got.denied.clone());
        want.sort();
        actual.sort();
        if want != actual {
            problems.push(format!("expected denied columns {want:?}, got {actual:?}"));
        }
    }
    problems
}

fn run_case_inner(authz: &Authorizer, case: &Case) -> Result<(Result<(), String>, Vec<String>), String> {
    let principal = principal_of(case)?;
    let principal =
        Principal { tenant: case.principal.tenant.clone(), email: case.principal.email.clone(), ..principal };
    let evaluation = decide_resource(authz, principal, &case.action, &case.resource, &case.context)?;
    let actual = if evaluation.allowed { Expected::Allow } else { Expected::Deny };
    let mut problems = Vec::new();
    if actual != case.expect {
        problems.push(format!("expected {:?}, got {actual:?}", case.expect));
    }
    if let Some(expected) = &case.data {
        let principal = Principal {
            tenant: case.principal.tenant.clone(),
            email: case.principal.email.clone(),
            ..principal_of(case)?
        };
        let scope = [case.resource.id.clone()];
        let decided = decide_data(authz, principal, &scope, &case.context)?;
        let dataset = expected.dataset.as_deref().unwrap_or(&case.resource.id);
        match decided.iter().find(|d| d.dataset == dataset) {
            None => problems.push(format!("no row or column decision for {dataset}")),
            Some(got) => problems.extend(data_problems(expected, got)),
        }
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

/// [`decide`] for a case's resource, which may be a row with its attributes.
fn decide_resource(
    authz: &Authorizer,
    principal: Principal,
    action: &str,
    resource: &ResourceInput,
    context: &ContextInput,
) -> Result<Evaluation, String> {
    if !resource.kind.starts_with("Row::") {
        return decide(authz, principal, action, &resource.kind, &resource.id, context);
    }
    let row_type: cedar_policy::EntityTypeName =
        resource.kind.parse().map_err(|e| format!("resource type {:?}: {e}", resource.kind))?;
    let dataset = super::columns::rows_of(&row_type, authz.defaults())
        .ok_or_else(|| format!("resource type {:?}: expected Row::<schema>::<table>", resource.kind))?;
    let mut attrs = Vec::new();
    for (name, value) in &resource.attrs {
        let value = match value {
            serde_json::Value::String(s) => cedar_policy::RestrictedExpression::new_string(s.clone()),
            serde_json::Value::Bool(b) => cedar_policy::RestrictedExpression::new_bool(*b),
            serde_json::Value::Number(n) => cedar_policy::RestrictedExpression::new_long(
                n.as_i64().ok_or_else(|| format!("attrs.{name}: {n} is not a whole number"))?,
            ),
            serde_json::Value::Null => continue,
            other => return Err(format!("attrs.{name}: {other} is not a string, number or boolean")),
        };
        attrs.push((name.clone(), value));
    }
    let now = context_now(context)?;
    let principal = Principal { mfa: context.mfa, ..principal };
    let facts = facts(&principal, "/v1/sql", context, now);
    authz.decide(&facts, action, &Resource::Row(row_type, dataset, attrs)).map_err(|e| e.to_string())
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
    let now = context_now(context)?;
    let (resource, path) = match resource_kind {
        "Endpoint" => (Resource::Endpoint, resource_id.to_string()),
        "Dataset" => {
            let name = DatasetName::parse_id(resource_id)
                .ok_or_else(|| format!("Dataset::{resource_id:?}: expected catalog.schema.table"))?;
            (Resource::Dataset(name), "/v1/sql".to_string())
        }
        "Column" => {
            let (dataset, _) = super::columns::parse_column_id(resource_id)
                .ok_or_else(|| format!("Column::{resource_id:?}: expected catalog.schema.table.column"))?;
            (Resource::Column(dataset, resource_id.to_string()), "/v1/sql".to_string())
        }
        other => {
            return Err(format!(
                "resource type {other:?}: expected Endpoint, Dataset, Column or Row::<schema>::<table>"
            ));
        }
    };
    let principal = Principal { mfa: context.mfa, ..principal };
    let facts = facts(&principal, &path, context, now);
    authz.decide(&facts, action, &resource).map_err(|e| e.to_string())
}

/// The row and column decisions for a statement touching `scope` (dataset ids), with the
/// context a case or `check` gives: what the engine would enforce.
pub(crate) fn decide_data(
    authz: &Authorizer,
    principal: Principal,
    scope: &[String],
    context: &ContextInput,
) -> Result<Vec<identity::DatasetPolicy>, String> {
    let now = context_now(context)?;
    let principal = Principal { mfa: context.mfa, ..principal };
    let facts = facts(&principal, "/v1/sql", context, now);
    Ok(authz.decide_data(&facts, scope).to_vec())
}

fn context_now(context: &ContextInput) -> Result<u64, String> {
    match &context.now {
        Some(text) => time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("context.now {text:?}: {e}"))
            .and_then(|t| u64::try_from(t.unix_timestamp()).map_err(|_| format!("context.now {text:?}: before 1970"))),
        None => Ok(process::unix_secs()),
    }
}

fn facts<'a>(principal: &'a Principal, path: &'a str, context: &'a ContextInput, now: u64) -> RequestFacts<'a> {
    RequestFacts {
        principal,
        source_ip: context.source_ip.unwrap_or(IpAddr::from([192, 0, 2, 10])),
        client_cert: context.client_cert,
        method: context.method.as_deref().unwrap_or("POST"),
        path,
        now,
    }
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
