//! Debezium MySQL connector messages: envelope with and without schemas, every op,
//! tombstones, heartbeats, schema changes, transaction markers, logical types.

use tidemark_core::change::Op;
use tidemark_events::{
    decode_debezium, decode_debezium_with, ChangeEvent, Datum, DebeziumOptions, DecimalHandling,
    Decoded, Row, SchemaChange, TransactionBoundary, Truncate,
};

use crate::{change, fixture, invoice, invoice_row, land};

fn decode(path: &str) -> Decoded {
    decode_debezium(None, Some(&fixture(path)), "topic/0/7").unwrap()
}

fn row(cells: &[(&str, Datum)]) -> Row {
    Row {
        columns: cells
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect(),
    }
}

fn anne(first: &str) -> Row {
    row(&[
        ("id", Datum::Int(1004)),
        ("first_name", Datum::Text(first.into())),
        ("last_name", Datum::Text("Kretchmar".into())),
        ("email", Datum::Text("annek@noanswer.org".into())),
    ])
}

#[test]
fn create_with_schema() {
    let ev = change(decode("debezium/create_with_schema.json"));
    assert_eq!(ev.db, "inventory");
    assert_eq!(ev.table, "customers");
    assert_eq!(ev.op, Op::Create);
    assert_eq!(ev.before, None);
    assert_eq!(ev.after, Some(anne("Anne")));
    // source.ts_ms is 0 in the documented example: fall back to the envelope's ts_ms.
    assert_eq!(ev.source_ts_us, 1_465_491_411_815_000);
    assert_eq!(ev.source_pos, "mysql-bin.000003:154:0");
    assert_eq!(ev.message_pos, "topic/0/7");
    assert_eq!(ev.txn_id, None);
    assert!(!ev.snapshot);
    assert_eq!(ev.dedup_position(), "binlog:mysql-bin.000003:154:0");
    assert!(ev.encoding.typed);
}

#[test]
fn update_with_schema_and_transaction_metadata() {
    let ev = change(decode("debezium/update_with_schema.json"));
    assert_eq!(ev.op, Op::Update);
    assert_eq!(ev.before, Some(anne("Anne")));
    assert_eq!(ev.after, Some(anne("Anne Marie")));
    assert_eq!(ev.source_ts_us, 1_465_581_029_100_000);
    assert_eq!(ev.source_pos, "mysql-bin.000003:484:0");
    assert_eq!(
        ev.txn_id.as_deref(),
        Some("3E11FA47-71CA-11E1-9E33-C80AA9429562:23")
    );
    // The transaction the END on the transaction topic counts this event in.
    assert_eq!(ev.transaction, ev.txn_id);
    // GTID plus the event's order in its transaction: the same on any server.
    assert_eq!(
        ev.dedup_position(),
        "gtid:3E11FA47-71CA-11E1-9E33-C80AA9429562:23:1"
    );
}

#[test]
fn delete_with_schema_lands_the_before_image() {
    let ev = change(decode("debezium/delete_with_schema.json"));
    assert_eq!(ev.op, Op::Delete);
    assert_eq!(ev.before, Some(anne("Anne Marie")));
    assert_eq!(ev.after, None);
    assert_eq!(ev.image(), ev.before.as_ref());
    assert_eq!(ev.source_ts_us, 1_465_581_902_300_000);
    assert_eq!(ev.dedup_position(), "binlog:mysql-bin.000003:805:0");
    let rows = land(&crate::customers(), &[ev]);
    assert_eq!(
        rows[0],
        [
            "1004",
            "Anne Marie",
            "Kretchmar",
            "annek@noanswer.org",
            "d",
            "2016-06-10T18:05:02.300Z",
            "mysql-bin.000003:805:0",
            "0"
        ]
    );
}

#[test]
fn schemaless_envelopes_decode_like_wrapped_ones() {
    for (bare, wrapped) in [
        ("create_schemaless.json", "create_with_schema.json"),
        ("update_schemaless.json", "update_with_schema.json"),
        ("delete_schemaless.json", "delete_with_schema.json"),
    ] {
        let a = change(decode(&format!("debezium/{bare}")));
        let b = change(decode(&format!("debezium/{wrapped}")));
        assert_eq!(
            (&a.before, &a.after, a.op),
            (&b.before, &b.after, b.op),
            "{bare}"
        );
        assert!(!a.encoding.typed);
    }
    let ev = change(decode("debezium/create_schemaless.json"));
    assert_eq!(ev.source_ts_us, 1_465_491_411_000_000);
    let ev = change(decode("debezium/update_schemaless.json"));
    assert_eq!(ev.source_pos, "mysql-bin.000003:484:1");
    assert_eq!(ev.dedup_position(), "binlog:mysql-bin.000003:484:1");
}

#[test]
fn snapshot_read() {
    let ev = change(decode("debezium/read_snapshot.json"));
    assert_eq!(ev.op, Op::Read);
    assert!(ev.snapshot);
    assert_eq!(
        ev.after.as_ref().unwrap().get("id"),
        Some(&Datum::Int(1001))
    );
    assert_eq!(ev.source_ts_us, 1_465_491_400_000_000);
    // Every row of a snapshot shares the position: unique together with the key.
    assert_eq!(ev.dedup_position(), "snapshot:mysql-bin.000003:154");
}

#[test]
fn truncate() {
    assert_eq!(
        decode("debezium/truncate.json"),
        Decoded::Truncate(Truncate {
            db: "inventory".into(),
            table: "customers".into(),
            source_ts_us: 1_465_581_999_000_000,
            source_pos: "mysql-bin.000003:1302:0".into(),
            message_pos: "topic/0/7".into(),
            dedup_key: "binlog:mysql-bin.000003:1302:0".into(),
        })
    );
}

#[test]
fn tombstones() {
    let key = br#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"mysql-server-1.inventory.customers.Key"},"payload":{"id":1004}}"#;
    assert_eq!(
        decode_debezium(Some(key), None, "t/0/9").unwrap(),
        Decoded::Tombstone {
            key: Some(row(&[("id", Datum::Int(1004))]))
        }
    );
    assert_eq!(
        decode("debezium/tombstone.json"),
        Decoded::Tombstone { key: None }
    );
    for v in [&b""[..], b"  \n", br#"{"schema":null,"payload":null}"#] {
        assert_eq!(
            decode_debezium(Some(b"not json"), Some(v), "p").unwrap(),
            Decoded::Tombstone { key: None }
        );
    }
}

#[test]
fn heartbeat_schema_change_and_transactions() {
    assert_eq!(
        decode("debezium/heartbeat.json"),
        Decoded::Heartbeat {
            ts_us: Some(1_588_252_618_953_000)
        }
    );
    assert_eq!(
        decode("debezium/schema_change.json"),
        Decoded::SchemaChange(SchemaChange {
            db: "inventory".into(),
            ddl: Some("ALTER TABLE customers ADD COLUMN middle_name VARCHAR(50)".into()),
            tables: vec![("\"inventory\".\"customers\"".into(), "ALTER".into())],
            source_ts_us: 1_465_581_000_000_000,
            source_pos: "mysql-bin.000003:1100:0".into(),
            message_pos: "topic/0/7".into(),
        })
    );
    assert_eq!(
        decode("debezium/transaction_begin.json"),
        Decoded::Transaction(TransactionBoundary {
            status: "BEGIN".into(),
            id: "3E11FA47-71CA-11E1-9E33-C80AA9429562:23".into(),
            event_count: None,
            collections: Vec::new(),
        })
    );
    assert_eq!(
        decode("debezium/transaction_end.json"),
        Decoded::Transaction(TransactionBoundary {
            status: "END".into(),
            id: "3E11FA47-71CA-11E1-9E33-C80AA9429562:23".into(),
            event_count: Some(2),
            collections: vec![("inventory.customers".into(), 2)],
        })
    );
}

#[test]
fn logical_types_from_the_schema() {
    let ev = change(decode("debezium/types_with_schema.json"));
    let after = ev.after.unwrap();
    let expect = [
        ("id", Datum::Int(7)),
        // bigint.unsigned.handling.mode=long wraps; landing undoes it.
        ("customer_id", Datum::Int(-1)),
        ("total", Datum::Decimal("1234.50".into())),
        (
            "big_amount",
            Datum::Decimal("1.500000000000000000000000000000".into()),
        ),
        ("weight", Datum::Number("2.5".into())),
        ("issued", Datum::Date(19_782)),
        ("created_at", Datum::Timestamp(1_709_214_310_123_000)),
        ("updated_at", Datum::Timestamp(1_709_214_310_123_456)),
        ("paid_at", Datum::Timestamp(1_709_214_310_123_456)),
        ("due_time", Datum::Time(45_296_789_000)),
        ("fiscal_year", Datum::Int(2024)),
        ("flags", Datum::Int(5)),
        ("is_paid", Datum::Bool(true)),
        ("status", Datum::Text("paid".into())),
        ("tags", Datum::Text("a,c".into())),
        ("doc", Datum::Json("{\"k\":[1,2]}".into())),
        ("blob", Datum::Bytes(vec![0xde, 0xad, 0xbe, 0xef])),
        ("note", Datum::Text("café ☕".into())),
    ];
    assert_eq!(after, row(&expect));
}

#[test]
fn every_encoding_of_the_invoice_lands_the_same_row() {
    let string_mode = DebeziumOptions {
        decimal_handling: DecimalHandling::String,
        ..Default::default()
    };
    let double_mode = DebeziumOptions {
        decimal_handling: DecimalHandling::Double,
        ..Default::default()
    };
    for (path, options) in [
        ("types_with_schema.json", DebeziumOptions::default()),
        // Schemaless, default settings: decimals are base64, DATETIME(3) is ms,
        // DATETIME(6) and TIME are µs, BIT(3) is little-endian base64.
        ("types_schemaless.json", DebeziumOptions::default()),
        // The schema says "string": the options do not matter.
        (
            "decimal_string_with_schema.json",
            DebeziumOptions::default(),
        ),
        ("decimal_string_with_schema.json", string_mode),
        ("decimal_double_schemaless.json", double_mode),
    ] {
        let bytes = fixture(&format!("debezium/{path}"));
        let ev = change(decode_debezium_with(None, Some(&bytes), "p", &options).unwrap());
        let rows = land(&invoice(), &[ev]);
        assert_eq!(rows[0][..18], invoice_row(), "{path}");
        assert_eq!(rows[0][18], "c");
        assert_eq!(rows[0][19], "2024-02-29T13:45:10Z");
    }
}

#[test]
fn not_an_envelope() {
    // What the ExtractNewRecordState ("unwrap") transform leaves.
    let err = decode_debezium(None, Some(br#"{"id":1004,"first_name":"Anne"}"#), "t/0/1")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("t/0/1: "), "{err}");
    assert!(err.contains("ExtractNewRecordState"), "{err}");
    // A DMS record on a Debezium topic.
    let err = decode_debezium(None, Some(&fixture("dms/insert.json")), "t/0/2")
        .unwrap_err()
        .to_string();
    assert!(err.contains("dms format"), "{err}");
    let err = decode_debezium(None, Some(b"{\"op\":"), "t/0/3")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("t/0/3") && err.contains("not valid JSON"),
        "{err}"
    );
}

#[test]
fn envelope_errors_name_the_table() {
    let bytes = String::from_utf8(fixture("debezium/create_schemaless.json"))
        .unwrap()
        .replace("\"op\": \"c\"", "\"op\": \"x\"");
    let err = decode_debezium(None, Some(bytes.as_bytes()), "t/0/4")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("t/0/4: table inventory.customers: unknown op \"x\""),
        "{err}"
    );
    let bytes = String::from_utf8(fixture("debezium/delete_schemaless.json"))
        .unwrap()
        .replace("\"before\": {", "\"ignored\": {");
    let err = decode_debezium(None, Some(bytes.as_bytes()), "t/0/5")
        .unwrap_err()
        .to_string();
    assert!(err.contains("delete without a before image"), "{err}");
}

#[test]
fn a_bad_value_under_a_schema_names_the_column() {
    let bytes = String::from_utf8(fixture("debezium/types_with_schema.json"))
        .unwrap()
        .replace("\"AeI6\"", "\"***\"");
    let err = decode_debezium(None, Some(bytes.as_bytes()), "t/0/6")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("t/0/6: table shop.invoice: column total: \"***\" is not base64"),
        "{err}"
    );
}

/// ChangeEvent is plain data: the lead can build one in a test.
#[allow(dead_code)]
fn constructible(ev: ChangeEvent) -> ChangeEvent {
    ChangeEvent {
        snapshot: true,
        ..ev
    }
}

/// Issue 21: with schemas on, the envelope defines the table (columns in MySQL's
/// terms, defaults) and the key's schema names the primary key.
#[test]
fn the_schema_defines_the_table() {
    let key = br#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"shop.shop.invoices.Key"},"payload":{"id":7}}"#;
    let ev = change(
        decode_debezium(
            Some(key),
            Some(&fixture("debezium/types_with_schema.json")),
            "topic/0/7",
        )
        .unwrap(),
    );
    let def = ev.definition.expect("a definition from the schema");
    assert_eq!(def.key, vec!["id".to_string()]);
    let types: Vec<(String, String)> = def
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.column_type.clone()))
        .collect();
    let want = [
        ("id", "int"),
        ("total", "decimal(10,2)"),
        ("issued", "date"),
        ("created_at", "datetime(3)"),
        ("updated_at", "datetime(6)"),
        ("paid_at", "timestamp(6)"),
        ("is_paid", "bit(1)"),
        ("doc", "json"),
        ("blob", "longblob"),
        ("note", "longtext"),
    ];
    for (name, ty) in want {
        assert!(
            types.iter().any(|(n, t)| n == name && t == ty),
            "{name} should be {ty}: {types:?}"
        );
    }
    // Every column maps, so the definition builds a table.
    for c in &def.columns {
        assert!(
            tidemark_core::types::MySqlType::from_information_schema(
                &c.data_type,
                &c.column_type,
                c.precision,
                c.scale
            )
            .is_some(),
            "{c:?}"
        );
    }
    // Without a key (or a key without schema) the key is left to the config.
    let ev = change(decode("debezium/types_with_schema.json"));
    assert!(ev.definition.unwrap().key.is_empty());
    // Schemaless messages define nothing.
    let ev = change(decode("debezium/create_schemaless.json"));
    assert!(ev.definition.is_none());
}
