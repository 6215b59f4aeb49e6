//! Consistent, chunked, resumable snapshots. See the crate docs for how the binlog
//! position is taken without a global read lock.

use std::sync::Arc;

use indicatif::ProgressBar;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};
use tidemark_core::change::{ChangeBatch, ChangeBatchBuilder, Op};
use tidemark_core::position::{BinlogPosition, KeyValue, SnapshotProgress, SourceState};
use tidemark_core::schema::TableSchema;
use tidemark_core::types::MySqlType;
use tidemark_lake::{TableKind, TableWriter, Warehouse};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::connect::Source;
use crate::discover::{binlog_position, gtid_at, DiscoveredTable};
use crate::{Error, Result};

/// Rows per Arrow batch inside a chunk.
const BATCH_ROWS: usize = 65_536;

/// What a table's snapshot did.
#[derive(Debug, Clone, Default)]
pub struct TableReport {
    /// `db.table` at the source.
    pub table: String,
    /// Rows landed by this run.
    pub rows: u64,
    /// Rows in the finished snapshot.
    pub total_rows: u64,
    /// Already complete before this run.
    pub already_done: bool,
    /// Values per column that were not instants and landed as NULL.
    pub invalid: Vec<(String, u64)>,
    /// Where change capture resumes (low watermark).
    pub resume_from: Option<BinlogPosition>,
}

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
pub(crate) fn literal(v: &KeyValue) -> String {
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
pub(crate) struct Chunk {
    pub(crate) batches: Vec<ChangeBatch>,
    pub(crate) rows: usize,
    pub(crate) last_key: Option<Vec<KeyValue>>,
    pub(crate) invalid: Vec<(String, u64)>,
}

/// How to read rows: which select list, op and position to stamp them with.
pub(crate) struct ReadAs<'a> {
    pub(crate) select: String,
    pub(crate) op: Op,
    pub(crate) source_ts_us: i64,
    pub(crate) source_pos: &'a str,
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
pub(crate) struct Limit {
    pub(crate) offset: u64,
    pub(crate) rows: usize,
}

impl From<usize> for Limit {
    fn from(rows: usize) -> Self {
        Self { offset: 0, rows }
    }
}

/// Read rows matching `filter` in key order (up to `limit`) into change batches.
pub(crate) async fn read_chunk(
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

fn merge_counts(into: &mut Vec<(String, u64)>, more: Vec<(String, u64)>) {
    for (c, n) in more {
        match into.iter_mut().find(|(x, _)| *x == c) {
            Some((_, m)) => *m += n,
            None => into.push((c, n)),
        }
    }
}

pub(crate) fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The table's state with this snapshot progress.
fn state_at(base: &SourceState, progress: &SnapshotProgress) -> SourceState {
    SourceState {
        snapshot: Some(progress.clone()),
        ..base.clone()
    }
}

/// Snapshot one table, resuming where a previous run stopped.
pub async fn snapshot_table(
    source: &Source,
    wh: &Warehouse,
    table: &DiscoveredTable,
    chunk_rows: usize,
    bar: ProgressBar,
) -> Result<TableReport> {
    let schema = table.schema.clone();
    let name = schema.name.source();
    let mut writer = TableWriter::open(wh, schema.clone()).await?;
    let mut report = TableReport {
        table: name.clone(),
        ..Default::default()
    };
    let base = SourceState {
        source: source.name.clone(),
        source_table: name.clone(),
        ..writer.committed(TableKind::History).state.clone()
    };
    let snap = |k| {
        writer
            .committed(k)
            .state
            .snapshot
            .clone()
            .unwrap_or_default()
    };
    let (cur, hist) = (snap(TableKind::Current), snap(TableKind::History));
    if cur.done && hist.done {
        report.already_done = true;
        report.total_rows = cur.rows;
        report.resume_from = cur.low.clone();
        bar.finish_and_clear();
        return Ok(report);
    }

    let mut conn = source.conn().await?;
    // Repair a crash between the two commits of one chunk: the table that is behind
    // gets exactly the key range the other one committed.
    if cur.rows != hist.rows {
        let (behind, ahead) = if cur.rows < hist.rows {
            (TableKind::Current, hist.clone())
        } else {
            (TableKind::History, cur.clone())
        };
        let behind_key = if behind == TableKind::Current {
            cur.last_key.clone()
        } else {
            hist.last_key.clone()
        };
        let ahead_key = ahead.last_key.clone().expect("ahead has committed rows");
        let mut filter = key_at_most(&schema, &ahead_key);
        if let Some(k) = &behind_key {
            filter = format!("{} AND {filter}", key_after(&schema, k));
        }
        // A new read (not the other table's read view): its rows are stamped with the
        // instant of this read, never earlier (see the read view below).
        let how = ReadAs::snapshot(&schema, now_us());
        let chunk = read_chunk(source, &mut conn, &schema, Some(filter), None, &how).await?;
        warn!(table = %name, rows = chunk.rows, behind = behind.dir(), "repairing a chunk committed to only one of current/history by an interrupted run");
        writer
            .append(behind, &chunk.batches, now_us(), state_at(&base, &ahead))
            .await?;
    }
    let mut progress = if cur.rows >= hist.rows { cur } else { hist };
    bar.set_position(progress.rows);

    // One read view for the rest of the table. Its rows are stamped with an instant
    // taken before the view opens: a resumed snapshot reads values as of now, and
    // stamping them with the first run's start would put later values into the past
    // (AS OF between the two runs would show them). Taken before, not after: a change
    // committed between the stamp and the view is then in the rows and replayed just
    // after them, never replayed *before* older values.
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
    if progress.started_at_us == 0 {
        progress.started_at_us = view_ts;
    }
    if progress.low.is_none() {
        // On MariaDB the read view's own position is exact; elsewhere the position
        // before the transaction began is the safe (low) watermark.
        progress.low = if source.is_mariadb() {
            high_now.clone()
        } else {
            low_now.clone()
        };
    }
    if low_now.is_none() {
        warn!(table = %name, "no binlog position (binary logging off or no REPLICATION CLIENT): the snapshot lands, but change capture cannot resume from it");
    }

    // Reader task: reads chunk k+1 while chunk k is being committed.
    let (tx, mut rx) = mpsc::channel::<Result<Chunk>>(1);
    let reader = {
        let source = source.clone();
        let schema = schema.clone();
        let mut last = progress.last_key.clone();
        let ts = view_ts;
        tokio::spawn(async move {
            let how = ReadAs::snapshot(&schema, ts);
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

    while let Some(chunk) = rx.recv().await {
        let chunk = chunk?;
        progress.rows += chunk.rows as u64;
        if let Some(k) = chunk.last_key {
            progress.last_key = Some(k);
        }
        if chunk.rows < chunk_rows {
            progress.done = true;
            progress.high = high_now.clone();
        }
        merge_counts(&mut report.invalid, chunk.invalid);
        writer
            .append_both(&chunk.batches, now_us(), state_at(&base, &progress))
            .await?;
        report.rows += chunk.rows as u64;
        bar.set_position(progress.rows);
        info!(table = %name, rows = progress.rows, done = progress.done, "snapshot chunk committed");
    }
    reader.await.map_err(|e| Error::Query {
        source_name: source.name.clone(),
        table: name.clone(),
        message: format!("snapshot reader failed: {e}"),
    })?;
    for (col, n) in &report.invalid {
        warn!(table = %name, column = %col, values = n, "values that are not valid dates/years (zero dates) landed as NULL");
    }
    report.total_rows = progress.rows;
    report.resume_from = progress.low.clone();
    bar.finish_and_clear();
    Ok(report)
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
