//! The source side of `tidemark verify`: one consistent read per table, its binlog
//! position, and checksums of key ranges computed by the server, so only a count and
//! a checksum per chunk cross the network (pt-table-checksum's method).
//!
//! A row's checksum is `CRC32` of its values rendered as text and joined with `#`,
//! with a string of NULL flags at the end (`CONCAT_WS` skips NULLs). Each column is
//! rendered as tidemark's type mapping stores it, so the lake side
//! (`tidemark-verify`) renders the stored Arrow value to the same text: zero dates
//! as NULL, datetimes with six fractional digits, binary values as hex, FLOAT widened
//! to DOUBLE, text converted to utf8mb4. A chunk's checksum is the `BIT_XOR` of its
//! rows' and its count. Where a rendering could still differ (a rule of the server's
//! float formatting not mirrored), the mismatching chunk is bisected down to rows and
//! the rows are compared by value, so a rendering difference costs a row fetch,
//! never a false difference.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tidemark_core::change::{ChangeBatch, Op};
use tidemark_core::position::{BinlogPosition, KeyValue};
use tidemark_core::schema::TableSchema;
use tidemark_core::types::MySqlType;

use crate::connect::Source;
use crate::discover::binlog_position;
use crate::snapshot::{
    key_after, key_at_most, quote_ident, quoted_table, read_chunk, Limit, ReadAs,
};
use crate::{Error, Result};

/// A key range `(lo, hi]`; `None` is open on that side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// Exclusive lower bound.
    pub lo: Option<Vec<KeyValue>>,
    /// Inclusive upper bound.
    pub hi: Option<Vec<KeyValue>>,
}

impl KeyRange {
    fn filter(&self, schema: &TableSchema) -> Option<String> {
        let parts: Vec<String> = [
            self.lo.as_ref().map(|k| key_after(schema, k)),
            self.hi.as_ref().map(|k| key_at_most(schema, k)),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!parts.is_empty()).then(|| parts.join(" AND "))
    }
}

/// A chunk's count and checksum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    /// Rows.
    pub rows: u64,
    /// `BIT_XOR` of the rows' CRC32.
    pub crc: u32,
}

/// A key: its literal form for the next query, and the row it came from as the lake
/// stores it (for comparing with lake keys).
#[derive(Debug, Clone)]
pub struct Boundary {
    /// For SQL.
    pub key: Vec<KeyValue>,
    /// The row, decoded as a snapshot decodes it.
    pub row: ChangeBatch,
}

/// One table's consistent read: a `REPEATABLE READ` transaction with a consistent
/// snapshot, and the binlog position its read view holds for.
pub struct SourceRead {
    source: Source,
    conn: Conn,
    schema: Arc<TableSchema>,
    /// The binlog position the read view is at.
    pub position: BinlogPosition,
    /// When the read view opened (µs, UTC, this machine's clock).
    pub at_us: i64,
    row_sql: String,
}

impl std::fmt::Debug for SourceRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceRead")
            .field("table", &self.schema.name.source())
            .field("position", &self.position)
            .finish()
    }
}

/// How many times a MySQL (not MariaDB) read is retried until no commit falls
/// between the position read and the read view.
const MYSQL_POSITION_TRIES: usize = 20;

impl SourceRead {
    /// Open a consistent read of `schema`'s table on its own connection.
    ///
    /// MariaDB gives the read view's exact position (`binlog_snapshot_file` /
    /// `_position`). MySQL does not: the position is read before and after the view
    /// opens, and the read is taken again until the two are equal, so no commit can
    /// fall between them (a busy server gets [`MYSQL_POSITION_TRIES`] tries, then an
    /// error saying so).
    pub async fn open(source: &Source, schema: Arc<TableSchema>) -> Result<Self> {
        let table = schema.name.source();
        let mut conn = source.conn().await?;
        let q = |e| source.query_error(&table, e);
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(q)?;
        let no_binlog = || {
            Error::Query {
            source_name: source.name.clone(),
            table: table.clone(),
            message: "no binlog position (binary logging off, or the user lacks REPLICATION CLIENT): verify compares the lake with the source at a binlog position".into(),
        }
        };
        for _ in 0..MYSQL_POSITION_TRIES {
            let before = binlog_position(source, &mut conn).await?;
            let at_us = now_us();
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await
                .map_err(q)?;
            let position = if source.is_mariadb() {
                mariadb_view_position(source, &mut conn)
                    .await?
                    .or(before.clone())
            } else {
                let after = binlog_position(source, &mut conn).await?;
                if before.as_ref().map(BinlogPosition::order_key)
                    != after.as_ref().map(BinlogPosition::order_key)
                {
                    conn.query_drop("ROLLBACK").await.map_err(q)?;
                    continue;
                }
                after
            };
            let position = position.ok_or_else(no_binlog)?;
            let row_sql = row_checksum_sql(&schema);
            return Ok(Self {
                source: source.clone(),
                conn,
                schema,
                position,
                at_us,
                row_sql,
            });
        }
        Err(Error::Query {
            source_name: source.name.clone(),
            table,
            message: format!("commits kept arriving between reading the binlog position and opening the read view ({MYSQL_POSITION_TRIES} tries); run verify on a replica, or when the source is quieter"),
        })
    }

    /// The count and checksum of the rows in `range`.
    pub async fn checksum(&mut self, range: &KeyRange) -> Result<Checksum> {
        let mut sql = format!(
            "SELECT COUNT(*), COALESCE(BIT_XOR({}), 0) FROM {}",
            self.row_sql,
            quoted_table(&self.schema)
        );
        if let Some(f) = range.filter(&self.schema) {
            sql.push_str(&format!(" WHERE {f}"));
        }
        let table = self.schema.name.source();
        let row: Option<(u64, u64)> = self
            .conn
            .query_first(sql)
            .await
            .map_err(|e| self.source.query_error(&table, e))?;
        let (rows, crc) = row.unwrap_or((0, 0));
        Ok(Checksum {
            rows,
            crc: crc as u32,
        })
    }

    /// The key `skip + 1` rows after `after` in key order (the end of a chunk of that
    /// many rows), or `None` when fewer rows are left. `before` bounds the search.
    /// The boundary's row holds only the key's values.
    pub async fn boundary(
        &mut self,
        after: Option<&[KeyValue]>,
        before: Option<&[KeyValue]>,
        skip: u64,
    ) -> Result<Option<Boundary>> {
        let range = KeyRange {
            lo: after.map(<[KeyValue]>::to_vec),
            hi: before.map(<[KeyValue]>::to_vec),
        };
        // The key alone (NULL for the other columns): the server walks the primary
        // key without reading the rows' values.
        let select = self
            .schema
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if self.schema.key.contains(&i) {
                    quote_ident(&c.source_name)
                } else {
                    "NULL".to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let chunk = self
            .read(
                select,
                &range,
                Some(Limit {
                    offset: skip,
                    rows: 1,
                }),
            )
            .await?;
        Ok(match (chunk.last_key, chunk.batches.into_iter().next()) {
            (Some(key), Some(row)) => Some(Boundary { key, row }),
            _ => None,
        })
    }

    /// The rows in `range`, decoded as a snapshot decodes them (in key order).
    pub async fn rows(&mut self, range: &KeyRange) -> Result<Vec<ChangeBatch>> {
        let select = crate::snapshot::select_list(&self.schema);
        Ok(self.read(select, range, None).await?.batches)
    }

    /// Read `select` over `range` in key order, through the snapshot's decoders.
    async fn read(
        &mut self,
        select: String,
        range: &KeyRange,
        limit: Option<Limit>,
    ) -> Result<crate::snapshot::Chunk> {
        let how = ReadAs {
            select,
            op: Op::Read,
            source_ts_us: 0,
            source_pos: "verify",
        };
        read_chunk(
            &self.source,
            &mut self.conn,
            &self.schema,
            range.filter(&self.schema),
            limit,
            &how,
        )
        .await
    }

    /// End the read (the transaction) and give the connection back.
    pub async fn close(mut self) {
        let _ = self.conn.query_drop("COMMIT").await;
    }
}

async fn mariadb_view_position(source: &Source, conn: &mut Conn) -> Result<Option<BinlogPosition>> {
    crate::snapshot::mariadb_snapshot_position(source, conn).await
}

fn now_us() -> i64 {
    crate::snapshot::now_us()
}

/// The collation of each key column (`None` for columns that are not text).
pub async fn key_collations(source: &Source, schema: &TableSchema) -> Result<Vec<Option<String>>> {
    let mut conn = source.conn().await?;
    let table = schema.name.source();
    let mut out = Vec::new();
    for &i in &schema.key {
        let c: Option<Option<String>> = conn
            .exec_first(
                "SELECT COLLATION_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?",
                (
                    &schema.name.source_db,
                    &schema.name.source_table,
                    &schema.columns[i].source_name,
                ),
            )
            .await
            .map_err(|e| source.query_error(&table, e))?;
        out.push(c.flatten());
    }
    Ok(out)
}

/// `CRC32(CONCAT_WS('#', <each column rendered>, <NULL flags>))` for `schema`.
pub fn row_checksum_sql(schema: &TableSchema) -> String {
    let mut parts = Vec::new();
    let mut flags = Vec::new();
    for c in &schema.columns {
        let q = quote_ident(&c.source_name);
        let ty = c.mysql_type();
        parts.push(render_sql(ty, &q));
        // Only values that are not instants become NULL in rendering; other
        // columns' flags need not compute the rendering twice.
        flags.push(match ty {
            MySqlType::Date | MySqlType::DateTime | MySqlType::Timestamp | MySqlType::Year => {
                format!("ISNULL({})", render_sql(ty, &q))
            }
            _ => format!("ISNULL({q})"),
        });
    }
    parts.push(format!("CONCAT({})", flags.join(", ")));
    format!("CRC32(CONCAT_WS('#', {}))", parts.join(", "))
}

/// A column's value as the text the lake side renders from its stored value.
fn render_sql(ty: MySqlType, q: &str) -> String {
    use MySqlType::*;
    // Values that are not instants (zero dates, zero month or day) land as NULL.
    let not_instant = format!("MONTH({q}) = 0 OR DAYOFMONTH({q}) = 0");
    match ty {
        TinyInt { .. } | SmallInt { .. } | MediumInt { .. } | Int { .. } | BigInt { .. } => {
            q.to_string()
        }
        Decimal { .. } => q.to_string(),
        Year => format!("NULLIF({q}, 0)"),
        Bit(_) => format!("({q} + 0)"),
        Float => format!("CAST({q} AS DOUBLE)"),
        Double => q.to_string(),
        Date => format!("IF({not_instant}, NULL, {q})"),
        DateTime | Timestamp => {
            format!("IF({not_instant}, NULL, DATE_FORMAT({q}, '%Y-%m-%d %H:%i:%s.%f'))")
        }
        Time => q.to_string(),
        Text => format!("CONVERT({q} USING utf8mb4)"),
        Binary => format!("HEX({q})"),
        Geometry => format!("HEX(ST_AsBinary({q}))"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_row_checksum_renders_each_type_as_the_lake_stores_it() {
        let q = "`c`";
        assert_eq!(render_sql(MySqlType::Float, q), "CAST(`c` AS DOUBLE)");
        assert!(render_sql(MySqlType::DateTime, q).contains("%Y-%m-%d %H:%i:%s.%f"));
        assert_eq!(render_sql(MySqlType::Binary, q), "HEX(`c`)");
    }
}
