//! # tidemark-verify
//!
//! `tidemark verify`: the lake proves itself equal to the source, and its history
//! consistent, with a report bound to a source position.
//!
//! Place in the data flow: it reads both ends — the MySQL source through
//! `tidemark_mysql::checksum` (a consistent read and server-side checksums, so only
//! checksums cross the network) and the lake through `tidemark_lake` (current table,
//! history log, closed history) with DataFusion — and writes nothing but its report
//! (`tidemark.verifications`, [`record`]).
//!
//! Per table:
//! 1. **A consistent source read** and the binlog position `P` it holds for.
//! 2. **Source chunks**: key ranges of `chunk_rows` rows, each with a count and a
//!    `BIT_XOR` of row CRC32s computed by the server (pt-table-checksum's method),
//!    rate-limited.
//! 3. **Wait** until the lake's committed position is at or past `P` (capture must be
//!    running), then take the lake's **state at `P`** ([`lake`]): exact, because
//!    positions are in the rows.
//! 4. **Lake chunks**: one streamed pass over that state, each row's checksum
//!    rendered as the server renders it ([`render`]) and counted into the chunk its
//!    key falls in.
//! 5. **Bisection**: a chunk whose counts or checksums differ is split at its middle
//!    key (asked of the source) until a part holds a few rows; those rows are read
//!    from both sides and compared by value ([`compare`]).
//! 6. **History checks** ([`history`]), from the lake alone, run beside steps 2–5.
//!
//! Keys are compared in Arrow's order (numbers, decimals, dates and instants by
//! value; text and binary bytewise). A text key under a collation that does not
//! order bytewise (`utf8mb4_general_ci`) would put the two sides' chunk boundaries
//! in different places, so such tables are refused with a message saying so.

#![warn(missing_docs)]

pub mod compare;
pub mod history;
pub mod lake;
pub mod render;
pub mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::arrow::array::{ArrayRef, RecordBatch};
use deltalake::arrow::row::OwnedRow;
use deltalake::datafusion::common::ScalarValue;
use indicatif::ProgressBar;
use tidemark_core::position::BinlogPosition;
use tidemark_core::schema::TableSchema;
use tidemark_lake::Warehouse;
use tidemark_mysql::checksum::{Checksum, KeyRange, SourceRead};
use tidemark_mysql::connect::Source;

use crate::compare::{Counts, Side};
use crate::lake::{Keys, LakeTable};
use crate::report::{TableReport, Timings};

/// Errors of a verification (a difference is not an error: it is in the report).
/// The errors of the layers below are boxed: they are large, and most results here
/// are `Ok`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source failed.
    #[error(transparent)]
    Source(Box<tidemark_mysql::Error>),
    /// The lake failed.
    #[error(transparent)]
    Lake(Box<tidemark_lake::Error>),
    /// Delta failed.
    #[error("lake table: {0}")]
    Delta(Box<deltalake::DeltaTableError>),
    /// A query on the lake failed.
    #[error("lake query: {0}")]
    DataFusion(Box<deltalake::datafusion::error::DataFusionError>),
    /// Arrow failed.
    #[error("lake data: {0}")]
    Arrow(Box<deltalake::arrow::error::ArrowError>),
    /// A lake value could not be rendered.
    #[error("{table}: {message}")]
    Value {
        /// `db.table`.
        table: String,
        /// What.
        message: String,
    },
    /// The table is not in the lake.
    #[error("{0} is not in the lake: snapshot it first (tidemark snapshot --table {0})")]
    NotLanded(String),
    /// The lake did not reach the source position in time.
    #[error("{table}: the lake has landed up to {lake}, not yet the source position {source_pos} verify read at, after waiting {waited_s} s. Is `tidemark run` capturing this source? (an idle table records its position once a minute; --wait sets how long to wait)")]
    NotCaughtUp {
        /// `db.table`.
        table: String,
        /// The lake's committed position.
        lake: String,
        /// The source position.
        source_pos: String,
        /// Seconds waited.
        waited_s: u64,
    },
    /// The table cannot be verified as it is.
    #[error("{table}: {why}")]
    Unverifiable {
        /// `db.table`.
        table: String,
        /// Why, and what to do.
        why: String,
    },
}

macro_rules! boxed_from {
    ($($variant:ident: $ty:ty),* $(,)?) => {
        $(impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::$variant(Box::new(e))
            }
        })*
    };
}

boxed_from!(
    Source: tidemark_mysql::Error,
    Lake: tidemark_lake::Error,
    Delta: deltalake::DeltaTableError,
    DataFusion: deltalake::datafusion::error::DataFusionError,
    Arrow: deltalake::arrow::error::ArrowError,
);

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to verify.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows per source chunk.
    pub chunk_rows: u64,
    /// Source rows per second at most (0: no limit).
    pub max_rows_per_sec: u64,
    /// How long to wait for the lake to reach the source position.
    pub wait: Duration,
    /// Differences described with their values, per table (all are counted).
    pub show: usize,
    /// Run the history checks.
    pub history: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            chunk_rows: 10_000,
            max_rows_per_sec: 0,
            wait: Duration::from_secs(300),
            show: 10,
            history: true,
        }
    }
}

/// A part of a bisected chunk holding at most this many source rows is compared row
/// by row.
const LEAF_ROWS: u64 = 32;

/// A source chunk and what each side counted in it.
struct Chunk {
    range: KeyRange,
    /// The upper bound as a comparable key and as lake literals.
    hi: Option<(OwnedRow, Vec<ScalarValue>)>,
    lo: Option<Vec<ScalarValue>>,
    source: Checksum,
    lake: Checksum,
}

/// Verify one table against its source. Differences go into the report; an error is
/// returned only when the table could not be compared at all.
pub async fn verify_table(
    source: &Source,
    wh: &Warehouse,
    schema: Arc<TableSchema>,
    opts: &Options,
    bar: &ProgressBar,
) -> Result<TableReport> {
    let table = schema.name.source();
    let mut timings = Timings::default();
    let t = Instant::now();
    let keys = Keys::new(&schema)?;
    refuse_unordered_keys(source, &schema).await?;
    // The history checks need nothing from the source: they run beside the source
    // pass (the server computes checksums while tidemark reads the log), on the
    // lake as it is now.
    let history = opts.history.then(|| {
        let (wh, schema, show) = (wh.clone(), schema.clone(), opts.show);
        AbortOnDrop(tokio::spawn(async move {
            let t = Instant::now();
            let lake = LakeTable::load(&wh, schema).await?;
            let r = history::check(&lake, show).await?;
            Ok::<_, Error>((r, t.elapsed().as_millis() as u64))
        }))
    });
    let mut read = SourceRead::open(source, schema.clone()).await?;
    let p = read.position.clone();
    bar.set_message(format!("{table}: source chunks"));

    // 2. Source chunks.
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut lo: Option<(Vec<tidemark_core::position::KeyValue>, Vec<ScalarValue>)> = None;
    let started = Instant::now();
    let mut rows_read = 0u64;
    loop {
        let b = read
            .boundary(
                lo.as_ref().map(|l| l.0.as_slice()),
                None,
                opts.chunk_rows.saturating_sub(1),
            )
            .await?;
        let hi = match &b {
            Some(b) => {
                let cols = source_columns(&schema, &b.row.data);
                let scalars = key_scalars(&schema, &cols)?;
                Some((b.key.clone(), keys.one(&cols, 0)?, scalars))
            }
            None => None,
        };
        let range = KeyRange {
            lo: lo.as_ref().map(|l| l.0.clone()),
            hi: hi.as_ref().map(|h| h.0.clone()),
        };
        let sum = read.checksum(&range).await?;
        rows_read += sum.rows;
        bar.inc(sum.rows);
        chunks.push(Chunk {
            range,
            hi: hi.as_ref().map(|h| (h.1.clone(), h.2.clone())),
            lo: lo.as_ref().map(|l| l.1.clone()),
            source: sum,
            lake: Checksum::default(),
        });
        match hi {
            Some((k, _, s)) => lo = Some((k, s)),
            None => break,
        }
        if opts.max_rows_per_sec > 0 {
            let due = Duration::from_secs_f64(rows_read as f64 / opts.max_rows_per_sec as f64);
            if let Some(rest) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
    }
    timings.source_ms = t.elapsed().as_millis() as u64;

    // 3. Wait for the lake.
    let t = Instant::now();
    bar.set_message(format!(
        "{table}: waiting for the lake to reach {}",
        show_pos(&p)
    ));
    wait_for(wh, &schema, &p, opts.wait).await?;
    timings.wait_ms = t.elapsed().as_millis() as u64;

    // 4. Lake chunks.
    let t = Instant::now();
    bar.set_message(format!("{table}: lake"));
    let lake = LakeTable::load(wh, schema.clone()).await?;
    if lake.schema.columns.len() != schema.columns.len()
        || lake
            .schema
            .columns
            .iter()
            .zip(&schema.columns)
            .any(|(a, b)| a.name != b.name)
    {
        return Err(Error::Unverifiable {
            table,
            why: "the lake's columns are not the source's (a schema change not landed yet?); run verify again once capture has applied it".into(),
        });
    }
    let state = lake.state_at(&p).await?;
    let n = schema.columns.len();
    let mut lake_rows = 0u64;
    let bounds: Vec<&OwnedRow> = chunks
        .iter()
        .filter_map(|c| c.hi.as_ref().map(|h| &h.0))
        .collect();
    let mut sums = vec![Checksum::default(); chunks.len()];
    lake::for_each_batch(state.clone(), |b| {
        let cols: Vec<ArrayRef> = b.columns()[..n].to_vec();
        let k = keys.rows(&cols)?;
        let crcs = render::row_crcs(&table, &cols)?;
        for (r, crc) in crcs.into_iter().enumerate() {
            let key = k.row(r);
            let i = bounds.partition_point(|b| b.row() < key);
            sums[i].rows += 1;
            sums[i].crc ^= crc;
        }
        lake_rows += b.num_rows() as u64;
        Ok(())
    })
    .await?;
    for (c, s) in chunks.iter_mut().zip(sums) {
        c.lake = s;
    }
    timings.lake_ms = t.elapsed().as_millis() as u64;

    // 5. Bisect what differs.
    let t = Instant::now();
    let mut counts = Counts::default();
    let mut examples = Vec::new();
    let mismatched = chunks.iter().filter(|c| c.source != c.lake).count() as u64;
    for c in chunks.iter().filter(|c| c.source != c.lake) {
        bar.set_message(format!("{table}: bisecting a chunk that differs"));
        let filter = lake::range_filter(
            &schema,
            c.lo.as_deref(),
            c.hi.as_ref().map(|h| h.1.as_slice()),
        );
        let df = match filter {
            Some(f) => state.clone().filter(f)?,
            None => state.clone(),
        };
        let batches: Vec<RecordBatch> = df.collect().await?;
        let mut lake_keys = Vec::new();
        for (bi, b) in batches.iter().enumerate() {
            let cols: Vec<ArrayRef> = b.columns()[..n].to_vec();
            let k = keys.rows(&cols)?;
            let crcs = render::row_crcs(&table, &cols)?;
            for (r, crc) in crcs.into_iter().enumerate() {
                lake_keys.push((k.row(r).owned(), crc, bi, r));
            }
        }
        lake_keys.sort_by(|a, b| a.0.cmp(&b.0));
        let mut bis = Bisect {
            read: &mut read,
            schema: &schema,
            keys: &keys,
            batches: &batches,
            counts: &mut counts,
            examples: &mut examples,
            show: opts.show,
        };
        bis.run(c.range.clone(), c.source, &lake_keys, 0).await?;
    }
    timings.bisect_ms = t.elapsed().as_millis() as u64;
    let at_us = read.at_us;
    read.close().await;

    // 6. History (started at the beginning).
    let history = match history {
        Some(mut task) => {
            bar.set_message(format!("{table}: history checks"));
            let (r, ms) = (&mut task.0).await.map_err(|e| Error::Value {
                table: table.clone(),
                message: format!("history checks failed: {e}"),
            })??;
            timings.history_ms = ms;
            Some(r)
        }
        None => None,
    };

    Ok(TableReport::new(
        table,
        &p,
        at_us,
        rows_read,
        lake_rows,
        chunks.len() as u64,
        mismatched,
        counts,
        examples,
        history,
        timings,
    ))
}

/// A task stopped when the table's verification ends early (an error).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Bisection of one chunk.
struct Bisect<'a> {
    read: &'a mut SourceRead,
    schema: &'a TableSchema,
    keys: &'a Keys,
    batches: &'a [RecordBatch],
    counts: &'a mut Counts,
    examples: &'a mut Vec<compare::Difference>,
    show: usize,
}

type LakeKey = (OwnedRow, u32, usize, usize);

impl Bisect<'_> {
    /// Find the rows that differ in `range`, whose source checksum is `source` and
    /// whose lake rows are `lake` (sorted by key).
    fn run<'s>(
        &'s mut self,
        range: KeyRange,
        source: Checksum,
        lake: &'s [LakeKey],
        depth: u32,
    ) -> futures::future::BoxFuture<'s, Result<()>> {
        Box::pin(async move {
            let mine = Checksum {
                rows: lake.len() as u64,
                crc: lake.iter().fold(0, |x, k| x ^ k.1),
            };
            if mine == source {
                return Ok(());
            }
            if source.rows <= LEAF_ROWS || depth >= 48 {
                let rows = self.read.rows(&range).await?;
                let src: Vec<RecordBatch> = rows.into_iter().map(|c| c.data).collect();
                let src_side = Side::new(self.keys, self.schema, &src)?;
                let picked: Vec<RecordBatch> = pick(self.batches, lake)?;
                let lake_side = Side::new(self.keys, self.schema, &picked)?;
                if tracing::enabled!(tracing::Level::DEBUG) {
                    // What the lake rendered, to set beside the source's
                    // CONCAT_WS(...) when checksums differ but values do not.
                    let mut text = String::new();
                    for b in &picked {
                        for r in 0..b.num_rows() {
                            render::row_text(
                                &self.schema.name.source(),
                                &b.columns()[..self.schema.columns.len()],
                                r,
                                &mut text,
                            )?;
                            tracing::debug!(table = %self.schema.name.source(), text = %text, "lake row rendered for the checksum");
                        }
                    }
                }
                return compare::compare(
                    self.schema,
                    &src_side,
                    &lake_side,
                    self.counts,
                    self.examples,
                    self.show,
                );
            }
            let Some(mid) = self
                .read
                .boundary(
                    range.lo.as_deref(),
                    range.hi.as_deref(),
                    source.rows / 2 - 1,
                )
                .await?
            else {
                return Ok(());
            };
            let cols = source_columns(self.schema, &mid.row.data);
            let mid_key = self.keys.one(&cols, 0)?;
            let split = lake.partition_point(|k| k.0 <= mid_key);
            let (left, right) = lake.split_at(split);
            let lr = KeyRange {
                lo: range.lo.clone(),
                hi: Some(mid.key.clone()),
            };
            let rr = KeyRange {
                lo: Some(mid.key),
                hi: range.hi,
            };
            let ls = self.read.checksum(&lr).await?;
            let rs = self.read.checksum(&rr).await?;
            self.run(lr, ls, left, depth + 1).await?;
            self.run(rr, rs, right, depth + 1).await
        })
    }
}

/// The lake rows `keys` point at, as one batch.
fn pick(batches: &[RecordBatch], keys: &[LakeKey]) -> Result<Vec<RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(vec![]);
    };
    let idx: Vec<(usize, usize)> = keys.iter().map(|k| (k.2, k.3)).collect();
    let mut cols = Vec::new();
    for c in 0..first.num_columns() {
        let arrays: Vec<&dyn deltalake::arrow::array::Array> =
            batches.iter().map(|b| b.column(c).as_ref()).collect();
        cols.push(deltalake::arrow::compute::interleave(&arrays, &idx)?);
    }
    Ok(vec![RecordBatch::try_new(first.schema(), cols)?])
}

/// The source columns of a change batch (they come first).
fn source_columns(schema: &TableSchema, data: &RecordBatch) -> Vec<ArrayRef> {
    data.columns()[..schema.columns.len()].to_vec()
}

/// The key values of row 0 as lake literals.
fn key_scalars(schema: &TableSchema, cols: &[ArrayRef]) -> Result<Vec<ScalarValue>> {
    schema
        .key
        .iter()
        .map(|&i| lake::scalar(&cols[i], 0))
        .collect()
}

/// `file:pos`.
pub fn show_pos(p: &BinlogPosition) -> String {
    format!("{}:{}", p.file, p.pos)
}

/// Wait until the table's committed binlog position is at or past `p`.
async fn wait_for(
    wh: &Warehouse,
    schema: &TableSchema,
    p: &BinlogPosition,
    wait: Duration,
) -> Result<()> {
    let table = schema.name.source();
    let started = Instant::now();
    loop {
        let state = LakeTable::committed(wh, schema)
            .await?
            .ok_or_else(|| Error::NotLanded(table.clone()))?;
        if let Some(why) = &state.parked {
            return Err(Error::Unverifiable {
                table,
                why: format!("capture of this table is parked ({why}); fix that first"),
            });
        }
        if let Some(low) = state.snapshot.as_ref().and_then(|s| s.low.as_ref()) {
            if low.is_after(p) {
                return Err(Error::Unverifiable {
                    table,
                    why: format!("the lake's snapshot of it started at {} after the position verify read at ({}); run verify again", show_pos(low), show_pos(p)),
                });
            }
        }
        // Where the table has landed to: its stream's position, else (a table only
        // snapshotted so far) the snapshot's (exact on MariaDB, the low watermark on
        // MySQL, which can only make verify wait longer).
        let snap = state.snapshot.as_ref().filter(|s| s.done);
        let landed = state
            .binlog
            .as_ref()
            .or(snap.and_then(|s| s.high.as_ref()))
            .or(snap.and_then(|s| s.low.as_ref()));
        if let Some(at) = landed {
            if let (Some(a), Some(b)) = (at.server_id, p.server_id) {
                if a != b {
                    return Err(Error::Unverifiable {
                        table,
                        why: format!("the lake's position is in the binlog of server {a}, the source's read is on server {b}; positions of two servers cannot be compared (verify against the server capture reads from)"),
                    });
                }
            }
            if !p.is_after(at) {
                return Ok(());
            }
        }
        if started.elapsed() >= wait {
            return Err(Error::NotCaughtUp {
                table,
                lake: landed.map_or("nothing from the binlog".into(), show_pos),
                source_pos: show_pos(p),
                waited_s: started.elapsed().as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Refuse a table whose text key columns order by a collation that is not bytewise.
async fn refuse_unordered_keys(source: &Source, schema: &TableSchema) -> Result<()> {
    let names: Vec<String> = schema
        .key
        .iter()
        .map(|&i| schema.columns[i].source_name.clone())
        .collect();
    let collations = tidemark_mysql::checksum::key_collations(source, schema).await?;
    for (col, coll) in names.iter().zip(collations) {
        if let Some(c) = coll {
            let c = c.to_ascii_lowercase();
            if !(c.ends_with("_bin") || c == "binary") {
                return Err(Error::Unverifiable {
                    table: schema.name.source(),
                    why: format!("key column {col} has collation {c}, which does not order bytewise, so the source's and the lake's key ranges would not match; verify supports keys of numbers, dates, binary strings and *_bin collations"),
                });
            }
        }
    }
    Ok(())
}

/// Append a run's reports to `tidemark.verifications`, one row per table.
pub async fn record(
    wh: &Warehouse,
    report: &report::Report,
    started_us: i64,
    finished_us: i64,
) -> Result<()> {
    let rows: Vec<tidemark_lake::VerificationRecord> = report
        .tables
        .iter()
        .map(|t| tidemark_lake::VerificationRecord {
            run_id: report.run_id.clone(),
            table_name: t.table.clone(),
            status: t.status.clone(),
            source_position: t.source_position.clone(),
            gtid: t.gtid.clone(),
            source_instant_us: t
                .source_instant
                .as_deref()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.timestamp_micros()),
            rows_source: t.rows_source as i64,
            rows_lake: t.rows_lake as i64,
            missing_in_lake: t.counts.missing_in_lake as i64,
            extra_in_lake: t.counts.extra_in_lake as i64,
            different: t.counts.different as i64,
            history_violations: t.history_violations as i64,
            started_us,
            finished_us,
            report: serde_json::to_string(t).unwrap_or_default(),
        })
        .collect();
    tidemark_lake::record_verifications(wh, &rows).await?;
    Ok(())
}
