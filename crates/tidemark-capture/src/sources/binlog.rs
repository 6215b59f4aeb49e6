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
use tidemark_core::position::BinlogPosition;
use tidemark_core::schema::TableSchema;
use tidemark_lake::{stored_schema, TableKind, TableWriter, Warehouse};
use tidemark_mysql::binlog::{BinlogReader, StreamItem, Tracked, Transaction};
use tidemark_mysql::connect::Source;
use tidemark_mysql::discover::{describe, discover_each, DiscoveredTable};
use tidemark_mysql::preflight::{preflight, Outcome};
use tidemark_mysql::snapshot::snapshot_table;
use tracing::{error, info, warn};

use tidemark_mysql::ddl::{ddl_renames, ddl_tables, DdlKind, DdlTarget};

use crate::landing::{plan_evolution, selects, spawn_compaction, CompactionTask, COMPACT_MIN_ROWS};

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
type Landed = (usize, Option<i64>, i64);

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
    /// Rows in the current table's base, and history rows landed since its mark: the
    /// compaction trigger.
    base_rows: u64,
    tail_rows: u64,
}

impl Table {
    /// Land pending rows (or just move the position to `to`) in the history log;
    /// returns the rows, their last source instant and their `_ingest_ts`.
    async fn flush(&mut self, to: &BinlogPosition) -> Result<Landed> {
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
        self.tail_rows += rows as u64;
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
    compaction: Option<CompactionTask>,
    /// Parked tables whose parking is not committed yet.
    to_persist: Vec<(Table, String)>,
    last_maintenance: Instant,
    maintained_last: Option<String>,
    tables: HashMap<String, Table>,
    /// Tables that stopped, with why: they keep their landed data and position.
    parked: HashMap<String, String>,
    /// End of the last transaction read.
    stream_end: BinlogPosition,
    pending_rows: usize,
    oldest_pending: Option<Instant>,
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
        let state_at_end = |t: &Table| tidemark_core::position::SourceState {
            binlog: Some(end.clone()),
            last_source_ts_us: Some(ts_us),
            ..t.writer.committed(TableKind::History).state.clone()
        };
        let ts = ts_us.max(t.snapshot_ts_us);
        let seq = tidemark_mysql::binlog::seq_base(&end.file, end.pos as u32);
        // TRUNCATE and DROP close the rows whatever the server has now.
        let now = match now {
            Ok(Some(_)) if truncate || dropped => Ok(None),
            other => other,
        };
        match now {
            Ok(None) => {
                let state = tidemark_core::position::SourceState {
                    closed_at: (!truncate).then(|| position.clone()),
                    ..state_at_end(t)
                };
                let rows = t
                    .writer
                    .delete_all(ts, &position, seq, state)
                    .await
                    .with_context(|| format!("table {key}: closing its rows at {position}"))?;
                t.pos = end.clone();
                t.tail_rows += rows;
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
                let planned = plan_evolution(
                    source, db, table, &t.writer, &d.schema, &renames, ts, &position, seq,
                )
                .await;
                let (evolution, pending_fill) = match planned {
                    Ok(p) => p,
                    Err(why) => {
                        let why = schema_changed(why);
                        self.park(Some(reader), &key, why);
                        return Ok(());
                    }
                };
                let state = tidemark_core::position::SourceState {
                    pending_fill,
                    ..state_at_end(t)
                };
                t.writer
                    .evolve(evolution.schema, &evolution.added, state)
                    .await
                    .with_context(|| format!("table {key}: schema change at {position}"))?;
                let filled = match t.writer.fill_defaults().await {
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
                t.tail_rows += filled;
                let schema = t.writer.schema().clone();
                t.schema = schema.clone();
                t.pending = ChangeBatchBuilder::new(schema.clone(), 1024);
                t.pos = end.clone();
                // Reads now take every row from history; the next compaction writes a
                // base of the new shape.
                t.base_rows = 0;
                t.tail_rows = t.tail_rows.max(COMPACT_MIN_ROWS);
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
            snapshot_table(source, &self.wh, &d, chunk_rows, ProgressBar::hidden()).await?;
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

    fn add(&mut self, tx: Transaction, reader: &mut BinlogReader) {
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
                    self.pending_rows += 1;
                    self.oldest_pending.get_or_insert_with(Instant::now);
                }
                Err(e) => failed.push((name, format!("binlog at {pos_text}: {e}"))),
            }
        }
        for (name, why) in failed {
            self.park(Some(reader), &name, why);
        }
        self.last_source_ts_us = tx.ts_us;
        self.stream_end = tx.end;
    }

    /// Commit every table with pending rows, and idle tables whose position lags.
    async fn flush(&mut self, all_positions: bool) -> Result<()> {
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
            return Ok(());
        }
        let tables = due.len();
        // Tables commit concurrently: each is its own pair of Delta tables.
        // Made and boxed before the stream holds them: see snapshot_missing.
        let flushes: Vec<futures::future::BoxFuture<'_, (String, Result<Landed>)>> = due
            .into_iter()
            .map(|t| {
                let to = to.clone();
                async move { (t.schema.name.source(), t.flush(&to).await) }.boxed()
            })
            .collect();
        let results: Vec<(String, Result<Landed>)> = futures::stream::iter(flushes)
            .buffer_unordered(4)
            .collect()
            .await;
        let mut rows = 0;
        let mut failed = Vec::new();
        {
            let mut m = self.metrics.lock().expect("metrics lock");
            for (table, r) in results {
                let (n, source_ts, ingest) = match r {
                    Ok(landed) => landed,
                    Err(e) if is_definite(&e) => {
                        // This table stops; the others keep flowing. Its position
                        // stays before the rows that did not land.
                        failed.push((table, format!("{e:#}")));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                rows += n;
                let tm = m.table(&self.source, &table);
                tm.changes += n as u64;
                if n > 0 {
                    tm.last_source_ts_us = source_ts;
                    tm.last_ingest_us = Some(ingest);
                    if let Some(t) = self.tables.get(&table) {
                        m.landed(&t.schema.name.sql());
                    }
                }
            }
            m.committed(&self.source, started.elapsed().as_secs_f64());
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
        self.pending_rows = 0;
        self.oldest_pending = None;
        self.maybe_compact(false).await;
        Ok(())
    }

    /// Fold a table's history tail into its current base once the tail reaches a
    /// fifth of the base (at least [`COMPACT_MIN_ROWS`]): the work per change then stays
    /// the same however large the table grows, and reads never merge a tail larger
    /// than that. One compaction at a time, in the background; ingestion goes on.
    async fn maybe_compact(&mut self, wait: bool) {
        if let Some(task) = &self.compaction {
            if !wait && !task.is_finished() {
                return;
            }
            let task = self.compaction.take().expect("present");
            match task.await {
                Ok((table, Ok(Some(c)))) => {
                    if let Some(t) = self.tables.get_mut(&table) {
                        t.tail_rows = t.tail_rows.saturating_sub(c.tail_rows);
                        t.base_rows = c.rows;
                    }
                    info!(source = %self.source, table = %table, folded = c.tail_rows, rows = c.rows, "current table compacted");
                }
                Ok((_, Ok(None))) => {}
                Ok((table, Err(e))) => {
                    warn!(source = %self.source, table = %table, error = %format!("{e:#}"), "compaction failed; the table stays correct (read merges the tail) and compaction is retried later");
                }
                Err(e) => warn!(source = %self.source, error = %e, "compaction task failed"),
            }
        }
        if wait {
            return;
        }
        let due = self
            .tables
            .values()
            .filter(|t| tidemark_lake::mor::compaction_due(t.tail_rows, t.base_rows))
            .max_by_key(|t| t.tail_rows);
        // Otherwise, every MAINTAIN_EVERY, one table (in turn) gets the full
        // maintenance: small files bin-packed, a checkpoint, VACUUM.
        let (table, full) = match due {
            Some(t) => (t, false),
            None if self.last_maintenance.elapsed() >= MAINTAIN_EVERY => {
                let mut names: Vec<&String> = self.tables.keys().collect();
                names.sort();
                let Some(next) = names
                    .iter()
                    .find(|n| self.maintained_last.as_ref().is_none_or(|l| **n > l))
                    .or(names.first())
                    .map(|n| n.to_string())
                else {
                    return;
                };
                self.last_maintenance = Instant::now();
                self.maintained_last = Some(next.clone());
                (&self.tables[&next], true)
            }
            None => return,
        };
        self.compaction = Some(spawn_compaction(
            self.wh.clone(),
            table.schema.clone(),
            full,
        ));
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
        compaction: None,
        to_persist: Vec::new(),
        last_maintenance: Instant::now(),
        maintained_last: None,
        tables: HashMap::new(),
        parked: HashMap::new(),
        stream_end: BinlogPosition {
            server_id: None,
            file: String::new(),
            pos: 0,
            gtid: None,
        },
        pending_rows: 0,
        oldest_pending: None,
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
    let mut reader = BinlogReader::open(&source, &start, server_id, stream.tracked()).await?;
    // "Caught up" means having read what the server had written when the run began,
    // not merely a quiet flush interval: a busy server can be slow to send, and a
    // backfill that stopped short would look finished.
    let catch_up_to = if until_caught_up {
        let mut conn = source.conn().await?;
        tidemark_mysql::discover::binlog_position(&source, &mut conn).await?
    } else {
        None
    };
    let mut failures = 0u32;
    // 2 s doubling to 32 s, with jitter, MAX_RECONNECTS times (about five minutes).
    let reconnects = || {
        use backon::BackoffBuilder;
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(2))
            .with_max_delay(Duration::from_secs(32))
            .with_max_times(MAX_RECONNECTS as usize)
            .with_jitter()
            .build()
    };
    let mut backoff = reconnects();
    info!(source = %name, tables = stream.tables.len(), parked = stream.parked.len(), position = %start, "streaming");

    let interval = Duration::from_millis(source.config.flush_interval_ms.max(10));
    let flush_rows = source.config.flush_rows.max(1);
    loop {
        if stop.load(Ordering::SeqCst) {
            stream.flush(true).await?;
            stream.maybe_compact(true).await;
            info!(source = %name, position = %stream.stream_end, "stopped cleanly");
            return Ok(());
        }
        let wait = match stream.oldest_pending {
            Some(t) => interval.saturating_sub(t.elapsed()),
            None => interval,
        };
        let item = match reader.next(wait.max(Duration::from_millis(1))).await {
            Ok(item) => {
                failures = 0;
                backoff = reconnects();
                item
            }
            // The server went away or the connection broke: land what is complete,
            // then reconnect from the tables' committed positions, backing off. A
            // purged binlog or a refused login is not retried.
            Err(
                e @ (tidemark_mysql::Error::Binlog { .. }
                | tidemark_mysql::Error::Unreachable { .. }),
            ) => {
                let Some(pause) = backoff.next() else {
                    return Err(e.into());
                };
                failures += 1;
                warn!(source = %name, error = %e, attempt = failures, pause_s = pause.as_secs(), "binlog stream lost; reconnecting");
                stream.flush(true).await?;
                tokio::time::sleep(pause).await;
                let Some(from) = stream.resume_position() else {
                    bail!("every selected table is parked; nothing to capture");
                };
                match BinlogReader::open(&source, &from, server_id, stream.tracked()).await {
                    Ok(r) => reader = r,
                    // The address now reaches another server: no retry helps.
                    Err(e @ tidemark_mysql::Error::ServerChanged { .. }) => return Err(e.into()),
                    Err(e) => warn!(source = %name, error = %e, "reconnect failed; trying again"),
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match item {
            StreamItem::Commit(tx) => {
                stream.add(tx, &mut reader);
                let due = stream
                    .oldest_pending
                    .is_some_and(|t| t.elapsed() >= interval);
                if stream.pending_rows >= flush_rows || due {
                    stream.flush(false).await?;
                }
            }
            StreamItem::Ddl {
                db,
                sql,
                end,
                ts_us,
            } => {
                // Rows before the statement land with the definition they were written
                // under, and a compaction in flight (of the old shape) finishes; then
                // the tables it touches are checked.
                stream.flush(false).await?;
                stream.maybe_compact(true).await;
                stream.stream_end = end.clone();
                for target in ddl_tables(&sql, &db) {
                    stream
                        .ddl(&source, &mut reader, &target, &sql, &end, ts_us)
                        .await?;
                }
            }
            StreamItem::Idle => {
                if stream.pending_rows > 0 {
                    stream.flush(false).await?;
                } else if until_caught_up && catch_up_to.as_ref().is_none_or(|p| reader.has_read(p))
                {
                    stream.flush(true).await?;
                    stream.maybe_compact(true).await;
                    info!(source = %name, position = %stream.stream_end, parked = stream.parked.len(), "caught up");
                    if !stream.parked.is_empty() {
                        let list: Vec<String> = stream
                            .parked
                            .iter()
                            .map(|(t, why)| format!("{t}: {why}"))
                            .collect();
                        bail!(
                            "caught up, but {} table(s) are parked:\n  {}",
                            list.len(),
                            list.join("\n  ")
                        );
                    }
                    return Ok(());
                } else {
                    stream.flush(false).await?;
                }
            }
        }
    }
}

/// Snapshot every table whose snapshot is missing or unfinished; returns the tables
/// that failed, with why (they park; the others go on).
async fn snapshot_missing(
    source: &Source,
    wh: &Warehouse,
    tables: &[DiscoveredTable],
    stop: &AtomicBool,
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
                match snapshot_table(source, wh, t, chunk_rows, ProgressBar::hidden()).await {
                    Ok(r) => {
                        if !r.already_done {
                            info!(table = %r.table, rows = r.total_rows, "snapshot complete");
                        }
                        None
                    }
                    Err(e) => Some((name.clone(), format!("snapshot of {name}: {e}"))),
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
        base_rows: if rebuild { 0 } else { snap.rows },
        tail_rows: if rebuild { COMPACT_MIN_ROWS } else { 0 },
    })
}
