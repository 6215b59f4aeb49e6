//! Files of change events, one JSON message per line (backfills, the offline demo,
//! topics dumped to disk).
//!
//! A line is either a message value as the producer wrote it, or an object
//! `{"key": …, "value": …}` (optionally with `topic`, `partition`, `offset`,
//! `timestamp`, `headers`), the shape topic-dump tools write. In that wrapper `key` and
//! `value` may be the JSON itself or a string holding it, and a null `value` is a
//! tombstone. When the wrapper names topic, partition and offset, the message's
//! position is `topic/partition/offset`, the same as when it is read from Kafka, so a
//! dump replayed after live consumption de-duplicates against it; otherwise it is
//! `name:line`.
//!
//! Blank lines are skipped; a UTF-8 byte-order mark on the first line is ignored. A
//! bad line is an error for that line only: the iterator goes on with the next one,
//! so one malformed event goes to the dead letters and the rest keep flowing. A read
//! error ends the iteration after it is reported.

use std::io::BufRead;

use crate::debezium;
use crate::dms;
use crate::error::DecodeError;
use crate::event::{Decoded, Format};
use crate::json::{self, Json};

/// Decode a JSON-lines file of events. Items are `(line number, result)`, 1-based;
/// positions read `line N`.
pub fn read_jsonl<R: BufRead>(reader: R, format: Format) -> JsonLines<R> {
    JsonLines {
        reader,
        format,
        name: None,
        line: 0,
        done: false,
        buf: Vec::new(),
    }
}

/// [`read_jsonl`] with positions `name:N` (`name` is typically the file's path).
pub fn read_jsonl_named<R: BufRead>(reader: R, format: Format, name: &str) -> JsonLines<R> {
    JsonLines {
        name: Some(name.to_string()),
        ..read_jsonl(reader, format)
    }
}

/// Iterator returned by [`read_jsonl`].
#[derive(Debug)]
pub struct JsonLines<R> {
    reader: R,
    format: Format,
    name: Option<String>,
    line: u64,
    done: bool,
    buf: Vec<u8>,
}

impl<R: BufRead> Iterator for JsonLines<R> {
    type Item = (u64, Result<Decoded, DecodeError>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {
                    self.line += 1;
                    let mut bytes = self.buf.as_slice();
                    if self.line == 1 {
                        bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
                    }
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let position = match &self.name {
                        Some(n) => format!("{n}:{}", self.line),
                        None => format!("line {}", self.line),
                    };
                    return Some((self.line, decode_line(bytes, self.format, &position)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    self.done = true;
                    return Some((
                        self.line + 1,
                        Err(DecodeError::Io {
                            line: self.line + 1,
                            source,
                        }),
                    ));
                }
            }
        }
    }
}

const WRAPPER_MEMBERS: [&str; 7] = [
    "key",
    "value",
    "topic",
    "partition",
    "offset",
    "timestamp",
    "headers",
];

/// Decode one line of a JSON-lines file: a bare message value, or a `{"key", "value"}`
/// wrapper (see the module docs). `position` names the line in errors.
pub fn decode_line(bytes: &[u8], format: Format, position: &str) -> Result<Decoded, DecodeError> {
    let json_err = |position: &str, message: String| DecodeError::Json {
        position: position.to_string(),
        message,
    };
    let doc = json::parse(bytes).map_err(|m| json_err(position, m))?;
    let is_wrapper = doc.members().is_some_and(|m| {
        m.iter().any(|(k, _)| k == "value")
            && m.iter().all(|(k, _)| WRAPPER_MEMBERS.contains(&k.as_str()))
    });
    if !is_wrapper {
        return match format {
            Format::Debezium(o) => debezium::decode_json(None, &doc, position, &o),
            Format::Dms => dms::decode_json(&doc, position),
        };
    }
    let kafka_pos = match (
        doc.field("topic").and_then(Json::as_str),
        doc.field("partition").and_then(Json::scalar_text),
        doc.field("offset").and_then(Json::scalar_text),
    ) {
        (Some(t), Some(p), Some(o)) => Some(format!("{t}/{p}/{o}")),
        _ => None,
    };
    let position = kafka_pos.as_deref().unwrap_or(position);
    // A string holding JSON (as consumers print it) or the JSON itself.
    let unwrap = |v: Option<&Json>| -> Result<Json, String> {
        match v {
            None | Some(Json::Null) => Ok(Json::Null),
            Some(Json::String(s)) if s.trim().is_empty() => Ok(Json::Null),
            Some(Json::String(s)) => json::parse(s.as_bytes()),
            Some(other) => Ok(other.clone()),
        }
    };
    let value = unwrap(doc.get("value")).map_err(|m| json_err(position, format!("value: {m}")))?;
    match format {
        Format::Debezium(o) => {
            // An unreadable key never stops a change from landing (see decode_debezium).
            let key = unwrap(doc.get("key")).ok().filter(|k| !k.is_null());
            debezium::decode_json(key.as_ref(), &value, position, &o)
        }
        Format::Dms => dms::decode_json(&value, position),
    }
}
