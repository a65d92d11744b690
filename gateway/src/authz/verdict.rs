//! What authorizing one call finds: the Cedar requests it implies ([`Ask`]), each policy
//! set's [`Answer`], and the [`Verdict`] the decision cache keeps and the audit event records.

use std::sync::Arc;

use super::data_change::{Decided, compare};
use super::error::AuthzError;
use super::sql::{DatasetName, StatementAccess};

/// What a single Cedar request is about.
#[derive(Debug, Clone)]
pub enum Resource {
    /// The endpoint is the request's path ([`RequestFacts::path`]).
    Endpoint,
    Dataset(DatasetName),
    /// A declared column: its dataset and its `Column` entity id.
    Column(DatasetName, String),
    /// One concrete row of a dataset with a row type (policy tests, and the oracle the row
    /// filters are tested against): the type, the dataset, and the row's attributes.
    Row(cedar_policy::EntityTypeName, DatasetName, Vec<(String, cedar_policy::RestrictedExpression)>),
}

/// One Cedar decision, with its reasons: for `gateway policy test` and `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub allowed: bool,
    /// The determining policies: the permits that allowed, or the forbids that denied.
    pub policies: Vec<String>,
    /// Policies that failed to evaluate (and so did not apply).
    pub errors: Vec<String>,
}

/// An allowed request: what the stamp needs beyond the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowed {
    /// For a request that only reads the catalog (every endpoint action `describe`): the
    /// datasets the caller may `select`, which is all the engine will list to it.
    pub listing: Option<Vec<String>>,
    /// The fingerprint of the policy set that allowed the call ([`PolicyBundle::fingerprint`]).
    pub policy: Arc<str>,
    /// Every dataset the call's statement touches, sorted, each once: the engine resolves
    /// no other table for it (see `identity`'s stamp `scope`).
    pub scope: Arc<[String]>,
    /// The row and column decisions for the governed datasets the statement reads, directly
    /// or through views (see `identity`'s stamp `data`).
    pub data: Arc<[identity::DatasetPolicy]>,
    /// Cedar permits the caller `unlimited_rows` (on the endpoint): its tier's row caps and
    /// rows-per-window budget do not apply.
    pub unlimited_rows: bool,
}

/// One Cedar request a call implies: an endpoint action (on the request's path) or a
/// dataset action (on that dataset).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ask {
    pub action: &'static str,
    pub dataset: Option<DatasetName>,
}

impl Ask {
    /// The Cedar resource this ask is about.
    pub fn resource(&self) -> Resource {
        self.dataset.clone().map_or(Resource::Endpoint, Resource::Dataset)
    }
}

/// One policy set's answer to a call: the asks are decided in order and the first one
/// refused ends it, as the gateway enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub allowed: bool,
    /// The determining policies: every permit that allowed an ask, or the forbids that
    /// refused the refused one (none for Cedar's default deny). Sorted, each once.
    pub policies: Vec<String>,
    /// The index (into [`Verdict::asks`]) of the ask that was refused.
    pub refused: Option<usize>,
}

/// Everything authorizing one call found, kept whole for the decision cache and the audit
/// event: the outcome the gateway enforces, every Cedar request the call implies (all of
/// them, also after a refusal, so a replay can ask each again), and each set's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Result<Allowed, AuthzError>,
    /// Empty when the call could not be classified (bad SQL, an unknown RPC, ...).
    pub asks: Vec<Ask>,
    /// The enforced set's answer; `None` when Cedar was never asked.
    pub enforced: Option<Answer>,
    /// The shadow set's answer, when a shadow set is configured and Cedar was asked.
    pub shadow: Option<Answer>,
    /// The shadow set's row and column decisions, where both sets allowed the call and the
    /// shadow set decided rows or columns otherwise.
    pub shadow_data: Option<Arc<[identity::DatasetPolicy]>>,
}

impl Verdict {
    pub(super) fn refused(error: AuthzError) -> Self {
        Self { outcome: Err(error), asks: Vec::new(), enforced: None, shadow: None, shadow_data: None }
    }

    /// `(enforced allowed, shadow allowed)` when the two sets decided differently.
    pub fn disagreement(&self) -> Option<(bool, bool)> {
        let (enforced, shadow) = (self.enforced.as_ref()?, self.shadow.as_ref()?);
        (enforced.allowed != shadow.allowed).then_some((enforced.allowed, shadow.allowed))
    }

    /// How the shadow set's row and column decisions differ from the enforced ones
    /// (`widens`, `rows` or `narrows`, see [`super::data_change`]).
    pub fn data_change(&self) -> Option<&'static str> {
        let shadow = self.shadow_data.as_ref()?;
        let enforced = self.outcome.as_ref().ok()?;
        let ours: Vec<Decided> = enforced.data.iter().map(Decided::of).collect();
        let theirs: Vec<Decided> = shadow.iter().map(Decided::of).collect();
        compare(&ours, &theirs).map(|(change, _)| change)
    }
}

/// The datasets `asks` name, sorted, each once: a stamp's `scope`.
pub(super) fn scope(asks: &[Ask]) -> Arc<[String]> {
    let mut names: Vec<String> = asks.iter().filter_map(|a| a.dataset.as_ref().map(ToString::to_string)).collect();
    names.sort();
    names.dedup();
    Arc::from(names)
}

/// Every Cedar request `accesses` imply, in order, each once: per statement its endpoint
/// action, then each dataset action.
pub(super) fn asks(accesses: &[StatementAccess]) -> Vec<Ask> {
    let mut asks: Vec<Ask> = Vec::new();
    for access in accesses {
        let endpoint = Ask { action: access.endpoint.as_str(), dataset: None };
        let datasets = access
            .datasets
            .iter()
            .map(|(action, dataset)| Ask { action: action.as_str(), dataset: Some(dataset.clone()) });
        for ask in std::iter::once(endpoint).chain(datasets) {
            if !asks.contains(&ask) {
                asks.push(ask);
            }
        }
    }
    asks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::action::{DatasetAction, EndpointAction};

    fn dataset(table: &str) -> DatasetName {
        DatasetName { catalog: "datafusion".into(), schema: "public".into(), table: table.into() }
    }

    #[test]
    fn a_shadow_set_that_shows_more_of_a_column_widens() {
        use identity::{ColumnMask, DatasetPolicy, Mask, RowFilter};
        let policy = |denied: &[&str], masks: &[(&str, Mask)], rows: Option<RowFilter>| DatasetPolicy {
            dataset: "datafusion.demo.customers".into(),
            denied: denied.iter().map(|c| c.to_string()).collect(),
            masks: masks.iter().map(|(c, m)| ColumnMask { column: c.to_string(), mask: m.clone() }).collect(),
            unmasked: Vec::new(),
            rows,
            row_policies: Vec::new(),
        };
        let verdict = |ours: DatasetPolicy, theirs: DatasetPolicy| Verdict {
            outcome: Ok(Allowed { data: Arc::from(vec![ours]), ..Allowed::default() }),
            asks: Vec::new(),
            enforced: None,
            shadow: None,
            shadow_data: Some(Arc::from(vec![theirs])),
        };
        let enforced = || policy(&["national_id"], &[("email", Mask::KeyedHash)], Some(RowFilter::Bool(false)));
        // Unmasks, masks less privately, or masks a denied column: widens.
        let unmasked = policy(&["national_id"], &[], Some(RowFilter::Bool(false)));
        let weaker = policy(&["national_id"], &[("email", Mask::EmailDomain)], Some(RowFilter::Bool(false)));
        let undenied =
            policy(&[], &[("email", Mask::KeyedHash), ("national_id", Mask::Null)], Some(RowFilter::Bool(false)));
        for theirs in [unmasked, weaker, undenied] {
            assert_eq!(verdict(enforced(), theirs).data_change(), Some("widens"));
        }
        let other_rows = policy(&["national_id"], &[("email", Mask::KeyedHash)], None);
        assert_eq!(verdict(enforced(), other_rows).data_change(), Some("rows"));
        let stricter = policy(&["national_id", "email"], &[], Some(RowFilter::Bool(false)));
        assert_eq!(verdict(enforced(), stricter).data_change(), Some("narrows"));
        let mut same = verdict(enforced(), enforced());
        assert_eq!(same.data_change(), None);
        same.shadow_data = None;
        assert_eq!(same.data_change(), None);
    }

    #[test]
    fn asks_are_each_statements_endpoint_then_its_datasets_in_order_each_once() {
        let accesses = [
            StatementAccess {
                endpoint: EndpointAction::Query,
                datasets: vec![(DatasetAction::Select, dataset("b")), (DatasetAction::Select, dataset("a"))],
            },
            StatementAccess {
                endpoint: EndpointAction::Write,
                datasets: vec![(DatasetAction::Select, dataset("a")), (DatasetAction::Insert, dataset("a"))],
            },
        ];
        let asked: Vec<(&str, Option<String>)> =
            asks(&accesses).iter().map(|a| (a.action, a.dataset.as_ref().map(ToString::to_string))).collect();
        assert_eq!(
            asked,
            [
                ("query", None),
                ("select", Some("datafusion.public.b".into())),
                ("select", Some("datafusion.public.a".into())),
                ("write", None),
                ("insert", Some("datafusion.public.a".into())),
            ]
        );
        assert!(asks(&[]).is_empty());
    }

    #[test]
    fn the_scope_is_every_dataset_asked_about_sorted_once() {
        let asked = [
            Ask { action: "query", dataset: None },
            Ask { action: "select", dataset: Some(dataset("b")) },
            Ask { action: "insert", dataset: Some(dataset("a")) },
            Ask { action: "select", dataset: Some(dataset("a")) },
        ];
        assert_eq!(&*scope(&asked), ["datafusion.public.a", "datafusion.public.b"]);
        assert!(scope(&asked[..1]).is_empty());
    }

    #[test]
    fn an_ask_is_about_its_dataset_or_else_the_endpoint() {
        assert!(matches!(Ask { action: "query", dataset: None }.resource(), Resource::Endpoint));
        let asked = Ask { action: "select", dataset: Some(dataset("a")) }.resource();
        assert!(matches!(asked, Resource::Dataset(d) if d == dataset("a")));
    }

    #[test]
    fn a_disagreement_is_reported_only_when_both_sets_answered_differently() {
        let answer = |allowed| Some(Answer { allowed, ..Answer::default() });
        let verdict = |enforced, shadow| Verdict {
            outcome: Ok(Allowed::default()),
            asks: Vec::new(),
            enforced,
            shadow,
            shadow_data: None,
        };
        assert_eq!(verdict(answer(true), answer(false)).disagreement(), Some((true, false)));
        assert_eq!(verdict(answer(false), answer(true)).disagreement(), Some((false, true)));
        assert_eq!(verdict(answer(true), answer(true)).disagreement(), None);
        assert_eq!(verdict(answer(true), None).disagreement(), None);
        let refused = Verdict::refused(AuthzError::NotRouted("/x".into()));
        assert_eq!((refused.asks.len(), refused.enforced.is_none(), refused.disagreement()), (0, true, None));
    }
}
