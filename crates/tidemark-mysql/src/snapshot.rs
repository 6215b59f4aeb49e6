//! Consistent, chunked snapshots: the source side. A table's rows are read in key
//! order, chunk by chunk, from one consistent read view ([`open_read`]), resuming
//! after a given key; `tidemark_capture::sources::snapshot` lands each chunk with the
//! snapshot's progress in the same commit. See the crate docs for how the binlog
//! position is taken without a global read lock.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};
use tidemark_core::change::{ChangeBatch, ChangeBatchBuilder, Op};
use tidemark_core::position::{BinlogPosition, KeyValue};
use tidemark_core::schema::TableSchema;
use tidemark_core::types::MySqlType;
use tokio::sync::mpsc;
use tracing::warn;

use crate::connect::Source;
use crate::discover::{binlog_position, gtid_at};
use crate::{Error, Result};

/// Rows per Arrow batch inside a chunk.
const BATCH_ROWS: usize = 65_536;

/// `name` → `` `name` ``.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `db`.`table`.
pub fn quoted_table(schema: &TableSchema) -> String {
    format!(
        "{}.{}",
        quote_ident(&schema.name.source_db),
        quote_ident(&schema.name.source_table)
    )
}

/// The select list, reading geometry as WKB.
pub fn select_list(schema: &TableSchema) -> String {
    schema
        .columns
        .iter()
        .map(|c| {
            let q = quote_ident(&c.source_name);
            if c.mysql_type() == MySqlType::Geometry {
                format!("ST_AsBinary({q}) AS {q}")
            } else {
                q
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value as a SQL literal that means the same in every sql_mode and needs no
/// escaping: text as a charset-introduced hex string (`_utf8mb4 X'6b31'`), which is
/// coercible, so comparisons use the column's own collation (the order `ORDER BY`
/// gives); numbers and dates compare with it as they would with `'k1'`.
pub fn literal(v: &KeyValue) -> String {
    match v {
        KeyValue::Text(s) => format!("_utf8mb4 X'{}'", hex(s.as_bytes())),
        KeyValue::Hex(h) => format!("X'{h}'"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `(k1, k2) > (a, b)` spelled so every server uses the primary key range:
/// `k1 > a OR (k1 = a AND k2 > b)`.
pub(crate) fn key_after(schema: &TableSchema, key: &[KeyValue]) -> String {
    let cols: Vec<String> = schema
        .key
        .iter()
        .map(|&i| quote_ident(&schema.columns[i].source_name))
        .collect();
    let ors: Vec<String> = (0..cols.len())
        .map(|i| {
            let mut ands: Vec<String> = (0..i)
                .map(|j| format!("{} = {}", cols[j], literal(&key[j])))
                .collect();
            ands.push(format!("{} > {}", cols[i], literal(&key[i])));
            format!("({})", ands.join(" AND "))
        })
        .collect();
    format!("({})", ors.join(" OR "))
}

/// `key <= k`, for the repair range.
pub(crate) fn key_at_most(schema: &TableSchema, key: &[KeyValue]) -> String {
    format!("NOT {}", key_after(schema, key))
}

fn order_by(schema: &TableSchema) -> String {
    schema
        .key
        .iter()
        .map(|&i| quote_ident(&schema.columns[i].source_name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One chunk read from the source.
#[derive(Debug)]
pub struct Chunk {
    /// The rows, as change batches of the table's shape.
    pub batches: Vec<ChangeBatch>,
    /// How many.
    pub rows: usize,
    /// The key of the last row (chunks are in key order).
    pub last_key: Option<Vec<KeyValue>>,
    /// Values per column that were not instants and were read as NULL.
    pub invalid: Vec<(String, u64)>,
}

/// How to read rows: which select list, op and position to stamp them with.
pub struct ReadAs<'a> {
    /// The select list ([`select_list`], or keys only).
    pub select: String,
    /// The op the rows land as.
    pub op: Op,
    /// Their source instant.
    pub source_ts_us: i64,
    /// Their source position.
    pub source_pos: &'a str,
}

impl ReadAs<'_> {
    fn snapshot(schema: &TableSchema, source_ts_us: i64) -> ReadAs<'static> {
        ReadAs {
            select: select_list(schema),
            op: Op::Read,
            source_ts_us,
            source_pos: "snapshot",
        }
    }
}

/// `LIMIT offset, rows`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Rows skipped.
    pub offset: u64,
    /// Rows read at most.
    pub rows: usize,
}

impl From<usize> for Limit {
    fn from(rows: usize) -> Self {
        Self { offset: 0, rows }
    }
}

/// Read rows matching `filter` in key order (up to `limit`) into change batches.
pub async fn read_chunk(
    source: &Source,
    conn: &mut Conn,
    schema: &Arc<TableSchema>,
    filter: Option<String>,
    limit: Option<Limit>,
    how: &ReadAs<'_>,
) -> Result<Chunk> {
    let mut sql = format!("SELECT {} FROM {}", how.select, quoted_table(schema));
    if let Some(f) = filter {
        sql.push_str(&format!(" WHERE {f}"));
    }
    sql.push_str(&format!(" ORDER BY {}", order_by(schema)));
    if let Some(l) = limit {
        sql.push_str(&format!(" LIMIT {}, {}", l.offset, l.rows));
    }
    let table = schema.name.source();
    let mut builder = ChangeBatchBuilder::new(schema.clone(), BATCH_ROWS);
    let mut batches = Vec::new();
    let mut rows = 0usize;
    let mut last_row: Option<Vec<Option<Value>>> = None;
    let mut failure: Option<tidemark_core::Error> = None;
    let mut invalid: Vec<(String, u64)> = Vec::new();
    let mut result = conn
        .query_iter(sql)
        .await
        .map_err(|e| source.query_error(&table, e))?;
    result
        .for_each(|row| {
            if failure.is_some() {
                return;
            }
            let cells = row.unwrap_raw();
            let r = builder.push_text_row(
                cells.iter().map(|c| match c {
                    Some(Value::Bytes(b)) => Some(b.as_slice()),
                    _ => None,
                }),
                how.op,
                how.source_ts_us,
                how.source_pos,
                0,
            );
            if let Err(e) = r {
                failure = Some(e);
                return;
            }
            rows += 1;
            if builder.len() >= BATCH_ROWS {
                merge_counts(&mut invalid, builder.take_invalid_counts());
                match builder.finish() {
                    Ok(b) => batches.push(b),
                    Err(e) => failure = Some(e),
                }
            }
            last_row = Some(cells);
        })
        .await
        .map_err(|e| source.query_error(&table, e))?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    if !builder.is_empty() {
        merge_counts(&mut invalid, builder.take_invalid_counts());
        batches.push(builder.finish()?);
    }
    let last_key = last_row.map(|cells| {
        schema
            .key
            .iter()
            .map(|&i| {
                let bytes = match &cells[i] {
                    Some(Value::Bytes(b)) => b.as_slice(),
                    _ => &[],
                };
                match schema.columns[i].mysql_type() {
                    MySqlType::Binary => KeyValue::Hex(hex(bytes)),
                    _ => KeyValue::Text(String::from_utf8_lossy(bytes).into_owned()),
                }
            })
            .collect()
    });
    Ok(Chunk {
        batches,
        rows,
        last_key,
        invalid,
    })
}

/// Add `more` invalid-value counts into `into`.
pub fn merge_counts(into: &mut Vec<(String, u64)>, more: Vec<(String, u64)>) {
    for (c, n) in more {
        match into.iter_mut().find(|(x, _)| *x == c) {
            Some((_, m)) => *m += n,
            None => into.push((c, n)),
        }
    }
}

/// Now, in microseconds since the epoch.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The rows a crash left in only one of a table's two Delta tables: the key range
/// after `behind_key` up to and including `ahead_key`, read anew (not with the other
/// table's read view), so its rows are stamped with the instant of this read, never
/// earlier.
pub async fn repair_read(
    source: &Source,
    conn: &mut Conn,
    schema: &Arc<TableSchema>,
    behind_key: Option<&[KeyValue]>,
    ahead_key: &[KeyValue],
) -> Result<Chunk> {
    let mut filter = key_at_most(schema, ahead_key);
    if let Some(k) = behind_key {
        filter = format!("{} AND {filter}", key_after(schema, k));
    }
    let how = ReadAs::snapshot(schema, now_us());
    read_chunk(source, conn, schema, Some(filter), None, &how).await
}

/// The rest of a table from one consistent read view, read in chunks by a task of its
/// own, so chunk k+1 is read while chunk k lands.
#[derive(Debug)]
pub struct SnapshotRead {
    /// The chunks in key order; the last one has fewer than `chunk_rows` rows (maybe
    /// none). Closed after it, or after an error.
    pub chunks: mpsc::Receiver<Result<Chunk>>,
    /// The instant the rows are stamped with: taken just before the view opened.
    pub view_ts_us: i64,
    /// Where change capture can resume for this read: the view's own position on
    /// MariaDB (exact), the position before the view elsewhere (the safe low mark).
    pub low: Option<BinlogPosition>,
    /// The view's position (MariaDB's exact one, else the position just after it
    /// opened).
    pub high: Option<BinlogPosition>,
    task: tokio::task::JoinHandle<()>,
}

impl SnapshotRead {
    /// Wait for the reader task to end (after the last chunk was taken).
    pub async fn finish(self, source: &Source, table: &str) -> Result<()> {
        drop(self.chunks);
        self.task.await.map_err(|e| Error::Query {
            source_name: source.name.clone(),
            table: table.to_string(),
            message: format!("snapshot reader failed: {e}"),
        })
    }
}

/// Open one read view of `schema`'s table on `conn` and read the rows after `after`
/// (all of them with `None`) in chunks of `chunk_rows`.
///
/// Its rows are stamped with an instant taken before the view opens: a resumed
/// snapshot reads values as of now, and stamping them with the first run's start
/// would put later values into the past (AS OF between the two runs would show
/// them). Taken before, not after: a change committed between the stamp and the view
/// is then in the rows and replayed just after them, never replayed *before* older
/// values.
pub async fn open_read(
    source: &Source,
    mut conn: Conn,
    schema: &Arc<TableSchema>,
    after: Option<Vec<KeyValue>>,
    chunk_rows: usize,
) -> Result<SnapshotRead> {
    let name = schema.name.source();
    let view_ts = now_us();
    let low_now = binlog_position(source, &mut conn).await?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(|e| source.query_error(&name, e))?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await
        .map_err(|e| source.query_error(&name, e))?;
    let high_now = if source.is_mariadb() {
        mariadb_snapshot_position(source, &mut conn)
            .await?
            .or(low_now.clone())
    } else {
        binlog_position(source, &mut conn).await?
    };
    if low_now.is_none() {
        warn!(table = %name, "no binlog position (binary logging off or no REPLICATION CLIENT): the snapshot lands, but change capture cannot resume from it");
    }
    let low = if source.is_mariadb() {
        high_now.clone()
    } else {
        low_now
    };
    let (tx, rx) = mpsc::channel::<Result<Chunk>>(1);
    let task = {
        let source = source.clone();
        let schema = schema.clone();
        let mut last = after;
        tokio::spawn(async move {
            let how = ReadAs::snapshot(&schema, view_ts);
            loop {
                let filter = last.as_ref().map(|k| key_after(&schema, k));
                let chunk = read_chunk(
                    &source,
                    &mut conn,
                    &schema,
                    filter,
                    Some(chunk_rows.into()),
                    &how,
                )
                .await;
                let stop = match &chunk {
                    Ok(c) => {
                        last = c.last_key.clone().or(last);
                        c.rows < chunk_rows
                    }
                    Err(_) => true,
                };
                if tx.send(chunk).await.is_err() || stop {
                    break;
                }
            }
            let _ = conn.query_drop("COMMIT").await;
        })
    };
    Ok(SnapshotRead {
        chunks: rx,
        view_ts_us: view_ts,
        low,
        high: high_now,
        task,
    })
}

pub(crate) async fn mariadb_snapshot_position(
    source: &Source,
    conn: &mut Conn,
) -> Result<Option<BinlogPosition>> {
    let rows: Vec<(String, String)> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(|e| source.query_error("-", e))?;
    let get = |k: &str| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let (Some(file), Some(pos)) = (get("binlog_snapshot_file"), get("binlog_snapshot_position"))
    else {
        return Ok(None);
    };
    if file.is_empty() {
        return Ok(None);
    }
    let pos: u64 = pos.parse().unwrap_or(0);
    let gtid = gtid_at(source, conn, &file, pos).await?;
    let server_id = crate::discover::server_id(source, conn).await?;
    Ok(Some(BinlogPosition {
        file,
        pos,
        gtid,
        server_id,
    }))
}
