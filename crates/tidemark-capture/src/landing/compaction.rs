//! When a landed table's current table is compacted, for every source alike.
//!
//! The current table is a base plus the history tail landed since its mark
//! (merge-on-read). Once the tail reaches a fifth of the base (at least
//! [`super::COMPACT_MIN_ROWS`]) it is folded into a new base: the work per change
//! then stays the same however large the table grows, and reads never merge a tail
//! larger than that. One compaction at a time, in the background, from a writer of
//! its own; landing goes on meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tidemark_core::schema::TableSchema;
use tidemark_lake::{Compaction, TableWriter, Warehouse};
use tracing::{info, warn};

/// How long VACUUM keeps files no version references any more.
pub(crate) const VACUUM_RETENTION: chrono::Duration = chrono::Duration::days(7);

/// A table's compaction pace: estimates that only decide when to compact.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pace {
    /// Rows in the current table's base.
    pub base_rows: u64,
    /// History rows landed since the base's mark.
    pub tail_rows: u64,
}

impl Pace {
    /// A table just opened: `base_rows` from its snapshot, or, when reads take
    /// everything from history until a compaction (after a schema change, or a base
    /// of an older layout), a tail that makes the next compaction due.
    pub fn opened(base_rows: u64, rebuild: bool) -> Self {
        let mut p = Self {
            base_rows,
            tail_rows: 0,
        };
        if rebuild {
            p.rebuilding(0);
        }
        p
    }

    /// After a schema change (which also wrote `filled` default versions): reads
    /// take every row from history until the next compaction writes a base of the
    /// new shape, so that compaction is due.
    pub fn rebuilding(&mut self, filled: u64) {
        self.base_rows = 0;
        self.tail_rows = self.tail_rows.max(super::COMPACT_MIN_ROWS) + filled;
    }
}

/// A compaction running in the background: (table, result).
type Task = tokio::task::JoinHandle<(String, Result<Option<Compaction>>)>;

/// Starts and collects one background compaction at a time for a source's tables.
pub struct Compactor {
    wh: Warehouse,
    source: String,
    task: Option<Task>,
    /// Every so often one table (in turn) gets the full maintenance.
    maintain_every: Option<Duration>,
    last_maintenance: Instant,
    maintained_last: Option<String>,
}

impl Compactor {
    /// For the tables of source `source`.
    pub fn new(wh: Warehouse, source: &str, maintain_every: Option<Duration>) -> Self {
        Self {
            wh,
            source: source.to_string(),
            task: None,
            maintain_every,
            last_maintenance: Instant::now(),
            maintained_last: None,
        }
    }

    /// After a commit: account a finished compaction, then start the one most due
    /// (or, every `maintain_every`, the next table's full maintenance).
    pub async fn tick(&mut self, mut tables: Vec<(&Arc<TableSchema>, &mut Pace)>) {
        if self.task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        self.collect(&mut tables).await;
        let due = tables
            .iter()
            .filter(|(_, p)| tidemark_lake::mor::compaction_due(p.tail_rows, p.base_rows))
            .max_by_key(|(_, p)| p.tail_rows)
            .map(|(s, _)| (*s).clone());
        let (schema, full) = match (due, self.maintain_every) {
            (Some(s), _) => (s, false),
            (None, Some(every)) if self.last_maintenance.elapsed() >= every => {
                let mut names: Vec<(String, &Arc<TableSchema>)> =
                    tables.iter().map(|(s, _)| (s.name.source(), *s)).collect();
                names.sort_by(|a, b| a.0.cmp(&b.0));
                let next = names
                    .iter()
                    .find(|(n, _)| self.maintained_last.as_ref().is_none_or(|l| n > l))
                    .or(names.first());
                let Some((n, s)) = next else {
                    return;
                };
                self.last_maintenance = Instant::now();
                self.maintained_last = Some(n.clone());
                ((*s).clone(), true)
            }
            _ => return,
        };
        self.task = Some(spawn(self.wh.clone(), schema, full));
    }

    /// Wait for the compaction in flight, if any (before a schema change, and when the
    /// pipeline ends).
    pub async fn finish(&mut self, mut tables: Vec<(&Arc<TableSchema>, &mut Pace)>) {
        self.collect(&mut tables).await;
    }

    async fn collect(&mut self, tables: &mut [(&Arc<TableSchema>, &mut Pace)]) {
        let Some(task) = self.task.take() else {
            return;
        };
        match task.await {
            Ok((table, Ok(Some(c)))) => {
                if let Some((_, p)) = tables.iter_mut().find(|(s, _)| s.name.source() == table) {
                    p.tail_rows = p.tail_rows.saturating_sub(c.tail_rows);
                    p.base_rows = c.rows;
                }
                info!(source = %self.source, table = %table, folded = c.tail_rows, rows = c.rows, "current table compacted");
            }
            Ok((_, Ok(None))) => {}
            Ok((table, Err(e))) => {
                warn!(source = %self.source, table = %table, error = %format!("{e:#}"), "compaction failed; the table stays correct (reads merge the tail) and compaction is tried again later");
            }
            Err(e) => warn!(source = %self.source, error = %e, "compaction task failed"),
        }
    }
}

/// Compact a table's current table in the background from a writer of its own
/// (`full`: the whole maintenance — bin-pack, checkpoint, VACUUM).
fn spawn(wh: Warehouse, schema: Arc<TableSchema>, full: bool) -> Task {
    let name = schema.name.source();
    tokio::spawn(async move {
        let r = async {
            let mut w = TableWriter::open(&wh, schema).await?;
            if full {
                Ok(w.maintain(Some(VACUUM_RETENTION)).await?.compaction)
            } else {
                Ok(w.compact_current().await?)
            }
        }
        .await;
        (name, r)
    })
}
