//! Incremental batch pulls by a watermark column, for tables without change capture.
//!
//! `tidemark pull` reads the rows whose watermark (`updated_at`, say) is at or above
//! the last committed watermark and lands those that differ from what each Delta
//! table holds: new keys as inserts, changed rows as updates. Reading `>=` rather than
//! `>` re-reads the boundary, so a row committed later with the same watermark value is
//! not missed; the diff makes the re-read harmless.
//!
//! Deletes are invisible to this method (a deleted row has no watermark to find).
//! [`reconcile`] finds them by comparing the source's key set with the landed one.
//! A watermark only helps if the application maintains it: `ON UPDATE
//! CURRENT_TIMESTAMP(6)` or equivalent. Rows written by a long transaction whose
//! watermark is older than the last pull are missed until a reconcile or resnapshot;
//! change capture from the binlog has neither limit.

use std::cmp::Ordering;

use indicatif::ProgressBar;
use mysql_async::prelude::Queryable;
use tidemark_core::change::Op;
use tidemark_core::position::{KeyValue, SourceState, WatermarkProgress};
use tidemark_core::types::MySqlType;
use tidemark_lake::{TableKind, TableWriter, Warehouse};
use tracing::info;

use crate::connect::Source;
use crate::discover::DiscoveredTable;
use crate::snapshot::{
    literal, now_us, quote_ident, quoted_table, read_chunk, snapshot_table, ReadAs,
};
use crate::{Error, Result};

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

fn compare(ty: MySqlType, a: &str, b: &str) -> Ordering {
    use deltalake::arrow::datatypes::DataType;
    match ty.arrow_type() {
        // Integers compare exactly ("9" < "10", and no f64 rounding above 2^53, which
        // could pick the newer mark as the older one and skip rows).
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            match (a.trim().parse::<i128>(), b.trim().parse::<i128>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => a.cmp(b),
            }
        }
        DataType::Decimal128(_, s) => {
            let p = |v: &str| tidemark_core::types::parse_decimal(v, s).ok();
            match (p(a), p(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => a.cmp(b),
            }
        }
        // Dates, datetimes and timestamps come in one fixed-width format per column
        // and compare as text.
        _ => a.cmp(b),
    }
}

/// Pull one table by its watermark; land it with a snapshot the first time.
pub async fn pull_table(
    source: &Source,
    wh: &Warehouse,
    table: &DiscoveredTable,
    reconcile_deletes: bool,
) -> Result<PullReport> {
    let schema = table.schema.clone();
    let name = schema.name.source();
    let opts = source
        .config
        .table_options(&schema.name.source_db, &schema.name.source_table);
    let wm_name = opts.watermark.ok_or_else(|| {
        Error::Core(tidemark_core::Error::Config {
            path: "<config>".into(),
            message: format!(
                "table {name} has no watermark column for `tidemark pull`; set it:\n  [sources.{}.tables.\"{name}\"]\n  watermark = \"updated_at\"",
                source.name
            ),
        })
    })?;
    let wm_col = schema
        .columns
        .iter()
        .find(|c| c.source_name.eq_ignore_ascii_case(&wm_name))
        .ok_or_else(|| Error::Query {
            source_name: source.name.clone(),
            table: name.clone(),
            message: format!("watermark column {wm_name} does not exist in the table"),
        })?
        .clone();
    let ty = wm_col.mysql_type();
    let mut report = PullReport {
        table: name.clone(),
        ..Default::default()
    };
    let mut conn = source.conn().await?;
    // The high mark is read before the rows, so a row updated while we read is
    // at or above it and is read again next time.
    let max_sql = format!(
        "SELECT CAST(MAX({}) AS CHAR) FROM {}",
        quote_ident(&wm_col.source_name),
        quoted_table(&schema)
    );
    let high: Option<String> = conn
        .query_first::<Option<String>, _>(max_sql)
        .await
        .map_err(|e| source.query_error(&name, e))?
        .flatten();

    let mut writer = TableWriter::open(wh, schema.clone()).await?;
    let landed = [TableKind::Current, TableKind::History].iter().all(|k| {
        writer
            .committed(*k)
            .state
            .snapshot
            .as_ref()
            .is_some_and(|s| s.done)
    });
    // A snapshot that an earlier run started read its first chunks before `high` was
    // taken; rows changed in between may sit below `high`, so such a table gets no
    // watermark yet and its next pull compares every row.
    let resumed = [TableKind::Current, TableKind::History].iter().any(|k| {
        writer
            .committed(*k)
            .state
            .snapshot
            .as_ref()
            .is_some_and(|s| s.rows > 0)
    });
    let first_mark = if resumed { None } else { high.clone() };
    if !landed {
        drop(writer);
        let r = snapshot_table(
            source,
            wh,
            table,
            source.config.snapshot_chunk_rows,
            ProgressBar::hidden(),
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
    // commits may have left the current table behind; the diff below, against the
    // table now, lands what it misses).
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
    // every row compared; otherwise read from the older of the two committed marks.
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
    let pos = format!(
        "watermark:{}={}",
        wm_col.source_name,
        high.as_deref().unwrap_or("")
    );
    if !report.snapshotted {
        // Landed before: read everything at or above the older committed watermark
        // (everything, if no pull has run since the snapshot).
        let filter = low.as_ref().map(|l| {
            format!(
                "{} >= {}",
                quote_ident(&wm_col.source_name),
                literal(&KeyValue::Text(l.clone()))
            )
        });
        let how = ReadAs {
            select: crate::snapshot::select_list(&schema),
            op: Op::Update,
            source_ts_us: ts,
            source_pos: &pos,
        };
        let chunk = read_chunk(source, &mut conn, &schema, filter, None, &how).await?;
        report.read = chunk.rows as u64;
        // One history commit: the rows that differ from the table now (base and tail)
        // and the new watermark, which must land with every row read under it.
        let pulled = tidemark_lake::concat(&schema, &chunk.batches)?;
        let mut state = base_state(source, &name, &writer, TableKind::History);
        state.watermark = Some(WatermarkProgress {
            column: wm_col.source_name.clone(),
            value: high.clone(),
        });
        let changed = writer.changed(TableKind::Current, &pulled).await?;
        report.changed = changed.data.num_rows() as u64;
        if report.changed > 0 || writer.committed(TableKind::History).state != state {
            writer.append_history(&changed, state).await?;
        }
    } else {
        for kind in [TableKind::History, TableKind::Current] {
            let mut state = base_state(source, &name, &writer, kind);
            state.watermark = Some(WatermarkProgress {
                column: wm_col.source_name.clone(),
                value: first_mark.clone(),
            });
            writer.append(kind, &[], ts, state).await?;
        }
    }
    if reconcile_deletes {
        report.deleted = reconcile_with(source, &mut conn, &mut writer, ts).await?;
    }
    writer.compact_if_due().await?;
    report.watermark = high;
    info!(table = %name, read = report.read, changed = report.changed, deleted = report.deleted, "pulled");
    Ok(report)
}

fn base_state(source: &Source, name: &str, writer: &TableWriter, kind: TableKind) -> SourceState {
    SourceState {
        source: source.name.clone(),
        source_table: name.to_string(),
        ..writer.committed(kind).state.clone()
    }
}

/// Find keys that are landed but no longer at the source, and land them as deletes
/// (history gets a tombstone carrying the last image; current loses the row).
pub async fn reconcile(source: &Source, wh: &Warehouse, table: &DiscoveredTable) -> Result<u64> {
    let mut conn = source.conn().await?;
    let mut writer = TableWriter::open(wh, table.schema.clone()).await?;
    let deleted = reconcile_with(source, &mut conn, &mut writer, now_us()).await?;
    writer.compact_if_due().await?;
    Ok(deleted)
}

async fn reconcile_with(
    source: &Source,
    conn: &mut mysql_async::Conn,
    writer: &mut TableWriter,
    ts: i64,
) -> Result<u64> {
    let schema = writer.schema().clone();
    let name = schema.name.source();
    // Key columns only; NULL for the rest keeps the batch the table's shape.
    let select = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if schema.key.contains(&i) {
                quote_ident(&c.source_name)
            } else {
                format!("NULL AS {}", quote_ident(&c.source_name))
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let how = ReadAs {
        select,
        op: Op::Read,
        source_ts_us: ts,
        source_pos: "reconcile",
    };
    let chunk = read_chunk(source, conn, &schema, None, None, &how).await?;
    let keys = tidemark_lake::concat(&schema, &chunk.batches)?;
    if writer.merged_through().is_some() {
        // Merge-on-read: the deletes go to the history log, diffed against the
        // table now (base and tail).
        let gone = writer
            .missing(TableKind::Current, &keys, ts, "reconcile")
            .await?;
        let deleted = gone.data.num_rows() as u64;
        if deleted > 0 {
            let state = base_state(source, &name, writer, TableKind::History);
            writer.append_history(&gone, state).await?;
        }
        return Ok(deleted);
    }
    let mut deleted = 0;
    for kind in [TableKind::History, TableKind::Current] {
        let gone = writer.missing(kind, &keys, ts, "reconcile").await?;
        if gone.data.num_rows() == 0 {
            continue;
        }
        if kind == TableKind::Current {
            deleted = gone.data.num_rows() as u64;
        }
        let state = base_state(source, &name, writer, kind);
        writer.apply(kind, &gone, ts, state).await?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_compare_exactly() {
        let big = MySqlType::BigInt { unsigned: false };
        // Equal as f64, different as integers.
        assert_eq!(
            compare(big, "9007199254740993", "9007199254740992"),
            Ordering::Greater
        );
        assert_eq!(compare(big, "9", "10"), Ordering::Less);
        let dec = MySqlType::Decimal {
            precision: 12,
            scale: 2,
        };
        assert_eq!(compare(dec, "9.50", "10.00"), Ordering::Less);
        assert_eq!(
            compare(
                MySqlType::DateTime,
                "2026-11-24 10:00:00.000001",
                "2026-11-24 10:00:00.000000"
            ),
            Ordering::Greater
        );
    }
}
