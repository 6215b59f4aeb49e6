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

/// Set every file's modification time under `dir` to `age` ago (Delta's log cleanup
/// decides expiry by the files' times).
fn age_files(dir: &std::path::Path, age: std::time::Duration) {
    let when = std::time::SystemTime::now() - age;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(when).unwrap();
        }
    }
}

/// Issue 14, item 1: a table whose last data commit is older than the log retention,
/// and that then gets only maintenance commits (a parked table, a dropped one, a
/// snapshot-only one), keeps its source position when Delta's expired-log cleanup
/// deletes the commit files behind a checkpoint.
#[tokio::test]
async fn the_position_survives_delta_log_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let mut w = TableWriter::open(&wh, schema()).await.unwrap();
    // Several small commits, so OPTIMIZE has files to bin-pack.
    for i in 0..4i64 {
        let b = batch(&[(Op::Create, i, "row", i + 1)]);
        for kind in [TableKind::History, TableKind::Current] {
            w.apply(kind, &b, 10 + i, state(i as u64 + 1))
                .await
                .unwrap();
        }
    }
    let logs: Vec<std::path::PathBuf> = [TableKind::History, TableKind::Current]
        .iter()
        .map(|k| w.url(*k).to_file_path().unwrap().join("_delta_log"))
        .collect();
    // The data commits are 60 days old: past the default 30-day log retention.
    for log in &logs {
        age_files(log, std::time::Duration::from_secs(60 * 86_400));
    }
    // Maintenance commits (OPTIMIZE, a checkpoint, VACUUM's two commits); the commits
    // after the checkpoint run Delta's post-commit cleanup of expired log files.
    w.maintain(Some(chrono::Duration::zero())).await.unwrap();
    w.maintain(Some(chrono::Duration::zero())).await.unwrap();
    for log in &logs {
        assert!(
            !log.join(format!("{:020}.json", 1)).exists(),
            "the test must make Delta clean up the old data commits in {}",
            log.display()
        );
    }
    // A restarted process reads the position it had.
    let w = TableWriter::open(&wh, schema()).await.unwrap_or_else(|e| {
        panic!("reopening after log cleanup: {e}");
    });
    for kind in [TableKind::History, TableKind::Current] {
        assert_eq!(w.committed(kind).txn, 4, "{kind:?}");
        assert_eq!(w.committed(kind).state, state(4), "{kind:?}");
    }
}
