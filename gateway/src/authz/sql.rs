//! What a piece of SQL does, for Cedar: per statement, the endpoint action (`query`,
//! `describe`, `write`, `admin`) and every dataset it touches with the dataset action
//! (`select`, `insert`, `update`, `delete`, `ddl`).
//!
//! Parsed with sqlparser at the version and dialect DataFusion uses, so the gateway reads the
//! SQL the way the engine will. Names are normalised the way DataFusion resolves them:
//! unquoted identifiers fold to lower case, quoted ones keep theirs, and one- or two-part
//! names take the default catalog and schema. A CTE's name is not a table where the CTE is
//! in scope; everywhere else (including inside its own non-recursive body) the same name is
//! the real table and is authorized as one. Anything not understood is refused: this module
//! may over-approximate what a statement touches, never under-approximate.

use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Delete, FromTable, Ident, ObjectName, ObjectNamePart, ObjectType, Query, SetExpr, Statement, TableFactor,
    TableObject, Visit, Visitor,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use super::action::{DatasetAction, EndpointAction};

/// A table or view, fully qualified the way the engine resolves it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatasetName {
    pub catalog: String,
    pub schema: String,
    pub table: String,
}

impl fmt::Display for DatasetName {
    /// `catalog.schema.table` as [`identity::write_dataset_id`] spells it (the engine checks
    /// a stamp's scope in the same spelling).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        identity::write_dataset_id(f, &self.catalog, &self.schema, &self.table)
    }
}

impl DatasetName {
    /// Reads the `catalog.schema.table` form that [`fmt::Display`] writes.
    pub fn parse_id(id: &str) -> Option<Self> {
        let mut parts = Vec::new();
        let mut chars = id.chars().peekable();
        loop {
            let mut part = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next()? {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            part.push('"');
                        }
                        '"' => break,
                        c => part.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek().filter(|c| **c != '.') {
                    part.push(c);
                    chars.next();
                }
            }
            parts.push(part);
            match chars.next() {
                None => break,
                Some('.') => {}
                Some(_) => return None,
            }
        }
        let [catalog, schema, table] = <[String; 3]>::try_from(parts).ok()?;
        Some(Self { catalog, schema, table })
    }
}

/// One statement's accesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementAccess {
    pub endpoint: EndpointAction,
    /// Sorted and without duplicates.
    pub datasets: Vec<(DatasetAction, DatasetName)>,
}

/// Why SQL was not classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error("SQL does not parse: {0}")]
    Parse(String),
    #[error("no SQL statement in the request")]
    Empty,
    /// Parsed, but not a statement the gateway can authorize (fail closed).
    #[error("{0} statements are not allowed through the gateway")]
    Unsupported(String),
    #[error("cannot authorize {0}")]
    Name(String),
    /// Over one of the bounds both processes hold statements to ([`complexity`]).
    #[error("{0}")]
    TooComplex(#[from] complexity::TooComplex),
}

/// The engine's name resolution defaults.
#[derive(Debug, Clone)]
pub struct NameDefaults {
    pub catalog: String,
    pub schema: String,
}

/// Table functions that generate rows and read no dataset.
const GENERATORS: &[&str] = &["generate_series", "range"];
/// Deepest nesting accepted (DataFusion's own parser limit is 50).
const RECURSION_LIMIT: usize = 50;

/// Classifies every statement in `sql` (several may be separated by `;`). The statement's
/// size, operator count and nesting are checked on its tokens before anything is parsed
/// ([`complexity`]): the tree a parse builds is walked recursively.
pub fn analyze(sql: &str, defaults: &NameDefaults) -> Result<Vec<StatementAccess>, SqlError> {
    let dialect = GenericDialect {};
    let parser = Parser::new(&dialect).with_recursion_limit(RECURSION_LIMIT);
    let mut parser = match complexity::tokenize(&dialect, sql)? {
        Some(tokens) => parser.with_tokens_with_locations(tokens),
        // The tokenizer refused it: the parser says why.
        None => parser.try_with_sql(sql).map_err(parse)?,
    };
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token_ref().token == Token::EOF {
            break;
        }
        let access = if parser.peek_keyword(Keyword::COPY) {
            copy_to(&mut parser, defaults)?
        } else if is_create_external(&parser) {
            create_external_table(&mut parser, defaults)?
        } else {
            let statement = parser.parse_statement().map_err(parse)?;
            classify(&statement, defaults)?
        };
        out.push(access);
        if !parser.consume_token(&Token::SemiColon) && parser.peek_token_ref().token != Token::EOF {
            return Err(SqlError::Parse(format!("expected end of statement, found {}", parser.peek_token())));
        }
    }
    if out.is_empty() {
        return Err(SqlError::Empty);
    }
    Ok(out)
}

fn parse(error: ParserError) -> SqlError {
    match error {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => SqlError::Parse(m),
        ParserError::RecursionLimitExceeded => SqlError::TooComplex(complexity::TooComplex::ParserDepth),
    }
}

/// DataFusion's `COPY {table | (query)} TO 'target' [options]`: writes files, reads its source.
fn copy_to(parser: &mut Parser<'_>, defaults: &NameDefaults) -> Result<StatementAccess, SqlError> {
    parser.expect_keyword_is(Keyword::COPY).map_err(parse)?;
    let mut collector = Collector::new(defaults);
    if parser.consume_token(&Token::LParen) {
        let query = parser.parse_query().map_err(parse)?;
        parser.expect_token(&Token::RParen).map_err(parse)?;
        collector.walk(&*query)?;
    } else {
        let name = parser.parse_object_name(false).map_err(parse)?;
        collector.datasets.push((DatasetAction::Select, dataset_name(&name, defaults)?));
    }
    parser.expect_keyword_is(Keyword::TO).map_err(parse)?;
    skip_to_end_of_statement(parser);
    Ok(collector.finish(EndpointAction::Write))
}

fn is_create_external(parser: &Parser<'_>) -> bool {
    let words: Vec<Token> = (0..5).map(|n| parser.peek_nth_token(n).token).collect();
    let is = |t: &Token, k: Keyword| matches!(t, Token::Word(w) if w.keyword == k);
    let Some((first, rest)) = words.split_first() else { return false };
    is(first, Keyword::CREATE) && rest.iter().any(|t| is(t, Keyword::EXTERNAL))
}

/// DataFusion's `CREATE [OR REPLACE] [UNBOUNDED] EXTERNAL TABLE [IF NOT EXISTS] name ...`.
fn create_external_table(parser: &mut Parser<'_>, defaults: &NameDefaults) -> Result<StatementAccess, SqlError> {
    parser.expect_keyword_is(Keyword::CREATE).map_err(parse)?;
    let _ = parser.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    let _ = parser.parse_keyword(Keyword::UNBOUNDED);
    parser.expect_keyword_is(Keyword::EXTERNAL).map_err(parse)?;
    parser.expect_keyword_is(Keyword::TABLE).map_err(parse)?;
    let _ = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false).map_err(parse)?;
    skip_to_end_of_statement(parser);
    Ok(StatementAccess {
        endpoint: EndpointAction::Admin,
        datasets: vec![(DatasetAction::Ddl, dataset_name(&name, defaults)?)],
    })
}

/// The rest of a COPY or CREATE EXTERNAL TABLE (target, format, options) names no dataset.
fn skip_to_end_of_statement(parser: &mut Parser<'_>) {
    let mut depth = 0usize;
    loop {
        match parser.peek_token_ref().token {
            Token::EOF => return,
            Token::SemiColon if depth == 0 => return,
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        parser.next_token();
    }
}

fn classify(statement: &Statement, defaults: &NameDefaults) -> Result<StatementAccess, SqlError> {
    use EndpointAction::{Admin, Describe, Write};
    let mut c = Collector::new(defaults);
    let endpoint = match statement {
        Statement::Query(query) => {
            c.walk(&**query)?;
            if c.datasets.is_empty() && c.catalog_only { Describe } else { EndpointAction::Query }
        }
        // EXPLAIN ANALYZE runs the query and reports each operator's row counts, the
        // counts below a view's filter included: how many rows the view hides.
        Statement::Explain { analyze: true, .. } => {
            return Err(SqlError::Unsupported("EXPLAIN ANALYZE".into()));
        }
        Statement::Explain { statement, .. } => return classify(statement, defaults),
        // A dataset's columns and types, or its definition, are shown to whoever may read it.
        Statement::ExplainTable { .. } | Statement::ShowColumns { .. } => {
            c.walk(statement)?;
            Describe
        }
        Statement::ShowCreate { obj_name, .. } => {
            c.read(obj_name);
            if let Some(error) = c.error.take() {
                return Err(error);
            }
            Describe
        }
        Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. } => Describe,
        Statement::Insert(insert) => {
            let TableObject::TableName(target) = &insert.table else {
                return Err(SqlError::Unsupported("INSERT INTO a table function".into()));
            };
            c.target(target, DatasetAction::Insert)?;
            c.walk(statement)?;
            Write
        }
        Statement::Update(update) => {
            let TableFactor::Table { name, .. } = &update.table.relation else {
                return Err(SqlError::Unsupported("UPDATE of a derived table".into()));
            };
            c.target(name, DatasetAction::Update)?;
            c.walk(statement)?;
            Write
        }
        Statement::Delete(delete) => {
            for target in delete_targets(delete)? {
                c.target(target, DatasetAction::Delete)?;
            }
            c.walk(statement)?;
            Write
        }
        Statement::Truncate(truncate) => {
            for target in &truncate.table_names {
                c.target(&target.name, DatasetAction::Delete)?;
            }
            Write
        }
        Statement::CreateTable(create) => {
            c.target(&create.name, DatasetAction::Ddl)?;
            c.walk(statement)?;
            Admin
        }
        Statement::CreateView(create) => {
            c.target(&create.name, DatasetAction::Ddl)?;
            c.walk(statement)?;
            Admin
        }
        Statement::AlterTable(alter) => {
            c.target(&alter.name, DatasetAction::Ddl)?;
            Admin
        }
        Statement::AlterView { name, .. } => {
            c.target(name, DatasetAction::Ddl)?;
            c.walk(statement)?;
            Admin
        }
        Statement::Drop { object_type, names, .. } => {
            match object_type {
                ObjectType::Table | ObjectType::View | ObjectType::MaterializedView => {
                    for name in names {
                        c.target(name, DatasetAction::Ddl)?;
                    }
                }
                // A whole schema or database: the endpoint's admin action decides.
                ObjectType::Schema | ObjectType::Database => {}
                other => return Err(SqlError::Unsupported(format!("DROP {other}"))),
            }
            Admin
        }
        Statement::CreateSchema { .. } | Statement::CreateDatabase { .. } => Admin,
        other => return Err(SqlError::Unsupported(statement_kind(other))),
    };
    Ok(c.finish(endpoint))
}

fn delete_targets(delete: &Delete) -> Result<Vec<&ObjectName>, SqlError> {
    if !delete.tables.is_empty() {
        return Ok(delete.tables.iter().collect());
    }
    let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
    from.iter()
        .map(|t| match &t.relation {
            TableFactor::Table { name, .. } => Ok(name),
            _ => Err(SqlError::Unsupported("DELETE from a derived table".into())),
        })
        .collect()
}

/// The statement's leading keywords, for the error message (never its data).
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    let kind = match words.as_slice() {
        [first, second] if matches!(*first, "CREATE" | "ALTER" | "DROP" | "SHOW") => format!("{first} {second}"),
        [first, ..] => (*first).to_string(),
        [] => "empty".to_string(),
    };
    kind.chars().filter(|c| c.is_ascii_alphanumeric() || *c == ' ').take(40).collect()
}

/// `catalog.schema.table` from a name as the engine resolves it.
pub fn dataset_name(name: &ObjectName, defaults: &NameDefaults) -> Result<DatasetName, SqlError> {
    let parts = name
        .0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Ok(normalize(ident)),
            ObjectNamePart::Function(_) => Err(SqlError::Name(format!("the computed name {name}"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (catalog, schema, table) = match parts.as_slice() {
        [t] => (defaults.catalog.clone(), defaults.schema.clone(), t.clone()),
        [s, t] => (defaults.catalog.clone(), s.clone(), t.clone()),
        [c, s, t] => (c.clone(), s.clone(), t.clone()),
        _ => return Err(SqlError::Name(format!("the name {name} (more than three parts)"))),
    };
    Ok(DatasetName { catalog, schema, table })
}

/// DataFusion's identifier normalisation (`datafusion_sql::utils::normalize_ident`):
/// unquoted folds ASCII letters to lower case and leaves every other character as written.
/// Unicode folding would read `banK` (U+212A KELVIN SIGN) as `bank` where the engine reads
/// another name, and a CTE so named would hide the real table from authorization.
fn normalize(ident: &Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_ascii_lowercase() }
}

/// Walks a statement's AST collecting every relation it reads, minus CTE references in scope.
struct Collector<'a> {
    defaults: &'a NameDefaults,
    datasets: Vec<(DatasetAction, DatasetName)>,
    /// Write targets, by address in the AST: the visitor meets them again as relations.
    targets: Vec<*const ObjectName>,
    /// Enclosing queries' CTEs, innermost last: (names, the CTE bodies' addresses, recursive).
    scopes: Vec<Scope>,
    /// `information_schema` was read.
    catalog_only: bool,
    error: Option<SqlError>,
}

struct Scope {
    query: *const Query,
    names: Vec<String>,
    bodies: Vec<*const Query>,
    recursive: bool,
    /// While inside CTE body `i`, only names `..i` (`..=i` if recursive) are visible.
    visible: usize,
    /// Set while walking a CTE body: restores `visible` when that body ends.
    inside: Option<*const Query>,
}

impl<'a> Collector<'a> {
    fn new(defaults: &'a NameDefaults) -> Self {
        Self {
            defaults,
            datasets: Vec::new(),
            targets: Vec::new(),
            scopes: Vec::new(),
            catalog_only: false,
            error: None,
        }
    }

    fn target(&mut self, name: &ObjectName, action: DatasetAction) -> Result<(), SqlError> {
        self.targets.push(name as *const ObjectName);
        let name = dataset_name(name, self.defaults)?;
        self.datasets.push((action, name));
        Ok(())
    }

    fn walk<V: Visit>(&mut self, node: &V) -> Result<(), SqlError> {
        let _ = node.visit(self);
        match self.error.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn finish(mut self, endpoint: EndpointAction) -> StatementAccess {
        self.datasets.sort();
        self.datasets.dedup();
        StatementAccess { endpoint, datasets: self.datasets }
    }

    fn is_cte_in_scope(&self, name: &ObjectName) -> bool {
        let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else { return false };
        let name = normalize(ident);
        self.scopes.iter().any(|scope| scope.names.iter().take(scope.visible).any(|n| *n == name))
    }

    fn read(&mut self, name: &ObjectName) {
        match dataset_name(name, self.defaults) {
            Ok(dataset) if dataset.schema == "information_schema" => self.catalog_only = true,
            Ok(dataset) => self.datasets.push((DatasetAction::Select, dataset)),
            Err(error) => self.error = Some(error),
        }
    }
}

impl Visitor for Collector<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let here = query as *const Query;
        // Entering one of an enclosing WITH's CTE bodies: only earlier CTEs are visible.
        for scope in self.scopes.iter_mut().rev() {
            if let Some(i) = scope.bodies.iter().position(|b| *b == here) {
                scope.visible = if scope.recursive { i + 1 } else { i };
                scope.inside = Some(here);
                break;
            }
        }
        if let Some(with) = &query.with {
            let names: Vec<String> = with.cte_tables.iter().map(|cte| normalize(&cte.alias.name)).collect();
            let bodies = with.cte_tables.iter().map(|cte| &*cte.query as *const Query).collect();
            let visible = names.len();
            self.scopes.push(Scope { query: here, names, bodies, recursive: with.recursive, visible, inside: None });
        }
        // `TABLE name` reads a table without a FROM clause.
        let mut pending = vec![&*query.body];
        while let Some(body) = pending.pop() {
            match body {
                SetExpr::Table(table) => match &table.table_name {
                    Some(t) => {
                        let mut parts: Vec<Ident> = table.schema_name.iter().map(|s| Ident::new(s.clone())).collect();
                        parts.push(Ident::new(t.clone()));
                        let name = ObjectName::from(parts);
                        if !self.is_cte_in_scope(&name) {
                            self.read(&name);
                        }
                    }
                    None => self.error = Some(SqlError::Unsupported("TABLE without a name".into())),
                },
                SetExpr::SetOperation { left, right, .. } => pending.extend([&**left, &**right]),
                _ => {}
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let here = query as *const Query;
        if self.scopes.last().is_some_and(|s| s.query == here) {
            self.scopes.pop();
        }
        for scope in self.scopes.iter_mut().rev() {
            if scope.inside == Some(here) {
                scope.visible = scope.names.len();
                scope.inside = None;
                break;
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        // A generator such as `generate_series(1, 10)` reads no dataset; its name is skipped
        // below by address. Any other table function is authorized as a dataset.
        if let TableFactor::Table { name, args: Some(_), .. } = factor
            && let [ObjectNamePart::Identifier(ident)] = name.0.as_slice()
            && GENERATORS.contains(&normalize(ident).as_str())
        {
            self.targets.push(name as *const ObjectName);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let here = relation as *const ObjectName;
        if self.targets.contains(&here) || self.is_cte_in_scope(relation) {
            return ControlFlow::Continue(());
        }
        self.read(relation);
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> NameDefaults {
        NameDefaults { catalog: "datafusion".into(), schema: "public".into() }
    }

    /// `(endpoint, ["action catalog.schema.table", ...])` per statement.
    fn show(sql: &str) -> Vec<(&'static str, Vec<String>)> {
        analyze(sql, &defaults())
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_iter()
            .map(|s| (s.endpoint.as_str(), s.datasets.iter().map(|(a, d)| format!("{} {d}", a.as_str())).collect()))
            .collect()
    }

    fn reads(sql: &str) -> Vec<String> {
        let all = show(sql);
        assert_eq!(all.len(), 1, "{sql}");
        all.into_iter().next().map(|(_, d)| d).unwrap_or_default()
    }

    #[test]
    fn names_normalise_like_datafusion() {
        assert_eq!(reads("SELECT * FROM Orders"), ["select datafusion.public.orders"]);
        assert_eq!(reads("select * from DEMO.ORDERS"), ["select datafusion.demo.orders"]);
        assert_eq!(reads("SELECT * FROM \"Demo\".\"Orders\""), ["select datafusion.Demo.Orders"]);
        assert_eq!(reads("SELECT * FROM other.demo.orders"), ["select other.demo.orders"]);
        assert_eq!(reads("SELECT * FROM \"a.b\".c"), ["select datafusion.\"a.b\".c"]);
        assert!(matches!(analyze("SELECT * FROM a.b.c.d", &defaults()), Err(SqlError::Name(_))));
    }

    /// Only ASCII folds: U+212A KELVIN SIGN, U+0130 and U+017F keep their spelling, as in
    /// DataFusion, so a CTE spelled with one does not hide the ASCII-named table.
    #[test]
    fn only_ascii_letters_fold() {
        assert_eq!(reads("WITH ban\u{212A} AS (SELECT 1 AS x) SELECT * FROM bank"), ["select datafusion.public.bank"]);
        assert_eq!(reads("SELECT * FROM ban\u{212A}"), ["select datafusion.public.ban\u{212A}"]);
        assert_eq!(reads("SELECT * FROM \u{130}D"), ["select datafusion.public.\u{130}d"]);
        assert_eq!(reads("SELECT * FROM \u{17F}ecret"), ["select datafusion.public.\u{17F}ecret"]);
    }

    #[test]
    fn deep_statements_are_refused_before_they_are_parsed() {
        for sql in [
            format!("SELECT {}", vec!["1"; 40_000].join("+")),
            format!("SELECT 1 WHERE {}", vec!["true"; 40_000].join(" AND ")),
            format!("SELECT {}", vec!["'a'"; 40_000].join("||")),
            format!("SELECT {}1 END", "CASE WHEN true THEN ".repeat(60)),
        ] {
            let error = analyze(&sql, &defaults()).unwrap_err();
            assert!(matches!(error, SqlError::TooComplex(_)), "{error}");
            assert!(error.to_string().starts_with("statement too complex"), "{error}");
        }
    }

    #[test]
    fn dataset_ids_read_back() {
        for id in ["datafusion.demo.orders", "c.\"a.b\".t", "c.s.\"q\"\"t\""] {
            assert_eq!(DatasetName::parse_id(id).unwrap().to_string(), id);
        }
        assert_eq!(DatasetName::parse_id("c.\"a.b\".t").unwrap().schema, "a.b");
        for bad in ["a.b", "a.b.c.d", "a.\"b", "a.\"b\"x.c"] {
            assert!(DatasetName::parse_id(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn every_read_is_found() {
        let sql = "SELECT * FROM demo.orders o JOIN demo.customers c ON o.customer_id = c.customer_id \
                   WHERE o.amount > (SELECT avg(amount) FROM secret.a) AND EXISTS (SELECT 1 FROM secret.b) \
                   UNION ALL SELECT * FROM (SELECT * FROM secret.c) t";
        assert_eq!(
            reads(sql),
            [
                "select datafusion.demo.customers",
                "select datafusion.demo.orders",
                "select datafusion.secret.a",
                "select datafusion.secret.b",
                "select datafusion.secret.c"
            ]
        );
        assert_eq!(reads("SELECT 1 UNION TABLE secret.t"), ["select datafusion.secret.t"]);
        assert_eq!(reads("SELECT /* demo.orders */ 1 -- secret.t"), Vec::<String>::new());
        assert_eq!(show("SELECT 1")[0].0, "query");
    }

    #[test]
    fn ctes_are_not_tables_but_cannot_hide_one() {
        assert_eq!(reads("WITH t AS (SELECT * FROM demo.orders) SELECT * FROM t"), ["select datafusion.demo.orders"]);
        // A CTE named like the table it reads: inside its body the name is the real table.
        assert_eq!(
            reads("WITH secret AS (SELECT * FROM secret) SELECT * FROM secret"),
            ["select datafusion.public.secret"]
        );
        // A later CTE's name is not visible in an earlier one's body.
        assert_eq!(
            reads("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a"),
            ["select datafusion.public.b"]
        );
        // Earlier CTEs are visible in later ones; a qualified name is never a CTE.
        assert_eq!(
            reads("WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b, public.a"),
            ["select datafusion.public.a"]
        );
        // Out of scope again after the subquery that defined it.
        assert_eq!(reads("SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) s, x"), ["select datafusion.public.x"]);
        assert_eq!(
            reads("WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn writes_and_ddl_name_their_targets() {
        assert_eq!(
            show("INSERT INTO demo.t SELECT * FROM demo.orders"),
            [("write", vec!["select datafusion.demo.orders".to_string(), "insert datafusion.demo.t".to_string()])]
        );
        assert_eq!(show("UPDATE t SET a = 1")[0], ("write", vec!["update datafusion.public.t".to_string()]));
        assert_eq!(
            show("DELETE FROM t WHERE a IN (SELECT a FROM u)")[0],
            ("write", vec!["select datafusion.public.u".to_string(), "delete datafusion.public.t".to_string()])
        );
        assert_eq!(
            show("CREATE TABLE n AS SELECT * FROM o")[0],
            ("admin", vec!["select datafusion.public.o".to_string(), "ddl datafusion.public.n".to_string()])
        );
        assert_eq!(
            show("DROP TABLE a, b.c")[0],
            ("admin", vec!["ddl datafusion.b.c".to_string(), "ddl datafusion.public.a".to_string()])
        );
        assert_eq!(show("CREATE VIEW v AS SELECT * FROM o")[0].0, "admin");
        assert_eq!(
            show("COPY demo.orders TO '/tmp/x.csv' STORED AS CSV")[0],
            ("write", vec!["select datafusion.demo.orders".to_string()])
        );
        assert_eq!(
            show("COPY (SELECT * FROM secret) TO '/tmp/x' OPTIONS (format 'csv')")[0],
            ("write", vec!["select datafusion.public.secret".to_string()])
        );
        assert_eq!(
            show("CREATE EXTERNAL TABLE ext STORED AS CSV LOCATION '/tmp/x.csv'")[0],
            ("admin", vec!["ddl datafusion.public.ext".to_string()])
        );
    }

    #[test]
    fn catalog_reads_are_describe() {
        assert_eq!(show("SELECT * FROM information_schema.tables")[0], ("describe", vec![]));
        assert_eq!(show("SHOW TABLES")[0].0, "describe");
        // Describing a dataset needs what reading it needs.
        for sql in ["DESCRIBE demo.orders", "SHOW COLUMNS FROM demo.orders", "SHOW CREATE TABLE demo.orders"] {
            assert_eq!(show(sql)[0], ("describe", vec!["select datafusion.demo.orders".to_string()]), "{sql}");
        }
        // Reading a dataset next to the catalog is a query on that dataset.
        assert_eq!(show("SELECT * FROM information_schema.tables, secret")[0].0, "query");
    }

    #[test]
    fn every_statement_is_classified() {
        let all = show("SELECT 1; SELECT * FROM secret;; EXPLAIN DELETE FROM t");
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].1, ["select datafusion.public.secret"]);
        assert_eq!(all[2].0, "write");
    }

    #[test]
    fn generators_are_not_datasets_other_table_functions_are() {
        assert_eq!(reads("SELECT * FROM generate_series(1, 10)"), Vec::<String>::new());
        assert_eq!(reads("SELECT * FROM read_files('x')"), ["select datafusion.public.read_files"]);
    }

    #[test]
    fn what_is_not_understood_is_refused() {
        for sql in ["GRANT SELECT ON t TO bob", "SET x = 1", "SELEC 1", "", " ; ;", "SELECT 1 SELECT 2"] {
            assert!(analyze(sql, &defaults()).is_err(), "{sql}");
        }
        assert_eq!(
            analyze("GRANT SELECT ON t TO bob", &defaults()).unwrap_err().to_string(),
            "GRANT statements are not allowed through the gateway"
        );
        assert_eq!(
            analyze("EXPLAIN ANALYZE SELECT * FROM my_orders", &defaults()).unwrap_err().to_string(),
            "EXPLAIN ANALYZE statements are not allowed through the gateway"
        );
        let deep = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
        assert!(matches!(analyze(&deep, &defaults()), Err(SqlError::TooComplex(_))));
    }
}
