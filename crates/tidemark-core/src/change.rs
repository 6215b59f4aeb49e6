//! The change model: rows with an operation, a source instant and a source position.
//!
//! Every source (snapshot, watermark pull, the demo generator, and later the binlog,
//! Kafka and file sources) produces [`ChangeBatch`]es; the lake writer lands them. A
//! batch is plain Arrow — the source columns followed by `_op`, `_source_ts`,
//! `_source_pos` and `_seq` — so the hot path never goes through a row type.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};

use crate::schema::TableSchema;
use crate::types::ColumnBuilder;
use crate::{Error, Result};

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read by a snapshot.
    Read,
    /// Inserted.
    Create,
    /// Updated.
    Update,
    /// Deleted (the row carries at least the key).
    Delete,
}

impl Op {
    /// The one-letter code stored in `_op`.
    pub fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
        }
    }
}

/// A typed value, for sources that do not speak MySQL's text protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// Any signed integer.
    Int(i64),
    /// An unsigned integer too big for i64.
    UInt(u64),
    /// FLOAT or DOUBLE.
    Float(f64),
    /// DECIMAL as exact text.
    Decimal(String),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
    /// BIT(1).
    Bool(bool),
}

/// A batch of changes to one table, in source order.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// The table's schema.
    pub table: Arc<TableSchema>,
    /// Source columns then `_op`, `_source_ts`, `_source_pos`, `_seq`.
    pub data: RecordBatch,
}

/// Builds a [`ChangeBatch`] row by row.
#[derive(Debug)]
pub struct ChangeBatchBuilder {
    table: Arc<TableSchema>,
    columns: Vec<ColumnBuilder>,
    op: StringBuilder,
    ts: TimestampMicrosecondBuilder,
    pos: StringBuilder,
    seq: Int64Builder,
    rows: usize,
    /// A row failed half-way: columns are out of step, so the builder is unusable.
    /// Arrow builders cannot take a value back; callers drop the builder (and the
    /// batch it was building) on error, and `finish` refuses if they do not.
    poisoned: bool,
}

impl ChangeBatchBuilder {
    /// A builder for `capacity` rows of `table`.
    pub fn new(table: Arc<TableSchema>, capacity: usize) -> Self {
        let columns = table
            .columns
            .iter()
            .map(|c| ColumnBuilder::new(c.mysql_type(), capacity))
            .collect();
        Self {
            table,
            columns,
            op: StringBuilder::with_capacity(capacity, capacity),
            ts: TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            pos: StringBuilder::with_capacity(capacity, capacity * 24),
            seq: Int64Builder::with_capacity(capacity),
            rows: 0,
            poisoned: false,
        }
    }

    /// Rows so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// No rows yet.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    fn meta(&mut self, op: Op, source_ts_us: i64, source_pos: &str, seq: i64) {
        self.op.append_value(op.code());
        self.ts.append_value(source_ts_us);
        self.pos.append_value(source_pos);
        self.seq.append_value(seq);
        self.rows += 1;
    }

    fn decode_err(&self, col: usize, message: String) -> Error {
        Error::Decode {
            table: self.table.name.source(),
            column: self.table.columns[col].source_name.clone(),
            message,
        }
    }

    fn row_err(&self, message: String) -> Error {
        Error::Decode {
            table: self.table.name.source(),
            column: "(whole row)".into(),
            message,
        }
    }

    /// Append a row given as MySQL text-protocol cells, one per column.
    pub fn push_text_row<'a>(
        &mut self,
        cells: impl IntoIterator<Item = Option<&'a [u8]>>,
        op: Op,
        source_ts_us: i64,
        source_pos: &str,
        seq: i64,
    ) -> Result<()> {
        let mut n = 0;
        for (i, cell) in cells.into_iter().enumerate() {
            if let Err(m) = self.columns[i].push_text(cell) {
                self.poisoned = true;
                return Err(self.decode_err(i, m));
            }
            n += 1;
        }
        if n != self.columns.len() {
            self.poisoned = true;
            return Err(self.row_err(format!(
                "row has {n} cells for {} columns",
                self.columns.len()
            )));
        }
        self.meta(op, source_ts_us, source_pos, seq);
        Ok(())
    }

    /// Append a row of typed values, one per column.
    pub fn push_values(
        &mut self,
        values: &[crate::change::Value],
        op: Op,
        source_ts_us: i64,
        source_pos: &str,
        seq: i64,
    ) -> Result<()> {
        if values.len() != self.columns.len() {
            return Err(self.decode_err(
                0,
                format!(
                    "row has {} values for {} columns",
                    values.len(),
                    self.columns.len()
                ),
            ));
        }
        // All or nothing: a value that does not fit leaves the builder as it was, so
        // one bad event does not cost the batch it would have joined.
        let mut prepared = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            match self.columns[i].prepare(v) {
                Ok(p) => prepared.push(p),
                Err(m) => return Err(self.decode_err(i, m)),
            }
        }
        for (c, p) in self.columns.iter_mut().zip(prepared) {
            c.append_prepared(p);
        }
        self.meta(op, source_ts_us, source_pos, seq);
        Ok(())
    }

    /// Values per column that were not instants and became NULL since the last call.
    pub fn take_invalid_counts(&mut self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (i, c) in self.columns.iter_mut().enumerate() {
            if c.invalid > 0 {
                out.push((self.table.columns[i].source_name.clone(), c.invalid));
                c.invalid = 0;
            }
        }
        out
    }

    /// Finish the rows so far into a batch; the builder is empty afterwards.
    pub fn finish(&mut self) -> Result<ChangeBatch> {
        if self.poisoned {
            return Err(self
                .row_err("a row failed to decode part-way; this batch cannot be finished".into()));
        }
        let mut cols: Vec<ArrayRef> = self.columns.iter_mut().map(|c| c.finish()).collect();
        cols.push(Arc::new(self.op.finish()));
        cols.push(Arc::new(self.ts.finish()));
        cols.push(Arc::new(self.pos.finish()));
        cols.push(Arc::new(self.seq.finish()));
        self.rows = 0;
        let data = RecordBatch::try_new(self.table.change_schema(), cols)?;
        Ok(ChangeBatch {
            table: self.table.clone(),
            data,
        })
    }
}
