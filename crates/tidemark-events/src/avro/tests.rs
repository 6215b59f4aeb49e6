//! The direct reader (`direct.rs`) against the generic one it replaced for change
//! envelopes (apache-avro's `Value`, then `change`/`row`/`typed`), kept as the
//! reference: on every message of the Avro integration tests, on random
//! Debezium-shaped schemas and row images, on the fuzz corpus, and on all of those
//! truncated and garbled, both give the same [`Decoded`] or the same error.
//!
//! The one allowed difference: when a datum does not decode with its writer schema,
//! the error says why in the reader's own words (apache-avro's error text against
//! the direct reader's), so that part of the message is masked before comparing.
//! Everything around it (which part, the schema id and name, the advice), and the
//! "bytes are left over" case, must match exactly, and the two must agree on which
//! datums decode at all.

use std::hint::black_box;
use std::time::Instant;

use super::{decode_avro, decode_avro_generic, AvroSchemas};
use crate::{DecodeError, Decoded};

#[path = "../../tests/it/avro_messages.rs"]
mod messages;

use messages::*;

const POSITION: &str = "orders/3/1234";

/// The schemas of every message in [`all_messages`].
fn all_schemas() -> AvroSchemas {
    let mut s = AvroSchemas::default();
    for (id, schema) in fixture_schemas().into_iter().chain(registry()) {
        s.insert(id, &schema).unwrap();
    }
    s.insert(HEARTBEAT_ID, HEARTBEAT).unwrap();
    s.insert(TRANSACTION_ID, TRANSACTION).unwrap();
    s.insert(STRING_ID, r#""string""#).unwrap();
    s
}

const UNDECODABLE: &str = "does not decode with its writer schema (schema id ";
const ADVICE: &str = ". The message is damaged, or its producer";
const LEFT_OVER: &str = "bytes are left over after the value";

/// The error's text with the reader's own account of why a datum does not decode
/// replaced by `<why>`.
fn masked(e: &DecodeError) -> String {
    let text = e.to_string();
    let (Some(at), Some(end)) = (text.find(UNDECODABLE), text.find(ADVICE)) else {
        return text;
    };
    if text[..end].ends_with(LEFT_OVER) {
        return text;
    }
    let Some(why) = text[at..end].find("): ").map(|i| at + i + 3) else {
        return text;
    };
    format!("{}<why>{}", &text[..why], &text[end..])
}

/// What both readers made of one message.
#[derive(Debug, PartialEq)]
enum Outcome {
    Change,
    Other,
    Failed,
    Undecodable,
}

/// Decode with both readers; they must agree. Says how.
fn same(key: Option<&[u8]>, value: Option<&[u8]>, s: &AvroSchemas) -> Outcome {
    let new = decode_avro(key, value, POSITION, s);
    let old = decode_avro_generic(key, value, POSITION, s);
    match (&new, &old) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "key {key:02x?} value {value:02x?}");
            match a {
                Decoded::Change(_) => Outcome::Change,
                _ => Outcome::Other,
            }
        }
        (Err(a), Err(b)) => {
            let (a, b) = (masked(a), masked(b));
            assert_eq!(a, b, "key {key:02x?} value {value:02x?}");
            if a.contains("<why>") {
                Outcome::Undecodable
            } else {
                Outcome::Failed
            }
        }
        _ => panic!(
            "the readers disagree on key {key:02x?} value {value:02x?}:\n direct: {new:?}\ngeneric: {old:?}"
        ),
    }
}

/// Both readers on `value`, its prefixes (every `step`-th length) and `rounds`
/// garbled copies of it; `as_key`: also each as the key, and as both.
fn same_garbled(
    value: &[u8],
    rounds: usize,
    step: usize,
    as_key: bool,
    s: &AvroSchemas,
) -> Vec<Outcome> {
    let mut inputs: Vec<Vec<u8>> = (0..value.len())
        .step_by(step)
        .map(|n| value[..n].to_vec())
        .collect();
    inputs.extend(garbles(value, rounds));
    inputs.push(value.to_vec());
    let mut out = Vec::new();
    for input in &inputs {
        out.push(same(None, Some(input), s));
        if as_key {
            out.push(same(Some(input), Some(input), s));
            out.push(same(Some(input), None, s));
        }
    }
    out
}

#[test]
fn change_schemas_get_a_plan_and_the_rest_do_not() {
    let s = all_schemas();
    let planned = |id: u32| s.schemas[&id].plan.is_some();
    // value_v1, value_v2 and the serializer's two envelope versions.
    assert!(planned(V1) && planned(V2) && planned(2) && planned(3));
    assert!(!planned(KEY) && !planned(1));
    assert!(!planned(HEARTBEAT_ID) && !planned(TRANSACTION_ID) && !planned(STRING_ID));
}

#[test]
fn every_integration_test_message_decodes_the_same() {
    let s = all_schemas();
    let outcomes: Vec<Outcome> = all_messages()
        .iter()
        .map(|(k, v)| same(k.as_deref(), v.as_deref(), &s))
        .collect();
    let count = |o: Outcome| outcomes.iter().filter(|x| **x == o).count();
    // The changes of it/avro.rs and the serializer's four, the rest as those tests
    // expect them (a delete without its before image and the JSON text fail).
    assert_eq!(count(Outcome::Change), 8, "{outcomes:?}");
    assert!(count(Outcome::Undecodable) >= 3, "{outcomes:?}");
    assert!(count(Outcome::Failed) >= 5, "{outcomes:?}");
}

#[test]
fn every_integration_test_message_truncated_and_garbled_decodes_the_same() {
    let s = all_schemas();
    let mut outcomes = Vec::new();
    for (k, v) in all_messages() {
        for part in [k, v].into_iter().flatten() {
            outcomes.extend(same_garbled(&part, 200, 1, true, &s));
        }
    }
    // Garbling must not only produce errors: many prefixes still decode (apache-avro
    // reads a union index cut off at the end as null), and some bytes garble into
    // other valid changes.
    let changes = outcomes.iter().filter(|o| **o == Outcome::Change).count();
    let undecodable = outcomes
        .iter()
        .filter(|o| **o == Outcome::Undecodable)
        .count();
    assert!(
        changes > 100 && undecodable > 1000,
        "{changes} {undecodable}"
    );
}

#[test]
fn the_fuzz_corpus_decodes_the_same() {
    let s = all_schemas();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/avro");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        let expect = match path.file_name().and_then(|n| n.to_str()) {
            // The serializer's first message without its last three null unions'
            // indexes: apache-avro reads each as null, so it is still the change.
            Some("union-index-cut-off.bin") => Some(Outcome::Change),
            // Cut inside the op string: op reads as null, "found nothing".
            Some("string-cut-off.bin") => Some(Outcome::Failed),
            _ => None,
        };
        let outcome = same(None, Some(&input), &s);
        if let Some(expect) = expect {
            assert_eq!(outcome, expect, "{}", path.display());
        }
        same_garbled(&input, 50, 1, true, &s);
        n += 1;
    }
    assert!(n >= 6, "{} holds {n} inputs", dir.display());
}

// ---------------------------------------------------------------------------------
// Random Debezium-shaped schemas and row images.

/// xorshift64*, seeded per case so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Avro's binary encoding, by hand, so the values can be anything the encoding
/// allows (not only what apache-avro's writer would accept).
fn long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// A column's type as Debezium's Avro converter (or a plain Avro producer) writes
/// it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Int16,
    Long,
    Text,
    EnumText,
    AvroEnum,
    Bool,
    Double,
    Float,
    Bytes,
    Bits,
    Fixed,
    /// bytes, `logicalType: decimal` and Connect's Decimal.
    Decimal,
    /// bytes, Connect's Decimal without the Avro logical type.
    ConnectDecimal,
    Date,
    AvroDate,
    MicroTimestamp,
    Timestamp,
    NanoTimestamp,
    AvroTimestampMillis,
    AvroTimestampMicros,
    AvroLocalTimestampNanos,
    MicroTime,
    AvroTimeMillis,
    ZonedTimestamp,
    Json,
    Uuid,
    Struct,
    Array,
    Map,
    VariableScaleDecimal,
    Geometry,
    Duration,
}

const KINDS: [Kind; 33] = [
    Kind::Int,
    Kind::Int16,
    Kind::Long,
    Kind::Text,
    Kind::EnumText,
    Kind::AvroEnum,
    Kind::Bool,
    Kind::Double,
    Kind::Float,
    Kind::Bytes,
    Kind::Bits,
    Kind::Fixed,
    Kind::Decimal,
    Kind::ConnectDecimal,
    Kind::Date,
    Kind::AvroDate,
    Kind::MicroTimestamp,
    Kind::Timestamp,
    Kind::NanoTimestamp,
    Kind::AvroTimestampMillis,
    Kind::AvroTimestampMicros,
    Kind::AvroLocalTimestampNanos,
    Kind::MicroTime,
    Kind::AvroTimeMillis,
    Kind::ZonedTimestamp,
    Kind::Json,
    Kind::Uuid,
    Kind::Struct,
    Kind::Array,
    Kind::Map,
    Kind::VariableScaleDecimal,
    Kind::Geometry,
    Kind::Duration,
];

/// The kinds Debezium's MySQL connector writes most (drawn more often).
const COMMON: [Kind; 11] = [
    Kind::Int,
    Kind::Long,
    Kind::Text,
    Kind::Bool,
    Kind::Double,
    Kind::Bytes,
    Kind::Decimal,
    Kind::Date,
    Kind::MicroTimestamp,
    Kind::Timestamp,
    Kind::EnumText,
];

#[derive(Debug, Clone)]
struct Col {
    kind: Kind,
    /// `None`: not nullable; `Some(true)`: `["null", T]`; `Some(false)`: `[T, "null"]`.
    null_first: Option<bool>,
    scale: u32,
    size: usize,
}

fn connect(name: &str, extra: &str) -> String {
    format!(r#""connect.version":1,"connect.name":"{name}"{extra}"#)
}

/// The column's Avro type (JSON); `i` makes its named types' names unique.
fn avro_type(c: &Col, i: usize) -> String {
    let s = c.scale;
    match c.kind {
        Kind::Int => r#""int""#.into(),
        Kind::Int16 => r#"{"type":"int","connect.type":"int16"}"#.into(),
        Kind::Long => r#""long""#.into(),
        Kind::Text => r#""string""#.into(),
        Kind::EnumText => format!(
            r#"{{"type":"string",{},"connect.parameters":{{"allowed":"a,b,c"}}}}"#,
            connect("io.debezium.data.Enum", "")
        ),
        Kind::AvroEnum => format!(r#"{{"type":"enum","name":"E{i}","symbols":["a","b","c"]}}"#),
        Kind::Bool => r#""boolean""#.into(),
        Kind::Double => r#""double""#.into(),
        Kind::Float => r#""float""#.into(),
        Kind::Bytes => r#""bytes""#.into(),
        Kind::Bits => format!(
            r#"{{"type":"bytes",{},"connect.parameters":{{"length":"{}"}}}}"#,
            connect("io.debezium.data.Bits", ""),
            c.size
        ),
        Kind::Fixed => format!(r#"{{"type":"fixed","name":"F{i}","size":{}}}"#, c.size),
        Kind::Decimal => format!(
            r#"{{"type":"bytes","scale":{s},"precision":{p},{},"connect.parameters":{{"scale":"{s}","connect.decimal.precision":"{p}"}},"logicalType":"decimal"}}"#,
            connect("org.apache.kafka.connect.data.Decimal", ""),
            p = s + 10
        ),
        Kind::ConnectDecimal => format!(
            r#"{{"type":"bytes",{},"connect.parameters":{{"scale":"{s}"}}}}"#,
            connect("org.apache.kafka.connect.data.Decimal", "")
        ),
        Kind::Date => format!(
            r#"{{"type":"int",{}}}"#,
            connect("io.debezium.time.Date", "")
        ),
        Kind::AvroDate => r#"{"type":"int","logicalType":"date"}"#.into(),
        Kind::MicroTimestamp => format!(
            r#"{{"type":"long",{}}}"#,
            connect("io.debezium.time.MicroTimestamp", "")
        ),
        Kind::Timestamp => format!(
            r#"{{"type":"long",{}}}"#,
            connect("io.debezium.time.Timestamp", "")
        ),
        Kind::NanoTimestamp => format!(
            r#"{{"type":"long",{}}}"#,
            connect("io.debezium.time.NanoTimestamp", "")
        ),
        Kind::AvroTimestampMillis => r#"{"type":"long","logicalType":"timestamp-millis"}"#.into(),
        Kind::AvroTimestampMicros => r#"{"type":"long","logicalType":"timestamp-micros"}"#.into(),
        Kind::AvroLocalTimestampNanos => {
            r#"{"type":"long","logicalType":"local-timestamp-nanos"}"#.into()
        }
        Kind::MicroTime => format!(
            r#"{{"type":"long",{}}}"#,
            connect("io.debezium.time.MicroTime", "")
        ),
        Kind::AvroTimeMillis => r#"{"type":"int","logicalType":"time-millis"}"#.into(),
        Kind::ZonedTimestamp => format!(
            r#"{{"type":"string",{}}}"#,
            connect("io.debezium.time.ZonedTimestamp", "")
        ),
        Kind::Json => format!(
            r#"{{"type":"string",{}}}"#,
            connect("io.debezium.data.Json", "")
        ),
        Kind::Uuid => r#"{"type":"string","logicalType":"uuid"}"#.into(),
        // A struct has no MySQL type of its own: the source type makes it a JSON
        // column, so events with one get their definition and are compared whole.
        Kind::Struct => format!(
            r#"{{"type":"record","name":"S{i}","fields":[{{"name":"a","type":"int"}},{{"name":"b","type":["null","string"]}},{{"name":"c","type":{{"type":"bytes","logicalType":"decimal","precision":5,"scale":1}}}}],"connect.parameters":{{"__debezium.source.column.type":"JSON"}}}}"#
        ),
        Kind::Array => r#"{"type":"array","items":["null","double"]}"#.into(),
        Kind::Map => r#"{"type":"map","values":"long"}"#.into(),
        Kind::VariableScaleDecimal => format!(
            r#"{{"type":"record","name":"VariableScaleDecimal{i}","namespace":"io.debezium.data","fields":[{{"name":"scale","type":"int"}},{{"name":"value","type":"bytes"}}],{}}}"#,
            connect("io.debezium.data.VariableScaleDecimal", "")
        ),
        Kind::Geometry => format!(
            r#"{{"type":"record","name":"Geometry{i}","namespace":"io.debezium.data.geometry","fields":[{{"name":"wkb","type":"bytes"}},{{"name":"srid","type":["null","int"]}}],{}}}"#,
            connect("io.debezium.data.geometry.Geometry", "")
        ),
        Kind::Duration => {
            format!(r#"{{"type":"fixed","name":"D{i}","size":12,"logicalType":"duration"}}"#)
        }
    }
}

fn random_col(rng: &mut Rng) -> Col {
    let kind = if rng.chance(50) {
        rng.pick(&COMMON)
    } else {
        rng.pick(&KINDS)
    };
    Col {
        kind,
        null_first: match rng.below(3) {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        },
        scale: rng.pick(&[0, 2, 6, 30]),
        size: rng.pick(&[1, 3, 8, 9, 16]),
    }
}

fn value_record(cols: &[Col]) -> String {
    let fields: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let t = avro_type(c, i);
            let t = match c.null_first {
                None => t,
                Some(true) => format!(r#"["null",{t}]"#),
                Some(false) => format!(r#"[{t},"null"]"#),
            };
            format!(r#"{{"name":"c{i}","type":{t}}}"#)
        })
        .collect();
    format!(
        r#"{{"type":"record","name":"Value","fields":[{}],"connect.name":"t.db.tbl.Value"}}"#,
        fields.join(",")
    )
}

/// The Debezium MySQL `source` block, as Debezium 2.x writes its schema.
const SOURCE: &str = r#"{"type":"record","name":"Source","namespace":"io.debezium.connector.mysql","fields":[{"name":"version","type":"string"},{"name":"connector","type":"string"},{"name":"name","type":"string"},{"name":"ts_ms","type":"long"},{"name":"snapshot","type":[{"type":"string","connect.version":1,"connect.parameters":{"allowed":"true,last,false,incremental"},"connect.default":"false","connect.name":"io.debezium.data.Enum"},"null"],"default":"false"},{"name":"db","type":"string"},{"name":"sequence","type":["null","string"],"default":null},{"name":"table","type":["null","string"],"default":null},{"name":"server_id","type":"long"},{"name":"gtid","type":["null","string"],"default":null},{"name":"file","type":"string"},{"name":"pos","type":"long"},{"name":"row","type":"int"},{"name":"thread","type":["null","long"],"default":null},{"name":"query","type":["null","string"],"default":null}],"connect.name":"io.debezium.connector.mysql.Source"}"#;

const TRANSACTION_BLOCK: &str = r#"["null",{"type":"record","name":"block","namespace":"event","fields":[{"name":"id","type":"string"},{"name":"total_order","type":"long"},{"name":"data_collection_order","type":"long"}]}]"#;

fn envelope_schema(cols: &[Col], op_enum: bool) -> String {
    let op = if op_enum {
        r#"{"type":"enum","name":"Op","symbols":["c","u","d","r","t","x"]}"#
    } else {
        r#""string""#
    };
    format!(
        r#"{{"type":"record","name":"Envelope","namespace":"t.db.tbl","fields":[{{"name":"before","type":["null",{}],"default":null}},{{"name":"after","type":["null","Value"],"default":null}},{{"name":"source","type":{SOURCE}}},{{"name":"op","type":{op}}},{{"name":"ts_ms","type":["null","long"],"default":null}},{{"name":"transaction","type":{TRANSACTION_BLOCK},"default":null}}],"connect.name":"t.db.tbl.Envelope"}}"#,
        value_record(cols)
    )
}

fn random_i64(rng: &mut Rng) -> i64 {
    match rng.below(6) {
        0 => rng.pick(&[
            0,
            1,
            -1,
            i64::MAX,
            i64::MIN,
            i64::MAX / 1000 + 1,
            i64::MIN / 999,
        ]),
        1 => rng.next() as i64,
        2 => 1_709_214_310_123_456 + rng.below(1 << 40) as i64,
        _ => rng.below(100_000) as i64 - 50_000,
    }
}

fn random_i32(rng: &mut Rng) -> i32 {
    match rng.below(4) {
        0 => rng.pick(&[0, 1, -1, i32::MAX, i32::MIN]),
        1 => rng.next() as i32,
        _ => rng.below(40_000) as i32 - 20_000,
    }
}

fn random_bytes(rng: &mut Rng, max: u64) -> Vec<u8> {
    let n = rng.below(max + 1);
    let lead = rng.pick(&[None, Some(0u8), Some(0xff)]);
    (0..n)
        .map(|i| match lead {
            Some(b) if i == 0 => b,
            _ => rng.next() as u8,
        })
        .collect()
}

fn random_text(rng: &mut Rng) -> String {
    const PIECES: [&str; 12] = [
        "a",
        "Z",
        "0",
        " ",
        "é",
        "☕",
        "\"",
        "\\",
        "\n",
        "\u{1}",
        "{\"k\":[1]}",
        "null",
    ];
    (0..rng.below(8)).map(|_| rng.pick(&PIECES)).collect()
}

fn encode_value(out: &mut Vec<u8>, c: &Col, rng: &mut Rng) {
    match c.null_first {
        None => {}
        Some(null_first) => {
            let null = rng.chance(20);
            long(out, i64::from(null != null_first));
            if null {
                return;
            }
        }
    }
    match c.kind {
        Kind::Int | Kind::Int16 | Kind::Date | Kind::AvroDate | Kind::AvroTimeMillis => {
            long(out, i64::from(random_i32(rng)))
        }
        Kind::Long
        | Kind::MicroTimestamp
        | Kind::Timestamp
        | Kind::NanoTimestamp
        | Kind::AvroTimestampMillis
        | Kind::AvroTimestampMicros
        | Kind::AvroLocalTimestampNanos
        | Kind::MicroTime => long(out, random_i64(rng)),
        Kind::Text | Kind::Json | Kind::EnumText => bytes(out, random_text(rng).as_bytes()),
        Kind::AvroEnum => long(out, rng.below(3) as i64),
        Kind::Bool => out.push(rng.below(2) as u8),
        Kind::Double => {
            let x = match rng.below(3) {
                0 => f64::from_bits(rng.next()),
                1 => rng.pick(&[0.0, -0.0, 2.5, 1e300, f64::NAN, f64::INFINITY]),
                _ => rng.below(1000) as f64 / 8.0,
            };
            out.extend(x.to_le_bytes());
        }
        Kind::Float => out.extend(f32::from_bits(rng.next() as u32).to_le_bytes()),
        Kind::Bytes | Kind::Bits => bytes(out, &random_bytes(rng, 10)),
        Kind::Decimal | Kind::ConnectDecimal => {
            let max = if rng.chance(5) { 70 } else { 9 };
            bytes(out, &random_bytes(rng, max))
        }
        Kind::Fixed => out.extend((0..c.size).map(|_| rng.next() as u8)),
        Kind::ZonedTimestamp => {
            let s = rng.pick(&[
                "2024-02-29T13:45:10.123456Z",
                "2024-02-29T13:45:10Z",
                "1970-01-01T00:00:00+02:00",
                "0000-00-00T00:00:00Z",
                "not a time",
                "",
            ]);
            bytes(out, s.as_bytes())
        }
        Kind::Uuid => {
            let s = rng.pick(&[
                "67e55044-10b1-426f-9247-bb680e5fe0c8",
                "67E5504410B1426F9247BB680E5FE0C8",
                "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
                "urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8",
            ]);
            bytes(out, s.as_bytes())
        }
        Kind::Struct => {
            long(out, i64::from(random_i32(rng)));
            if rng.chance(30) {
                long(out, 0);
            } else {
                long(out, 1);
                bytes(out, random_text(rng).as_bytes());
            }
            bytes(out, &random_bytes(rng, 3));
        }
        Kind::Array => {
            let n = rng.below(4) as i64;
            if n > 0 {
                if rng.chance(50) {
                    long(out, n);
                } else {
                    // A negative count, then the block's size in bytes (not checked).
                    long(out, -n);
                    long(out, 9 * n);
                }
                for _ in 0..n {
                    if rng.chance(30) {
                        long(out, 0);
                    } else {
                        long(out, 1);
                        out.extend((rng.below(1000) as f64 / 4.0).to_le_bytes());
                    }
                }
            }
            long(out, 0);
        }
        Kind::Map => {
            let n = rng.below(4) as i64;
            if n > 0 {
                long(out, n);
                for _ in 0..n {
                    // Few keys, so some repeat.
                    bytes(out, rng.pick(&["k", "a", "zz"]).as_bytes());
                    long(out, random_i64(rng));
                }
            }
            long(out, 0);
        }
        Kind::VariableScaleDecimal => {
            long(out, i64::from(rng.pick(&[0, 2, -1, 101])));
            bytes(out, &random_bytes(rng, 9));
        }
        Kind::Geometry => {
            bytes(out, &random_bytes(rng, 12));
            if rng.chance(50) {
                long(out, 0);
            } else {
                long(out, 1);
                long(out, 4326);
            }
        }
        Kind::Duration => out.extend((0..12).map(|_| rng.next() as u8)),
    }
}

fn encode_image(out: &mut Vec<u8>, cols: &[Col], rng: &mut Rng) {
    for c in cols {
        encode_value(out, c, rng);
    }
}

/// A random envelope of [`envelope_schema`]: mostly well-formed changes, some with
/// what the decoder must refuse (no table, an unknown op, an image missing).
fn encode_envelope(id: u32, cols: &[Col], op_enum: bool, rng: &mut Rng) -> Vec<u8> {
    let mut out = vec![0];
    out.extend(id.to_be_bytes());
    let ops = if rng.chance(90) { 5 } else { 6 };
    let op_index = rng.below(ops);
    let op = ["c", "u", "d", "r", "t", "x"][op_index as usize];
    let (mut before, mut after) = match op {
        "c" | "r" => (false, true),
        "u" => (true, true),
        "d" => (true, false),
        _ => (false, false),
    };
    if rng.chance(5) {
        before = !before;
    }
    if rng.chance(5) {
        after = !after;
    }
    for present in [before, after] {
        if present {
            long(&mut out, 1);
            encode_image(&mut out, cols, rng);
        } else {
            long(&mut out, 0);
        }
    }
    // source
    bytes(&mut out, b"2.7.0.Final");
    bytes(&mut out, b"mysql");
    bytes(&mut out, b"srv");
    long(&mut out, rng.pick(&[0, 1_709_214_310_000, i64::MAX]));
    match rng.below(4) {
        0 => long(&mut out, 1),
        n => {
            long(&mut out, 0);
            bytes(
                &mut out,
                ["true", "false", "last"][n as usize - 1].as_bytes(),
            );
        }
    }
    bytes(&mut out, b"db");
    long(&mut out, 0);
    if rng.chance(95) {
        long(&mut out, 1);
        bytes(&mut out, b"tbl");
    } else {
        long(&mut out, 0);
    }
    long(&mut out, rng.pick(&[0, 223_344]));
    if rng.chance(30) {
        long(&mut out, 1);
        bytes(&mut out, b"3e11fa47-71ca-11e1-9e33-c80aa9429562:23");
    } else {
        long(&mut out, 0);
    }
    bytes(&mut out, rng.pick(&[&b"mysql-bin.000003"[..], b""]));
    long(&mut out, random_i64(rng));
    long(&mut out, i64::from(random_i32(rng)));
    long(&mut out, 0);
    long(&mut out, 0);
    // op
    if op_enum {
        long(&mut out, op_index as i64);
    } else {
        bytes(&mut out, op.as_bytes());
    }
    // ts_ms
    if rng.chance(80) {
        long(&mut out, 1);
        long(&mut out, 1_709_214_310_500);
    } else {
        long(&mut out, 0);
    }
    // transaction
    if rng.chance(30) {
        long(&mut out, 1);
        bytes(&mut out, b"gtid:23");
        long(&mut out, rng.below(5) as i64);
        long(&mut out, 1);
    } else {
        long(&mut out, 0);
    }
    out
}

#[test]
fn random_debezium_schemas_and_rows_decode_the_same() {
    let mut changes = 0;
    let mut value_errors = 0;
    let mut messages = 0;
    let mut cut_or_garbled = 0;
    let mut structs = 0;
    for case in 0..1000u64 {
        let mut rng = Rng(0x5eed_0000 + case * 7919);
        let cols: Vec<Col> = (0..1 + rng.below(9))
            .map(|_| random_col(&mut rng))
            .collect();
        let op_enum = rng.chance(20);
        let schema = envelope_schema(&cols, op_enum);
        let mut s = AvroSchemas::default();
        s.insert(1, r#"{"type":"record","name":"Key","namespace":"t.db.tbl","fields":[{"name":"c0","type":"int"}]}"#)
            .unwrap();
        s.insert(2, &schema)
            .unwrap_or_else(|e| panic!("case {case}: {e}\n{schema}"));
        assert!(s.schemas[&2].plan.is_some(), "case {case}: no plan");
        let key = [0, 0, 0, 0, 1, 14];
        for m in 0..4 {
            let value = encode_envelope(2, &cols, op_enum, &mut rng);
            messages += 1;
            match same(Some(&key), Some(&value), &s) {
                Outcome::Change => {
                    changes += 1;
                    let Ok(Decoded::Change(ev)) =
                        decode_avro(Some(&key), Some(&value), POSITION, &s)
                    else {
                        unreachable!()
                    };
                    structs += [ev.before, ev.after]
                        .iter()
                        .flatten()
                        .flat_map(|r| &r.columns)
                        .filter(
                            |(_, d)| matches!(d, crate::Datum::Json(j) if j.starts_with("{\"a\":")),
                        )
                        .count();
                }
                Outcome::Failed => {
                    let e = decode_avro(Some(&key), Some(&value), POSITION, &s).unwrap_err();
                    value_errors += usize::from(matches!(e, DecodeError::Value { .. }));
                }
                // A truncate.
                Outcome::Other => {}
                Outcome::Undecodable => {
                    panic!("case {case} message {m}: a valid datum does not decode: {value:02x?}")
                }
            }
            cut_or_garbled += same_garbled(&value, 10, 5 + m, false, &s).len();
        }
    }
    // Many messages are changes (the rest: truncates, events the decoder refuses,
    // schemas whose struct columns have no MySQL type); and some columns refuse
    // their values (decimals of no or too many bytes, instants out of range, bits
    // too wide, bad zoned times).
    println!("{messages} messages: {changes} changes ({structs} struct values), {value_errors} refused values, {cut_or_garbled} cut or garbled");
    assert!(changes * 3 > messages, "{changes} of {messages}");
    assert!(value_errors >= 20, "{value_errors}");
    assert!(cut_or_garbled > 10 * messages, "{cut_or_garbled}");
    // Struct columns (JSON text of a record) typed in changes both readers gave.
    assert!(structs > 10, "{structs}");
}

// ---------------------------------------------------------------------------------
// The micro-benchmark of the two readers.

/// The `invoices` schemas of `bench/kafka.sh`'s Avro run, as `kafka_bench
/// produce-avro` registers them (crates/tidemark/examples/kafka_bench.rs).
fn invoices_schemas(ns: &str) -> (String, String) {
    let key = format!(
        r#"{{"type":"record","name":"Key","namespace":"{ns}","fields":[{{"name":"id","type":"int"}}],"connect.name":"{ns}.Key"}}"#
    );
    let src = |name: &str, ty: &str, extra: &str| {
        format!(
            r#""__debezium.source.column.type":"{ty}",{extra}"__debezium.source.column.name":"{name}""#
        )
    };
    let value_record = format!(
        r#"{{"type":"record","name":"Value","fields":[{{"name":"id","type":{{"type":"int","connect.parameters":{{{id}}}}}}},{{"name":"customer","type":["null",{{"type":"string","connect.parameters":{{{customer}}}}}],"default":null}},{{"name":"total","type":["null",{{"type":"bytes","scale":2,"precision":12,"connect.version":1,"connect.parameters":{{"scale":"2","connect.decimal.precision":"12",{total}}},"connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}}],"default":null}},{{"name":"issued","type":["null",{{"type":"int","connect.version":1,"connect.parameters":{{{issued}}},"connect.name":"io.debezium.time.Date"}}],"default":null}}],"connect.name":"{ns}.Value"}}"#,
        id = src("id", "INT", r#""__debezium.source.column.length":"11","#),
        customer = src(
            "customer",
            "VARCHAR",
            r#""__debezium.source.column.length":"40","#
        ),
        total = src(
            "total",
            "DECIMAL",
            r#""__debezium.source.column.length":"12","__debezium.source.column.scale":"2","#
        ),
        issued = src("issued", "DATE", ""),
    );
    let source = r#"{"type":"record","name":"Source","namespace":"io.debezium.connector.mysql","fields":[{"name":"version","type":"string"},{"name":"connector","type":"string"},{"name":"name","type":"string"},{"name":"ts_ms","type":"long"},{"name":"snapshot","type":[{"type":"string","connect.version":1,"connect.parameters":{"allowed":"true,last,false,incremental"},"connect.default":"false","connect.name":"io.debezium.data.Enum"},"null"],"default":"false"},{"name":"db","type":"string"},{"name":"table","type":["null","string"],"default":null},{"name":"server_id","type":"long"},{"name":"gtid","type":["null","string"],"default":null},{"name":"file","type":"string"},{"name":"pos","type":"long"},{"name":"row","type":"int"}],"connect.name":"io.debezium.connector.mysql.Source"}"#;
    let value = format!(
        r#"{{"type":"record","name":"Envelope","namespace":"{ns}","fields":[{{"name":"before","type":["null",{value_record}],"default":null}},{{"name":"after","type":["null","Value"],"default":null}},{{"name":"source","type":{source}}},{{"name":"op","type":"string"}},{{"name":"ts_ms","type":["null","long"],"default":null}}],"connect.version":1,"connect.name":"{ns}.Envelope"}}"#
    );
    (key, value)
}

/// The shortest big-endian two's complement of `n` (what Connect's Decimal writes).
fn unscaled(n: i64) -> Vec<u8> {
    let b = n.to_be_bytes();
    let mut start = 0;
    while start < 7
        && ((b[start] == 0 && b[start + 1] & 0x80 == 0)
            || (b[start] == 0xff && b[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    b[start..].to_vec()
}

fn invoice_image(out: &mut Vec<u8>, id: u64, total: u64) {
    long(out, 1);
    long(out, id as i64);
    long(out, 1);
    bytes(out, format!("customer {}", id % 977).as_bytes());
    long(out, 1);
    bytes(out, &unscaled(total as i64));
    long(out, 1);
    long(out, (19_000 + id % 2000) as i64);
}

/// An update of `invoices` as `kafka_bench produce-avro` frames it.
fn invoice_update(key_id: u32, value_id: u32, id: u64, total: u64, pos: u64) -> (Vec<u8>, Vec<u8>) {
    let mut key = vec![0];
    key.extend(key_id.to_be_bytes());
    long(&mut key, id as i64);
    let mut out = vec![0];
    out.extend(value_id.to_be_bytes());
    let ts_ms = 1_765_000_000_000 + pos as i64;
    invoice_image(&mut out, id, total);
    invoice_image(&mut out, id, total);
    bytes(&mut out, b"2.7.0.Final");
    bytes(&mut out, b"mysql");
    bytes(&mut out, b"bench");
    long(&mut out, ts_ms);
    long(&mut out, 0);
    bytes(&mut out, b"false");
    bytes(&mut out, b"tm_kafka_bench");
    long(&mut out, 1);
    bytes(&mut out, b"invoices");
    long(&mut out, 1);
    long(&mut out, 0);
    bytes(&mut out, b"mysql-bin.000001");
    long(&mut out, pos as i64);
    long(&mut out, 0);
    bytes(&mut out, b"u");
    long(&mut out, 1);
    long(&mut out, ts_ms);
    (key, out)
}

/// Decodes 200,000 `invoices` updates shaped as `bench/kafka.sh`'s Avro ones with
/// each reader and prints messages/s. Run it in release on a quiet machine:
/// `cargo test --release --locked -p tidemark-events --lib avro_decode_throughput
/// -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark; run in release with --ignored --nocapture"]
fn avro_decode_throughput() {
    const N: u64 = 200_000;
    let (key_schema, value_schema) = invoices_schemas("bench.tm_kafka_bench.invoices");
    let mut s = AvroSchemas::default();
    s.insert(3, &key_schema).unwrap();
    s.insert(4, &value_schema).unwrap();
    let mut rng = Rng(0x1234_5678);
    let messages: Vec<(Vec<u8>, Vec<u8>)> = (0..N)
        .map(|i| {
            invoice_update(
                3,
                4,
                rng.below(200_000) + 1,
                rng.below(1_000_000),
                4 + 100 * i,
            )
        })
        .collect();
    let bytes: usize = messages.iter().map(|(k, v)| k.len() + v.len()).sum();
    type Decode =
        fn(Option<&[u8]>, Option<&[u8]>, &str, &AvroSchemas) -> Result<Decoded, DecodeError>;
    let run = |decode: Decode| {
        let start = Instant::now();
        for (k, v) in &messages {
            black_box(decode(Some(k), Some(v), POSITION, &s).unwrap());
        }
        N as f64 / start.elapsed().as_secs_f64()
    };
    // Warm both up (the definition cache, the allocator), then time each twice and
    // keep the better run.
    run(decode_avro);
    run(decode_avro_generic);
    let direct = run(decode_avro).max(run(decode_avro));
    let generic = run(decode_avro_generic).max(run(decode_avro_generic));
    println!(
        "avro_decode: {N} invoices updates ({} bytes each on average)",
        bytes as u64 / N
    );
    println!("  generic (apache-avro Value, then Datums): {generic:>10.0} messages/s");
    println!("  direct (datum straight into Datums):      {direct:>10.0} messages/s");
    println!("  direct / generic: {:.2}x", direct / generic);
    for (k, v) in &messages {
        assert_eq!(
            decode_avro(Some(k), Some(v), POSITION, &s).unwrap(),
            decode_avro_generic(Some(k), Some(v), POSITION, &s).unwrap()
        );
    }
}

#[test]
fn the_benchmarks_messages_are_changes_and_decode_the_same() {
    let (key_schema, value_schema) = invoices_schemas("bench.tm_kafka_bench.invoices");
    let mut s = AvroSchemas::default();
    s.insert(3, &key_schema).unwrap();
    s.insert(4, &value_schema).unwrap();
    let (k, v) = invoice_update(3, 4, 17, 123_456, 104);
    assert_eq!(same(Some(&k), Some(&v), &s), Outcome::Change);
    let Decoded::Change(ev) = decode_avro(Some(&k), Some(&v), POSITION, &s).unwrap() else {
        unreachable!()
    };
    let after = ev.after.unwrap();
    assert_eq!(
        after.get("total"),
        Some(&crate::Datum::Decimal("1234.56".into()))
    );
    assert_eq!(after.get("issued"), Some(&crate::Datum::Date(19_017)));
    same_garbled(&v, 100, 1, true, &s);
}

/// apache-avro reads a string whose bytes are cut off, a boolean at the very end and
/// a union whose index is cut off as null, and then the datum has no bytes left:
/// the direct reader must too, or a truncated message would decode with one and not
/// the other.
#[test]
fn values_cut_off_at_the_end_read_as_null_in_both() {
    let (key_schema, value_schema) = invoices_schemas("bench.tm_kafka_bench.invoices");
    let mut s = AvroSchemas::default();
    s.insert(3, &key_schema).unwrap();
    s.insert(4, &value_schema).unwrap();
    let both = |input: &[u8], s: &AvroSchemas| {
        (
            decode_avro(None, Some(input), POSITION, s),
            decode_avro_generic(None, Some(input), POSITION, s),
        )
    };
    let (_, v) = invoice_update(3, 4, 17, 123_456, 104);
    // The value ends with op "u" ([2, 'u']), then `ts_ms` (branch 1, a 6-byte long).
    let op_at = v.windows(2).rposition(|w| w == [2, b'u']).unwrap() + 1;
    assert_eq!(op_at, v.len() - 8);
    // `ts_ms`'s union index cut off: null, and the change decodes.
    let (a, b) = both(&v[..op_at + 1], &s);
    assert!(matches!(a, Ok(Decoded::Change(_))), "{a:?}");
    assert_eq!(a.unwrap(), b.unwrap());
    // Cut inside the long after the index: not lenient, neither decodes.
    let (a, b) = both(&v[..v.len() - 2], &s);
    let (a, b) = (masked(&a.unwrap_err()), masked(&b.unwrap_err()));
    assert_eq!(a, b);
    assert!(a.contains("<why>"), "{a}");
    // The op string's bytes cut off: op reads as null ("found nothing").
    let (a, b) = both(&v[..op_at], &s);
    let (a, b) = (a.unwrap_err().to_string(), b.unwrap_err().to_string());
    assert_eq!(a, b);
    assert!(
        a.contains("\"op\" must be a string") && a.contains("nothing"),
        "{a}"
    );
    // A boolean at the very end: null.
    s.insert(
        5,
        r#"{"type":"record","name":"E","fields":[{"name":"op","type":"string"},{"name":"source","type":{"type":"record","name":"S","fields":[{"name":"db","type":"string"},{"name":"table","type":"string"},{"name":"ts_ms","type":"long"}]}},{"name":"after","type":["null",{"type":"record","name":"V","fields":[{"name":"b","type":"boolean"}]}]}]}"#,
    )
    .unwrap();
    let mut m = vec![0, 0, 0, 0, 5];
    bytes(&mut m, b"c");
    bytes(&mut m, b"d");
    bytes(&mut m, b"t");
    long(&mut m, 1000);
    long(&mut m, 1);
    let (a, b) = both(&m, &s);
    let Ok(Decoded::Change(ev)) = &a else {
        panic!("{a:?}")
    };
    assert_eq!(
        ev.after.as_ref().unwrap().get("b"),
        Some(&crate::Datum::Null)
    );
    assert_eq!(a.unwrap(), b.unwrap());
    m.push(1);
    let (a, b) = both(&m, &s);
    assert_eq!(a.unwrap(), b.unwrap());
}
