//! # tidemark-events
//!
//! Change events that another tool captured — Debezium's MySQL connector or AWS DMS,
//! published to Kafka or dumped to files — decoded into tidemark's change rows. Pure
//! functions over bytes: the Kafka consumer and the file/S3 readers live elsewhere, so
//! this crate compiles in seconds and every corner of both formats is testable
//! without a broker.
//!
//! ```text
//!   Kafka message / file line (bytes)
//!          │  decode_debezium / decode_dms / read_jsonl
//!          ▼
//!   Decoded::Change(ChangeEvent)  (or a tombstone, heartbeat, schema change,
//!          │                        truncate, transaction marker, DMS control record)
//!          │  push_event, given the table's TableSchema
//!          ▼
//!   ChangeBatchBuilder ──► ChangeBatch ──► [tidemark-lake]
//! ```
//!
//! * Decoding is format-aware and schema-free: a [`ChangeEvent`] names its source
//!   table and carries its row images as [`Datum`]s, typed as far as the message
//!   says (Debezium's schema, when present, resolves decimals and instants).
//! * Landing is schema-aware: [`push_event`] matches columns by their exact source
//!   spelling and turns each value into what the column's MySQL type lands as
//!   (`tidemark_core::types`), exactly — decimals never pass through `f64`.
//! * Positions: [`ChangeEvent::source_pos`] is the lineage shown in `_source_pos`;
//!   [`ChangeEvent::dedup_position`] is the stable key that makes a replayed message
//!   land once (Kafka and both producers are at-least-once; tidemark is not).
//! * Errors ([`DecodeError`]) name the message position, the table when known, what
//!   was wrong and what to do. Malformed input never panics: the JSON reader is our
//!   own, bounded and strict, and the tests feed every fixture truncated and garbled.

#![warn(missing_docs)]

pub mod avro;
mod codec;
pub mod connect;
mod convert;
mod debezium;
mod dms;
mod envelope;
mod error;
mod event;
mod file;
mod json;

pub use avro::{decode_avro, schema_ids, AvroSchemas};
pub use convert::{push_event, to_values};
pub use debezium::{decode_debezium, decode_debezium_with};
pub use dms::decode_dms;
pub use error::DecodeError;
pub use event::{
    BinaryHandling, BinlogOrigin, ChangeEvent, ColumnDef, Control, Datum, DebeziumOptions,
    DecimalHandling, Decoded, Definition, Encoding, Format, Producer, Row, SchemaChange,
    TimePrecision, TransactionBoundary, Truncate,
};
pub use file::{decode_line, read_jsonl, read_jsonl_named, JsonLines};

/// Decode one message of `format` (a convenience over [`decode_debezium_with`] and
/// [`decode_dms`] for callers that hold the format as a value).
pub fn decode(
    format: Format,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    position: &str,
) -> Result<Decoded, DecodeError> {
    match format {
        Format::Debezium(o) => decode_debezium_with(key, value, position, &o),
        Format::Dms => match value {
            Some(v) => decode_dms(v, position),
            None => Ok(Decoded::Tombstone { key: None }),
        },
    }
}
