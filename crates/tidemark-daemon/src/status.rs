//! Where each table's capture has got to and how fresh it is, read from the commits
//! themselves: what `tidemark status` prints and `GET /api/v1/status` answers.

use serde::Serialize;
use tidemark_lake::{committed_state, TableKind, Warehouse};

/// One landed table's capture state.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    /// `schema.table` as SQL names it.
    pub table: String,
    /// The source position its history has committed (binlog `file:pos`, snapshot
    /// low watermark, pull watermark, or Kafka `topic/partition@offset`).
    pub position: String,
    /// The source commit instant of its newest landed change.
    pub last_source_ts: String,
    /// When that change landed.
    pub landed: String,
    /// Seconds from the source commit to landing (`-` when unknown).
    pub delay_s: String,
    /// Seconds since the newest landed change was committed at the source.
    pub behind_s: String,
    /// `streaming`, `snapshotting (…)`, `PARKED: why`, …
    pub state: String,
    /// Why capture stopped for it, if it did.
    pub parked: Option<String>,
    /// Per Kafka partition, the next offset.
    pub partitions: serde_json::Value,
}

fn instant(us: Option<i64>) -> String {
    us.and_then(chrono::DateTime::from_timestamp_micros)
        .map_or("-".into(), |t| {
            t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
        })
}

/// The state of every landed table of `wh`, by name.
pub async fn tables(wh: &Warehouse) -> tidemark_lake::Result<Vec<TableStatus>> {
    let now = chrono::Utc::now().timestamp_micros();
    let mut out = Vec::new();
    for loc in wh.list().await? {
        let url = wh.table_url(&loc.schema, &loc.table, TableKind::History);
        let (hist, ok) = wh.delta_table(&url).await?;
        if !ok {
            continue;
        }
        let st = committed_state(&hist).await?.state;
        let position = st
            .binlog
            .as_ref()
            .or(st.snapshot.as_ref().and_then(|s| s.low.as_ref()))
            .map(|p| format!("{}:{}", p.file, p.pos))
            .or(st.watermark.as_ref().and_then(|w| w.value.clone()))
            .or_else(|| stream_position(&st))
            .unwrap_or_else(|| "-".into());
        // Delay: source commit to landing. Behind: how old the newest landed change is.
        let delay = match (st.last_source_ts_us, st.last_ingest_us) {
            (Some(s), Some(i)) => format!("{:.1}", (i - s) as f64 / 1e6),
            _ => "-".into(),
        };
        let behind = st
            .last_source_ts_us
            .map_or("-".into(), |s| format!("{:.1}", (now - s) as f64 / 1e6));
        let state = match (&st.parked, &st.snapshot) {
            (Some(why), _) => format!("PARKED: {why}"),
            (None, _) if st.closed_at.is_some() => format!(
                "dropped at the source (binlog at {}); history kept",
                st.closed_at.as_deref().unwrap_or("-")
            ),
            (None, Some(s)) if !s.done => format!("snapshotting ({} rows so far)", s.rows),
            (None, _) if st.binlog.is_some() => "streaming".into(),
            (None, _) if !st.partitions.is_empty() => format!("streaming from {}", st.source),
            _ => "landed".into(),
        };
        out.push(TableStatus {
            table: format!("{}.{}", loc.schema, loc.table),
            position,
            last_source_ts: instant(st.last_source_ts_us),
            landed: instant(st.last_ingest_us),
            delay_s: delay,
            behind_s: behind,
            state,
            parked: st.parked.clone(),
            partitions: serde_json::to_value(&st.partitions).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Where a table fed by an event stream is: `topic/partition@next offset`, or how
/// many partitions it reads.
fn stream_position(st: &tidemark_lake::SourceState) -> Option<String> {
    match st.partitions.len() {
        0 => None,
        1 => st
            .partitions
            .iter()
            .next()
            .map(|(p, pp)| format!("{p}@{}", pp.next_offset)),
        n => Some(format!("{n} partitions")),
    }
}
