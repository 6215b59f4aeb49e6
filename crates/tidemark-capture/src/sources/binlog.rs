//! Binlog capture: the replica side of MySQL replication, landed table by table.
//!
//! Per MySQL source: snapshot the tables never (or not completely) snapshotted, then
//! stream the binlog from the oldest committed position of any table and apply each
//! committed source transaction to every table that has not committed it yet.
//!
//! Exactly once: each table's current and history commits carry the binlog position
//! just after the last source transaction they contain (the positions sit at
//! transaction boundaries, so "has this table got transaction T" is a comparison
//! with T's end position). On restart every table skips what it already has, so a
//! crash at any instant — between the two tables of one source table, between
//! tables, mid-batch — loses nothing and lands nothing twice.
//!
//! Batching: many transactions per commit, flushed by size (`flush_rows`) or age
//! (`flush_interval_ms`, the freshness bound), always at a transaction boundary, so
//! one source transaction is never split across two commits of a table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{FutureExt, StreamExt};
use indicatif::ProgressBar;
use tidemark_core::change::ChangeBatchBuilder;
use tidemark_core::position::{BinlogPosition, SourceState};
use tidemark_core::schema::TableSchema;
use tidemark_lake::{stored_schema, TableKind, TableWriter, Warehouse};
use tidemark_mysql::binlog::{BinlogReader, StreamItem, Tracked, Transaction};
use tidemark_mysql::connect::Source;
use tidemark_mysql::discover::{describe, discover_each, DiscoveredTable};
use tidemark_mysql::preflight::{preflight, Outcome};
use tracing::{error, info, warn};

use tidemark_mysql::ddl::{ddl_renames, ddl_tables, DdlKind, DdlTarget};

use crate::landing::evolve::{evolve_in_place, fill, Defaults, Evolved};
use crate::landing::{selects, Item, Landed, Pace, Policy};
use crate::sources::snapshot::snapshot_table;

/// A table with no changes still gets a position-only commit this often, so a
/// restart does not re-read a long stretch of binlog for its sake.
const IDLE_POSITION_COMMIT: Duration = Duration::from_secs(60);
/// How often `run` maintains one more table (bin-pack, checkpoint, VACUUM).
const MAINTAIN_EVERY: Duration = Duration::from_secs(600);
/// Reconnection attempts after the binlog stream breaks, backing off up to 32 s
/// between them (about 5 minutes in all), before `run` gives up with the error.
const MAX_RECONNECTS: u32 = 10;

/// What one table's commit landed: rows, their last source instant, their
/// `_ingest_ts`.
type Flushed = (usize, Option<i64>, i64);

/// One source table in the stream.
struct Table {
    schema: Arc<TableSchema>,
    writer: TableWriter,
    /// Committed position of the history log: every transaction ending at or before
    /// it is in the lake (merge-on-read: the current table is derived from history).
    pos: BinlogPosition,
    /// Snapshot instant: a change is never stamped earlier than the snapshot row it
    /// follows (the binlog has one-second resolution).
    snapshot_ts_us: i64,
    pending: ChangeBatchBuilder,
    /// End of the last transaction in `pending`, and its source instant.
    pending_end: Option<(BinlogPosition, i64)>,
    last_commit: Instant,
    pace: Pace,
}

impl Table {
    /// Land pending rows (or just move the position to `to`) in the history log;
    /// returns the rows, their last source instant and their `_ingest_ts`.
    async fn flush(&mut self, to: &BinlogPosition) -> Result<Flushed> {
        let batch = self.pending.finish()?;
        let rows = batch.data.num_rows();
        let committed = self.writer.committed(TableKind::History).state.clone();
        let (end, source_ts) = match self.pending_end.take() {
            Some((p, ts)) => (p, Some(ts)),
            None => (to.clone(), committed.last_source_ts_us),
        };
        let state = tidemark_core::position::SourceState {
            binlog: Some(end.clone()),
            last_source_ts_us: source_ts,
            ..committed
        };
        let ingest = self.commit_retrying(&batch, state).await?;
        self.pos = end;
        self.pace.tail_rows += rows as u64;
        self.last_commit = Instant::now();
        Ok((rows, source_ts, ingest))
    }
}

impl Table {
    /// One history commit of `batch` carrying `state`. A transient failure (the
    /// object store, the disk, the network) is tried again with exponential backoff,
    /// ten times, 0.2 s doubling to 20 s plus jitter (about 1.5 to 3 minutes); a
    /// definite one is returned at once. A commit whose
    /// answer was lost may have landed all the same: the table's committed state says
    /// so, and then it is not made twice.
    async fn commit_retrying(
        &mut self,
        batch: &tidemark_core::change::ChangeBatch,
        state: tidemark_core::position::SourceState,
    ) -> Result<i64> {
        use backon::BackoffBuilder;
        let table = self.schema.name.source();
        let before = self.writer.committed(TableKind::History).txn;
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(20))
            .with_max_times(10)
            .with_jitter()
            .build();
        loop {
            let e = match self.writer.append_history(batch, state.clone()).await {
                Ok(ingest) => return Ok(ingest),
                Err(e) => e,
            };
            if !e.is_transient() {
                return Err(anyhow::Error::new(e).context(format!("table {table}")));
            }
            let Some(delay) = delays.next() else {
                return Err(anyhow::Error::new(e).context(format!(
                    "table {table}: the commit kept failing through ten tries over a minute and a half or more; nothing of it is in the lake, and a restart resumes from the committed position"
                )));
            };
            warn!(table = %table, error = %e, retry_in_ms = delay.as_millis() as u64, "commit failed; trying again");
            tokio::time::sleep(delay).await;
            // Did the failed commit land after all (its answer lost)?
            if self.writer.reload().await.is_ok() {
                let now = self.writer.committed(TableKind::History);
                if now.txn == before + 1 && now.state.binlog == state.binlog {
                    let ingest = now.state.last_ingest_us.unwrap_or_default();
                    return Ok(ingest);
                }
            }
        }
    }
}

/// A lake error that trying again would repeat (see `tidemark_lake::Error::is_transient`).
fn is_definite(e: &anyhow::Error) -> bool {
    e.chain()
        .find_map(|c| c.downcast_ref::<tidemark_lake::Error>())
        .is_some_and(|l| !l.is_transient())
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

struct Stream {
    source: String,
    metrics: crate::metrics::Shared,
    wh: Warehouse,
    /// The pipeline's stop flag (a snapshot of a table added while streaming stops
    /// at its next chunk).
    stop: Arc<AtomicBool>,
    /// Parked tables whose parking is not committed yet.
    to_persist: Vec<(Table, String)>,
    tables: HashMap<String, Table>,
    /// Tables that stopped, with why: they keep their landed data and position.
    parked: HashMap<String, String>,
    /// End of the last transaction read.
    stream_end: BinlogPosition,
    last_source_ts_us: i64,
}

impl Stream {
    /// The tables still captured, for the binlog reader.
    fn tracked(&self) -> Tracked {
        self.tables
            .values()
            .map(|t| {
                let n = &t.schema.name;
                (
                    (n.source_db.clone(), n.source_table.clone()),
                    t.schema.clone(),
                )
            })
            .collect()
    }

    /// Where a (re)connected stream starts: the oldest committed table position.
    fn resume_position(&self) -> Option<BinlogPosition> {
        self.tables
            .values()
            .map(|t| t.pos.clone())
            .min_by_key(|p| p.order_key())
    }

    fn park(&mut self, reader: Option<&mut BinlogReader>, table: &str, why: String) {
        if let Some(t) = self.tables.remove(table) {
            if let Some(r) = reader {
                r.untrack(&t.schema.name.source_db, &t.schema.name.source_table);
            }
            // Recorded in the table's history state at the next flush, so `tidemark
            // status` shows it and a restart does not replay the binlog to find out again.
            self.to_persist.push((t, why.clone()));
        }
        error!(source = %self.source, table = %table, error = %why, "table parked; the other tables keep flowing");
        self.metrics
            .lock()
            .expect("metrics lock")
            .table(&self.source, table)
            .parked = true;
        self.parked.insert(table.to_string(), why);
    }

    /// Apply a DDL statement at `end` to one table it names: a new table that the
    /// config selects is snapshotted and captured; TRUNCATE and DROP TABLE close every
    /// row's history version; a column change evolves the table in place when its old
    /// values carry over exactly, and parks it otherwise (see `tidemark_core::evolve`).
    #[allow(clippy::too_many_arguments)]
    async fn ddl(
        &mut self,
        source: &Source,
        reader: &mut BinlogReader,
        target: &DdlTarget,
        sql: &str,
        end: &BinlogPosition,
        ts_us: i64,
    ) -> Result<()> {
        let (db, table) = (target.db.as_str(), target.table.as_str());
        let key = format!("{db}.{table}");
        let position = format!("{}:{}", end.file, end.pos);
        let schema_changed = |message: String| {
            tidemark_mysql::Error::SchemaChanged {
                source_name: self.source.clone(),
                table: key.clone(),
                position: position.clone(),
                message: format!("{message}: {sql}"),
            }
            .to_string()
        };
        let tracked = self.tables.contains_key(&key);
        // Applications that churn tables of their own (ETL scratch tables) must not
        // cost a catalog query per statement: only selected tables are looked at.
        if !tracked && (!selects(source, db, table)? || self.parked.contains_key(&key)) {
            return Ok(());
        }
        let now = describe(source, db, table).await;
        let Some(t) = self.tables.get_mut(&key) else {
            // CREATE TABLE, RENAME TABLE … TO, or a table re-created after a DROP.
            match now {
                Ok(Some(d)) => self.add_table(source, reader, d).await,
                Ok(None) => {}
                Err(e) => {
                    let why = schema_changed(format!("its definition cannot be captured ({e})"));
                    self.park(Some(reader), &key, why);
                }
            }
            return Ok(());
        };
        if !end.is_after(&t.pos) {
            return Ok(()); // applied before a restart
        }
        let truncate = target.kind == DdlKind::Truncate;
        // A DROP closes the table even when the server has a table of that name again
        // (re-created since): the CREATE that follows in the stream captures that one.
        let dropped = target.kind == DdlKind::Drop;
        let ts = ts_us.max(t.snapshot_ts_us);
        let seq = tidemark_mysql::binlog::seq_base(&end.file, end.pos as u32);
        // TRUNCATE and DROP close the rows whatever the server has now.
        let now = match now {
            Ok(Some(_)) if truncate || dropped => Ok(None),
            other => other,
        };
        match now {
            Ok(None) => {
                let state = SourceState {
                    closed_at: (!truncate).then(|| position.clone()),
                    binlog: Some(end.clone()),
                    last_source_ts_us: Some(ts_us),
                    ..t.writer.committed(TableKind::History).state.clone()
                };
                let rows = t
                    .writer
                    .delete_all(ts, &position, seq, state)
                    .await
                    .with_context(|| format!("table {key}: closing its rows at {position}"))?;
                t.pos = end.clone();
                t.pace.tail_rows += rows;
                if truncate {
                    info!(source = %self.source, table = %key, rows, position = %position, "table truncated at the source; its rows are closed in history");
                } else {
                    info!(source = %self.source, table = %key, rows, position = %position, "table dropped or renamed at the source; its history stays, and capture stops");
                    let t = self.tables.remove(&key).expect("present");
                    reader.untrack(&t.schema.name.source_db, &t.schema.name.source_table);
                }
            }
            Ok(Some(d)) if d.schema.same_definition(&t.schema) => {}
            Ok(Some(d)) => {
                let renames = ddl_renames(sql);
                let evolved = evolve_in_place(
                    Defaults::Source(source),
                    db,
                    table,
                    &mut t.writer,
                    &d.schema,
                    &renames,
                    &position,
                    seq,
                    |_| ts,
                    |committed| SourceState {
                        binlog: Some(end.clone()),
                        last_source_ts_us: Some(ts_us),
                        ..committed
                    },
                )
                .await?;
                let evolution = match evolved {
                    Ok(Evolved::Now(e)) => e,
                    Ok(Evolved::Elsewhere) => {
                        let why = schema_changed(
                            "its definition in the lake was changed by another writer meanwhile"
                                .to_string(),
                        );
                        self.park(Some(reader), &key, why);
                        return Ok(());
                    }
                    Err(why) => {
                        let why = schema_changed(why);
                        self.park(Some(reader), &key, why);
                        return Ok(());
                    }
                };
                let filled = match fill(&mut t.writer).await {
                    Ok(n) => n,
                    // The debt stays recorded (`pending_fill`): landing the table again
                    // is the way out, and the other tables go on.
                    Err(e) => {
                        let why = schema_changed(format!(
                            "the default of an added column cannot be written into the existing rows ({e})"
                        ));
                        self.park(Some(reader), &key, why);
                        return Ok(());
                    }
                };
                // Reads now take every row from history; the next compaction writes a
                // base of the new shape.
                t.pace.rebuilding(filled);
                let schema = t.writer.schema().clone();
                t.schema = schema.clone();
                t.pending = ChangeBatchBuilder::new(schema.clone(), 1024);
                t.pos = end.clone();
                reader.track(schema);
                info!(source = %self.source, table = %key, position = %position,
                    changes = %evolution.changes.join("; "), "schema changed; the table evolved in place");
            }
            Err(e) => {
                let why = schema_changed(format!("its new definition cannot be captured ({e})"));
                self.park(Some(reader), &key, why);
            }
        }
        Ok(())
    }

    /// Start capturing a table created (or renamed into the selection) while
    /// streaming: snapshot it now; the stream skips its changes up to the snapshot.
    async fn add_table(&mut self, source: &Source, reader: &mut BinlogReader, d: DiscoveredTable) {
        let key = d.schema.name.source();
        let chunk_rows = source.config.snapshot_chunk_rows;
        let landed = async {
            snapshot_table(
                source,
                &self.wh,
                &d,
                chunk_rows,
                ProgressBar::hidden(),
                self.stop.clone(),
            )
            .await?;
            open_table(&self.wh, &d).await
        }
        .await;
        match landed {
            Ok(t) => {
                info!(source = %self.source, table = %key, "new table at the source; snapshotted, now captured");
                reader.track(t.schema.clone());
                self.tables.insert(key, t);
            }
            Err(e) => {
                let why = format!("new table {key}: {e:#}");
                self.park(Some(reader), &key, why);
            }
        }
    }

    /// Buffer a transaction's rows in their tables; returns how many.
    fn add(&mut self, tx: Transaction, reader: &mut BinlogReader) -> usize {
        for (schema, e) in tx.failures {
            let name = schema.name.source();
            // A transaction the table landed before a restart is skipped anyway; its
            // rows may predate a schema change the table has since applied.
            if self
                .tables
                .get(&name)
                .is_some_and(|t| !tx.end.is_after(&t.pos))
            {
                continue;
            }
            self.park(Some(reader), &name, e.to_string());
        }
        let pos_text = format!("{}:{}", tx.end.file, tx.end.pos);
        let mut failed = Vec::new();
        let mut buffered = 0;
        for ch in &tx.changes {
            let name = ch.table.name.source();
            let Some(t) = self.tables.get_mut(&name) else {
                continue;
            };
            if !tx.end.is_after(&t.pos) {
                continue; // landed before a restart
            }
            let ts = tx.ts_us.max(t.snapshot_ts_us);
            let r = t.pending.push_text_row(
                ch.cells.iter().map(|c| c.as_deref()),
                ch.op,
                ts,
                &pos_text,
                ch.seq,
            );
            match r {
                Ok(()) => {
                    t.pending_end = Some((tx.end.clone(), tx.ts_us));
                    buffered += 1;
                }
                Err(e) => failed.push((name, format!("binlog at {pos_text}: {e}"))),
            }
        }
        for (name, why) in failed {
            self.park(Some(reader), &name, why);
        }
        self.last_source_ts_us = tx.ts_us;
        self.stream_end = tx.end;
        buffered
    }

    /// Commit every table with pending rows, and idle tables whose position lags
    /// (all of them with `all_positions`).
    async fn commit(&mut self, all_positions: bool) -> Result<Option<Vec<Landed>>> {
        for (mut t, why) in std::mem::take(&mut self.to_persist) {
            // Rows pending for a parked table are dropped: its position stays before
            // them, and landing it again re-reads them from the source.
            let state = tidemark_core::position::SourceState {
                parked: Some(why),
                ..t.writer.committed(TableKind::History).state.clone()
            };
            // A table parked because its commits fail may fail this one too: it stays
            // parked in this run, and a restart finds out again.
            if let Err(e) = t
                .writer
                .append_history(
                    &ChangeBatchBuilder::new(t.schema.clone(), 0).finish()?,
                    state,
                )
                .await
            {
                warn!(source = %self.source, table = %t.schema.name.source(), error = %e,
                    "could not record in the lake that the table is parked; it stays parked in this run");
            }
        }
        let started = Instant::now();
        let to = self.stream_end.clone();
        let due: Vec<&mut Table> = self
            .tables
            .values_mut()
            .filter(|t| {
                !t.pending.is_empty()
                    || (to.is_after(&t.pos)
                        && (all_positions || t.last_commit.elapsed() >= IDLE_POSITION_COMMIT))
            })
            .collect();
        if due.is_empty() {
            return Ok(None);
        }
        let tables = due.len();
        // Tables commit concurrently: each is its own pair of Delta tables.
        // Made and boxed before the stream holds them: see snapshot_missing.
        let flushes: Vec<futures::future::BoxFuture<'_, (String, Result<Flushed>)>> = due
            .into_iter()
            .map(|t| {
                let to = to.clone();
                async move { (t.schema.name.source(), t.flush(&to).await) }.boxed()
            })
            .collect();
        let results: Vec<(String, Result<Flushed>)> = futures::stream::iter(flushes)
            .buffer_unordered(4)
            .collect()
            .await;
        let mut rows = 0;
        let mut failed = Vec::new();
        let mut landed = Vec::new();
        for (table, r) in results {
            let (n, source_ts, ingest) = match r {
                Ok(flushed) => flushed,
                Err(e) if is_definite(&e) => {
                    // This table stops; the others keep flowing. Its position stays
                    // before the rows that did not land.
                    failed.push((table, format!("{e:#}")));
                    continue;
                }
                Err(e) => return Err(e),
            };
            rows += n;
            let sql_name = self.tables[&table].schema.name.sql();
            landed.push(Landed {
                table,
                sql_name,
                rows: n,
                last_source_ts_us: source_ts,
                ingest_us: Some(ingest),
            });
        }
        for (table, why) in failed {
            self.park(
                None,
                &table,
                format!("its commit failed with an error that trying again would repeat: {why}"),
            );
        }
        let lag_ms = (now_us() - self.last_source_ts_us) / 1000;
        info!(source = %self.source, rows, tables, position = %to,
            commit_ms = started.elapsed().as_millis() as u64, lag_ms, "committed");
        Ok(Some(landed))
    }

    fn paced(&mut self) -> Vec<(&Arc<TableSchema>, &mut Pace)> {
        self.tables
            .values_mut()
            .map(|t| (&t.schema, &mut t.pace))
            .collect()
    }
}

/// Capture source `name` until `cx.stop` (or, with `until_caught_up`, until the
/// stream has read what the server had written when it began and then nothing new),
/// snapshotting first the tables never landed.
pub async fn run_source(cx: &crate::Pipeline<'_>, name: &str) -> Result<()> {
    let (config, wh, stop) = (cx.config, cx.wh, cx.stop.clone());
    let (until_caught_up, metrics) = (cx.options.until_caught_up, cx.metrics.clone());
    let source = Source::connect(name, config.source_for(&cx.options.environment, name)?).await?;
    let checks = preflight(&source).await?;
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    if !failed.is_empty() {
        bail!(
            "the server is not ready for change capture:\n  {}",
            failed.join("\n  ")
        );
    }
    // A selected table that cannot be captured (no key, say) parks; the others go on.
    let (mut discovered, uncapturable) = discover_each(&source).await?;
    if discovered.is_empty() && uncapturable.is_empty() {
        bail!("no tables selected; check databases/include/exclude in [sources.{name}]");
    }
    // A table already landed streams with the definition it was landed with: binlog
    // events written before a schema change that happened while tidemark was stopped
    // still have that shape, and the change itself parks the table when the stream
    // reaches it.
    // A landed table that cannot be read (a damaged log, an unreachable prefix) is
    // parked for this run; the source's other tables go on.
    let mut unreadable = Vec::new();
    for d in &mut discovered {
        match landed_schema(wh, d).await {
            Ok(Some(landed)) => {
                if !landed.same_definition(&d.schema) {
                    info!(source = %name, table = %d.schema.name.source(), "the source definition differs from the landed one; streaming with the landed one up to the schema change");
                }
                d.schema = Arc::new(landed);
            }
            Ok(None) => {}
            Err(e) => unreadable.push((
                d.schema.name.source(),
                format!("its landed tables cannot be read: {e:#}"),
            )),
        }
    }
    discovered.retain(|d| !unreadable.iter().any(|(t, _)| *t == d.schema.name.source()));
    let mut snapshot_failures = snapshot_missing(&source, wh, &discovered, &stop).await;
    snapshot_failures.extend(unreadable);
    snapshot_failures.extend(uncapturable.into_iter().map(|(t, e)| (t, e.to_string())));
    // Tables landed from this source that the server no longer has were dropped or
    // renamed while tidemark was not reading: they are captured up to that statement,
    // which then closes their rows.
    let vanished = vanished_tables(&source, wh, name, &discovered).await?;
    if stop.load(Ordering::SeqCst) {
        return Ok(());
    }

    let mut stream = Stream {
        source: name.to_string(),
        metrics,
        wh: wh.clone(),
        stop: stop.clone(),
        to_persist: Vec::new(),
        tables: HashMap::new(),
        parked: HashMap::new(),
        stream_end: BinlogPosition {
            server_id: None,
            file: String::new(),
            pos: 0,
            gtid: None,
        },
        last_source_ts_us: now_us(),
    };
    for (table, why) in snapshot_failures {
        error!(source = %name, table = %table, error = %why, "table parked; the other tables keep flowing");
        stream.parked.insert(table, why);
    }
    for d in discovered.iter().chain(&vanished) {
        let table = d.schema.name.source();
        if stream.parked.contains_key(&table) {
            continue;
        }
        match open_table(wh, d).await {
            Ok(t) => {
                if let Some(why) = t.writer.committed(TableKind::History).state.parked.clone() {
                    warn!(source = %name, table = %table, reason = %why, "table is parked; land it again with `tidemark snapshot --resnapshot --table {table}`");
                    stream.parked.insert(table, why);
                } else {
                    stream.tables.insert(table, t);
                }
            }
            Err(e) => {
                error!(source = %name, table = %table, error = %format!("{e:#}"), "table parked; the other tables keep flowing");
                stream.parked.insert(table, format!("{e:#}"));
            }
        }
    }
    {
        let mut m = stream.metrics.lock().expect("metrics lock");
        for t in stream.parked.keys() {
            m.table(&stream.source, t).parked = true;
        }
    }
    let Some(start) = stream.resume_position() else {
        bail!("every selected table is parked (see the errors above); nothing to capture");
    };
    stream.stream_end = start.clone();
    let server_id = source.config.replica_server_id(name);
    let reader = BinlogReader::open(&source, &start, server_id, stream.tracked()).await?;
    // "Caught up" means having read what the server had written when the run began,
    // not merely a quiet flush interval: a busy server can be slow to send, and a
    // backfill that stopped short would look finished.
    let catch_up_to = if until_caught_up {
        let mut conn = source.conn().await?;
        tidemark_mysql::discover::binlog_position(&source, &mut conn).await?
    } else {
        None
    };
    info!(source = %name, tables = stream.tables.len(), parked = stream.parked.len(), position = %start, "streaming");
    let policy = Policy {
        interval: Duration::from_millis(source.config.flush_interval_ms.max(10)),
        flush_rows: source.config.flush_rows,
        until_caught_up,
        maintain_every: Some(MAINTAIN_EVERY),
    };
    let mut binlog = Binlog {
        stream,
        reader,
        source,
        server_id,
        catch_up_to,
        backoff: reconnects(),
        failures: 0,
        environment: cx.options.environment.clone(),
        updates: cx.options.config_updates.clone(),
    };
    crate::landing::land(&mut binlog, policy, wh, stop, cx.metrics.clone()).await
}

impl Binlog {
    /// Follow a reloaded config's selection of this source's tables (databases,
    /// include, exclude) without stopping: tables no longer selected stop being
    /// captured (their landed history stays); newly selected ones are snapshotted and
    /// streamed, as a table created at the source is. A table selected once before
    /// resumes from its own committed position, so the stream is read again from
    /// there (every other table skips what it has).
    async fn reselect(&mut self, config: &tidemark_core::config::Config) -> Result<()> {
        let name = self.stream.source.clone();
        let new = match config.source_for(&self.environment, &name) {
            Ok(c) => c,
            Err(e) => {
                warn!(source = %name, error = %e, "the reloaded config does not define this source; capture goes on with the selection it had (a removed source stops at the next restart)");
                return Ok(());
            }
        };
        let old = &self.source.config;
        if (&old.databases, &old.include, &old.exclude)
            == (&new.databases, &new.include, &new.exclude)
        {
            return Ok(());
        }
        if let Err(e) = new.table_filter() {
            warn!(source = %name, error = %e, "the reloaded selection is not valid; capture goes on with the one it had");
            return Ok(());
        }
        self.source.config.databases = new.databases;
        self.source.config.include = new.include;
        self.source.config.exclude = new.exclude;
        let mut removed = Vec::new();
        for (key, t) in &self.stream.tables {
            let n = &t.schema.name;
            if !selects(&self.source, &n.source_db, &n.source_table)? {
                removed.push(key.clone());
            }
        }
        for key in &removed {
            if let Some(t) = self.stream.tables.remove(key) {
                let n = &t.schema.name;
                self.reader.untrack(&n.source_db, &n.source_table);
                info!(source = %name, table = %key, position = %t.pos, "no longer selected; capture of it stops and its landed history stays");
            }
        }
        let (discovered, uncapturable) = discover_each(&self.source).await?;
        for (table, e) in uncapturable {
            if !self.stream.parked.contains_key(&table) && !self.stream.tables.contains_key(&table)
            {
                self.stream
                    .park(Some(&mut self.reader), &table, e.to_string());
            }
        }
        let mut added = Vec::new();
        for mut d in discovered {
            let key = d.schema.name.source();
            if self.stream.tables.contains_key(&key) || self.stream.parked.contains_key(&key) {
                continue;
            }
            // Landed before: it streams with the definition it was landed with, up to
            // the schema change (as at startup).
            match landed_schema(&self.stream.wh, &d).await {
                Ok(Some(landed)) => d.schema = Arc::new(landed),
                Ok(None) => {}
                Err(e) => {
                    let why = format!("its landed tables cannot be read: {e:#}");
                    self.stream.park(Some(&mut self.reader), &key, why);
                    continue;
                }
            }
            self.stream
                .add_table(&self.source, &mut self.reader, d)
                .await;
            if self.stream.tables.contains_key(&key) {
                added.push(key);
            }
        }
        info!(source = %name, added = %added.join(", "), removed = %removed.join(", "), "the selection changed; capture follows it");
        // A table selected once before is behind the stream: read again from the
        // oldest position.
        let behind: Vec<String> = added
            .iter()
            .filter(|k| self.stream.stream_end.is_after(&self.stream.tables[*k].pos))
            .cloned()
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        let Some(from) = self.stream.resume_position() else {
            return Ok(());
        };
        match BinlogReader::open(&self.source, &from, self.server_id, self.stream.tracked()).await {
            Ok(r) => {
                info!(source = %name, position = %from, tables = %behind.join(", "), "reading the binlog again from the oldest position of the tables selected again");
                self.reader = r;
            }
            Err(e) => {
                for key in behind {
                    let why = format!(
                        "selected again, but the binlog cannot be read from its position {from} ({e}); land it again with `tidemark snapshot --resnapshot --table {key}`"
                    );
                    self.stream.park(Some(&mut self.reader), &key, why);
                }
            }
        }
        Ok(())
    }
}

/// Reconnection pauses: 2 s doubling to 32 s, with jitter, [`MAX_RECONNECTS`] times
/// (about five minutes).
fn reconnects() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(2))
        .with_max_delay(Duration::from_secs(32))
        .with_max_times(MAX_RECONNECTS as usize)
        .with_jitter()
        .build()
}

/// A MySQL source's binlog, as the landing loop reads it.
struct Binlog {
    stream: Stream,
    reader: BinlogReader,
    source: Source,
    server_id: u32,
    /// With `until_caught_up`: what the server had written when the run began.
    catch_up_to: Option<BinlogPosition>,
    backoff: backon::ExponentialBackoff,
    failures: u32,
    /// The environment whose credentials and overrides apply.
    environment: String,
    /// A config reloaded by the daemon: a changed selection takes effect here.
    updates: Option<tokio::sync::watch::Receiver<Arc<tidemark_core::config::Config>>>,
}

/// What the binlog applies with nothing buffered before it.
enum Barrier {
    /// A DDL statement (rows before it land with the definition they were written
    /// under, and a compaction of the old shape finishes first).
    Ddl {
        db: String,
        sql: String,
        end: BinlogPosition,
        ts_us: i64,
    },
    /// The stream broke: reconnect after the pause, from the tables' committed
    /// positions.
    Reconnect(Duration),
    /// The config was reloaded: its selection of this source's tables may differ.
    Reselect(Arc<tidemark_core::config::Config>),
}

impl crate::landing::Source for Binlog {
    type Barrier = Barrier;

    fn name(&self) -> &str {
        &self.stream.source
    }

    async fn next(&mut self, wait: Duration) -> Result<Item<Barrier>> {
        if let Some(updates) = &mut self.updates {
            if updates.has_changed().unwrap_or(false) {
                let config = updates.borrow_and_update().clone();
                return Ok(Item::Barrier {
                    all_positions: true,
                    then: Barrier::Reselect(config),
                });
            }
        }
        let item = match self.reader.next(wait).await {
            Ok(item) => {
                self.failures = 0;
                self.backoff = reconnects();
                item
            }
            // The server went away or the connection broke: land what is complete,
            // then reconnect from the tables' committed positions, backing off. A
            // purged binlog or a refused login is not retried.
            Err(
                e @ (tidemark_mysql::Error::Binlog { .. }
                | tidemark_mysql::Error::Unreachable { .. }),
            ) => {
                let Some(pause) = self.backoff.next() else {
                    return Err(e.into());
                };
                self.failures += 1;
                warn!(source = %self.stream.source, error = %e, attempt = self.failures, pause_s = pause.as_secs(), "binlog stream lost; reconnecting");
                return Ok(Item::Barrier {
                    all_positions: true,
                    then: Barrier::Reconnect(pause),
                });
            }
            Err(e) => return Err(e.into()),
        };
        Ok(match item {
            StreamItem::Commit(tx) => match self.stream.add(tx, &mut self.reader) {
                0 => Item::Read,
                n => Item::Buffered(n),
            },
            StreamItem::Ddl {
                db,
                sql,
                end,
                ts_us,
            } => Item::Barrier {
                all_positions: false,
                then: Barrier::Ddl {
                    db,
                    sql,
                    end,
                    ts_us,
                },
            },
            StreamItem::Idle => Item::Idle,
        })
    }

    async fn commit(&mut self, all_positions: bool) -> Result<Option<Vec<Landed>>> {
        self.stream.commit(all_positions).await
    }

    async fn apply(&mut self, barrier: Barrier) -> Result<Item<Barrier>> {
        match barrier {
            Barrier::Ddl {
                db,
                sql,
                end,
                ts_us,
            } => {
                self.stream.stream_end = end.clone();
                for target in ddl_tables(&sql, &db) {
                    self.stream
                        .ddl(&self.source, &mut self.reader, &target, &sql, &end, ts_us)
                        .await?;
                }
            }
            Barrier::Reconnect(pause) => {
                tokio::time::sleep(pause).await;
                let Some(from) = self.stream.resume_position() else {
                    bail!("every selected table is parked; nothing to capture");
                };
                match BinlogReader::open(&self.source, &from, self.server_id, self.stream.tracked())
                    .await
                {
                    Ok(r) => self.reader = r,
                    // The address now reaches another server: no retry helps.
                    Err(e @ tidemark_mysql::Error::ServerChanged { .. }) => return Err(e.into()),
                    Err(e) => {
                        warn!(source = %self.stream.source, error = %e, "reconnect failed; trying again")
                    }
                }
            }
            Barrier::Reselect(config) => self.reselect(&config).await?,
        }
        Ok(Item::Read)
    }

    async fn caught_up(&mut self) -> Result<bool> {
        Ok(self
            .catch_up_to
            .as_ref()
            .is_none_or(|p| self.reader.has_read(p)))
    }

    fn finished(&self) -> Result<()> {
        let parked = &self.stream.parked;
        info!(source = %self.stream.source, position = %self.stream.stream_end, parked = parked.len(), "caught up");
        if !parked.is_empty() {
            let list: Vec<String> = parked
                .iter()
                .map(|(t, why)| format!("{t}: {why}"))
                .collect();
            bail!(
                "caught up, but {} table(s) are parked:\n  {}",
                list.len(),
                list.join("\n  ")
            );
        }
        Ok(())
    }

    fn paced(&mut self) -> Vec<(&Arc<TableSchema>, &mut Pace)> {
        self.stream.paced()
    }
}

/// Snapshot every table whose snapshot is missing or unfinished; returns the tables
/// that failed, with why (they park; the others go on).
async fn snapshot_missing(
    source: &Source,
    wh: &Warehouse,
    tables: &[DiscoveredTable],
    stop: &Arc<AtomicBool>,
) -> Vec<(String, String)> {
    let chunk_rows = source.config.snapshot_chunk_rows;
    // The futures are made (and boxed) before the stream holds them, so no closure is
    // held across an await: rustc could not prove the pipeline's future Send
    // otherwise, and the daemon spawns it.
    let snapshots: Vec<futures::future::BoxFuture<'_, Option<(String, String)>>> = tables
        .iter()
        .map(|t| {
            async move {
                let name = t.schema.name.source();
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
                match snapshot_table(
                    source,
                    wh,
                    t,
                    chunk_rows,
                    ProgressBar::hidden(),
                    stop.clone(),
                )
                .await
                {
                    Ok(r) => {
                        if !r.already_done {
                            info!(table = %r.table, rows = r.total_rows, "snapshot complete");
                        }
                        None
                    }
                    Err(e) => Some((name.clone(), format!("snapshot of {name}: {e:#}"))),
                }
            }
            .boxed()
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(snapshots)
        .buffer_unordered(source.config.parallel_tables.max(1))
        .collect()
        .await;
    results.into_iter().flatten().collect()
}

/// Tables landed from source `name` that the server no longer has (and the config
/// still selects), with their landed definitions; those whose drop was already
/// applied are left out.
async fn vanished_tables(
    source: &Source,
    wh: &Warehouse,
    name: &str,
    discovered: &[DiscoveredTable],
) -> Result<Vec<DiscoveredTable>> {
    let mut out = Vec::new();
    for loc in wh.list().await? {
        if discovered
            .iter()
            .any(|d| d.schema.name.schema == loc.schema && d.schema.name.table == loc.table)
        {
            continue;
        }
        let url = wh.table_url(&loc.schema, &loc.table, TableKind::History);
        let (table, exists) = wh.delta_table(&url).await?;
        let Some(schema) = exists.then(|| stored_schema(&table)).flatten() else {
            continue;
        };
        // One landed table whose state cannot be read must not stop the source's
        // other tables: it is left out of this run, with the reason.
        let state = match tidemark_lake::committed_state(&table).await {
            Ok(c) => c.state,
            Err(e) => {
                warn!(source = %name, table = %schema.name.sql(), error = %e,
                    "a landed table that the source no longer has cannot be checked; it is left out of this run (see `tidemark status`)");
                continue;
            }
        };
        let n = &schema.name;
        let selected = selects(source, &n.source_db, &n.source_table)?;
        if state.source == name
            && state.binlog.is_some()
            && state.closed_at.is_none()
            && state.parked.is_none()
            && selected
        {
            out.push(DiscoveredTable {
                schema: Arc::new(schema),
                estimated_rows: 0,
            });
        }
    }
    Ok(out)
}

/// The definition a table was landed with, if it was (history holds it first: a
/// schema change commits there before the current table follows).
async fn landed_schema(wh: &Warehouse, d: &DiscoveredTable) -> Result<Option<TableSchema>> {
    let url = wh.table_url(
        &d.schema.name.schema,
        &d.schema.name.table,
        TableKind::History,
    );
    let (table, exists) = wh.delta_table(&url).await?;
    Ok(if exists { stored_schema(&table) } else { None })
}

async fn open_table(wh: &Warehouse, d: &DiscoveredTable) -> Result<Table> {
    let mut writer = TableWriter::open(wh, d.schema.clone()).await?;
    let name = d.schema.name.source();
    let hist = &writer.committed(TableKind::History).state;
    let snap = hist.snapshot.clone().unwrap_or_default();
    let pos = hist.binlog.clone().or(snap.low).with_context(|| {
        format!(
            "{name} has no binlog position: it was snapshotted with binary logging off or without REPLICATION CLIENT; land it again with `tidemark snapshot --resnapshot --table {name}`"
        )
    })?;
    // A crash between the two commits of a schema change left the current table
    // with the old shape.
    writer.evolve_current().await?;
    writer.fill_defaults().await?;
    // From here on the current table is a base plus the history tail (merge-on-read):
    // a streamed batch is one history append, whatever the table size.
    let mark = writer.start_merge_on_read().await?;
    // After a schema change reads take everything from history until a compaction.
    let rebuild = mark == i64::MIN;
    Ok(Table {
        schema: d.schema.clone(),
        pending: ChangeBatchBuilder::new(d.schema.clone(), 1024),
        writer,
        pos,
        snapshot_ts_us: snap.started_at_us,
        pending_end: None,
        last_commit: Instant::now(),
        pace: Pace::opened(snap.rows, rebuild),
    })
}
