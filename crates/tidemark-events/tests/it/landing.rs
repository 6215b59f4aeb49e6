//! From events to batch rows: column matching, missing and unknown columns, values
//! that do not fit, and a builder that stays usable after an error.

use std::sync::Arc;

use tidemark_core::change::ChangeBatchBuilder;
use tidemark_events::{decode_dms, push_event, to_values, ChangeEvent, Datum, DecodeError};

use crate::{change, customers, fixture, invoice, render};

fn dms_event(json: &str) -> ChangeEvent {
    change(decode_dms(json.as_bytes(), "dms/0/5").unwrap())
}

fn insert(data: &str) -> ChangeEvent {
    dms_event(&format!(
        r#"{{"data": {data}, "metadata": {{"timestamp": "2024-03-01T10:00:00Z", "record-type": "data", "operation": "insert", "schema-name": "shop", "table-name": "invoice"}}}}"#
    ))
}

#[test]
fn unknown_column_is_an_error_naming_table_column_and_position() {
    let ev = insert(r#"{"id": 1, "Note": "x", "discount": 5}"#);
    let err = to_values(&invoice(), &ev).unwrap_err();
    assert!(matches!(err, DecodeError::UnknownColumn { .. }));
    let msg = err.to_string();
    assert!(
        msg.starts_with("dms/0/5: table shop.invoice: the event has column \"Note\""),
        "{msg}"
    );
    assert!(msg.contains("the schema has \"note\""), "{msg}");
    assert!(msg.contains("refresh the table's schema"), "{msg}");
}

#[test]
fn missing_key_is_an_error_missing_other_columns_are_null() {
    let err = to_values(&invoice(), &insert(r#"{"note": "x"}"#))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "dms/0/5: table shop.invoice: the event has no value for key column \"id\""
        ),
        "{err}"
    );
    let values = to_values(&invoice(), &insert(r#"{"id": 3}"#)).unwrap();
    assert_eq!(values.len(), 18);
    assert!(values[1..]
        .iter()
        .all(|v| *v == tidemark_core::change::Value::Null));
}

#[test]
fn values_that_do_not_fit() {
    for (data, column, says) in [
        (
            r#"{"id": "seven"}"#,
            "id",
            "text \"seven\" does not fit the column's type int",
        ),
        (r#"{"id": 1, "id": 2}"#, "id", "appears twice"),
        (r#"{"id": 2147483648}"#, "id", "out of range"),
        (
            r#"{"id": 1, "total": "12.345"}"#,
            "total",
            "more than 2 decimal places",
        ),
        (
            r#"{"id": 1, "total": "123456789.00"}"#,
            "total",
            "does not fit DECIMAL(10,2)",
        ),
        (r#"{"id": 1, "flags": 9}"#, "flags", "does not fit BIT(3)"),
        (
            r#"{"id": 1, "issued": "29/02/2024"}"#,
            "issued",
            "is not a date",
        ),
        (
            r#"{"id": 1, "created_at": "soon"}"#,
            "created_at",
            "is not a date-time",
        ),
        (r#"{"id": 1, "blob": "xyz"}"#, "blob", "is not hex"),
        (
            r#"{"id": 1, "is_paid": "maybe"}"#,
            "is_paid",
            "does not fit",
        ),
        (
            r#"{"id": 1, "fiscal_year": 3000}"#,
            "fiscal_year",
            "out of range",
        ),
    ] {
        let err = to_values(&invoice(), &insert(data)).unwrap_err();
        let DecodeError::Value { column: c, .. } = &err else {
            panic!("{data}: {err}")
        };
        assert_eq!(c, column, "{data}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("dms/0/5: table shop.invoice: column {column}: ")),
            "{msg}"
        );
        assert!(msg.contains(says), "{data}: {msg}");
    }
}

#[test]
fn zero_dates_land_as_null_and_decimals_stay_exact() {
    let ev = insert(
        r#"{"id": 1, "issued": "0000-00-00", "created_at": "0000-00-00 00:00:00", "total": 99999999.99, "big_amount": "-12345678901234567890123456789012345.123456789012345678901234567891", "fiscal_year": 0}"#,
    );
    let schema = invoice();
    let mut b = ChangeBatchBuilder::new(Arc::new(schema.clone()), 1);
    push_event(&mut b, &schema, &ev, 0).unwrap();
    let row = &render(&b.finish().unwrap().data)[0];
    assert_eq!(row[5], "NULL");
    assert_eq!(row[6], "NULL");
    assert_eq!(row[10], "NULL");
    // A JSON number with more digits than f64 holds, still exact.
    assert_eq!(row[2], "99999999.99");
    assert_eq!(
        row[3],
        "-12345678901234567890123456789012345.123456789012345678901234567891"
    );
}

#[test]
fn a_failed_event_leaves_the_builder_usable() {
    let schema = invoice();
    let mut b = ChangeBatchBuilder::new(Arc::new(schema.clone()), 4);
    let good = insert(r#"{"id": 1, "note": "first"}"#);
    // id and note come before the bad value: every value is checked before any is
    // appended, because the builder cannot take half a row back.
    let bad = insert(r#"{"id": 2, "note": "second", "fiscal_year": "MMXXIV"}"#);
    push_event(&mut b, &schema, &good, 0).unwrap();
    assert!(push_event(&mut b, &schema, &bad, 1).is_err());
    push_event(&mut b, &schema, &good, 2).unwrap();
    let rows = render(&b.finish().unwrap().data);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][21], "2");
}

#[test]
fn events_go_to_their_own_table() {
    let ev = insert(r#"{"id": 1}"#);
    let err = to_values(&customers(), &ev).unwrap_err().to_string();
    assert!(
        err.contains(
            "an event for table shop.invoice was pushed into a batch for table inventory.customers"
        ),
        "{err}"
    );
}

#[test]
fn debezium_schemaless_unsigned_and_binary() {
    let bytes = fixture("debezium/types_schemaless.json");
    let ev = change(tidemark_events::decode_debezium(None, Some(&bytes), "p").unwrap());
    assert_eq!(
        ev.after.as_ref().unwrap().get("blob"),
        Some(&Datum::Text("3q2+7w==".into()))
    );
    let values = to_values(&invoice(), &ev).unwrap();
    assert_eq!(values[1], tidemark_core::change::Value::UInt(u64::MAX));
    assert_eq!(
        values[16],
        tidemark_core::change::Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef])
    );
}
