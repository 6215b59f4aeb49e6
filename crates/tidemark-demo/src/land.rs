//! The workload landed straight into a warehouse, without MySQL: `tidemark demo`,
//! and tests that need a warehouse with a month of history.

use std::sync::Arc;

use tidemark_core::names::Naming;
use tidemark_core::position::SourceState;
use tidemark_core::schema::TableSchema;
use tidemark_lake::{TableWriter, Warehouse};

use crate::{schemas, to_change_batches, Workload};

/// Why landing the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum LandError {
    /// Turning events into change batches.
    #[error(transparent)]
    Batch(#[from] tidemark_core::Error),
    /// Writing the Delta tables.
    #[error(transparent)]
    Lake(#[from] tidemark_lake::Error),
}

/// Land every day of `workload` into `wh` (current + history of each demo table),
/// one commit per table every `days_per_batch` simulated days, so history reaches
/// back as far as the workload does. Returns the tables and the changes landed.
pub async fn land(
    wh: &Warehouse,
    naming: Naming,
    workload: &mut Workload,
    days_per_batch: u32,
) -> Result<(Vec<Arc<TableSchema>>, usize), LandError> {
    let schemas = schemas(naming);
    // The path change capture takes: each batch is one append to the history log,
    // the current table is its base plus that tail (merge-on-read), and compaction
    // folds the tail in when it reaches a fifth of the base (as `tidemark run`
    // does), writing the versions it closes to the closed history.
    let mut writers = Vec::new();
    let mut tails = Vec::new();
    let mut bases = Vec::new();
    for s in &schemas {
        let mut w = TableWriter::open(wh, s.clone()).await?;
        w.start_merge_on_read().await?;
        writers.push(w);
        tails.push(0usize);
        bases.push(0usize);
    }
    let (mut offset, mut days, mut landed) = (0u64, 0u32, 0usize);
    let mut pending = Vec::new();
    loop {
        let day = workload.next_day();
        let end = day.is_none();
        if let Some(d) = day {
            pending.extend(d);
            days += 1;
        }
        if (end || days % days_per_batch.max(1) == 0) && !pending.is_empty() {
            let batches = to_change_batches(&schemas, &pending, offset)?;
            offset += pending.len() as u64;
            landed += pending.len();
            pending.clear();
            for b in batches {
                let i = schemas
                    .iter()
                    .position(|s| s.name == b.table.name)
                    .expect("batch of a demo table");
                let state = SourceState {
                    source: "demo".into(),
                    source_table: b.table.name.source(),
                    stream_offset: Some(offset),
                    ..Default::default()
                };
                tails[i] += b.data.num_rows();
                writers[i].append_history(&b, state).await?;
                if tidemark_lake::mor::compaction_due(tails[i] as u64, bases[i] as u64) {
                    if let Some(c) = writers[i].compact_current().await? {
                        bases[i] = c.rows as usize;
                    }
                    tails[i] = 0;
                }
            }
        }
        if end {
            // Everything compacted: external engines read the whole demo in the
            // current and closed tables.
            for w in &mut writers {
                w.compact_current().await?;
            }
            return Ok((schemas, landed));
        }
    }
}
