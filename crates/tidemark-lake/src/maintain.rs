//! Maintenance a streamed table needs: fold the history tail into the current base
//! (merge-on-read compaction), bin-pack small files, write Delta checkpoints, and
//! VACUUM files no version within the retention needs.
//!
//! VACUUM never loses history: the history table is append-only, so the files it
//! removes are only those whose rows were rewritten into bigger files by OPTIMIZE.
//! Every version stays queryable with `FOR SYSTEM_TIME AS OF`; what VACUUM ends is
//! `VERSION AS OF` for Delta versions older than the retention.

use std::num::NonZeroU64;

use deltalake::checkpoints::create_checkpoint;
use tracing::info;

use crate::warehouse::TableKind;
use crate::writer::{carry_properties, read_committed, Compaction, TableWriter};
use crate::{Error, Result};

/// Target size of files written by OPTIMIZE.
pub(crate) const TARGET_FILE_BYTES: u64 = 128 * 1024 * 1024;

/// What maintenance did to one source table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// The merge-on-read compaction, if the current table is streamed and had a tail.
    pub compaction: Option<Compaction>,
    /// Small files bin-packed into bigger ones (removed, added), both tables.
    pub files_optimized: (u64, u64),
    /// Files VACUUM deleted, both tables.
    pub files_vacuumed: usize,
}

impl TableWriter {
    /// Run every maintenance step on this table's current and history tables.
    /// `retention` is how long files no longer in the latest version are kept
    /// (readable with `VERSION AS OF`); `None` skips VACUUM.
    pub async fn maintain(&mut self, retention: Option<chrono::Duration>) -> Result<Maintenance> {
        let mut out = Maintenance {
            compaction: self.compact_current().await?,
            ..Default::default()
        };
        for kind in [TableKind::History, TableKind::Current, TableKind::Closed] {
            let name = format!("{}/{}", self.schema().name.sql(), kind.dir());
            let delta_err = |source| Error::Delta {
                table: name.clone(),
                source,
            };
            let mut table = self.delta(kind).clone();
            table.update_state().await.map_err(delta_err)?;
            // Every maintenance commit repeats the state: see `carry_properties`.
            let committed = read_committed(&table, &name).await?;
            let (t, m) = table
                .optimize()
                .with_commit_properties(carry_properties(&committed))
                .with_target_size(NonZeroU64::new(TARGET_FILE_BYTES).expect("non-zero"))
                .await
                .map_err(delta_err)?;
            out.files_optimized.0 += m.num_files_removed;
            out.files_optimized.1 += m.num_files_added;
            create_checkpoint(&t, None).await.map_err(delta_err)?;
            let mut t = t;
            if let Some(r) = retention {
                let (vt, vm) = t
                    .vacuum()
                    .with_retention_period(r)
                    .with_enforce_retention_duration(false)
                    .with_commit_properties(carry_properties(&committed))
                    .await
                    .map_err(delta_err)?;
                out.files_vacuumed += vm.files_deleted.len();
                t = vt;
            }
            info!(table = %name, version = ?t.version(), "maintained");
            self.refresh(kind).await?;
        }
        Ok(out)
    }
}
