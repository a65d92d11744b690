//! `gateway policy lint`: what a policy author wants to hear before review. Each finding
//! names the lint, the policy and what to do; none of them is a validation error (those stop
//! a load), all of them are probably mistakes:
//!
//! - `unconstrained-permit`: a permit for any principal, any action and any resource.
//! - `impossible-policy`: a policy the schema says can never apply (Cedar's validator).
//! - `overlapping-permit-forbid`: a permit and a forbid with the same principal and resource
//!   scope and a shared action: where both apply the forbid wins, so one of them says less
//!   than it seems to.
//! - `expired-time-bound`: a grant bounded by `context.now < datetime("…")` (or `<=`) whose
//!   end has passed: it can no longer apply; delete it.
//! - `admin-without-id`: a permit that can grant `admin` or `ddl` without an `@id`, so the
//!   audit log names it only by file and position.
//!
//! With the engine's file (its declared columns):
//!
//! - `tag-without-mask`: a tag on a declared column that `masks.yaml` gives no mask, so
//!   callers who may not unmask the column see NULL.
//! - `row-attribute-undeclared`: a `select_row` policy for one dataset's rows reads a row
//!   attribute the engine's file declares no column for; the engine refuses every query of
//!   the dataset under that filter.
//!
//! A mask whose type does not fit a column carrying its tag is not a lint: it refuses the
//! policy set, so `lint` reports it as the load error it is.

use std::collections::{BTreeMap, BTreeSet};

use cedar_policy::{
    ActionConstraint, Effect, Policy, PolicySet, ResourceConstraint, Schema, ValidationMode, ValidationWarning,
    Validator,
};
use serde_json::Value;

use super::action;
use super::policies::Governance;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub lint: &'static str,
    pub policy: String,
    pub message: String,
}

/// Every finding for `policies` under `schema` and `governance`, at unix time `now`: the
/// policies' in policy order, then the column declarations'.
pub(crate) fn lint(policies: &PolicySet, schema: &Schema, governance: &Governance, now: i64) -> Vec<Finding> {
    let mut findings = policy_findings(policies, schema, now);
    findings.extend(row_attributes(policies, governance));
    findings.extend(tags_without_masks(governance));
    findings
}

/// `row-attribute-undeclared` (see the module docs): checked for policies that name their
/// row type (`resource is Row::…`), for datasets whose columns the engine's file declares.
fn row_attributes(policies: &PolicySet, governance: &Governance) -> Vec<Finding> {
    let mut findings = Vec::new();
    for policy in policies.policies() {
        let row_type = match policy.resource_constraint() {
            ResourceConstraint::Is(kind) | ResourceConstraint::IsIn(kind, _) => kind,
            ResourceConstraint::Eq(uid) => uid.type_name().clone(),
            _ => continue,
        };
        let Some(dataset) =
            governance.datasets.values().find(|d| d.row_type.as_ref() == Some(&row_type) && !d.columns.is_empty())
        else {
            continue;
        };
        let mut read = BTreeSet::new();
        if let Ok(json) = policy.to_json() {
            resource_attributes(&json, &mut read);
        }
        for attribute in read.into_iter().filter(|a| !dataset.columns.iter().any(|c| &c.name == a)) {
            findings.push(Finding {
                lint: "row-attribute-undeclared",
                policy: policy.id().to_string(),
                message: format!(
                    "reads resource.{attribute}, but the engine's file declares no column {attribute:?} of {}: every query of it under this filter is refused; declare the column or fix the name",
                    dataset.name
                ),
            });
        }
    }
    findings
}

/// The attributes of `resource` a policy's conditions read or test (`resource.x`, `resource has x`).
fn resource_attributes(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if matches!(key.as_str(), "." | "has")
                    && inner.get("left").and_then(|l| l.get("Var")).and_then(Value::as_str) == Some("resource")
                    && let Some(attribute) = inner.get("attr").and_then(Value::as_str)
                {
                    out.insert(attribute.to_string());
                }
                resource_attributes(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| resource_attributes(item, out)),
        _ => {}
    }
}

/// `tag-without-mask` (see the module docs), once per tag, naming a column that carries it.
fn tags_without_masks(governance: &Governance) -> Vec<Finding> {
    let mut unhandled: BTreeMap<&str, String> = BTreeMap::new();
    for dataset in governance.datasets.values() {
        for column in &dataset.columns {
            for tag in column.tags.iter().filter(|tag| !governance.masks.handles(tag)) {
                let carrier = super::columns::column_id(&dataset.name, &column.name);
                let known = unhandled.entry(tag).or_insert_with(|| carrier.clone());
                if carrier < *known {
                    *known = carrier;
                }
            }
        }
    }
    unhandled
        .into_iter()
        .map(|(tag, column)| Finding {
            lint: "tag-without-mask",
            policy: super::masks::MASKS_FILE.to_string(),
            message: format!(
                "the tag {tag:?} (on {column}, …) has no mask: callers who may not unmask it see NULL; give it one under tags.{tag}"
            ),
        })
        .collect()
}

/// The lints about single policies and pairs of them, in policy order.
fn policy_findings(policies: &PolicySet, schema: &Schema, now: i64) -> Vec<Finding> {
    let mut findings = Vec::new();
    let all: Vec<&Policy> = policies.policies().collect();
    for policy in &all {
        let id = policy.id().to_string();
        let mut find = |lint, message: String| findings.push(Finding { lint, policy: id.clone(), message });
        let permit = policy.effect() == Effect::Permit;
        let unconstrained = policy.principal_constraint() == cedar_policy::PrincipalConstraint::Any
            && policy.action_constraint() == ActionConstraint::Any
            && policy.resource_constraint() == cedar_policy::ResourceConstraint::Any;
        if permit && unconstrained {
            let when = if policy.has_non_scope_constraint() { " (only its conditions limit it)" } else { "" };
            find("unconstrained-permit", format!("permits any principal, any action on any resource{when}"));
        }
        if permit && policy.annotation("id").is_none() && grants_admin(&policy.action_constraint()) {
            find(
                "admin-without-id",
                "can grant admin or ddl but has no @id: the audit log would name it only by file and position".into(),
            );
        }
        if let Some(end) = policy.to_json().ok().as_ref().and_then(ends_before)
            && end <= now
        {
            {
                let at = time::OffsetDateTime::from_unix_timestamp(end)
                    .ok()
                    .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                    .unwrap_or_else(|| end.to_string());
                find("expired-time-bound", format!("applies only before {at}, which has passed: delete it"));
            }
        }
        if permit {
            for forbid in all.iter().filter(|f| f.effect() == Effect::Forbid) {
                if policy.principal_constraint() == forbid.principal_constraint()
                    && policy.resource_constraint() == forbid.resource_constraint()
                    && actions_overlap(&policy.action_constraint(), &forbid.action_constraint())
                {
                    find(
                        "overlapping-permit-forbid",
                        format!(
                            "forbid {} has the same principal and resource scope and a shared action: where both apply it wins; merge them or narrow one",
                            forbid.id()
                        ),
                    );
                }
            }
        }
    }
    let validated = Validator::new(schema.clone()).validate(policies, ValidationMode::Strict);
    for warning in validated.validation_warnings() {
        if let ValidationWarning::ImpossiblePolicy(_) = warning {
            findings.push(Finding {
                lint: "impossible-policy",
                policy: warning.policy_id().to_string(),
                message: "can never apply under the schema (its conditions are false for every valid request)".into(),
            });
        }
    }
    findings
}

fn grants_admin(actions: &ActionConstraint) -> bool {
    // Who can be granted an action that administers must be nameable.
    let named =
        |uid: &cedar_policy::EntityUid| action::effect(uid.id().unescaped()) == Some(action::Effect::Administer);
    match actions {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => named(uid),
        ActionConstraint::In(uids) => uids.iter().any(named),
    }
}

fn actions_overlap(a: &ActionConstraint, b: &ActionConstraint) -> bool {
    let set = |c: &ActionConstraint| match c {
        ActionConstraint::Any => None,
        ActionConstraint::Eq(uid) => Some(vec![uid.clone()]),
        ActionConstraint::In(uids) => Some(uids.clone()),
    };
    match (set(a), set(b)) {
        (Some(a), Some(b)) => a.iter().any(|uid| b.contains(uid)),
        _ => true,
    }
}

/// The earliest end of a `context.now < datetime("…")` (or `<=`, or the mirrored `>` / `>=`)
/// bound anywhere in the policy's conditions (Cedar's JSON form), as unix seconds.
fn ends_before(policy: &Value) -> Option<i64> {
    let mut ends = Vec::new();
    walk(policy, &mut ends);
    ends.into_iter().min()
}

fn walk(value: &Value, ends: &mut Vec<i64>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let sides = || Some((inner.get("left")?, inner.get("right")?));
                let bound = match (key.as_str(), sides()) {
                    ("<" | "<=", Some((left, right))) if is_context_now(left) => datetime(right),
                    (">" | ">=", Some((left, right))) if is_context_now(right) => datetime(left),
                    _ => None,
                };
                ends.extend(bound);
                walk(inner, ends);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| walk(item, ends)),
        _ => {}
    }
}

fn is_context_now(value: &Value) -> bool {
    value.get(".").is_some_and(|access| {
        access.get("attr").and_then(Value::as_str) == Some("now")
            && access.get("left").and_then(|l| l.get("Var")).and_then(Value::as_str) == Some("context")
    })
}

/// `datetime("…")` in Cedar's JSON form, as unix seconds.
fn datetime(value: &Value) -> Option<i64> {
    let text = value.get("datetime")?.get(0)?.get("Value")?.as_str()?;
    // Cedar also takes a bare date (`2026-11-21`): midnight UTC.
    let text = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_string() };
    time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    const SCHEMA: &str = r#"
        entity Group;
        entity User in [Group];
        entity Dataset;
        type Ctx = { now: datetime };
        action select, admin, ddl appliesTo { principal: [User], resource: [Dataset], context: Ctx };
    "#;

    fn findings(text: &str) -> Vec<(String, &'static str)> {
        let schema = Schema::from_cedarschema_str(SCHEMA).unwrap().0;
        // Named by `@id` as the loader names them, else `policyN`.
        let mut set = PolicySet::new();
        for policy in PolicySet::from_str(text).unwrap().policies() {
            let id = policy.annotation("id").map_or_else(|| policy.id().to_string(), str::to_string);
            set.add(policy.new_id(cedar_policy::PolicyId::new(id))).unwrap();
        }
        // 2026-12-01T00:00:00Z
        lint(&set, &schema, &Governance::default(), 1_796_083_200).into_iter().map(|f| (f.policy, f.lint)).collect()
    }

    #[test]
    fn each_lint_finds_its_planted_policy() {
        let found = findings(
            r#"
            @id("everything") permit(principal, action, resource);
            @id("expired") permit(principal in Group::"oncall", action == Action::"select", resource)
              when { context.now >= datetime("2026-11-20T00:00:00Z") && context.now < datetime("2026-11-21T00:00:00Z") };
            @id("mirrored") permit(principal in Group::"oncall", action == Action::"select", resource)
              when { datetime("2026-11-21") > context.now };
            @id("current") permit(principal in Group::"oncall", action == Action::"select", resource)
              when { context.now < datetime("2027-01-01T00:00:00Z") };
            permit(principal in Group::"ops", action in [Action::"ddl", Action::"select"], resource);
            @id("readers") permit(principal in Group::"readers", action == Action::"select", resource);
            @id("no-readers") forbid(principal in Group::"readers", action in [Action::"select", Action::"admin"], resource);
            @id("never") permit(principal, action == Action::"select", resource) when { false };
            "#,
        );
        let has = |policy: &str, lint: &str| found.iter().any(|(p, l)| p == policy && *l == lint);
        assert!(has("everything", "unconstrained-permit"), "{found:?}");
        assert!(!has("everything", "admin-without-id"), "named: {found:?}");
        assert!(has("expired", "expired-time-bound") && has("mirrored", "expired-time-bound"), "{found:?}");
        assert!(!found.iter().any(|(p, _)| p == "current"), "a bound still ahead is fine: {found:?}");
        assert!(has("policy4", "admin-without-id"), "{found:?}");
        assert!(has("readers", "overlapping-permit-forbid"), "{found:?}");
        assert!(has("never", "impossible-policy"), "{found:?}");
    }

    #[test]
    fn a_clean_set_has_no_findings() {
        let found = findings(
            r#"
            @id("admin") permit(principal in Group::"admins", action, resource);
            @id("readers") permit(principal in Group::"readers", action == Action::"select", resource);
            @id("no-ddl-for-readers") forbid(principal in Group::"contractors", action == Action::"ddl", resource);
            "#,
        );
        assert!(found.is_empty(), "{found:?}");
    }
}
