//! The table writer against a real local Delta table: state in the commit, a stale
//! writer refused, merges that collapse keys and apply deletes.

mod common;

use common::{batch, schema, state};
use tidemark_core::change::Op;

use tidemark_lake::{TableKind, TableWriter, Warehouse};

/// A query's rows as a pretty-printed table.
async fn table_text(ctx: &deltalake::datafusion::prelude::SessionContext, sql: &str) -> String {
    let rows = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    deltalake::arrow::util::pretty::pretty_format_batches(&rows)
        .unwrap()
        .to_string()
}

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
    assert_eq!(
        table_text(&ctx, "SELECT id, name, _op FROM cur ORDER BY id").await,
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

/// A snapshot chunk is encoded once: the current table's commit adds copies of the
/// history's files, and reads back the current table's own columns.
#[tokio::test]
async fn snapshot_chunks_are_encoded_once_and_read_back_as_each_table() {
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let mut w = TableWriter::open(&wh, schema()).await.unwrap();
    common::land_snapshot_chunk(&mut w).await;
    let files = |kind: TableKind| {
        let mut f: Vec<(String, i64)> = w
            .delta(kind)
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .map(|f| (f.path().to_string(), f.size()))
            .collect();
        f.sort();
        f
    };
    let (cur_files, hist_files) = (files(TableKind::Current), files(TableKind::History));
    assert!(!cur_files.is_empty());
    assert_eq!(
        cur_files, hist_files,
        "the same files, byte for byte in size"
    );
    // On a local disk the copy is a hard link: no bytes written twice.
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let dir_of = |kind: TableKind| w.delta(kind).table_url().to_file_path().unwrap();
        for (path, _) in &cur_files {
            let ino = |kind| std::fs::metadata(dir_of(kind).join(path)).unwrap().ino();
            assert_eq!(ino(TableKind::Current), ino(TableKind::History), "{path}");
        }
    }
    for kind in [TableKind::Current, TableKind::History] {
        assert_eq!(w.committed(kind).txn, 1, "{kind:?} committed once");
    }

    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    for (name, kind) in [("cur", TableKind::Current), ("hist", TableKind::History)] {
        let t = w.delta(kind);
        t.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table(name, t.table_provider().await.unwrap())
            .unwrap();
    }
    let cols = |t: &str| {
        let ctx = ctx.clone();
        let t = t.to_string();
        async move {
            let df = ctx.table(t.as_str()).await.unwrap();
            df.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect::<Vec<_>>()
        }
    };
    assert!(!cols("cur").await.contains(&"_valid_from".to_string()));
    assert!(cols("hist").await.contains(&"_valid_from".to_string()));
    assert_eq!(
        table_text(&ctx, "SELECT id, name, _op FROM cur WHERE id >= 2 ORDER BY id").await,
        "+----+-------+-----+\n| id | name  | _op |\n+----+-------+-----+\n| 2  | two   | r   |\n| 3  | three | r   |\n+----+-------+-----+"
    );
}

/// Compaction writes the base as one key-ordered stream: every file is sorted by key,
/// and files hold disjoint key ranges, so a point lookup can skip all but one file and
/// all but a few pages of it. (Before, the sorted batches were dealt out to two
/// streams and interleaved, so each file spanned the whole key range.)
#[tokio::test]
async fn the_compacted_base_is_ordered_by_key_across_and_within_files() {
    use deltalake::arrow::array::{Array, Int32Array};
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let mut w = TableWriter::open(&wh, schema()).await.unwrap();
    w.start_merge_on_read().await.unwrap();
    // 60k keys in a scrambled order (several of DataFusion's 8192-row batches).
    let n: i64 = 60_000;
    let rows: Vec<(Op, i64, String, i64)> = (0..n)
        .map(|i| (Op::Create, (i * 7919) % n, format!("n{i}"), 1 + i))
        .collect();
    let refs: Vec<(Op, i64, &str, i64)> = rows
        .iter()
        .map(|(o, id, s, t)| (*o, *id, s.as_str(), *t))
        .collect();
    w.append_history(&batch(&refs), state(1)).await.unwrap();
    w.compact_current().await.unwrap().expect("a compaction");

    let root = w
        .delta(TableKind::Current)
        .table_url()
        .to_file_path()
        .unwrap();
    let mut ranges = Vec::new();
    let mut total = 0;
    for f in w
        .delta(TableKind::Current)
        .snapshot()
        .unwrap()
        .log_data()
        .iter()
    {
        let file = std::fs::File::open(root.join(f.path().as_ref())).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut ids = Vec::new();
        for b in reader {
            let b = b.unwrap();
            let c = b.column_by_name("id").unwrap();
            let c = c.as_any().downcast_ref::<Int32Array>().unwrap();
            ids.extend((0..c.len()).map(|i| c.value(i)));
        }
        assert!(
            ids.windows(2).all(|p| p[0] < p[1]),
            "{}: ids not ascending",
            f.path()
        );
        total += ids.len();
        if let (Some(a), Some(b)) = (ids.first(), ids.last()) {
            ranges.push((*a, *b));
        }
    }
    assert_eq!(total as i64, n);
    ranges.sort();
    assert!(
        ranges.windows(2).all(|p| p[0].1 < p[1].0),
        "files overlap in key range: {ranges:?}"
    );
}

/// Every file and directory under `dir`: (path, size, modified, contents).
fn tree(dir: &std::path::Path) -> Vec<(String, u64, std::time::SystemTime, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            let body = if meta.is_dir() {
                todo.push(e.path());
                Vec::new()
            } else {
                std::fs::read(e.path()).unwrap()
            };
            out.push((
                e.path().display().to_string(),
                meta.len(),
                meta.modified().unwrap(),
                body,
            ));
        }
    }
    out.sort();
    out
}

/// Another environment's warehouse opened read-only: its tables read as usual, and
/// every way of writing there is refused (the writer, moving a table aside, tidemark's
/// own files, a write through a loaded table's store), leaving every byte as it was.
#[tokio::test]
async fn a_read_only_warehouse_reads_and_cannot_write() {
    use object_store::ObjectStoreExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("prod");
    let wh = Warehouse::new(root.to_str().unwrap(), Default::default()).unwrap();
    let mut w = TableWriter::open(&wh, schema()).await.unwrap();
    let b = batch(&[(Op::Create, 1, "one", 1), (Op::Create, 2, "two", 2)]);
    for kind in [TableKind::History, TableKind::Current] {
        w.apply(kind, &b, 10, state(2)).await.unwrap();
    }
    drop(w);
    let before = tree(&root);

    let ro = Warehouse::open_read_only(root.to_str().unwrap(), Default::default()).unwrap();
    assert!(ro.is_read_only() && !wh.is_read_only());
    assert_eq!(ro.list().await.unwrap().len(), 1);
    let (hist, exists) = ro
        .delta_table(&ro.table_url("shop", "items", TableKind::History))
        .await
        .unwrap();
    assert!(exists);
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    hist.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("hist", hist.table_provider().await.unwrap())
        .unwrap();
    assert!(table_text(&ctx, "SELECT count(*) AS n FROM hist")
        .await
        .contains("| 2 "));
    // A table that is not there is not created.
    let (_, exists) = ro
        .delta_table(&ro.table_url("shop", "nothing", TableKind::Current))
        .await
        .unwrap();
    assert!(!exists && !root.join("shop").join("nothing").exists());

    let refused = |e: String| assert!(e.contains("read-only"), "{e}");
    refused(
        TableWriter::open(&ro, schema())
            .await
            .unwrap_err()
            .to_string(),
    );
    refused(ro.retire("shop", "items").await.unwrap_err().to_string());
    let store = hist.log_store().object_store(None);
    refused(
        store
            .put(&"_delta_log/00000000000000000009.json".into(), "{}".into())
            .await
            .unwrap_err()
            .to_string(),
    );
    refused(
        store
            .delete(&"_delta_log/00000000000000000000.json".into())
            .await
            .unwrap_err()
            .to_string(),
    );
    assert!(tidemark_lake::ViewDefs::open(&ro).is_err());
    // A missing directory is not created either.
    assert!(Warehouse::open_read_only(
        dir.path().join("nope").to_str().unwrap(),
        Default::default()
    )
    .is_err());
    assert!(!dir.path().join("nope").exists());

    assert!(before == tree(&root), "the read-only warehouse changed");
}
