//! `?` placeholders, as JDBC, ODBC and BI tools write them: numbered `$1`, `$2`, … in the
//! order they appear, the form DataFusion binds (it refuses a bare `?`: "Failed to parse
//! placeholder id"). Rewritten on the statement's tokens, so a `?` inside a string, a quoted
//! name or a comment is left alone. A statement may use one style or the other, not both
//! (which `$n` a `?` would be is then a guess).

use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::EngineError;

/// `sql` with its `?` placeholders numbered; borrowed as it is when it has none.
pub(crate) fn numbered<'a>(dialect: &dyn Dialect, sql: &'a str) -> Result<std::borrow::Cow<'a, str>, EngineError> {
    if !sql.contains('?') {
        return Ok(std::borrow::Cow::Borrowed(sql));
    }
    // A statement that does not tokenize is left for the parser to name its error.
    let Ok(tokens) = Tokenizer::new(dialect, sql).tokenize() else { return Ok(std::borrow::Cow::Borrowed(sql)) };
    let is_question = |token: &Token| matches!(token, Token::Placeholder(p) if p == "?");
    if !tokens.iter().any(is_question) {
        return Ok(std::borrow::Cow::Borrowed(sql));
    }
    if tokens.iter().any(|t| matches!(t, Token::Placeholder(p) if p.starts_with('$'))) {
        return Err(EngineError::BadRequest(
            "the statement mixes ? and $n placeholders: use one style (? are numbered $1, $2, … in order)".into(),
        ));
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 0u32;
    for token in &tokens {
        if is_question(token) {
            next += 1;
            out.push('$');
            out.push_str(&next.to_string());
        } else {
            out.push_str(&token.to_string());
        }
    }
    Ok(std::borrow::Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    use super::*;

    fn numbered_text(sql: &str) -> Result<String, String> {
        numbered(&GenericDialect {}, sql).map(|s| s.into_owned()).map_err(|e| e.to_string())
    }

    #[test]
    fn question_marks_are_numbered_in_order_and_nothing_else_changes() {
        assert_eq!(
            numbered_text("SELECT a, '?' AS q, \"b?\" FROM t WHERE x = ? AND y IN (?, ?) -- ?\n LIMIT ?").unwrap(),
            "SELECT a, '?' AS q, \"b?\" FROM t WHERE x = $1 AND y IN ($2, $3) -- ?\n LIMIT $4"
        );
        assert_eq!(numbered_text("SELECT 'it''s?' FROM t").unwrap(), "SELECT 'it''s?' FROM t");
        assert_eq!(numbered_text("SELECT $1, $2").unwrap(), "SELECT $1, $2");
        assert!(numbered_text("SELECT ?, $1").unwrap_err().contains("mixes ? and $n"));
    }
}
