//! What a Debezium change envelope means, whichever converter wrote it: the JSON
//! decoder (`debezium.rs`) and the Avro one (`avro.rs`) read the fields their own
//! way and hand them here, so the op codes, the positions, the replay key and the
//! checks on row images are decided in one place.

use std::sync::Arc;

use tidemark_core::change::Op;

use crate::error::DecodeError;
use crate::event::{BinlogOrigin, ChangeEvent, Decoded, Definition, Encoding, Row, Truncate};

/// The most precise non-zero instant among `ts_ns`, `ts_us`, `ts_ms` of a block
/// (`get` reads an integer member), in µs.
pub(crate) fn instant_us(get: impl Fn(&str) -> Option<i64>) -> Option<i64> {
    let nonzero = |k: &str| get(k).filter(|v| *v != 0);
    nonzero("ts_us")
        .or_else(|| nonzero("ts_ns").map(|ns| ns.div_euclid(1000)))
        .or_else(|| nonzero("ts_ms").and_then(|ms| ms.checked_mul(1000)))
}

/// Debezium's `source` block: where the change sits in its server's binlog.
pub(crate) struct Source<'a> {
    pub file: Option<&'a str>,
    pub pos: i64,
    pub row: i64,
    pub gtid: Option<&'a str>,
    pub server_id: i64,
}

impl<'a> Source<'a> {
    /// From a block's string and integer members (`s`, `n`); absent ones are empty.
    pub fn read(
        s: impl Fn(&str) -> Option<&'a str>,
        n: impl Fn(&str) -> Option<i64>,
    ) -> Source<'a> {
        let s = |k: &str| s(k).filter(|v| !v.is_empty());
        let n = |k: &str| n(k).unwrap_or(0);
        Source {
            file: s("file"),
            pos: n("pos"),
            row: n("row"),
            gtid: s("gtid"),
            server_id: n("server_id"),
        }
    }

    /// `_source_pos`: binlog `file:pos:row`, else the GTID, else the message position.
    pub fn source_pos(&self, position: &str) -> String {
        match (self.file, self.gtid) {
            (Some(f), _) => format!("{f}:{}:{}", self.pos, self.row),
            (None, Some(g)) => g.to_string(),
            (None, None) => position.to_string(),
        }
    }
}

/// A change envelope's parts, as either decoder read them.
pub(crate) struct Change<'a> {
    pub db: &'a str,
    pub table: &'a str,
    pub op_code: &'a str,
    pub src: Source<'a>,
    /// `source.snapshot` said so (`true`, `last`, `incremental`, …).
    pub snapshot_flag: bool,
    /// `transaction.id`.
    pub txn_id: Option<String>,
    /// `transaction.total_order`.
    pub total_order: Option<i64>,
    pub source_ts_us: i64,
}

impl Change<'_> {
    /// The decoded message: a truncate, or a row change whose images `images`
    /// reads (only then) and whose table `definition` gives. `err` wraps a message
    /// with the position and table.
    pub fn finish(
        self,
        position: &str,
        err: &dyn Fn(String) -> DecodeError,
        images: impl FnOnce() -> Result<(Option<Row>, Option<Row>), DecodeError>,
        encoding: Encoding,
        definition: impl FnOnce() -> Result<Option<Arc<Definition>>, DecodeError>,
    ) -> Result<Decoded, DecodeError> {
        let Change {
            db,
            table,
            op_code,
            src,
            snapshot_flag,
            txn_id,
            total_order,
            source_ts_us,
        } = self;
        let transaction = txn_id.clone();
        let txn_id = txn_id.or_else(|| src.gtid.map(str::to_string));
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
        let (before, after) = images()?;
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
        let definition = definition()?;
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
            transaction,
            snapshot,
            dedup_key,
            origin,
            encoding,
            definition,
        }))
    }
}
