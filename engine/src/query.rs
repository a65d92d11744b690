//! The SQL engine: one DataFusion context holding the catalog, and per request a session
//! that carries the caller, so identity functions and views see who is asking.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::view::ViewTable;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::{LogicalPlan, TableType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use futures::StreamExt;

use crate::barrier::BarrierView;
use crate::caller::Caller;
use crate::caller::functions::{self, Caller as SessionCaller};
use crate::caller::listing::{ListedCatalogs, Listing};
use crate::catalog::live::{LiveCatalogs, Served};
use crate::catalog::register_table;
use crate::catalog::{datasets, demo};
use crate::config::{Config, SqlConfig};
use crate::data_policy::patterns::Patterns;
use crate::data_policy::{DataPolicyRule, Decisions, MaskKey};
use crate::error::EngineError;
use crate::result_cap::Truncation;
use datafusion::catalog::CatalogProviderList;
use datafusion::execution::TaskContext;
use identity::StatementLimits;

/// The field metadata key a listed column's mask is named under (`email_domain`, ...).
pub const MASK_METADATA: &str = "portcullis.mask";

/// A table or view the engine serves.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub catalog: String,
    pub schema: String,
    pub name: String,
    pub kind: TableType,
    pub arrow_schema: SchemaRef,
}

pub struct QueryEngine {
    ctx: SessionContext,
    /// The session most requests get (a stamp without a listing): the context's state over
    /// catalogs that list nothing, built once so a request pays a clone, as `ctx.state()`
    /// costs, not a rebuild of the session's registries.
    unlisted: SessionState,
    sql_options: SQLOptions,
    /// In cluster mode, how long a query may go without a result batch.
    stall_timeout: Option<Duration>,
    /// `limits.statement_timeout_secs`.
    statement_timeout: Duration,
    /// The memory pool's size (one node; a caller's `memory_percent` is a share of it).
    pool_bytes: Option<u64>,
    /// The datasets, views and column policy served now (a reload replaces them).
    live: Arc<LiveCatalogs>,
    /// Cluster mode (views are planned differently there).
    cluster: bool,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// Builds the catalog from the config: demo data, datasets, then views (which may read
    /// both). Any failure names the dataset or view.
    pub async fn new(config: &Config) -> Result<Self, String> {
        let session_config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("datafusion", "public")
            .with_option_extension(SessionCaller::default());
        let (ctx, pool_bytes) = match &config.cluster {
            None => {
                let (runtime, pool) =
                    crate::memory::runtime(config.limits.memory_pool_bytes, config.limits.memory_limit_bytes)?;
                tracing::info!(memory_pool_bytes = pool, "query memory pool");
                (SessionContext::new_with_config_rt(session_config, runtime), Some(pool))
            }
            Some(cluster) => (crate::cluster::coordinator::context(session_config, cluster)?, None),
        };
        // After the cluster upgrade, which replaces the function list: the identity
        // functions live on the coordinator only and are folded away before a plan leaves.
        for udf in functions::all() {
            ctx.register_udf(udf);
        }
        crate::bounded_functions::register(&ctx);
        let live = Arc::new(LiveCatalogs::new(served(&ctx, config).await?));
        let ctx = SessionContext::new_with_state(
            SessionStateBuilder::new_from_existing(ctx.state())
                .with_catalog_list(Arc::clone(&live) as Arc<dyn CatalogProviderList>)
                .build(),
        );
        let key = match &config.masking.keyed_hash_key_file {
            Some(path) => {
                let secret =
                    std::fs::read(path).map_err(|e| format!("masking.keyed_hash_key_file: {}: {e}", path.display()))?;
                MaskKey::new(&secret).map_err(|e| format!("masking.keyed_hash_key_file: {}: {e}", path.display()))?
            }
            None => MaskKey::random()?,
        };
        ctx.add_analyzer_rule(Arc::new(DataPolicyRule::new(Arc::clone(&live), key, config.cluster.is_some())));
        let unlisted = listed(ctx.state(), Listing::nothing(), None);
        let stall_timeout = config.cluster.as_ref().map(|c| Duration::from_secs(c.stall_timeout_secs));
        let statement_timeout = Duration::from_secs(config.limits.statement_timeout_secs);
        Ok(Self {
            ctx,
            unlisted,
            sql_options: sql_options(&config.sql),
            stall_timeout,
            statement_timeout,
            pool_bytes,
            live,
            cluster: config.cluster.is_some(),
        })
    }

    /// Serves the datasets, views and columns of `config` from the next statement on, when
    /// they load whole (see [`crate::catalog::live`]); otherwise the error, and the current
    /// version keeps serving. Other settings are read at start only.
    pub async fn reload(&self, config: &Config) -> Result<(), String> {
        if config.cluster.is_some() != self.cluster {
            return Err("cluster: a change between one node and a cluster needs a restart".into());
        }
        let served = served(&self.ctx, config).await?;
        self.live.replace(served);
        tracing::info!(datasets = config.datasets.len(), views = config.views.len(), "serving the engine's file");
        Ok(())
    }

    /// A session for one request, carrying its caller; its catalog lists what the caller's
    /// listing shows (see [`crate::caller::listing`]). The catalogs themselves are shared, so tables
    /// created later are there in every session.
    fn session(&self, caller: &Caller, data: &Arc<[identity::DatasetPolicy]>) -> SessionState {
        let hidden = crate::data_policy::denied_columns(data);
        let mut state = match (&caller.listing, hidden) {
            (Listing::Everything, None) => self.ctx.state(),
            (Listing::Only(names), None) if names.is_empty() => self.unlisted.clone(),
            (listing, hidden) => listed(self.ctx.state(), listing.clone(), hidden),
        };
        let options = state.config_mut().options_mut();
        options.extensions.insert(SessionCaller(Some(Arc::clone(&caller.principal))));
        let required = matches!(caller.scope, crate::caller::scope::Scope::Only(_));
        options.extensions.insert(Decisions { policies: Arc::clone(data), required });
        state
    }

    /// Parses and plans one SQL statement for `caller`, refusing what the engine's SQL
    /// options do not allow. Nothing runs until the returned frame is executed.
    pub async fn plan(&self, caller: &Caller, sql: &str) -> Result<DataFrame, EngineError> {
        // Bounded before DataFusion parses: its parser, planner and optimizer recurse.
        complexity::tokenize(&GenericDialect {}, sql)?;
        let data = self.live.current().patterns.expand(&caller.data);
        let state = self.session(caller, &data);
        let dialect = state.config_options().sql_parser.dialect;
        let sql = crate::placeholders::numbered(&GenericDialect {}, sql)?;
        let statement = state.sql_to_statement(&sql, &dialect)?;
        // No table outside what the gateway authorized is even looked up.
        caller.scope.check(&state, &statement)?;
        let timeout = self.timeout(caller.limits.as_deref());
        let plan = tokio::time::timeout(timeout.after, state.statement_to_plan(statement))
            .await
            .map_err(|_| {
                timeout.count();
                EngineError::Exhausted(format!("the statement was still planning after {}", timeout.described()))
            })?
            .map_err(|error| match crate::data_policy::denied_reference(&error, &data) {
                Some(denied) => EngineError::ColumnForbidden(denied),
                None => EngineError::from(error),
            })?;
        self.sql_options
            .verify_plan(&plan)
            .map_err(|e| EngineError::Forbidden(format!("refused: {}", e.strip_backtrace())))?;
        if data.iter().any(|policy| !policy.denied.is_empty()) {
            // Refused now, where the query is planned, not later when it runs.
            crate::data_policy::check_denied(plan.clone(), &state)?;
        }
        if let LogicalPlan::Ddl(_) = plan {
            // DDL changes the shared catalog, so it runs on the context, not the session.
            return Ok(self.ctx.execute_logical_plan(plan).await?);
        }
        Ok(DataFrame::new(state, plan))
    }

    /// Starts a planned query under its caller's `limits` (and the engine's own). It ends
    /// with an error, its stream dropped (which stops its work), once it has run the
    /// shorter statement timeout; on a cluster, also once it goes `cluster.stall_timeout_secs`
    /// without a result batch (a job left waiting on a lost executor) instead of hanging.
    /// On one node, a `memory_percent` holds it to that share of the pool. Its result is
    /// held to the caller's caps ([`crate::result_cap`]): the returned [`Truncation`] says,
    /// once the stream has ended, whether it was cut.
    ///
    /// With `report` (the gateway's audit asked), also the statement's access report as its
    /// header value, read from the plan it runs as ([`crate::access`]).
    pub async fn execute(
        &self,
        frame: DataFrame,
        report: bool,
        limits: Option<&StatementLimits>,
    ) -> Result<(SendableRecordBatchStream, Option<String>, Truncation), EngineError> {
        let timeout = self.timeout(limits);
        let deadline = tokio::time::Instant::now() + timeout.after;
        let overran = move || {
            timeout.count();
            DataFusionError::ResourcesExhausted(format!(
                "the statement ran longer than {} and was stopped",
                timeout.described()
            ))
        };
        let share = match (limits, self.pool_bytes) {
            (Some(StatementLimits { memory_percent: Some(percent), tier, .. }), Some(pool)) => {
                let bytes = u128::from(pool) * u128::from(*percent) / 100;
                Some((usize::try_from(bytes).unwrap_or(usize::MAX), tier.as_str()))
            }
            _ => None,
        };
        let (stream, access) = tokio::time::timeout_at(deadline, self.start(frame, report, share))
            .await
            .map_err(|_| overran.clone()())??;
        let (stream, truncation) = match limits {
            Some(limits) => crate::result_cap::cap(stream, limits),
            None => (stream, Truncation::default()),
        };
        let schema = stream.schema();
        let sleep = Box::pin(tokio::time::sleep_until(deadline));
        let bounded = futures::stream::unfold(Some((stream, sleep)), move |state| {
            let overran = overran.clone();
            async move {
                let (mut stream, mut sleep) = state?;
                tokio::select! {
                    biased;
                    () = &mut sleep => Some((Err(overran()), None)),
                    item = stream.next() => {
                        let item = item?.map_err(crate::redact::execution_error);
                        // After an error, end: the query's stream is dropped with this one.
                        let next = item.is_ok().then_some((stream, sleep));
                        Some((item, next))
                    }
                }
            }
        });
        Ok((Box::pin(RecordBatchStreamAdapter::new(schema, bounded)), access, truncation))
    }

    /// The statement timeout that applies: the engine's, or the caller's tier's when shorter.
    fn timeout(&self, limits: Option<&StatementLimits>) -> Timeout {
        let engine = Timeout { after: self.statement_timeout, tier: None };
        let Some(StatementLimits { statement_timeout_secs: Some(secs), tier, .. }) = limits else { return engine };
        let after = Duration::from_secs(*secs);
        if after < self.statement_timeout { Timeout { after, tier: Some(Arc::from(tier.as_str())) } } else { engine }
    }

    /// The query's stream (and with `report` its access report); on a cluster, ended with an
    /// error after a stall.
    async fn start(
        &self,
        frame: DataFrame,
        report: bool,
        share: Option<(usize, &str)>,
    ) -> Result<(SendableRecordBatchStream, Option<String>), EngineError> {
        // What `DataFrame::execute_stream` does, with the optimized plan in hand for the report.
        let (state, plan) = frame.into_parts();
        let optimized = state.optimize(&plan)?;
        let access = report.then(|| crate::access::header(&optimized)).flatten();
        let physical = state.query_planner().create_physical_plan(&optimized, &state);
        let Some(stall) = self.stall_timeout else {
            let task = match share {
                Some((bytes, tier)) => {
                    let runtime = crate::memory::with_share(state.runtime_env(), bytes, tier)?;
                    Arc::new(TaskContext::from(&state).with_runtime(runtime))
                }
                None => state.task_ctx(),
            };
            let stream = datafusion::physical_plan::execute_stream(physical.await?, task)?;
            return Ok((stream, access));
        };
        let stalled = move || {
            DataFusionError::ResourcesExhausted(format!(
                "the cluster returned no result for {} s (cluster.stall_timeout_secs): the query was stopped; \
                 an executor may have been lost, retry it",
                stall.as_secs()
            ))
        };
        let started = async { datafusion::physical_plan::execute_stream(physical.await?, state.task_ctx()) };
        let stream = tokio::time::timeout(stall, started).await.map_err(|_| stalled())??;
        let schema = stream.schema();
        let guarded = tokio_stream::StreamExt::timeout(stream, stall)
            .map(move |item| item.unwrap_or_else(|_| Err(stalled())).map_err(lost_node))
            .scan(false, |ended, item| {
                // After the stall error, end: the job's stream is dropped with this one.
                let out = (!*ended).then_some(item);
                *ended = out.as_ref().is_some_and(Result::is_err);
                futures::future::ready(out)
            });
        Ok((Box::pin(RecordBatchStreamAdapter::new(schema, guarded)), access))
    }

    /// Every table and view, sorted by catalog, schema and name (listings are stable).
    async fn tables(&self) -> Result<Vec<TableInfo>, EngineError> {
        let mut out = Vec::new();
        let mut catalogs = self.ctx.catalog_names();
        catalogs.sort();
        for catalog_name in catalogs {
            let Some(catalog) = self.ctx.catalog(&catalog_name) else { continue };
            let mut schemas = catalog.schema_names();
            schemas.sort();
            for schema_name in schemas {
                let Some(schema) = catalog.schema(&schema_name) else { continue };
                let mut names = schema.table_names();
                names.sort();
                for name in names {
                    if let Some(table) = schema.table(&name).await? {
                        out.push(TableInfo {
                            catalog: catalog_name.clone(),
                            schema: schema_name.clone(),
                            name,
                            kind: table.table_type(),
                            arrow_schema: table.schema(),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// The tables and views `listing` shows, for `/v1/datasets` and Flight SQL `GetTables`:
    /// without the columns `data` denies the caller, and each column it masks marked with
    /// the mask's name in the field metadata ([`MASK_METADATA`]).
    pub async fn listed_tables(
        &self,
        listing: &Listing,
        data: &Arc<[identity::DatasetPolicy]>,
    ) -> Result<Vec<TableInfo>, EngineError> {
        let mut tables = self.tables().await?;
        tables.retain(|t| listing.shows(&t.catalog, &t.schema, &t.name));
        let data = self.live.current().patterns.expand(data);
        for table in &mut tables {
            let id = identity::dataset_id(&table.catalog, &table.schema, &table.name);
            let Some(policy) = data.iter().find(|p| p.dataset == id) else { continue };
            let fields: Vec<_> = table
                .arrow_schema
                .fields()
                .iter()
                .filter(|f| !policy.denied.contains(f.name()))
                .map(|f| match policy.masks.iter().find(|m| &m.column == f.name()) {
                    Some(mask) => {
                        let mut metadata = f.metadata().clone();
                        metadata.insert(MASK_METADATA.to_string(), mask.mask.name().to_string());
                        Arc::new(f.as_ref().clone().with_metadata(metadata))
                    }
                    None => Arc::clone(f),
                })
                .collect();
            table.arrow_schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        }
        Ok(tables)
    }

    /// The catalog and schema names that hold a table `listing` shows, for Flight SQL
    /// `GetCatalogs` / `GetDbSchemas` (a schema's name can say whose data it holds).
    pub async fn listed_schemas(&self, listing: &Listing) -> Result<Vec<(String, String)>, EngineError> {
        let mut out: Vec<(String, String)> = self
            .listed_tables(listing, &Arc::from(Vec::new()))
            .await?
            .into_iter()
            .map(|t| (t.catalog, t.schema))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Ballista reports a task whose executor died as a failed job, an execution error like a
/// caller's own (a division by zero); told apart by the transport failure it wraps, it is the
/// cluster's fault, retryable: `resource_exhausted` (503), not a 400 that blames the query.
fn lost_node(error: DataFusionError) -> DataFusionError {
    const TRANSPORT: &[&str] = &[
        "h2 protocol error",
        "peer closed connection",
        "Connection refused",
        "connection reset",
        "broken pipe",
        "transport error",
        "Executor lost",
        "executor lost",
    ];
    let text = error.to_string();
    if TRANSPORT.iter().any(|needle| text.contains(needle)) {
        return DataFusionError::ResourcesExhausted(
            "the cluster lost a node while the query ran; retry it".to_string(),
        );
    }
    error
}

/// The tables `config.columns` declares (see [`crate::data_policy`]), by
/// Loads what `config` serves into a catalog list of its own (planned with `ctx`'s functions
/// and settings): demo data, datasets, then views (which may read both), and the column
/// policy. Any failure names the dataset or view.
async fn served(ctx: &SessionContext, config: &Config) -> Result<Served, String> {
    let catalogs = Served::empty_catalogs();
    let staging = SessionContext::new_with_state(
        SessionStateBuilder::new_from_existing(ctx.state()).with_catalog_list(Arc::clone(&catalogs)).build(),
    );
    if config.demo_data {
        demo::register(&staging).map_err(|e| format!("demo data: {e}"))?;
    }
    for (i, dataset) in config.datasets.iter().enumerate() {
        datasets::register(&staging, dataset, &config.s3)
            .await
            .map_err(|e| format!("datasets[{i}] ({}): {e}", dataset.name))?;
    }
    // On a cluster hand-written views are inlined: their plans call the caller's functions,
    // which the nodes do not have (see THREAT_MODEL.md); on one node they are barriers.
    let barrier = config.cluster.is_none();
    for (i, view) in config.views.iter().enumerate() {
        register_view(&staging, &view.name, &view.sql, barrier)
            .await
            .map_err(|e| format!("views[{i}] ({}): {e}", view.name))?;
    }
    let (governed, patterns) = governed_tables(&staging, config).await?;
    Ok(Served { catalogs, governed, patterns })
}

/// `catalog.schema.table`, with their tagged columns, each checked against the table's real
/// schema: it must be a base table (not a view), every column declared by name must exist
/// with the declared type, and the table's real columns that patterns tag are found
/// ([`Patterns`]).
async fn governed_tables(ctx: &SessionContext, config: &Config) -> Result<(Governed, Patterns), String> {
    let mut governed = std::collections::HashMap::new();
    let mut patterns = Patterns::default();
    for (name, columns) in &config.columns {
        let origin = format!("columns.{name}");
        let reference = datafusion::common::TableReference::parse_str(name);
        let table = ctx
            .table_provider(reference.clone())
            .await
            .map_err(|_| format!("{origin}: no dataset or demo table is named {name}"))?;
        if table.table_type() != TableType::Base {
            return Err(format!("{origin}: {name} is a view; declare the columns of the tables it reads"));
        }
        let schema = table.schema();
        let (named, globs): (Vec<_>, Vec<_>) =
            columns.iter().partition(|(column, _)| !identity::is_column_pattern(column));
        for (column, spec) in &named {
            let field = schema
                .field_with_name(column)
                .map_err(|_| format!("{origin}.{column}: {name} has no column {column:?}"))?;
            if let Some(kind) = spec.kind
                && !crate::config::admits(kind, field.data_type())
            {
                return Err(format!("{origin}.{column}: declared {kind:?} but the column is {}", field.data_type()));
            }
        }
        let resolved = reference.resolve("datafusion", "public");
        let id = identity::dataset_id(&resolved.catalog, &resolved.schema, &resolved.table);
        let mut tagged: Vec<String> =
            named.iter().filter(|(_, spec)| !spec.tags.is_empty()).map(|(column, _)| (*column).clone()).collect();
        let matched = crate::data_policy::patterns::matched(&schema, &named, &globs)
            .map_err(|error| format!("{origin}: {error}"))?;
        tagged.extend(matched.iter().map(|(column, _)| column.clone()));
        if !matched.is_empty() {
            patterns.insert(id.clone(), matched);
        }
        governed.insert(id, tagged);
    }
    Ok((governed, patterns))
}

/// Per governed table (`catalog.schema.table`), its tagged columns.
type Governed = std::collections::HashMap<String, Vec<String>>;

/// `state` over catalogs that list what `listing` shows, without the columns `hidden` names.
fn listed(state: SessionState, listing: Listing, hidden: crate::caller::listing::Hidden) -> SessionState {
    let catalogs = Arc::new(ListedCatalogs::new(Arc::clone(state.catalog_list()), listing, hidden));
    SessionStateBuilder::new_from_existing(state).with_catalog_list(catalogs).build()
}

fn sql_options(config: &SqlConfig) -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(config.allow_ddl)
        .with_allow_dml(config.allow_dml)
        // SET, PREPARE, BEGIN...: nothing a client of a shared engine should change.
        .with_allow_statements(false)
}

/// Views are planned once (to check them at startup) but their identity functions are
/// folded per query, with the querying caller (see `caller::functions`). With `barrier`,
/// a caller's expressions never see the rows a view filters out (see `barrier`).
async fn register_view(ctx: &SessionContext, name: &str, sql: &str, barrier: bool) -> datafusion::error::Result<()> {
    let plan = ctx.state().create_logical_plan(sql).await?;
    // A view is a query: the read-only options refuse anything else.
    sql_options(&SqlConfig::default()).verify_plan(&plan)?;
    let view: Arc<dyn datafusion::catalog::TableProvider> = if barrier {
        Arc::new(BarrierView::new(plan, sql.to_string()))
    } else {
        Arc::new(ViewTable::new(plan, Some(sql.to_string())))
    };
    register_table(ctx, name, view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_failed_by_a_lost_node_is_the_clusters_fault_a_query_error_is_not() {
        let lost = DataFusionError::Execution(
            "Job x failed: Task failed due to runtime execution error: IpcError(\"h2 protocol error: error reading a body\")"
                .into(),
        );
        assert!(matches!(lost_node(lost), DataFusionError::ResourcesExhausted(m) if m.contains("retry it")));
        let own = DataFusionError::Execution("Job x failed: Divide by zero error".into());
        assert!(matches!(lost_node(own), DataFusionError::Execution(_)));
    }
}

/// The statement timeout that applies to one statement, and whose it is.
#[derive(Debug, Clone)]
struct Timeout {
    after: Duration,
    /// The caller's tier, when its timeout is the shorter; `None`: the engine's.
    tier: Option<Arc<str>>,
}

impl Timeout {
    /// What the error names: the setting and its value.
    fn described(&self) -> String {
        match &self.tier {
            Some(tier) => format!("statement_timeout_secs of tier {tier} ({} s)", self.after.as_secs()),
            None => format!("limits.statement_timeout_secs ({} s)", self.after.as_secs()),
        }
    }

    /// Counts a caller's timeout in the engine's metrics (the engine's own is not a tier's).
    fn count(&self) {
        if let Some(tier) = &self.tier {
            crate::metrics::limit_applied(tier, "statement_timeout_secs");
        }
    }
}
