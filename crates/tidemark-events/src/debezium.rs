//! Debezium MySQL connector messages, JSON converter, with or without schemas.
//!
//! The value is the change envelope `{before, after, source, op, ts_ms, transaction}`,
//! wrapped as `{"schema": …, "payload": …}` when `value.converter.schemas.enable=true`.
//! The same topics (or files) can also carry tombstones, and the connector writes
//! heartbeats, schema changes and transaction boundaries to topics of their own; all
//! of those are recognised and returned as what they are, not as errors.

use std::collections::HashMap;

use crate::codec;
use crate::connect::{self, ConnectField};
use crate::envelope::{self, Source};
use crate::error::DecodeError;
use crate::event::{
    Datum, DebeziumOptions, Decoded, Definition, Encoding, Row, SchemaChange, TransactionBoundary,
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
    // The key's schema (when it has one) names the primary key of a table defined
    // from the messages; a key that is not JSON only costs that.
    let key_doc = key.and_then(|k| json::parse(k).ok());
    match decode_json(key_doc.as_ref(), &doc, position, options)? {
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
        return change(key, schema, payload, position, options);
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
            collections: match payload.field("data_collections") {
                Some(Json::Array(items)) => items
                    .iter()
                    .filter_map(|c| {
                        let name = c.field("data_collection")?.as_str()?.to_string();
                        let n = u64::try_from(c.field("event_count")?.as_i64()?).ok()?;
                        Some((name, n))
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

/// The most precise non-zero instant of a block, in µs.
fn instant_us(block: Option<&Json>) -> Option<i64> {
    let b = block?;
    envelope::instant_us(|k| b.field(k).and_then(Json::as_i64))
}

/// Debezium's `source` block of a JSON envelope.
fn source_block(source: Option<&Json>) -> Source<'_> {
    Source::read(
        |k| source.and_then(|s| s.field(k)).and_then(Json::as_str),
        |k| source.and_then(|s| s.field(k)).and_then(Json::as_i64),
    )
}

fn schema_change(p: &Json, position: &str) -> SchemaChange {
    let src = source_block(p.field("source"));
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
    key: Option<&Json>,
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
    let src = source_block(source);
    let snapshot_flag = match source.and_then(|s| s.field("snapshot")) {
        Some(Json::Bool(b)) => *b,
        Some(Json::String(s)) => s != "false",
        _ => false,
    };
    let transaction = p.field("transaction");
    let parts = envelope::Change {
        db,
        table,
        op_code,
        src,
        snapshot_flag,
        txn_id: transaction
            .and_then(|t| t.field("id"))
            .and_then(Json::scalar_text),
        total_order: transaction
            .and_then(|t| t.field("total_order"))
            .and_then(Json::as_i64),
        source_ts_us,
    };
    let images = || {
        let image = |which: &str| {
            row(
                p.get(which),
                field_types(schema, which).as_ref(),
                which,
                &err,
                position,
                &qualified,
            )
        };
        Ok((image("before")?, image("after")?))
    };
    let definition = || match schema {
        Some(s) => Ok(Some(std::sync::Arc::new(definition(s, key).map_err(&err)?))),
        None => Ok(None),
    };
    parts.finish(
        position,
        &err,
        images,
        Encoding::debezium(options, schema.is_some()),
        definition,
    )
}

/// The table's definition from the envelope's schema (the `after` struct's fields,
/// else the `before` struct's) and the key's schema (its fields are the primary
/// key; none without one).
fn definition(schema: &Json, key: Option<&Json>) -> Result<Definition, String> {
    let image = |which: &str| {
        let Some(Json::Array(fields)) = schema.field("fields") else {
            return None;
        };
        match fields
            .iter()
            .find(|f| f.field("field").and_then(Json::as_str) == Some(which))?
            .field("fields")
        {
            Some(Json::Array(cols)) => Some(cols),
            _ => None,
        }
    };
    let cols = image("after").or_else(|| image("before")).ok_or(
        "the envelope's schema has no before or after struct, so it does not define the table",
    )?;
    let mut fields = Vec::with_capacity(cols.len());
    for c in cols {
        let name = c
            .field("field")
            .and_then(Json::as_str)
            .ok_or("a field of the row schema has no name")?;
        let s = |k: &str| c.field(k).and_then(Json::as_str).unwrap_or("").to_string();
        let parameters: Vec<(String, String)> = c
            .field("parameters")
            .and_then(Json::members)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.scalar_text()?)))
                    .collect()
            })
            .unwrap_or_default();
        let ft = FieldType {
            ty: s("type"),
            name: s("name"),
            scale: parameters
                .iter()
                .find(|(k, _)| k == "scale")
                .and_then(|(_, v)| v.parse().ok()),
        };
        let default = match c.get("default") {
            None | Some(Json::Null) => None,
            Some(d) => Some(typed(d, &ft).map_err(|e| format!("column {name}: its default: {e}"))?),
        };
        fields.push(ConnectField {
            name: name.to_string(),
            ty: ft.ty,
            logical: ft.name,
            parameters,
            default,
        });
    }
    let key_fields = key
        .and_then(|k| unwrap_envelope(k).0)
        .and_then(|s| match s.field("fields") {
            Some(Json::Array(f)) => Some(f),
            _ => None,
        })
        .map(|f| {
            f.iter()
                .filter_map(|f| f.field("field").and_then(Json::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    connect::definition(&fields, key_fields)
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
        "int8" | "int16" | "int32" | "int64" => codec::integer(int()?, name)?,
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
