//! Deep and long expressions: the input picks fragments (operators, brackets, unclosed
//! `CASE`, subqueries, set operations) and how often each repeats, building statements up to
//! hundreds of kilobytes. The classifier answers each (accepts, or refuses with a reason)
//! without a stack overflow or a runaway parse (libFuzzer's -timeout), and whatever it
//! accepts is within the complexity bounds.
#![no_main]

use gateway::internal::sql::{NameDefaults, analyze};
use libfuzzer_sys::fuzz_target;

const FRAGMENTS: &[&str] = &[
    "1",
    "+",
    "-",
    "*",
    "/",
    "||",
    " AND ",
    " OR ",
    " NOT ",
    " = ",
    "::int",
    "(",
    ")",
    "[",
    "]",
    "abs(",
    "CASE WHEN true THEN ",
    " END",
    "(SELECT ",
    " UNION ALL SELECT ",
    " FROM t",
    " JOIN u ON ",
    ", ",
    " IS NULL",
    "'a'",
    "x",
    " IN (",
    " BETWEEN 1 AND ",
    "~",
    "->",
    "^",
    "SELECT ",
];

fuzz_target!(|data: &[u8]| {
    let mut sql = String::from("SELECT ");
    for pair in data.chunks(2) {
        let fragment = FRAGMENTS[usize::from(pair[0]) % FRAGMENTS.len()];
        let times = pair.get(1).map_or(1, |n| usize::from(*n) * 64 + 1);
        for _ in 0..times {
            sql.push_str(fragment);
        }
        if sql.len() > 2 * 1024 * 1024 {
            break;
        }
    }
    let defaults = NameDefaults { catalog: "datafusion".into(), schema: "public".into() };
    if analyze(&sql, &defaults).is_ok() {
        assert!(sql.len() <= complexity::MAX_STATEMENT_BYTES, "accepted {} bytes of SQL", sql.len());
    }
});
