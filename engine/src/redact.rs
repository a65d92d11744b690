//! Errors raised while a query runs can quote the row they failed on ("Cannot cast string
//! 'Hank Scorpio' to value of Int32 type", an overflow's operands, a regex built from a
//! column), and the row may be one a view's filter hides from the caller. Such errors reach
//! the caller without values: the first line only, quoted text and free-standing numbers
//! replaced by `…`. Errors found while planning quote only the caller's own SQL and keep
//! their detail.

use datafusion::error::DataFusionError;

/// The longest redacted message kept.
const MAX_LEN: usize = 300;

/// `error` with every value it quotes removed, as an execution error. Errors that reach the
/// client without their message (internal faults, see `EngineError`) and resource errors
/// (which quote sizes, not rows) keep their category.
pub(crate) fn execution_error(error: DataFusionError) -> DataFusionError {
    match error.find_root() {
        DataFusionError::ResourcesExhausted(_)
        | DataFusionError::Internal(_)
        | DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::External(_)
        | DataFusionError::ExecutionJoin(_) => error,
        _ => DataFusionError::Execution(without_values(&error.strip_backtrace())),
    }
}

fn without_values(message: &str) -> String {
    let first_line = message.lines().next().unwrap_or_default();
    let mut out = String::with_capacity(first_line.len().min(MAX_LEN));
    let mut chars = first_line.chars().peekable();
    // Whether the last character written continues a word (then digits are part of a name
    // such as `Int32`, not a value).
    let mut in_word = false;
    while let Some(c) = chars.next() {
        if out.len() >= MAX_LEN {
            break;
        }
        if matches!(c, '\'' | '"' | '`') {
            // A quoted value: dropped up to its closing quote.
            out.push(c);
            out.push('…');
            out.push(c);
            for inner in chars.by_ref() {
                if inner == c {
                    break;
                }
            }
            in_word = false;
            continue;
        }
        let starts_number = c.is_ascii_digit() || (c == '-' && chars.peek().is_some_and(char::is_ascii_digit));
        if starts_number && !in_word {
            out.push('…');
            while chars.peek().is_some_and(|n| n.is_ascii_alphanumeric() || *n == '.') {
                chars.next();
            }
            in_word = false;
            continue;
        }
        out.push(c);
        in_word = c.is_alphanumeric() || c == '_';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_removed_and_the_problem_kept() {
        for (raw, redacted) in [
            (
                "Cast error: Cannot cast string 'Hank Scorpio' to value of Int32 type",
                "Cast error: Cannot cast string '…' to value of Int32 type",
            ),
            (
                "Arrow error: Compute error: Overflow happened on: 9223372036854775807 * 2",
                "Arrow error: Compute error: Overflow happened on: … * …",
            ),
            ("regex parse error:\n    Hank(\n        ^\nerror: unclosed group", "regex parse error:"),
            ("Divide by zero error", "Divide by zero error"),
            ("value -12.5e3 out of range for Int8", "value … out of range for Int8"),
        ] {
            assert_eq!(without_values(raw), redacted, "{raw}");
        }
        let long = "x".repeat(10_000);
        assert!(without_values(&long).len() <= MAX_LEN);
    }
}
