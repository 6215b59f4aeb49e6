//! The format-neutral result of decoding one message.

use serde::{Deserialize, Serialize};
use tidemark_core::change::Op;

/// A column value as the message carried it, typed as far as the message says.
///
/// Debezium with schemas resolves its logical types here (decimal bytes become
/// [`Datum::Decimal`], `io.debezium.time.*` become [`Datum::Timestamp`] and friends).
/// Schemaless Debezium and AWS DMS leave plain JSON scalars, which become typed only
/// against the table's schema when the row is landed ([`crate::push_event`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    /// SQL NULL (JSON `null`).
    Null,
    /// A JSON boolean (Debezium's BIT(1)).
    Bool(bool),
    /// A JSON integer that fits `i64`.
    Int(i64),
    /// Any other JSON number (a fraction, an exponent, or too big for `i64`), exactly
    /// as written, so decimals never pass through `f64`.
    Number(String),
    /// A JSON string with no type attached: text, or a value the producer encoded as
    /// text (base64 bytes, ISO timestamps, DMS decimals).
    Text(String),
    /// Bytes (Debezium `bytes` fields, base64 on the wire).
    Bytes(Vec<u8>),
    /// An exact decimal as text (`-12.50`), from Debezium's Decimal bytes and scale.
    Decimal(String),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since the epoch, UTC. DATETIME values are the wall clock read as
    /// UTC, as Debezium encodes them and as tidemark stores them.
    Timestamp(i64),
    /// MySQL TIME as microseconds (negative and over 24 hours are valid).
    Time(i64),
    /// JSON text: a JSON column, or a nested object/array carried as it was.
    Json(String),
}

/// One row image: columns as spelled at the source, in the order the message had them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// `(column, value)` pairs.
    pub columns: Vec<(String, Datum)>,
}

impl Row {
    /// The value of `column` (exact spelling), if the image has it.
    pub fn get(&self, column: &str) -> Option<&Datum> {
        self.columns
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, v)| v)
    }
}

/// A table's definition as the message's own schema gives it (Debezium's Kafka
/// Connect schema in JSON, or the Avro schema from a schema registry), in MySQL's
/// terms, so that a stream needs no MySQL connection to land its tables.
///
/// The columns are what `information_schema` would say as far as the schema tells:
/// with the connector's `column.propagate.source.type` on, the source's own types;
/// otherwise the narrowest MySQL type that holds every value the Connect type can
/// carry (an `int16` lands as `smallint`, whether the source had TINYINT or
/// SMALLINT). See [`crate::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// Columns in the order of the row image.
    pub columns: Vec<ColumnDef>,
    /// The primary key: the fields of the message key's schema, in key order. Empty
    /// when the key carried no schema (the stream's `tables` option can name it).
    pub key: Vec<String>,
}

/// One column of a [`Definition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// Name at the source.
    pub name: String,
    /// `DATA_TYPE` (`decimal`).
    pub data_type: String,
    /// `COLUMN_TYPE` (`decimal(10,2)`).
    pub column_type: String,
    /// `NUMERIC_PRECISION` (or the BIT width).
    pub precision: Option<u64>,
    /// `NUMERIC_SCALE`.
    pub scale: Option<u64>,
    /// The column's default, as MySQL would print it unquoted, when the schema gives
    /// one: the value existing rows take when the column is added.
    pub default: Option<String>,
}

/// A change to one row of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// Source database (MySQL schema), as spelled at the source.
    pub db: String,
    /// Source table, as spelled at the source.
    pub table: String,
    /// What happened.
    pub op: Op,
    /// Row before the change (updates and deletes; with DMS only when the task has
    /// before images on, and then possibly only the key columns).
    pub before: Option<Row>,
    /// Row after the change (reads, inserts, updates).
    pub after: Option<Row>,
    /// Commit instant at the source, microseconds since the epoch, UTC. Falls back to
    /// the producer's processing time when the source has none (DESIGN.md
    /// `_source_ts`).
    pub source_ts_us: i64,
    /// Where the change came from, for `_source_pos`: the binlog `file:pos:row`, else
    /// the GTID, else DMS's stream position, else the message position.
    pub source_pos: String,
    /// Where the message itself was read (topic/partition/offset, file:line), as given
    /// to the decoder; for error messages and the dead-letter table.
    pub message_pos: String,
    /// Transaction id: Debezium's `transaction.id` (transaction metadata on), else the
    /// GTID; DMS's `transaction-id`.
    pub txn_id: Option<String>,
    /// Debezium's `transaction.id` only (`provide.transaction.metadata`): the event
    /// is one of the events its transaction's `END` message counts.
    pub transaction: Option<String>,
    /// Read by a snapshot (Debezium `r` or `source.snapshot`, DMS `load`).
    pub snapshot: bool,
    /// See [`ChangeEvent::dedup_position`].
    pub dedup_key: String,
    /// Where a streamed change sits in its server's binlog (Debezium's `source`
    /// block), for telling a change the connector sent again from a new one; `None`
    /// for snapshot reads and for formats without binlog coordinates (DMS).
    pub origin: Option<BinlogOrigin>,
    /// How to read values the message did not type.
    pub encoding: Encoding,
    /// The table's definition, when the message carried a schema (shared by every
    /// event decoded against the same schema).
    pub definition: Option<std::sync::Arc<Definition>>,
}

/// Where a streamed change came from (defined with the positions that judge it).
pub use tidemark_core::position::BinlogOrigin;

impl ChangeEvent {
    /// `db.table` as spelled at the source.
    pub fn source_table(&self) -> String {
        format!("{}.{}", self.db, self.table)
    }

    /// The image that lands: the after-image, or the before-image for a delete.
    pub fn image(&self) -> Option<&Row> {
        match self.op {
            Op::Delete => self.before.as_ref(),
            _ => self.after.as_ref(),
        }
    }

    /// A stable string for "the same change at the source": a message replayed by
    /// Kafka, or re-sent by the connector after a restart, gives the same string.
    ///
    /// It identifies a change to *one row*, so it is unique together with the row's
    /// key, not on its own: every row of a Debezium snapshot shares the snapshot's
    /// binlog position. The forms:
    ///
    /// * `gtid:<gtid>:<n>`: Debezium with a GTID and transaction metadata
    ///   (`provide.transaction.metadata`), `n` being the event's `total_order` in the
    ///   transaction. Does not depend on which server's binlog it came from, so it
    ///   survives a failover.
    /// * `binlog:<file>:<pos>:<row>`: Debezium otherwise. `pos` is the row event's own
    ///   offset and `row` the row within it, so two changes to one key in one
    ///   transaction differ. (GTID plus row would not: the row index restarts in every
    ///   row event.)
    /// * `snapshot:<file>:<pos>`: Debezium snapshot reads, kept apart from streamed
    ///   changes, whose first event may sit at the very position the snapshot recorded.
    /// * `dms:<transaction-id>:<transaction-record-id>`: DMS with
    ///   `IncludeTransactionDetails`.
    /// * `msg:<message position>`: anything else, so at least a Kafka redelivery of
    ///   the same message is recognised.
    pub fn dedup_position(&self) -> &str {
        &self.dedup_key
    }
}

/// A Debezium truncate (`op = t`): every row of the table went away.
#[derive(Debug, Clone, PartialEq)]
pub struct Truncate {
    /// Source database.
    pub db: String,
    /// Source table.
    pub table: String,
    /// Commit instant at the source, µs UTC.
    pub source_ts_us: i64,
    /// Binlog position, as for [`ChangeEvent::source_pos`].
    pub source_pos: String,
    /// Where the message was read.
    pub message_pos: String,
    /// As [`ChangeEvent::dedup_position`].
    pub dedup_key: String,
}

/// A message from Debezium's schema-change topic (the topic named after
/// `topic.prefix`): DDL the connector saw.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaChange {
    /// `databaseName`.
    pub db: String,
    /// The DDL statement, when the connector included it.
    pub ddl: Option<String>,
    /// Tables the change touched (`tableChanges[].id`, e.g. `"inventory"."orders"`)
    /// with the change type (`CREATE`, `ALTER`, `DROP`).
    pub tables: Vec<(String, String)>,
    /// Commit instant at the source, µs UTC (0 when the message has none).
    pub source_ts_us: i64,
    /// Binlog position.
    pub source_pos: String,
    /// Where the message was read.
    pub message_pos: String,
}

/// A Debezium transaction boundary (`provide.transaction.metadata`).
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionBoundary {
    /// `BEGIN` or `END`.
    pub status: String,
    /// Transaction id (the GTID on MySQL with GTIDs, else `file:pos`).
    pub id: String,
    /// Events in the transaction (`END` only).
    pub event_count: Option<u64>,
    /// Events per table (`END`'s `data_collections`: `db.table` and its
    /// `event_count`); empty for `BEGIN`.
    pub collections: Vec<(String, u64)>,
}

/// An AWS DMS control record (`record-type: control`).
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    /// `schema-name` (empty for DMS's own tables such as `awsdms_apply_exceptions`).
    pub db: String,
    /// `table-name`.
    pub table: String,
    /// `create-table`, `drop-table`, `change-columns`, `add-column`, `drop-column`,
    /// `rename-column`, `column-type-change`, …
    pub operation: String,
    /// `metadata.timestamp`, µs UTC.
    pub ts_us: Option<i64>,
    /// The `control` block (e.g. `table-def` with columns and primary key).
    pub detail: Option<serde_json::Value>,
    /// Where the message was read.
    pub message_pos: String,
}

/// What one message turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A row change to land.
    Change(ChangeEvent),
    /// A table truncate (Debezium `op = t`).
    Truncate(Truncate),
    /// A Kafka tombstone (null value) that follows a Debezium delete so log
    /// compaction can drop the key. Carries nothing to land: the delete came before.
    Tombstone {
        /// The message key's fields, when the key was readable JSON.
        key: Option<Row>,
    },
    /// A Debezium heartbeat (`__debezium-heartbeat.*` topic): the connector is alive.
    Heartbeat {
        /// The heartbeat's `ts_ms`, in µs.
        ts_us: Option<i64>,
    },
    /// A Debezium schema-change message.
    SchemaChange(SchemaChange),
    /// A Debezium transaction BEGIN/END.
    Transaction(TransactionBoundary),
    /// An AWS DMS control record.
    Control(Control),
}

/// Debezium's `decimal.handling.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecimalHandling {
    /// Decimal bytes (base64 of the big-endian unscaled value). Debezium's default.
    #[default]
    Precise,
    /// Exact decimal text.
    String,
    /// A JSON number (already lossy at the producer).
    Double,
}

/// Debezium's `binary.handling.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryHandling {
    /// `bytes`: base64 in JSON. Debezium's default.
    #[default]
    Bytes,
    /// `base64`.
    Base64,
    /// `base64-url-safe`.
    #[serde(rename = "base64-url-safe")]
    Base64UrlSafe,
    /// `hex` (an optional `0x` prefix, as DMS writes, is accepted).
    Hex,
}

/// Debezium's `time.precision.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimePrecision {
    /// TIME as µs; DATETIME(0–3) as ms, DATETIME(4–6) as µs. The MySQL connector's
    /// default.
    #[default]
    AdaptiveTimeMicroseconds,
    /// As above, but TIME(0–3) as ms.
    Adaptive,
    /// Kafka Connect's types: ms everywhere.
    Connect,
}

/// How the Debezium connector was configured, for messages without a schema.
///
/// With `value.converter.schemas.enable=true` the schema in each message says how
/// every field is encoded and these settings matter only for binary columns sent as
/// text (`binary.handling.mode=base64|hex`). Without schemas, JSON cannot tell a
/// base64 decimal from decimal text or milliseconds from microseconds, so copy the
/// connector's settings here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DebeziumOptions {
    /// `decimal.handling.mode`.
    pub decimal_handling: DecimalHandling,
    /// `binary.handling.mode`.
    pub binary_handling: BinaryHandling,
    /// `time.precision.mode`.
    pub time_precision: TimePrecision,
}

/// Who wrote an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Producer {
    /// A Debezium connector.
    Debezium,
    /// AWS DMS.
    Dms,
}

/// How the values of one event are to be read; set by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// Who wrote the event (BIT values: Debezium sends little-endian base64 bytes).
    pub producer: Producer,
    /// The message's own schema typed every value (Debezium with schemas): a plain
    /// string is text, never an encoded decimal or timestamp.
    pub typed: bool,
    /// How decimals arrive when untyped.
    pub decimal: DecimalHandling,
    /// How binary values arrive as text.
    pub binary: BinaryHandling,
    /// How integer instants and times are scaled when untyped.
    pub time_precision: TimePrecision,
}

impl Encoding {
    /// AWS DMS: decimals and instants as text, binary as hex.
    pub const DMS: Encoding = Encoding {
        producer: Producer::Dms,
        typed: false,
        decimal: DecimalHandling::String,
        binary: BinaryHandling::Hex,
        time_precision: TimePrecision::AdaptiveTimeMicroseconds,
    };

    /// Debezium with the given connector settings.
    pub fn debezium(options: &DebeziumOptions, typed: bool) -> Encoding {
        Encoding {
            producer: Producer::Debezium,
            typed,
            decimal: options.decimal_handling,
            binary: options.binary_handling,
            time_precision: options.time_precision,
        }
    }
}

/// Which decoder a file or topic needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Debezium MySQL connector, JSON converter.
    Debezium(DebeziumOptions),
    /// AWS DMS Kafka (or Kinesis) target, JSON message format.
    Dms,
}
