//! The lake side: a table's state at a source position, read from its current table
//! and history log as loaded once, and streamed through the checksum.
//!
//! The current table (base plus tail, as SQL reads it) holds the state at the
//! table's committed position, which is at or past the verify position `P`. Keys
//! changed after `P` are the keys of log rows whose binlog position is after `P`;
//! for them the state at `P` is their last version at or before `P` (none, or a
//! delete, means absent). Every other key's current row is its state at `P`. So the
//! work beyond a current read is a scan of the log's `_source_pos` column and the
//! versions of the keys changed since `P`: few, as verify starts reading just
//! before it waits.

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, Int64Builder, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::row::{OwnedRow, RowConverter, SortField};
use deltalake::datafusion::common::{JoinType, ScalarValue};
use deltalake::datafusion::execution::memory_pool::FairSpillPool;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::functions_window::expr_fn::row_number;
use deltalake::datafusion::logical_expr::{
    col, create_udf, lit, ColumnarValue, Expr, ExprFunctionExt, ScalarUDF, Volatility,
};
use deltalake::datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use deltalake::DeltaTable;
use futures::StreamExt;
use tidemark_core::position::{file_number, BinlogPosition, SourceState};
use tidemark_core::schema::{TableSchema, INGEST_TS, OP, SEQ, SOURCE_POS, VALID_FROM};
use tidemark_lake::{committed_state, TableKind, Warehouse};

use crate::{Error, Result};

/// Memory DataFusion may use before spilling, per table verified: verify runs beside
/// capture and serving, and the lake pass is a stream, not a collection.
const MEMORY_LIMIT: usize = 256 << 20;

/// A session for verify's lake reads: bounded memory, spilling sorts.
pub fn session() -> SessionContext {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(MEMORY_LIMIT)))
        .build_arc()
        .expect("runtime");
    SessionContext::new_with_config_rt(SessionConfig::new(), runtime)
}

/// `tidemark_binlog_order(_source_pos)`: a binlog position `file.000123:4567` as one
/// number that orders positions of one server (file number, then offset); NULL for
/// positions that are not binlog coordinates (snapshot rows, pulls).
pub fn binlog_order_udf() -> ScalarUDF {
    create_udf(
        "tidemark_binlog_order",
        vec![DataType::Utf8],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let a = cast(&arrays[0], &DataType::Utf8)?;
            let s = a.as_string::<i32>();
            let mut out = Int64Builder::with_capacity(s.len());
            for i in 0..s.len() {
                out.append_option(if s.is_null(i) {
                    None
                } else {
                    binlog_order(s.value(i))
                });
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// See [`binlog_order_udf`].
pub fn binlog_order(pos: &str) -> Option<i64> {
    let (file, off) = pos.rsplit_once(':')?;
    let off: u64 = off.parse().ok()?;
    if !file.contains('.') {
        return None;
    }
    Some(((file_number(file) as i64) << 32) | (off as i64 & 0xffff_ffff))
}

/// [`binlog_order`] of a position.
pub fn order_of(p: &BinlogPosition) -> i64 {
    ((p.file_number() as i64) << 32) | (p.pos as i64 & 0xffff_ffff)
}

/// A table's current table and history log, loaded once.
pub struct LakeTable {
    pub(crate) schema: Arc<TableSchema>,
    ctx: SessionContext,
    cur: DeltaTable,
    closed: Option<DeltaTable>,
    log: Arc<dyn deltalake::datafusion::catalog::TableProvider>,
    /// The history's committed state (binlog position, snapshot progress).
    pub state: SourceState,
}

impl LakeTable {
    /// The committed state of the table's history (cheap: for waiting).
    pub async fn committed(wh: &Warehouse, schema: &TableSchema) -> Result<Option<SourceState>> {
        let url = wh.table_url(&schema.name.schema, &schema.name.table, TableKind::History);
        let (hist, exists) = wh.delta_table(&url).await?;
        if !exists {
            return Ok(None);
        }
        Ok(Some(committed_state(&hist).await?.state))
    }

    /// Load the table: the current table first, then the log, so the log covers the
    /// base's mark (as the query engine loads them).
    pub async fn load(wh: &Warehouse, schema: Arc<TableSchema>) -> Result<Self> {
        let ctx = session();
        let n = &schema.name;
        let (cur, cur_ok) = wh
            .delta_table(&wh.table_url(&n.schema, &n.table, TableKind::Current))
            .await?;
        let (closed, closed_ok) = wh
            .delta_table(&wh.table_url(&n.schema, &n.table, TableKind::Closed))
            .await?;
        let closed = closed_ok.then_some(closed);
        let (hist, hist_ok) = wh
            .delta_table(&wh.table_url(&n.schema, &n.table, TableKind::History))
            .await?;
        if !(cur_ok && hist_ok) {
            return Err(Error::NotLanded(n.source()));
        }
        // The lake's own record of the table's shape (it may be newer than what was
        // discovered, after a schema change).
        let schema = Arc::new(tidemark_lake::stored_schema(&hist).unwrap_or((*schema).clone()));
        cur.update_datafusion_session(&ctx.state())?;
        if let Some(c) = &closed {
            c.update_datafusion_session(&ctx.state())?;
        }
        hist.update_datafusion_session(&ctx.state())?;
        let log =
            tidemark_lake::mor::logical_log(&ctx, &schema, tidemark_lake::provider(&hist).await?)?;
        let state = committed_state(&hist).await?.state;
        Ok(Self {
            schema,
            ctx,
            cur,
            closed,
            log,
            state,
        })
    }

    /// The history log, as the table's columns.
    pub fn log_frame(&self) -> Result<DataFrame> {
        Ok(self.ctx.read_table(self.log.clone())?)
    }

    /// The versions readers see (`db_history.t`, `AS OF`): tombstones dropped, with
    /// `_valid_to`.
    pub async fn versions(&self) -> Result<DataFrame> {
        let mark = committed_state(&self.cur).await?.state.merged_through_us;
        let tail_empty = match mark {
            Some(m) => tidemark_lake::mor::tail_is_empty(&self.ctx, self.log.clone(), m).await?,
            None => false,
        };
        // A scratch context for the names the plan registers, on the same runtime
        // (memory pool, object stores).
        let scratch =
            SessionContext::new_with_config_rt(SessionConfig::new(), self.ctx.runtime_env());
        let v = tidemark_lake::closed::plan_versions_in(
            &scratch,
            &self.schema,
            &self.cur,
            mark,
            self.closed.as_ref(),
            self.log.clone(),
            tail_empty,
        )
        .await?;
        Ok(v.live)
    }

    /// The session the frames are planned in.
    pub fn ctx(&self) -> &SessionContext {
        &self.ctx
    }

    /// The current state as SQL reads `schema.table` (source columns only).
    pub async fn current(&self) -> Result<DataFrame> {
        let mark = committed_state(&self.cur).await?.state.merged_through_us;
        let base = tidemark_lake::provider(&self.cur).await?;
        let df = match mark {
            Some(m) => {
                tidemark_lake::mor::plan_current(
                    &self.ctx,
                    &self.schema,
                    base,
                    self.log.clone(),
                    m,
                    None,
                )
                .await?
            }
            None => self.ctx.read_table(base)?,
        };
        Ok(df.select(self.source_columns())?)
    }

    /// The source columns, cast to their mapped types.
    pub(crate) fn source_columns(&self) -> Vec<Expr> {
        self.schema
            .columns
            .iter()
            .map(|c| {
                deltalake::datafusion::logical_expr::cast(
                    col(deltalake::datafusion::common::Column::new_unqualified(
                        &c.name,
                    )),
                    c.mysql_type().arrow_type(),
                )
                .alias(&c.name)
            })
            .collect()
    }

    fn key_cols(&self) -> Vec<Expr> {
        self.schema
            .key_names()
            .iter()
            .map(|k| col(deltalake::datafusion::common::Column::new_unqualified(*k)))
            .collect()
    }

    /// Each key's last version in the log, unless a delete: what the current table
    /// must hold (source columns).
    pub fn last_versions(&self) -> Result<DataFrame> {
        Ok(self
            .log_frame()?
            .window(vec![self.last_of_key()?])?
            .filter(
                col("__tidemark_rn")
                    .eq(lit(1u64))
                    .and(col(OP).not_eq(lit("d"))),
            )?
            .select(self.source_columns())?)
    }

    /// `ROW_NUMBER()` 1 for each key's last change in the log.
    fn last_of_key(&self) -> Result<Expr> {
        Ok(row_number()
            .partition_by(self.key_cols())
            .order_by(vec![
                col(VALID_FROM).sort(false, false),
                col(SEQ).sort(false, false),
                col(INGEST_TS).sort(false, false),
            ])
            .build()?
            .alias("__tidemark_rn"))
    }

    /// The state at binlog position `p`: source columns, one row per key present.
    pub async fn state_at(&self, p: &BinlogPosition) -> Result<DataFrame> {
        // NULL (not a binlog position: snapshot rows) is before every position.
        let after = order_expr().gt(lit(order_of(p))).is_true();
        let log = self.ctx.read_table(self.log.clone())?;
        let keys: Vec<String> = self
            .schema
            .key_names()
            .iter()
            .map(|k| k.to_string())
            .collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        // Keys changed after `p`, under their own names so the joins are unambiguous.
        let changed_names: Vec<String> = keys.iter().map(|k| format!("__tidemark_k_{k}")).collect();
        // Few keys (those changed since verify read the source): collected, so the
        // joins below build their hash tables on them, never on the current table.
        let changed_batches = log
            .clone()
            .filter(after.clone())?
            .select(
                self.key_cols()
                    .into_iter()
                    .zip(&changed_names)
                    .map(|(e, n)| e.alias(n))
                    .collect::<Vec<_>>(),
            )?
            .distinct()?
            .collect()
            .await?;
        if changed_batches.iter().all(|b| b.num_rows() == 0) {
            return self.current().await;
        }
        let changed = self.ctx.read_batches(changed_batches)?;
        let changed_refs: Vec<&str> = changed_names.iter().map(String::as_str).collect();
        let untouched = self.current().await?.join(
            changed.clone(),
            JoinType::LeftAnti,
            &key_refs,
            &changed_refs,
            None,
        )?;
        let last = self.last_of_key()?;
        let before = log
            .filter(!after)?
            .join(changed, JoinType::LeftSemi, &key_refs, &changed_refs, None)?
            .window(vec![last])?
            .filter(
                col("__tidemark_rn")
                    .eq(lit(1u64))
                    .and(col(OP).not_eq(lit("d"))),
            )?
            .select(self.source_columns())?;
        Ok(untouched.union(before)?)
    }
}

/// `tidemark_binlog_order(CAST(_source_pos AS Utf8))`.
fn order_expr() -> Expr {
    binlog_order_udf().call(vec![deltalake::datafusion::logical_expr::cast(
        col(SOURCE_POS),
        DataType::Utf8,
    )])
}

/// Keys as comparable rows (Arrow's row format orders as the columns' types do:
/// numbers, decimals, dates and instants by value, text and binary bytewise).
pub struct Keys {
    conv: RowConverter,
    types: Vec<DataType>,
    index: Vec<usize>,
}

impl Keys {
    /// For `schema`'s key columns, found at `index` in the batches given.
    pub fn new(schema: &TableSchema) -> Result<Self> {
        let types: Vec<DataType> = schema
            .key
            .iter()
            .map(|&i| schema.columns[i].mysql_type().arrow_type())
            .collect();
        let conv = RowConverter::new(types.iter().cloned().map(SortField::new).collect())?;
        Ok(Self {
            conv,
            types,
            index: schema.key.clone(),
        })
    }

    /// The keys of `columns` (the table's source columns).
    pub fn rows(&self, columns: &[ArrayRef]) -> Result<deltalake::arrow::row::Rows> {
        let cols: Vec<ArrayRef> = self
            .index
            .iter()
            .zip(&self.types)
            .map(|(&i, t)| cast(&columns[i], t))
            .collect::<std::result::Result<_, _>>()?;
        Ok(self.conv.convert_columns(&cols)?)
    }

    /// One key as an owned row.
    pub fn one(&self, columns: &[ArrayRef], row: usize) -> Result<OwnedRow> {
        Ok(self.rows(columns)?.row(row).owned())
    }
}

/// A key's value as a DataFusion literal (for range filters on the lake).
pub fn scalar(a: &ArrayRef, row: usize) -> Result<ScalarValue> {
    Ok(ScalarValue::try_from_array(a, row)?)
}

/// Stream `df`, calling `f` with each non-empty batch.
pub async fn for_each_batch(
    df: DataFrame,
    mut f: impl FnMut(&RecordBatch) -> Result<()>,
) -> Result<()> {
    let mut stream = df.execute_stream().await?;
    while let Some(b) = stream.next().await {
        let b = b?;
        if b.num_rows() > 0 {
            f(&b)?;
        }
    }
    Ok(())
}

/// The `(lo, hi]` filter on the key columns, with bounds given as lake-typed values.
pub fn range_filter(
    schema: &TableSchema,
    lo: Option<&[ScalarValue]>,
    hi: Option<&[ScalarValue]>,
) -> Option<Expr> {
    let keys: Vec<Expr> = schema
        .key_names()
        .iter()
        .map(|k| col(deltalake::datafusion::common::Column::new_unqualified(*k)))
        .collect();
    // (k1, k2) > (a, b)  ≡  k1 > a OR (k1 = a AND k2 > b)
    let after = |bound: &[ScalarValue]| -> Expr {
        let mut ors: Option<Expr> = None;
        for i in 0..keys.len() {
            let mut and: Option<Expr> = None;
            for j in 0..i {
                let e = keys[j].clone().eq(lit(bound[j].clone()));
                and = Some(match and {
                    Some(a) => a.and(e),
                    None => e,
                });
            }
            let e = keys[i].clone().gt(lit(bound[i].clone()));
            let e = match and {
                Some(a) => a.and(e),
                None => e,
            };
            ors = Some(match ors {
                Some(o) => o.or(e),
                None => e,
            });
        }
        ors.expect("a key has a column")
    };
    let parts: Vec<Expr> = [lo.map(after), hi.map(|h| !after(h))]
        .into_iter()
        .flatten()
        .collect();
    parts.into_iter().reduce(Expr::and)
}
