//! Watermark pulls through the landing loop, for tables without change capture.
//!
//! A pull reads the rows whose watermark is at or above the last committed one
//! (`tidemark_mysql::pull::read_since`) and lands those that differ from what the
//! table holds, in one history commit that also carries the new watermark. The
//! first pull of a table lands it with a snapshot ([`super::snapshot`]) instead.
//! With `reconcile`, a barrier after that compares the source's keys with the
//! landed ones and lands the missing ones as deletes.
//!
//! A pull is a bounded source: it has caught up once its read, and its reconcile,
//! have landed. See `tidemark_mysql::pull` for what a watermark can and cannot see.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use mysql_async::Conn;
use tidemark_core::position::{SourceState, WatermarkProgress};
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_lake::{TableKind, TableWriter, Warehouse};
use tidemark_mysql::connect::Source as MySql;
use tidemark_mysql::discover::DiscoveredTable;
use tidemark_mysql::pull::{compare, high_mark, read_keys, read_since, watermark_column};
use tidemark_mysql::snapshot::{now_us, Chunk};
use tracing::info;

use crate::landing::{Item, Landed, Pace, Policy};
use crate::sources::snapshot::snapshot_table;

/// What a pull did to one table.
#[derive(Debug, Clone, Default)]
pub struct PullReport {
    /// `db.table` at the source.
    pub table: String,
    /// Rows read from the source.
    pub read: u64,
    /// Inserts and updates landed in the current table.
    pub changed: u64,
    /// Deletes found by reconcile.
    pub deleted: u64,
    /// The watermark committed.
    pub watermark: Option<String>,
    /// The table was first landed by a snapshot in this run.
    pub snapshotted: bool,
}

/// One policy for both kinds of pass: every step lands as soon as it is read.
fn policy() -> Policy {
    Policy {
        interval: Duration::from_secs(1),
        flush_rows: 1,
        until_caught_up: true,
        maintain_every: None,
    }
}

/// Pull one table by its watermark; land it with a snapshot the first time.
pub async fn pull_table(
    source: &MySql,
    wh: &Warehouse,
    table: &DiscoveredTable,
    reconcile_deletes: bool,
    stop: Arc<AtomicBool>,
) -> Result<PullReport> {
    let schema = table.schema.clone();
    let name = schema.name.source();
    let wm = watermark_column(source, &schema)?;
    let ty = wm.mysql_type();
    let mut report = PullReport {
        table: name.clone(),
        ..Default::default()
    };
    let mut conn = source.conn().await?;
    // The high mark is read before the rows, so a row updated while we read is
    // at or above it and is read again next time.
    let high = high_mark(source, &mut conn, &schema, &wm).await?;

    let mut writer = TableWriter::open(wh, schema.clone()).await?;
    let snapshots =
        |w: &TableWriter, f: &dyn Fn(&tidemark_core::position::SnapshotProgress) -> bool| {
            [TableKind::Current, TableKind::History]
                .map(|k| w.committed(k).state.snapshot.as_ref().is_some_and(f))
        };
    let landed = snapshots(&writer, &|s| s.done).iter().all(|d| *d);
    // A snapshot that an earlier run started read its first chunks before `high` was
    // taken; rows changed in between may sit below `high`, so such a table gets no
    // watermark yet and its next pull compares every row.
    let resumed = snapshots(&writer, &|s| s.rows > 0).iter().any(|d| *d);
    let first_mark = if resumed { None } else { high.clone() };
    if !landed {
        drop(writer);
        let r = snapshot_table(
            source,
            wh,
            table,
            source.config.snapshot_chunk_rows,
            ProgressBar::hidden(),
            stop.clone(),
        )
        .await?;
        report.read = r.rows;
        report.changed = r.rows;
        report.snapshotted = true;
        writer = TableWriter::open(wh, schema.clone()).await?;
    }
    // Pulled tables are merge-on-read, as streamed ones are: a pull appends its
    // changes to the history log only, and compaction folds them into a key-ordered
    // base and writes the closed history time travel reads (a table pulled by an
    // earlier version switches at this pull). The history's watermark is then the
    // one that counts: the current table only moves at compactions. At the switch,
    // both tables' marks count once more (an earlier version's crash between its two
    // commits may have left the current table behind; the diff against the table
    // now lands what it misses).
    let marks_of: &[TableKind] = if writer.merged_through().is_some() {
        &[TableKind::History]
    } else {
        &[TableKind::Current, TableKind::History]
    };
    let marks: Vec<Option<String>> = marks_of
        .iter()
        .map(|k| {
            writer
                .committed(*k)
                .state
                .watermark
                .as_ref()
                .and_then(|w| w.value.clone())
        })
        .collect();
    writer.start_merge_on_read().await?;
    // A table that has no watermark yet (landed by a snapshot, never pulled) needs
    // every row compared; otherwise read from the older of the committed marks.
    let low = if marks.iter().any(Option::is_none) {
        None
    } else {
        marks
            .iter()
            .flatten()
            .min_by(|a, b| compare(ty, a, b))
            .cloned()
    };
    let ts = now_us();
    let step = if report.snapshotted {
        Step::MarkSnapshot(first_mark)
    } else {
        Step::Read { low }
    };
    let mut pull = Pull {
        source,
        conn,
        writer,
        wm: Some(wm),
        high,
        ts,
        step,
        reconcile: reconcile_deletes,
        pending: None,
        report,
    };
    crate::landing::land(&mut pull, policy(), wh, stop, Default::default()).await?;
    pull.writer.compact_if_due().await?;
    let mut report = pull.report;
    report.watermark = pull.high;
    info!(table = %name, read = report.read, changed = report.changed, deleted = report.deleted, "pulled");
    Ok(report)
}

/// Find keys that are landed but no longer at the source, and land them as deletes
/// (history gets a tombstone carrying the last image; current loses the row).
pub async fn reconcile(
    source: &MySql,
    wh: &Warehouse,
    table: &DiscoveredTable,
    stop: Arc<AtomicBool>,
) -> Result<u64> {
    let schema = table.schema.clone();
    let mut pull = Pull {
        source,
        conn: source.conn().await?,
        writer: TableWriter::open(wh, schema.clone()).await?,
        wm: None,
        high: None,
        ts: now_us(),
        step: Step::Reconcile,
        reconcile: true,
        pending: None,
        report: PullReport {
            table: schema.name.source(),
            ..Default::default()
        },
    };
    crate::landing::land(&mut pull, policy(), wh, stop, Default::default()).await?;
    pull.writer.compact_if_due().await?;
    Ok(pull.report.deleted)
}

/// Where a pull is.
enum Step {
    /// Read the rows at or above `low` (all of them with `None`).
    Read {
        low: Option<String>,
    },
    /// The table was just landed by a snapshot: record its first watermark.
    MarkSnapshot(Option<String>),
    /// Compare keys (a barrier: what was read has landed).
    Reconcile,
    Done,
}

/// What was read and waits to land.
enum Pending {
    Rows(Chunk),
    Mark(Option<String>),
}

/// The reconcile barrier.
struct Reconcile;

/// One table's pull, as the landing loop reads it.
struct Pull<'a> {
    source: &'a MySql,
    conn: Conn,
    writer: TableWriter,
    /// The watermark column (none for a reconcile on its own).
    wm: Option<ColumnSchema>,
    /// The table's highest watermark when the pull began.
    high: Option<String>,
    /// The rows' source instant.
    ts: i64,
    step: Step,
    reconcile: bool,
    pending: Option<Pending>,
    report: PullReport,
}

impl Pull<'_> {
    fn schema(&self) -> &Arc<TableSchema> {
        self.writer.schema()
    }

    fn state(&self, kind: TableKind) -> SourceState {
        SourceState {
            source: self.source.name.clone(),
            source_table: self.schema().name.source(),
            ..self.writer.committed(kind).state.clone()
        }
    }

    fn watermark(&self, value: Option<String>) -> Option<WatermarkProgress> {
        self.wm.as_ref().map(|wm| WatermarkProgress {
            column: wm.source_name.clone(),
            value,
        })
    }

    /// The step after reading.
    fn after_read(&self) -> Step {
        if self.reconcile {
            Step::Reconcile
        } else {
            Step::Done
        }
    }

    /// Land the source's missing keys as deletes.
    async fn reconcile(&mut self) -> Result<u64> {
        let schema = self.schema().clone();
        let chunk = read_keys(self.source, &mut self.conn, &schema, self.ts).await?;
        let keys = tidemark_lake::concat(&schema, &chunk.batches)?;
        if self.writer.merged_through().is_some() {
            // Merge-on-read: the deletes go to the history log, diffed against the
            // table now (base and tail).
            let gone = self
                .writer
                .missing(TableKind::Current, &keys, self.ts, "reconcile")
                .await?;
            let deleted = gone.data.num_rows() as u64;
            if deleted > 0 {
                let state = self.state(TableKind::History);
                self.writer.append_history(&gone, state).await?;
            }
            return Ok(deleted);
        }
        let mut deleted = 0;
        for kind in [TableKind::History, TableKind::Current] {
            let gone = self
                .writer
                .missing(kind, &keys, self.ts, "reconcile")
                .await?;
            if gone.data.num_rows() == 0 {
                continue;
            }
            if kind == TableKind::Current {
                deleted = gone.data.num_rows() as u64;
            }
            let state = self.state(kind);
            self.writer.apply(kind, &gone, self.ts, state).await?;
        }
        Ok(deleted)
    }
}

impl crate::landing::Source for Pull<'_> {
    type Barrier = Reconcile;

    fn name(&self) -> &str {
        &self.source.name
    }

    async fn next(&mut self, _wait: Duration) -> Result<Item<Reconcile>> {
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::Read { low } => {
                let wm = self
                    .wm
                    .clone()
                    .context("a pull reads by its watermark column")?;
                let pos = format!(
                    "watermark:{}={}",
                    wm.source_name,
                    self.high.as_deref().unwrap_or("")
                );
                let schema = self.schema().clone();
                let chunk = read_since(
                    self.source,
                    &mut self.conn,
                    &schema,
                    &wm,
                    low.as_deref(),
                    self.ts,
                    &pos,
                )
                .await?;
                self.report.read = chunk.rows as u64;
                let n = chunk.rows.max(1);
                self.pending = Some(Pending::Rows(chunk));
                self.step = self.after_read();
                Ok(Item::Buffered(n))
            }
            Step::MarkSnapshot(mark) => {
                self.pending = Some(Pending::Mark(mark));
                self.step = self.after_read();
                Ok(Item::Buffered(1))
            }
            Step::Reconcile => Ok(Item::Barrier {
                all_positions: false,
                then: Reconcile,
            }),
            Step::Done => Ok(Item::Idle),
        }
    }

    async fn commit(&mut self, _all_positions: bool) -> Result<Option<Vec<Landed>>> {
        let rows = match self.pending.take() {
            None => return Ok(None),
            // One history commit: the rows that differ from the table now (base and
            // tail) and the new watermark, which must land with every row read under
            // it.
            Some(Pending::Rows(chunk)) => {
                let schema = self.schema().clone();
                let pulled = tidemark_lake::concat(&schema, &chunk.batches)?;
                let mut state = self.state(TableKind::History);
                state.watermark = self.watermark(self.high.clone());
                let changed = self.writer.changed(TableKind::Current, &pulled).await?;
                let rows = changed.data.num_rows();
                self.report.changed = rows as u64;
                if rows > 0 || self.writer.committed(TableKind::History).state != state {
                    self.writer.append_history(&changed, state).await?;
                }
                rows
            }
            Some(Pending::Mark(mark)) => {
                for kind in [TableKind::History, TableKind::Current] {
                    let mut state = self.state(kind);
                    state.watermark = self.watermark(mark.clone());
                    self.writer.append(kind, &[], self.ts, state).await?;
                }
                0
            }
        };
        let schema = self.schema();
        Ok(Some(vec![Landed {
            table: schema.name.source(),
            sql_name: schema.name.sql(),
            rows,
            last_source_ts_us: Some(self.ts),
            ingest_us: self
                .writer
                .committed(TableKind::History)
                .state
                .last_ingest_us,
        }]))
    }

    async fn apply(&mut self, _: Reconcile) -> Result<Item<Reconcile>> {
        self.report.deleted = self.reconcile().await?;
        Ok(Item::Read)
    }

    async fn caught_up(&mut self) -> Result<bool> {
        Ok(matches!(self.step, Step::Done) && self.pending.is_none())
    }

    fn finished(&self) -> Result<()> {
        Ok(())
    }

    /// Compaction is decided once the pull has landed (`compact_if_due`), from the
    /// table's own figures.
    fn paced(&mut self) -> Vec<(&Arc<TableSchema>, &mut Pace)> {
        Vec::new()
    }
}
