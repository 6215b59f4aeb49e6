//! Fixtures shared by the writer tests on local disk and on S3: one small table and
//! change batches for it.

use std::sync::Arc;

use tidemark_core::change::{ChangeBatch, ChangeBatchBuilder, Op, Value};
use tidemark_core::names::{Naming, TableName};
use tidemark_core::position::SourceState;
use tidemark_core::schema::{ColumnSchema, TableSchema};

/// `shop.Items (Id INT PRIMARY KEY, Name VARCHAR(20))`.
pub fn schema() -> Arc<TableSchema> {
    let col = |n: &str, dt: &str, ct: &str| ColumnSchema {
        source_name: n.into(),
        name: String::new(),
        column_type: ct.into(),
        data_type: dt.into(),
        precision: None,
        scale: None,
    };
    Arc::new(
        TableSchema::new(
            TableName::new("shop", "Items", Naming::SnakeCase),
            vec![
                col("Id", "int", "int(11)"),
                col("Name", "varchar", "varchar(20)"),
            ],
            &["Id".to_string()],
            Naming::SnakeCase,
        )
        .unwrap(),
    )
}

/// A source state at a stream offset.
pub fn state(offset: u64) -> SourceState {
    SourceState {
        source: "test".into(),
        source_table: "shop.Items".into(),
        stream_offset: Some(offset),
        ..Default::default()
    }
}

/// Changes `(op, id, name, source instant)`; the instant is also the position.
pub fn batch(rows: &[(Op, i64, &str, i64)]) -> ChangeBatch {
    let mut b = ChangeBatchBuilder::new(schema(), rows.len());
    for (op, id, name, ts) in rows {
        b.push_values(
            &[Value::Int(*id), Value::Text(name.to_string())],
            *op,
            *ts,
            &format!("test:{ts}"),
            *ts,
        )
        .unwrap();
    }
    b.finish().unwrap()
}
