//! Merge-on-read for current tables fed by a change stream.
//!
//! A stream commits often (every second) with updates scattered over the whole key
//! space. Merging each batch into the current table copy-on-write rewrites every file
//! that holds a changed key — most of a large table, every second — so its cost grows
//! with the table. Instead, a streamed table's current state is:
//!
//! * a **base**: the stored current Delta table, a plain table any engine reads, holding
//!   every history row with `_ingest_ts` up to its mark (`merged_through_us` in its
//!   commit state), and
//! * a **tail**: the history rows landed after the mark (the history log is appended
//!   anyway, so a batch costs one append whatever the table size).
//!
//! Readers take the last tail version of each key (dropping deletes) and the base rows
//! of keys the tail does not touch. Compaction folds the tail into a new base and moves
//! the mark; triggered when the tail reaches a fraction of the base, its cost per change
//! stays constant as the table grows. The tail is told from compacted rows by
//! `_ingest_ts`, which each writer keeps strictly increasing (`last_ingest_us`).

use std::sync::Arc;

use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::common::{Column, ScalarValue};
use deltalake::datafusion::functions::expr_fn::coalesce;
use deltalake::datafusion::logical_expr::{cast, col, lit, Expr};
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use tidemark_core::schema::{
    ColumnSchema, TableSchema, INGEST_TS, OP, SEQ, SOURCE_POS, SOURCE_TS, VALID_FROM,
};

use crate::diff::quote;

/// The fewest tail rows worth a compaction: below this the tail costs readers little
/// whatever the base's size.
pub const COMPACT_MIN_ROWS: u64 = 100_000;

/// Whether a tail of `tail_rows` over a base of `base_rows` should be folded in: when
/// it reaches a fifth of the base (at least [`COMPACT_MIN_ROWS`]), so the rewrite's
/// cost per change stays constant as the table grows and readers never merge more
/// than a fifth of the base.
pub fn compaction_due(tail_rows: u64, base_rows: u64) -> bool {
    tail_rows > 0 && tail_rows >= COMPACT_MIN_ROWS.max(base_rows / 5)
}

/// The name the current view's plan reads its base under ([`plan_current`]): a
/// reader that knows every key it wants has a tail row (models' incremental builds)
/// finds the base's scan by it and leaves it out.
pub const BASE_SCAN: &str = "__tidemark_base";

/// An `_ingest_ts` instant (micros) as a literal of the column's type.
pub fn ingest_literal(us: i64) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(us), Some("UTC".into()))
}

/// The history log as the table's columns — live ones, then dropped ones the history
/// view shows, then tidemark's — when schema changes moved where values are stored
/// (see `tidemark_core::evolve`); the log itself when none did. Every reader of a log
/// goes through this, so SQL only ever sees the table's own column names.
pub fn logical_log(
    ctx: &SessionContext,
    ts: &TableSchema,
    log: Arc<dyn TableProvider>,
) -> deltalake::datafusion::error::Result<Arc<dyn TableProvider>> {
    if !ts.is_evolved() {
        return Ok(log);
    }
    let have = log.schema();
    let value = |c: &ColumnSchema| -> deltalake::datafusion::error::Result<Expr> {
        let ty = c.mysql_type().arrow_type();
        // Each row has a value in at most one of the columns (the others were written
        // as NULL), so the first non-NULL is exact.
        let mut parts: Vec<Expr> = c
            .stored_names()
            .into_iter()
            .filter(|n| have.field_with_name(n).is_ok())
            .map(|n| cast(col(Column::new_unqualified(n)), ty.clone()))
            .collect();
        Ok(match parts.len() {
            0 => lit(ScalarValue::try_from(&ty)?),
            1 => parts.pop().expect("one"),
            _ => coalesce(parts),
        })
    };
    let mut exprs = Vec::new();
    for c in ts.columns.iter().chain(ts.shown_dropped()) {
        exprs.push(value(c)?.alias(&c.name));
    }
    for m in [INGEST_TS, SOURCE_TS, OP, VALID_FROM, SOURCE_POS, SEQ] {
        exprs.push(col(Column::new_unqualified(m)));
    }
    Ok(ctx.read_table(log)?.select(exprs)?.into_view())
}

/// The tail of a history log: rows landed after `mark_us` (and, when `upto_us` is
/// given, not after it).
pub fn tail(
    log: DataFrame,
    mark_us: i64,
    upto_us: Option<i64>,
) -> deltalake::datafusion::error::Result<DataFrame> {
    let mut pred = col(INGEST_TS).gt(lit(ingest_literal(mark_us)));
    if let Some(u) = upto_us {
        pred = pred.and(col(INGEST_TS).lt_eq(lit(ingest_literal(u))));
    }
    log.filter(pred)
}

/// Whether a log (as [`logical_log`] gives it) holds no rows after `mark_us`: then the
/// current state is the base alone, and readers skip the merge (and the history view
/// its join with the tail). Decided from the data, not from a writer's bookkeeping,
/// so it holds whatever appended to the log; file and row-group statistics on
/// `_ingest_ts` leave at most the newest file or two to read, one column of them.
/// Answers for the log as loaded: a reader that decides once per loaded version is
/// exact for that version.
pub async fn tail_is_empty(
    ctx: &SessionContext,
    log: Arc<dyn TableProvider>,
    mark_us: i64,
) -> deltalake::datafusion::error::Result<bool> {
    let rows = tail(ctx.read_table(log)?, mark_us, None)?
        .select(vec![col(INGEST_TS)])?
        .limit(0, Some(1))?
        .collect()
        .await?;
    Ok(rows.iter().all(|b| b.num_rows() == 0))
}

/// The current table's columns as a quoted SQL select list (source columns, then
/// `_ingest_ts`, `_source_ts`, `_op`): what every view of "the table at an instant"
/// returns.
pub fn current_columns_sql(ts: &TableSchema) -> String {
    ts.columns
        .iter()
        .map(|c| quote(&c.name))
        .chain([INGEST_TS, SOURCE_TS, OP].map(quote))
        .collect::<Vec<_>>()
        .join(", ")
}

/// SQL for the current state from a base table `base` and a tail view `tail` (both
/// registered names): the last tail version per key, unless a delete, plus the base
/// rows of untouched keys. Columns: the current table's.
pub fn current_view_sql(ts: &TableSchema, base: &str, tail: &str) -> String {
    merged_sql(ts, Some(base), tail, &current_columns_sql(ts))
}

/// The merge behind [`current_view_sql`] with the select list `cols`; without `base`,
/// the tail alone (a base rebuilt from the whole log). Compaction writes its new base
/// with this, with the stored columns.
pub fn merged_sql(ts: &TableSchema, base: Option<&str>, tail: &str, cols: &str) -> String {
    let keys: Vec<String> = ts.key_names().iter().map(|k| quote(k)).collect();
    let last = format!(
        "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {keys} \
             ORDER BY {vf} DESC, {seq} DESC, {it} DESC) AS __tidemark_rn FROM {tail}) \
           WHERE __tidemark_rn = 1",
        keys = keys.join(", "),
        vf = quote(VALID_FROM),
        seq = quote(SEQ),
        it = quote(INGEST_TS),
    );
    let op = quote(OP);
    match base {
        Some(base) => {
            // Aliases no source column is expected to take: inside the correlated
            // subquery, `b.k` resolved to a field of a source column named `b` (which
            // the tail has), not to the base's key, and every read of such a table
            // failed (found by `tidemark verify`'s tests).
            let join = keys
                .iter()
                .map(|k| format!("\"__tidemark_l\".{k} = \"__tidemark_b\".{k}"))
                .collect::<Vec<_>>()
                .join(" AND ");
            format!(
                "WITH \"__tidemark_l\" AS ({last}) \
                 SELECT {cols} FROM {base} \"__tidemark_b\" WHERE NOT EXISTS (SELECT 1 FROM \"__tidemark_l\" WHERE {join}) \
                 UNION ALL SELECT {cols} FROM \"__tidemark_l\" WHERE {op} <> 'd'"
            )
        }
        None => format!("SELECT {cols} FROM ({last}) WHERE {op} <> 'd'"),
    }
}

/// Register `base` and the tail of `log` (as [`logical_log`] gives it) in `ctx` under hidden names and plan the
/// current view; the names are removed again (the plan keeps the providers).
pub async fn plan_current(
    ctx: &SessionContext,
    ts: &TableSchema,
    base: std::sync::Arc<dyn deltalake::datafusion::catalog::TableProvider>,
    log: std::sync::Arc<dyn deltalake::datafusion::catalog::TableProvider>,
    mark_us: i64,
    upto_us: Option<i64>,
) -> deltalake::datafusion::error::Result<DataFrame> {
    let tail_df = tail(ctx.read_table(log)?, mark_us, upto_us)?;
    ctx.register_table(BASE_SCAN, base)?;
    ctx.register_table("__tidemark_tail", tail_df.into_view())?;
    let df = ctx
        .sql(&current_view_sql(ts, BASE_SCAN, "__tidemark_tail"))
        .await;
    ctx.deregister_table(BASE_SCAN)?;
    ctx.deregister_table("__tidemark_tail")?;
    df
}
