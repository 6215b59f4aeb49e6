//! Turning a change batch into the rows stored in the current and history tables.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use deltalake::arrow::compute::{concat_batches, take_record_batch};
use deltalake::arrow::row::{RowConverter, SortField};
use tidemark_core::change::ChangeBatch;
use tidemark_core::schema::TableSchema;

use crate::{Error, Result};

fn batch_err(batch: &ChangeBatch, e: impl std::fmt::Display) -> Error {
    Error::Batch {
        table: batch.table.name.sql(),
        message: e.to_string(),
    }
}

fn ingest_array(ts_us: i64, rows: usize) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_value(ts_us, rows).with_timezone("UTC"))
}

/// Rows for the history log: every change, deletes included as `_op = 'd'`.
pub fn history_rows(batch: &ChangeBatch, ingest_ts_us: i64) -> Result<RecordBatch> {
    let n = batch.table.columns.len();
    let d = &batch.data;
    let mut cols: Vec<ArrayRef> = d.columns()[..n].to_vec();
    cols.push(ingest_array(ingest_ts_us, d.num_rows()));
    cols.push(d.column(n + 1).clone()); // _source_ts
    cols.push(d.column(n).clone()); // _op
    cols.push(d.column(n + 1).clone()); // _valid_from = _source_ts
    cols.push(d.column(n + 2).clone()); // _source_pos
    cols.push(d.column(n + 3).clone()); // _seq
    RecordBatch::try_new(batch.table.history_schema(), cols).map_err(|e| batch_err(batch, e))
}

/// Rows for the current table from a batch of inserts/reads/updates (no deletes).
pub fn current_rows(batch: &ChangeBatch, ingest_ts_us: i64) -> Result<RecordBatch> {
    let n = batch.table.columns.len();
    let d = &batch.data;
    let mut cols: Vec<ArrayRef> = d.columns()[..n].to_vec();
    cols.push(ingest_array(ingest_ts_us, d.num_rows()));
    cols.push(d.column(n + 1).clone());
    cols.push(d.column(n).clone());
    cols.push(d.column(n + 2).clone()); // _source_pos
    cols.push(d.column(n + 3).clone()); // _seq
    RecordBatch::try_new(batch.table.current_schema(), cols).map_err(|e| batch_err(batch, e))
}

/// The last change per key, in source order, and whether it is a delete.
///
/// Several changes to one key in a batch collapse to the last one, because the current
/// table only needs the final state; history keeps them all.
pub fn collapse_by_key(batch: &ChangeBatch) -> Result<(ChangeBatch, BooleanArray)> {
    let d = &batch.data;
    let keys: Vec<ArrayRef> = batch
        .table
        .key
        .iter()
        .map(|&i| d.column(i).clone())
        .collect();
    let fields = keys
        .iter()
        .map(|a| SortField::new(a.data_type().clone()))
        .collect();
    let conv = RowConverter::new(fields).map_err(|e| batch_err(batch, e))?;
    let rows = conv
        .convert_columns(&keys)
        .map_err(|e| batch_err(batch, e))?;
    let mut last: HashMap<_, u32> = HashMap::with_capacity(d.num_rows());
    for i in 0..d.num_rows() {
        last.insert(rows.row(i), i as u32);
    }
    let mut idx: Vec<u32> = last.into_values().collect();
    idx.sort_unstable();
    let taken = take_record_batch(d, &UInt32Array::from(idx)).map_err(|e| batch_err(batch, e))?;
    let op = taken
        .column(batch.table.columns.len())
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| batch_err(batch, "_op is not a string column"))?;
    let deleted: BooleanArray = op.iter().map(|o| Some(o == Some("d"))).collect();
    Ok((
        ChangeBatch {
            table: batch.table.clone(),
            data: taken,
        },
        deleted,
    ))
}

/// One batch from several (an empty one for none).
pub fn concat(table: &Arc<TableSchema>, batches: &[ChangeBatch]) -> Result<ChangeBatch> {
    let schema = table.change_schema();
    let data =
        concat_batches(&schema, batches.iter().map(|b| &b.data)).map_err(|e| Error::Batch {
            table: table.name.sql(),
            message: e.to_string(),
        })?;
    Ok(ChangeBatch {
        table: table.clone(),
        data,
    })
}
