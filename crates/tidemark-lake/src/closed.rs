//! Closed history: validity materialised by compaction, so time travel is a pruned
//! scan instead of a sort over every version.
//!
//! The history log stores one row per version and no `_valid_to` (closing a version
//! in place would be a copy-on-write UPDATE of old files, see the crate docs). Read
//! naively, every `AS OF` computes `_valid_to` with a window over the whole log, and a
//! filter on time cannot be pushed below that window: cost grows with history depth.
//!
//! So a merge-on-read table keeps a third Delta table, `closed`
//! (`<warehouse>/<schema>/<table>/closed`): every version whose successor has been
//! compacted, with its `_valid_to` stored. Compaction already reads the base and the
//! tail; it also writes the versions the tail closes (the base rows of keys the tail
//! touches, and every tail version but the last of its key), in one append per
//! compaction, sorted by `_valid_from`. Files of one compaction therefore hold a
//! narrow `_valid_to` range, and inside them `_valid_from` is ordered, so Delta file
//! statistics and Parquet row-group and page statistics skip everything an instant
//! cannot need. Every version is then exactly one of:
//!
//! * **closed**: `_closed_mark` ≤ the current table's mark, `_valid_to` stored;
//! * **open in the base**: its `_valid_to` is the first tail version of its key, if any;
//! * **in the tail** (log rows landed after the mark): `_valid_to` from a window over
//!   the tail only (at most a fifth of the base, see `mor`).
//!
//! Deletes are kept as `_op = 'd'` rows (`changes()` needs them): a delete with a
//! later re-insert is closed by it; a delete that is the key's last change is stored
//! with the zero-length validity `[t, t)`, which no instant falls in.
//!
//! **Crash safety.** Compaction commits the new base (with the new mark) first, then
//! the closures (the commit state records `closed_through_us`). The closed history is
//! read only when it holds exactly what was closed up to the base's mark
//! ([`serves`]), and only its rows with `_closed_mark` at most that mark, so a crash
//! between the two commits (closed behind the base) makes readers take the window over
//! the log, which is always right, until the next compaction rebuilds it; and a
//! closed history read after a newer compaction's closures shows none of them. A
//! concurrent compaction (another worker's) never mistakes an in-flight one's closures
//! for a crashed one's: there are none ahead of a base. The closed table is derived:
//! when it cannot be extended (it does not exist yet, a crash left it behind, a schema
//! change moved the mark to the start of time, or it belongs to another generation)
//! compaction rebuilds it from the whole log, once (`closed_since_us`).
//!
//! External engines read `closed` and `current` as plain Delta tables (see
//! docs/architecture.md for the query).

use tidemark_core::schema::{
    TableSchema, CLOSED_MARK, INGEST_TS, OP, SEQ, SOURCE_POS, SOURCE_TS, VALID_FROM, VALID_TO,
};

use std::sync::Arc;

use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::common::{Column, ScalarValue};
use deltalake::datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::datafusion::logical_expr::{col, lit, Expr};
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use deltalake::DeltaTable;

use crate::diff::quote;
use crate::Committed;

/// The columns every version has, in order: the table's live columns, the dropped
/// ones its history still shows, then tidemark's (`_ingest_ts`, `_source_ts`, `_op`,
/// `_valid_from`, `_source_pos`, `_seq`). The closed table adds `_valid_to` and
/// `_closed_mark`.
pub fn version_columns(ts: &TableSchema) -> Vec<String> {
    ts.columns
        .iter()
        .chain(ts.shown_dropped())
        .map(|c| c.name.clone())
        .chain(
            [INGEST_TS, SOURCE_TS, OP, VALID_FROM, SOURCE_POS, SEQ]
                .iter()
                .map(|s| s.to_string()),
        )
        .collect()
}

/// The stored current table (a merge-on-read base) as versions: its rows with
/// `_valid_from` = `_source_ts`, and NULL for the dropped columns history still shows.
pub fn base_version_exprs(ts: &TableSchema) -> Vec<Expr> {
    let c = |n: &str| col(Column::new_unqualified(n));
    let mut e: Vec<Expr> = ts.columns.iter().map(|x| c(&x.name)).collect();
    for d in ts.shown_dropped() {
        let null = ScalarValue::try_from(&d.mysql_type().arrow_type()).unwrap_or(ScalarValue::Null);
        e.push(lit(null).alias(&d.name));
    }
    e.extend([c(INGEST_TS), c(SOURCE_TS), c(OP)]);
    e.push(c(SOURCE_TS).alias(VALID_FROM));
    e.extend([c(SOURCE_POS), c(SEQ)]);
    e
}

fn keys(ts: &TableSchema) -> Vec<String> {
    ts.key_names().iter().map(|k| quote(k)).collect()
}

fn list(cols: &[String], prefix: &str) -> String {
    cols.iter()
        .map(|c| format!("{prefix}{}", quote(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every version of a whole log registered as `log` (as `mor::logical_log` gives it),
/// tombstones included, with `_valid_to` from a window over the log: the meaning of
/// history, kept as the fallback for tables without a closed history and as the
/// oracle the closed layout is tested against.
pub fn log_versions_sql(ts: &TableSchema, log: &str) -> String {
    format!(
        "SELECT {cols}, LEAD({vf}) OVER (PARTITION BY {keys} ORDER BY {vf}, {seq}) AS {vt} FROM {log}",
        cols = list(&version_columns(ts), ""),
        keys = keys(ts).join(", "),
        vf = quote(VALID_FROM),
        seq = quote(SEQ),
        vt = quote(VALID_TO),
    )
}

/// Every version from the closed layout: `closed` (registered already filtered to
/// `_closed_mark` ≤ the base's mark), `base` (the stored current table, projected to
/// [`version_columns`] by [`base_versions`]) and `tail` (log rows after the mark).
/// Same columns as [`log_versions_sql`].
pub fn layout_versions_sql(ts: &TableSchema, closed: &str, base: &str, tail: &str) -> String {
    let cols = version_columns(ts);
    let k = keys(ts);
    format!(
        "SELECT {c}, {vt} FROM {closed} \
         UNION ALL SELECT {bc}, f.\"__tidemark_first\" AS {vt} FROM {base} b LEFT JOIN {first} \
         UNION ALL SELECT {c}, LEAD({vf}) OVER (PARTITION BY {keys} ORDER BY {vf}, {seq}) AS {vt} FROM {tail}",
        c = list(&cols, ""),
        bc = list(&cols, "b."),
        first = first_in_tail(ts, tail),
        keys = k.join(", "),
        vf = quote(VALID_FROM),
        seq = quote(SEQ),
        vt = quote(VALID_TO),
    )
}

/// `(<first tail instant per key>) f ON <b's key = f's key>`: what joins base rows `b`
/// to the instant their key's first tail version starts, which closes them.
fn first_in_tail(ts: &TableSchema, tail: &str) -> String {
    let k = keys(ts);
    let on = k
        .iter()
        .map(|k| format!("b.{k} = f.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!(
        "(SELECT {keys}, MIN({vf}) AS \"__tidemark_first\" FROM {tail} GROUP BY {keys}) f ON {on}",
        keys = k.join(", "),
        vf = quote(VALID_FROM),
    )
}

/// The history view over the versions registered as `live` (tombstones dropped, as
/// [`Versions::live`]): `_is_current` derived. Columns: version columns without
/// `_seq`, with `_valid_to` after `_valid_from` and `_is_current` before `_source_pos`.
pub fn history_view_sql(ts: &TableSchema, live: &str) -> String {
    let shown: Vec<String> = ts
        .columns
        .iter()
        .chain(ts.shown_dropped())
        .map(|c| c.name.clone())
        .chain(
            [INGEST_TS, SOURCE_TS, OP, VALID_FROM, VALID_TO]
                .iter()
                .map(|s| s.to_string()),
        )
        .collect();
    format!(
        "SELECT {cols}, {vt} IS NULL AS {ic}, {sp} FROM {live}",
        cols = list(&shown, ""),
        vt = quote(VALID_TO),
        ic = quote(tidemark_core::schema::IS_CURRENT),
        sp = quote(SOURCE_POS),
    )
}

/// The versions a compaction closes: with `base` (the base projected to version
/// columns), the base rows of keys the tail touches, closed by the key's first tail
/// version; and every tail version but the last of its key, closed by the next one;
/// and a delete that is its key's last change, as `[t, t)`. Without `base` (a rebuild
/// over the whole log as the tail) only the latter two. Columns: version columns and
/// `_valid_to`.
pub fn closures_sql(ts: &TableSchema, base: Option<&str>, tail: &str) -> String {
    let cols = version_columns(ts);
    let k = keys(ts);
    let vf = quote(VALID_FROM);
    let mut sql = format!(
        "SELECT {c}, COALESCE(\"__tidemark_next\", {vf}) AS {vt} FROM \
           (SELECT *, LEAD({vf}) OVER (PARTITION BY {keys} ORDER BY {vf}, {seq}) AS \"__tidemark_next\" FROM {tail}) \
         WHERE \"__tidemark_next\" IS NOT NULL OR {op} = 'd'",
        c = list(&cols, ""),
        keys = k.join(", "),
        seq = quote(SEQ),
        op = quote(OP),
        vt = quote(VALID_TO),
    );
    if let Some(base) = base {
        sql.push_str(&format!(
            " UNION ALL SELECT {bc}, f.\"__tidemark_first\" AS {vt} FROM {base} b JOIN {first}",
            bc = list(&cols, "b."),
            first = first_in_tail(ts, tail),
            vt = quote(VALID_TO),
        ));
    }
    sql
}

/// The new base a compaction writes: the last tail version of each key unless a
/// delete, plus (with `base`) the base rows of keys the tail does not touch; all the
/// stored current table's columns, ordered by key so a point lookup reads a few
/// pages.
pub fn base_sql(ts: &TableSchema, base: Option<&str>, tail: &str) -> String {
    let cols: Vec<String> = ts
        .columns
        .iter()
        .map(|c| c.name.clone())
        .chain(
            [INGEST_TS, SOURCE_TS, OP, SOURCE_POS, SEQ]
                .iter()
                .map(|s| s.to_string()),
        )
        .collect();
    format!(
        "SELECT * FROM ({}) ORDER BY {}",
        crate::mor::merged_sql(ts, base, tail, &list(&cols, "")),
        keys(ts).join(", ")
    )
}

/// A table's versions, as [`plan_versions`] plans them.
pub struct Versions {
    /// Every version, tombstones included (what `changes()` reads).
    pub all: DataFrame,
    /// The versions the history view shows: tombstones dropped. Dropped per part
    /// where the parts are known: the base never holds a tombstone, so its scan gets
    /// no filter on `_op` (a string comparison over every current row, which cost as
    /// much as the rest of an `AS OF` over the base).
    pub live: DataFrame,
}

/// Every version of a table (tombstones included, columns as [`log_versions_sql`]):
/// from the closed layout when its closed history serves the current table's mark,
/// else from a window over the whole log. `mark` is `cur`'s merge-on-read mark (its
/// committed state, which the caller has read already); `log` (as `mor::logical_log`
/// gives it) must have been loaded after `cur`, so its tail starts at the mark.
/// `tail_empty` is [`crate::mor::tail_is_empty`] of that log at that mark: with no
/// tail, every base row is open and the versions are the closed history and the base
/// side by side, with no join (after a compaction, and for a table that stopped
/// changing, this is the whole history).
pub async fn plan_versions(
    ts: &TableSchema,
    cur: &DeltaTable,
    mark: Option<i64>,
    closed: Option<&DeltaTable>,
    log: Arc<dyn TableProvider>,
    tail_empty: bool,
) -> DfResult<Versions> {
    plan_versions_in(
        &SessionContext::new(),
        ts,
        cur,
        mark,
        closed,
        log,
        tail_empty,
    )
    .await
}

/// [`plan_versions`], planned in `ctx` (whose runtime then bounds the memory its
/// sorts may take: `tidemark verify` gives it a spilling pool). Registers scratch
/// names (`__tidemark_*`) in `ctx`.
pub async fn plan_versions_in(
    ctx: &SessionContext,
    ts: &TableSchema,
    cur: &DeltaTable,
    mark: Option<i64>,
    closed: Option<&DeltaTable>,
    log: Arc<dyn TableProvider>,
    tail_empty: bool,
) -> DfResult<Versions> {
    let not_deleted = || col(OP).not_eq(lit("d"));
    let live = |all: DataFrame| -> DfResult<Versions> {
        Ok(Versions {
            live: all.clone().filter(not_deleted())?,
            all,
        })
    };
    let ext = |e: crate::Error| DataFusionError::External(Box::new(e));
    let mut layout = None;
    if let Some(closed) = closed {
        let base = crate::provider(cur).await?;
        let complete = [SOURCE_POS, SEQ]
            .iter()
            .all(|c| base.schema().field_with_name(c).is_ok());
        if complete
            && layout_applies(ts)
            && serves(&crate::committed_state(closed).await.map_err(ext)?, mark)
        {
            layout = Some((crate::provider(closed).await?, base));
        }
    }
    match (layout, mark) {
        (Some((closed, base)), Some(mark)) => {
            let mut keep: Vec<Expr> = version_columns(ts)
                .iter()
                .map(|c| col(Column::new_unqualified(c)))
                .collect();
            keep.push(col(VALID_TO));
            let closed = ctx
                .read_table(closed)?
                .filter(col(CLOSED_MARK).lt_eq(lit(crate::mor::ingest_literal(mark))))?
                .select(keep)?;
            if tail_empty {
                let open = ScalarValue::try_from(
                    closed
                        .schema()
                        .field_with_unqualified_name(VALID_TO)?
                        .data_type(),
                )?;
                let mut exprs = base_version_exprs(ts);
                exprs.push(lit(open).alias(VALID_TO));
                let base = ctx.read_table(base)?.select(exprs)?;
                return Ok(Versions {
                    all: closed.clone().union(base.clone())?,
                    live: closed.filter(not_deleted())?.union(base)?,
                });
            }
            let base = ctx.read_table(base)?.select(base_version_exprs(ts))?;
            let tail = crate::mor::tail(ctx.read_table(log)?, mark, None)?;
            ctx.register_table("__tidemark_closed", closed.into_view())?;
            ctx.register_table("__tidemark_base", base.into_view())?;
            ctx.register_table("__tidemark_tail", tail.into_view())?;
            live(
                ctx.sql(&layout_versions_sql(
                    ts,
                    "__tidemark_closed",
                    "__tidemark_base",
                    "__tidemark_tail",
                ))
                .await?,
            )
        }
        _ => {
            ctx.register_table("__tidemark_log", log)?;
            live(ctx.sql(&log_versions_sql(ts, "__tidemark_log")).await?)
        }
    }
}

/// Whether a closed table (its committed state) holds exactly the versions closed up
/// to a current table's mark `mark`, so the layout can be read (and extended) at it.
///
/// Compaction keeps no closed history for a table whose history view still shows a
/// dropped column (the base does not keep those columns' old values); readers check
/// that with [`layout_applies`].
pub fn serves(closed: &Committed, mark: Option<i64>) -> bool {
    let Some(mark) = mark.filter(|m| *m != i64::MIN) else {
        return false;
    };
    let s = &closed.state;
    s.closed_since_us.is_some_and(|since| since <= mark)
        && s.closed_through_us.is_some_and(|through| through >= mark)
}

/// Whether a table can be read from the closed layout at all (see [`serves`]).
pub fn layout_applies(ts: &TableSchema) -> bool {
    ts.shown_dropped().next().is_none()
}

/// The `delta.dataSkippingStatsColumns` value for a table whose stats matter on
/// `columns` (keys and time columns): Delta writers otherwise keep statistics for the
/// first 32 columns only, and tidemark's time columns come after the source's.
/// Names that would need quoting in the property are left out (their files are then
/// not skipped by them, which is only slower).
pub fn stats_columns<'a>(columns: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let plain: Vec<&str> = columns
        .into_iter()
        .filter(|c| {
            !c.is_empty()
                && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                && !c.starts_with(|ch: char| ch.is_ascii_digit())
        })
        .collect();
    (!plain.is_empty()).then(|| plain.join(","))
}

/// The columns a closed table keeps statistics for.
pub fn closed_stats(ts: &TableSchema) -> Option<String> {
    let mut c: Vec<&str> = ts.key_names();
    c.extend([VALID_FROM, VALID_TO, CLOSED_MARK, INGEST_TS, SOURCE_TS]);
    stats_columns(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_columns_leave_out_names_that_need_quoting() {
        assert_eq!(
            stats_columns(["id", "Order Id", "_valid_from", "1x"]).as_deref(),
            Some("id,_valid_from")
        );
        assert_eq!(stats_columns(["a b"]), None);
    }
}
