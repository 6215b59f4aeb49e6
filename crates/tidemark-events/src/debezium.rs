//! Debezium MySQL connector messages, JSON converter, with or without schemas.
//!
//! The value is the change envelope `{before, after, source, op, ts_ms, transaction}`,
//! wrapped as `{"schema": …, "payload": …}` when `value.converter.schemas.enable=true`.
//! The same topics (or files) can also carry tombstones, and the connector writes
//! heartbeats, schema changes and transaction boundaries to topics of their own; all
//! of those are recognised and returned as what they are, not as errors.

use std::collections::HashMap;

use tidemark_core::change::Op;

use crate::codec;
use crate::error::DecodeError;
use crate::event::{
    BinlogOrigin, ChangeEvent, Datum, DebeziumOptions, Decoded, Encoding, Row, SchemaChange,
    TransactionBoundary, Truncate,
};
use crate::json::{self, Json};

/// Decode one Debezium message with the connector's default settings.
///
/// `key` and `value` are the Kafka message's key and value bytes (`None` for a null);
/// `position` says where it was read (`topic/partition/offset`, `file:line`) and is
/// used in errors and as the last-resort source position.
pub fn decode_debezium(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    position: &str,
) -> Result<Decoded, DecodeError> {
    decode_debezium_with(key, value, position, &DebeziumOptions::default())
}

/// [`decode_debezium`] for a connector with non-default decimal, binary or time
/// settings (they matter only for messages without schemas; see [`DebeziumOptions`]).
pub fn decode_debezium_with(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    position: &str,
    options: &DebeziumOptions,
) -> Result<Decoded, DecodeError> {
    // The key is read only for tombstones: the row images carry the key columns, so
    // a change never needs it, and a key that is not JSON only costs the tombstone
    // its key.
    let key_tombstone = || tombstone(key.and_then(|k| json::parse(k).ok()).as_ref());
    let value = match value {
        None => return Ok(key_tombstone()),
        // Tools that dump topics write a null value as an empty line or field.
        Some(v) if v.iter().all(u8::is_ascii_whitespace) => return Ok(key_tombstone()),
        Some(v) => v,
    };
    let doc = json::parse(value).map_err(|message| DecodeError::Json {
        position: position.to_string(),
        message,
    })?;
    match decode_json(None, &doc, position, options)? {
        Decoded::Tombstone { .. } => Ok(key_tombstone()),
        other => Ok(other),
    }
}

fn tombstone(key: Option<&Json>) -> Decoded {
    let key = key.and_then(|k| {
        let (_, payload) = unwrap_envelope(k);
        let members = payload.members()?;
        Some(Row {
            columns: members
                .iter()
                .map(|(n, v)| (n.clone(), untyped(v)))
                .collect(),
        })
    });
    Decoded::Tombstone { key }
}

/// `{"schema": …, "payload": …}` → (schema, payload); anything else is a bare payload.
fn unwrap_envelope(doc: &Json) -> (Option<&Json>, &Json) {
    if let Json::Object(m) = doc {
        if m.iter().any(|(k, _)| k == "payload")
            && m.iter().all(|(k, _)| k == "payload" || k == "schema")
        {
            return (
                doc.field("schema"),
                doc.get("payload").unwrap_or(&Json::Null),
            );
        }
    }
    (None, doc)
}

pub(crate) fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

pub(crate) fn decode_json(
    key: Option<&Json>,
    doc: &Json,
    position: &str,
    options: &DebeziumOptions,
) -> Result<Decoded, DecodeError> {
    let (schema, payload) = unwrap_envelope(doc);
    let Some(members) = payload.members() else {
        if payload.is_null() {
            return Ok(tombstone(key));
        }
        return Err(DecodeError::envelope(
            position,
            None,
            format!(
                "expected a Debezium envelope (a JSON object), found {}",
                kind(payload)
            ),
        ));
    };
    let schema_name = schema
        .and_then(|s| s.field("name"))
        .and_then(Json::as_str)
        .unwrap_or("");
    if payload.get("op").is_some() {
        return change(schema, payload, position, options);
    }
    if schema_name.ends_with("SchemaChangeValue")
        || payload.get("ddl").is_some()
        || payload.get("tableChanges").is_some()
    {
        return Ok(Decoded::SchemaChange(schema_change(payload, position)));
    }
    if let (Some(status @ ("BEGIN" | "END")), Some(id)) = (
        payload.field("status").and_then(Json::as_str),
        payload.field("id").and_then(Json::scalar_text),
    ) {
        return Ok(Decoded::Transaction(TransactionBoundary {
            status: status.to_string(),
            id,
            event_count: payload
                .field("event_count")
                .and_then(Json::as_i64)
                .and_then(|n| u64::try_from(n).ok()),
        }));
    }
    let heartbeat_shape = !members.is_empty()
        && members
            .iter()
            .all(|(k, _)| matches!(k.as_str(), "ts_ms" | "ts_us" | "ts_ns"));
    if schema_name.ends_with(".Heartbeat") || heartbeat_shape {
        return Ok(Decoded::Heartbeat {
            ts_us: instant_us(Some(payload)),
        });
    }
    let names: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).take(8).collect();
    Err(DecodeError::envelope(
        position,
        None,
        format!(
            "not a Debezium change event: no \"op\" field (members: {}). tidemark needs Debezium's full envelope (before, after, source, op): remove the ExtractNewRecordState (\"unwrap\") transform from the connector; if AWS DMS wrote this topic, read it with the dms format",
            names.join(", ")
        ),
    ))
}

/// The most precise non-zero instant among `ts_ns`, `ts_us`, `ts_ms`, in µs.
fn instant_us(block: Option<&Json>) -> Option<i64> {
    let b = block?;
    let nonzero = |k: &str| b.field(k).and_then(Json::as_i64).filter(|v| *v != 0);
    nonzero("ts_us")
        .or_else(|| nonzero("ts_ns").map(|ns| ns.div_euclid(1000)))
        .or_else(|| nonzero("ts_ms").and_then(|ms| ms.checked_mul(1000)))
}

struct Source<'a> {
    file: Option<&'a str>,
    pos: i64,
    row: i64,
    gtid: Option<&'a str>,
    server_id: i64,
}

impl Source<'_> {
    fn read(source: Option<&Json>) -> Source<'_> {
        let s = |k: &str| {
            source
                .and_then(|s| s.field(k))
                .and_then(Json::as_str)
                .filter(|v| !v.is_empty())
        };
        let n = |k: &str| {
            source
                .and_then(|s| s.field(k))
                .and_then(Json::as_i64)
                .unwrap_or(0)
        };
        Source {
            file: s("file"),
            pos: n("pos"),
            row: n("row"),
            gtid: s("gtid"),
            server_id: n("server_id"),
        }
    }

    /// `_source_pos`: binlog `file:pos:row`, else the GTID, else the message position.
    fn source_pos(&self, position: &str) -> String {
        match (self.file, self.gtid) {
            (Some(f), _) => format!("{f}:{}:{}", self.pos, self.row),
            (None, Some(g)) => g.to_string(),
            (None, None) => position.to_string(),
        }
    }
}

fn schema_change(p: &Json, position: &str) -> SchemaChange {
    let src = Source::read(p.field("source"));
    let tables = match p.field("tableChanges") {
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(|t| {
                let id = t.field("id")?.as_str()?.to_string();
                let ty = t
                    .field("type")
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .to_string();
                Some((id, ty))
            })
            .collect(),
        _ => Vec::new(),
    };
    SchemaChange {
        db: p
            .field("databaseName")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string(),
        ddl: p.field("ddl").and_then(Json::as_str).map(str::to_string),
        tables,
        source_ts_us: instant_us(p.field("source"))
            .or_else(|| instant_us(Some(p)))
            .unwrap_or(0),
        source_pos: src.source_pos(position),
        message_pos: position.to_string(),
    }
}

fn change(
    schema: Option<&Json>,
    p: &Json,
    position: &str,
    options: &DebeziumOptions,
) -> Result<Decoded, DecodeError> {
    let source = p.field("source");
    let name = |k: &str| source.and_then(|s| s.field(k)).and_then(Json::as_str);
    let (Some(db), Some(table)) = (name("db"), name("table")) else {
        return Err(DecodeError::envelope(
            position,
            None,
            "the change event has no source.db and source.table, so tidemark cannot tell which table it is for; tidemark reads the Debezium MySQL connector's envelope",
        ));
    };
    let qualified = format!("{db}.{table}");
    let err = |m: String| DecodeError::envelope(position, Some(qualified.clone()), m);
    let op_code = match p.get("op") {
        Some(Json::String(s)) => s.as_str(),
        other => {
            return Err(err(format!(
                "\"op\" must be a string (c, u, d, r or t), found {}",
                other.map_or("nothing", kind)
            )))
        }
    };
    let source_ts_us = instant_us(source)
        .or_else(|| instant_us(Some(p)))
        .ok_or_else(|| {
            err("the event has no timestamp (source.ts_ms or ts_ms); every Debezium change event carries one, so the message is damaged".into())
        })?;
    let src = Source::read(source);
    let snapshot_flag = match source.and_then(|s| s.field("snapshot")) {
        Some(Json::Bool(b)) => *b,
        Some(Json::String(s)) => s != "false",
        _ => false,
    };
    let transaction = p.field("transaction");
    let txn_id = transaction
        .and_then(|t| t.field("id"))
        .and_then(Json::scalar_text)
        .or_else(|| src.gtid.map(str::to_string));
    let total_order = transaction
        .and_then(|t| t.field("total_order"))
        .and_then(Json::as_i64);
    let source_pos = src.source_pos(position);
    let dedup_key = match (op_code, src.file, src.gtid, total_order) {
        ("r", Some(f), _, _) => format!("snapshot:{f}:{}", src.pos),
        ("r", None, _, _) => format!("snapshot:msg:{position}"),
        (_, _, Some(g), Some(n)) => format!("gtid:{g}:{n}"),
        (_, Some(f), _, _) => format!("binlog:{f}:{}:{}", src.pos, src.row),
        _ => format!("msg:{position}"),
    };
    let op = match op_code {
        "c" => Op::Create,
        "u" => Op::Update,
        "d" => Op::Delete,
        "r" => Op::Read,
        "t" => {
            return Ok(Decoded::Truncate(Truncate {
                db: db.to_string(),
                table: table.to_string(),
                source_ts_us,
                source_pos,
                message_pos: position.to_string(),
                dedup_key,
            }))
        }
        other => {
            return Err(err(format!(
                "unknown op {other:?}; the Debezium MySQL connector sends c (insert), u (update), d (delete), r (snapshot read) and t (truncate)"
            )))
        }
    };
    let typed = schema.is_some();
    let before = row(
        p.get("before"),
        field_types(schema, "before").as_ref(),
        "before",
        &err,
        position,
        &qualified,
    )?;
    let after = row(
        p.get("after"),
        field_types(schema, "after").as_ref(),
        "after",
        &err,
        position,
        &qualified,
    )?;
    match op {
        Op::Delete if before.is_none() => {
            return Err(err(
                "a delete without a before image; the connector must see full row images (binlog_row_image=FULL)".into(),
            ))
        }
        Op::Create | Op::Update | Op::Read if after.is_none() => {
            return Err(err(format!(
                "op {op_code:?} without an after image; the message is damaged"
            )))
        }
        _ => {}
    }
    let snapshot = snapshot_flag || op == Op::Read;
    let origin = match src.file {
        Some(file) if !snapshot => Some(BinlogOrigin {
            server_id: u64::try_from(src.server_id).ok().filter(|s| *s != 0),
            gtid: src.gtid.map(str::to_string),
            file: file.to_string(),
            pos: u64::try_from(src.pos).unwrap_or(0),
            row: u64::try_from(src.row).unwrap_or(0),
            txn_order: total_order.and_then(|n| u64::try_from(n).ok()),
        }),
        _ => None,
    };
    Ok(Decoded::Change(ChangeEvent {
        db: db.to_string(),
        table: table.to_string(),
        op,
        before,
        after,
        source_ts_us,
        source_pos,
        message_pos: position.to_string(),
        txn_id,
        snapshot,
        dedup_key,
        origin,
        encoding: Encoding::debezium(options, typed),
    }))
}

/// A field's Kafka Connect schema: physical type, logical name, scale parameter.
#[derive(Debug)]
struct FieldType {
    ty: String,
    name: String,
    scale: Option<u32>,
}

/// Field schemas of the `before` / `after` struct, by field name.
fn field_types(schema: Option<&Json>, which: &str) -> Option<HashMap<String, FieldType>> {
    let Some(Json::Array(fields)) = schema?.field("fields") else {
        return None;
    };
    let image = fields
        .iter()
        .find(|f| f.field("field").and_then(Json::as_str) == Some(which))?;
    let Some(Json::Array(cols)) = image.field("fields") else {
        return None;
    };
    let mut out = HashMap::new();
    for c in cols {
        let Some(field) = c.field("field").and_then(Json::as_str) else {
            continue;
        };
        let s = |k: &str| c.field(k).and_then(Json::as_str).unwrap_or("").to_string();
        let scale = c
            .field("parameters")
            .and_then(|p| p.field("scale"))
            .and_then(Json::as_i64_lenient)
            .and_then(|v| u32::try_from(v).ok());
        out.insert(
            field.to_string(),
            FieldType {
                ty: s("type"),
                name: s("name"),
                scale,
            },
        );
    }
    Some(out)
}

fn row(
    v: Option<&Json>,
    types: Option<&HashMap<String, FieldType>>,
    which: &str,
    err: &dyn Fn(String) -> DecodeError,
    position: &str,
    table: &str,
) -> Result<Option<Row>, DecodeError> {
    let members = match v {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Object(m)) => m,
        Some(other) => {
            return Err(err(format!(
                "\"{which}\" must be an object or null, found {}",
                kind(other)
            )))
        }
    };
    let mut columns = Vec::with_capacity(members.len());
    for (name, value) in members {
        let datum = match types.and_then(|t| t.get(name)) {
            Some(ft) => typed(value, ft).map_err(|message| DecodeError::Value {
                position: position.to_string(),
                table: table.to_string(),
                column: name.clone(),
                message: if ft.name.is_empty() {
                    format!("{message} (Debezium schema type {})", ft.ty)
                } else {
                    format!("{message} (Debezium schema type {} {})", ft.ty, ft.name)
                },
            })?,
            None => untyped(value),
        };
        columns.push((name.clone(), datum));
    }
    Ok(Some(Row { columns }))
}

/// A JSON value with no schema: kept as close to the wire as possible.
pub(crate) fn untyped(v: &Json) -> Datum {
    match v {
        Json::Null => Datum::Null,
        Json::Bool(b) => Datum::Bool(*b),
        Json::Number(n) => match n.parse::<i64>() {
            Ok(i) => Datum::Int(i),
            Err(_) => Datum::Number(n.clone()),
        },
        Json::String(s) => Datum::Text(s.clone()),
        Json::Array(_) | Json::Object(_) => Datum::Json(v.to_text()),
    }
}

/// A value typed by its Kafka Connect schema and Debezium logical name.
fn typed(v: &Json, ft: &FieldType) -> Result<Datum, String> {
    if v.is_null() {
        return Ok(Datum::Null);
    }
    let int = || {
        v.as_i64()
            .ok_or_else(|| format!("expected an integer, found {}", kind(v)))
    };
    let text = || {
        v.as_str()
            .ok_or_else(|| format!("expected a string, found {}", kind(v)))
    };
    let name = ft.name.as_str();
    Ok(match ft.ty.as_str() {
        "int8" | "int16" | "int32" | "int64" => {
            let n = int()?;
            let scaled = |f: i64| {
                n.checked_mul(f)
                    .ok_or_else(|| format!("{n} is out of range"))
            };
            match name {
                "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => {
                    Datum::Date(i32::try_from(n).map_err(|_| format!("{n} days is out of range"))?)
                }
                "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => {
                    Datum::Timestamp(scaled(1000)?)
                }
                "io.debezium.time.MicroTimestamp" => Datum::Timestamp(n),
                "io.debezium.time.NanoTimestamp" => Datum::Timestamp(n.div_euclid(1000)),
                "io.debezium.time.Time" | "org.apache.kafka.connect.data.Time" => {
                    Datum::Time(scaled(1000)?)
                }
                "io.debezium.time.MicroTime" => Datum::Time(n),
                "io.debezium.time.NanoTime" => Datum::Time(n.div_euclid(1000)),
                _ => Datum::Int(n),
            }
        }
        "float32" | "float64" => match v {
            Json::Number(n) => Datum::Number(n.clone()),
            // NaN and infinities have no JSON number; converters write them as text.
            Json::String(s) => Datum::Text(s.clone()),
            _ => return Err(format!("expected a number, found {}", kind(v))),
        },
        "boolean" => match v {
            Json::Bool(b) => Datum::Bool(*b),
            _ => return Err(format!("expected a boolean, found {}", kind(v))),
        },
        "string" => {
            let s = text()?;
            match name {
                "io.debezium.time.ZonedTimestamp" => match codec::parse_instant(s)? {
                    Some(us) => Datum::Timestamp(us),
                    None => Datum::Null,
                },
                "io.debezium.data.Json" => Datum::Json(s.to_string()),
                _ => Datum::Text(s.to_string()),
            }
        }
        "bytes" => {
            let bytes = codec::base64(text()?, false)?;
            match name {
                "org.apache.kafka.connect.data.Decimal" => {
                    let scale = ft
                        .scale
                        .ok_or("the Decimal field's schema has no scale parameter".to_string())?;
                    Datum::Decimal(codec::unscaled_to_decimal(&bytes, scale)?)
                }
                "io.debezium.data.Bits" => codec::bits_le(&bytes)?,
                _ => Datum::Bytes(bytes),
            }
        }
        "struct" => {
            if name == "io.debezium.data.VariableScaleDecimal" {
                codec::variable_scale_decimal(v)?
            } else if name.starts_with("io.debezium.data.geometry.") {
                codec::geometry_wkb(v)?
            } else {
                Datum::Json(v.to_text())
            }
        }
        _ => untyped(v),
    })
}
