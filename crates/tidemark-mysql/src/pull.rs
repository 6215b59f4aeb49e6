//! Incremental batch pulls by a watermark column, for tables without change capture:
//! the source side (what to read, and how marks compare). `tidemark_capture::sources::pull`
//! lands what is read.
//!
//! `tidemark pull` reads the rows whose watermark (`updated_at`, say) is at or above
//! the last committed watermark and lands those that differ from what each Delta
//! table holds: new keys as inserts, changed rows as updates. Reading `>=` rather than
//! `>` re-reads the boundary, so a row committed later with the same watermark value is
//! not missed; the diff makes the re-read harmless.
//!
//! Deletes are invisible to this method (a deleted row has no watermark to find).
//! A reconcile finds them by comparing the source's key set ([`read_keys`]) with the landed one.
//! A watermark only helps if the application maintains it: `ON UPDATE
//! CURRENT_TIMESTAMP(6)` or equivalent. Rows written by a long transaction whose
//! watermark is older than the last pull are missed until a reconcile or resnapshot;
//! change capture from the binlog has neither limit.

use std::cmp::Ordering;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tidemark_core::change::Op;
use tidemark_core::position::KeyValue;
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_core::types::MySqlType;

use crate::connect::Source;
use crate::snapshot::{literal, quote_ident, quoted_table, read_chunk, Chunk, ReadAs};
use crate::{Error, Result};

/// How two watermark values of a column of type `ty` compare.
pub fn compare(ty: MySqlType, a: &str, b: &str) -> Ordering {
    use deltalake::arrow::datatypes::DataType;
    match ty.arrow_type() {
        // Integers compare exactly ("9" < "10", and no f64 rounding above 2^53, which
        // could pick the newer mark as the older one and skip rows).
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            match (a.trim().parse::<i128>(), b.trim().parse::<i128>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => a.cmp(b),
            }
        }
        DataType::Decimal128(_, s) => {
            let p = |v: &str| tidemark_core::types::parse_decimal(v, s).ok();
            match (p(a), p(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => a.cmp(b),
            }
        }
        // Dates, datetimes and timestamps come in one fixed-width format per column
        // and compare as text.
        _ => a.cmp(b),
    }
}

/// The watermark column the config names for `schema`'s table, or an error saying
/// how to name one.
pub fn watermark_column(source: &Source, schema: &TableSchema) -> Result<ColumnSchema> {
    let name = schema.name.source();
    let opts = source
        .config
        .table_options(&schema.name.source_db, &schema.name.source_table);
    let wm_name = opts.watermark.ok_or_else(|| {
        Error::Core(tidemark_core::Error::Config {
            path: "<config>".into(),
            message: format!(
                "table {name} has no watermark column for `tidemark pull`; set it:\n  [sources.{}.tables.\"{name}\"]\n  watermark = \"updated_at\"",
                source.name
            ),
        })
    })?;
    schema
        .columns
        .iter()
        .find(|c| c.source_name.eq_ignore_ascii_case(&wm_name))
        .cloned()
        .ok_or_else(|| Error::Query {
            source_name: source.name.clone(),
            table: name.clone(),
            message: format!("watermark column {wm_name} does not exist in the table"),
        })
}

/// The highest watermark the table has now. Read before the rows, so a row updated
/// while they are read is at or above it and is read again next time.
pub async fn high_mark(
    source: &Source,
    conn: &mut Conn,
    schema: &TableSchema,
    wm: &ColumnSchema,
) -> Result<Option<String>> {
    let sql = format!(
        "SELECT CAST(MAX({}) AS CHAR) FROM {}",
        quote_ident(&wm.source_name),
        quoted_table(schema)
    );
    Ok(conn
        .query_first::<Option<String>, _>(sql)
        .await
        .map_err(|e| source.query_error(&schema.name.source(), e))?
        .flatten())
}

/// The rows whose watermark is at or above `low` (every row with `None`), as updates
/// stamped `ts` at `pos`.
pub async fn read_since(
    source: &Source,
    conn: &mut Conn,
    schema: &std::sync::Arc<TableSchema>,
    wm: &ColumnSchema,
    low: Option<&str>,
    ts: i64,
    pos: &str,
) -> Result<Chunk> {
    let filter = low.map(|l| {
        format!(
            "{} >= {}",
            quote_ident(&wm.source_name),
            literal(&KeyValue::Text(l.to_string()))
        )
    });
    let how = ReadAs {
        select: crate::snapshot::select_list(schema),
        op: Op::Update,
        source_ts_us: ts,
        source_pos: pos,
    };
    read_chunk(source, conn, schema, filter, None, &how).await
}

/// Every key the table has now (the other columns NULL, so the batch keeps the
/// table's shape), for finding deletes.
pub async fn read_keys(
    source: &Source,
    conn: &mut Conn,
    schema: &std::sync::Arc<TableSchema>,
    ts: i64,
) -> Result<Chunk> {
    let select = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if schema.key.contains(&i) {
                quote_ident(&c.source_name)
            } else {
                format!("NULL AS {}", quote_ident(&c.source_name))
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let how = ReadAs {
        select,
        op: Op::Read,
        source_ts_us: ts,
        source_pos: "reconcile",
    };
    read_chunk(source, conn, schema, None, None, &how).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_compare_exactly() {
        let big = MySqlType::BigInt { unsigned: false };
        // Equal as f64, different as integers.
        assert_eq!(
            compare(big, "9007199254740993", "9007199254740992"),
            Ordering::Greater
        );
        assert_eq!(compare(big, "9", "10"), Ordering::Less);
        let dec = MySqlType::Decimal {
            precision: 12,
            scale: 2,
        };
        assert_eq!(compare(dec, "9.50", "10.00"), Ordering::Less);
        assert_eq!(
            compare(
                MySqlType::DateTime,
                "2026-11-24 10:00:00.000001",
                "2026-11-24 10:00:00.000000"
            ),
            Ordering::Greater
        );
    }
}
