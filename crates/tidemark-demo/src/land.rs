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

/// Lands batches of events into a warehouse the way change capture does: each batch
/// one append per table to its history log, the current table its base plus that
/// tail (merge-on-read), compacted when the tail reaches a fifth of the base (as
/// `tidemark run` does), writing the versions it closes to the closed history.
/// Tests use it to land a workload a few days at a time.
pub struct Lander {
    schemas: Vec<Arc<TableSchema>>,
    writers: Vec<TableWriter>,
    tails: Vec<usize>,
    bases: Vec<usize>,
    offset: u64,
    landed: usize,
}

impl Lander {
    /// Open (creating) the demo's tables in `wh`.
    pub async fn open(wh: &Warehouse, naming: Naming) -> Result<Self, LandError> {
        let schemas = schemas(naming);
        let mut writers = Vec::new();
        for s in &schemas {
            let mut w = TableWriter::open(wh, s.clone()).await?;
            w.start_merge_on_read().await?;
            writers.push(w);
        }
        let n = schemas.len();
        Ok(Self {
            schemas,
            writers,
            tails: vec![0; n],
            bases: vec![0; n],
            offset: 0,
            landed: 0,
        })
    }

    /// The tables.
    pub fn schemas(&self) -> &[Arc<TableSchema>] {
        &self.schemas
    }

    /// Changes landed so far.
    pub fn landed(&self) -> usize {
        self.landed
    }

    /// Land `events`: one commit per table that has some.
    pub async fn land(&mut self, events: &[crate::Event]) -> Result<(), LandError> {
        if events.is_empty() {
            return Ok(());
        }
        let batches = to_change_batches(&self.schemas, events, self.offset)?;
        self.offset += events.len() as u64;
        self.landed += events.len();
        for b in batches {
            let i = self
                .schemas
                .iter()
                .position(|s| s.name == b.table.name)
                .expect("batch of a demo table");
            let state = SourceState {
                source: "demo".into(),
                source_table: b.table.name.source(),
                stream_offset: Some(self.offset),
                ..Default::default()
            };
            self.tails[i] += b.data.num_rows();
            self.writers[i].append_history(&b, state).await?;
            if tidemark_lake::mor::compaction_due(self.tails[i] as u64, self.bases[i] as u64) {
                if let Some(c) = self.writers[i].compact_current().await? {
                    self.bases[i] = c.rows as usize;
                }
                self.tails[i] = 0;
            }
        }
        Ok(())
    }

    /// Fold every tail into its base: external engines then read everything in the
    /// current and closed tables.
    pub async fn compact(&mut self) -> Result<(), LandError> {
        for w in &mut self.writers {
            w.compact_current().await?;
        }
        Ok(())
    }
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
    let mut lander = Lander::open(wh, naming).await?;
    let mut days = 0u32;
    let mut pending = Vec::new();
    loop {
        let day = workload.next_day();
        let end = day.is_none();
        if let Some(d) = day {
            pending.extend(d);
            days += 1;
        }
        if end || days.is_multiple_of(days_per_batch.max(1)) {
            lander.land(&pending).await?;
            pending.clear();
        }
        if end {
            lander.compact().await?;
            return Ok((lander.schemas.clone(), lander.landed));
        }
    }
}
