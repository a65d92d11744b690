//! Row filters written in Cedar: the `select_row` policies, partially evaluated with the
//! caller known and the row unknown (cedar-policy's type-aware partial evaluation, `tpe`),
//! leave residual conditions over the row's attributes, which this module compiles into the
//! engine's row-filter language ([`identity::RowFilter`]).
//!
//! Visible rows follow Cedar's own rule: allowed when some permit holds and no forbid does.
//! So the filter is `(permit₁ OR permit₂ …) AND NOT (forbid₁ OR …)`, each residual counted
//! only when it is true (a NULL, like a Cedar error, makes a policy not apply).
//!
//! What compiles: literals, `resource.column`, `resource has column`, `!`, `&&`, `||`,
//! `==`, `!=`, `<`, `<=`, `>`, `>=`, `[…].contains(resource.column)`, `like`, and
//! `if … then … else …`, over anything about the principal and the context (Cedar evaluates
//! those before the residual is left). Anything else about the row (`resource in …`,
//! arithmetic on a column, a nested attribute, a tag) is refused when the policies load,
//! naming the construct and the policy.

use cedar_policy::Policy;
use cedar_policy::pst::{BinaryOp, Clause, Expr, Literal, PatternElem, UnaryOp, Var};
use identity::{Comparison, LikePart, RowFilter};

/// A construct the compiler does not translate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unsupported(pub String);

/// The condition of `policy` (a residual: scope unconstrained), as a row filter.
pub(crate) fn compile_policy(policy: &Policy) -> Result<RowFilter, Unsupported> {
    let pst = policy.to_pst().map_err(|e| Unsupported(e.to_string()))?;
    let mut parts = Vec::new();
    for clause in pst.body().clauses() {
        parts.push(match clause {
            Clause::When(expr) => compile(expr)?,
            Clause::Unless(expr) => RowFilter::Not(Box::new(RowFilter::IsTrue(Box::new(compile(expr)?)))),
        });
    }
    Ok(simplify(RowFilter::And(parts)))
}

/// Refuses, when the policies load, a `select_row` policy whose conditions say something
/// about the row that [`compile_policy`] will not translate once the caller is known.
pub(crate) fn check_policy(policy: &Policy) -> Result<(), Unsupported> {
    let pst = policy.to_pst().map_err(|e| Unsupported(e.to_string()))?;
    for clause in pst.body().clauses() {
        let (Clause::When(expr) | Clause::Unless(expr)) = clause;
        check(expr)?;
    }
    Ok(())
}

/// Visible = (any permit) AND NOT (any forbid), each counted only when true.
pub(crate) fn combine(permits: Vec<RowFilter>, forbids: Vec<RowFilter>) -> RowFilter {
    let permitted = RowFilter::Or(permits.into_iter().map(|p| RowFilter::IsTrue(Box::new(p))).collect());
    let forbidden = RowFilter::Or(forbids.into_iter().map(|f| RowFilter::IsTrue(Box::new(f))).collect());
    simplify(RowFilter::And(vec![permitted, RowFilter::Not(Box::new(forbidden))]))
}

fn mentions_resource(expr: &Expr) -> bool {
    match expr {
        Expr::Var(Var::Resource) => true,
        Expr::Literal(_) | Expr::Var(_) | Expr::Slot(_) => false,
        Expr::UnaryOp { expr, .. }
        | Expr::GetAttr { expr, .. }
        | Expr::HasAttr { expr, .. }
        | Expr::Like { expr, .. } => mentions_resource(expr),
        Expr::Is { expr, in_expr, .. } => mentions_resource(expr) || in_expr.as_deref().is_some_and(mentions_resource),
        Expr::BinaryOp { left, right, .. } => mentions_resource(left) || mentions_resource(right),
        Expr::IfThenElse { cond, then_expr, else_expr } => {
            mentions_resource(cond) || mentions_resource(then_expr) || mentions_resource(else_expr)
        }
        Expr::Set(items) => items.iter().any(|e| mentions_resource(e)),
        Expr::Record(fields) => fields.values().any(|e| mentions_resource(e)),
        // Anything newer: assume it does (and refuse it).
        _ => true,
    }
}

fn check(expr: &Expr) -> Result<(), Unsupported> {
    if !mentions_resource(expr) {
        return Ok(());
    }
    match expr {
        Expr::GetAttr { expr, .. } | Expr::HasAttr { expr, .. } if matches!(**expr, Expr::Var(Var::Resource)) => Ok(()),
        Expr::UnaryOp { op: UnaryOp::Not, expr } | Expr::Like { expr, .. } => check(expr),
        Expr::BinaryOp { op, left, right } => match op {
            BinaryOp::And
            | BinaryOp::Or
            | BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::Less
            | BinaryOp::LessEq
            | BinaryOp::Greater
            | BinaryOp::GreaterEq => check(left).and(check(right)),
            BinaryOp::Contains if !mentions_resource(left) => check(right),
            other => Err(Unsupported(format!("`{other}` on a row attribute"))),
        },
        Expr::IfThenElse { cond, then_expr, else_expr } => check(cond).and(check(then_expr)).and(check(else_expr)),
        other => Err(Unsupported(describe(other))),
    }
}

fn compile(expr: &Expr) -> Result<RowFilter, Unsupported> {
    Ok(match expr {
        Expr::Literal(Literal::Bool(b)) => RowFilter::Bool(*b),
        Expr::Literal(Literal::Long(n)) => RowFilter::Long(*n),
        Expr::Literal(Literal::String(s)) => RowFilter::String(s.to_string()),
        Expr::GetAttr { expr, attr } if matches!(**expr, Expr::Var(Var::Resource)) => {
            RowFilter::Column(attr.to_string())
        }
        Expr::HasAttr { expr, attrs } if matches!(**expr, Expr::Var(Var::Resource)) => RowFilter::And(
            attrs.iter().map(|a| RowFilter::IsNotNull(Box::new(RowFilter::Column(a.to_string())))).collect(),
        ),
        Expr::UnaryOp { op: UnaryOp::Not, expr } => RowFilter::Not(Box::new(compile(expr)?)),
        Expr::BinaryOp { op, left, right } => {
            let (l, r) = (|| compile(left), || compile(right));
            let compare = |op| -> Result<RowFilter, Unsupported> {
                Ok(RowFilter::Compare { op, left: Box::new(l()?), right: Box::new(r()?) })
            };
            match op {
                BinaryOp::And => RowFilter::And(vec![l()?, r()?]),
                BinaryOp::Or => RowFilter::Or(vec![l()?, r()?]),
                BinaryOp::Eq => compare(Comparison::Eq)?,
                BinaryOp::NotEq => compare(Comparison::NotEq)?,
                BinaryOp::Less => compare(Comparison::Lt)?,
                BinaryOp::LessEq => compare(Comparison::LtEq)?,
                BinaryOp::Greater => compare(Comparison::Gt)?,
                BinaryOp::GreaterEq => compare(Comparison::GtEq)?,
                BinaryOp::Contains => match &**left {
                    Expr::Set(items) => RowFilter::In {
                        expr: Box::new(r()?),
                        list: items.iter().map(|item| compile(item)).collect::<Result<_, _>>()?,
                    },
                    other => return Err(Unsupported(format!("`contains` on {}", describe(other)))),
                },
                other => return Err(Unsupported(format!("`{other}` on a row attribute"))),
            }
        }
        Expr::Like { expr, pattern } => {
            let mut parts: Vec<LikePart> = Vec::new();
            for element in pattern {
                match (element, parts.last_mut()) {
                    (PatternElem::Wildcard, _) => parts.push(LikePart::Wildcard),
                    (PatternElem::Char(c), Some(LikePart::Text(text))) => text.push(*c),
                    (PatternElem::Char(c), _) => parts.push(LikePart::Text(c.to_string())),
                }
            }
            RowFilter::Like { expr: Box::new(compile(expr)?), pattern: parts }
        }
        Expr::IfThenElse { cond, then_expr, else_expr } => {
            let cond = compile(cond)?;
            RowFilter::Or(vec![
                RowFilter::And(vec![RowFilter::IsTrue(Box::new(cond.clone())), compile(then_expr)?]),
                RowFilter::And(vec![RowFilter::Not(Box::new(cond)), compile(else_expr)?]),
            ])
        }
        other => return Err(Unsupported(describe(other))),
    })
}

/// What a construct is, for the refusal.
fn describe(expr: &Expr) -> String {
    match expr {
        Expr::Var(Var::Resource) => "the row itself (only its attributes can be compared)".into(),
        Expr::GetAttr { .. } => "a nested attribute".into(),
        Expr::Is { .. } => "`is` on the row".into(),
        Expr::UnaryOp { op, .. } => format!("`{op:?}` on a row attribute"),
        Expr::Set(_) => "a set of row attributes".into(),
        Expr::Record(_) => "a record".into(),
        Expr::Literal(Literal::EntityUID(_)) => "an entity".into(),
        Expr::HasAttr { .. } => "`has` on something other than the row".into(),
        _ => "an expression on the row that has no SQL form".into(),
    }
}

/// Folds constants: `true && x` is `x`, `false || x` is `x`, `!true` is `false`, nested
/// `&&` / `||` flatten; what is left is what the engine evaluates per row.
pub(crate) fn simplify(filter: RowFilter) -> RowFilter {
    match filter {
        RowFilter::And(items) => {
            let mut out = Vec::new();
            for item in items.into_iter().map(simplify) {
                match item {
                    RowFilter::Bool(true) => {}
                    RowFilter::Bool(false) => return RowFilter::Bool(false),
                    RowFilter::And(inner) => out.extend(inner),
                    other => out.push(other),
                }
            }
            match out.len() {
                0 => RowFilter::Bool(true),
                1 => out.pop().unwrap_or(RowFilter::Bool(true)),
                _ => RowFilter::And(out),
            }
        }
        RowFilter::Or(items) => {
            let mut out = Vec::new();
            for item in items.into_iter().map(simplify) {
                match item {
                    RowFilter::Bool(false) => {}
                    RowFilter::Bool(true) => return RowFilter::Bool(true),
                    RowFilter::Or(inner) => out.extend(inner),
                    other => out.push(other),
                }
            }
            match out.len() {
                0 => RowFilter::Bool(false),
                1 => out.pop().unwrap_or(RowFilter::Bool(false)),
                _ => RowFilter::Or(out),
            }
        }
        RowFilter::Not(inner) => match simplify(*inner) {
            RowFilter::Bool(b) => RowFilter::Bool(!b),
            other => RowFilter::Not(Box::new(other)),
        },
        RowFilter::IsTrue(inner) => match simplify(*inner) {
            RowFilter::Bool(b) => RowFilter::Bool(b),
            already @ (RowFilter::IsTrue(_) | RowFilter::IsNotNull(_)) => already,
            other => RowFilter::IsTrue(Box::new(other)),
        },
        RowFilter::Compare { op, left, right } => {
            RowFilter::Compare { op, left: Box::new(simplify(*left)), right: Box::new(simplify(*right)) }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn policy(text: &str) -> Policy {
        Policy::from_str(text).unwrap()
    }

    #[test]
    fn conditions_compile_and_fold() {
        let p = policy(
            r#"permit(principal, action, resource) when { resource.tenant == "acme" || (resource has region && resource.region like "eu-*") } unless { ["x", "y"].contains(resource.tenant) };"#,
        );
        let filter = compile_policy(&p).unwrap();
        assert_eq!(
            filter.to_sql(),
            r#"((("tenant" = 'acme') OR (("region" IS NOT NULL) AND ("region" LIKE 'eu-%' ESCAPE '\'))) AND NOT (("tenant" IN ('x', 'y')) IS TRUE))"#
        );
        assert_eq!(combine(vec![RowFilter::Bool(true)], vec![]), RowFilter::Bool(true));
        assert_eq!(combine(vec![], vec![]), RowFilter::Bool(false));
        assert_eq!(combine(vec![RowFilter::Bool(true)], vec![RowFilter::Bool(true)]), RowFilter::Bool(false));
        let tenant = RowFilter::Column("tenant".into());
        assert_eq!(
            combine(vec![tenant.clone()], vec![]),
            RowFilter::IsTrue(Box::new(tenant.clone())),
            "a single permit, no forbid"
        );
    }

    #[test]
    fn what_has_no_sql_form_is_refused_at_load_naming_it() {
        for (text, construct) in [
            (r#"permit(principal, action, resource) when { resource.amount + 1 > 10 };"#, "`+`"),
            (r#"permit(principal, action, resource) when { resource in Group::"x" };"#, "`in`"),
            (r#"permit(principal, action, resource) when { resource.address.city == "x" };"#, "nested"),
            (r#"permit(principal, action, resource) when { resource.hasTag("x") };"#, "hasTag"),
        ] {
            let error = check_policy(&policy(text)).unwrap_err();
            assert!(error.0.contains(construct), "{text}: {error:?}");
        }
        for fine in [
            r#"permit(principal, action, resource) when { principal has tenant && resource.tenant == principal.tenant };"#,
            r#"permit(principal, action, resource) when { principal in Group::"auditors" || context.mfa };"#,
            r#"forbid(principal, action, resource) when { resource.amount > 900 } unless { principal in Group::"x" };"#,
        ] {
            assert_eq!(check_policy(&policy(fine)), Ok(()), "{fine}");
        }
    }
}
