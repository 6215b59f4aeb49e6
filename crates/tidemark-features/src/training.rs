//! Point-in-time correct training sets: for each entity row (keys and an instant
//! `t`), each view's features as they were at `t`.
//!
//! DataFusion 55 has no ASOF join, so each view is one LEFT join of the entity rows
//! to the source on the entity key, with the instant in the join's filter, built as a
//! logical plan (DataFusion's own `DataFrame`/`LogicalPlanBuilder`, never SQL text):
//!
//! * **event clock** (the value the source held at `t`): the history view
//!   `<schema>_history.<table>`, one version per key valid at `t`:
//!   `_valid_from <= t AND (_valid_to IS NULL OR _valid_to > t)`. Same-instant
//!   changes need nothing more: all but the last have the empty validity `[t, t)`.
//! * **known clock** (what tidemark knew at `t`): validity computed by the history
//!   view uses versions that landed later, so it cannot be used; the raw log is read
//!   instead (tombstones included, which the view hides) and, per entity row and key,
//!   the last change by (`_valid_from`, `_seq`) among those with `_valid_from <= t`
//!   and `_ingest_ts <= t`; a delete there means no value. When the entity key is
//!   the source key that is a window over the key's joined changes; when it is not
//!   (entity `customer_id` over invoices), a change carrying the entity key may have
//!   been superseded by a later one that moved the row to another customer, so the
//!   candidates are the changes with the entity key that no later change of the same
//!   source key known at `t` supersedes (an anti join on the source key).
//!
//! Both read the lake through the engine's providers, so the Delta scans see literal
//! bounds from the entity rows' earliest and latest instants (`_valid_from <= max t`,
//! `_valid_to > min t`, and `_ingest_ts <= max t` for the known clock), which file and
//! row-group statistics prune by: a training set over last month reads last month's
//! versions, not the whole history.
//!
//! When the entity key does not determine the source row (a view of the latest
//! invoice per customer over `invoicing.invoices`), the rows of the source state at
//! `t` with that entity key compete: the one with the latest event time at or before
//! `t` wins (then the latest `_valid_from`, then the smallest source key), which is
//! Feast's point-in-time rule applied to the state at `t`. That needs a window per
//! entity row (`ROW_NUMBER() … = 1`), so entity rows get a row number first; when
//! the key does determine the row (the usual case) there is no window and no sort.
//!
//! Memory: the hash join holds the entity rows (the build side); windows sort with
//! spilling under the session's memory pool; the result is a stream.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::{Array, Int64Array, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{DataType, TimeUnit};
use deltalake::datafusion::common::{Column, ScalarValue, TableReference};
use deltalake::datafusion::execution::memory_pool::FairSpillPool;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::execution::session_state::SessionStateBuilder;
use deltalake::datafusion::functions_aggregate::expr_fn::{count, max, min};
use deltalake::datafusion::functions_window::expr_fn::row_number;
use deltalake::datafusion::logical_expr::{
    cast, lit, when, Expr, ExprFunctionExt, JoinType, TryCast,
};
use deltalake::datafusion::prelude::{
    CsvReadOptions, DataFrame, ParquetReadOptions, SessionContext,
};
use tidemark_core::names::history_schema;
use tidemark_core::schema::{INGEST_TS, OP, SEQ, VALID_FROM, VALID_TO};
use tidemark_query::{Engine, CATALOG};

use crate::view::{FeatureView, FeatureViews, Read};
use crate::{Error, Result};

/// The type of column `name` of view `v`'s `source`, or the error naming the view's
/// setting (`field`) that names it and the columns the source has. The training set
/// and the online store check a view against its source with it.
pub(crate) fn source_column_type(
    v: &FeatureView,
    source: &DataFrame,
    field: &str,
    name: &str,
) -> Result<DataType> {
    source
        .schema()
        .field_with_unqualified_name(name)
        .map(|f| f.data_type().clone())
        .map_err(|_| {
            let have: Vec<String> = source
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            Error::definition(
                &v.name,
                field,
                format!(
                    "no column {name:?} in {} (columns: {})",
                    v.source(),
                    have.join(", ")
                ),
            )
        })
}

/// Which instant a feature value must have been true at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// As of event time: the value the source held at `t` (by `_valid_from` and
    /// `_valid_to`), including corrections that landed after `t`.
    Event,
    /// As known at `t`: the value tidemark would have served at `t`, ignoring every
    /// change (update, delete or late correction) whose `_ingest_ts` is after `t`.
    Known,
}

impl Clock {
    /// The word the command line uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Clock::Event => "event",
            Clock::Known => "known",
        }
    }
}

/// Where the entity rows come from.
#[derive(Debug, Clone)]
pub enum Entities {
    /// A Parquet (`.parquet`) or CSV (`.csv`, with a header) file.
    File(PathBuf),
    /// A SELECT over the warehouse (time travel allowed). It runs twice: once for the
    /// instants' range and count, once for the rows.
    Sql(String),
    /// A query already planned by the caller (the endpoint's `training_set(…)`
    /// plans it in the session's own catalog, so the role's grants apply to it). It
    /// runs twice too.
    Plan(deltalake::datafusion::logical_expr::LogicalPlan),
}

/// A training set to build.
#[derive(Debug, Clone)]
pub struct Request {
    /// The views whose features to join, in output order.
    pub views: Vec<String>,
    /// The entity rows.
    pub entities: Entities,
    /// The entity rows' instant column: `event_timestamp` when it exists, else their
    /// only timestamp (or date) column.
    pub timestamp_column: Option<String>,
    /// Which clock the features are correct for.
    pub clock: Clock,
    /// Name the features `<view>__<feature>` rather than `<feature>`.
    pub full_feature_names: bool,
    /// Memory the plan's sorts and joins may hold before sorts spill to disk (and
    /// anything that cannot spill fails, naming it); `None`: no limit.
    pub memory_limit: Option<usize>,
}

/// A planned training set: every entity row once, with its columns as given, then
/// each view's features. Not yet run: [`crate::write`] streams it to a file.
#[derive(Debug)]
pub struct TrainingSet {
    /// The plan.
    pub frame: DataFrame,
    /// How many entity rows (and so output rows) there are.
    pub rows: u64,
    /// The output's feature columns, in order.
    pub features: Vec<String>,
}

/// Column names this module gives intermediate columns; entity rows may not use
/// them.
const PREFIX: &str = "__tm_";
const T: &str = "__tm_t";
const ROW: &str = "__tm_row";
const ET: &str = "__tm_et";
const VF: &str = "__tm_vf";
const VT: &str = "__tm_vt";
const ING: &str = "__tm_ing";
const SEQN: &str = "__tm_seq";
const OPC: &str = "__tm_op";
const RN: &str = "__tm_rn";
const VALID: &str = "__tm_valid";

fn c(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn instant(us: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(us),
        Some("UTC".into()),
    ))
}

fn interval(d: std::time::Duration) -> Expr {
    // Nanoseconds in an i64 reach 292 years; a longer TTL is as good as none.
    let nanos = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    lit(ScalarValue::new_interval_mdn(0, 0, nanos))
}

fn ttl_us(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A session over the engine's catalog with its own memory pool.
fn session(engine: &Engine, memory: Option<usize>) -> Result<SessionContext> {
    let base = engine.session_context();
    let mut state = SessionStateBuilder::new_from_existing(base.state());
    if let Some(bytes) = memory {
        let runtime = RuntimeEnvBuilder::from_runtime_env(&base.runtime_env())
            .with_memory_pool(Arc::new(FairSpillPool::new(bytes)))
            .build_arc()?;
        state = state.with_runtime_env(runtime);
    }
    Ok(SessionContext::new_with_state(state.build()))
}

async fn read_entities(ctx: &SessionContext, engine: &Engine, e: &Entities) -> Result<DataFrame> {
    match e {
        Entities::File(path) => {
            if !path.is_file() {
                return Err(Error::Io {
                    path: path.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                });
            }
            let name = path.to_string_lossy().into_owned();
            match extension(path).as_deref() {
                Some("parquet") => Ok(ctx
                    .read_parquet(name, ParquetReadOptions::default())
                    .await?),
                Some("csv") => Ok(ctx.read_csv(name, CsvReadOptions::new()).await?),
                _ => Err(Error::Entities(format!(
                    "{}: name a .parquet or .csv file (CSV with a header line)",
                    path.display()
                ))),
            }
        }
        Entities::Plan(plan) => Ok(DataFrame::new(ctx.state(), plan.clone())),
        Entities::Sql(sql) => {
            let mut statements = tidemark_query::parse(sql)?;
            if statements.len() != 1 {
                return Err(Error::Entities(format!(
                    "the entity query must be one SELECT, got {} statements",
                    statements.len()
                )));
            }
            let statement = statements.pop_front().expect("one statement");
            // The engine's planner: time travel and the read-only check apply.
            let plan = engine.plan(ctx, statement).await?;
            Ok(DataFrame::new(ctx.state(), plan))
        }
    }
}

pub(crate) fn extension(path: &Path) -> Option<String> {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
}

/// The entity rows' instant column.
fn timestamp_column(df: &DataFrame, asked: Option<&str>) -> Result<String> {
    let fields = df.schema().fields();
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    let temporal = |t: &DataType| {
        matches!(
            t,
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
        )
    };
    if let Some(a) = asked {
        let Some(f) = fields.iter().find(|f| f.name() == a) else {
            return Err(Error::Entities(format!(
                "no column {a:?}; columns: {}",
                names.join(", ")
            )));
        };
        let ok = temporal(f.data_type())
            || matches!(
                f.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            );
        if !ok {
            return Err(Error::Entities(format!(
                "column {a:?} is {}, not a timestamp",
                f.data_type()
            )));
        }
        return Ok(a.to_string());
    }
    if names.contains(&"event_timestamp") {
        return Ok("event_timestamp".into());
    }
    let ts: Vec<&str> = fields
        .iter()
        .filter(|f| temporal(f.data_type()))
        .map(|f| f.name().as_str())
        .collect();
    match ts.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(Error::Entities(format!(
            "no timestamp column (columns: {}); add one named event_timestamp or name it with --timestamp-column",
            names.join(", ")
        ))),
        many => Err(Error::Entities(format!(
            "several timestamp columns ({}); name the one each row is as of with --timestamp-column",
            many.join(", ")
        ))),
    }
}

/// Plan a training set.
pub async fn training_set(
    engine: &Engine,
    views: &FeatureViews,
    request: &Request,
) -> Result<TrainingSet> {
    if request.views.is_empty() {
        return Err(Error::Request("name at least one feature view".into()));
    }
    let mut chosen: Vec<&FeatureView> = Vec::new();
    for name in &request.views {
        let v = views.get(name)?;
        if chosen.iter().any(|x| x.name == v.name) {
            return Err(Error::Request(format!("view {name} is named twice")));
        }
        if request.clock == Clock::Known && v.read == Read::Table {
            return Err(Error::definition(
                &v.name,
                "read",
                "the known clock needs every version's landing instant, which a view with read = \"table\" does not read (only the rows as they are now); use --clock event, or read = \"history\"",
            ));
        }
        chosen.push(v);
    }
    let ctx = session(engine, request.memory_limit)?;
    let entities = read_entities(&ctx, engine, &request.entities).await?;
    let columns: Vec<String> = entities
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    if let Some(bad) = columns.iter().find(|c| c.starts_with(PREFIX)) {
        return Err(Error::Entities(format!(
            "column {bad:?}: names starting with {PREFIX} are tidemark's own"
        )));
    }
    for v in &chosen {
        for e in &v.entity {
            if !columns.contains(e) {
                return Err(Error::Entities(format!(
                    "view {} needs entity column {e:?}; the entity rows have {}",
                    v.name,
                    columns.join(", ")
                )));
            }
        }
    }
    let ts = timestamp_column(&entities, request.timestamp_column.as_deref())?;
    // Output names: plain unless asked otherwise; a clash is an error, not a
    // silently renamed or dropped column.
    let mut features: Vec<String> = Vec::new();
    for v in &chosen {
        for f in &v.features {
            let name = if request.full_feature_names {
                format!("{}__{}", v.name, f.name)
            } else {
                f.name.clone()
            };
            if columns.contains(&name) || features.contains(&name) {
                return Err(Error::Request(format!(
                    "two output columns would be named {name:?} (an entity column or another view's feature); pass --full-feature-names to name features <view>__<feature>"
                )));
            }
            features.push(name);
        }
    }

    let windowed = chosen
        .iter()
        .map(|v| needs_window(engine, v, request.clock))
        .collect::<Vec<_>>();
    let mut select: Vec<Expr> = columns.iter().map(|n| c(n)).collect();
    select.push(cast(c(&ts), utc()).alias(T));
    if windowed.iter().any(|w| *w) {
        // A row number to pick one candidate per entity row; entity rows may repeat
        // (same key, same instant), so the key and instant cannot stand in for it.
        select.push(row_number().alias(ROW));
    }
    let left = entities.select(select)?;

    // The instants' range, for the literal bounds the scans prune by; and the count,
    // for the progress bar. One aggregate pass over the entity rows.
    let stats = left
        .clone()
        .aggregate(
            vec![],
            vec![
                min(c(T)).alias("lo"),
                max(c(T)).alias("hi"),
                count(lit(1i64)).alias("n"),
            ],
        )?
        .collect()
        .await?;
    let (mut lo, mut hi, mut rows) = (None, None, 0u64);
    if let Some(b) = stats.first().filter(|b| b.num_rows() == 1) {
        let ts_at = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .filter(|a| !a.is_null(0))
                .map(|a| a.value(0))
        };
        lo = ts_at(0);
        hi = ts_at(1);
        rows = b
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .map_or(0, |a| a.value(0).max(0) as u64);
    }
    let bounds = lo.zip(hi);

    let mut out = left;
    let mut done: Vec<String> = Vec::new();
    for (i, v) in chosen.iter().enumerate() {
        let names = &features[done.len()..done.len() + v.features.len()];
        out = join_view(
            &ctx,
            engine,
            out,
            v,
            request.clock,
            bounds,
            windowed[i],
            &columns,
            &done,
            names,
        )
        .await?;
        done.extend(names.iter().cloned());
    }
    // The entity rows as given, then the features.
    let last: Vec<Expr> = columns.iter().chain(done.iter()).map(|n| c(n)).collect();
    Ok(TrainingSet {
        frame: out.select(last)?,
        rows,
        features,
    })
}

/// Whether the view's source rows at an instant can be more than one per entity row
/// (the entity key does not cover the source key), or the clock picks the last
/// change per key: then a window picks one.
fn needs_window(engine: &Engine, v: &FeatureView, clock: Clock) -> bool {
    if clock == Clock::Known {
        return true;
    }
    match engine.landed_schema(&v.schema, &v.table) {
        Some(ts) => !ts
            .key_names()
            .iter()
            .all(|k| v.join_on.iter().any(|j| j == k)),
        None => true,
    }
}

/// One view joined to the entity rows `left` (columns: `entity` as given, `T`, maybe
/// `ROW`, and the features of the views before, `before`). Returns those columns plus
/// this view's features named `names`.
#[allow(clippy::too_many_arguments)]
async fn join_view(
    ctx: &SessionContext,
    engine: &Engine,
    left: DataFrame,
    v: &FeatureView,
    clock: Clock,
    bounds: Option<(i64, i64)>,
    windowed: bool,
    entity: &[String],
    before: &[String],
    names: &[String],
) -> Result<DataFrame> {
    let landed = engine.landed_schema(&v.schema, &v.table);
    let history = v.read == Read::History;
    if history && landed.is_none() {
        let what = if engine.is_view(&v.schema, &v.table) {
            "is a model materialised as a view, which keeps no history".to_string()
        } else if ctx
            .table(TableReference::full(
                CATALOG,
                v.schema.as_str(),
                v.table.as_str(),
            ))
            .await
            .is_ok()
        {
            "has no history (a table a job writes)".to_string()
        } else {
            return Err(Error::definition(
                &v.name,
                "source",
                format!("no table or model {} in the warehouse", v.source()),
            ));
        };
        return Err(Error::definition(
            &v.name,
            "source",
            format!("{} {what}; set read = \"table\" with an event_time column, or read a table with history", v.source()),
        ));
    }
    let source = match (v.read, clock) {
        (Read::History, Clock::Event) => {
            ctx.table(TableReference::full(
                CATALOG,
                history_schema(&v.schema),
                v.table.as_str(),
            ))
            .await?
        }
        (Read::History, Clock::Known) => {
            let ts = landed.as_ref().expect("checked above");
            let hist = engine.loaded_history(&v.schema, &v.table).ok_or_else(|| {
                Error::definition(
                    &v.name,
                    "source",
                    format!("{} has no history log", v.source()),
                )
            })?;
            let provider = tidemark_lake::provider(&hist).await?;
            let log = tidemark_lake::mor::logical_log(ctx, ts, provider)?;
            ctx.read_table(log)?
        }
        (Read::Table, _) => ctx
            .table(TableReference::full(
                CATALOG,
                v.schema.as_str(),
                v.table.as_str(),
            ))
            .await
            .map_err(|_| {
                Error::definition(
                    &v.name,
                    "source",
                    format!("no table or model {} in the warehouse", v.source()),
                )
            })?,
    };
    let column_type = |field: &str, name: &str| source_column_type(v, &source, field, name);
    let key_types = v
        .join_on
        .iter()
        .map(|k| column_type("join_on", k))
        .collect::<Result<Vec<_>>>()?;
    let event_time = match &v.event_time {
        Some(e) => {
            let t = column_type("event_time", e)?;
            if !matches!(
                t,
                DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
            ) {
                return Err(Error::definition(
                    &v.name,
                    "event_time",
                    format!("column {e:?} is {t}, not a timestamp or date"),
                ));
            }
            cast(c(e), utc())
        }
        None => c(VALID_FROM),
    };
    let mut feature_exprs = Vec::with_capacity(v.features.len());
    for (i, f) in v.features.iter().enumerate() {
        let e = source.parse_sql_expr(&f.sql).map_err(|e| {
            Error::definition(
                &v.name,
                format!("features[{i}]"),
                format!("{:?}: {}", f.sql, tidemark_query::error_message(&e)),
            )
        })?;
        feature_exprs.push(e);
    }
    // Statistics pruning: literal bounds from the entity rows' instants, pushed into
    // the Delta scans (the join's per-row bounds cannot be).
    let mut source = source;
    if let Some((lo, hi)) = bounds {
        let mut keep = Vec::new();
        match (v.read, clock) {
            (Read::History, Clock::Event) => {
                keep.push(c(VALID_FROM).lt_eq(instant(hi)));
                keep.push(c(VALID_TO).is_null().or(c(VALID_TO).gt(instant(lo))));
            }
            (Read::History, Clock::Known) => {
                keep.push(c(VALID_FROM).lt_eq(instant(hi)));
                keep.push(c(INGEST_TS).lt_eq(instant(hi)));
            }
            (Read::Table, _) => keep.push(event_time.clone().lt_eq(instant(hi))),
        }
        // A stale value is NULL, so versions that started more than the TTL before
        // the earliest instant are never needed (when they are dated by validity).
        // Under the known clock the last change may be older than the TTL and still
        // decide (a stale value is NULL, not the one before), so no bound there.
        if let (Some(ttl), true) = (v.ttl, clock == Clock::Event) {
            if v.event_time.is_none() || v.read == Read::Table {
                keep.push(
                    event_time
                        .clone()
                        .gt_eq(instant(lo.saturating_sub(ttl_us(ttl)))),
                );
            }
        }
        if let Some(f) = keep.into_iter().reduce(Expr::and) {
            source = source.filter(f)?;
        }
    }
    let pk: Vec<String> = landed
        .as_ref()
        .map(|ts| ts.key_names().iter().map(|k| k.to_string()).collect())
        .unwrap_or_default();
    let mut right: Vec<Expr> = Vec::new();
    for (j, k) in v.join_on.iter().enumerate() {
        right.push(c(k).alias(format!("{PREFIX}k{j}")));
    }
    right.push(event_time.alias(ET));
    match (v.read, clock) {
        (Read::History, Clock::Event) => {
            right.push(c(VALID_FROM).alias(VF));
            right.push(c(VALID_TO).alias(VT));
        }
        (Read::History, Clock::Known) => {
            right.push(c(VALID_FROM).alias(VF));
            right.push(c(INGEST_TS).alias(ING));
            right.push(c(SEQ).alias(SEQN));
            right.push(c(OP).alias(OPC));
        }
        (Read::Table, _) => {}
    }
    if windowed {
        for (j, k) in pk.iter().enumerate() {
            right.push(c(k).alias(format!("{PREFIX}pk{j}")));
        }
    }
    for (j, e) in feature_exprs.into_iter().enumerate() {
        right.push(e.alias(format!("{PREFIX}f{j}")));
    }
    let right = source.select(right)?;

    // The join: entity key equal (the entity column cast to the source's type when
    // they differ, so a CSV's Int64 meets an Int32 key), and the instant.
    let left_types: Vec<DataType> = v
        .entity
        .iter()
        .map(|e| {
            left.schema()
                .field_with_unqualified_name(e)
                .map(|f| f.data_type().clone())
        })
        .collect::<std::result::Result<_, _>>()?;
    let mut on: Vec<Expr> = Vec::new();
    for (j, e) in v.entity.iter().enumerate() {
        // TRY_CAST: an entity key that cannot be a source key (too large for the
        // key's type, not a number) matches nothing, rather than failing the run.
        let l = if left_types[j] == key_types[j] {
            c(e)
        } else {
            Expr::TryCast(TryCast::new(Box::new(c(e)), key_types[j].clone()))
        };
        on.push(l.eq(c(&format!("{PREFIX}k{j}"))));
    }
    let t = || c(T);
    let fresh = |ttl| c(ET).gt_eq(t() - interval(ttl));
    match (v.read, clock) {
        (Read::History, Clock::Event) => {
            on.push(c(VF).lt_eq(t()));
            on.push(c(VT).is_null().or(c(VT).gt(t())));
            if v.event_time.is_some() {
                on.push(c(ET).lt_eq(t()));
            }
            if let Some(ttl) = v.ttl {
                on.push(fresh(ttl));
            }
        }
        (Read::History, Clock::Known) => {
            on.push(c(VF).lt_eq(t()));
            on.push(c(ING).lt_eq(t()));
        }
        (Read::Table, _) => {
            on.push(c(ET).lt_eq(t()));
            if let Some(ttl) = v.ttl {
                on.push(fresh(ttl));
            }
        }
    }
    // The entity key is exactly the source key: joining on it reads every change of
    // the one source key an entity row names, and nothing else.
    let exact =
        landed.is_some() && pk.len() == v.join_on.len() && pk.iter().all(|k| v.join_on.contains(k));
    let fresh_ok = |mut ok: Expr| {
        if v.event_time.is_some() {
            ok = ok.and(c(ET).lt_eq(t()));
        }
        if let Some(ttl) = v.ttl {
            ok = ok.and(fresh(ttl));
        }
        ok
    };
    let newest_first = || {
        // The latest event time wins, then the latest version, then the smallest
        // source key: never an answer that depends on the plan.
        let mut order = vec![c(ET).sort(false, false)];
        if v.read == Read::History {
            order.push(c(VF).sort(false, false));
        }
        order.extend((0..pk.len()).map(|j| c(&format!("{PREFIX}pk{j}")).sort(true, false)));
        order
    };
    let mut valid: Option<Expr> = None;
    let joined = match clock {
        Clock::Known if exact => {
            // Every change of the entity row's one source key, known at t: the last
            // one (by source instant, then sequence) is the key's state as known then.
            let joined = left.join_on(right, JoinType::Left, on)?;
            let last = row_number()
                .partition_by(vec![c(ROW)])
                .order_by(vec![c(VF).sort(false, false), c(SEQN).sort(false, false)])
                .build()?
                .alias(RN);
            let joined = with_column(joined, last)?.filter(c(RN).eq(lit(1u64)))?;
            // Whether that change gives a value: not a delete, dated at or before t,
            // not stale (false for an entity row that matched nothing).
            let ok = when(fresh_ok(c(OPC).not_eq(lit("d"))), lit(true))
                .otherwise(lit(false))?
                .alias(VALID);
            valid = Some(c(VALID));
            with_column(joined, ok)?
        }
        Clock::Known => {
            // The entity key is not the source key, and it may have changed: a key's
            // state as known at t is its last change known at t over *all* its
            // changes, not just those carrying this entity key. So: candidates by
            // entity key, minus those a later change of the same source key known at
            // t supersedes (an anti join), then the newest per entity row, joined
            // back to every entity row.
            let hist = engine
                .loaded_history(&v.schema, &v.table)
                .expect("the log was read above");
            let ts = landed.as_ref().expect("checked above");
            let log =
                tidemark_lake::mor::logical_log(ctx, ts, tidemark_lake::provider(&hist).await?)?;
            let mut later = ctx.read_table(log)?;
            if let Some((_, hi)) = bounds {
                later = later.filter(
                    c(VALID_FROM)
                        .lt_eq(instant(hi))
                        .and(c(INGEST_TS).lt_eq(instant(hi))),
                )?;
            }
            let mut cols: Vec<Expr> = pk
                .iter()
                .enumerate()
                .map(|(j, k)| c(k).alias(format!("{PREFIX}q{j}")))
                .collect();
            cols.push(c(VALID_FROM).alias("__tm_vf2"));
            cols.push(c(SEQ).alias("__tm_seq2"));
            cols.push(c(INGEST_TS).alias("__tm_ing2"));
            let later = later.select(cols)?;
            let mut slim: Vec<Expr> = vec![c(ROW), c(T)];
            slim.extend(v.entity.iter().map(|e| c(e)));
            let candidates = left
                .clone()
                .select(slim)?
                .join_on(right, JoinType::Inner, on)?;
            let mut superseded: Vec<Expr> = (0..pk.len())
                .map(|j| c(&format!("{PREFIX}pk{j}")).eq(c(&format!("{PREFIX}q{j}"))))
                .collect();
            superseded.push(c("__tm_vf2").lt_eq(t()));
            superseded.push(c("__tm_ing2").lt_eq(t()));
            superseded.push(
                c("__tm_vf2")
                    .gt(c(VF))
                    .or(c("__tm_vf2").eq(c(VF)).and(c("__tm_seq2").gt(c(SEQN)))),
            );
            let last = candidates
                .join_on(later, JoinType::LeftAnti, superseded)?
                .filter(fresh_ok(c(OPC).not_eq(lit("d"))))?;
            let pick = row_number()
                .partition_by(vec![c(ROW)])
                .order_by(newest_first())
                .build()?
                .alias(RN);
            let mut out = vec![c(ROW).alias("__tm_prow")];
            out.extend((0..names.len()).map(|j| c(&format!("{PREFIX}f{j}"))));
            let picked = with_column(last, pick)?
                .filter(c(RN).eq(lit(1u64)))?
                .select(out)?;
            left.join_on(picked, JoinType::Left, [c(ROW).eq(c("__tm_prow"))])?
        }
        Clock::Event if windowed => {
            // Several source rows of the state at t for one entity row: one wins.
            let joined = left.join_on(right, JoinType::Left, on)?;
            let pick = row_number()
                .partition_by(vec![c(ROW)])
                .order_by(newest_first())
                .build()?
                .alias(RN);
            with_column(joined, pick)?.filter(c(RN).eq(lit(1u64)))?
        }
        // One version valid at t per source key, and the entity key is the source
        // key: at most one match per entity row, no window.
        Clock::Event => left.join_on(right, JoinType::Left, on)?,
    };
    let mut keep: Vec<Expr> = entity.iter().map(|n| c(n)).collect();
    keep.push(c(T));
    if joined.schema().field_with_unqualified_name(ROW).is_ok() {
        keep.push(c(ROW));
    }
    keep.extend(before.iter().map(|n| c(n)));
    for (j, name) in names.iter().enumerate() {
        let f = c(&format!("{PREFIX}f{j}"));
        let f = match &valid {
            // A NULL of the feature's own type when the change gives no value.
            Some(ok) => when(ok.clone(), f).end()?,
            None => f,
        };
        keep.push(f.alias(name));
    }
    Ok(joined.select(keep)?)
}

/// `df` with one more column (a window expression); `DataFrame::select` plans the
/// window below the projection.
fn with_column(df: DataFrame, e: Expr) -> Result<DataFrame> {
    let mut all: Vec<Expr> = df.schema().fields().iter().map(|f| c(f.name())).collect();
    all.push(e);
    Ok(df.select(all)?)
}
