//! Decoding tests over payloads written from the Debezium MySQL connector's and AWS
//! DMS's documented message formats (`testdata/`).

mod avro;
mod avro_messages;
mod debezium;
mod dms;
mod garbled;
mod jsonl;
mod landing;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use arrow::util::display::array_value_to_string;
use tidemark_core::change::ChangeBatchBuilder;
use tidemark_core::names::{Naming, TableName};
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_events::{ChangeEvent, Decoded};

pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(testdata().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn change(d: Decoded) -> ChangeEvent {
    match d {
        Decoded::Change(c) => c,
        other => panic!("expected a change, got {other:?}"),
    }
}

fn col(
    name: &str,
    data_type: &str,
    column_type: &str,
    p: Option<u64>,
    s: Option<u64>,
) -> ColumnSchema {
    ColumnSchema {
        source_name: name.into(),
        name: String::new(),
        column_type: column_type.into(),
        data_type: data_type.into(),
        precision: p,
        scale: s,
        stored: Vec::new(),
    }
}

/// `inventory.customers` of Debezium's tutorial.
pub fn customers() -> TableSchema {
    TableSchema::new(
        TableName::new("inventory", "customers", Naming::SnakeCase),
        vec![
            col("id", "int", "int", Some(10), Some(0)),
            col("first_name", "varchar", "varchar(255)", None, None),
            col("last_name", "varchar", "varchar(255)", None, None),
            col("email", "varchar", "varchar(255)", None, None),
        ],
        &["id".to_string()],
        Naming::SnakeCase,
    )
    .unwrap()
}

/// `shop.invoice`: one column of every interesting MySQL type.
pub fn invoice() -> TableSchema {
    TableSchema::new(
        TableName::new("shop", "invoice", Naming::SnakeCase),
        vec![
            col("id", "int", "int", Some(10), Some(0)),
            col(
                "customer_id",
                "bigint",
                "bigint unsigned",
                Some(20),
                Some(0),
            ),
            col("total", "decimal", "decimal(10,2)", Some(10), Some(2)),
            col(
                "big_amount",
                "decimal",
                "decimal(65,30)",
                Some(65),
                Some(30),
            ),
            col("weight", "double", "double", Some(22), None),
            col("issued", "date", "date", None, None),
            col("created_at", "datetime", "datetime(3)", None, None),
            col("updated_at", "datetime", "datetime(6)", None, None),
            col("paid_at", "timestamp", "timestamp(6)", None, None),
            col("due_time", "time", "time(3)", None, None),
            col("fiscal_year", "year", "year", None, None),
            col("flags", "bit", "bit(3)", Some(3), None),
            col("is_paid", "bit", "bit(1)", Some(1), None),
            col("status", "enum", "enum('open','paid','void')", None, None),
            col("tags", "set", "set('a','b','c')", None, None),
            col("doc", "json", "json", None, None),
            col("blob", "varbinary", "varbinary(16)", None, None),
            col("note", "varchar", "varchar(100)", None, None),
        ],
        &["id".to_string()],
        Naming::SnakeCase,
    )
    .unwrap()
}

/// Land events into a batch of `schema` and render every cell as text.
pub fn land(schema: &TableSchema, events: &[ChangeEvent]) -> Vec<Vec<String>> {
    let mut b = ChangeBatchBuilder::new(Arc::new(schema.clone()), events.len());
    for (i, ev) in events.iter().enumerate() {
        tidemark_events::push_event(&mut b, schema, ev, i as i64).unwrap();
    }
    render(&b.finish().unwrap().data)
}

pub fn render(batch: &RecordBatch) -> Vec<Vec<String>> {
    (0..batch.num_rows())
        .map(|r| {
            batch
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(r) {
                        "NULL".to_string()
                    } else if let Some(ts) = c.as_any().downcast_ref::<TimestampMicrosecondArray>()
                    {
                        // arrow's display needs chrono-tz for a named zone; it is UTC.
                        chrono::DateTime::from_timestamp_micros(ts.value(r))
                            .unwrap()
                            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                    } else {
                        array_value_to_string(c, r).unwrap()
                    }
                })
                .collect()
        })
        .collect()
}

/// The invoice row every fixture of `shop.invoice` describes, as landed.
pub fn invoice_row() -> Vec<&'static str> {
    vec![
        "7",
        "18446744073709551615",
        "1234.50",
        "1.500000000000000000000000000000",
        "2.5",
        "2024-02-29",
        "2024-02-29T13:45:10.123Z",
        "2024-02-29T13:45:10.123456Z",
        "2024-02-29T13:45:10.123456Z",
        "12:34:56.789",
        "2024",
        "5",
        "true",
        "paid",
        "a,c",
        "{\"k\":[1,2]}",
        "deadbeef",
        "café ☕",
    ]
}
