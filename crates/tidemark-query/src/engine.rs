//! The DataFusion session over a warehouse.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::catalog::{
    CatalogProvider, MemorySchemaProvider, SchemaProvider, TableProvider,
};
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::execution::session_state::SessionStateBuilder;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use deltalake::datafusion::sql::parser::{DFParser, Statement as DFStatement};
use deltalake::datafusion::sql::sqlparser::dialect::{PostgreSqlDialect, SnowflakeDialect};
use tidemark_core::names::history_schema;
use tidemark_core::schema::{
    TableSchema, INGEST_TS, IS_CURRENT, OP, SEQ, SOURCE_POS, SOURCE_TS, VALID_FROM, VALID_TO,
};
use tidemark_lake::{quote, stored_schema, TableKind, Warehouse};
use tracing::warn;

use crate::travel;
use crate::{Error, Result};

/// Default catalog name.
pub const CATALOG: &str = "tidemark";
/// Hidden schema holding Delta versions loaded for `VERSION AS OF`.
pub(crate) const VERSIONS_SCHEMA: &str = "__tidemark_versions";
/// Hidden schema holding raw history logs (tombstones and `_seq` included) for
/// `changes()`, registered on first use so the catalog stays clean otherwise.
pub(crate) const LOGS_SCHEMA: &str = "__tidemark_logs";

/// A table the engine knows.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub(crate) schema: TableSchema,
    /// Unloaded handle on the current table, on the warehouse's store and options (a
    /// bare URL would lose an S3 warehouse's storage options).
    pub(crate) current: deltalake::DeltaTable,
    /// The raw history log as of opening, the same snapshot the history view reads.
    log: Arc<dyn TableProvider>,
}

/// A SQL engine over one warehouse.
pub struct Engine {
    ctx: SessionContext,
    pub(crate) tables: BTreeMap<(String, String), Known>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The history view over a raw log registered as `log`.
fn history_view_sql(ts: &TableSchema, log: &str) -> String {
    let keys = ts
        .key_names()
        .iter()
        .map(|k| quote(k))
        .collect::<Vec<_>>()
        .join(", ");
    let cols = ts
        .columns
        .iter()
        .chain(ts.shown_dropped())
        .map(|c| quote(&c.name))
        .chain([INGEST_TS, SOURCE_TS, OP, VALID_FROM, VALID_TO].map(quote))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {cols}, {vt} IS NULL AS {ic}, {sp} FROM (\
           SELECT *, LEAD({vf}) OVER (PARTITION BY {keys} ORDER BY {vf}, {seq}) AS {vt} FROM {log}\
         ) WHERE {op} <> 'd'",
        vt = quote(VALID_TO),
        vf = quote(VALID_FROM),
        ic = quote(IS_CURRENT),
        sp = quote(SOURCE_POS),
        seq = quote(SEQ),
        op = quote(OP),
    )
}

impl Engine {
    /// Open every table in the warehouse.
    pub async fn open(wh: &Warehouse) -> Result<Self> {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, "public")
            .with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        let catalog = ctx
            .catalog(CATALOG)
            .ok_or_else(|| Error::Sql("default catalog missing".into()))?;
        let mut tables = BTreeMap::new();
        for loc in wh.list().await? {
            let cur_url = wh.table_url(&loc.schema, &loc.table, TableKind::Current);
            let (cur, cur_ok) = wh.delta_table(&cur_url).await?;
            let hist_url = wh.table_url(&loc.schema, &loc.table, TableKind::History);
            let (hist, hist_ok) = wh.delta_table(&hist_url).await?;
            // History is the record a schema change lands in first (the current
            // table follows in a second commit).
            let schema = match (cur_ok && hist_ok, stored_schema(&hist)) {
                (true, Some(s)) => s,
                _ => {
                    warn!(schema = %loc.schema, table = %loc.table, "not a tidemark table (no history or no stored schema); skipped");
                    continue;
                }
            };
            cur.update_datafusion_session(&ctx.state())?;
            hist.update_datafusion_session(&ctx.state())?;
            let log = tidemark_lake::mor::logical_log(&ctx, &schema, hist.table_provider().await?)?;
            // A streamed table's current state is its base plus the history tail
            // (merge-on-read, see tidemark_lake::mor); others are the stored table.
            let provider = crate::current::provider(&ctx, &schema, &cur, log.clone()).await?;
            schema_provider(catalog.as_ref(), &loc.schema)?
                .register_table(loc.table.clone(), provider)?;

            ctx.register_table("__tidemark_log", log.clone())?;
            let view = ctx
                .sql(&history_view_sql(&schema, "__tidemark_log"))
                .await?
                .into_view();
            ctx.deregister_table("__tidemark_log")?;
            schema_provider(catalog.as_ref(), &history_schema(&loc.schema))?
                .register_table(loc.table.clone(), view)?;
            tables.insert(
                (loc.schema.clone(), loc.table.clone()),
                Known {
                    schema,
                    current: deltalake::DeltaTable::new(cur.log_store()),
                    log,
                },
            );
        }
        // tidemark's own tables: the dead letters of event streams, once there are any.
        if let Some(dl) = tidemark_lake::DeadLetters::existing(wh).await? {
            dl.update_datafusion_session(&ctx.state())?;
            schema_provider(catalog.as_ref(), tidemark_lake::OWN_SCHEMA)?.register_table(
                tidemark_lake::DEAD_LETTERS.into(),
                dl.table_provider().await?,
            )?;
        }
        Ok(Self { ctx, tables })
    }

    /// Plan one read-only statement, with time travel rewritten.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let mut statements = parse(sql)?;
        if statements.len() != 1 {
            return Err(Error::Sql(format!(
                "expected one statement, got {}",
                statements.len()
            )));
        }
        let statement = statements.pop_front().expect("one statement");
        let plan = self.plan(&self.ctx, statement).await?;
        Ok(self.ctx.execute_logical_plan(plan).await?)
    }

    /// A session of its own over the same tables: the catalog is shared (so tables and
    /// time-travel registrations are seen by every session), while functions and
    /// settings registered on it stay in it. The PostgreSQL endpoint gives each
    /// connection one, so a client's `SET` or per-user functions never leak into
    /// another's.
    pub fn session_context(&self) -> SessionContext {
        SessionContext::new_with_state(
            SessionStateBuilder::new_from_existing(self.ctx.state()).build(),
        )
    }

    /// Plan one parsed statement on `ctx` (this engine's or one from
    /// [`Self::session_context`]), with time travel rewritten; refuses DDL and DML.
    /// Placeholders (`$1`) stay in the plan for the caller to bind.
    pub async fn plan(
        &self,
        ctx: &SessionContext,
        mut statement: DFStatement,
    ) -> Result<LogicalPlan> {
        if let DFStatement::Statement(s) = &mut statement {
            let needs = travel::rewrite(s, self)?;
            for v in needs.versions {
                self.register_version(&v).await?;
            }
            for l in needs.logs {
                self.register_log(&l)?;
            }
        }
        let plan = ctx.state().statement_to_plan(statement).await?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .verify_plan(&plan)
            .map_err(|e| Error::ReadOnly(e.to_string().replace("Error during planning: ", "")))?;
        Ok(plan)
    }

    /// Run one statement and collect its rows.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.sql(sql).await?.collect().await?)
    }

    async fn register_version(&self, v: &travel::VersionRef) -> Result<()> {
        let known = self
            .tables
            .get(&(v.schema.clone(), v.table.clone()))
            .ok_or_else(|| Error::UnknownTable(format!("{}.{}", v.schema, v.table)))?;
        let mut table = known.current.clone();
        table.load_version(v.version).await.map_err(|e| {
            Error::Sql(format!(
                "{}.{} VERSION AS OF {}: {e} (versions older than the last VACUUM or log retention are gone; FOR SYSTEM_TIME AS OF reads history instead)",
                v.schema, v.table, v.version
            ))
        })?;
        let provider = table.table_provider().await?;
        self.register_hidden(VERSIONS_SCHEMA, v.hidden_name(), provider)
    }

    fn register_log(&self, l: &travel::LogRef) -> Result<()> {
        let known = self
            .tables
            .get(&(l.schema.clone(), l.table.clone()))
            .ok_or_else(|| Error::UnknownTable(format!("{}.{}", l.schema, l.table)))?;
        self.register_hidden(LOGS_SCHEMA, l.hidden_name(), known.log.clone())
    }

    /// Register a table in a hidden schema once; a concurrent query that registered it
    /// first is not an error.
    fn register_hidden(
        &self,
        schema: &str,
        name: String,
        provider: Arc<dyn TableProvider>,
    ) -> Result<()> {
        let catalog = self.ctx.catalog(CATALOG).expect("default catalog");
        let sp = schema_provider(catalog.as_ref(), schema)?;
        if !sp.table_exist(&name) {
            if let Err(e) = sp.register_table(name.clone(), provider) {
                if !sp.table_exist(&name) {
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }
}

fn schema_provider(catalog: &dyn CatalogProvider, name: &str) -> Result<Arc<dyn SchemaProvider>> {
    if let Some(s) = catalog.schema(name) {
        return Ok(s);
    }
    let s: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
    catalog.register_schema(name, s.clone())?;
    Ok(s)
}

/// Parse SQL as `tidemark sql` does: PostgreSQL syntax, and for statements with
/// `FOR SYSTEM_TIME AS OF` / `VERSION AS OF` (not PostgreSQL syntax) a dialect that
/// has them and PostgreSQL's identifier quoting. Everything else keeps PostgreSQL's
/// exact parsing.
pub fn parse(sql: &str) -> Result<VecDeque<DFStatement>> {
    match DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {}) {
        Ok(s) => Ok(s),
        Err(e) if sql.to_ascii_uppercase().contains(" AS OF") => {
            DFParser::parse_sql_with_dialect(sql, &SnowflakeDialect {})
                .map_err(|_| Error::Sql(e.to_string()))
        }
        Err(e) => Err(Error::Sql(e.to_string())),
    }
}
