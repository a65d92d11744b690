//! How two row and column decisions for the same call differ, for the shadow set (live) and
//! `gateway policy replay` (recorded): `widens` when the other shows a column the first
//! masks or denies (or masks it less privately), else `rows` when its row filter differs,
//! else `narrows` when it hides more. Both sides are compared in the form an audit event
//! records them ([`Decided`]), so a recorded decision and a live one compare alike.

use identity::{DatasetPolicy, Mask};

/// One dataset's decision as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decided {
    pub dataset: String,
    /// The row filter as SQL, or `every row`.
    pub rows: String,
    /// Masked columns with their masks' privacy ranks.
    pub masks: Vec<(String, u8)>,
    pub denied: Vec<String>,
}

impl Decided {
    pub(crate) fn of(policy: &DatasetPolicy) -> Self {
        Self {
            dataset: policy.dataset.clone(),
            rows: policy.rows.as_ref().map_or_else(|| "every row".to_string(), identity::RowFilter::to_sql),
            masks: policy.masks.iter().map(|m| (m.column.clone(), m.mask.privacy_rank())).collect(),
            denied: policy.denied.clone(),
        }
    }

    fn rank(&self, column: &str) -> Option<u8> {
        self.masks.iter().find(|(c, _)| c == column).map(|(_, r)| *r)
    }

    fn denies(&self, column: &str) -> bool {
        self.denied.iter().any(|c| c == column)
    }
}

/// How `theirs` differs from `ours`, and the first dataset it differs on.
pub(crate) fn compare(ours: &[Decided], theirs: &[Decided]) -> Option<(&'static str, String)> {
    let mut change = None;
    for mine in ours {
        let Some(other) = theirs.iter().find(|t| t.dataset == mine.dataset) else { continue };
        let shows_more = mine.denied.iter().any(|c| !other.denies(c))
            || mine.masks.iter().any(|(c, rank)| !other.denies(c) && other.rank(c).is_none_or(|r| r > *rank));
        if shows_more {
            return Some(("widens", mine.dataset.clone()));
        }
        if mine.rows != other.rows {
            change = Some(("rows", mine.dataset.clone()));
        } else if change.is_none() && mine != other {
            change = Some(("narrows", mine.dataset.clone()));
        }
    }
    change
}

/// A recorded mask's rank by its name (an unknown name counts as the most private: a
/// candidate is never reported as hiding less than a mask this build does not know).
pub(crate) fn rank_of(name: &str) -> u8 {
    Mask::rank_of(name).unwrap_or(0)
}
