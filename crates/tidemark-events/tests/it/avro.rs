//! Debezium envelopes in Avro (Confluent wire format): messages written here with
//! apache-avro against schemas shaped as Debezium's Avro converter writes them
//! (`tests/fixtures/avro/*.avsc`), and messages that Confluent's own AvroSerializer
//! framed through `scripts/schema_registry.py` (`tests/fixtures/avro/framed.jsonl`,
//! regenerated as `tests/fixtures/avro/README.md` says); both built in
//! `avro_messages.rs`, which the decoder's own tests share.

use std::panic::{catch_unwind, AssertUnwindSafe};

use tidemark_core::change::Op;
use tidemark_core::names::{Naming, TableName};
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_events::{
    decode_avro, schema_ids, AvroSchemas, ChangeEvent, Datum, DecodeError, Decoded, Definition,
};

use crate::avro_messages::*;
use crate::{change, land};

fn schemas() -> AvroSchemas {
    let mut s = AvroSchemas::default();
    for (id, schema) in fixture_schemas() {
        s.insert(id, &schema).unwrap();
    }
    s
}

fn decode(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    s: &AvroSchemas,
) -> Result<Decoded, DecodeError> {
    decode_avro(key, value, "orders/0/42", s)
}

/// A table schema as the lead's catalog would build it from the definition.
fn table(def: &Definition) -> TableSchema {
    let cols = def
        .columns
        .iter()
        .map(|c| ColumnSchema::source(&c.name, &c.data_type, &c.column_type, c.precision, c.scale))
        .collect();
    TableSchema::new(
        TableName::new("shop", "orders", Naming::SnakeCase),
        cols,
        &def.key,
        Naming::SnakeCase,
    )
    .unwrap()
}

#[test]
fn a_change_decodes_to_the_json_decoders_datums_and_a_definition() {
    let s = schemas();
    let v1 = writer_schema("value_v1.avsc");
    let value = framed(
        V1,
        &v1,
        envelope(
            None,
            Some(order_row(7, Some("café ☕"))),
            "c",
            source(2083, "false", None),
        ),
    );
    let k = key(7);
    assert_eq!(
        schema_ids(Some(&k), Some(&value)).unwrap(),
        (Some(KEY), Some(V1))
    );
    let ev = change(decode(Some(&k), Some(&value), &s).unwrap());
    assert_eq!(
        (ev.db.as_str(), ev.table.as_str(), ev.op),
        ("shop", "orders", Op::Create)
    );
    assert_eq!(ev.source_ts_us, 1_709_214_310_123_456);
    assert_eq!(ev.source_pos, "mysql-bin.000003:2083:1");
    assert_eq!(ev.dedup_key, "binlog:mysql-bin.000003:2083:1");
    assert_eq!(ev.message_pos, "orders/0/42");
    assert!(!ev.snapshot);
    assert!(ev.encoding.typed);
    let origin = ev.origin.as_ref().unwrap();
    assert_eq!(
        (origin.file.as_str(), origin.pos, origin.row),
        ("mysql-bin.000003", 2083, 1)
    );
    assert_eq!(origin.server_id, Some(223_344));
    assert!(ev.before.is_none());
    let after = ev.after.as_ref().unwrap();
    let expect = [
        ("id", Datum::Int(7)),
        ("total", Datum::Decimal("1234.50".into())),
        ("created_at", Datum::Timestamp(1_709_214_310_123_456)),
        ("issued", Datum::Date(19_782)),
        ("note", Datum::Text("café ☕".into())),
        ("status", Datum::Text("paid".into())),
        ("qty", Datum::Int(-3)),
        ("flags", Datum::Int(5)),
        ("weight", Datum::Number("2.5".into())),
        ("paid_at", Datum::Timestamp(1_709_214_310_123_456)),
        ("doc", Datum::Json("{\"k\":[1,2]}".into())),
    ];
    for (c, d) in &expect {
        assert_eq!(after.get(c), Some(d), "column {c}");
    }
    assert_eq!(after.columns.len(), expect.len());

    let def = ev.definition.as_ref().unwrap();
    assert_eq!(def.key, vec!["id".to_string()]);
    let types: Vec<(&str, &str)> = def
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.column_type.as_str()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("id", "int"),
            ("total", "decimal(10,2)"),
            ("created_at", "datetime(6)"),
            ("issued", "date"),
            ("note", "longtext"),
            ("status", "enum('open','paid','void')"),
            ("qty", "smallint"),
            ("flags", "bit(3)"),
            ("weight", "double"),
            ("paid_at", "timestamp(6)"),
            ("doc", "json"),
        ]
    );
    let status = def.columns.iter().find(|c| c.name == "status").unwrap();
    assert_eq!(status.default.as_deref(), Some("open"));
    // Every event of the same pair of schemas shares the definition.
    let again = change(decode(Some(&k), Some(&value), &s).unwrap());
    assert!(std::sync::Arc::ptr_eq(
        ev.definition.as_ref().unwrap(),
        again.definition.as_ref().unwrap()
    ));

    // And the values land in a table of that definition.
    let rows = land(&table(def), &[ev]);
    assert_eq!(
        rows[0][..11],
        [
            "7",
            "1234.50",
            "2024-02-29T13:45:10.123456Z",
            "2024-02-29",
            "café ☕",
            "paid",
            "-3",
            "5",
            "2.5",
            "2024-02-29T13:45:10.123456Z",
            "{\"k\":[1,2]}",
        ]
    );
}

#[test]
fn snapshot_reads_deletes_truncates_and_transactions() {
    let s = schemas();
    let v1 = writer_schema("value_v1.avsc");
    let k = key(7);
    let read = framed(
        V1,
        &v1,
        envelope(
            None,
            Some(order_row(7, None)),
            "r",
            source(154, "true", None),
        ),
    );
    let ev = change(decode(Some(&k), Some(&read), &s).unwrap());
    assert_eq!(ev.op, Op::Read);
    assert!(ev.snapshot && ev.origin.is_none());
    assert_eq!(ev.dedup_key, "snapshot:mysql-bin.000003:154");
    assert_eq!(ev.after.as_ref().unwrap().get("note"), Some(&Datum::Null));

    let delete = framed(
        V1,
        &v1,
        envelope(
            Some(order_row(7, None)),
            None,
            "d",
            source(300, "false", None),
        ),
    );
    let ev = change(decode(Some(&k), Some(&delete), &s).unwrap());
    assert_eq!(ev.op, Op::Delete);
    assert_eq!(ev.image().unwrap().get("id"), Some(&Datum::Int(7)));

    let truncate = framed(
        V1,
        &v1,
        envelope(None, None, "t", source(400, "false", None)),
    );
    match decode(None, Some(&truncate), &s).unwrap() {
        Decoded::Truncate(t) => {
            assert_eq!((t.db.as_str(), t.table.as_str()), ("shop", "orders"));
            assert_eq!(t.dedup_key, "binlog:mysql-bin.000003:400:1");
        }
        other => panic!("{other:?}"),
    }

    // A delete without its before image is refused, naming table and schema id.
    let bad = framed(
        V1,
        &v1,
        envelope(None, None, "d", source(500, "false", None)),
    );
    let e = decode(Some(&k), Some(&bad), &s).unwrap_err().to_string();
    assert!(
        e.contains("shop.orders") && e.contains("before image") && e.contains("schema id 12"),
        "{e}"
    );

    // Transaction metadata: the GTID and the order in the transaction.
    let env = in_transaction(8);
    let ev = change(decode(Some(&key(8)), Some(&framed(V1, &v1, env)), &s).unwrap());
    assert_eq!(
        ev.dedup_key,
        "gtid:3e11fa47-71ca-11e1-9e33-c80aa9429562:23:2"
    );
    assert_eq!(
        ev.txn_id.as_deref(),
        Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:23")
    );
    assert_eq!(ev.origin.unwrap().txn_order, Some(2));
}

#[test]
fn tombstones_heartbeats_and_transaction_boundaries() {
    let s = schemas();
    let k = key(7);
    for value in [None, Some(&[][..])] {
        match decode(Some(&k), value, &s).unwrap() {
            Decoded::Tombstone { key: Some(row) } => {
                assert_eq!(row.get("id"), Some(&Datum::Int(7)))
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        decode(None, None, &s).unwrap(),
        Decoded::Tombstone { key: None }
    ));
    assert_eq!(schema_ids(Some(&k), None).unwrap(), (Some(KEY), None));
    assert_eq!(schema_ids(None, None).unwrap(), (None, None));

    let mut s = s;
    s.insert(HEARTBEAT_ID, HEARTBEAT).unwrap();
    let hb = heartbeat(1_000);
    assert_eq!(
        decode(None, Some(&hb), &s).unwrap(),
        Decoded::Heartbeat {
            ts_us: Some(1_000_000)
        }
    );

    s.insert(TRANSACTION_ID, TRANSACTION).unwrap();
    let end = transaction_end();
    match decode(None, Some(&end), &s).unwrap() {
        Decoded::Transaction(t) => {
            assert_eq!(
                (t.status.as_str(), t.id.as_str(), t.event_count),
                ("END", "gtid:5", Some(3))
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_framing_and_unknown_ids_say_what_to_do() {
    let s = schemas();
    let json = br#"{"schema":{},"payload":{}}"#;
    let e = decode(None, Some(json), &s).unwrap_err().to_string();
    assert!(e.starts_with("orders/0/42"), "{e}");
    assert!(
        e.contains("not in the Confluent wire format") && e.contains("JSON"),
        "{e}"
    );
    let e = schema_ids(None, Some(json)).unwrap_err().to_string();
    assert!(e.contains("JSON text"), "{e}");
    let e = schema_ids(Some(&[0, 0, 1]), None).unwrap_err().to_string();
    assert!(e.contains("key") && e.contains("too short"), "{e}");
    let e = schema_ids(None, Some(&[1, 2, 3, 4, 5, 6]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("01 02 03 04 05 06"), "{e}");

    let e = decode(None, Some(&[0, 0, 0, 0, 99, 2]), &s)
        .unwrap_err()
        .to_string();
    assert!(e.contains("schema id 99") && e.contains("insert"), "{e}");

    // A datum framed with another schema's id: decoding fails or leaves bytes over.
    let e = decode(
        None,
        Some(
            &key(7)[..]
                .iter()
                .enumerate()
                .map(|(i, b)| if i == 4 { V1 as u8 } else { *b })
                .collect::<Vec<_>>(),
        ),
        &s,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("schema id 12") && e.contains("does not decode"),
        "{e}"
    );
    let mut long = key(7);
    long.push(0);
    let e = decode(Some(&long), None, &s);
    // The tombstone's key is informational: a bad key costs only the key.
    assert!(matches!(e, Ok(Decoded::Tombstone { key: None })));
    let value = framed(
        V1,
        &writer_schema("value_v1.avsc"),
        envelope(
            None,
            Some(order_row(1, None)),
            "c",
            source(1, "false", None),
        ),
    );
    let mut over = value.clone();
    over.push(7);
    let e = decode(None, Some(&over), &s).unwrap_err().to_string();
    assert!(e.contains("1 bytes are left over"), "{e}");
}

#[test]
fn bad_schemas_are_refused_at_insert_naming_the_id() {
    let mut s = AvroSchemas::default();
    let e = s.insert(5, "{not json").unwrap_err();
    assert!(e.contains("schema id 5") && e.contains("not JSON"), "{e}");
    let e = s
        .insert(
            6,
            r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#,
        )
        .unwrap_err();
    assert!(e.contains("schema id 6") && e.contains("itself"), "{e}");
    let e = s
        .insert(7, r#"{"type":"array","items":"null"}"#)
        .unwrap_err();
    assert!(e.contains("no bytes"), "{e}");
    let e = s
        .insert(
            8,
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"Nope"}]}"#,
        )
        .unwrap_err();
    assert!(e.contains("schema id 8"), "{e}");
    assert!(!s.has(5) && !s.has(6));
    s.insert(9, r#""string""#).unwrap();
    assert!(s.has(9));
    let e = decode(None, Some(&[0, 0, 0, 0, 9, 2, b'x']), &s)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected a Debezium envelope"), "{e}");
}

/// The messages Confluent's AvroSerializer wrote, with the schemas as the registry
/// returned them.
fn serializer_messages() -> (AvroSchemas, Vec<Message>) {
    let mut s = AvroSchemas::default();
    for (id, schema) in registry() {
        s.insert(id, &schema).unwrap();
    }
    (s, framed_by_serializer())
}

#[test]
fn confluent_serializer_bytes_decode() {
    let (s, messages) = serializer_messages();
    let decoded: Vec<Decoded> = messages
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let (kid, vid) = schema_ids(k.as_deref(), v.as_deref()).unwrap();
            assert!(kid.is_none_or(|id| s.has(id)) && vid.is_none_or(|id| s.has(id)));
            decode_avro(k.as_deref(), v.as_deref(), &format!("orders/0/{i}"), &s).unwrap()
        })
        .collect();
    assert_eq!(decoded.len(), 5);
    let events: Vec<ChangeEvent> = decoded[..4].iter().cloned().map(change).collect();
    let ops: Vec<Op> = events.iter().map(|e| e.op).collect();
    assert_eq!(ops, [Op::Read, Op::Update, Op::Create, Op::Delete]);
    let (r, u, c, d) = (&events[0], &events[1], &events[2], &events[3]);
    assert!(r.snapshot && r.dedup_key == "snapshot:mysql-bin.000003:154");
    let after = r.after.as_ref().unwrap();
    assert_eq!(after.get("total"), Some(&Datum::Decimal("1234.50".into())));
    assert_eq!(after.get("note"), Some(&Datum::Text("café ☕".into())));
    assert_eq!(after.get("flags"), Some(&Datum::Int(5)));
    assert_eq!(
        after.get("created_at"),
        Some(&Datum::Timestamp(1_709_214_310_123_456))
    );
    let u_after = u.after.as_ref().unwrap();
    assert_eq!(u_after.get("total"), Some(&Datum::Decimal("-0.07".into())));
    assert_eq!(u_after.get("weight"), Some(&Datum::Null));
    assert_eq!(u.dedup_key, "binlog:mysql-bin.000003:2083:1");
    // The producer's schema gained a column with a default mid-stream.
    let c_def = c.definition.as_ref().unwrap();
    let discount = c_def.columns.iter().find(|c| c.name == "discount").unwrap();
    assert_eq!(
        (discount.column_type.as_str(), discount.default.as_deref()),
        ("decimal(5,2)", Some("0.00"))
    );
    assert_eq!(
        c.after.as_ref().unwrap().get("discount"),
        Some(&Datum::Decimal("1.25".into()))
    );
    assert_eq!(
        c.dedup_key,
        "gtid:3e11fa47-71ca-11e1-9e33-c80aa9429562:23:2"
    );
    assert!(r
        .definition
        .as_ref()
        .unwrap()
        .columns
        .iter()
        .all(|c| c.name != "discount"));
    assert_eq!(
        d.before.as_ref().unwrap().get("discount"),
        Some(&Datum::Null)
    );
    match &decoded[4] {
        Decoded::Tombstone { key: Some(k) } => assert_eq!(k.get("id"), Some(&Datum::Int(7))),
        other => panic!("{other:?}"),
    }
    // Both versions land into the table the newer definition describes.
    let rows = land(&table(c_def), &events);
    assert_eq!(rows.len(), 4, "{rows:?}");
}

fn exercise(input: &[u8], s: &AvroSchemas) {
    let _ = schema_ids(Some(input), Some(input));
    for (k, v) in [
        (None, Some(input)),
        (Some(input), None),
        (Some(input), Some(input)),
    ] {
        match decode_avro(k, v, "g/0/0", s) {
            Ok(d) => {
                let _ = format!("{d:?}");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}

fn seeds() -> (AvroSchemas, Vec<Vec<u8>>) {
    let (mut s, messages) = serializer_messages();
    for (id, schema) in fixture_schemas() {
        s.insert(id, &schema).unwrap();
    }
    let seeds = messages
        .into_iter()
        .flat_map(|(k, v)| [k, v])
        .flatten()
        .collect();
    (s, seeds)
}

#[test]
fn truncated_and_garbled_messages_never_panic() {
    let (s, seeds) = seeds();
    for seed in &seeds {
        let mut inputs: Vec<Vec<u8>> = (0..seed.len()).map(|n| seed[..n].to_vec()).collect();
        inputs.extend(garbles(seed, 500));
        for input in inputs {
            if catch_unwind(AssertUnwindSafe(|| exercise(&input, &s))).is_err() {
                panic!("panicked on {input:02x?}");
            }
        }
    }
    // Lengths that ask for more than there is, or than anything should allocate.
    for hostile in hostile() {
        exercise(&hostile, &s);
    }
}

/// Issue 21: the Avro decoder under the time-budgeted mutation fuzzer, seeded with
/// the serializer's messages and the corpus in `fuzz/corpus/avro/`. Each input is
/// decoded as a value, a key and both; and read as a schema.
#[test]
fn fuzz_avro() {
    let (s, seeds) = seeds();
    let report = tidemark_fuzz::fuzz("avro", &seeds, |input| {
        exercise(input, &s);
        if let Ok(text) = std::str::from_utf8(input) {
            let mut fresh = AvroSchemas::default();
            let _ = fresh.insert(1, text);
        }
    });
    assert!(report.inputs as usize >= seeds.len());
}
