//! Binlog forms that were misread before (issue 14, item 4), each against a real
//! MariaDB: savepoints and partial rollbacks inside a transaction, a comment before
//! TRUNCATE, and MariaDB's compressed events (`log_bin_compress`). After each, the
//! lake equals the source, and a source transaction lands whole at its own commit
//! position.

use mysql_async::prelude::Queryable;

use crate::support::{ok, rows_of, source_rows, TestDb};

/// A config with its own replica server id (the server disconnects a replica when
/// another connects with the same id, and tests run at once).
fn config(db: &TestDb, salt: u32) -> std::path::PathBuf {
    db.config(&format!(
        "flush_interval_ms = 200\nserver_id = {}",
        200_000 + salt * 10_000 + std::process::id() % 10_000
    ))
}

/// `sql` at the source, as sorted `a|b|…` lines.
async fn source_lines(db: &TestDb, sql: &str) -> Vec<String> {
    source_rows(&mut db.conn().await, sql).await
}

/// `sql` in the lake, as sorted `a|b|…` lines.
async fn lake_lines(db: &TestDb, sql: &str) -> Vec<String> {
    rows_of(&db.sql(sql).await)
}

#[tokio::test]
async fn savepoints_and_partial_rollbacks_land_what_the_source_committed() {
    let db = TestDb::new("savepoints").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
        .await;
    // A non-transactional table: writing it after a savepoint makes the server log
    // `ROLLBACK TO` with the undone rows before it, instead of dropping them.
    db.exec("CREATE TABLE m (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=MyISAM")
        .await;
    db.exec("CREATE TABLE k (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
        .await;
    db.exec("INSERT INTO t VALUES (1, 1)").await;
    db.exec("INSERT INTO k VALUES (1, 1), (2, 2), (3, 3)").await;
    let config = config(&db, 1);
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));

    let mut c = db.conn().await;
    for sql in [
        // Savepoint, a partial rollback that only InnoDB saw (the server drops the rows
        // from its cache), release.
        "BEGIN",
        "INSERT INTO t VALUES (10, 10)",
        "SAVEPOINT a",
        "INSERT INTO t VALUES (11, 11)",
        "ROLLBACK TO SAVEPOINT a",
        "INSERT INTO t VALUES (12, 12)",
        "RELEASE SAVEPOINT a",
        "COMMIT",
        // A partial rollback after a MyISAM write: the binlog carries the undone
        // rows (21, the update of 1) followed by `ROLLBACK TO b`.
        "BEGIN",
        "INSERT INTO t VALUES (20, 20)",
        "SAVEPOINT b",
        "INSERT INTO m VALUES (20, 20)",
        "INSERT INTO t VALUES (21, 21)",
        "UPDATE t SET v = 99 WHERE id = 1",
        "ROLLBACK TO SAVEPOINT b",
        "INSERT INTO t VALUES (22, 22)",
        "COMMIT",
        // Statements after a savepoint: one transaction, one position.
        "BEGIN",
        "INSERT INTO t VALUES (30, 30)",
        "SAVEPOINT c",
        "UPDATE t SET v = 31 WHERE id = 30",
        "INSERT INTO t VALUES (31, 31)",
        "COMMIT",
        // A comment before TRUNCATE (ORMs and proxies add them): every row goes.
        "/* app:cleanup */ TRUNCATE TABLE k",
        "INSERT INTO k VALUES (9, 9)",
        // CREATE TABLE … SELECT: MariaDB logs the CREATE inside the transaction that
        // holds the new table's rows.
        "CREATE TABLE ctas (PRIMARY KEY (id)) SELECT id, v FROM t",
    ] {
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    drop(c);
    let out = ok(db.tidemark(&config, &["run", "--until-caught-up"]));

    let s = &db.name;
    for table in ["t", "m", "k", "ctas"] {
        let src = source_lines(&db, &format!("SELECT id, v FROM {table}")).await;
        let lake = lake_lines(&db, &format!("SELECT id, v FROM {s}.{table}")).await;
        assert_eq!(lake, src, "current {table} equals the source\n{out}");
    }
    // History: one version per committed change, none for the rolled-back ones.
    let versions = lake_lines(&db, &format!("SELECT id, v FROM {s}_history.t")).await;
    let mut want = [
        "1|1", "10|10", "12|12", "20|20", "22|22", "30|30", "30|31", "31|31",
    ];
    want.sort();
    assert_eq!(versions, want, "history of t");
    // The third transaction's changes carry one position: its commit's.
    let positions = lake_lines(
        &db,
        &format!("SELECT count(DISTINCT _source_pos) FROM {s}_history.t WHERE id IN (30, 31)"),
    )
    .await;
    assert_eq!(positions, ["1"], "a transaction is never split");
    db.drop().await;
}

/// Turns MariaDB's binlog compression on for as long as it lives (it is a global
/// setting; the tests that run meanwhile read compressed events too, which they must).
struct Compressed(mysql_async::Pool);

impl Compressed {
    async fn on() -> Self {
        let pool = mysql_async::Pool::new(crate::support::server_url().as_str());
        let mut c = pool.get_conn().await.unwrap();
        c.query_drop("SET GLOBAL log_bin_compress = ON, GLOBAL log_bin_compress_min_len = 10")
            .await
            .unwrap();
        Self(pool)
    }

    async fn off(self) {
        let mut c = self.0.get_conn().await.unwrap();
        c.query_drop("SET GLOBAL log_bin_compress = OFF")
            .await
            .unwrap();
        drop(c);
        let _ = self.0.disconnect().await;
    }
}

#[tokio::test]
async fn compressed_binlog_events_are_decoded() {
    let db = TestDb::new("compressed").await;
    db.exec("CREATE TABLE c (id INT PRIMARY KEY, v INT NOT NULL, s TEXT NULL)")
        .await;
    db.exec("INSERT INTO c SELECT seq, seq, CONCAT('row ', seq) FROM seq_1_to_50")
        .await;
    let config = config(&db, 2);
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));

    let mut conn = db.conn().await;
    let (file, pos): (String, u64) = {
        let row: mysql_async::Row = conn
            .query_first("SHOW MASTER STATUS")
            .await
            .unwrap()
            .unwrap();
        (row.get(0).unwrap(), row.get(1).unwrap())
    };
    drop(conn);
    let compressed = Compressed::on().await;
    for sql in [
        "UPDATE c SET s = REPEAT('x', 400), v = v + 1000 WHERE id <= 25",
        "INSERT INTO c SELECT seq, seq, REPEAT('y', 300) FROM seq_51_to_80",
        "DELETE FROM c WHERE id BETWEEN 40 AND 45",
        // DDL in a compressed query event: the table must still evolve.
        "ALTER TABLE c ADD COLUMN w INT NULL",
        "UPDATE c SET w = id * 2 WHERE id < 10",
    ] {
        db.exec(sql).await;
    }
    // The test is only worth its name if the server really compressed them.
    let mut conn = db.conn().await;
    let events: Vec<mysql_async::Row> = conn
        .query(format!("SHOW BINLOG EVENTS IN '{file}' FROM {pos}"))
        .await
        .unwrap();
    drop(conn);
    compressed.off().await;
    let kinds: Vec<String> = events
        .iter()
        .map(|r| r.get::<String, _>(2).unwrap_or_default())
        .collect();
    for want in [
        "Query_compressed",
        "Update_rows_compressed_v1",
        "Write_rows_compressed_v1",
        "Delete_rows_compressed_v1",
    ] {
        assert!(
            kinds.iter().any(|k| k == want),
            "the server wrote no {want} event: {kinds:?}"
        );
    }

    let out = ok(db.tidemark(&config, &["run", "--until-caught-up"]));
    let s = &db.name;
    let src = source_lines(&db, "SELECT id, v, s, COALESCE(w, -1) FROM c").await;
    let lake = lake_lines(&db, &format!("SELECT id, v, s, COALESCE(w, -1) FROM {s}.c")).await;
    assert_eq!(lake.len(), src.len(), "row count\n{out}");
    assert!(lake == src, "current c equals the source\n{out}");
    db.drop().await;
}

/// Rows in a table's stored history log, read straight from its Delta table.
async fn history_rows(db: &TestDb, table: &str) -> i64 {
    use deltalake::datafusion::prelude::SessionContext;
    let dir = db
        .warehouse()
        .join(db.name.to_lowercase())
        .join(table)
        .join("history");
    let url = url::Url::from_directory_path(&dir).unwrap();
    let t = deltalake::open_table(url).await.expect("open history");
    let ctx = SessionContext::new();
    ctx.register_table("h", t.table_provider().await.unwrap())
        .unwrap();
    let b = ctx
        .sql("SELECT count(*) FROM h")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    b[0].column(0)
        .as_any()
        .downcast_ref::<deltalake::arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

/// Issue 14, item 4: one table whose commits fail for good (here its Delta log is
/// damaged) is parked, with the reason; the other tables of the source keep flowing.
#[tokio::test]
async fn a_table_whose_commits_fail_is_parked_and_the_others_flow() {
    use crate::support::{kill, spawn_run_with, wait_for_log};
    let db = TestDb::new("commitfail").await;
    for t in ["a", "b"] {
        db.exec(&format!(
            "CREATE TABLE {t} (id INT PRIMARY KEY, v INT NOT NULL)"
        ))
        .await;
        db.exec(&format!("INSERT INTO {t} VALUES (1, 1)")).await;
    }
    let config = config(&db, 3);
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));
    let child = spawn_run_with(&config, &[]);
    wait_for_log(
        &config,
        "\"streaming\"",
        1,
        std::time::Duration::from_secs(60),
    );
    // Damage a's history log while `run` streams: its next commit file exists and is
    // not JSON, so every commit to it fails the same way.
    let log = db
        .warehouse()
        .join(db.name.to_lowercase())
        .join("a")
        .join("history")
        .join("_delta_log");
    let next = std::fs::read_dir(&log)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".json")
                .and_then(|v| v.parse::<u64>().ok())
        })
        .max()
        .unwrap()
        + 1;
    std::fs::write(
        log.join(format!("{next:020}.json")),
        "this is not a commit\n",
    )
    .unwrap();
    db.exec("INSERT INTO a VALUES (2, 2)").await;
    db.exec("INSERT INTO b VALUES (2, 2)").await;
    wait_for_log(
        &config,
        "table parked",
        1,
        std::time::Duration::from_secs(60),
    );
    // b goes on after a stopped.
    db.exec("INSERT INTO b VALUES (3, 3)").await;
    let start = std::time::Instant::now();
    while history_rows(&db, "b").await < 3 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "b's changes after a was parked did not land:\n{}",
            std::fs::read_to_string(config.with_file_name("run.log")).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    kill(child);
    let log = std::fs::read_to_string(config.with_file_name("run.log")).unwrap();
    let parked = log
        .lines()
        .find(|l| l.contains("table parked"))
        .expect("a parked line");
    assert!(
        parked.contains(&format!("{}.a", db.name))
            && parked.contains("its commit failed with an error that trying again would repeat"),
        "{parked}"
    );
    db.drop().await;
}

/// A selected table that cannot be captured (no primary key, none configured) parks
/// with the reason; it does not stop its source: the other tables land and stream.
#[tokio::test]
async fn a_table_without_a_key_parks_and_the_others_flow() {
    let db = TestDb::new("nokey").await;
    db.exec("CREATE TABLE keyed (id INT PRIMARY KEY, v INT)")
        .await;
    db.exec("CREATE TABLE scratch (v INT)").await;
    db.exec("INSERT INTO keyed VALUES (1, 1), (2, 2)").await;
    let config = config(&db, 4);
    let out = db.tidemark(&config, &["run", "--until-caught-up"]);
    let t = crate::support::text(&out);
    // --until-caught-up says which tables are parked, and why.
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("caught up, but 1 table(s) are parked")
            && t.contains(&format!("{}.scratch", db.name))
            && t.contains("primary key"),
        "{t}"
    );
    db.exec("INSERT INTO keyed VALUES (3, 3)").await;
    let _ = db.tidemark(&config, &["run", "--until-caught-up"]);
    let s = &db.name;
    assert_eq!(
        lake_lines(&db, &format!("SELECT id FROM {s}.keyed")).await,
        ["1", "2", "3"]
    );
    db.drop().await;
}
