//! What every capture pipeline shares once its source has produced a batch: when a
//! table's current table is compacted, which tables a source's config selects, and
//! how a landed table evolves to a changed source definition.
//!
//! Both pipelines ([`crate::sources::binlog`] and [`crate::sources::events`]) commit
//! each batch with its position in the same Delta commit (`TableWriter`), then ask
//! here whether compaction is due.

use std::sync::Arc;

use anyhow::Result;
use tidemark_core::schema::TableSchema;
use tidemark_lake::{Compaction, TableKind, TableWriter, Warehouse};
use tidemark_mysql::connect::Source;
use tidemark_mysql::ddl::added_defaults;

/// Tail rows (history landed since the current table's mark) that make a compaction
/// due, unless the base is larger (then a tenth of it).
pub const COMPACT_MIN_ROWS: u64 = tidemark_lake::mor::COMPACT_MIN_ROWS;

/// How long VACUUM keeps files no version references any more.
pub(crate) const VACUUM_RETENTION: chrono::Duration = chrono::Duration::days(7);

/// A compaction running in the background: (table, result).
pub type CompactionTask = tokio::task::JoinHandle<(String, Result<Option<Compaction>>)>;

/// Compact a table's current table in the background from a writer of its own
/// (`full`: the whole maintenance — bin-pack, checkpoint, VACUUM).
pub fn spawn_compaction(wh: Warehouse, schema: Arc<TableSchema>, full: bool) -> CompactionTask {
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

/// Whether the source's config selects `db.table` (databases, include, exclude).
pub fn selects(source: &Source, db: &str, table: &str) -> Result<bool> {
    let cfg = &source.config;
    Ok(
        (cfg.databases.is_empty() || cfg.databases.iter().any(|d| d == db))
            && cfg.table_filter()?.matches(db, table),
    )
}

/// Plan evolving a landed table (its writer) to the source's definition `new`, the
/// change being at `position` (`ts`, `seq`): the evolution (see
/// `tidemark_core::evolve`), and the versions owed to existing rows by columns added
/// with a default (see `SourceState::pending_fill`: rows that got a default owe a new
/// version each, written in a second commit; the first records the debt so a crash
/// in between pays it). `Err` says why it cannot be done in place.
#[allow(clippy::too_many_arguments)]
pub async fn plan_evolution(
    source: &Source,
    db: &str,
    table: &str,
    writer: &TableWriter,
    new: &TableSchema,
    renames: &[(String, String)],
    ts: i64,
    position: &str,
    seq: i64,
) -> std::result::Result<
    (
        tidemark_core::evolve::Evolution,
        Option<tidemark_core::position::DefaultFill>,
    ),
    String,
> {
    let log_columns: Vec<String> = writer
        .delta(TableKind::History)
        .snapshot()
        .map(|s| s.schema().fields().map(|f| f.name().clone()).collect())
        .unwrap_or_default();
    let evolution = tidemark_core::evolve::evolve(writer.schema(), new, renames, &log_columns)?;
    let defaults = added_defaults(source, db, table, &evolution.new_columns).await?;
    let values: Vec<(String, String)> = defaults
        .into_iter()
        .filter_map(|(source_name, v)| {
            evolution
                .schema
                .columns
                .iter()
                .find(|c| c.source_name.eq_ignore_ascii_case(&source_name))
                .map(|c| (c.name.clone(), v))
        })
        .collect();
    let fill = (!values.is_empty()).then(|| tidemark_core::position::DefaultFill {
        values,
        source_ts_us: ts,
        position: position.to_string(),
        seq,
    });
    Ok((evolution, fill))
}
