//! Reading the binlog as a replica: row events grouped into committed source
//! transactions, each with the binlog position just after its commit.
//!
//! mysql_async speaks the replication protocol and decodes MySQL's events; MariaDB's
//! own events (GTID, GTID list) it passes through undecoded, so those few are parsed
//! here, and the connection announces `@mariadb_slave_capability` so the server sends
//! real GTID events instead of rewriting them into dummy queries.
//!
//! Values reach the lake through the same text decoders as snapshot rows
//! (`ColumnBuilder::push_text`): each binlog value is rendered as the MySQL text
//! protocol would send it. One decoder per type keeps snapshot and stream rows
//! identical, which the end-to-end tests compare column by column.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mysql_async::binlog::events::{EventData, RowsEventData};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Value};
use tidemark_core::change::Op;
use tidemark_core::position::{BinlogPosition, MariaGtidList};
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_core::types::MySqlType;
use tracing::{debug, info};

use crate::connect::Source;
use crate::{Error, Result};

/// MariaDB event types mysql_async does not decode.
const MARIADB_GTID_EVENT: u8 = 162;
const MARIADB_GTID_LIST_EVENT: u8 = 163;
/// MariaDB GTID flag: the transaction is a single statement with no XID (DDL).
const FL_STANDALONE: u8 = 1;
/// `MARIA_SLAVE_CAPABILITY_GTID`: send GTID events as they are.
const MARIADB_CAPABILITY_GTID: u32 = 4;

/// One row change of a tracked table, as text-protocol cells.
#[derive(Debug, Clone)]
pub struct RowChange {
    /// The table (its schema as tidemark knows it).
    pub table: Arc<TableSchema>,
    /// Insert, update or delete.
    pub op: Op,
    /// One cell per column: the after image, or the before image for a delete.
    pub cells: Vec<Option<Vec<u8>>>,
    /// Orders changes within one source instant: grows along the binlog.
    pub seq: i64,
}

/// A committed source transaction's changes to tracked tables.
#[derive(Debug)]
pub struct Transaction {
    /// The position just after the commit: resuming here skips exactly this
    /// transaction and everything before it.
    pub end: BinlogPosition,
    /// Source commit instant (the binlog's second resolution), micros since epoch.
    pub ts_us: i64,
    /// Row changes in binlog order.
    pub changes: Vec<RowChange>,
    /// Tracked tables whose rows in this transaction could not be decoded (a changed
    /// definition, an unsupported value): the caller parks them, and the reader has
    /// stopped tracking them, so the other tables keep flowing.
    pub failures: Vec<(Arc<TableSchema>, Error)>,
}

/// What [`BinlogReader::next`] returns.
#[derive(Debug)]
pub enum StreamItem {
    /// A committed transaction (possibly touching no tracked table: its position
    /// still moves the stream forward).
    Commit(Transaction),
    /// A statement that changes table definitions (DDL), committed at `end`.
    Ddl {
        /// Default database of the statement.
        db: String,
        /// The statement text.
        sql: String,
        /// Position after it.
        end: BinlogPosition,
        /// Source instant, micros.
        ts_us: i64,
    },
    /// Nothing arrived within the idle time (heartbeats included).
    Idle,
}

/// Tables to capture, keyed by (database, table) as spelled at the source.
pub type Tracked = HashMap<(String, String), Arc<TableSchema>>;

/// A replica connection streaming one source's binlog.
pub struct BinlogReader {
    source_name: String,
    stream: BinlogStream,
    tracked: Tracked,
    file: String,
    gtid: Option<MariaGtidList>,
    /// MySQL: the executed GTID set at the stream's position (from the committed
    /// position's, advanced by each GTID event); `None` on MariaDB or without GTIDs.
    mysql_gtid: Option<tidemark_core::position::MysqlGtidSet>,
    /// Changes of the open transaction.
    pending: Vec<RowChange>,
    failures: Vec<(Arc<TableSchema>, Error)>,
    in_tx: bool,
    pending_gtid: Option<(u32, u32, u64)>,
    /// The server checksums events (CRC32) and no format description event has told
    /// the decoder so yet: the first (artificial) ROTATE event still carries its
    /// 4-byte checksum after the file name.
    strip_rotate_checksum: bool,
}

impl std::fmt::Debug for BinlogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinlogReader")
            .field("source", &self.source_name)
            .field("file", &self.file)
            .finish()
    }
}

/// The binlog files the server still has, oldest first.
pub async fn binary_logs(source: &Source) -> Result<Vec<String>> {
    let mut conn = source.conn().await?;
    let rows: Vec<mysql_async::Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| source.query_error("-", e))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.get::<String, _>(0))
        .collect())
}

impl BinlogReader {
    /// Start streaming at `start` as replica `server_id`. A start position in a file
    /// the server no longer has is [`Error::BinlogPurged`].
    pub async fn open(
        source: &Source,
        start: &BinlogPosition,
        server_id: u32,
        tracked: Tracked,
    ) -> Result<Self> {
        let logs = binary_logs(source).await?;
        if !logs.iter().any(|f| f == &start.file) {
            return Err(Error::BinlogPurged {
                source_name: source.name.clone(),
                position: start.to_string(),
                oldest: logs.first().cloned().unwrap_or_else(|| "none".into()),
            });
        }
        let mut conn = source.conn().await?;
        let checksum: Option<String> = conn
            .query_first("SELECT @@global.binlog_checksum")
            .await
            .map_err(|e| source.query_error("-", e))?;
        let strip_rotate_checksum = checksum.is_some_and(|c| !c.eq_ignore_ascii_case("NONE"));
        if source.is_mariadb() {
            conn.query_drop(format!(
                "SET @mariadb_slave_capability = {MARIADB_CAPABILITY_GTID}"
            ))
            .await
            .map_err(|e| source.query_error("-", e))?;
        }
        // Heartbeats every second (nanoseconds) keep an idle stream observably alive.
        conn.query_drop("SET @master_heartbeat_period = 1000000000")
            .await
            .map_err(|e| source.query_error("-", e))?;
        let stream = conn
            .get_binlog_stream(
                BinlogStreamRequest::new(server_id)
                    .with_filename(start.file.as_bytes())
                    .with_pos(start.pos),
            )
            .await
            .map_err(|e| stream_error(source, start, e))?;
        info!(source = %source.name, position = %start, server_id, "binlog stream opened");
        Ok(Self {
            source_name: source.name.clone(),
            stream,
            tracked,
            file: start.file.clone(),
            gtid: start.gtid.as_deref().and_then(MariaGtidList::parse),
            mysql_gtid: start
                .gtid
                .as_deref()
                .and_then(tidemark_core::position::MysqlGtidSet::parse)
                .filter(|s| !s.sources.is_empty()),
            pending: Vec::new(),
            failures: Vec::new(),
            in_tx: false,
            pending_gtid: None,
            strip_rotate_checksum,
        })
    }

    fn position(&self, log_pos: u32) -> BinlogPosition {
        BinlogPosition {
            file: self.file.clone(),
            pos: log_pos as u64,
            gtid: self
                .gtid
                .as_ref()
                .map(|g| g.to_string())
                .or_else(|| self.mysql_gtid.as_ref().map(|g| g.to_string())),
        }
    }

    fn err(&self, at: &str, message: impl Into<String>) -> Error {
        Error::Binlog {
            source_name: self.source_name.clone(),
            position: at.to_string(),
            message: message.into(),
        }
    }

    /// Stop tracking a table (it was parked).
    pub fn untrack(&mut self, db: &str, table: &str) {
        self.tracked.remove(&(db.to_string(), table.to_string()));
    }

    /// Track a table with this schema (after a resnapshot or schema change).
    pub fn track(&mut self, schema: Arc<TableSchema>) {
        self.tracked.insert(
            (
                schema.name.source_db.clone(),
                schema.name.source_table.clone(),
            ),
            schema,
        );
    }

    /// The next committed transaction or DDL statement, or `Idle` once `idle` has
    /// passed without one. The wait is a deadline, not reset by events that are not
    /// transactions: heartbeats arrive every second, and resetting on them would keep a
    /// quiet stream from ever being idle (pending rows would wait for the next
    /// transaction, and `--until-caught-up` would never end).
    pub async fn next(&mut self, idle: Duration) -> Result<StreamItem> {
        let mut deadline = tokio::time::Instant::now() + idle;
        loop {
            let event = match tokio::time::timeout_at(deadline, self.stream.next()).await {
                // Mid-transaction is not idle: its commit is on the way.
                Err(_) if self.in_tx => {
                    deadline = tokio::time::Instant::now() + idle;
                    continue;
                }
                Err(_) => return Ok(StreamItem::Idle),
                Ok(None) => {
                    return Err(self.err(
                        &self.file.to_string(),
                        "the server closed the replication stream",
                    ))
                }
                Ok(Some(Err(e))) => {
                    let at = self.file.to_string();
                    return Err(match &e {
                        mysql_async::Error::Server(s) if s.code == 1236 => {
                            self.err(&at, format!("{} (the binlog this stream needs is gone: it was purged or the server was replaced; resnapshot the source's tables with `tidemark snapshot --resnapshot`)", s.message))
                        }
                        _ => self.err(&at, e.to_string()),
                    });
                }
                Ok(Some(Ok(ev))) => ev,
            };
            let header = event.header();
            let log_pos = header.log_pos();
            let ts_us = header.timestamp() as i64 * 1_000_000;
            let at = || format!("{}:{}", self.file, log_pos);
            match header.event_type_raw() {
                MARIADB_GTID_EVENT => {
                    let d = event.data();
                    if d.len() < 13 {
                        return Err(self.err(&at(), "truncated MariaDB GTID event"));
                    }
                    let seq = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
                    let domain = u32::from_le_bytes(d[8..12].try_into().expect("4 bytes"));
                    let flags = d[12];
                    self.pending_gtid = Some((domain, header.server_id(), seq));
                    // A standalone GTID (DDL) is followed by one statement and no XID.
                    self.in_tx = flags & FL_STANDALONE == 0;
                    self.pending.clear();
                    continue;
                }
                MARIADB_GTID_LIST_EVENT => {
                    // The server's GTID state at the start of a file; ours is already
                    // exact, so only adopt it when we had none.
                    if self.gtid.is_none() {
                        self.gtid = parse_gtid_list(event.data());
                    }
                    continue;
                }
                _ => {}
            }
            let data = match event.read_data() {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => return Err(self.err(&at(), format!("undecodable event: {e}"))),
            };
            match data {
                EventData::FormatDescriptionEvent(_) => self.strip_rotate_checksum = false,
                EventData::RotateEvent(r) => {
                    let mut name = r.name_raw().to_vec();
                    if self.strip_rotate_checksum && name.len() > 4 {
                        name.truncate(name.len() - 4);
                    }
                    self.file = String::from_utf8_lossy(&name).into_owned();
                    debug!(source = %self.source_name, file = %self.file, "binlog rotated");
                }
                EventData::QueryEvent(q) => {
                    let sql = q.query().trim().to_string();
                    let upper = sql.to_ascii_uppercase();
                    if upper == "BEGIN" || upper.starts_with("XA START") {
                        self.in_tx = true;
                        self.pending.clear();
                    } else if upper == "COMMIT" || upper.starts_with("XA COMMIT") {
                        // Non-transactional engines commit with a query, not an XID.
                        return Ok(StreamItem::Commit(self.commit(log_pos, ts_us)));
                    } else if upper == "ROLLBACK" {
                        self.in_tx = false;
                        self.pending.clear();
                    } else {
                        // Any other statement in a ROW-format binlog is DDL (or a
                        // statement tidemark does not need, like GRANT): it commits on
                        // its own.
                        self.apply_gtid();
                        let end = self.position(log_pos);
                        self.in_tx = false;
                        return Ok(StreamItem::Ddl {
                            db: q.schema().into_owned(),
                            sql,
                            end,
                            ts_us,
                        });
                    }
                }
                EventData::XidEvent(_) => {
                    return Ok(StreamItem::Commit(self.commit(log_pos, ts_us)));
                }
                EventData::RowsEvent(rows) => {
                    self.rows_event(&rows, log_pos, &at())?;
                    if !self.in_tx {
                        // Autocommit on a non-transactional table without BEGIN: the
                        // statement is its own transaction.
                        if rows
                            .flags()
                            .contains(mysql_async::binlog::RowsEventFlags::STMT_END)
                        {
                            return Ok(StreamItem::Commit(self.commit(log_pos, ts_us)));
                        }
                    }
                }
                EventData::HeartbeatEvent => {}
                // MySQL: the transaction that follows is `sid:gno`; positions carry the
                // executed set with it.
                EventData::GtidEvent(g) => {
                    if let Some(set) = self.mysql_gtid.as_mut() {
                        let sid = g.sid();
                        let hex: String = sid.iter().map(|b| format!("{b:02x}")).collect();
                        let mut key = format!(
                            "{}-{}-{}-{}-{}",
                            &hex[0..8],
                            &hex[8..12],
                            &hex[12..16],
                            &hex[16..20],
                            &hex[20..32]
                        );
                        if let Some(tag) = g.tag() {
                            key = format!("{key}:{}", tag.as_str());
                        }
                        set.add(&key, g.gno());
                    }
                }
                EventData::RowsQueryEvent(_)
                | EventData::TableMapEvent(_)
                | EventData::AnonymousGtidEvent(_)
                | EventData::PreviousGtidsEvent(_)
                | EventData::IntvarEvent(_)
                | EventData::RandEvent(_)
                | EventData::UserVarEvent(_) => {}
                EventData::TransactionPayloadEvent(_) => {}
                _ => {}
            }
        }
    }

    fn apply_gtid(&mut self) {
        if let Some((d, s, n)) = self.pending_gtid.take() {
            self.gtid
                .get_or_insert_with(Default::default)
                .apply(d, s, n);
        }
    }

    fn commit(&mut self, log_pos: u32, ts_us: i64) -> Transaction {
        self.apply_gtid();
        self.in_tx = false;
        Transaction {
            end: self.position(log_pos),
            ts_us,
            changes: std::mem::take(&mut self.pending),
            failures: std::mem::take(&mut self.failures),
        }
    }

    fn rows_event(&mut self, rows: &RowsEventData<'_>, log_pos: u32, at: &str) -> Result<()> {
        let Some(tme) = self.stream.get_tme(rows.table_id()) else {
            return Err(self.err(at, "rows event without its table map event"));
        };
        let key = (
            tme.database_name().into_owned(),
            tme.table_name().into_owned(),
        );
        let Some(schema) = self.tracked.get(&key).cloned() else {
            return Ok(());
        };
        // The table already failed in this transaction: its rows here are not used.
        if self.failures.iter().any(|(s, _)| Arc::ptr_eq(s, &schema)) {
            return Ok(());
        }
        match decode_rows(
            &self.source_name,
            &schema,
            tme,
            rows,
            &self.file,
            log_pos,
            at,
        ) {
            Ok(changes) => self.pending.extend(changes),
            Err(e) => {
                // This table's changes so far in this transaction are dropped with it:
                // the caller decides at the commit, by position, whether the failure
                // matters (the table parks at that transaction boundary, and stops
                // being tracked then) or concerns a transaction the table landed
                // before a restart, under the definition it had then (it stays
                // tracked: later rows have the shape it has now).
                self.pending.retain(|c| !Arc::ptr_eq(&c.table, &schema));
                self.failures.push((schema, e));
            }
        }
        Ok(())
    }
}

fn decode_rows(
    source_name: &str,
    schema: &Arc<TableSchema>,
    tme: &mysql_async::binlog::events::TableMapEvent<'_>,
    rows: &RowsEventData<'_>,
    file: &str,
    log_pos: u32,
    at: &str,
) -> Result<Vec<RowChange>> {
    let table = schema.name.source();
    if tme.columns_count() as usize != schema.columns.len() {
        return Err(Error::SchemaChanged {
            source_name: source_name.to_string(),
            table,
            position: at.to_string(),
            message: format!(
                "the binlog has {} columns, tidemark knows {}",
                tme.columns_count(),
                schema.columns.len()
            ),
        });
    }
    let base_seq = seq_base(file, log_pos);
    let mut out = Vec::new();
    let cells = |r: BinlogRow| -> Result<Vec<Option<Vec<u8>>>> {
        r.unwrap()
            .iter()
            .zip(&schema.columns)
            .map(|(v, c)| {
                cell(v, c).map_err(|m| Error::Binlog {
                    source_name: source_name.to_string(),
                    position: at.to_string(),
                    message: format!("{table}.{}: {m}", c.source_name),
                })
            })
            .collect()
    };
    for (i, row) in rows.rows(tme).enumerate() {
        let (before, after) = row.map_err(|e| Error::Binlog {
            source_name: source_name.to_string(),
            position: at.to_string(),
            message: format!("{table}: undecodable row: {e}"),
        })?;
        let seq = base_seq + i as i64;
        let change = |op, cells| RowChange {
            table: schema.clone(),
            op,
            cells,
            seq,
        };
        match (before, after) {
            (None, Some(a)) => out.push(change(Op::Create, cells(a)?)),
            (Some(b), None) => out.push(change(Op::Delete, cells(b)?)),
            (Some(b), Some(a)) => {
                let (b, a) = (cells(b)?, cells(a)?);
                if schema.key.iter().any(|&k| b[k] != a[k]) {
                    // A primary-key update is the old key leaving and a new one
                    // arriving: history closes one and opens the other.
                    out.push(change(Op::Delete, b));
                    out.push(change(Op::Create, a));
                } else {
                    out.push(change(Op::Update, a));
                }
            }
            (None, None) => {}
        }
    }
    Ok(out)
}

/// `_seq` for the rows of the event ending at `log_pos`: file number (mod 2048), then
/// offset, then row index, so it grows along the binlog and orders changes that share
/// a source second. Offsets fit 32 bits (binlog files are at most 1 GiB) and a rows
/// event holds far fewer than 2^20 rows.
pub fn seq_base(file: &str, log_pos: u32) -> i64 {
    let n = tidemark_core::position::file_number(file) % 2048;
    ((n as i64) << 52) | ((log_pos as i64) << 20)
}

fn parse_gtid_list(d: &[u8]) -> Option<MariaGtidList> {
    let count = u32::from_le_bytes(d.get(0..4)?.try_into().ok()?) & 0x0fff_ffff;
    let mut list = MariaGtidList::default();
    for i in 0..count as usize {
        let e = d.get(4 + i * 16..4 + (i + 1) * 16)?;
        let domain = u32::from_le_bytes(e[0..4].try_into().ok()?);
        let server = u32::from_le_bytes(e[4..8].try_into().ok()?);
        let seq = u64::from_le_bytes(e[8..16].try_into().ok()?);
        list.apply(domain, server, seq);
    }
    Some(list)
}

fn stream_error(source: &Source, start: &BinlogPosition, e: mysql_async::Error) -> Error {
    match &e {
        mysql_async::Error::Server(s) if s.code == 1236 => Error::BinlogPurged {
            source_name: source.name.clone(),
            position: start.to_string(),
            oldest: s.message.clone(),
        },
        _ => source.query_error("-", e),
    }
}

/// A binlog value as the text protocol would send it for this column.
pub fn cell(
    v: &BinlogValue<'_>,
    col: &ColumnSchema,
) -> std::result::Result<Option<Vec<u8>>, String> {
    let ty = col.mysql_type();
    let ct = col.column_type.to_ascii_lowercase();
    let v = match v {
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(j) => {
            let json = serde_json::Value::try_from(j.clone())
                .map_err(|e| format!("undecodable JSON value: {e}"))?;
            return Ok(Some(json.to_string().into_bytes()));
        }
        BinlogValue::JsonDiff(_) => {
            return Err("a partial JSON update cannot be applied; set binlog_row_value_options='' on the server and resnapshot the table".into())
        }
    };
    Ok(match v {
        Value::NULL => None,
        Value::Int(i) => {
            let i = *i;
            if ct.starts_with("enum(") {
                let labels = labels(&ct, &col.column_type);
                let label = if i == 0 {
                    String::new()
                } else {
                    labels
                        .get(i as usize - 1)
                        .cloned()
                        .ok_or_else(|| format!("enum index {i} out of range"))?
                };
                Some(label.into_bytes())
            } else if ty == MySqlType::Timestamp {
                Some(datetime_text(i, 0, 0).into_bytes())
            } else {
                let fixed: i128 = match ty {
                    MySqlType::TinyInt { unsigned: true } if i < 0 => i as i128 + (1 << 8),
                    MySqlType::SmallInt { unsigned: true } if i < 0 => i as i128 + (1 << 16),
                    MySqlType::MediumInt { unsigned: true } if i < 0 => i as i128 + (1 << 24),
                    MySqlType::Int { unsigned: true } if i < 0 => i as i128 + (1 << 32),
                    MySqlType::BigInt { unsigned: true } if i < 0 => i as i128 + (1 << 64),
                    _ => i as i128,
                };
                Some(fixed.to_string().into_bytes())
            }
        }
        Value::UInt(u) => Some(u.to_string().into_bytes()),
        Value::Float(f) => Some(f.to_string().into_bytes()),
        Value::Double(f) => Some(f.to_string().into_bytes()),
        Value::Bytes(b) => {
            if ty == MySqlType::Timestamp {
                // TIMESTAMP2: seconds since the epoch, with `.ffffff` when fractional.
                let s = std::str::from_utf8(b).map_err(|_| "bad TIMESTAMP".to_string())?;
                let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
                let sec: i64 = sec.parse().map_err(|_| format!("bad TIMESTAMP {s:?}"))?;
                let us: u32 = frac.parse().map_err(|_| format!("bad TIMESTAMP {s:?}"))?;
                if sec == 0 && us == 0 {
                    // The zero TIMESTAMP, as the text protocol spells it.
                    Some(b"0000-00-00 00:00:00".to_vec())
                } else {
                    Some(datetime_text(sec, us, fsp(&ct)).into_bytes())
                }
            } else if ct.starts_with("set(") {
                let labels = labels(&ct, &col.column_type);
                let mut mask = 0u64;
                for (i, byte) in b.iter().enumerate() {
                    mask |= (*byte as u64) << (8 * i);
                }
                let chosen: Vec<&str> = labels
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, l)| l.as_str())
                    .collect();
                Some(chosen.join(",").into_bytes())
            } else if ty == MySqlType::Geometry {
                // Stored as a 4-byte SRID then WKB; the snapshot reads ST_AsBinary (WKB).
                Some(b.get(4..).unwrap_or_default().to_vec())
            } else if ct.starts_with("binary(") {
                // BINARY(n) is stored without its trailing zero padding.
                let n = paren_number(&ct).unwrap_or(b.len());
                let mut out = b.clone();
                out.resize(n.max(b.len()), 0);
                Some(out)
            } else {
                Some(b.clone())
            }
        }
        Value::Date(y, mo, d, h, mi, s, us) => {
            if ty == MySqlType::Date {
                Some(format!("{y:04}-{mo:02}-{d:02}").into_bytes())
            } else {
                Some(
                    format!(
                        "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{}",
                        frac(*us, fsp(&ct))
                    )
                    .into_bytes(),
                )
            }
        }
        Value::Time(neg, days, h, m, s, us) => {
            let hours = *days as u64 * 24 + *h as u64;
            Some(
                format!(
                    "{}{hours:02}:{m:02}:{s:02}{}",
                    if *neg { "-" } else { "" },
                    frac(*us, fsp(&ct))
                )
                .into_bytes(),
            )
        }
    })
}

/// `.ffffff` cut to the column's fractional-second precision, as MySQL prints it.
fn frac(us: u32, fsp: usize) -> String {
    if fsp == 0 {
        String::new()
    } else {
        format!(".{:06}", us)[..fsp + 1].to_string()
    }
}

/// Fractional-second precision of `datetime(3)` / `time(6)` / `timestamp`.
fn fsp(ct: &str) -> usize {
    paren_number(ct).unwrap_or(0).min(6)
}

fn paren_number(ct: &str) -> Option<usize> {
    let inner = ct.split_once('(')?.1.split_once(')')?.0;
    inner.trim().parse().ok()
}

fn datetime_text(sec: i64, us: u32, fsp: usize) -> String {
    let dt = chrono::DateTime::from_timestamp(sec, 0).unwrap_or_default();
    format!("{}{}", dt.format("%Y-%m-%d %H:%M:%S"), frac(us, fsp))
}

/// The labels of `enum('a','b''c')` / `set(...)`, unescaped, in declaration order.
/// `lower` finds the list; `original` keeps the labels' case.
fn labels(lower: &str, original: &str) -> Vec<String> {
    let start = lower.find('(').map(|i| i + 1).unwrap_or(0);
    let body = &original[start..original.rfind(')').unwrap_or(original.len())];
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = body.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '\'') => quoted = true,
            (true, '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            (true, '\'') => {
                quoted = false;
                out.push(std::mem::take(&mut cur));
            }
            (true, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (true, c) => cur.push(c),
            (false, _) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_and_set_labels_unescape() {
        let ct = "enum('a','b''c','d,e')";
        assert_eq!(labels(ct, ct), vec!["a", "b'c", "d,e"]);
        let ct = "set('X','y')";
        assert_eq!(labels(&ct.to_lowercase(), ct), vec!["X", "y"]);
    }

    #[test]
    fn fractions_follow_the_column_precision() {
        assert_eq!(frac(123_456, 0), "");
        assert_eq!(frac(123_456, 3), ".123");
        assert_eq!(frac(5, 6), ".000005");
        assert_eq!(fsp("datetime(3)"), 3);
        assert_eq!(fsp("timestamp"), 0);
        assert_eq!(datetime_text(86_400 + 61, 0, 0), "1970-01-02 00:01:01");
    }

    #[test]
    fn seq_grows_along_the_binlog() {
        assert!(seq_base("b.000001", 500) > seq_base("b.000001", 400));
        assert!(seq_base("b.000002", 4) > seq_base("b.000001", u32::MAX));
        assert!(seq_base("b.000001", 400) + 1000 < seq_base("b.000001", 401));
    }

    #[test]
    fn gtid_list_events_parse() {
        let mut d = vec![2, 0, 0, 0];
        for (dom, srv, seq) in [(0u32, 1u32, 42u64), (3, 2, 7)] {
            d.extend(dom.to_le_bytes());
            d.extend(srv.to_le_bytes());
            d.extend(seq.to_le_bytes());
        }
        assert_eq!(parse_gtid_list(&d).unwrap().to_string(), "0-1-42,3-2-7");
        assert!(parse_gtid_list(&d[..10]).is_none());
    }
}
