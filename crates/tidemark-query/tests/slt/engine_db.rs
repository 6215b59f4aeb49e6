//! The sqllogictest adapter for [`Engine`]: the SQL surface `tidemark sql` uses.
//!
//! Kept to one small type so the same `.slt` files can later run over the PostgreSQL
//! wire protocol through a second adapter next to this one.

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::array::{Array, RecordBatch};
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tidemark_query::Engine;

/// One "connection": the engine is read-only and shared, so connections are free.
pub struct EngineDb {
    pub engine: Arc<Engine>,
}

/// How a result column's type is written in a `query` header: `I` integers, `R`
/// floats and decimals, `T` text, `?` anything else (timestamps, booleans).
fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => DefaultColumnType::FloatingPoint,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

/// Cells as the sqllogictest convention writes them: `NULL`, `(empty)` for an empty
/// string (a blank cell could not be told apart from a missing one), Arrow's display
/// otherwise (timestamps as `2026-10-01T00:00:00Z`).
fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, tidemark_query::Error> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let formatters = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tidemark_query::Error::Sql(e.to_string()))?;
        for r in 0..b.num_rows() {
            out.push(
                formatters
                    .iter()
                    .zip(b.columns())
                    .map(|(f, c)| {
                        let s = f.value(r).to_string();
                        if s.is_empty() && !c.is_null(r) {
                            "(empty)".to_string()
                        } else {
                            s
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(out)
}

#[async_trait]
impl AsyncDB for EngineDb {
    type Error = tidemark_query::Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        let df = self.engine.sql(sql).await?;
        // The schema comes from the plan, so an empty result still has column types.
        let types = df
            .schema()
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let batches = df.collect().await?;
        Ok(DBOutput::Rows {
            types,
            rows: rows(&batches)?,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tidemark"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}
