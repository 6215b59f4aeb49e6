//! Debezium MySQL connector messages written with Confluent's Avro converter: the
//! Confluent wire format (magic byte 0, the 4-byte big-endian schema id the registry
//! gave the writer schema, then the Avro binary datum), decoded into the same
//! [`Decoded`] values, with the same [`Datum`]s, as the JSON decoder gives.
//!
//! Why `apache-avro` and not `arrow-avro` (which is on the workspace's Arrow line):
//! arrow-avro decodes a stream of datums against one reader schema straight into
//! Arrow batches, which suits files of one record type. A Debezium topic is a stream
//! of envelopes whose writer schema changes mid-stream (a column added), and each
//! envelope has to be routed by its `source` block, recognised as a change, a
//! truncate, a heartbeat or a schema change, and turned into typed [`Datum`]s
//! (decimals exact, instants in µs, bits little-endian) that the landing path
//! already shares with the JSON decoder: the unit of work is one message, not one
//! batch. `apache-avro` parses the writer schemas, with a global cap on what a
//! length prefix may allocate (set below), and decodes the rare messages that are
//! not row changes (keys of tombstones, heartbeats, schema changes, transaction
//! markers) into its generic value. Its schema parser drops the `connect.*`
//! properties of primitive types, so the Kafka Connect metadata (logical names,
//! parameters, defaults) is read from the schema's JSON here, once per schema id,
//! and kept with the parsed schema in [`AvroSchemas`].
//!
//! Why a hand-written datum reader for the change envelopes (`direct.rs`): the
//! generic value comes back as a `Vec<(String, Value)>` per record, a String
//! allocated per field name per message (the envelope, its `source` block, both
//! row images) and dropped once the values are [`Datum`]s; the Avro benchmark
//! spent more time in the allocator than in decoding. So each change envelope's
//! schema is also compiled once per schema id into a plan (`direct::Plan`), which
//! reads the datum straight into the [`Datum`]s and the few `source` members the
//! event needs. It accepts and refuses the same datums as apache-avro and gives the
//! same results and errors as the generic path, which the tests keep as the
//! reference; only its wording of why a datum does not decode differs. (A schema
//! with a `big-decimal` logical type, which Kafka Connect never writes, keeps the
//! generic path.)
//!
//! Conventions of Confluent's `AvroData` (what Debezium's Avro converter writes):
//! every field schema carries `connect.name` (the logical name, e.g.
//! `io.debezium.time.MicroTimestamp`), `connect.parameters` (strings: `scale`,
//! `connect.decimal.precision`, `allowed`, `length`,
//! `__debezium.source.column.type`, …), `connect.default`, and Avro's `logicalType`
//! (`decimal` with `precision` and `scale` on bytes). Optional columns are unions
//! with `"null"`. Avro `int` is Connect `int32` unless `connect.type` says `int8` or
//! `int16`; `long` is `int64`, `float` `float32`, `double` `float64`, a record a
//! `struct`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::Schema;
use base64::Engine;
use serde_json::Value as J;

use crate::codec;
use crate::connect::{self, ConnectField};
use crate::envelope::{self, Source};
use crate::error::DecodeError;
use crate::event::{
    Datum, DebeziumOptions, Decoded, Definition, Encoding, Row, SchemaChange, TransactionBoundary,
};
use crate::json::Json;

mod direct;
#[cfg(test)]
mod tests;

/// The most one length prefix in a message may make the decoder allocate (a string,
/// bytes, an array's items). Kafka's own message limit is far below it.
const MAX_ALLOCATION: usize = 64 << 20;

fn limit_allocations() {
    // Set once per process; the first caller's value wins.
    apache_avro::util::max_allocation_bytes(MAX_ALLOCATION);
}

/// The registry schema ids that the key and the value were written with (`None` for
/// a null or empty part, which needs no schema).
///
/// A part that is not in the Confluent wire format is an error saying what it starts
/// with. The error has no message position; [`decode_avro`] reports the same error
/// with it, so a caller may also skip the lookup on error and let the decoder say it.
pub fn schema_ids(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<(Option<u32>, Option<u32>), DecodeError> {
    let id = |part: Option<&[u8]>, which: &str| -> Result<Option<u32>, DecodeError> {
        match part {
            None => Ok(None),
            Some([]) => Ok(None),
            Some(b) => frame(b, which, "").map(|(id, _)| Some(id)),
        }
    };
    Ok((id(key, "key")?, id(value, "value")?))
}

/// Split a framed part into its schema id and the Avro datum.
fn frame<'a>(part: &'a [u8], which: &str, position: &str) -> Result<(u32, &'a [u8]), DecodeError> {
    match part {
        [0, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        _ => {
            let found = match part.first() {
                Some(b'{' | b'[' | b'"') => "JSON text".to_string(),
                Some(0) => format!("only {} bytes, too short for the header", part.len()),
                _ => {
                    let head: Vec<String> =
                        part.iter().take(8).map(|b| format!("{b:02x}")).collect();
                    format!("the bytes {}", head.join(" "))
                }
            };
            Err(DecodeError::envelope(
                position,
                None,
                format!(
                    "the message {which} is not in the Confluent wire format (magic byte 0, a 4-byte schema id, then Avro), it starts with {found}. If the topic holds JSON (Debezium's JsonConverter), set the stream's format to JSON; otherwise the producer must use Confluent's Avro converter (io.confluent.connect.avro.AvroConverter) or a compatible one with a schema registry"
                ),
            ))
        }
    }
}

/// Writer schemas by registry id, parsed once, with what the decoder derives from
/// each (field metadata, the table's columns) and the table definitions built from
/// them, so nothing is rebuilt per message.
#[derive(Default, Debug)]
pub struct AvroSchemas {
    schemas: HashMap<u32, Arc<Parsed>>,
    /// Definitions by (key schema id, value schema id); the error is kept too, so a
    /// bad schema costs one build, and each message gets the same error.
    definitions: Mutex<DefinitionCache>,
}

type DefinitionCache = HashMap<(Option<u32>, u32), Result<Arc<Definition>, String>>;

/// One writer schema.
#[derive(Debug)]
struct Parsed {
    schema: Schema,
    /// The top-level type's full name (`….Envelope`, `….Key`,
    /// `io.debezium.connector.common.Heartbeat`).
    name: String,
    /// The top-level record's fields (a key's columns; an envelope's members).
    fields: Vec<FieldMeta>,
    /// The envelope's row images' fields.
    before: Option<Vec<FieldMeta>>,
    after: Option<Vec<FieldMeta>>,
    /// The table's columns (the `after` image's fields, else `before`'s), or why
    /// they cannot be described.
    columns: Result<Vec<ConnectField>, String>,
    /// How a change envelope of this schema is read without apache-avro's generic
    /// values; `None` for anything else (keys, heartbeats, schema changes,
    /// transaction markers), which the generic reader decodes.
    plan: Option<direct::Plan>,
}

/// How one field's values are typed: its Connect type, logical name and scale.
#[derive(Debug, Clone)]
struct FieldMeta {
    name: String,
    ty: String,
    logical: String,
    scale: Option<u32>,
}

impl AvroSchemas {
    /// Whether the schema with registry id `id` is loaded.
    pub fn has(&self, id: u32) -> bool {
        self.schemas.contains_key(&id)
    }

    /// Load the writer schema `schema_json` (as the registry returns it) under `id`.
    /// The error names the id and what is wrong with the schema.
    pub fn insert(&mut self, id: u32, schema_json: &str) -> Result<(), String> {
        limit_allocations();
        let parsed = parse(schema_json).map_err(|e| {
            format!("schema id {id} from the schema registry is not a usable Avro schema: {e}")
        })?;
        self.schemas.insert(id, Arc::new(parsed));
        let cache = self
            .definitions
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.retain(|(k, v), _| *k != Some(id) && *v != id);
        Ok(())
    }

    fn get(&self, id: u32, which: &str, position: &str) -> Result<&Arc<Parsed>, DecodeError> {
        self.schemas.get(&id).ok_or_else(|| {
            DecodeError::envelope(
                position,
                None,
                format!("the message {which} was written with schema id {id}, which has not been fetched from the schema registry (a bug in the caller: look the ids up with schema_ids and load them with AvroSchemas::insert first)"),
            )
        })
    }

    fn definition(
        &self,
        key: Option<(u32, &Parsed)>,
        value_id: u32,
        value: &Parsed,
    ) -> Result<Arc<Definition>, String> {
        let mut cache = self
            .definitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache
            .entry((key.map(|(id, _)| id), value_id))
            .or_insert_with(|| {
                let columns = value.columns.clone()?;
                let key_fields = key
                    .map(|(_, k)| k.fields.iter().map(|f| f.name.clone()).collect())
                    .unwrap_or_default();
                connect::definition(&columns, key_fields).map(Arc::new)
            })
            .clone()
    }
}

/// Decode one Debezium message written by Confluent's Avro converter.
///
/// `key` and `value` are the Kafka message's key and value bytes (`None` for a
/// null); every schema id they name must be loaded in `schemas` (see
/// [`schema_ids`]). `position` says where the message was read and is used in errors
/// and as the last-resort source position. The result is what
/// [`crate::decode_debezium_with`] gives for the same change in JSON with schemas,
/// including the table's [`Definition`] (the key schema's fields are its primary
/// key).
pub fn decode_avro(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    position: &str,
    schemas: &AvroSchemas,
) -> Result<Decoded, DecodeError> {
    decode(key, value, position, schemas, true)
}

/// [`decode_avro`] with every datum read by apache-avro's generic reader: what the
/// direct reader is tested against.
#[cfg(test)]
fn decode_avro_generic(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    position: &str,
    schemas: &AvroSchemas,
) -> Result<Decoded, DecodeError> {
    decode(key, value, position, schemas, false)
}

/// `direct`: read change envelopes with their schema's `direct::Plan` when it has
/// one (always, but in the tests that compare the two readers).
fn decode(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    position: &str,
    schemas: &AvroSchemas,
    direct: bool,
) -> Result<Decoded, DecodeError> {
    limit_allocations();
    let key = match key {
        None | Some([]) => None,
        Some(k) => {
            let (id, datum) = frame(k, "key", position)?;
            Some((id, datum, schemas.get(id, "key", position)?))
        }
    };
    let tombstone = || Decoded::Tombstone {
        // The key of a tombstone is informational: a key that does not decode only
        // costs the tombstone its key.
        key: key.and_then(|(id, datum, parsed)| {
            match read(parsed, id, datum, "key", position).ok()? {
                Value::Record(fields) => row(&fields, &parsed.fields, position, "").ok(),
                _ => None,
            }
        }),
    };
    let value = match value {
        None | Some([]) => return Ok(tombstone()),
        Some(v) => v,
    };
    let (value_id, datum) = frame(value, "value", position)?;
    let parsed = schemas.get(value_id, "value", position)?;
    if let Some(plan) = parsed.plan.as_ref().filter(|_| direct) {
        let key = key.map(|(id, _, p)| (id, p.as_ref()));
        return direct::decode_change(plan, datum, key, value_id, parsed, position, schemas);
    }
    let members = match read(parsed, value_id, datum, "value", position)? {
        Value::Record(fields) => fields,
        Value::Null => return Ok(tombstone()),
        other => {
            return Err(DecodeError::envelope(
                position,
                None,
                format!(
                    "expected a Debezium envelope (an Avro record), found {} (schema id {value_id}, {}); tidemark reads the Debezium MySQL connector's envelope",
                    kind(&other),
                    parsed.name
                ),
            ))
        }
    };
    let m = Members(&members);
    if members.iter().any(|(k, _)| k == "op") {
        let key = key.map(|(id, _, p)| (id, p.as_ref()));
        return change(&m, key, value_id, parsed, position, schemas);
    }
    if parsed.name.ends_with("SchemaChangeValue") || m.has("ddl") || m.has("tableChanges") {
        return Ok(Decoded::SchemaChange(schema_change(&m, position)));
    }
    if let (Some(status @ ("BEGIN" | "END")), Some(id)) = (m.str("status"), m.text("id")) {
        return Ok(Decoded::Transaction(TransactionBoundary {
            status: status.to_string(),
            id,
            event_count: m.int("event_count").and_then(|n| u64::try_from(n).ok()),
            collections: match m.get("data_collections") {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|c| match unwrap_union(c) {
                        Value::Record(f) => {
                            let c = Members(f);
                            let n = u64::try_from(c.int("event_count")?).ok()?;
                            Some((c.text("data_collection")?, n))
                        }
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            },
        }));
    }
    let heartbeat_shape = !members.is_empty()
        && members
            .iter()
            .all(|(k, _)| matches!(k.as_str(), "ts_ms" | "ts_us" | "ts_ns"));
    if parsed.name.ends_with(".Heartbeat") || heartbeat_shape {
        return Ok(Decoded::Heartbeat {
            ts_us: instant_us(Some(&m)),
        });
    }
    let names: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).take(8).collect();
    Err(DecodeError::envelope(
        position,
        None,
        format!(
            "not a Debezium change event: the record {} (schema id {value_id}) has no \"op\" field (fields: {}). tidemark needs Debezium's full envelope (before, after, source, op): remove the ExtractNewRecordState (\"unwrap\") transform from the connector",
            parsed.name,
            names.join(", ")
        ),
    ))
}

/// A message part that does not decode with its writer schema: `what` says why.
fn damaged(parsed: &Parsed, id: u32, which: &str, position: &str, what: String) -> DecodeError {
    DecodeError::envelope(
        position,
        None,
        format!("the message {which} does not decode with its writer schema (schema id {id}, {}): {what}. The message is damaged, or its producer framed it with another schema's id; check that the producer and tidemark use the same schema registry", parsed.name),
    )
}

/// Decode one framed part's datum against its writer schema with apache-avro's
/// generic reader; every byte must be used.
fn read(
    parsed: &Parsed,
    id: u32,
    datum: &[u8],
    which: &str,
    position: &str,
) -> Result<Value, DecodeError> {
    let damaged = |what: String| damaged(parsed, id, which, position, what);
    let mut rest = datum;
    let value = GenericDatumReader::builder(&parsed.schema)
        .build()
        .and_then(|r| r.read_value(&mut rest))
        .map_err(|e| damaged(e.to_string()))?;
    if !rest.is_empty() {
        return Err(damaged(format!(
            "{} bytes are left over after the value",
            rest.len()
        )));
    }
    Ok(value)
}

/// The fields of a decoded record, by name, unions and nulls looked through.
struct Members<'a>(&'a [(String, Value)]);

impl Members<'_> {
    fn has(&self, k: &str) -> bool {
        self.0.iter().any(|(n, _)| n == k)
    }

    /// The field's value, `None` when absent or null.
    fn get(&self, k: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| unwrap_union(v))
            .filter(|v| !matches!(v, Value::Null))
    }

    fn str(&self, k: &str) -> Option<&str> {
        match self.get(k)? {
            Value::String(s) | Value::Enum(_, s) => Some(s),
            _ => None,
        }
    }

    fn int(&self, k: &str) -> Option<i64> {
        match self.get(k)? {
            Value::Int(n) => Some(i64::from(*n)),
            Value::Long(n) => Some(*n),
            _ => None,
        }
    }

    /// A scalar as text, as [`Json::scalar_text`] gives it.
    fn text(&self, k: &str) -> Option<String> {
        match self.get(k)? {
            Value::String(s) | Value::Enum(_, s) => Some(s.clone()),
            Value::Int(n) => Some(n.to_string()),
            Value::Long(n) => Some(n.to_string()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn record(&self, k: &str) -> Option<Members<'_>> {
        match self.get(k)? {
            Value::Record(f) => Some(Members(f)),
            _ => None,
        }
    }
}

fn unwrap_union(v: &Value) -> &Value {
    let mut v = v;
    while let Value::Union(_, inner) = v {
        v = inner;
    }
    v
}

fn kind(v: &Value) -> &'static str {
    match unwrap_union(v) {
        Value::Null => "null",
        Value::Boolean(_) => "a boolean",
        Value::Int(_) | Value::Long(_) => "an integer",
        Value::Float(_) | Value::Double(_) => "a floating-point number",
        Value::String(_) => "a string",
        Value::Bytes(_) | Value::Fixed(..) => "bytes",
        Value::Enum(..) => "an enum symbol",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        Value::Record(_) => "a record",
        _ => "a logical-type value",
    }
}

/// The most precise non-zero instant among `ts_ns`, `ts_us`, `ts_ms`, in µs.
fn instant_us(block: Option<&Members>) -> Option<i64> {
    let b = block?;
    envelope::instant_us(|k| b.int(k))
}

/// Debezium's `source` block of an Avro envelope.
fn source_block<'a>(source: Option<&'a Members<'a>>) -> Source<'a> {
    Source::read(
        |k| source.and_then(|s| s.str(k)),
        |k| source.and_then(|s| s.int(k)),
    )
}

fn schema_change(m: &Members, position: &str) -> SchemaChange {
    let source = m.record("source");
    let src = source_block(source.as_ref());
    let tables = match m.get("tableChanges") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|t| match unwrap_union(t) {
                Value::Record(f) => {
                    let t = Members(f);
                    let id = t.str("id")?.to_string();
                    Some((id, t.str("type").unwrap_or("").to_string()))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    SchemaChange {
        db: m.str("databaseName").unwrap_or("").to_string(),
        ddl: m.str("ddl").map(str::to_string),
        tables,
        source_ts_us: instant_us(source.as_ref())
            .or_else(|| instant_us(Some(m)))
            .unwrap_or(0),
        source_pos: src.source_pos(position),
        message_pos: position.to_string(),
    }
}

/// A change event whose `source` names no table (both readers).
fn no_table(position: &str, value_id: u32, schema: &str) -> DecodeError {
    DecodeError::envelope(
        position,
        None,
        format!("the change event (schema id {value_id}, {schema}) has no source.db and source.table, so tidemark cannot tell which table it is for; tidemark reads the Debezium MySQL connector's envelope"),
    )
}

/// What is wrong with a change event of table `qualified` (both readers).
fn change_error(position: &str, qualified: &str, value_id: u32, msg: String) -> DecodeError {
    DecodeError::envelope(
        position,
        Some(qualified.to_string()),
        format!("{msg} (Avro schema id {value_id})"),
    )
}

/// A change event without any timestamp (both readers).
const NO_TIMESTAMP: &str = "the event has no timestamp (source.ts_ms or ts_ms); every Debezium change event carries one, so the message is damaged";

fn change(
    m: &Members,
    key: Option<(u32, &Parsed)>,
    value_id: u32,
    parsed: &Parsed,
    position: &str,
    schemas: &AvroSchemas,
) -> Result<Decoded, DecodeError> {
    let source = m.record("source");
    let name = |k: &str| source.as_ref().and_then(|s| s.str(k));
    let (Some(db), Some(table)) = (name("db"), name("table")) else {
        return Err(no_table(position, value_id, &parsed.name));
    };
    let qualified = format!("{db}.{table}");
    let err = |msg: String| change_error(position, &qualified, value_id, msg);
    let op_code = match m.get("op") {
        Some(Value::String(s) | Value::Enum(_, s)) => s.as_str(),
        other => {
            return Err(err(format!(
                "\"op\" must be a string (c, u, d, r or t), found {}",
                other.map_or("nothing", kind)
            )))
        }
    };
    let source_ts_us = instant_us(source.as_ref())
        .or_else(|| instant_us(Some(m)))
        .ok_or_else(|| err(NO_TIMESTAMP.into()))?;
    let src = source_block(source.as_ref());
    let snapshot_flag = match source.as_ref().and_then(|s| s.get("snapshot")) {
        Some(Value::Boolean(b)) => *b,
        Some(Value::String(s) | Value::Enum(_, s)) => s != "false",
        _ => false,
    };
    let transaction = m.record("transaction");
    let parts = envelope::Change {
        db,
        table,
        op_code,
        src,
        snapshot_flag,
        txn_id: transaction.as_ref().and_then(|t| t.text("id")),
        total_order: transaction.as_ref().and_then(|t| t.int("total_order")),
        source_ts_us,
    };
    let images = || {
        let image = |which: &str, metas: &Option<Vec<FieldMeta>>| match m.get(which) {
            None => Ok(None),
            Some(Value::Record(fields)) => {
                let metas = metas.as_deref().unwrap_or(&[]);
                row(fields, metas, position, &qualified).map(Some)
            }
            Some(other) => Err(err(format!(
                "\"{which}\" must be a record or null, found {}",
                kind(other)
            ))),
        };
        Ok((
            image("before", &parsed.before)?,
            image("after", &parsed.after)?,
        ))
    };
    let definition = || {
        schemas
            .definition(key, value_id, parsed)
            .map(Some)
            .map_err(&err)
    };
    parts.finish(
        position,
        &err,
        images,
        Encoding::debezium(&DebeziumOptions::default(), true),
        definition,
    )
}

/// A row image: each field typed by its schema's metadata.
fn row(
    fields: &[(String, Value)],
    metas: &[FieldMeta],
    position: &str,
    table: &str,
) -> Result<Row, DecodeError> {
    let mut columns = Vec::with_capacity(fields.len());
    for (i, (name, v)) in fields.iter().enumerate() {
        // The writer schema orders the fields; look up by name only if it differs.
        let meta = metas
            .get(i)
            .filter(|f| &f.name == name)
            .or_else(|| metas.iter().find(|f| &f.name == name));
        let datum = match meta {
            Some(f) => typed(v, f).map_err(|message| DecodeError::Value {
                position: position.to_string(),
                table: table.to_string(),
                column: name.clone(),
                message: if f.logical.is_empty() {
                    format!("{message} (Avro field of Connect type {})", f.ty)
                } else {
                    format!(
                        "{message} (Avro field of Connect type {} {})",
                        f.ty, f.logical
                    )
                },
            })?,
            None => typed(v, &FieldMeta::plain(name)).map_err(|message| DecodeError::Value {
                position: position.to_string(),
                table: table.to_string(),
                column: name.clone(),
                message,
            })?,
        };
        columns.push((name.clone(), datum));
    }
    Ok(Row { columns })
}

impl FieldMeta {
    fn plain(name: &str) -> FieldMeta {
        FieldMeta {
            name: name.to_string(),
            ty: String::new(),
            logical: String::new(),
            scale: None,
        }
    }
}

/// A value typed by its Connect type and Debezium logical name: the [`Datum`] the
/// JSON decoder gives for the same value.
fn typed(v: &Value, f: &FieldMeta) -> Result<Datum, String> {
    let logical = f.logical.as_str();
    let us = |n: i64, factor: i64| {
        n.checked_mul(factor)
            .ok_or_else(|| format!("{n} is out of range"))
    };
    Ok(match unwrap_union(v) {
        Value::Null => Datum::Null,
        Value::Boolean(b) => Datum::Bool(*b),
        Value::Int(n) => codec::integer(i64::from(*n), logical)?,
        Value::Long(n) => codec::integer(*n, logical)?,
        Value::Float(x) => float(f64::from(*x), format!("{x:?}")),
        Value::Double(x) => float(*x, format!("{x:?}")),
        Value::String(s) => match logical {
            "io.debezium.time.ZonedTimestamp" => match codec::parse_instant(s)? {
                Some(us) => Datum::Timestamp(us),
                None => Datum::Null,
            },
            "io.debezium.data.Json" => Datum::Json(s.clone()),
            _ => Datum::Text(s.clone()),
        },
        Value::Enum(_, s) => Datum::Text(s.clone()),
        Value::Uuid(u) => Datum::Text(u.to_string()),
        Value::Bytes(b) | Value::Fixed(_, b) => bytes(b, f)?,
        Value::Decimal(d) => {
            let b = Vec::<u8>::try_from(d).map_err(|e| e.to_string())?;
            let scale = f
                .scale
                .ok_or("the decimal field's schema has no scale".to_string())?;
            Datum::Decimal(codec::unscaled_to_decimal(&b, scale)?)
        }
        Value::BigDecimal(d) => Datum::Decimal(d.to_plain_string()),
        Value::Date(d) => Datum::Date(*d),
        Value::TimeMillis(ms) => Datum::Time(us(i64::from(*ms), 1000)?),
        Value::TimeMicros(t) => Datum::Time(*t),
        Value::TimestampMillis(ms) | Value::LocalTimestampMillis(ms) => {
            Datum::Timestamp(us(*ms, 1000)?)
        }
        Value::TimestampMicros(t) | Value::LocalTimestampMicros(t) => Datum::Timestamp(*t),
        Value::TimestampNanos(t) | Value::LocalTimestampNanos(t) => {
            Datum::Timestamp(t.div_euclid(1000))
        }
        Value::Record(fields) if logical == "io.debezium.data.VariableScaleDecimal" => {
            let m = Members(fields);
            let scale = m
                .int("scale")
                .and_then(|s| u32::try_from(s).ok())
                .ok_or("VariableScaleDecimal without a valid scale")?;
            match m.get("value") {
                Some(Value::Bytes(b)) => Datum::Decimal(codec::unscaled_to_decimal(b, scale)?),
                _ => return Err("VariableScaleDecimal without a value".into()),
            }
        }
        Value::Record(fields) if logical.starts_with("io.debezium.data.geometry.") => {
            match Members(fields).get("wkb") {
                Some(Value::Bytes(b)) => Datum::Bytes(b.clone()),
                _ => return Err("geometry without a wkb field".into()),
            }
        }
        other => Datum::Json(to_json(other).to_text()),
    })
}

/// A float as the JSON converter writes it: a number, or `NaN` / `Infinity` as text.
fn float(x: f64, shortest: String) -> Datum {
    if x.is_nan() {
        Datum::Text("NaN".into())
    } else if x.is_infinite() {
        Datum::Text(if x > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        Datum::Number(shortest)
    }
}

fn bytes(b: &[u8], f: &FieldMeta) -> Result<Datum, String> {
    Ok(match f.logical.as_str() {
        "org.apache.kafka.connect.data.Decimal" => {
            let scale = f
                .scale
                .ok_or("the Decimal field's schema has no scale parameter".to_string())?;
            Datum::Decimal(codec::unscaled_to_decimal(b, scale)?)
        }
        "io.debezium.data.Bits" => codec::bits_le(b)?,
        _ => Datum::Bytes(b.to_vec()),
    })
}

/// An Avro value as the JSON converter would have written it (bytes as base64), for
/// structs, arrays and maps carried as JSON text.
fn to_json(v: &Value) -> Json {
    let b64 = |b: &[u8]| Json::String(base64::engine::general_purpose::STANDARD.encode(b));
    let num = |n: String| Json::Number(n);
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int(n) | Value::Date(n) | Value::TimeMillis(n) => num(n.to_string()),
        Value::Long(n)
        | Value::TimeMicros(n)
        | Value::TimestampMillis(n)
        | Value::TimestampMicros(n)
        | Value::TimestampNanos(n)
        | Value::LocalTimestampMillis(n)
        | Value::LocalTimestampMicros(n)
        | Value::LocalTimestampNanos(n) => num(n.to_string()),
        Value::Float(x) => float_json(f64::from(*x), format!("{x:?}")),
        Value::Double(x) => float_json(*x, format!("{x:?}")),
        Value::String(s) | Value::Enum(_, s) => Json::String(s.clone()),
        Value::Bytes(b) | Value::Fixed(_, b) => b64(b),
        Value::Decimal(d) => match Vec::<u8>::try_from(d) {
            Ok(b) => b64(&b),
            Err(_) => Json::Null,
        },
        Value::BigDecimal(d) => Json::String(d.to_plain_string()),
        Value::Uuid(u) => Json::String(u.to_string()),
        Value::Duration(d) => Json::String(format!("{d:?}")),
        Value::Union(_, inner) => to_json(inner),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(m) => {
            // Sorted, so the same map always gives the same text.
            let mut members: Vec<(String, Json)> =
                m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(members)
        }
        Value::Record(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

fn float_json(x: f64, shortest: String) -> Json {
    if x.is_finite() {
        Json::Number(shortest)
    } else {
        match float(x, shortest) {
            Datum::Text(t) => Json::String(t),
            _ => Json::Null,
        }
    }
}

// ---------------------------------------------------------------------------------
// Schemas: the writer schema parsed by apache-avro for decoding, and the Kafka
// Connect metadata read from its JSON.

const PRIMITIVES: &[&str] = &[
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

fn parse(schema_json: &str) -> Result<Parsed, String> {
    // serde_json refuses nesting deeper than 128, so every walk below is bounded.
    let mut json: J = serde_json::from_str(schema_json).map_err(|e| format!("not JSON: {e}"))?;
    // The Connect metadata, read before the defaults are dropped below.
    let (name, fields, before, after, columns) = {
        let mut names = Names::default();
        names.collect(&json, "");
        names.check(&json, "", &mut Vec::new())?;
        let top = names
            .resolve(&json, "")
            .ok_or("the top-level type refers to an unknown name")?;
        let name = top.full.clone();
        let (fields, before, after, columns) = match top.node.get("fields") {
            Some(J::Array(fields)) if top.kind() == "record" => {
                let metas = fields
                    .iter()
                    .map(|f| names.field_meta(f, &top.ns))
                    .collect::<Result<Vec<_>, String>>()?;
                let image = |which: &str| {
                    let f = fields
                        .iter()
                        .find(|f| f.get("name").and_then(J::as_str) == Some(which))?;
                    let t = names.resolve(f.get("type")?, &top.ns)?;
                    if t.kind() != "record" {
                        return None;
                    }
                    match t.node.get("fields") {
                        Some(J::Array(cols)) => Some((cols, t.ns.clone())),
                        _ => None,
                    }
                };
                let metas_of = |cols: &Vec<J>, ns: &str| {
                    cols.iter()
                        .map(|f| names.field_meta(f, ns))
                        .collect::<Result<Vec<_>, String>>()
                };
                let (before, after) = (image("before"), image("after"));
                let before_metas = before.as_ref().map(|(c, ns)| metas_of(c, ns)).transpose()?;
                let after_metas = after.as_ref().map(|(c, ns)| metas_of(c, ns)).transpose()?;
                let columns = match after.or(before) {
                    Some((cols, ns)) => cols
                        .iter()
                        .map(|f| names.connect_field(f, &ns))
                        .collect::<Result<Vec<_>, String>>(),
                    None => Err("the envelope's schema has no before or after record, so it does not define the table".to_string()),
                };
                (metas, before_metas, after_metas, columns)
            }
            _ => (
                Vec::new(),
                None,
                None,
                Err("the schema is not a record".to_string()),
            ),
        };
        (name, fields, before, after, columns)
    };
    // Writer-schema decoding never reads defaults; dropping them spares the parser
    // checking each against its type (Confluent's AvroData writes some, such as
    // bytes defaults, in a form Avro's spec does not).
    strip_defaults(&mut json);
    let schema = Schema::parse(&json).map_err(|e| e.to_string())?;
    let plan = direct::Plan::new(
        &schema,
        before.as_deref().unwrap_or(&[]),
        after.as_deref().unwrap_or(&[]),
    );
    Ok(Parsed {
        schema,
        name,
        fields,
        before,
        after,
        columns,
        plan,
    })
}

fn strip_defaults(v: &mut J) {
    match v {
        J::Object(m) => {
            if let Some(J::Array(fields)) = m.get_mut("fields") {
                for f in fields.iter_mut() {
                    if let J::Object(fm) = f {
                        fm.remove("default");
                    }
                }
            }
            for (_, c) in m.iter_mut() {
                strip_defaults(c);
            }
        }
        J::Array(items) => items.iter_mut().for_each(strip_defaults),
        _ => {}
    }
}

/// Named types of a schema (records, enums, fixed) by full name.
#[derive(Default)]
struct Names<'a> {
    by_name: HashMap<String, (&'a J, String)>,
}

/// A type node with its full name (records, enums, fixed) and the namespace its
/// members resolve names in.
struct Resolved<'a> {
    node: &'a J,
    full: String,
    ns: String,
}

impl Resolved<'_> {
    /// `record`, `enum`, `array`, …, or the primitive's name.
    fn kind(&self) -> &str {
        match self.node {
            J::String(s) => s.as_str(),
            J::Object(m) => m.get("type").and_then(J::as_str).unwrap_or(""),
            _ => "",
        }
    }
}

/// `name` qualified in `ns` (a dotted name is already full), and its namespace.
fn full_name(node: &serde_json::Map<String, J>, ns: &str) -> Option<(String, String)> {
    let name = node.get("name")?.as_str()?;
    if name.contains('.') {
        let ns = name.rsplit_once('.').map(|(n, _)| n).unwrap_or("");
        return Some((name.to_string(), ns.to_string()));
    }
    let ns = match node.get("namespace").and_then(J::as_str) {
        Some(n) => n,
        None => ns,
    };
    Some(if ns.is_empty() {
        (name.to_string(), String::new())
    } else {
        (format!("{ns}.{name}"), ns.to_string())
    })
}

impl<'a> Names<'a> {
    fn collect(&mut self, v: &'a J, ns: &str) {
        match v {
            J::Array(items) => items.iter().for_each(|i| self.collect(i, ns)),
            J::Object(m) => {
                let mut inner = ns.to_string();
                if matches!(
                    m.get("type").and_then(J::as_str),
                    Some("record" | "error" | "enum" | "fixed")
                ) {
                    if let Some((full, own_ns)) = full_name(m, ns) {
                        self.by_name.entry(full).or_insert((v, own_ns.clone()));
                        inner = own_ns;
                    }
                }
                if let Some(J::Array(fields)) = m.get("fields") {
                    for f in fields {
                        if let Some(t) = f.get("type") {
                            self.collect(t, &inner);
                        }
                    }
                }
                for k in ["type", "items", "values"] {
                    if let Some(t @ (J::Object(_) | J::Array(_))) = m.get(k) {
                        self.collect(t, &inner);
                    }
                }
            }
            _ => {}
        }
    }

    /// A type node with references followed and unions with `"null"` looked through
    /// (the first non-null branch).
    fn resolve(&self, v: &'a J, ns: &str) -> Option<Resolved<'a>> {
        match v {
            J::String(s) if PRIMITIVES.contains(&s.as_str()) => Some(Resolved {
                node: v,
                full: s.clone(),
                ns: ns.to_string(),
            }),
            J::String(s) => {
                let (node, own_ns) = self
                    .by_name
                    .get(&format!("{ns}.{s}"))
                    .or_else(|| self.by_name.get(s))?;
                let node: &'a J = node;
                let full = match node {
                    J::Object(m) => full_name(m, own_ns).map(|(f, _)| f).unwrap_or_default(),
                    _ => s.clone(),
                };
                Some(Resolved {
                    node,
                    full,
                    ns: own_ns.clone(),
                })
            }
            J::Array(branches) => {
                let b = branches
                    .iter()
                    .find(|b| b.as_str() != Some("null"))
                    .unwrap_or(branches.first()?);
                self.resolve(b, ns)
            }
            J::Object(m) => match m.get("type") {
                Some(inner @ (J::Object(_) | J::Array(_))) => {
                    // `{"type": {...}}`: the wrapper's own properties still apply,
                    // but a nested type carries its own; look through.
                    self.resolve(inner, ns)
                }
                Some(J::String(t))
                    if matches!(t.as_str(), "record" | "error" | "enum" | "fixed") =>
                {
                    let (full, own_ns) = full_name(m, ns)?;
                    Some(Resolved {
                        node: v,
                        full,
                        ns: own_ns,
                    })
                }
                Some(J::String(_)) => Some(Resolved {
                    node: v,
                    full: String::new(),
                    ns: ns.to_string(),
                }),
                _ => None,
            },
            _ => None,
        }
    }

    /// Refuse what the decoder cannot bound: a recursive type (a datum could nest as
    /// deep as the message is long) and arrays whose items take no bytes (a count
    /// alone could ask for billions of values).
    fn check(&self, v: &'a J, ns: &str, stack: &mut Vec<String>) -> Result<(), String> {
        match v {
            J::String(s) if !PRIMITIVES.contains(&s.as_str()) => {
                let qualified = format!("{ns}.{s}");
                if stack.iter().any(|n| n == s || *n == qualified) {
                    return Err(format!(
                        "the type {s} contains itself; tidemark does not decode recursive Avro types (Debezium never writes them)"
                    ));
                }
                Ok(())
            }
            J::Array(items) => items.iter().try_for_each(|i| self.check(i, ns, stack)),
            J::Object(m) => {
                let named = matches!(
                    m.get("type").and_then(J::as_str),
                    Some("record" | "error" | "enum" | "fixed")
                );
                let mut inner = ns.to_string();
                if named {
                    let (full, own_ns) = full_name(m, ns).ok_or("a named type without a name")?;
                    stack.push(full);
                    inner = own_ns;
                }
                let result = (|| {
                    if let Some(J::Array(fields)) = m.get("fields") {
                        for f in fields {
                            if let Some(t) = f.get("type") {
                                self.check(t, &inner, stack)?;
                            }
                        }
                    }
                    if let Some(items) = m.get("items") {
                        if self.min_size(items, &inner, 0) == 0 {
                            return Err("an array whose items take no bytes (e.g. of null); tidemark refuses it because a count alone could ask for billions of values".to_string());
                        }
                        self.check(items, &inner, stack)?;
                    }
                    if let Some(values) = m.get("values") {
                        self.check(values, &inner, stack)?;
                    }
                    if let Some(t @ (J::Object(_) | J::Array(_))) = m.get("type") {
                        self.check(t, &inner, stack)?;
                    }
                    Ok(())
                })();
                if named {
                    stack.pop();
                }
                result
            }
            _ => Ok(()),
        }
    }

    /// The fewest bytes a value of the type takes (0 or more; only 0 matters).
    fn min_size(&self, v: &'a J, ns: &str, depth: usize) -> usize {
        if depth > 64 {
            return 1;
        }
        match v {
            J::String(s) if s == "null" => 0,
            J::String(s) if PRIMITIVES.contains(&s.as_str()) => 1,
            J::String(_) => match self.resolve(v, ns) {
                Some(r) if !matches!(r.node, J::String(_)) => {
                    self.min_size(r.node, &r.ns, depth + 1)
                }
                _ => 1,
            },
            // A union's branch index takes a byte.
            J::Array(_) => 1,
            J::Object(m) => match m.get("type") {
                Some(J::String(t)) if t == "record" || t == "error" => {
                    let inner = full_name(m, ns).map(|(_, n)| n).unwrap_or_default();
                    match m.get("fields") {
                        Some(J::Array(fields)) => fields
                            .iter()
                            .map(|f| {
                                f.get("type")
                                    .map_or(1, |t| self.min_size(t, &inner, depth + 1))
                            })
                            .sum(),
                        _ => 0,
                    }
                }
                Some(J::String(t)) if t == "fixed" => {
                    m.get("size").and_then(J::as_u64).map_or(1, |s| s as usize)
                }
                Some(t @ J::String(_)) => self.min_size(t, ns, depth + 1),
                Some(t @ (J::Object(_) | J::Array(_))) => self.min_size(t, ns, depth + 1),
                _ => 1,
            },
            _ => 1,
        }
    }

    /// How a record field's values are typed.
    fn field_meta(&self, field: &'a J, ns: &str) -> Result<FieldMeta, String> {
        let c = self.connect_shape(field, ns)?;
        let scale = c
            .parameters
            .iter()
            .find(|(k, _)| k == "scale")
            .and_then(|(_, v)| v.trim().parse().ok());
        Ok(FieldMeta {
            name: c.name,
            ty: c.ty,
            logical: c.logical,
            scale,
        })
    }

    /// The field as a Kafka Connect field, default included.
    fn connect_field(&self, field: &'a J, ns: &str) -> Result<ConnectField, String> {
        let mut c = self.connect_shape(field, ns)?;
        let (t, _) = self.field_type(field, ns)?;
        let default = match field.get("default") {
            Some(d) if !d.is_null() => Some(d),
            _ => t.node.get("connect.default").filter(|d| !d.is_null()),
        };
        if let Some(d) = default {
            let meta = self.field_meta(field, ns)?;
            let value = default_value(d, t.kind())
                .map_err(|e| format!("column {}: its default: {e}", c.name))?;
            let datum =
                typed(&value, &meta).map_err(|e| format!("column {}: its default: {e}", c.name))?;
            c.default = Some(datum);
        }
        Ok(c)
    }

    fn field_type(&self, field: &'a J, ns: &str) -> Result<(Resolved<'a>, String), String> {
        let name = field
            .get("name")
            .and_then(J::as_str)
            .ok_or("a record field has no name")?
            .to_string();
        let t = field
            .get("type")
            .and_then(|t| self.resolve(t, ns))
            .ok_or_else(|| format!("field {name}: its type refers to an unknown name"))?;
        Ok((t, name))
    }

    /// Name, Connect type, logical name and parameters of a field (no default).
    fn connect_shape(&self, field: &'a J, ns: &str) -> Result<ConnectField, String> {
        let (t, name) = self.field_type(field, ns)?;
        let prop = |k: &str| t.node.get(k).and_then(J::as_str);
        let ty = match t.kind() {
            "int" => prop("connect.type")
                .filter(|t| matches!(*t, "int8" | "int16"))
                .unwrap_or("int32"),
            "long" => "int64",
            "float" => "float32",
            "double" => "float64",
            "boolean" => "boolean",
            "string" | "enum" => "string",
            "bytes" | "fixed" => "bytes",
            "record" | "error" => "struct",
            "array" => "array",
            "map" => "map",
            other => other,
        }
        .to_string();
        let mut parameters: Vec<(String, String)> = match t.node.get("connect.parameters") {
            Some(J::Object(m)) => m
                .iter()
                .filter_map(|(k, v)| {
                    let v = match v {
                        J::String(s) => s.clone(),
                        J::Number(n) => n.to_string(),
                        J::Bool(b) => b.to_string(),
                        _ => return None,
                    };
                    Some((k.clone(), v))
                })
                .collect(),
            _ => Vec::new(),
        };
        let logical_type = prop("logicalType").unwrap_or("");
        if logical_type == "decimal" {
            for (param, attr) in [
                ("scale", "scale"),
                ("connect.decimal.precision", "precision"),
            ] {
                if !parameters.iter().any(|(k, _)| k == param) {
                    if let Some(n) = t.node.get(attr).and_then(J::as_u64) {
                        parameters.push((param.to_string(), n.to_string()));
                    }
                }
            }
            if !parameters.iter().any(|(k, _)| k == "scale") {
                // Avro's default scale for a decimal.
                parameters.push(("scale".into(), "0".into()));
            }
        }
        let logical = match prop("connect.name") {
            Some(n) => n.to_string(),
            None if matches!(t.kind(), "record" | "error") => t.full.clone(),
            None => match logical_type {
                "decimal" => "org.apache.kafka.connect.data.Decimal",
                "date" => "org.apache.kafka.connect.data.Date",
                "time-millis" => "org.apache.kafka.connect.data.Time",
                "timestamp-millis" => "org.apache.kafka.connect.data.Timestamp",
                "time-micros" => "io.debezium.time.MicroTime",
                "timestamp-micros" | "local-timestamp-micros" => "io.debezium.time.MicroTimestamp",
                "local-timestamp-millis" => "io.debezium.time.Timestamp",
                "timestamp-nanos" | "local-timestamp-nanos" => "io.debezium.time.NanoTimestamp",
                _ => "",
            }
            .to_string(),
        };
        Ok(ConnectField {
            name,
            ty,
            logical,
            parameters,
            default: None,
        })
    }
}

/// A default from the schema (Avro's JSON encoding of it) as the value it stands for.
fn default_value(d: &J, avro_kind: &str) -> Result<Value, String> {
    let found = || format!("{d} does not fit the type {avro_kind}");
    Ok(match avro_kind {
        "int" | "long" => Value::Long(d.as_i64().ok_or_else(found)?),
        "float" | "double" => Value::Double(d.as_f64().ok_or_else(found)?),
        "boolean" => Value::Boolean(d.as_bool().ok_or_else(found)?),
        "string" | "enum" => Value::String(d.as_str().ok_or_else(found)?.to_string()),
        "bytes" | "fixed" => Value::Bytes(default_bytes(d.as_str().ok_or_else(found)?)?),
        _ => Value::String(d.to_string()),
    })
}

/// Avro writes a bytes default as a string of code points 0–255; Confluent's
/// AvroData has been seen to write base64 instead. Padded base64 is taken as base64.
fn default_bytes(s: &str) -> Result<Vec<u8>, String> {
    let base64_like = !s.is_empty()
        && s.len().is_multiple_of(4)
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if base64_like {
        if let Ok(b) = codec::base64(s, false) {
            return Ok(b);
        }
    }
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).map_err(|_| format!("{c:?} is not a byte")))
        .collect()
}
