//! The gateway authorizes its own reading of a statement and the engine runs DataFusion's:
//! for generated statements, the datasets the gateway derives must be exactly the tables
//! DataFusion's resolved plan scans. The generator spells names with the Unicode letters
//! whose case mappings differ from ASCII (U+212A KELVIN SIGN, U+0130, U+017F), quotes some,
//! qualifies some, and wraps them in CTEs (recursive too), subqueries and set operations.
//! The engine's own check of a stamp's scope, given the gateway's datasets, must pass too.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::cte_worktable::CteWorkTable;
use datafusion::datasource::{MemTable, source_as_provider};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use gateway::internal::sql::{self, NameDefaults};

/// Table names that differ only where Unicode and ASCII case folding differ.
const NAMES: &[&str] =
    &["bank", "banK", "ban\u{212A}", "BANK", "id", "\u{130}d", "i\u{307}d", "secret", "\u{17F}ecret", "SECRET", "x"];
const SCHEMAS: &[&str] = &["public", "acme"];

/// A small deterministic generator (xorshift64*), so a failure reproduces from its seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    /// A name as a user might write it: unquoted (as is, upper- or lower-cased by Unicode
    /// rules, which the engine does not apply), or quoted exactly.
    fn ident(&mut self, name: &str) -> String {
        match self.next() % 5 {
            0 => format!("\"{}\"", name.replace('"', "\"\"")),
            1 => name.to_uppercase(),
            2 => name.to_lowercase(),
            _ => name.to_string(),
        }
    }

    /// One of `names`, spelled by [`Self::ident`].
    fn spelled(&mut self, names: &[&str]) -> String {
        let name = self.pick(names);
        self.ident(name)
    }

    /// A table reference, sometimes schema- or catalog-qualified.
    fn table(&mut self) -> String {
        let name = self.pick(NAMES);
        let table = self.ident(name);
        match self.next() % 4 {
            0 => format!("{}.{table}", self.spelled(SCHEMAS)),
            1 => format!("datafusion.{}.{table}", self.spelled(SCHEMAS)),
            _ => table,
        }
    }

    fn statement(&mut self) -> String {
        let (a, b, c) = (self.table(), self.table(), self.table());
        let cte = self.spelled(NAMES);
        let cte2 = self.spelled(NAMES);
        // A CTE with a body that reads is always used: DataFusion does not plan an unused
        // one, and the gateway (reading more, never less) would authorize its body anyway.
        match self.next() % 8 {
            0 => format!("SELECT x FROM {a}"),
            1 => format!("WITH {cte} AS (SELECT 1 AS x) SELECT x FROM {a}"),
            2 => format!("WITH {cte} AS (SELECT x FROM {a}) SELECT x FROM {b} UNION ALL SELECT x FROM {cte}"),
            3 => format!(
                "WITH {cte} AS (SELECT x FROM {a}), {cte2} AS (SELECT x FROM {b} UNION ALL SELECT x FROM {cte}) \
                 SELECT x FROM {c} UNION ALL SELECT x FROM {cte2}"
            ),
            4 => format!(
                "WITH RECURSIVE {cte} AS (SELECT x FROM {a} UNION ALL SELECT x + 1 FROM {cte} WHERE x < 3) \
                 SELECT x FROM {b} UNION ALL SELECT x FROM {cte}"
            ),
            5 => format!(
                "SELECT x FROM (SELECT x FROM {a}) t WHERE EXISTS (SELECT 1 FROM {b}) AND x IN (SELECT x FROM {c})"
            ),
            6 => format!("SELECT x FROM {a} UNION SELECT x FROM {b} EXCEPT SELECT x FROM {c}"),
            _ => format!("SELECT t.x FROM {a} t JOIN {b} u ON t.x = u.x"),
        }
    }
}

fn context() -> SessionContext {
    let ctx = SessionContext::new();
    let catalog = ctx.catalog("datafusion").unwrap();
    catalog.register_schema("acme", Arc::new(MemorySchemaProvider::new())).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
    for schema_name in SCHEMAS {
        for name in NAMES {
            let table = MemTable::try_new(Arc::clone(&schema), vec![vec![batch.clone()]]).unwrap();
            ctx.register_table(TableReference::full("datafusion", *schema_name, *name), Arc::new(table)).unwrap();
        }
    }
    ctx
}

/// Every table the resolved plan scans, subqueries included, as `catalog.schema.table`. A
/// recursive CTE's reference to itself scans its work table, not a dataset.
fn scans(plan: &LogicalPlan) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && !is_work_table(&scan.source)
        {
            let resolved = scan.table_name.clone().resolve("datafusion", "public");
            out.insert(format!("{}.{}.{}", resolved.catalog, resolved.schema, resolved.table));
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .unwrap();
    out
}

fn is_work_table(source: &Arc<dyn datafusion::logical_expr::TableSource>) -> bool {
    let provider = source_as_provider(source).unwrap();
    let any: &dyn std::any::Any = provider.as_ref();
    any.is::<CteWorkTable>()
}

#[tokio::test]
async fn the_gateway_reads_the_datasets_datafusion_scans() {
    let ctx = context();
    let defaults = NameDefaults { catalog: "datafusion".into(), schema: "public".into() };
    // The attack that got through: a CTE spelled with U+212A hid the real table.
    let mut statements = vec!["WITH ban\u{212A} AS (SELECT 1 AS x) SELECT * FROM bank".to_string()];
    let mut generator = Gen(0x9e37_79b9_7f4a_7c15);
    statements.extend((0..3000).map(|_| generator.statement()));
    let mut compared = 0;
    for sql in &statements {
        // A statement DataFusion cannot plan (an unknown table, a recursive CTE it refuses)
        // runs nowhere; the gateway may read it as it likes.
        let Ok(plan) = ctx.state().create_logical_plan(sql).await else { continue };
        let accesses = sql::analyze(sql, &defaults).unwrap_or_else(|e| panic!("{sql}: the gateway refused it: {e}"));
        let gateway: BTreeSet<String> = accesses
            .iter()
            .flat_map(|a| a.datasets.iter().map(|(_, d)| format!("{}.{}.{}", d.catalog, d.schema, d.table)))
            .collect();
        assert_eq!(gateway, scans(&plan), "{sql}");
        // And the engine, given exactly what the gateway authorized as the stamp's scope,
        // resolves the statement: its own check refuses nothing the gateway allowed.
        let scope: Vec<String> = accesses.iter().flat_map(|a| a.datasets.iter().map(|(_, d)| d.to_string())).collect();
        let state = ctx.state();
        let statement = state.sql_to_statement(sql, &state.config_options().sql_parser.dialect).unwrap();
        let checked = engine::caller::scope::Scope::Only(scope.into()).check(&state, &statement);
        assert!(checked.is_ok(), "{sql}: {}", checked.unwrap_err());
        compared += 1;
    }
    assert!(compared > 1500, "only {compared} of {} statements planned: the generator drifted", statements.len());
}
