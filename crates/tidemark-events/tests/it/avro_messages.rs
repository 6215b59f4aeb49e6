//! The Avro schemas and messages of the Avro tests, shared by the integration tests
//! (`tests/it/avro.rs`) and the decoder's own tests (`src/avro/tests.rs`, which
//! decode every one of them with both of the decoder's readers and compare). Only
//! apache-avro and the fixtures here, no tidemark type, so both can include it.
//!
//! The messages are written with apache-avro against schemas shaped as Debezium's
//! Avro converter writes them (`tests/fixtures/avro/*.avsc`), or were framed by
//! Confluent's own AvroSerializer through `scripts/schema_registry.py`
//! (`tests/fixtures/avro/framed.jsonl`, regenerated as
//! `tests/fixtures/avro/README.md` says).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{Decimal, Schema};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/avro")
}

pub fn read(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub const KEY: u32 = 11;
pub const V1: u32 = 12;
pub const V2: u32 = 13;
/// A heartbeat's schema id ([`HEARTBEAT`]).
pub const HEARTBEAT_ID: u32 = 20;
/// A transaction marker's schema id ([`TRANSACTION`]).
pub const TRANSACTION_ID: u32 = 21;
/// The id of a schema that is a plain string, not a record.
pub const STRING_ID: u32 = 9;

pub const HEARTBEAT: &str = r#"{"type":"record","name":"Heartbeat","namespace":"io.debezium.connector.common","fields":[{"name":"ts_ms","type":"long"}],"connect.name":"io.debezium.connector.common.Heartbeat"}"#;

pub const TRANSACTION: &str = r#"{"type":"record","name":"TransactionMetadataValue","namespace":"io.debezium.connector.common","fields":[{"name":"status","type":"string"},{"name":"id","type":"string"},{"name":"event_count","type":["null","long"],"default":null},{"name":"ts_ms","type":"long"}]}"#;

/// The schemas of the `.avsc` fixtures by id.
pub fn fixture_schemas() -> Vec<(u32, String)> {
    vec![
        (KEY, read("key.avsc")),
        (V1, read("value_v1.avsc")),
        (V2, read("value_v2.avsc")),
    ]
}

/// apache-avro checks defaults against types when parsing, and Debezium's bytes
/// defaults are not what it expects; writing never needs them.
pub fn writer_schema(name: &str) -> Schema {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("default");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut j: serde_json::Value = serde_json::from_str(&read(name)).unwrap();
    strip(&mut j);
    Schema::parse(&j).unwrap()
}

pub fn framed(id: u32, schema: &Schema, v: Value) -> Vec<u8> {
    let mut out = vec![0];
    out.extend(id.to_be_bytes());
    out.extend(
        GenericDatumWriter::builder(schema)
            .build()
            .unwrap()
            .write_value_to_vec(v)
            .unwrap(),
    );
    out
}

pub fn some(v: Value) -> Value {
    Value::Union(1, Box::new(v))
}

pub fn null() -> Value {
    Value::Union(0, Box::new(Value::Null))
}

pub fn rec(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// The `orders` row the tests write: id 7, 1234.50, 2024-02-29 13:45:10.123456, …
pub fn order_row(id: i32, note: Option<&str>) -> Value {
    rec(vec![
        ("id", Value::Int(id)),
        (
            "total",
            Value::Decimal(Decimal::from(123_450i32.to_be_bytes().to_vec())),
        ),
        ("created_at", Value::Long(1_709_214_310_123_456)),
        ("issued", some(Value::Int(19_782))),
        (
            "note",
            note.map_or_else(null, |n| some(Value::String(n.into()))),
        ),
        ("status", Value::String("paid".into())),
        ("qty", Value::Int(-3)),
        ("flags", some(Value::Bytes(vec![5]))),
        ("weight", some(Value::Double(2.5))),
        (
            "paid_at",
            some(Value::String("2024-02-29T13:45:10.123456Z".into())),
        ),
        ("doc", some(Value::String("{\"k\":[1,2]}".into()))),
    ])
}

pub fn source(pos: i64, snapshot: &str, gtid: Option<&str>) -> Value {
    let opt_str = |s: Option<&str>| s.map_or_else(null, |s| some(Value::String(s.into())));
    rec(vec![
        ("version", Value::String("2.7.0.Final".into())),
        ("connector", Value::String("mysql".into())),
        ("name", Value::String("dbserver1".into())),
        ("ts_ms", Value::Long(1_709_214_310_000)),
        // [Enum string, "null"]: the string is branch 0.
        (
            "snapshot",
            Value::Union(0, Box::new(Value::String(snapshot.into()))),
        ),
        ("db", Value::String("shop".into())),
        ("sequence", null()),
        ("ts_us", some(Value::Long(1_709_214_310_123_456))),
        ("ts_ns", null()),
        ("table", some(Value::String("orders".into()))),
        ("server_id", Value::Long(223_344)),
        ("gtid", opt_str(gtid)),
        ("file", Value::String("mysql-bin.000003".into())),
        ("pos", Value::Long(pos)),
        ("row", Value::Int(1)),
        ("thread", some(Value::Long(7))),
        ("query", null()),
    ])
}

pub fn envelope(before: Option<Value>, after: Option<Value>, op: &str, source: Value) -> Value {
    rec(vec![
        ("before", before.map_or_else(null, some)),
        ("after", after.map_or_else(null, some)),
        ("source", source),
        ("op", Value::String(op.into())),
        ("ts_ms", some(Value::Long(1_709_214_310_500))),
        ("ts_us", null()),
        ("ts_ns", null()),
        ("transaction", null()),
    ])
}

/// The envelope of an insert inside a GTID transaction, with its transaction block.
pub fn in_transaction(id: i32) -> Value {
    let mut env = envelope(
        None,
        Some(order_row(id, None)),
        "c",
        source(
            600,
            "false",
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:23"),
        ),
    );
    if let Value::Record(f) = &mut env {
        f[7].1 = some(rec(vec![
            (
                "id",
                Value::String("3e11fa47-71ca-11e1-9e33-c80aa9429562:23".into()),
            ),
            ("total_order", Value::Long(2)),
            ("data_collection_order", Value::Long(1)),
        ]));
    }
    env
}

pub fn key(id: i32) -> Vec<u8> {
    framed(
        KEY,
        &writer_schema("key.avsc"),
        rec(vec![("id", Value::Int(id))]),
    )
}

/// A value of schema `value_v1.avsc`.
pub fn v1(env: Value) -> Vec<u8> {
    framed(V1, &writer_schema("value_v1.avsc"), env)
}

pub fn heartbeat(ts_ms: i64) -> Vec<u8> {
    framed(
        HEARTBEAT_ID,
        &Schema::parse_str(HEARTBEAT).unwrap(),
        rec(vec![("ts_ms", Value::Long(ts_ms))]),
    )
}

pub fn transaction_end() -> Vec<u8> {
    framed(
        TRANSACTION_ID,
        &Schema::parse_str(TRANSACTION).unwrap(),
        rec(vec![
            ("status", Value::String("END".into())),
            ("id", Value::String("gtid:5".into())),
            ("event_count", some(Value::Long(3))),
            ("ts_ms", Value::Long(5)),
        ]),
    )
}

/// A Kafka message's key and value.
pub type Message = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The schemas the serializer's registry returned for each id (`registry.json`).
pub fn registry() -> Vec<(u32, String)> {
    let registry: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&read("registry.json")).unwrap();
    registry
        .iter()
        .map(|(id, schema)| (id.parse().unwrap(), schema.as_str().unwrap().to_string()))
        .collect()
}

/// The messages Confluent's AvroSerializer wrote (through scripts/avro_produce.py and
/// scripts/schema_registry.py), framed with the ids of [`registry`].
pub fn framed_by_serializer() -> Vec<Message> {
    let hex = |v: &serde_json::Value| {
        v.as_str().map(|h| {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>()
        })
    };
    read("framed.jsonl")
        .lines()
        .map(|l| {
            let m: serde_json::Value = serde_json::from_str(l).unwrap();
            (hex(&m["key"]), hex(&m["value"]))
        })
        .collect()
}

/// Lengths that ask for more than there is, or than anything should allocate.
pub fn hostile() -> Vec<Vec<u8>> {
    vec![
        vec![0, 0, 0, 0, 3, 2, 0xff, 0xff, 0xff, 0xff, 0x0f],
        vec![
            0, 0, 0, 0, 3, 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
        vec![0, 0, 0, 0, 1],
    ]
}

/// Every message the Avro integration tests decode, for the schemas
/// [`fixture_schemas`], [`registry`], [`HEARTBEAT`] (id [`HEARTBEAT_ID`]),
/// [`TRANSACTION`] (id [`TRANSACTION_ID`]) and `"string"` (id [`STRING_ID`]).
pub fn all_messages() -> Vec<Message> {
    let k = key(7);
    let order = |op: &str, before: bool, after: bool, pos: i64, snapshot: &str| {
        let row = || Some(order_row(7, None));
        v1(envelope(
            if before { row() } else { None },
            if after { row() } else { None },
            op,
            source(pos, snapshot, None),
        ))
    };
    let created = v1(envelope(
        None,
        Some(order_row(7, Some("café ☕"))),
        "c",
        source(2083, "false", None),
    ));
    let mut key_as_value = key(7);
    key_as_value[4] = V1 as u8;
    let mut long_key = key(7);
    long_key.push(0);
    let mut over = order("c", false, true, 1, "false");
    over.push(7);
    let mut out: Vec<Message> = vec![
        (Some(k.clone()), Some(created)),
        (Some(k.clone()), Some(order("r", false, true, 154, "true"))),
        (Some(k.clone()), Some(order("d", true, false, 300, "false"))),
        (None, Some(order("t", false, false, 400, "false"))),
        (
            Some(k.clone()),
            Some(order("d", false, false, 500, "false")),
        ),
        (Some(key(8)), Some(v1(in_transaction(8)))),
        (Some(k.clone()), None),
        (Some(k.clone()), Some(Vec::new())),
        (None, None),
        (None, Some(heartbeat(1_000))),
        (None, Some(transaction_end())),
        (None, Some(br#"{"schema":{},"payload":{}}"#.to_vec())),
        (Some(vec![0, 0, 1]), None),
        (None, Some(vec![1, 2, 3, 4, 5, 6])),
        (None, Some(vec![0, 0, 0, 0, 99, 2])),
        (None, Some(key_as_value)),
        (Some(long_key), None),
        (None, Some(over)),
        (None, Some(vec![0, 0, 0, 0, STRING_ID as u8, 2, b'x'])),
    ];
    out.extend(framed_by_serializer());
    for h in hostile() {
        out.push((None, Some(h.clone())));
        out.push((Some(h.clone()), None));
        out.push((Some(h.clone()), Some(h)));
    }
    out
}

/// Deterministic xorshift, so a failure reproduces.
pub fn garbles(input: &[u8], rounds: usize) -> Vec<Vec<u8>> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ input.len() as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..rounds)
        .map(|_| {
            let mut v = input.to_vec();
            for _ in 0..1 + next() % 3 {
                let i = (next() % (v.len() as u64 + 1)) as usize;
                match next() % 4 {
                    0 if i < v.len() => v[i] = next() as u8,
                    1 if i < v.len() => v[i] = [0, 1, 0x7f, 0x80, 0xff][(next() % 5) as usize],
                    2 if i < v.len() => {
                        v.remove(i);
                    }
                    _ => v.insert(i, next() as u8),
                }
            }
            v
        })
        .collect()
}
