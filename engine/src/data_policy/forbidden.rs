//! The refusal of a statement that names a column policy denies the caller: a leaf, so the
//! barrier that raises it and the rule that sets the barrier up both reach it.

use std::fmt;

/// A query referenced a column policy denies it; answered `column_forbidden` (403).
#[derive(Debug, Clone)]
pub struct ColumnForbidden {
    pub dataset: String,
    pub column: String,
}

impl fmt::Display for ColumnForbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "column {} of dataset {} is forbidden to you by policy: leave it out (name the columns you need instead of *)",
            self.column, self.dataset
        )
    }
}

impl std::error::Error for ColumnForbidden {}
