//! A snapshot killed at random moments resumes with no row lost or doubled.

use std::time::{Duration, Instant};

use crate::support::{ok, TestDb};

const ROWS: i64 = 120_000;

fn commits(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn killed_snapshot_resumes_exactly() {
    let db = TestDb::new("resume").await;
    db.exec(
        "CREATE TABLE big (id INT PRIMARY KEY, k2 VARCHAR(20), v VARCHAR(60), n INT, \
         UNIQUE KEY (k2))",
    )
    .await;
    db.exec(&format!(
        "INSERT INTO big SELECT seq, CONCAT('k', seq), CONCAT('row number ', seq), seq % 97 \
         FROM seq_1_to_{ROWS}"
    ))
    .await;
    // A composite key too, so the keyset predicate with several columns is exercised.
    db.exec("CREATE TABLE pairs (a INT, b VARCHAR(10), v INT, PRIMARY KEY (a, b))")
        .await;
    db.exec("INSERT INTO pairs SELECT seq DIV 3, CONCAT('b', seq MOD 3), seq FROM seq_1_to_30000")
        .await;
    let config = db.config("snapshot_chunk_rows = 1500\nparallel_tables = 2");
    let log = db
        .warehouse()
        .join(db.name.to_lowercase())
        .join("big")
        .join("current")
        .join("_delta_log");

    // Kill after a few commits, then after many more, then at an arbitrary instant.
    let seed = std::process::id() as u64;
    for (round, target) in [3usize, 25, 0].into_iter().enumerate() {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
            // Each daemon its own API port: tests run side by side.
            .env("TIDEMARK_API_LISTEN", "127.0.0.1:0")
            .arg("--config")
            .arg(&config)
            .arg("snapshot")
            .env("TIDEMARK_LOG_FORMAT", "json")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let before = commits(&log);
        let random_ms = 50 + (seed * 7919 + round as u64 * 104_729) % 400;
        loop {
            let done = child.try_wait().unwrap().is_some();
            let reached = if target == 0 {
                start.elapsed() >= Duration::from_millis(random_ms)
            } else {
                commits(&log) >= before + target
            };
            if done || reached || start.elapsed() > Duration::from_secs(60) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if let Ok(None) = child.try_wait() {
            crate::support::record_fault("sigkill", "tidemark snapshot");
        }
        let _ = child.kill(); // SIGKILL: no chance to finish the commit in flight
        let _ = child.wait();
    }
    let out = ok(db.tidemark(&config, &["snapshot"]));
    assert!(out.contains("complete"), "{out}");
    crate::support::record_checked((ROWS + 30_000) as usize, "snapshot rows after kills");

    let s = db.name.to_lowercase();
    for (table, n) in [("big", ROWS), ("pairs", 30_000)] {
        for q in [
            format!("SELECT COUNT(*) FROM {s}.{table}"),
            format!("SELECT COUNT(*) FROM {s}_history.{table}"),
        ] {
            assert_eq!(db.sql_i64(&q).await, n, "{q}");
        }
    }
    assert_eq!(
        db.sql_i64(&format!("SELECT COUNT(DISTINCT id) FROM {s}.big"))
            .await,
        ROWS
    );
    assert_eq!(
        db.sql_i64(&format!("SELECT COUNT(DISTINCT id) FROM {s}_history.big"))
            .await,
        ROWS
    );
    assert_eq!(
        db.sql_i64(&format!(
            "SELECT COUNT(*) FROM (SELECT DISTINCT a, b FROM {s}.pairs)"
        ))
        .await,
        30_000
    );
    let sum_source = db.query_i64("SELECT SUM(n) FROM big").await;
    assert_eq!(
        db.sql_i64(&format!("SELECT SUM(n) FROM {s}.big")).await,
        sum_source
    );
    // A run after completion changes nothing.
    let out = ok(db.tidemark(&config, &["snapshot"]));
    assert!(out.contains("already complete"), "{out}");
    assert_eq!(
        db.sql_i64(&format!("SELECT COUNT(*) FROM {s}.big")).await,
        ROWS
    );
    db.drop().await;
}

/// The state a crash between the two commits of a chunk leaves (one table has the
/// chunk, the other not) is repaired exactly, whichever table is ahead.
#[tokio::test]
async fn crash_between_current_and_history_commits_is_repaired() {
    use mysql_async::prelude::Queryable;
    use tidemark_core::change::{ChangeBatchBuilder, Op};
    use tidemark_core::position::{KeyValue, SnapshotProgress, SourceState};
    use tidemark_lake::{TableKind, TableWriter, Warehouse};

    for ahead in [TableKind::Current, TableKind::History] {
        let db = TestDb::new(&format!("repair{}", ahead.dir())).await;
        db.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
            .await;
        db.exec("INSERT INTO t SELECT seq, CONCAT('v', seq) FROM seq_1_to_5000")
            .await;
        let config_path = db.config("snapshot_chunk_rows = 700");
        let config = tidemark_core::config::Config::from_file(&config_path).unwrap();
        let source = tidemark_mysql::connect::Source::connect(
            "main",
            config.source_for("dev", "main").unwrap(),
        )
        .await
        .unwrap();
        let table = tidemark_mysql::discover::discover(&source)
            .await
            .unwrap()
            .remove(0);
        let wh = Warehouse::new(db.warehouse().to_str().unwrap(), Default::default()).unwrap();

        // Commit keys 1..=1000 to one table only.
        let rows: Vec<(i32, String)> = db
            .conn()
            .await
            .query("SELECT id, v FROM t WHERE id <= 1000 ORDER BY id")
            .await
            .unwrap();
        let mut b = ChangeBatchBuilder::new(table.schema.clone(), rows.len());
        for (id, v) in &rows {
            let id = id.to_string();
            b.push_text_row(
                [Some(id.as_bytes()), Some(v.as_bytes())],
                Op::Read,
                1,
                "snapshot",
                0,
            )
            .unwrap();
        }
        let batch = b.finish().unwrap();
        let state = SourceState {
            source: "main".into(),
            source_table: table.schema.name.source(),
            snapshot: Some(SnapshotProgress {
                last_key: Some(vec![KeyValue::Text("1000".into())]),
                rows: 1000,
                started_at_us: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut w = TableWriter::open(&wh, table.schema.clone()).await.unwrap();
        w.append(ahead, &[batch], 1, state).await.unwrap();
        drop(w);

        let out = crate::support::ok(db.tidemark(&config_path, &["snapshot"]));
        assert!(out.contains("repairing a chunk"), "{out}");
        let s = db.name.to_lowercase();
        for q in [
            format!("SELECT COUNT(*) FROM {s}.t"),
            format!("SELECT COUNT(DISTINCT id) FROM {s}.t"),
            format!("SELECT COUNT(*) FROM {s}_history.t"),
            format!("SELECT COUNT(DISTINCT id) FROM {s}_history.t"),
        ] {
            assert_eq!(
                db.sql_i64(&q).await,
                5000,
                "{q} ({} was ahead)",
                ahead.dir()
            );
        }
        source.close().await;
        db.drop().await;
    }
}

/// String keys with quotes, backslashes and non-ASCII text resume correctly in the
/// column's collation (keys are sent as `_utf8mb4 X'..'` literals, which mean the
/// same in every sql_mode).
#[tokio::test]
async fn string_keys_with_quotes_and_backslashes_resume() {
    let db = TestDb::new("strkeys").await;
    db.exec("CREATE TABLE s (k VARCHAR(40) PRIMARY KEY, n INT)")
        .await;
    db.exec(
        "INSERT INTO s SELECT CONCAT(IF(seq % 2 = 0, 'K''', 'ä'), LPAD(seq, 5, '0'), IF(seq % 3 = 0, '\\\\x', '')), seq FROM seq_1_to_2000",
    )
    .await;
    let config = db.config("snapshot_chunk_rows = 7");
    let out = crate::support::ok(db.tidemark(&config, &["snapshot"]));
    assert!(out.contains("complete"), "{out}");
    let s = db.name.to_lowercase();
    assert_eq!(
        db.sql_i64(&format!("SELECT COUNT(DISTINCT k) FROM {s}.s"))
            .await,
        2000
    );
    assert_eq!(
        db.sql_i64(&format!("SELECT COUNT(*) FROM {s}_history.s"))
            .await,
        2000
    );
    db.drop().await;
}

/// Issue 14, item 5: a snapshot resumed later reads the rest of the table as of the
/// resume, so those rows are stamped with the resume's instant, not the first run's
/// start: a value changed between the two runs never appears in history before the
/// change was made.
#[tokio::test]
async fn a_resumed_snapshot_stamps_rows_with_its_own_read_instant() {
    const N: i64 = 30_000;
    let db = TestDb::new("resume_ts").await;
    db.exec("CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(40))")
        .await;
    db.exec(&format!(
        "INSERT INTO big SELECT seq, CONCAT('before ', seq) FROM seq_1_to_{N}"
    ))
    .await;
    let config = db.config("snapshot_chunk_rows = 1000");
    let log = db
        .warehouse()
        .join(db.name.to_lowercase())
        .join("big")
        .join("history")
        .join("_delta_log");
    // A first run, killed after a few chunks.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        // Each daemon its own API port: tests run side by side.
        .env("TIDEMARK_API_LISTEN", "127.0.0.1:0")
        .arg("--config")
        .arg(&config)
        .arg("snapshot")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while commits(&log) < 4 && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let s = db.name.to_lowercase();
    let landed = db
        .sql_i64(&format!("SELECT COUNT(*) FROM {s}_history.big"))
        .await;
    assert!(
        landed > 0 && landed < N - 5_000,
        "the first run must stop part-way (landed {landed} of {N})"
    );

    // The source changes a row the first run had not reached, after it stopped.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let changed_at_us = chrono::Utc::now().timestamp_micros();
    db.exec(&format!("UPDATE big SET v = 'after' WHERE id = {N}"))
        .await;
    ok(db.tidemark(&config, &["snapshot"]));

    assert_eq!(
        db.sql_i64(&format!("SELECT COUNT(*) FROM {s}_history.big"))
            .await,
        N
    );
    // The version that holds 'after' starts no earlier than the change.
    let early = db
        .sql_i64(&format!(
            "SELECT COUNT(*) FROM {s}_history.big WHERE id = {N} AND v = 'after' \
             AND CAST(_valid_from AS BIGINT) < {changed_at_us}"
        ))
        .await;
    assert_eq!(
        early, 0,
        "a value from after the change is stamped before it"
    );
    // Rows the first run read keep its (earlier) instant.
    let first = db
        .sql_i64(&format!(
            "SELECT COUNT(*) FROM {s}_history.big WHERE CAST(_valid_from AS BIGINT) < {changed_at_us}"
        ))
        .await;
    assert_eq!(first, landed, "rows of the first run keep its read instant");
    db.drop().await;
}
