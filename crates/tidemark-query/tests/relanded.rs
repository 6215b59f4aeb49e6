//! A table landed again (`tidemark snapshot --resnapshot` moves the old Delta tables
//! aside and lands new ones at the same place) while an engine serves it: the next
//! refresh must serve the new table, whichever of the two logs is longer. Following
//! the old table's log into the new one (what `update_incremental` does) serves the
//! old rows when the new log is shorter, and a mix of both logs' files when it is
//! longer.

use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use tidemark_core::change::{ChangeBatchBuilder, Op, Value};
use tidemark_core::names::{Naming, TableName};
use tidemark_core::position::SourceState;
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_lake::{TableWriter, Warehouse};
use tidemark_query::Engine;

fn schema() -> Arc<TableSchema> {
    let column = |name: &str, dt: &str, ct: &str| ColumnSchema {
        source_name: name.into(),
        name: String::new(),
        column_type: ct.into(),
        data_type: dt.into(),
        precision: None,
        scale: None,
        stored: Vec::new(),
    };
    Arc::new(
        TableSchema::new(
            TableName::new("shop", "items", Naming::SnakeCase),
            vec![
                column("id", "int", "int(11)"),
                column("name", "varchar", "varchar(20)"),
            ],
            &["id".to_string()],
            Naming::SnakeCase,
        )
        .unwrap(),
    )
}

/// Land `ids` named `name`, one commit per id (so the log's length is chosen).
async fn land(wh: &Warehouse, ids: std::ops::Range<i64>, name: &str) {
    let mut w = TableWriter::open(wh, schema()).await.unwrap();
    w.start_merge_on_read().await.unwrap();
    let state = SourceState {
        source: "test".into(),
        source_table: "shop.items".into(),
        ..Default::default()
    };
    for id in ids {
        let mut b = ChangeBatchBuilder::new(w.schema().clone(), 1);
        b.push_values(
            &[Value::Int(id), Value::Text(name.into())],
            Op::Create,
            1_767_225_600_000_000 + id * 1_000_000,
            &format!("pos:{id}"),
            id,
        )
        .unwrap();
        w.append_history(&b.finish().unwrap(), state.clone())
            .await
            .unwrap();
    }
}

async fn rows(engine: &Engine) -> Vec<String> {
    let b: Vec<RecordBatch> = engine
        .query("SELECT id, name FROM shop.items")
        .await
        .unwrap();
    tidemark_query::sorted_lines(&b, " | ").unwrap()
}

async fn relanded(first: usize, second: usize) {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    land(&wh, 0..first as i64, "old").await;
    let engine = Engine::open(&wh).await.unwrap();
    assert_eq!(rows(&engine).await.len(), first);

    wh.retire("shop", "items")
        .await
        .unwrap()
        .expect("moved aside");
    land(&wh, 100..100 + second as i64, "new").await;
    engine.refresh().await.unwrap();
    let mut want: Vec<String> = (100..100 + second as i64)
        .map(|id| format!("{id} | new"))
        .collect();
    want.sort();
    assert_eq!(rows(&engine).await, want, "first {first}, second {second}");
    // History too: the new table's versions only.
    let h: Vec<RecordBatch> = engine
        .query("SELECT count(*) AS n FROM shop_history.items WHERE name = 'old'")
        .await
        .unwrap();
    assert_eq!(
        tidemark_query::sorted_lines(&h, " | ").unwrap(),
        ["0"],
        "first {first}, second {second}"
    );
}

#[tokio::test]
async fn a_table_landed_again_with_a_shorter_log_is_served_anew() {
    relanded(6, 2).await;
}

#[tokio::test]
async fn a_table_landed_again_with_a_longer_log_is_served_anew() {
    relanded(2, 6).await;
}

#[tokio::test]
async fn a_table_landed_again_with_a_log_as_long_is_served_anew() {
    relanded(3, 3).await;
}
