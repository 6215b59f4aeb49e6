//! The table writer against a real local Delta table: state in the commit, a stale
//! writer refused, merges that collapse keys and apply deletes.

mod common;

use common::{batch, schema, state};
use tidemark_core::change::Op;

use tidemark_lake::{Error, TableKind, TableWriter, Warehouse};

#[tokio::test]
async fn state_travels_with_the_commit_and_stale_writers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let mut a = TableWriter::open(&wh, schema()).await.unwrap();
    assert_eq!(a.committed(TableKind::Current).txn, 0);
    let b1 = batch(&[(Op::Create, 1, "one", 1), (Op::Create, 2, "two", 2)]);
    a.apply(TableKind::Current, &b1, 10, state(2))
        .await
        .unwrap();
    a.apply(TableKind::History, &b1, 10, state(2))
        .await
        .unwrap();

    // A second writer (a restarted process) reads the committed state...
    let mut b = TableWriter::open(&wh, schema()).await.unwrap();
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
