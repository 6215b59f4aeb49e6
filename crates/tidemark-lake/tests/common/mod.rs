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
        stored: Vec::new(),
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

/// Written once, run per backend (local disk, S3): state read back by a second writer,
/// and the first writer, now stale, refused.
pub async fn stale_writer_is_refused(wh: &tidemark_lake::Warehouse) {
    use tidemark_lake::{Error, TableKind, TableWriter};
    let mut a = TableWriter::open(wh, schema()).await.unwrap();
    assert_eq!(a.committed(TableKind::Current).txn, 0);
    let b1 = batch(&[(Op::Create, 1, "one", 1), (Op::Create, 2, "two", 2)]);
    a.apply(TableKind::Current, &b1, 10, state(2))
        .await
        .unwrap();
    a.apply(TableKind::History, &b1, 10, state(2))
        .await
        .unwrap();

    // A second writer (a restarted process) reads the committed state...
    let mut b = TableWriter::open(wh, schema()).await.unwrap();
    assert_eq!(b.committed(TableKind::Current).txn, 1);
    assert_eq!(b.committed(TableKind::Current).state, state(2));
    let b2 = batch(&[(Op::Update, 1, "uno", 3)]);
    b.apply(TableKind::Current, &b2, 11, state(3))
        .await
        .unwrap();

    // ...and the first writer, now stale, may not commit on top of it.
    let err = a
        .apply(TableKind::Current, &b2, 12, state(3))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::StaleWriter {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("another writer"), "{err}");
}

/// Land one snapshot chunk of three rows (ids 1–3) into both tables at once.
pub async fn land_snapshot_chunk(w: &mut tidemark_lake::TableWriter) {
    let chunk = batch(&[
        (Op::Read, 1, "one", 1),
        (Op::Read, 2, "two", 2),
        (Op::Read, 3, "three", 3),
    ]);
    w.append_both(std::slice::from_ref(&chunk), 10, state(1))
        .await
        .unwrap();
}
