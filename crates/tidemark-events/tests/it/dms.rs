//! AWS DMS Kafka target messages: full load, CDC with and without before images and
//! transaction details, control records.

use tidemark_core::change::Op;
use tidemark_events::{decode_dms, Control, Datum, Decoded};

use crate::{change, fixture, invoice, invoice_row, land};

fn decode(path: &str) -> Decoded {
    decode_dms(&fixture(path), "dms-topic/3/100").unwrap()
}

#[test]
fn full_load() {
    let ev = change(decode("dms/load.json"));
    assert_eq!((ev.db.as_str(), ev.table.as_str()), ("shop", "invoice"));
    assert_eq!(ev.op, Op::Read);
    assert!(ev.snapshot);
    assert_eq!(ev.before, None);
    let after = ev.after.as_ref().unwrap();
    let names: Vec<&str> = after.columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..4], ["id", "customer_id", "total", "big_amount"]);
    assert_eq!(after.get("total"), Some(&Datum::Text("1234.50".into())));
    assert_eq!(
        after.get("customer_id"),
        Some(&Datum::Number("18446744073709551615".into()))
    );
    // A full load has no commit instant: the record's timestamp (extraction time).
    assert_eq!(ev.source_ts_us, 1_709_287_200_123_456);
    assert_eq!(ev.source_pos, "dms-topic/3/100");
    assert_eq!(ev.txn_id, None);
    assert_eq!(ev.dedup_position(), "msg:dms-topic/3/100");
    let rows = land(&invoice(), &[ev]);
    assert_eq!(rows[0][..18], invoice_row());
    assert_eq!(
        rows[0][18..],
        ["r", "2024-03-01T10:00:00.123456Z", "dms-topic/3/100", "0"]
    );
}

#[test]
fn insert_without_null_columns() {
    let ev = change(decode("dms/insert.json"));
    assert_eq!(ev.op, Op::Create);
    assert!(!ev.snapshot);
    assert_eq!(ev.txn_id.as_deref(), Some("8324031213823"));
    // No transaction-record-id (IncludeTransactionDetails off): only a redelivery of
    // this very message is recognised.
    assert_eq!(ev.dedup_position(), "msg:dms-topic/3/100");
    let rows = land(&invoice(), &[ev]);
    // IncludeNullAndEmpty off: DMS leaves NULL columns out; they land as NULL.
    assert_eq!(rows[0][0], "8");
    assert_eq!(rows[0][8], "NULL"); // paid_at
    assert_eq!(rows[0][9], "NULL"); // due_time
    assert_eq!(rows[0][15], "NULL"); // doc
    assert_eq!(rows[0][16], "NULL"); // blob
    assert_eq!(rows[0][17], "café ☕");
}

#[test]
fn update_without_before_image() {
    let ev = change(decode("dms/update.json"));
    assert_eq!(ev.op, Op::Update);
    assert_eq!(ev.before, None);
    assert_eq!(
        ev.after.as_ref().unwrap().get("status"),
        Some(&Datum::Text("void".into()))
    );
}

#[test]
fn update_with_before_image_and_transaction_details() {
    let ev = change(decode("dms/update_before_image.json"));
    assert_eq!(ev.op, Op::Update);
    // ColumnFilter pk-only: the before image is just the key.
    assert_eq!(
        ev.before.as_ref().unwrap().columns,
        [("id".to_string(), Datum::Int(7))]
    );
    // commit-timestamp, not the record's timestamp.
    assert_eq!(ev.source_ts_us, 1_709_287_199_500_000);
    assert_eq!(
        ev.source_pos,
        "mysql-bin-changelog.000024:1520:-1:1551:8324031213825:mysql-bin-changelog.000024:1400"
    );
    assert_eq!(ev.txn_id.as_deref(), Some("8324031213825"));
    assert_eq!(ev.dedup_position(), "dms:8324031213825:2");
    let rows = land(&invoice(), &[ev]);
    assert_eq!(rows[0][2], "0.00");
    assert_eq!(rows[0][13], "void");
    assert_eq!(rows[0][18], "u");

    // The before image's field name is whatever the task configured.
    let ev = change(decode("dms/update_before_image_all.json"));
    assert_eq!(ev.before.as_ref().unwrap().columns.len(), 18);
}

#[test]
fn delete_lands_the_deleted_row() {
    let ev = change(decode("dms/delete.json"));
    assert_eq!(ev.op, Op::Delete);
    assert_eq!(ev.after, None);
    assert_eq!(ev.before.as_ref().unwrap().get("id"), Some(&Datum::Int(7)));
    let rows = land(&invoice(), &[ev]);
    assert_eq!(rows[0][0], "7");
    assert_eq!(rows[0][18], "d");
}

#[test]
fn control_records() {
    let d = decode("dms/control_create_table.json");
    let Decoded::Control(c) = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        (c.db.as_str(), c.table.as_str(), c.operation.as_str()),
        ("shop", "invoice", "create-table")
    );
    assert_eq!(c.ts_us, Some(1_709_283_600_000_001));
    let detail = c.detail.unwrap();
    assert_eq!(detail["table-def"]["primary-key"][0], "id");
    assert_eq!(detail["table-def"]["columns"]["note"]["type"], "WSTRING");

    assert_eq!(
        decode("dms/control_drop_table.json"),
        Decoded::Control(Control {
            db: "shop".into(),
            table: "invoice".into(),
            operation: "drop-table".into(),
            ts_us: Some(1_709_290_800_000_000),
            detail: Some(serde_json::json!({})),
            message_pos: "dms-topic/3/100".into(),
        })
    );
    let Decoded::Control(c) = decode("dms/control_apply_exceptions.json") else {
        panic!()
    };
    assert_eq!(
        (c.db.as_str(), c.table.as_str()),
        ("", "awsdms_apply_exceptions")
    );
    assert_eq!(c.detail, None);
}

#[test]
fn errors() {
    let err = decode_dms(&fixture("debezium/create_schemaless.json"), "d/0/1")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("d/0/1: not an AWS DMS record"), "{err}");
    assert!(err.contains("debezium format"), "{err}");
    let bytes = String::from_utf8(fixture("dms/insert.json"))
        .unwrap()
        .replace("\"insert\"", "\"merge\"");
    let err = decode_dms(bytes.as_bytes(), "d/0/2")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("d/0/2: table shop.invoice: unknown data operation \"merge\""),
        "{err}"
    );
}

#[test]
fn decode_by_format_value() {
    use tidemark_events::{decode, Format};
    assert_eq!(
        decode(Format::Dms, None, None, "p").unwrap(),
        Decoded::Tombstone { key: None }
    );
    let ev = change(decode(Format::Dms, None, Some(&fixture("dms/insert.json")), "p").unwrap());
    assert_eq!(ev.op, Op::Create);
}
