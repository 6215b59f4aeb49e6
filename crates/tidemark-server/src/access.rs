//! Roles, grants, column masks and row filters.
//!
//! Enforced where names become tables: each session plans on a catalog wrapper
//! ([`AccessList`]) over the engine's catalog. It lists only what the role may read,
//! so `\dt`, `information_schema` and `pg_catalog` (which are built from the catalog
//! they are given) show nothing else; and when a query names a table outside the
//! role's grants, looking the table up fails with "permission denied for table …"
//! (SQLSTATE 42501), whichever way the query reached it: directly, in a join,
//! subquery or CTE, or through time travel, whose rewrites read `db_history.t` and the
//! engine's hidden registrations, all of which [`Engine::resolve`] maps back to their
//! source table. The engine's own views (history) were planned when the warehouse was
//! opened, so nothing inside them is looked up again.
//!
//! Masks and filters: a table the role reads with masks or a row filter is served as
//! a view over the real one (`SELECT <masked columns> FROM t WHERE <filter>`), so the
//! role's predicates, joins and aggregates only ever see masked values and filtered
//! rows. The view is opaque to the optimizer (like PostgreSQL's `security_barrier`
//! views): a user's predicate is evaluated on the view's output, never pushed below
//! the mask or the filter.
//!
//! Roles can change while sessions are open ([`crate::Reloader`]): a session keeps
//! its role's name, and each request it makes reads that role's grants, masks and
//! filters from the policy in force then ([`CurrentRole`]), so one statement is
//! planned against one version of the role and the next one sees a reload.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::{
    CatalogProvider, CatalogProviderList, SchemaProvider, Session, TableProvider,
};
use deltalake::datafusion::common::tree_node::TreeNodeRecursion;
use deltalake::datafusion::common::{Column, DataFusionError};
use deltalake::datafusion::datasource::TableType;
use deltalake::datafusion::execution::session_state::SessionState;
use deltalake::datafusion::logical_expr::{cast, Expr, LogicalPlan, TableProviderFilterPushDown};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::prelude::SessionContext;
use tidemark_core::config::RoleConfig;
use tidemark_query::{Engine, Form, Resolved, CATALOG};
use tracing::warn;

use crate::{Error, Result};

type DfResult<T> = std::result::Result<T, DataFusionError>;

/// Per source table (schema, table), the distinct sets of (column, mask) roles read
/// it through.
pub type MaskSets = BTreeMap<(String, String), Vec<Vec<(String, String)>>>;

/// The role every deployment has unless the config defines it otherwise.
pub const ADMIN: &str = "admin";

/// What a role may read, compiled from `[server.roles.<name>]`. Hashable, so a cache
/// of results can key on the role as it was when they were read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Role {
    name: String,
    admin: bool,
    grants: Vec<Grant>,
    /// Per source table: (column, SQL expression) in config order.
    masks: BTreeMap<(String, String), Vec<(String, String)>>,
    /// Per source table: an SQL condition.
    filters: BTreeMap<(String, String), String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Grant {
    All,
    Schema(String),
    Table(String, String),
}

/// All roles.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    roles: BTreeMap<String, Arc<Role>>,
}

fn split_key(role: &str, what: &str, key: &str, parts: usize) -> Result<Vec<String>> {
    let split: Vec<String> = key.split('.').map(str::to_string).collect();
    if split.len() != parts || split.iter().any(String::is_empty) {
        let form = if parts == 2 {
            "db.table"
        } else {
            "db.table.column"
        };
        return Err(Error::Config {
            message: format!("[server.roles.{role}] {what} key {key:?} is not {form}"),
        });
    }
    Ok(split)
}

impl Role {
    fn from_config(name: &str, c: &RoleConfig) -> Result<Self> {
        let mut grants = Vec::new();
        for g in &c.grants {
            grants.push(match g.split_once('.') {
                _ if g == "*" => Grant::All,
                Some((s, "*")) if !s.is_empty() => Grant::Schema(s.to_string()),
                Some((s, t)) if !s.is_empty() && !t.is_empty() && !t.contains('.') => {
                    Grant::Table(s.to_string(), t.to_string())
                }
                _ => {
                    return Err(Error::Config {
                        message: format!(
                        "[server.roles.{name}] grant {g:?} is not \"db.table\", \"db.*\" or \"*\""
                    ),
                    })
                }
            });
        }
        let mut masks: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
        for (key, expr) in &c.masks {
            let p = split_key(name, "masks", key, 3)?;
            masks
                .entry((p[0].clone(), p[1].clone()))
                .or_default()
                .push((p[2].clone(), expr.clone()));
        }
        let mut filters = BTreeMap::new();
        for (key, cond) in &c.row_filters {
            let p = split_key(name, "row_filters", key, 2)?;
            filters.insert((p[0].clone(), p[1].clone()), cond.clone());
        }
        Ok(Self {
            name: name.to_string(),
            admin: c.admin,
            grants,
            masks,
            filters,
        })
    }

    /// The role's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it reads everything, tidemark's own tables included.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// The role's masks on the source table `schema.table`: (column, SQL), in config
    /// order; empty when none.
    pub fn masks_on(&self, schema: &str, table: &str) -> &[(String, String)] {
        self.masks
            .get(&(schema.to_string(), table.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether the role reads the source table `schema.table` through a row filter
    /// (so counts from the table's statistics are not its counts).
    pub fn filters_rows(&self, schema: &str, table: &str) -> bool {
        self.filters
            .contains_key(&(schema.to_string(), table.to_string()))
    }

    /// Whether role `self` may read feature view `view` over `source`, and if not,
    /// the message (as SQL's permission errors say it): no grant on the source nor
    /// on the view (`features.<view>`, `features.*`: features without the raw table,
    /// as a SQL view grants a query's result without its tables), or a row filter on
    /// the source (the online store does not apply row filters, so a filtered role
    /// is refused rather than shown rows its filter hides). Masks on the source
    /// apply either way.
    pub fn feature_access(
        &self,
        view: &str,
        source: (&str, &str),
    ) -> std::result::Result<(), String> {
        let (s, t) = source;
        if !(self.grants(s, t) || self.grants(FEATURES, view)) {
            return Err(format!(
                "permission denied for feature view {view}: role {} has no grant on it nor on its source {s}.{t}; an administrator can add \"{FEATURES}.{view}\" (or \"{s}.{t}\") to the grants of [server.roles.{}]",
                self.name, self.name
            ));
        }
        if self.filters.contains_key(&(s.to_string(), t.to_string())) {
            return Err(format!(
                "permission denied for feature view {view}: role {} reads its source {s}.{t} through a row filter, which online features do not apply; read the source with SQL instead, or use a role without the filter",
                self.name
            ));
        }
        Ok(())
    }

    fn grants(&self, schema: &str, table: &str) -> bool {
        self.admin
            || self.grants.iter().any(|g| match g {
                Grant::All => true,
                Grant::Schema(s) => s == schema,
                Grant::Table(s, t) => s == schema && t == table,
            })
    }

    /// Whether the catalog entry `schema.name` is listed for this role.
    fn sees(&self, engine: &Engine, schema: &str, name: &str) -> bool {
        match engine.resolve(schema, name) {
            Some(Resolved::Source { schema, table, .. }) => self.grants(&schema, &table),
            Some(Resolved::Own) | None => self.admin,
        }
    }

    /// Whether the role reads the table `schema.table` of `catalog` (the engine's):
    /// it exists and is listed for the role. Hidden registrations are never named
    /// by users, so they are not read by name either.
    pub(crate) fn reads(
        &self,
        engine: &Engine,
        catalog: &dyn CatalogProvider,
        schema: &str,
        table: &str,
    ) -> bool {
        !Engine::is_hidden_schema(schema)
            && schema != PG_CATALOG
            && catalog.schema(schema).is_some_and(|s| s.table_exist(table))
            && self.sees(engine, schema, table)
    }

    /// Whether the schema `schema` of `catalog` is listed for the role: it has a
    /// table the role sees.
    pub(crate) fn uses_schema(
        &self,
        engine: &Engine,
        catalog: &dyn CatalogProvider,
        schema: &str,
    ) -> bool {
        !Engine::is_hidden_schema(schema)
            && schema != PG_CATALOG
            && catalog.schema(schema).is_some_and(|sp| {
                sp.table_names()
                    .iter()
                    .any(|t| self.sees(engine, schema, t))
            })
    }

    fn denied(&self, object: &str, why: &str) -> DataFusionError {
        // Raised as tidemark's own error kind, so it reaches the client as 42501
        // whatever DataFusion wraps it in.
        tidemark_query::Error::PermissionDenied(format!(
            "permission denied for table {object}: {why}; an administrator can add it to the grants of [server.roles.{}]",
            self.name
        ))
        .into()
    }

    /// Refuse `EXPLAIN` (plain or `ANALYZE`) of a plan that reads a table through
    /// this role's mask or row filter: the guarded table's plan would print the
    /// filter predicate and the mask expressions, and `EXPLAIN ANALYZE` the scan's
    /// row and row-group counts before the filter, that is how many rows it hides.
    ///
    /// Refused rather than rendered opaquely: the scan's metrics (rows, files and row
    /// groups read and pruned, bytes) all describe the unfiltered table, so an opaque
    /// node would have to drop every one of them and show a plan with the interesting
    /// part missing without saying so. A refusal is plain about it; the query itself
    /// still runs, and an administrator can explain it for the role. Other plans,
    /// and roles without masks or filters, explain as usual.
    pub(crate) fn check_explain(
        &self,
        engine: &Engine,
        ctx: &SessionContext,
        plan: &LogicalPlan,
    ) -> DfResult<()> {
        if !matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_))
            || self.masks.is_empty() && self.filters.is_empty()
        {
            return Ok(());
        }
        let state = ctx.state();
        let defaults = &state.config().options().catalog;
        let mut guarded = None;
        plan.apply_with_subqueries(|p| {
            if let LogicalPlan::TableScan(scan) = p {
                let name = &scan.table_name;
                let schema = name.schema().unwrap_or(&defaults.default_schema);
                if let Some(Resolved::Source { schema, table, .. }) =
                    engine.resolve(schema, name.table())
                {
                    let key = (schema, table);
                    if self.masks.contains_key(&key) || self.filters.contains_key(&key) {
                        guarded = Some(key);
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        match guarded {
            Some((s, t)) => Err(tidemark_query::Error::PermissionDenied(format!(
                "permission denied to EXPLAIN a query over table {s}.{t}: role {} reads it through a mask or row filter, which EXPLAIN would show; run the query itself, or ask an administrator to explain it",
                self.name
            ))
            .into()),
            None => Ok(()),
        }
    }

    /// The table `schema.name` as this role reads it: refused outside its grants,
    /// masked and filtered where the role says so.
    async fn admit(
        &self,
        engine: &Engine,
        policy_ctx: &SessionContext,
        schema: &str,
        name: &str,
        provider: Arc<dyn TableProvider>,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let no_grant = format!("role {} has no grant on it", self.name);
        let (source, form) = match engine.resolve(schema, name) {
            Some(Resolved::Source {
                schema: s,
                table: t,
                form,
            }) => ((s, t), form),
            Some(Resolved::Own) | None if self.admin => return Ok(provider),
            Some(Resolved::Own) => {
                return Err(self.denied(
                    &format!("{schema}.{name}"),
                    &format!(
                        "tidemark's own tables are for admin roles, and role {} is not one",
                        self.name
                    ),
                ))
            }
            None => return Err(self.denied(&format!("{schema}.{name}"), &no_grant)),
        };
        // The name people wrote: history under its own schema; time-travel
        // registrations under the table they travel over.
        let object = match form {
            Form::History => format!("{schema}.{name}"),
            _ => format!("{}.{}", source.0, source.1),
        };
        if !self.grants(&source.0, &source.1) {
            return Err(self.denied(&object, &no_grant));
        }
        let masks = self.masks.get(&source);
        let filter = self.filters.get(&source);
        if masks.is_none() && filter.is_none() {
            return Ok(provider);
        }
        if form == Form::Log && filter.is_some() {
            // The raw log has tombstones and the rows a change moved out of the
            // filter; filtering it would show a change without its delete or invent
            // inserts. History (AS OF) is filtered per version instead.
            return Err(self.denied(
                &format!("changes() over {object}"),
                &format!(
                    "role {} reads it through a row filter; use FOR SYSTEM_TIME AS OF or {}_history.{} instead",
                    self.name, source.0, source.1
                ),
            ));
        }
        guarded(policy_ctx, provider, masks.map(Vec::as_slice), filter).map_err(|e| {
            DataFusionError::Plan(format!(
                "{object}: the mask or row filter of role {} does not apply: {e}",
                self.name
            ))
        })
    }
}

/// The view a masked or filtered table is served as; keeps the table's type so it is
/// still listed as a table.
fn guarded(
    policy_ctx: &SessionContext,
    provider: Arc<dyn TableProvider>,
    masks: Option<&[(String, String)]>,
    filter: Option<&String>,
) -> DfResult<Arc<dyn TableProvider>> {
    let table_type = provider.table_type();
    let mut df = policy_ctx.read_table(provider)?;
    if let Some(f) = filter {
        let cond = df.parse_sql_expr(f)?;
        df = df.filter(cond)?;
    }
    let masks = masks.unwrap_or_default();
    let mut columns: Vec<Expr> = Vec::new();
    for field in df.schema().fields() {
        let name = field.name();
        let column = Expr::Column(Column::new_unqualified(name));
        columns.push(match masks.iter().find(|(c, _)| c == name) {
            Some((_, sql)) => cast(df.parse_sql_expr(sql)?, field.data_type().clone()).alias(name),
            None => column,
        });
    }
    for (c, _) in masks {
        if df.schema().fields().iter().all(|f| f.name() != c) {
            return Err(DataFusionError::Plan(format!(
                "masked column {c} does not exist"
            )));
        }
    }
    let view = df.select(columns)?.into_view();
    Ok(Arc::new(Guarded { view, table_type }))
}

impl Policy {
    /// Compile `[server.roles]`, adding the built-in `admin` role unless defined.
    pub fn from_config(roles: &BTreeMap<String, RoleConfig>) -> Result<Self> {
        let mut out = BTreeMap::new();
        for (name, c) in roles {
            out.insert(name.clone(), Arc::new(Role::from_config(name, c)?));
        }
        out.entry(ADMIN.to_string()).or_insert_with(|| {
            Arc::new(Role {
                name: ADMIN.into(),
                admin: true,
                grants: vec![],
                masks: BTreeMap::new(),
                filters: BTreeMap::new(),
            })
        });
        Ok(Self { roles: out })
    }

    /// A role by name.
    pub fn role(&self, name: &str) -> Option<Arc<Role>> {
        self.roles.get(name).cloned()
    }

    /// Per source table, the distinct sets of masks roles read it through (what an
    /// online feature store precomputes masked features for).
    pub fn mask_sets(&self) -> MaskSets {
        let mut out = MaskSets::new();
        for role in self.roles.values() {
            for (source, masks) in &role.masks {
                let sets = out.entry(source.clone()).or_default();
                if !sets.contains(masks) {
                    sets.push(masks.clone());
                }
            }
        }
        out
    }

    /// Role names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.roles.keys().map(String::as_str)
    }

    /// Every role by name.
    pub(crate) fn roles(&self) -> impl Iterator<Item = (&str, &Role)> {
        self.roles.iter().map(|(n, r)| (n.as_str(), r.as_ref()))
    }

    /// Check every mask and filter against the tables that exist now, so a typo is
    /// a startup error naming the role and the key rather than a failing query.
    /// Rules for tables the warehouse does not have (yet) are only warned about.
    pub async fn check(&self, engine: &Engine, base: &SessionContext) -> Result<()> {
        let catalog = base
            .catalog(CATALOG)
            .ok_or_else(|| Error::Session("catalog missing".into()))?;
        for role in self.roles.values() {
            let tables: Vec<&(String, String)> =
                role.masks.keys().chain(role.filters.keys()).collect();
            for (s, t) in tables {
                let provider = match catalog.schema(s) {
                    Some(sp) => sp
                        .table(t)
                        .await
                        .map_err(|e| Error::Session(e.to_string()))?,
                    None => None,
                };
                let Some(provider) = provider else {
                    warn!(role = %role.name, table = %format!("{s}.{t}"), "a mask or row filter names a table the warehouse does not have (yet)");
                    continue;
                };
                role.admit(engine, base, s, t, provider)
                    .await
                    .map_err(|e| Error::Config {
                        message: format!("[server.roles.{}] {e}", role.name),
                    })?;
            }
        }
        Ok(())
    }
}

/// A masked or filtered table: the view's rows under the table's type.
#[derive(Debug)]
struct Guarded {
    view: Arc<dyn TableProvider>,
    table_type: TableType,
}

/// Opaque on purpose: no logical plan to inline and no filter pushed in, so the
/// optimizer cannot move a user's predicate (or join key) below the mask or the
/// row filter. Found the hard way: with the view inlined, `WHERE customer_id =
/// (SELECT 1)` was decorrelated into a join on the unmasked column. The view's own
/// filter is still pushed into the Delta scan inside.
#[async_trait]
impl TableProvider for Guarded {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }

    fn table_type(&self) -> TableType {
        self.table_type
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // The view is planned and optimised here, apart from the query around it,
        // whose optimiser then runs over the result again. DataFusion 55 refuses to
        // reorder a hash join that already built a dynamic filter ("Cannot swap
        // HashJoinExec inputs after dynamic filters have been constructed"), which
        // views with joins (a merge-on-read table, the history view) would hit; so the
        // view's own joins build none.
        let Some(session) = state.as_any().downcast_ref::<SessionState>() else {
            return self.view.scan(state, projection, &[], limit).await;
        };
        let mut session = session.clone();
        session
            .config_mut()
            .options_mut()
            .optimizer
            .enable_join_dynamic_filter_pushdown = false;
        self.view.scan(&session, projection, &[], limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }
}

/// The role a session reads through, as the users and roles in force say. Set
/// when each request of the session starts (see `query.rs`), so a reload applies
/// from the session's next statement, and one statement is planned against one
/// version of its role.
#[derive(Debug)]
pub(crate) struct CurrentRole(std::sync::RwLock<Arc<Role>>);

impl CurrentRole {
    pub(crate) fn new(role: Arc<Role>) -> Self {
        Self(std::sync::RwLock::new(role))
    }

    /// The role now.
    pub(crate) fn get(&self) -> Arc<Role> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The role from now on.
    pub(crate) fn set(&self, role: Arc<Role>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = role;
    }
}

/// What the wrappers share: the role and how to resolve names.
struct Guard {
    engine: Arc<Engine>,
    role: Arc<CurrentRole>,
    /// Parses mask and filter expressions (a plain context: only built-in functions).
    policy_ctx: SessionContext,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("role", &self.role.get().name)
            .finish()
    }
}

/// A session's catalog list: the engine's catalog as the role may see it.
#[derive(Debug)]
pub(crate) struct AccessList {
    catalog: Arc<AccessCatalog>,
}

impl AccessList {
    /// The catalog list for a session of `role`, with `pg_catalog` (built over this
    /// same filtered view, see [`crate::catalog`]) added by `pg_catalog`.
    pub(crate) fn new(
        engine: Arc<Engine>,
        inner: Arc<dyn CatalogProvider>,
        role: Arc<CurrentRole>,
        policy_ctx: SessionContext,
        pg_catalog: Option<Arc<dyn SchemaProvider>>,
        features: Option<Arc<dyn FeatureSource>>,
    ) -> Self {
        Self {
            catalog: Arc::new(AccessCatalog {
                inner,
                guard: Arc::new(Guard {
                    engine,
                    role,
                    policy_ctx,
                }),
                pg_catalog,
                features,
            }),
        }
    }
}

impl CatalogProviderList for AccessList {
    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        // Sessions are read-only; nothing registers catalogs on them.
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        vec![CATALOG.to_string()]
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        (name == CATALOG).then(|| self.catalog.clone() as Arc<dyn CatalogProvider>)
    }
}

#[derive(Debug)]
struct AccessCatalog {
    inner: Arc<dyn CatalogProvider>,
    guard: Arc<Guard>,
    pg_catalog: Option<Arc<dyn SchemaProvider>>,
    /// The online feature store, served as schema [`FEATURES`].
    features: Option<Arc<dyn FeatureSource>>,
}

const PG_CATALOG: &str = "pg_catalog";

/// The schema online feature views are served in (`SELECT * FROM features.v WHERE
/// key = $1`). A landed database of that name keeps it: the warehouse's tables win.
pub const FEATURES: &str = "features";

/// What [`FeatureSource::training_set`] returns: the table, or why not.
pub type TrainingSetFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = std::result::Result<Arc<dyn TableProvider>, String>>
            + Send,
    >,
>;

/// The online feature store as the endpoint serves it (implemented where the store
/// lives, tidemark-features, through the binary: this crate does not depend on it).
pub trait FeatureSource: Send + Sync + std::fmt::Debug {
    /// The views, by name.
    fn views(&self) -> Vec<String>;
    /// A view's source table (schema, table), which grants and masks are read for.
    fn source(&self, view: &str) -> Option<(String, String)>;
    /// The view as a table, its features computed over `masks` (the role's masks on
    /// the source; empty: none). `Err` says why it cannot be served (not built yet,
    /// masks it was not built for).
    fn table(
        &self,
        view: &str,
        masks: &[(String, String)],
    ) -> std::result::Result<Arc<dyn TableProvider>, String>;
    /// A point-in-time training set (`training_set(views, entity query, clock)` in
    /// SQL): `views` joined to the entity rows `entities` (planned by the caller in
    /// the session's catalog) under `clock` (`event` or `known`), as a table whose
    /// scan streams it. `Err` says what is wrong (a view, the rows, the clock).
    fn training_set(
        &self,
        views: Vec<String>,
        entities: LogicalPlan,
        clock: String,
    ) -> TrainingSetFuture;
}

impl AccessCatalog {
    /// The features schema, unless the warehouse has a schema of that name.
    fn features(&self) -> Option<&Arc<dyn FeatureSource>> {
        self.features
            .as_ref()
            .filter(|_| self.inner.schema(FEATURES).is_none())
    }
}

/// Schema `features`: the views whose source the role is granted.
#[derive(Debug)]
struct FeatureSchema {
    features: Arc<dyn FeatureSource>,
    guard: Arc<Guard>,
}

impl FeatureSchema {
    fn readable(&self, view: &str) -> Option<std::result::Result<(), String>> {
        let (s, t) = self.features.source(view)?;
        Some(
            self.guard
                .role
                .get()
                .feature_access(view, (s.as_str(), t.as_str())),
        )
    }
}

#[async_trait]
impl SchemaProvider for FeatureSchema {
    fn table_names(&self) -> Vec<String> {
        self.features
            .views()
            .into_iter()
            .filter(|v| matches!(self.readable(v), Some(Ok(()))))
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some((s, t)) = self.features.source(name) else {
            return Ok(None);
        };
        let role = self.guard.role.get();
        role.feature_access(name, (s.as_str(), t.as_str()))
            .map_err(|m| DataFusionError::from(tidemark_query::Error::PermissionDenied(m)))?;
        let masks = role.masks_on(&s, &t);
        self.features.table(name, masks).map(Some).map_err(|m| {
            if masks.is_empty() {
                DataFusionError::Plan(m)
            } else {
                tidemark_query::Error::PermissionDenied(m).into()
            }
        })
    }

    fn table_exist(&self, name: &str) -> bool {
        matches!(self.readable(name), Some(Ok(())))
    }
}

impl CatalogProvider for AccessCatalog {
    fn schema_names(&self) -> Vec<String> {
        let role = self.guard.role.get();
        let mut names: Vec<String> = self
            .inner
            .schema_names()
            .into_iter()
            .filter(|s| role.uses_schema(&self.guard.engine, self.inner.as_ref(), s))
            .collect();
        if self.pg_catalog.is_some() {
            names.push(PG_CATALOG.to_string());
        }
        if let Some(f) = self.features() {
            let schema = FeatureSchema {
                features: f.clone(),
                guard: self.guard.clone(),
            };
            if !schema.table_names().is_empty() {
                names.push(FEATURES.to_string());
            }
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == PG_CATALOG {
            return self.pg_catalog.clone();
        }
        if name == FEATURES {
            if let Some(f) = self.features() {
                return Some(Arc::new(FeatureSchema {
                    features: f.clone(),
                    guard: self.guard.clone(),
                }));
            }
        }
        let inner = self.inner.schema(name)?;
        Some(Arc::new(AccessSchema {
            schema: name.to_string(),
            inner,
            guard: self.guard.clone(),
        }))
    }
}

#[derive(Debug)]
struct AccessSchema {
    schema: String,
    inner: Arc<dyn SchemaProvider>,
    guard: Arc<Guard>,
}

#[async_trait]
impl SchemaProvider for AccessSchema {
    fn table_names(&self) -> Vec<String> {
        if Engine::is_hidden_schema(&self.schema) {
            return vec![];
        }
        let role = self.guard.role.get();
        self.inner
            .table_names()
            .into_iter()
            .filter(|t| role.sees(&self.guard.engine, &self.schema, t))
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(provider) = self.inner.table(name).await? else {
            return Ok(None);
        };
        let g = &self.guard;
        g.role
            .get()
            .admit(&g.engine, &g.policy_ctx, &self.schema, name, provider)
            .await
            .map(Some)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
            && self
                .guard
                .role
                .get()
                .sees(&self.guard.engine, &self.schema, name)
    }
}
