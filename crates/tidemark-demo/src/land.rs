//! The workload landed straight into a warehouse, without MySQL: `tidemark demo`,
//! and tests that need a warehouse with a month of history.

use std::sync::Arc;

use tidemark_core::names::Naming;
use tidemark_core::position::SourceState;
use tidemark_core::schema::TableSchema;
use tidemark_lake::{TableKind, TableWriter, Warehouse};

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
    let mut writers = Vec::new();
    for s in &schemas {
        writers.push(TableWriter::open(wh, s.clone()).await?);
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
            let now = chrono::Utc::now().timestamp_micros();
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
                writers[i]
                    .apply(TableKind::History, &b, now, state.clone())
                    .await?;
                writers[i].apply(TableKind::Current, &b, now, state).await?;
            }
        }
        if end {
            return Ok((schemas, landed));
        }
    }
}
