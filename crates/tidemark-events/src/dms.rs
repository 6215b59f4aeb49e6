//! AWS DMS messages from its Kafka (and Kinesis) target, JSON message format.
//!
//! ```json
//! {"data": {...row...},
//!  "metadata": {"timestamp": "...", "record-type": "data", "operation": "update",
//!               "partition-key-type": "schema-table", "schema-name": "shop",
//!               "table-name": "invoice", "transaction-id": 8324031213823, ...},
//!  "before-image": {...}}
//! ```
//!
//! The before image sits under whatever `BeforeImageSettings.FieldName` the task
//! names, so any extra top-level object is taken as the before image. Control
//! records (`record-type: control`) describe table definitions and DDL and are
//! returned as [`Decoded::Control`]. DMS omits NULL columns unless the endpoint sets
//! `IncludeNullAndEmpty`, which is why landing treats a missing column as NULL.

use tidemark_core::change::Op;

use crate::codec;
use crate::debezium::{kind, untyped};
use crate::error::DecodeError;
use crate::event::{ChangeEvent, Control, Decoded, Encoding, Row};
use crate::json::{self, Json};

/// Decode one AWS DMS message. `position` says where it was read (topic/partition/
/// offset, file:line).
pub fn decode_dms(value: &[u8], position: &str) -> Result<Decoded, DecodeError> {
    if value.iter().all(u8::is_ascii_whitespace) {
        return Ok(Decoded::Tombstone { key: None });
    }
    let doc = json::parse(value).map_err(|message| DecodeError::Json {
        position: position.to_string(),
        message,
    })?;
    decode_json(&doc, position)
}

/// Names DMS's documentation uses for the before image; any other extra object is
/// accepted too (the name is configurable).
const BEFORE_IMAGE_NAMES: [&str; 3] = ["before-image", "BeforeImage", "BI"];

pub(crate) fn decode_json(doc: &Json, position: &str) -> Result<Decoded, DecodeError> {
    let Some(members) = doc.members() else {
        if doc.is_null() {
            return Ok(Decoded::Tombstone { key: None });
        }
        return Err(DecodeError::envelope(
            position,
            None,
            format!(
                "expected an AWS DMS record (a JSON object with data and metadata), found {}",
                kind(doc)
            ),
        ));
    };
    let Some(meta) = doc.field("metadata").filter(|m| m.members().is_some()) else {
        return Err(DecodeError::envelope(
            position,
            None,
            "not an AWS DMS record: no \"metadata\" object. If Debezium wrote this topic, read it with the debezium format",
        ));
    };
    let text = |k: &str| meta.field(k).and_then(Json::scalar_text);
    let db = text("schema-name").unwrap_or_default();
    let table = text("table-name").unwrap_or_default();
    let qualified = format!("{db}.{table}");
    let known = if table.is_empty() {
        None
    } else {
        Some(qualified.clone())
    };
    let err = |m: String| DecodeError::envelope(position, known.clone(), m);
    let instant = |k: &str| -> Result<Option<i64>, DecodeError> {
        match meta.field(k) {
            None => Ok(None),
            Some(Json::String(s)) => {
                codec::parse_instant(s).map_err(|e| err(format!("metadata.{k}: {e}")))
            }
            Some(other) => Err(err(format!(
                "metadata.{k} must be a string, found {}",
                kind(other)
            ))),
        }
    };
    let record_type = text("record-type").unwrap_or_default();
    let operation = text("operation").unwrap_or_default();
    match record_type.as_str() {
        "control" => {
            return Ok(Decoded::Control(Control {
                db,
                table,
                operation,
                ts_us: instant("timestamp")?,
                detail: doc.field("control").map(Json::to_serde),
                message_pos: position.to_string(),
            }))
        }
        "data" => {}
        other => {
            return Err(err(format!(
                "metadata.record-type is {other:?}; AWS DMS writes \"data\" or \"control\""
            )))
        }
    }
    if db.is_empty() || table.is_empty() {
        return Err(err(
            "a data record without metadata.schema-name and table-name, so tidemark cannot tell which table it is for".into(),
        ));
    }
    let op = match operation.as_str() {
        "load" => Op::Read,
        "insert" => Op::Create,
        "update" => Op::Update,
        "delete" => Op::Delete,
        other => {
            return Err(err(format!(
                "unknown data operation {other:?}; AWS DMS writes load, insert, update and delete"
            )))
        }
    };
    let image = |v: &Json, what: &str| -> Result<Row, DecodeError> {
        let Some(m) = v.members() else {
            return Err(err(format!("{what} must be an object, found {}", kind(v))));
        };
        Ok(Row {
            columns: m.iter().map(|(n, v)| (n.clone(), untyped(v))).collect(),
        })
    };
    let data = match doc.field("data") {
        Some(d) => image(d, "data")?,
        None => return Err(err("a data record without \"data\"".into())),
    };
    let before_field = BEFORE_IMAGE_NAMES
        .iter()
        .find_map(|n| doc.field(n))
        .or_else(|| {
            let extra: Vec<&Json> = members
                .iter()
                .filter(|(k, v)| {
                    !matches!(k.as_str(), "data" | "metadata" | "control") && v.members().is_some()
                })
                .map(|(_, v)| v)
                .collect();
            (extra.len() == 1).then(|| extra[0])
        });
    let before_image = before_field
        .map(|b| image(b, "the before image"))
        .transpose()?
        // DMS writes an empty before image when it has none for this row.
        .filter(|r| !r.columns.is_empty());
    let (before, after) = match op {
        Op::Delete => (Some(data), None),
        Op::Update => (before_image, Some(data)),
        Op::Read | Op::Create => (None, Some(data)),
    };
    // The commit instant where DMS gives it (IncludeTransactionDetails), else the
    // record's timestamp: extraction time for a full load, DESIGN.md's fallback.
    let source_ts_us = match instant("commit-timestamp")? {
        Some(t) => t,
        None => instant("timestamp")?.ok_or_else(|| {
            err("metadata has no timestamp; every AWS DMS record carries one, so the message is damaged".into())
        })?,
    };
    let txn_id = text("transaction-id");
    let record_id = text("transaction-record-id");
    let stream_position = text("stream-position").filter(|s| !s.is_empty());
    let dedup_key = match (&txn_id, &record_id) {
        (Some(t), Some(r)) if op != Op::Read => format!("dms:{t}:{r}"),
        _ => format!("msg:{position}"),
    };
    Ok(Decoded::Change(ChangeEvent {
        db,
        table,
        op,
        before,
        after,
        source_ts_us,
        source_pos: stream_position.unwrap_or_else(|| position.to_string()),
        message_pos: position.to_string(),
        txn_id,
        // DMS has no transaction topic to count a transaction's events.
        transaction: None,
        snapshot: op == Op::Read,
        dedup_key,
        // DMS records carry no binlog coordinates: Kafka offsets dedupe them.
        origin: None,
        encoding: Encoding::DMS,
        definition: None,
    }))
}
