//! What a publish reads from the lake: a table's history log above the last
//! published `_ingest_ts`, as DataFusion plans (no SQL text), at the Delta version
//! the engine has loaded.

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::TimestampMicrosecondType;
use deltalake::datafusion::common::Column;
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::datafusion::functions_aggregate::expr_fn::max;
use deltalake::datafusion::functions_window::expr_fn::row_number;
use deltalake::datafusion::logical_expr::{cast, lit, Expr, ExprFunctionExt};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use tidemark_core::config::PublishMode;
use tidemark_core::schema::{TableSchema, INGEST_TS, OP, SEQ, SOURCE_POS, SOURCE_TS, VALID_FROM};
use tidemark_lake::mor::{ingest_literal, logical_log};

use crate::types::PgType;

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// The columns a table is published with, in order: its own, then `_op`,
/// `_source_ts`, `_ingest_ts` (what its current table shows), and for `append` also
/// `_source_pos` and `_seq`, which order several versions of one key within one
/// source instant.
pub fn published_columns(ts: &TableSchema, mode: PublishMode) -> Vec<(String, PgType)> {
    let mut cols: Vec<(String, PgType)> = ts
        .columns
        .iter()
        .map(|c| (c.name.clone(), PgType::of(c)))
        .collect();
    cols.push((OP.into(), PgType::Text));
    cols.push((SOURCE_TS.into(), PgType::TimestampTz));
    cols.push((INGEST_TS.into(), PgType::TimestampTz));
    if mode == PublishMode::Append {
        cols.push((SOURCE_POS.into(), PgType::Text));
        cols.push((SEQ.into(), PgType::BigInt));
    }
    cols
}

/// The rows to publish: the log's rows with `_ingest_ts` above `mark` (all of them
/// without one); for merge and mirror only the last version of each key among them
/// (a delete's row is its last image, `_op = 'd'`). Also the highest `_ingest_ts`
/// among all those rows, the next mark: `None` when there is nothing new.
///
/// Why `_ingest_ts` and not the Delta versions in between: the lake's writers make
/// it grow with every history commit (merge-on-read and incremental models rely on
/// the same), and maintenance rewrites log files (compaction, OPTIMIZE) without
/// changing it, whereas a file-level diff between two Delta versions would see a
/// rewritten file as new rows.
pub async fn increment(
    hist: &DeltaTable,
    ts: &TableSchema,
    cols: &[(String, PgType)],
    mode: PublishMode,
    mark: Option<i64>,
) -> DfResult<(DataFrame, Option<i64>)> {
    let ctx = SessionContext::new();
    let delta = |e: deltalake::DeltaTableError| DataFusionError::External(Box::new(e));
    hist.update_datafusion_session(&ctx.state())
        .map_err(delta)?;
    let provider = tidemark_lake::provider(hist).await.map_err(delta)?;
    let log = logical_log(&ctx, ts, provider)?;
    let mut df = ctx.read_table(log)?;
    if let Some(m) = mark {
        df = df.filter(column(INGEST_TS).gt(lit(ingest_literal(m))))?;
    }
    let top = df
        .clone()
        .aggregate(vec![], vec![max(column(INGEST_TS)).alias("m")])?
        .collect()
        .await?;
    let next = top.iter().find(|b| b.num_rows() > 0).and_then(|b| {
        let a = b.column(0).as_primitive::<TimestampMicrosecondType>();
        (!a.is_null(0)).then(|| a.value(0))
    });
    if next.is_none() {
        return Ok((df, None));
    }
    if mode != PublishMode::Append {
        // The same order the current table's merge uses (`mor::merged_sql`): source
        // instant, then the order within it, then landing.
        let keys: Vec<Expr> = ts.key_names().iter().map(|k| column(k)).collect();
        let rn = row_number()
            .partition_by(keys)
            .order_by(vec![
                column(VALID_FROM).sort(false, true),
                column(SEQ).sort(false, true),
                column(INGEST_TS).sort(false, true),
            ])
            .build()?
            .alias("__tidemark_rn");
        df = df
            .window(vec![rn])?
            .filter(column("__tidemark_rn").eq(lit(1u64)))?;
    }
    let select: Vec<Expr> = cols
        .iter()
        .map(|(name, ty)| cast(column(name), ty.arrow()).alias(name))
        .collect();
    Ok((df.select(select)?, next))
}

/// Rows whose (last) change is not a delete.
pub fn not_deleted() -> Expr {
    column(OP).not_eq(lit("d"))
}

/// The loaded history log's Delta table id: a table landed again (`--resnapshot`)
/// gets another, and marks in the old one's `_ingest_ts` say nothing about it.
pub fn table_id(hist: &DeltaTable) -> String {
    hist.snapshot()
        .map(|s| s.metadata().id().to_string())
        .unwrap_or_default()
}

/// The loaded version of the history log.
pub fn version(hist: &DeltaTable) -> i64 {
    hist.version().map_or(-1, |v| v as i64)
}
