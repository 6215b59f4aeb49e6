//! The DataFusion session over a warehouse.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, RwLock};

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::execution::session_state::SessionStateBuilder;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use deltalake::datafusion::sql::parser::{DFParser, Statement as DFStatement};
use deltalake::datafusion::sql::sqlparser::dialect::{PostgreSqlDialect, SnowflakeDialect};
use tidemark_core::names::history_schema;
use tidemark_core::schema::TableSchema;
use tidemark_lake::{stored_schema, TableKind, Warehouse};
use tracing::{info, warn};

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
    /// Every version, tombstones included, with `_valid_to`
    /// (`tidemark_lake::closed::plan_versions`): what the history view shows without
    /// the tombstones, and what `changes()` reads.
    versions: Arc<dyn TableProvider>,
    /// The loaded tables the providers were built from (on the warehouse's store and
    /// options, which a bare URL would lose on S3): their versions tell a refresh
    /// whether anything changed, and a clone of them updates incrementally.
    cur_loaded: deltalake::DeltaTable,
    hist_loaded: deltalake::DeltaTable,
    /// The closed history, loaded after the current table (see `plan_versions`);
    /// `None` for tables landed before it existed.
    closed_loaded: Option<deltalake::DeltaTable>,
    /// Loaded from the deferred warehouse (read-only), not the engine's own.
    deferred: bool,
    /// The `_ingest_ts` mark (micros) above which the current view merges the log's
    /// tail into the base; `None` when the base is the whole current state (no tail
    /// to merge), so its files' row counts are the table's.
    read_mark: Option<i64>,
}

/// What a table's Delta statistics say, read from its log without reading a row:
/// the catalog's listing ([`Engine::table_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Rows now: exact when [`Self::rows_exact`]; otherwise the rows as of the last
    /// compaction (the changes landed since are merged when read).
    pub rows: Option<u64>,
    /// [`Self::rows`] is the current row count.
    pub rows_exact: bool,
    /// Rows of the history log: one per change (inserts, updates, deletes).
    pub changes: Option<u64>,
    /// The earliest `_valid_from` in the history (micros since 1970): how far back
    /// `AS OF` reaches.
    pub oldest_us: Option<i64>,
}

/// Rows of a Delta table's files and, of column `min_of` if given, the least
/// minimum, from its log's statistics; `None` where a file lacks them.
fn file_stats(t: &deltalake::DeltaTable, min_of: Option<&str>) -> Option<(u64, Option<i64>)> {
    use deltalake::arrow::array::{Array, AsArray};
    use deltalake::arrow::datatypes::{DataType, Int64Type};
    let files = t.snapshot().ok()?.add_actions_table(true).ok()?;
    let rows = files
        .column_by_name("num_records")?
        .as_primitive_opt::<Int64Type>()?;
    if rows.null_count() > 0 {
        return None;
    }
    let total = rows
        .values()
        .iter()
        .map(|n| u64::try_from(*n).unwrap_or(0))
        .sum();
    let least = match min_of {
        None => None,
        Some(c) => {
            let m = files.column_by_name(&format!("min.{c}"))?;
            let m = deltalake::arrow::compute::cast(m, &DataType::Int64).ok()?;
            let m = m.as_primitive_opt::<Int64Type>()?;
            if m.null_count() > 0 {
                return None;
            }
            m.values().iter().min().copied()
        }
    };
    Some((total, least))
}

/// What a name in the catalog reads, for access control: which source table (if
/// any) and in which form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A source table's data: `schema.table` (the current rows), `schema_history.table`,
    /// or a time-travel registration of it.
    Source {
        /// The source table's SQL schema (`db`).
        schema: String,
        /// The source table's SQL name.
        table: String,
        /// Which form of it.
        form: Form,
    },
    /// One of tidemark's own tables (schema `tidemark`): dead letters, audit.
    Own,
}

/// The forms a source table is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `db.t`: the current rows.
    Current,
    /// `db_history.t`, and `AS OF` reads of it.
    History,
    /// A `VERSION AS OF` registration (an old Delta version of the current table).
    Version,
    /// The raw history log `changes()` reads.
    Log,
}

/// Another environment's warehouse an engine also reads (a deferred build: dbt's
/// `defer`), opened read-only, and which of its names the engine's own warehouse
/// keeps.
struct Deferred {
    wh: Warehouse,
    /// (schema, table) served from the engine's own warehouse even where the deferred
    /// one has a table of that name (the models a deferred build builds itself).
    keep_own: RwLock<std::collections::BTreeSet<(String, String)>>,
}

/// A SQL engine over one warehouse (and, for a deferred build, another one read-only:
/// [`Engine::open_deferred`]).
pub struct Engine {
    ctx: SessionContext,
    wh: Warehouse,
    deferred: Option<Deferred>,
    tables: RwLock<BTreeMap<(String, String), Known>>,
    /// Tables jobs write (`Warehouse::list_derived`), as last registered.
    derived: RwLock<BTreeMap<(String, String), deltalake::DeltaTable>>,
    /// Views (SQL models materialised as views), by (schema, name): their SQL.
    views: RwLock<BTreeMap<(String, String), String>>,
    /// Refreshes one at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// The entries of the own and the deferred warehouse's `.retired/` at the last
    /// refresh (`None` before the first): see [`Self::forget_relanded`].
    retired: std::sync::Mutex<Option<(BTreeSet<String>, BTreeSet<String>)>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("tables", &self.table_keys())
            .finish()
    }
}

impl Engine {
    /// Open every table in the warehouse.
    pub async fn open(wh: &Warehouse) -> Result<Self> {
        Self::open_with(wh, None).await
    }

    /// Open every table of `wh` and of `deferred`, another environment's warehouse
    /// opened with [`Warehouse::open_read_only`] (refused otherwise): a deferred build
    /// reads that one's tables under their own names, read-only, and writes only to
    /// `wh` (through its own writer; the engine writes nowhere). Where both have a
    /// table of one name the deferred one is served, unless [`Engine::keep_own`] names
    /// it. Views defined in `deferred` are served where `wh` defines none of that name;
    /// `wh`'s own tables (dead letters, runs) and the tables jobs write are `wh`'s only.
    pub async fn open_deferred(wh: &Warehouse, deferred: &Warehouse) -> Result<Self> {
        if !deferred.is_read_only() {
            return Err(Error::Sql(format!(
                "the deferred warehouse {} must be opened read-only",
                deferred.root()
            )));
        }
        if deferred.root() == wh.root() {
            return Err(Error::Sql(format!(
                "a build cannot defer to its own warehouse ({})",
                wh.root()
            )));
        }
        Self::open_with(
            wh,
            Some(Deferred {
                wh: deferred.clone(),
                keep_own: RwLock::new(Default::default()),
            }),
        )
        .await
    }

    async fn open_with(wh: &Warehouse, deferred: Option<Deferred>) -> Result<Self> {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, "public")
            .with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        crate::functions::register(&ctx);
        let engine = Self {
            ctx,
            wh: wh.clone(),
            deferred,
            tables: RwLock::new(BTreeMap::new()),
            derived: RwLock::new(BTreeMap::new()),
            views: RwLock::new(BTreeMap::new()),
            refreshing: tokio::sync::Mutex::new(()),
            retired: std::sync::Mutex::new(None),
        };
        engine.refresh().await?;
        Ok(engine)
    }

    /// Serve `names` (schema, table) from the engine's own warehouse only, never from
    /// the deferred one (a deferred build's selected models, and the models its own
    /// warehouse has), and refresh. Without a deferred warehouse, nothing changes.
    pub async fn keep_own(
        &self,
        names: impl IntoIterator<Item = (String, String)>,
    ) -> Result<usize> {
        let Some(d) = &self.deferred else {
            return Ok(0);
        };
        *d.keep_own.write().expect("keep_own lock") = names.into_iter().collect();
        self.refresh().await
    }

    /// The deferred warehouse, if the engine has one.
    pub fn deferred_warehouse(&self) -> Option<&Warehouse> {
        self.deferred.as_ref().map(|d| &d.wh)
    }

    /// Where landed table `schema.table` is read from when that is the deferred
    /// warehouse: its root URL (`None`: the engine's own warehouse, or unknown).
    pub fn deferred_root(&self, schema: &str, table: &str) -> Option<String> {
        let deferred = self.deferred.as_ref()?;
        self.known(schema, table)
            .filter(|k| k.deferred)
            .map(|_| deferred.wh.root().to_string())
    }

    /// The tables to serve: (location, from the deferred warehouse).
    async fn listed(&self) -> Result<Vec<(tidemark_lake::TableLocation, bool)>> {
        let own = self.wh.list().await?;
        let Some(d) = &self.deferred else {
            return Ok(own.into_iter().map(|l| (l, false)).collect());
        };
        let keep = d.keep_own.read().expect("keep_own lock").clone();
        let mut out: BTreeMap<(String, String), (tidemark_lake::TableLocation, bool)> = own
            .into_iter()
            .map(|l| ((l.schema.clone(), l.table.clone()), (l, false)))
            .collect();
        for l in d.wh.list().await? {
            let key = (l.schema.clone(), l.table.clone());
            if !keep.contains(&key) {
                out.insert(key, (l, true));
            }
        }
        Ok(out.into_values().collect())
    }

    /// Forget the tables landed again since the last refresh, so that they are
    /// loaded anew. `tidemark snapshot --resnapshot` moves a table's Delta tables
    /// aside (to `.retired/<schema>.<table>.<instant>`) and lands new ones at the same
    /// place; following the old table's log from its version into the new one would
    /// serve the old rows when the new log is shorter and a mix of both tables'
    /// files when it is longer (tests/relanded.rs). Nothing in the new log says so:
    /// its later commits carry no table id. One listing per warehouse and refresh.
    async fn forget_relanded(&self) -> Result<()> {
        let own = self.wh.retired().await?;
        let deferred = match &self.deferred {
            Some(d) => d.wh.retired().await?,
            None => BTreeSet::new(),
        };
        let new: Vec<(bool, String)> = {
            let mut seen = self.retired.lock().expect("retired lock");
            let new = match seen.as_ref() {
                // The first refresh loads every table anyway.
                None => Vec::new(),
                Some((o, d)) => own
                    .difference(o)
                    .map(|n| (false, n.clone()))
                    .chain(deferred.difference(d).map(|n| (true, n.clone())))
                    .collect(),
            };
            *seen = Some((own, deferred));
            new
        };
        if !new.is_empty() {
            self.tables
                .write()
                .expect("tables lock")
                .retain(|(schema, table), k| {
                    // `<schema>.<table>.<instant>`; a name with dots in it may also
                    // match another table's entry, which costs that table a reload.
                    let prefix = format!("{schema}.{table}.");
                    let again = new
                        .iter()
                        .any(|(d, n)| *d == k.deferred && n.starts_with(&prefix));
                    if again {
                        info!(schema = %schema, table = %table, "landed again: loading it anew");
                    }
                    !again
                });
        }
        Ok(())
    }

    /// The warehouse a table is read from.
    fn warehouse_of(&self, deferred: bool) -> &Warehouse {
        match (&self.deferred, deferred) {
            (Some(d), true) => &d.wh,
            _ => &self.wh,
        }
    }

    /// Bring the tables up to the warehouse's newest commits: tables with new
    /// commits get new providers (swapped in whole, so a query planned meanwhile reads
    /// the old or the new snapshot, never a mix), new tables appear, tables gone from
    /// the warehouse disappear. Cheap when nothing changed: each table's log is read
    /// from its last known version only. Returns how many tables changed.
    ///
    /// `tidemark sql` opens the engine per command; the PostgreSQL endpoint calls this
    /// periodically so its sessions see what ingestion lands.
    pub async fn refresh(&self) -> Result<usize> {
        let _one_at_a_time = self.refreshing.lock().await;
        let catalog = self
            .ctx
            .catalog(CATALOG)
            .ok_or_else(|| Error::Sql("default catalog missing".into()))?;
        let mut changed = 0;
        let listed = self.listed().await?;
        self.forget_relanded().await?;
        for (loc, deferred) in &listed {
            let deferred = *deferred;
            let wh = self.warehouse_of(deferred);
            let key = (loc.schema.clone(), loc.table.clone());
            // A table whose origin changed (a model the deferred build has now built
            // itself) is loaded anew from where it is read now.
            let known = self
                .tables
                .read()
                .expect("tables lock")
                .get(&key)
                .filter(|k| k.deferred == deferred)
                .cloned();
            // The current table first, then the closed history, then the log: a
            // closed history read after the base is at or past the base's mark (its
            // newer closures are filtered out), and the tail starts at the mark.
            let (cur, closed, hist) = match known {
                Some(k) => {
                    let mut cur = k.cur_loaded.clone();
                    cur.update_incremental(None).await?;
                    let closed = self.load_closed(wh, loc, k.closed_loaded.as_ref()).await?;
                    let mut hist = k.hist_loaded.clone();
                    hist.update_incremental(None).await?;
                    let closed_version =
                        |c: &Option<deltalake::DeltaTable>| c.as_ref().map(|c| c.version());
                    if (cur.version(), hist.version(), closed_version(&closed))
                        == (
                            k.cur_loaded.version(),
                            k.hist_loaded.version(),
                            closed_version(&k.closed_loaded),
                        )
                    {
                        continue;
                    }
                    (cur, closed, hist)
                }
                None => {
                    let cur_url = wh.table_url(&loc.schema, &loc.table, TableKind::Current);
                    let (cur, cur_ok) = wh.delta_table(&cur_url).await?;
                    let closed = self.load_closed(wh, loc, None).await?;
                    let hist_url = wh.table_url(&loc.schema, &loc.table, TableKind::History);
                    let (hist, hist_ok) = wh.delta_table(&hist_url).await?;
                    if !(cur_ok && hist_ok) {
                        warn!(schema = %loc.schema, table = %loc.table, "not a tidemark table (no current or no history); skipped");
                        continue;
                    }
                    (cur, closed, hist)
                }
            };
            // History is the record a schema change lands in first (the current
            // table follows in a second commit).
            let Some(schema) = stored_schema(&hist) else {
                warn!(schema = %loc.schema, table = %loc.table, "not a tidemark table (no stored schema); skipped");
                continue;
            };
            let ctx = &self.ctx;
            cur.update_datafusion_session(&ctx.state())?;
            hist.update_datafusion_session(&ctx.state())?;
            if let Some(c) = &closed {
                c.update_datafusion_session(&ctx.state())?;
            }
            let log = tidemark_lake::mor::logical_log(
                ctx,
                &schema,
                tidemark_lake::provider(&hist).await?,
            )?;
            // A streamed table's current state is its base plus the history tail
            // (merge-on-read, see tidemark_lake::mor); others are the stored table.
            // Read once: the current provider and the versions both follow the mark.
            let mark = tidemark_lake::committed_state(&cur)
                .await?
                .state
                .merged_through_us;
            // With nothing landed since the last compaction the base is the whole
            // current state: readers skip the merge (decided once per loaded log).
            let tail_empty = match mark {
                Some(m) => tidemark_lake::mor::tail_is_empty(ctx, log.clone(), m).await?,
                None => false,
            };
            let read_mark = mark.filter(|_| !tail_empty);
            let provider =
                crate::current::provider(ctx, &schema, &cur, read_mark, log.clone()).await?;
            // The view is planned in a scratch context, so the name its SQL reads the
            // log under is never visible in the shared catalog; the plan holds the
            // provider itself, not the name.
            let versions = tidemark_lake::closed::plan_versions(
                &schema,
                &cur,
                mark,
                closed.as_ref(),
                log,
                tail_empty,
            )
            .await?;
            let live = versions.live.into_view();
            let versions = versions.all.into_view();
            let scratch = SessionContext::new();
            scratch.register_table("__tidemark_live", live)?;
            let view = scratch
                .sql(&tidemark_lake::closed::history_view_sql(
                    &schema,
                    "__tidemark_live",
                ))
                .await?
                .into_view();
            schema_provider(catalog.as_ref(), &loc.schema)?
                .register_table(loc.table.clone(), provider)?;
            schema_provider(catalog.as_ref(), &history_schema(&loc.schema))?
                .register_table(loc.table.clone(), view)?;
            self.tables.write().expect("tables lock").insert(
                key,
                Known {
                    schema,
                    versions,
                    cur_loaded: cur,
                    hist_loaded: hist,
                    closed_loaded: closed,
                    deferred,
                    read_mark,
                },
            );
            changed += 1;
        }
        // Tables dropped from the warehouse (retired by --resnapshot, or removed).
        let gone: Vec<(String, String)> = self
            .tables
            .read()
            .expect("tables lock")
            .keys()
            .filter(|k| {
                !listed
                    .iter()
                    .any(|(l, _)| l.schema == k.0 && l.table == k.1)
            })
            .cloned()
            .collect();
        for (s, t) in gone {
            for schema in [s.clone(), history_schema(&s)] {
                if let Some(sp) = catalog.schema(&schema) {
                    sp.deregister_table(&t)?;
                }
            }
            self.tables.write().expect("tables lock").remove(&(s, t));
            changed += 1;
        }
        // tidemark's own tables (the audit, dead letters, job runs, data-test
        // outcomes, verifications, saved charts and dashboards), each once it exists:
        // registered once, read at its newest version by each query. The endpoint
        // registers the audit it writes itself; other engines read what is there.
        for name in std::iter::once(tidemark_lake::AUDIT).chain(tidemark_lake::KEPT_RECORDS) {
            if self.hidden_exists(tidemark_lake::OWN_SCHEMA, name) {
                continue;
            }
            if let Some(t) = tidemark_lake::existing_own(&self.wh, name).await? {
                t.update_datafusion_session(&self.ctx.state())?;
                self.register_own(name, Arc::new(crate::Latest::new(&t).await?))?;
            }
        }
        changed += self.refresh_derived(catalog.as_ref()).await?;
        changed += self.refresh_views(catalog.as_ref(), changed > 0).await?;
        Ok(changed)
    }

    /// Register the tables jobs write, anew when a run has committed since (a job's
    /// SQL may change their shape). They have no history of their own: each query
    /// reads the newest version. A name a landed table has is left to that table.
    async fn refresh_derived(&self, catalog: &dyn CatalogProvider) -> Result<usize> {
        let mut changed = 0;
        for loc in self.wh.list_derived().await? {
            let key = (loc.schema.clone(), loc.table.clone());
            if self.tables.read().expect("tables lock").contains_key(&key) {
                warn!(schema = %loc.schema, table = %loc.table, "a job writes a table a source lands too; the landed one is served");
                continue;
            }
            let known = self
                .derived
                .read()
                .expect("derived lock")
                .get(&key)
                .cloned();
            let table = match known {
                Some(mut t) => {
                    let before = t.version();
                    if Some(t.get_latest_version().await?) == before {
                        continue;
                    }
                    t.update_incremental(None).await?;
                    t
                }
                None => {
                    let url = self.wh.derived_url(&loc.schema, &loc.table);
                    match self.wh.delta_table(&url).await? {
                        (t, true) => t,
                        _ => continue,
                    }
                }
            };
            table.update_datafusion_session(&self.ctx.state())?;
            schema_provider(catalog, &loc.schema)?.register_table(
                loc.table.clone(),
                Arc::new(crate::Latest::new(&table).await?),
            )?;
            self.derived
                .write()
                .expect("derived lock")
                .insert(key, table);
            changed += 1;
        }
        Ok(changed)
    }

    /// Register the views (SQL models materialised as views), planned anew when a
    /// definition changed or any table did: a view's plan holds the providers of
    /// the tables it reads, so it must not outlive them. A view that no longer plans
    /// (a table it reads is gone) is left out, with a warning.
    async fn refresh_views(
        &self,
        catalog: &dyn CatalogProvider,
        tables_changed: bool,
    ) -> Result<usize> {
        let defs = match tidemark_lake::ViewDefs::existing(&self.wh)? {
            Some(d) => d.list().await?,
            None => Vec::new(),
        };
        let mut now: BTreeMap<(String, String), String> = defs
            .into_iter()
            .map(|d| ((d.schema, d.name), d.sql))
            .collect();
        // The deferred warehouse's views, where this one defines none of the name
        // and does not keep the name its own.
        if let Some(d) = &self.deferred {
            if let Some(theirs) = tidemark_lake::ViewDefs::existing(&d.wh)? {
                let keep = d.keep_own.read().expect("keep_own lock").clone();
                for v in theirs.list().await? {
                    let key = (v.schema, v.name);
                    if !keep.contains(&key) && !now.contains_key(&key) {
                        now.insert(key, v.sql);
                    }
                }
            }
        }
        let before = self.views.read().expect("views lock").clone();
        if !tables_changed && now == before {
            return Ok(0);
        }
        for (schema, name) in before.keys().filter(|k| !now.contains_key(*k)) {
            if let Some(sp) = catalog.schema(schema) {
                sp.deregister_table(name)?;
            }
        }
        // Views may read views: passes plan each after those it reads, until a pass
        // plans nothing more.
        let mut todo: Vec<(String, String)> = now
            .keys()
            .filter(|k| !self.tables.read().expect("tables lock").contains_key(*k))
            .cloned()
            .collect();
        loop {
            let before = todo.len();
            let mut failed = Vec::new();
            for key in todo {
                let sql = &now[&key];
                let planned = async {
                    let mut statements = parse(sql)?;
                    let statement = statements
                        .pop_front()
                        .ok_or_else(|| Error::Sql("an empty view".into()))?;
                    self.plan(&self.ctx, statement).await
                }
                .await;
                match planned {
                    Ok(plan) => {
                        let view = deltalake::datafusion::catalog::view::ViewTable::new(
                            plan,
                            Some(sql.clone()),
                        );
                        schema_provider(catalog, &key.0)?
                            .register_table(key.1.clone(), Arc::new(view))?;
                    }
                    Err(e) => failed.push((key, e)),
                }
            }
            if failed.is_empty() {
                break;
            }
            if failed.len() == before {
                for (k, e) in &failed {
                    warn!(schema = %k.0, view = %k.1, error = %e, "view left out: it does not plan");
                    // Not its old plan either: that holds providers of tables since
                    // changed.
                    if let Some(sp) = catalog.schema(&k.0) {
                        sp.deregister_table(&k.1)?;
                    }
                }
                break;
            }
            todo = failed.into_iter().map(|(k, _)| k).collect();
        }
        *self.views.write().expect("views lock") = now;
        Ok(1)
    }

    /// The closed history of a table at its newest version (`known`: as loaded
    /// before, updated incrementally); `None` when it does not exist.
    async fn load_closed(
        &self,
        wh: &Warehouse,
        loc: &tidemark_lake::TableLocation,
        known: Option<&deltalake::DeltaTable>,
    ) -> Result<Option<deltalake::DeltaTable>> {
        if let Some(k) = known {
            let mut c = k.clone();
            c.update_incremental(None).await?;
            return Ok(Some(c));
        }
        let url = wh.table_url(&loc.schema, &loc.table, TableKind::Closed);
        let (c, exists) = wh.delta_table(&url).await?;
        Ok(exists.then_some(c))
    }

    /// A known table.
    pub(crate) fn known(&self, schema: &str, table: &str) -> Option<Known> {
        self.tables
            .read()
            .expect("tables lock")
            .get(&(schema.to_string(), table.to_string()))
            .cloned()
    }

    /// Every known table's (schema, table).
    pub(crate) fn table_keys(&self) -> Vec<(String, String)> {
        self.tables
            .read()
            .expect("tables lock")
            .keys()
            .cloned()
            .collect()
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
    pub async fn plan(&self, ctx: &SessionContext, statement: DFStatement) -> Result<LogicalPlan> {
        self.plan_as_of(ctx, statement, None).await
    }

    /// [`Self::plan`], with every schema-qualified reference to a landed table that
    /// has no `AS OF` of its own read as of `as_of` (an instant such as
    /// `2026-10-24T00:00:00Z`): a session-level "as of", applied by the same rewrite
    /// as `FOR SYSTEM_TIME AS OF`, so it reads through the same history views (and
    /// the same grants, masks and row filters) as the statement would with the
    /// clause written out. `None`: [`Self::plan`].
    pub async fn plan_as_of(
        &self,
        ctx: &SessionContext,
        mut statement: DFStatement,
        as_of: Option<&str>,
    ) -> Result<LogicalPlan> {
        let as_of = as_of.map(travel::instant_expr).transpose()?;
        // Time travel inside EXPLAIN is rewritten too: otherwise DataFusion plans
        // the table reference without its AS OF (it ignores the version), and EXPLAIN
        // ANALYZE would run the current-table query instead of the one asked for.
        let inner = match &mut statement {
            DFStatement::Explain(e) => e.statement.as_mut(),
            other => other,
        };
        if let DFStatement::Statement(s) = inner {
            let needs = travel::rewrite(
                s,
                self,
                &|schema, table| visible(ctx, schema, table),
                as_of.as_ref(),
            )?;
            for v in needs.versions {
                self.register_version(&v).await?;
            }
            for l in needs.logs {
                self.register_log(&l)?;
            }
        }
        let state = ctx.state();
        // The tables the statement names, for telling "no such table" apart from other
        // planning errors: DataFusion says it only in the text of a `Plan` error.
        let references = state.resolve_table_references(&statement)?;
        let functions = called_functions(&statement);
        let plan = match state.statement_to_plan(statement).await {
            Ok(plan) => plan,
            Err(e) => {
                return Err(match missing_table(&state, references).await {
                    Some(name) => Error::UnknownTable(name),
                    None => match missing_function(&state, functions) {
                        Some(name) => Error::UnknownFunction(name),
                        None => e.into(),
                    },
                })
            }
        };
        if SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .verify_plan(&plan)
            .is_err()
        {
            return Err(Error::ReadOnly(statement_kind(&plan)));
        }
        Ok(plan)
    }

    /// What the catalog entry `schema.name` reads (`None` for names that are not
    /// warehouse data: pg_catalog, information_schema, unknown names).
    pub fn resolve(&self, schema: &str, name: &str) -> Option<Resolved> {
        let source = |s: &str, t: &str, form| Resolved::Source {
            schema: s.to_string(),
            table: t.to_string(),
            form,
        };
        let tables = self.tables.read().expect("tables lock");
        let keys = tables.keys();
        if tables.contains_key(&(schema.to_string(), name.to_string())) {
            return Some(source(schema, name, Form::Current));
        }
        if schema == tidemark_lake::OWN_SCHEMA {
            return Some(Resolved::Own);
        }
        // A table a job writes, and a view, are granted like a source table of
        // their schema.
        let key = (schema.to_string(), name.to_string());
        if self
            .derived
            .read()
            .expect("derived lock")
            .contains_key(&key)
            || self.views.read().expect("views lock").contains_key(&key)
        {
            return Some(source(schema, name, Form::Current));
        }
        let hidden = |form| {
            // Hidden names are `schema.table` (logs) and `schema.table@version`:
            // matched against the known tables rather than split, so dots in names
            // cannot mislead.
            keys.clone().find_map(|(s, t)| {
                let base = format!("{s}.{t}");
                let hit = match form {
                    Form::Log => name == base,
                    _ => name
                        .strip_prefix(&base)
                        .is_some_and(|rest| rest.starts_with('@')),
                };
                hit.then(|| source(s, t, form))
            })
        };
        match schema {
            VERSIONS_SCHEMA => hidden(Form::Version),
            LOGS_SCHEMA => hidden(Form::Log),
            _ => keys.clone().find_map(|(s, t)| {
                (t == name && history_schema(s) == schema).then(|| source(s, t, Form::History))
            }),
        }
    }

    /// What the statistics in the Delta logs of landed table `schema.table` (or of a
    /// table a job writes) say, as last refreshed; no row is read. `None` for names
    /// that are neither.
    pub fn table_stats(&self, schema: &str, table: &str) -> Option<TableStats> {
        let key = (schema.to_string(), table.to_string());
        if let Some(k) = self.tables.read().expect("tables lock").get(&key) {
            let cur = file_stats(&k.cur_loaded, None);
            let hist = file_stats(&k.hist_loaded, Some(tidemark_core::schema::VALID_FROM));
            return Some(TableStats {
                rows: cur.map(|(n, _)| n),
                rows_exact: cur.is_some() && k.read_mark.is_none(),
                changes: hist.map(|(n, _)| n),
                oldest_us: hist.and_then(|(_, m)| m),
            });
        }
        let derived = self.derived.read().expect("derived lock");
        let t = derived.get(&key)?;
        let rows = file_stats(t, None).map(|(n, _)| n);
        Some(TableStats {
            rows,
            rows_exact: rows.is_some(),
            ..Default::default()
        })
    }

    /// The history log of landed table `schema.table` as the last refresh loaded it:
    /// the version queries planned now read (models record it as what they consumed).
    pub fn loaded_history(&self, schema: &str, table: &str) -> Option<deltalake::DeltaTable> {
        self.tables
            .read()
            .expect("tables lock")
            .get(&(schema.to_string(), table.to_string()))
            .map(|k| k.hist_loaded.clone())
    }

    /// The mark above which the current view of landed table `schema.table` merges
    /// its history log's tail into the stored base (`_ingest_ts`, micros), as last
    /// refreshed; `None` when the view reads the base alone (nothing landed since
    /// the last compaction, or a table not merged on read) or the table is unknown.
    /// Every key with a log row above the mark is read from the tail alone: the
    /// view drops its base rows ([`tidemark_lake::mor`]).
    pub fn merge_mark(&self, schema: &str, table: &str) -> Option<i64> {
        self.tables
            .read()
            .expect("tables lock")
            .get(&(schema.to_string(), table.to_string()))
            .and_then(|k| k.read_mark)
    }

    /// The names (source and SQL) of every landed table, as last refreshed.
    pub fn landed_names(&self) -> Vec<tidemark_core::names::TableName> {
        self.tables
            .read()
            .expect("tables lock")
            .values()
            .map(|k| k.schema.name.clone())
            .collect()
    }

    /// Whether `schema.name` is a view (a SQL model materialised as one).
    pub fn is_view(&self, schema: &str, name: &str) -> bool {
        self.views
            .read()
            .expect("views lock")
            .contains_key(&(schema.to_string(), name.to_string()))
    }

    /// The landed definition of `schema.table`, as last refreshed.
    pub fn landed_schema(
        &self,
        schema: &str,
        table: &str,
    ) -> Option<tidemark_core::schema::TableSchema> {
        self.tables
            .read()
            .expect("tables lock")
            .get(&(schema.to_string(), table.to_string()))
            .map(|k| k.schema.clone())
    }

    /// Whether a catalog schema is one of the engine's hidden ones (time-travel
    /// registrations), which catalogs shown to users leave out.
    pub fn is_hidden_schema(schema: &str) -> bool {
        schema == VERSIONS_SCHEMA || schema == LOGS_SCHEMA
    }

    /// Run one statement and collect its rows.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.sql(sql).await?.collect().await?)
    }

    async fn register_version(&self, v: &travel::VersionRef) -> Result<()> {
        if self.hidden_exists(VERSIONS_SCHEMA, &v.hidden_name()) {
            // A Delta version never changes: loaded once.
            return Ok(());
        }
        let known = self
            .known(&v.schema, &v.table)
            .ok_or_else(|| Error::UnknownTable(format!("{}.{}", v.schema, v.table)))?;
        // A handle of its own: loading an old version must not move the one the
        // providers were built from.
        let mut table = deltalake::DeltaTable::new(known.cur_loaded.log_store());
        table.load_version(v.version).await.map_err(|e| {
            Error::Sql(format!(
                "{}.{} VERSION AS OF {}: {e} (versions older than the last VACUUM or log retention are gone; FOR SYSTEM_TIME AS OF reads history instead)",
                v.schema, v.table, v.version
            ))
        })?;
        let provider = tidemark_lake::provider(&table).await?;
        self.register_hidden(VERSIONS_SCHEMA, v.hidden_name(), provider)
    }

    /// Whether `schema.name` is registered in the engine's catalog.
    fn hidden_exists(&self, schema: &str, name: &str) -> bool {
        self.ctx
            .catalog(CATALOG)
            .and_then(|c| c.schema(schema))
            .is_some_and(|s| s.table_exist(name))
    }

    /// Register one of tidemark's own tables (schema `tidemark`), replacing an
    /// earlier registration: the endpoint's audit table.
    pub fn register_own(&self, name: &str, provider: Arc<dyn TableProvider>) -> Result<()> {
        let catalog = self.ctx.catalog(CATALOG).expect("default catalog");
        schema_provider(catalog.as_ref(), tidemark_lake::OWN_SCHEMA)?
            .register_table(name.to_string(), provider)?;
        Ok(())
    }

    fn register_log(&self, l: &travel::LogRef) -> Result<()> {
        let known = self
            .known(&l.schema, &l.table)
            .ok_or_else(|| Error::UnknownTable(format!("{}.{}", l.schema, l.table)))?;
        // Registered anew each time: versions grow with every refresh.
        self.register_hidden(LOGS_SCHEMA, l.hidden_name(), known.versions.clone())
    }

    /// Register a table in a hidden schema (replacing: the schemas are [`SwapSchema`]s).
    fn register_hidden(
        &self,
        schema: &str,
        name: String,
        provider: Arc<dyn TableProvider>,
    ) -> Result<()> {
        let catalog = self.ctx.catalog(CATALOG).expect("default catalog");
        schema_provider(catalog.as_ref(), schema)?.register_table(name, provider)?;
        Ok(())
    }
}

/// Whether `schema.table` is listed in `ctx`'s catalog: for the endpoint's sessions,
/// whether the role may read it (their catalog lists nothing else).
fn visible(ctx: &SessionContext, schema: &str, table: &str) -> bool {
    ctx.catalog(CATALOG)
        .and_then(|c| c.schema(schema))
        .is_some_and(|s| s.table_exist(table))
}

/// The first of `references` that names no table (as written), if any. Asked only
/// after planning failed: a statement naming a missing table fails at that name, so
/// this tells "no such table" apart from other planning errors without reading the
/// error's text. A table the catalog refuses (its lookup fails) exists.
async fn missing_table(
    state: &deltalake::datafusion::execution::session_state::SessionState,
    references: Vec<deltalake::datafusion::common::TableReference>,
) -> Option<String> {
    for r in references {
        let found = match state.schema_for_ref(r.clone()) {
            Ok(schema) => !matches!(schema.table(r.table()).await, Ok(None)),
            Err(_) => false,
        };
        if !found {
            return Some(r.to_string());
        }
    }
    None
}

/// The names of the functions a statement calls (as written), for telling "no such
/// function" apart from other planning errors, as [`missing_table`] does for tables.
fn called_functions(statement: &DFStatement) -> Vec<String> {
    use deltalake::datafusion::sql::sqlparser::ast::{visit_expressions, Expr};
    let DFStatement::Statement(s) = statement else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let _ = visit_expressions(s.as_ref(), |e| {
        if let Expr::Function(f) = e {
            // Qualified names (`pg_catalog.now`) are looked up by their last part.
            if let Some(last) = f.name.0.last().and_then(|p| p.as_ident()) {
                out.push(if last.quote_style.is_some() {
                    last.value.clone()
                } else {
                    last.value.to_ascii_lowercase()
                });
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    out
}

/// The first of `names` that is no function the session knows (scalar, aggregate or
/// window, aliases included). Asked only after planning failed.
fn missing_function(
    state: &deltalake::datafusion::execution::session_state::SessionState,
    names: Vec<String>,
) -> Option<String> {
    names.into_iter().find(|n| {
        !state.scalar_functions().contains_key(n)
            && !state.aggregate_functions().contains_key(n)
            && !state.window_functions().contains_key(n)
    })
}

/// What kind of statement a plan refused as a write is, in SQL's words.
fn statement_kind(plan: &LogicalPlan) -> String {
    match plan {
        LogicalPlan::Ddl(d) => d.name().to_string(),
        LogicalPlan::Dml(d) => d.op.to_string(),
        LogicalPlan::Copy(_) => "COPY".to_string(),
        LogicalPlan::Statement(s) => s.name().to_string(),
        other => other.display().to_string(),
    }
}

fn schema_provider(catalog: &dyn CatalogProvider, name: &str) -> Result<Arc<dyn SchemaProvider>> {
    if let Some(s) = catalog.schema(name) {
        return Ok(s);
    }
    let s: Arc<dyn SchemaProvider> = Arc::new(SwapSchema::default());
    catalog.register_schema(name, s.clone())?;
    Ok(s)
}

/// The engine's schemas: like DataFusion's `MemorySchemaProvider`, except that
/// registering a name again replaces the table, so a refresh swaps a table's
/// providers in one step (DataFusion's refuses, and deregister-then-register would
/// leave a moment where queries find no table).
#[derive(Debug, Default)]
struct SwapSchema {
    tables: RwLock<BTreeMap<String, Arc<dyn TableProvider>>>,
}

#[async_trait::async_trait]
impl SchemaProvider for SwapSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables
            .read()
            .expect("schema lock")
            .keys()
            .cloned()
            .collect()
    }

    async fn table(
        &self,
        name: &str,
    ) -> std::result::Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        Ok(self.tables.read().expect("schema lock").get(name).cloned())
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> std::result::Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        Ok(self
            .tables
            .write()
            .expect("schema lock")
            .insert(name, table))
    }

    fn deregister_table(
        &self,
        name: &str,
    ) -> std::result::Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        Ok(self.tables.write().expect("schema lock").remove(name))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.read().expect("schema lock").contains_key(name)
    }
}

/// Parse SQL as `tidemark sql` does: PostgreSQL syntax, and for statements with
/// `FOR SYSTEM_TIME AS OF` / `VERSION AS OF` (not PostgreSQL syntax) a dialect that
/// has them and PostgreSQL's identifier quoting. Everything else keeps PostgreSQL's
/// exact parsing.
pub fn parse(sql: &str) -> Result<VecDeque<DFStatement>> {
    match DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {}) {
        Ok(s) => Ok(s),
        Err(e) if sql.to_ascii_uppercase().contains(" AS OF") => {
            DFParser::parse_sql_with_dialect(sql, &SnowflakeDialect {}).map_err(|_| e.into())
        }
        Err(e) => Err(e.into()),
    }
}
