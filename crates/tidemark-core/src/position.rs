//! Where a table has got to in its source.
//!
//! Every Delta commit tidemark makes to a table carries the table's whole
//! [`SourceState`] (as commit metadata) and bumps the table's application-transaction
//! version (`txn`), in the same atomic commit as the data. On restart each table resumes
//! from its own committed state, so a crash between the commits of a table's current
//! and history tables is repaired by re-applying only what each one lacks.

use serde::{Deserialize, Serialize};

/// A MySQL binlog coordinate: file/position, plus the GTID set where the server has one
/// (MySQL `uuid:1-42` sets or MariaDB `domain-server-seq` lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinlogPosition {
    /// Binlog file name, e.g. `mysql-bin.000003`.
    pub file: String,
    /// Byte offset in that file.
    pub pos: u64,
    /// GTID set executed up to here, if GTIDs are in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

impl std::fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)?;
        if let Some(g) = &self.gtid {
            if !g.is_empty() {
                write!(f, " (gtid {g})")?;
            }
        }
        Ok(())
    }
}

/// Progress of a primary-key-chunked snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// Binlog position taken before the first chunk was read: streaming resumes here,
    /// and replaying from here over the snapshot converges to the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<BinlogPosition>,
    /// Binlog position at which the finished snapshot is consistent (equal to `low`
    /// when the snapshot ran in one consistent read, the usual case on MariaDB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<BinlogPosition>,
    /// Primary key of the last row committed, as text values, in key order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key: Option<Vec<KeyValue>>,
    /// Rows committed so far.
    pub rows: u64,
    /// All rows are in.
    pub done: bool,
    /// Wall-clock start of the snapshot (micros since epoch, UTC): the `_source_ts` of
    /// snapshot rows.
    pub started_at_us: i64,
}

/// One key column's value in a resume key: text, or hex for binary keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyValue {
    /// A value MySQL compares correctly as a quoted string literal.
    Text(String),
    /// A binary value, hex encoded.
    Hex(String),
}

/// Progress of watermark pulls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkProgress {
    /// The watermark column (source spelling).
    pub column: String,
    /// Highest watermark value applied, as MySQL text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Everything a table knows about its source, carried forward in every commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// Source name in the config and `db.table` as spelled there.
    pub source: String,
    /// The source table.
    pub source_table: String,
    /// Snapshot progress, once a snapshot started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotProgress>,
    /// Watermark pulls, once one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<WatermarkProgress>,
    /// Binlog position applied up to (change capture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog: Option<BinlogPosition>,
    /// Position in a generated or replayed stream (demo, files): events applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_offset: Option<u64>,
}
