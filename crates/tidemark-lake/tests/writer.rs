//! The table writer against a real local Delta table: state in the commit, a stale
//! writer refused, merges that collapse keys and apply deletes.

mod common;

use common::{batch, schema, state};
use tidemark_core::change::Op;

use tidemark_lake::{TableKind, TableWriter, Warehouse};

#[tokio::test]
async fn state_travels_with_the_commit_and_stale_writers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    common::stale_writer_is_refused(&wh).await;
}

#[tokio::test]
async fn merge_collapses_changes_per_key_and_applies_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let mut w = TableWriter::open(&wh, schema()).await.unwrap();
    let changes = batch(&[
        (Op::Create, 1, "one", 1),
        (Op::Create, 2, "two", 2),
        (Op::Update, 1, "uno", 3),
        (Op::Delete, 2, "two", 4),
        (Op::Create, 3, "three", 5),
        (Op::Update, 3, "tres", 5),
    ]);
    for kind in [TableKind::History, TableKind::Current] {
        w.apply(kind, &changes, 10, state(6)).await.unwrap();
    }
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    let cur = w.delta(TableKind::Current);
    cur.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("cur", cur.table_provider().await.unwrap())
        .unwrap();
    let rows = ctx
        .sql("SELECT id, name, _op FROM cur ORDER BY id")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = deltalake::arrow::util::pretty::pretty_format_batches(&rows)
        .unwrap()
        .to_string();
    assert_eq!(
        text,
        "+----+------+-----+\n| id | name | _op |\n+----+------+-----+\n| 1  | uno  | u   |\n| 3  | tres | u   |\n+----+------+-----+"
    );
    let hist = w.delta(TableKind::History);
    hist.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("hist", hist.table_provider().await.unwrap())
        .unwrap();
    let n = ctx
        .sql("SELECT count(*) FROM hist")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = deltalake::arrow::util::pretty::pretty_format_batches(&n)
        .unwrap()
        .to_string();
    assert!(
        text.contains("| 6 "),
        "every change is a history row, the delete as a tombstone: {text}"
    );
}
