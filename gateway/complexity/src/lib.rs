//! How large and how deep a SQL statement may be.
//!
//! A parsed expression is a tree, and the parsers, planners, visitors, optimizers and even
//! the destructors of both processes walk it recursively. `1+1+…+1` parses in a loop into a
//! tree as deep as it has terms, so a 70 KB statement was enough to overflow a thread's
//! stack and abort the gateway (4 KB for the engine). The bounds here are checked on the
//! token stream, which the tokenizer builds without recursion, before any tree exists:
//!
//! - [`MAX_STATEMENT_BYTES`] of SQL per request;
//! - [`MAX_OPERATORS`] operator tokens per statement (arithmetic, comparison, concatenation,
//!   casts, `AND`/`OR`/`NOT`, `UNION`/`INTERSECT`/`EXCEPT`, `JOIN`, …): the depth of any
//!   operator chain is at most their number;
//! - [`MAX_NESTING`] levels of brackets (parentheses, subqueries, function calls, arrays);
//! - [`MAX_CASE_NESTING`] levels of `CASE` inside `CASE`: sqlparser backtracks through
//!   unclosed ones, and its time doubles with each level (16 took 0.26 s in a debug build,
//!   60 would never end);
//! - [`MAX_LIST_ITEMS`] items in one list (a select list, a `VALUES` row, a function's
//!   arguments, `GROUP BY`): DataFusion plans a projection in time that grows with the square
//!   of its width (20,000 literals took 114 s in a debug build, and the planning cannot be
//!   stopped once started). `IN (…)` lists are exempt: they plan in linear time, and BI tools
//!   send long ones.
//!
//! The gateway and the engine check the same bounds with the same tokenizer, so a statement
//! one accepts the other accepts. Token kinds that are not known to be harmless count as
//! operators: a new sqlparser token can only make a statement look more complex.

use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// The largest SQL text either process accepts in one request.
pub const MAX_STATEMENT_BYTES: usize = 1024 * 1024;
/// The most operator tokens in one statement.
pub const MAX_OPERATORS: usize = 1_000;
/// The deepest bracket nesting in one statement.
pub const MAX_NESTING: usize = 32;
/// The deepest `CASE` nesting in one statement.
pub const MAX_CASE_NESTING: usize = 10;
/// The most items in one list other than an `IN (…)` list.
pub const MAX_LIST_ITEMS: usize = 4_096;
/// The most datasets one statement may touch: the gateway signs each into the request's
/// stamp, which must stay small (the engine resolves no other).
pub const MAX_DATASETS: usize = 64;

/// Which bound a statement went over. The message names the limit, never the SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TooComplex {
    #[error("statement too complex: {0} bytes of SQL, over the limit of {MAX_STATEMENT_BYTES}")]
    Bytes(usize),
    #[error("statement too complex: more than {MAX_OPERATORS} operators in one statement")]
    Operators,
    #[error("statement too complex: brackets nested deeper than {MAX_NESTING} levels")]
    Nesting,
    #[error("statement too complex: CASE nested deeper than {MAX_CASE_NESTING} levels")]
    CaseNesting,
    #[error(
        "statement too complex: more than {MAX_LIST_ITEMS} items in one list (a select list, VALUES row or argument list; IN lists are not limited)"
    )]
    ListItems,
    /// The parser's own recursion limit (a nesting the brackets do not show, such as `CASE`
    /// inside `CASE`).
    #[error("statement too complex: nested deeper than the SQL parser allows")]
    ParserDepth,
    /// More datasets than a stamp carries ([`MAX_DATASETS`], or names too long to sign).
    #[error("statement too complex: it touches more datasets than one request may carry (at most {MAX_DATASETS})")]
    Datasets,
}

/// Tokenizes `sql` as the parser would and checks it; the tokens are returned for the
/// parser, so nothing is tokenized twice. A tokenizer error is the parser's to report:
/// `Ok(None)`.
pub fn tokenize(dialect: &dyn Dialect, sql: &str) -> Result<Option<Vec<TokenWithSpan>>, TooComplex> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(TooComplex::Bytes(sql.len()));
    }
    let Ok(tokens) = Tokenizer::new(dialect, sql).with_unescape(true).tokenize_with_location() else {
        return Ok(None);
    };
    check(tokens.iter().map(|t| &t.token))?;
    Ok(Some(tokens))
}

/// Checks a statement list's tokens against [`MAX_OPERATORS`] and [`MAX_NESTING`] (counted
/// per statement: they restart after a `;` outside brackets).
pub fn check<'a>(tokens: impl IntoIterator<Item = &'a Token>) -> Result<(), TooComplex> {
    let mut operators = 0usize;
    let mut depth = 0usize;
    let mut case_depth = 0usize;
    // Per open bracket (and the statement's own level): the commas seen, and whether the
    // list is exempt (an `IN (…)` list).
    let mut lists: Vec<(usize, bool)> = vec![(0, false)];
    let mut after_in = false;
    for token in tokens {
        if matches!(token, Token::Whitespace(_)) {
            continue;
        }
        let follows_in = std::mem::replace(
            &mut after_in,
            matches!(token, Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::IN),
        );
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => lists.push((0, follows_in)),
            Token::RParen | Token::RBracket | Token::RBrace if lists.len() > 1 => {
                lists.pop();
            }
            // Each SELECT starts a new select list at its level.
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::SELECT => {
                if let Some(top) = lists.last_mut() {
                    top.0 = 0;
                }
            }
            Token::Comma => {
                if let Some(top) = lists.last_mut() {
                    top.0 += 1;
                    if !top.1 && top.0 >= MAX_LIST_ITEMS {
                        return Err(TooComplex::ListItems);
                    }
                }
            }
            Token::SemiColon if lists.len() == 1 => lists = vec![(0, false)],
            _ => {}
        }
        if let Token::Word(word) = token
            && word.quote_style.is_none()
        {
            match word.keyword {
                Keyword::CASE => {
                    case_depth += 1;
                    if case_depth > MAX_CASE_NESTING {
                        return Err(TooComplex::CaseNesting);
                    }
                }
                Keyword::END => case_depth = case_depth.saturating_sub(1),
                _ => {}
            }
        }
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(TooComplex::Nesting);
                }
            }
            Token::RParen | Token::RBracket | Token::RBrace => depth = depth.saturating_sub(1),
            Token::SemiColon if depth == 0 => {
                operators = 0;
                case_depth = 0;
            }
            token if is_operator(token) => {
                operators += 1;
                if operators > MAX_OPERATORS {
                    return Err(TooComplex::Operators);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Keywords that join or prefix expressions or queries, each a level in the tree it builds.
const OPERATOR_KEYWORDS: &[Keyword] = &[
    Keyword::AND,
    Keyword::OR,
    Keyword::NOT,
    Keyword::XOR,
    Keyword::IS,
    Keyword::LIKE,
    Keyword::ILIKE,
    Keyword::SIMILAR,
    Keyword::REGEXP,
    Keyword::RLIKE,
    Keyword::BETWEEN,
    Keyword::IN,
    Keyword::COLLATE,
    Keyword::AT,
    Keyword::OVERLAPS,
    Keyword::DIV,
    Keyword::UNION,
    Keyword::INTERSECT,
    Keyword::EXCEPT,
    Keyword::MINUS,
    Keyword::JOIN,
    Keyword::CASE,
];

/// Whether a token (outside brackets and separators) builds a level of an expression or
/// query tree. Anything not known to be a name, a literal or a separator counts.
fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(word) => word.quote_style.is_none() && OPERATOR_KEYWORDS.contains(&word.keyword),
        Token::EOF
        | Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::NationalQuoteDelimitedStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Whitespace(_)
        | Token::Comma
        | Token::Period
        | Token::SemiColon
        | Token::Placeholder(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::GenericDialect;

    fn verdict(sql: &str) -> Result<(), TooComplex> {
        tokenize(&GenericDialect {}, sql).map(|_| ())
    }

    fn chain(op: &str, terms: usize) -> String {
        format!("SELECT {}", vec!["1"; terms].join(op))
    }

    #[test]
    fn ordinary_statements_pass() {
        for sql in [
            "SELECT a, b, count(*) FROM t WHERE a = 1 AND b LIKE 'x%' GROUP BY 1, 2 ORDER BY 3 DESC",
            "WITH r AS (SELECT 1) SELECT * FROM r JOIN s ON r.a = s.a UNION ALL SELECT 2",
            "SELECT 'a + b - c * d AND OR NOT' AS \"and\", x::int FROM \"OR\"",
            &format!("SELECT * FROM t WHERE id IN ({})", vec!["7"; 20_000].join(", ")),
        ] {
            assert_eq!(verdict(sql), Ok(()), "{sql}");
        }
        // A tokenizer error is left to the parser.
        assert_eq!(tokenize(&GenericDialect {}, "SELECT 'unterminated"), Ok(None));
    }

    #[test]
    fn every_operator_family_is_bounded() {
        for op in [
            "+",
            "-",
            "*",
            "/",
            "%",
            "||",
            " AND ",
            " OR ",
            " = ",
            " <> ",
            " < ",
            " >= ",
            "::int::",
            " IS NOT ",
            " LIKE ",
            " UNION SELECT ",
            " JOIN t ON ",
            "&",
            "|",
            "^",
            "<<",
            "->",
        ] {
            assert_eq!(verdict(&chain(op, MAX_OPERATORS / 2)), Ok(()), "{op} at half the limit");
            assert_eq!(verdict(&chain(op, MAX_OPERATORS + 2)), Err(TooComplex::Operators), "{op}");
        }
        let unary = format!("SELECT {}1", "NOT ".repeat(MAX_OPERATORS + 1));
        assert_eq!(verdict(&unary), Err(TooComplex::Operators));
        let minus = format!("SELECT {}1", "- ".repeat(MAX_OPERATORS + 1));
        assert_eq!(verdict(&minus), Err(TooComplex::Operators));
    }

    #[test]
    fn lists_are_bounded_except_in_lists() {
        let items = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        for (at, past) in [
            (format!("SELECT {}", items(MAX_LIST_ITEMS)), format!("SELECT {}", items(MAX_LIST_ITEMS + 1))),
            (
                format!("SELECT * FROM (VALUES ({}))", items(MAX_LIST_ITEMS)),
                format!("VALUES ({})", items(MAX_LIST_ITEMS + 1)),
            ),
            (
                format!("SELECT concat({})", items(MAX_LIST_ITEMS)),
                format!("SELECT concat({})", items(MAX_LIST_ITEMS + 1)),
            ),
            (
                format!("SELECT a FROM t GROUP BY {}", items(MAX_LIST_ITEMS)),
                format!("SELECT a FROM t GROUP BY {}", items(MAX_LIST_ITEMS + 1)),
            ),
        ] {
            assert_eq!(verdict(&at), Ok(()), "{}", &at[..40]);
            assert_eq!(verdict(&past), Err(TooComplex::ListItems), "{}", &past[..40]);
        }
        // Each SELECT has its own list; an IN list is not bounded.
        let two = format!("SELECT {} UNION ALL SELECT {}", items(MAX_LIST_ITEMS - 1), items(MAX_LIST_ITEMS - 1));
        assert_eq!(verdict(&two), Ok(()));
        assert_eq!(verdict(&format!("SELECT 1 WHERE x IN ({})", items(50_000))), Ok(()));
        assert_eq!(verdict(&format!("SELECT 1 WHERE x NOT IN ( {} )", items(50_000))), Ok(()));
        // A quoted "in" is a name, not the keyword.
        assert_eq!(verdict(&format!("SELECT \"in\"({})", items(MAX_LIST_ITEMS + 1))), Err(TooComplex::ListItems));
    }

    #[test]
    fn the_count_restarts_per_statement_and_only_outside_brackets() {
        let half = chain("+", MAX_OPERATORS / 2 + 1);
        assert_eq!(verdict(&format!("{half}; {half}; {half}")), Ok(()));
        assert_eq!(verdict(&format!("{half} + ({half})")), Err(TooComplex::Operators));
    }

    #[test]
    fn nesting_and_size_are_bounded() {
        for (open, close) in [("(", ")"), ("[", "]"), ("abs(", ")"), ("(SELECT ", ")")] {
            let ok = format!("SELECT {}1{}", open.repeat(MAX_NESTING), close.repeat(MAX_NESTING));
            assert_eq!(verdict(&ok), Ok(()), "{open}");
            let deep = format!("SELECT {}1{}", open.repeat(MAX_NESTING + 1), close.repeat(MAX_NESTING + 1));
            assert_eq!(verdict(&deep), Err(TooComplex::Nesting), "{open}");
        }
        let cases =
            |n: usize, ends: usize| format!("SELECT {}1{}", "CASE WHEN true THEN ".repeat(n), " END".repeat(ends));
        assert_eq!(verdict(&cases(MAX_CASE_NESTING, MAX_CASE_NESTING)), Ok(()));
        assert_eq!(verdict(&cases(MAX_CASE_NESTING + 1, MAX_CASE_NESTING + 1)), Err(TooComplex::CaseNesting));
        assert_eq!(verdict(&cases(60, 1)), Err(TooComplex::CaseNesting));
        // Side by side, not nested: each END closes its CASE.
        let siblings = format!("SELECT {}", vec!["CASE WHEN a THEN 1 END"; 40].join(", "));
        assert_eq!(verdict(&siblings), Ok(()));
        let big = format!("SELECT '{}'", "x".repeat(MAX_STATEMENT_BYTES));
        assert_eq!(verdict(&big), Err(TooComplex::Bytes(big.len())));
        assert!(TooComplex::Operators.to_string().contains(&MAX_OPERATORS.to_string()));
    }
}
