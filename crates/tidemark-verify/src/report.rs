//! The report: per table, what was compared at which source position, and what
//! differs; as text for the terminal and JSON for machines (the same structure is
//! recorded in `tidemark.verifications`).

use std::fmt::Write;

use serde::Serialize;
use tidemark_core::position::BinlogPosition;

use crate::compare::{Counts, Difference};
use crate::history::{HistoryReport, Violation};

/// Milliseconds per phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    /// Source chunks (the consistent read and its checksums).
    #[serde(rename = "source")]
    pub source_ms: u64,
    /// Waiting for the lake to reach the source position.
    #[serde(rename = "wait")]
    pub wait_ms: u64,
    /// The lake's pass.
    #[serde(rename = "lake")]
    pub lake_ms: u64,
    /// Bisecting chunks that differ.
    #[serde(rename = "bisect")]
    pub bisect_ms: u64,
    /// History checks.
    #[serde(rename = "history")]
    pub history_ms: u64,
}

/// One table's result.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// `db.table` at the source.
    pub table: String,
    /// `clean`, `differences` or `error`.
    pub status: String,
    /// Why the table could not be compared.
    pub error: Option<String>,
    /// `file:pos` of the source read.
    pub source_position: Option<String>,
    /// The GTID position there.
    pub gtid: Option<String>,
    /// When the source read was taken (RFC 3339, UTC).
    pub source_instant: Option<String>,
    /// Rows at the source.
    pub rows_source: u64,
    /// Rows in the lake's state at the source position.
    pub rows_lake: u64,
    /// Chunks compared.
    pub chunks: u64,
    /// Chunks whose checksums differed (bisected).
    pub chunks_mismatched: u64,
    /// Differences by kind.
    #[serde(flatten)]
    pub counts: Counts,
    /// The first differences, with both values.
    pub examples: Vec<Difference>,
    /// Versions the history checks read (None: not run).
    pub history_versions: Option<u64>,
    /// History violations.
    pub history_violations: u64,
    /// The first ones.
    pub history_examples: Vec<Violation>,
    /// Milliseconds per phase.
    pub timings_ms: Timings,
}

impl TableReport {
    /// A compared table.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        table: String,
        p: &BinlogPosition,
        at_us: i64,
        rows_source: u64,
        rows_lake: u64,
        chunks: u64,
        chunks_mismatched: u64,
        counts: Counts,
        examples: Vec<Difference>,
        history: Option<HistoryReport>,
        timings_ms: Timings,
    ) -> Self {
        let violations = history.as_ref().map_or(0, |h| h.violations);
        let clean = counts.total() == 0 && violations == 0;
        Self {
            table,
            status: if clean { "clean" } else { "differences" }.into(),
            error: None,
            source_position: Some(crate::show_pos(p)),
            gtid: p.gtid.clone(),
            source_instant: chrono::DateTime::from_timestamp_micros(at_us).map(|t| t.to_rfc3339()),
            rows_source,
            rows_lake,
            chunks,
            chunks_mismatched,
            counts,
            examples,
            history_versions: history.as_ref().map(|h| h.versions),
            history_violations: violations,
            history_examples: history.map(|h| h.examples).unwrap_or_default(),
            timings_ms,
        }
    }

    /// A table that could not be compared.
    pub fn failed(table: String, error: String) -> Self {
        Self {
            table,
            status: "error".into(),
            error: Some(error),
            source_position: None,
            gtid: None,
            source_instant: None,
            rows_source: 0,
            rows_lake: 0,
            chunks: 0,
            chunks_mismatched: 0,
            counts: Counts::default(),
            examples: vec![],
            history_versions: None,
            history_violations: 0,
            history_examples: vec![],
            timings_ms: Timings::default(),
        }
    }

    /// Clean: compared, no difference, no violation.
    pub fn is_clean(&self) -> bool {
        self.status == "clean"
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Identifies the run (also in `tidemark.verifications`).
    pub run_id: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    /// Every table clean.
    pub clean: bool,
    /// Per table.
    pub tables: Vec<TableReport>,
}

impl Report {
    /// For a terminal.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for t in &self.tables {
            let _ = writeln!(s, "{}  {}", t.table, t.status.to_uppercase());
            if let Some(e) = &t.error {
                let _ = writeln!(s, "  error: {e}");
                continue;
            }
            let _ = writeln!(
                s,
                "  source position  {}{}  (read at {})",
                t.source_position.as_deref().unwrap_or("-"),
                t.gtid
                    .as_deref()
                    .map(|g| format!(", GTID {g}"))
                    .unwrap_or_default(),
                t.source_instant.as_deref().unwrap_or("-")
            );
            let _ = writeln!(
                s,
                "  rows             source {}, lake {}, in {} chunks ({} differed)",
                t.rows_source, t.rows_lake, t.chunks, t.chunks_mismatched
            );
            let _ = writeln!(
                s,
                "  differences      missing in lake {}, extra in lake {}, different {}",
                t.counts.missing_in_lake, t.counts.extra_in_lake, t.counts.different
            );
            for d in &t.examples {
                let _ = writeln!(
                    s,
                    "    {:?} {}{}",
                    d.kind,
                    keys(&d.key),
                    if d.columns.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " columns {}: source {} lake {}",
                            d.columns.join(", "),
                            values(&d.source, &d.columns),
                            values(&d.lake, &d.columns)
                        )
                    }
                );
            }
            match t.history_versions {
                Some(v) => {
                    let _ = writeln!(
                        s,
                        "  history          {v} versions, {} violations",
                        t.history_violations
                    );
                }
                None => {
                    let _ = writeln!(s, "  history          not checked");
                }
            }
            for v in &t.history_examples {
                let _ = writeln!(s, "    {} {}: {}", v.kind, keys(&v.key), v.detail);
            }
            let tm = &t.timings_ms;
            let _ = writeln!(
                s,
                "  timings (ms)     source {}, wait {}, lake {}, bisect {}, history {}",
                tm.source_ms, tm.wait_ms, tm.lake_ms, tm.bisect_ms, tm.history_ms
            );
        }
        let bad = self.tables.iter().filter(|t| !t.is_clean()).count();
        let _ = writeln!(
            s,
            "{} of {} tables clean (run {})",
            self.tables.len() - bad,
            self.tables.len(),
            self.run_id
        );
        s
    }
}

fn keys(k: &std::collections::BTreeMap<String, Option<String>>) -> String {
    k.iter()
        .map(|(n, v)| format!("{n}={}", v.as_deref().unwrap_or("NULL")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn values(
    row: &Option<std::collections::BTreeMap<String, Option<String>>>,
    cols: &[String],
) -> String {
    match row {
        None => "-".into(),
        Some(r) => cols
            .iter()
            .map(|c| r.get(c).cloned().flatten().unwrap_or_else(|| "NULL".into()))
            .collect::<Vec<_>>()
            .join(", "),
    }
}
