//! Snapshots through the landing loop: a table's rows read in key order from one
//! consistent read view (`tidemark_mysql::snapshot::open_read`), each chunk landed in
//! one commit to both the current table and the history log, with the snapshot's
//! progress (rows, last key, the read view's positions) in the same commits.
//!
//! Resumable: a run stopped or killed at any instant resumes after the last key both
//! tables committed. A crash between a chunk's two commits leaves one table a chunk
//! ahead; the next run first reads that key range anew for the other one.
//!
//! A snapshot is a bounded source: it has caught up when the read view's last chunk
//! (shorter than `snapshot_chunk_rows`) has landed. Every chunk is committed as it
//! comes (`flush_rows = 1`), while the reader task reads the next.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use indicatif::ProgressBar;
use tidemark_core::position::{BinlogPosition, SnapshotProgress, SourceState};
use tidemark_core::schema::TableSchema;
use tidemark_lake::{TableKind, TableWriter, Warehouse};
use tidemark_mysql::connect::Source as MySql;
use tidemark_mysql::discover::DiscoveredTable;
use tidemark_mysql::snapshot::{merge_counts, now_us, open_read, repair_read, SnapshotRead};
use tracing::{info, warn};

use crate::landing::{Item, Landed, Pace, Policy};

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

/// The table's state with this snapshot progress.
fn state_at(base: &SourceState, progress: &SnapshotProgress) -> SourceState {
    SourceState {
        snapshot: Some(progress.clone()),
        ..base.clone()
    }
}

/// Snapshot one table, resuming where a previous run stopped. With `stop` set the
/// chunk in flight lands and the snapshot ends unfinished (an error says so; the next
/// run resumes it).
pub async fn snapshot_table(
    source: &MySql,
    wh: &Warehouse,
    table: &DiscoveredTable,
    chunk_rows: usize,
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
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
        let (behind, ahead, behind_key) = if cur.rows < hist.rows {
            (TableKind::Current, &hist, cur.last_key.as_deref())
        } else {
            (TableKind::History, &cur, hist.last_key.as_deref())
        };
        let Some(ahead_key) = ahead.last_key.as_deref() else {
            bail!("table {name}: one of its tables has snapshot rows but no last key; land it again with `tidemark snapshot --resnapshot --table {name}`");
        };
        let chunk = repair_read(source, &mut conn, &schema, behind_key, ahead_key).await?;
        warn!(table = %name, rows = chunk.rows, behind = behind.dir(), "repairing a chunk committed to only one of current/history by an interrupted run");
        writer
            .append(behind, &chunk.batches, now_us(), state_at(&base, ahead))
            .await?;
    }
    let mut progress = if cur.rows >= hist.rows { cur } else { hist };
    bar.set_position(progress.rows);

    let read = open_read(source, conn, &schema, progress.last_key.clone(), chunk_rows).await?;
    if progress.started_at_us == 0 {
        progress.started_at_us = read.view_ts_us;
    }
    if progress.low.is_none() {
        progress.low = read.low.clone();
    }
    let mut snapshot = Snapshot {
        source_name: source.name.clone(),
        table: name.clone(),
        sql_name: schema.name.sql(),
        writer,
        base,
        progress,
        read,
        chunk_rows,
        buffered: Vec::new(),
        read_all: false,
        report,
        bar,
    };
    let policy = Policy {
        // Every chunk lands as it comes; the interval only paces the idle checks.
        interval: Duration::from_secs(1),
        flush_rows: 1,
        until_caught_up: true,
        maintain_every: None,
    };
    crate::landing::land(&mut snapshot, policy, wh, stop, Default::default()).await?;
    let Snapshot {
        read,
        mut report,
        progress,
        bar,
        ..
    } = snapshot;
    read.finish(source, &name).await?;
    if !progress.done {
        bail!(
            "the snapshot of {name} stopped after {} rows; the next run resumes it",
            progress.rows
        );
    }
    for (col, n) in &report.invalid {
        warn!(table = %name, column = %col, values = n, "values that are not valid dates/years (zero dates) landed as NULL");
    }
    report.total_rows = progress.rows;
    report.resume_from = progress.low.clone();
    bar.finish_and_clear();
    Ok(report)
}

/// One table's snapshot, as the landing loop reads it.
struct Snapshot {
    source_name: String,
    table: String,
    sql_name: String,
    writer: TableWriter,
    base: SourceState,
    progress: SnapshotProgress,
    read: SnapshotRead,
    chunk_rows: usize,
    buffered: Vec<tidemark_mysql::snapshot::Chunk>,
    /// The read view's last chunk was taken.
    read_all: bool,
    report: TableReport,
    bar: ProgressBar,
}

impl crate::landing::Source for Snapshot {
    type Barrier = std::convert::Infallible;

    fn name(&self) -> &str {
        &self.source_name
    }

    async fn next(&mut self, wait: Duration) -> Result<Item<Self::Barrier>> {
        if self.read_all {
            return Ok(Item::Idle);
        }
        match tokio::time::timeout(wait, self.read.chunks.recv()).await {
            Err(_) => Ok(Item::Idle),
            Ok(None) => {
                self.read_all = true;
                Ok(Item::Idle)
            }
            Ok(Some(chunk)) => {
                let chunk = chunk?;
                // The last chunk may be empty; it still lands (the snapshot's end).
                let n = chunk.rows.max(1);
                self.buffered.push(chunk);
                Ok(Item::Buffered(n))
            }
        }
    }

    async fn commit(&mut self, _all_positions: bool) -> Result<Option<Vec<Landed>>> {
        if self.buffered.is_empty() {
            return Ok(None);
        }
        let mut landed = Vec::new();
        for chunk in std::mem::take(&mut self.buffered) {
            let p = &mut self.progress;
            p.rows += chunk.rows as u64;
            if let Some(k) = chunk.last_key {
                p.last_key = Some(k);
            }
            if chunk.rows < self.chunk_rows {
                p.done = true;
                p.high = self.read.high.clone();
                self.read_all = true;
            }
            merge_counts(&mut self.report.invalid, chunk.invalid);
            let ingest = now_us();
            self.writer
                .append_both(&chunk.batches, ingest, state_at(&self.base, &self.progress))
                .await?;
            self.report.rows += chunk.rows as u64;
            self.bar.set_position(self.progress.rows);
            info!(table = %self.table, rows = self.progress.rows, done = self.progress.done, "snapshot chunk committed");
            landed.push(Landed {
                table: self.table.clone(),
                sql_name: self.sql_name.clone(),
                rows: chunk.rows,
                last_source_ts_us: None,
                ingest_us: Some(ingest),
            });
        }
        Ok(Some(landed))
    }

    async fn apply(&mut self, barrier: Self::Barrier) -> Result<Item<Self::Barrier>> {
        match barrier {}
    }

    async fn caught_up(&mut self) -> Result<bool> {
        Ok(self.read_all)
    }

    fn finished(&self) -> Result<()> {
        Ok(())
    }

    /// The current table is written directly (not merge-on-read yet): nothing to
    /// compact.
    fn paced(&mut self) -> Vec<(&Arc<TableSchema>, &mut Pace)> {
        Vec::new()
    }
}
