//! Change capture from the binlog, end to end: snapshot, a workload of multi-statement
//! transactions over several tables, `tidemark run` SIGKILLed at random moments and
//! restarted, then: every current table equals the source, history holds exactly one
//! version per source change, and AS OF answers equal the source states recorded at
//! those instants.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::support::{
    kill, ok, rows_of, source_rows, spawn_run_with, stop_cleanly, text, Lcg, TestDb,
};

/// Equal row sets, or a failure showing only the rows that differ.
fn assert_same(what: &str, lake: Vec<String>, source: Vec<String>) {
    if lake == source {
        crate::support::record_checked(lake.len(), what);
        return;
    }
    let only_lake: Vec<_> = lake
        .iter()
        .filter(|r| !source.contains(r))
        .take(8)
        .collect();
    let only_src: Vec<_> = source
        .iter()
        .filter(|r| !lake.contains(r))
        .take(8)
        .collect();
    panic!(
        "{what}: lake has {} rows, source {}\nonly in the lake: {only_lake:#?}\nonly at the source: {only_src:#?}",
        lake.len(),
        source.len()
    );
}

/// Columns compared on both sides, spelled so both print the same text.
const ACCOUNTS_SRC: &str = "SELECT id, name, CAST(balance * 100 AS SIGNED), status, flags, \
    COALESCE(note, 'NULL'), big, CAST(UNIX_TIMESTAMP(updated) * 1000 AS SIGNED) FROM accounts";
fn accounts_lake(from: &str) -> String {
    format!(
        "SELECT id, name, CAST(balance * 100 AS BIGINT), status, flags, COALESCE(note, 'NULL'), \
         CAST(big AS VARCHAR), CAST(CAST(updated AS BIGINT) / 1000 AS BIGINT) FROM {from}"
    )
}
const LINES_SRC: &str = "SELECT inv, line, qty FROM invoice_lines";
fn lines_lake(from: &str) -> String {
    format!("SELECT inv, line, qty FROM {from}")
}

/// Config for a test that streams: its own replica server id, because the server
/// disconnects a replica when another connects with the same id (tests run at once).
fn replica_config() -> String {
    format!(
        "flush_interval_ms = 200\nserver_id = {}",
        100_000 + std::process::id()
    )
}

#[derive(Default)]
struct Counts {
    by_op: BTreeMap<(&'static str, &'static str), i64>,
}

/// Start `tidemark run` in the background, its log appended to `run.log` beside the
/// config (shown by [`stop_cleanly`] when it does not stop cleanly).
fn spawn_run(config: &std::path::Path) -> Child {
    spawn_run_with(config, &[])
}

/// A plain HTTP/1.0 GET on loopback; the body, or `None` while nothing listens yet.
fn try_http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or(out),
    )
}

/// One transaction of 1..6 statements over both tables; counts what it changed.
async fn transaction(
    conn: &mut mysql_async::Conn,
    rng: &mut Lcg,
    next_id: &mut i64,
    counts: &mut Counts,
) {
    let mut tx = conn
        .start_transaction(Default::default())
        .await
        .expect("begin");
    for _ in 0..1 + rng.next(6) {
        match rng.next(10) {
            0..=3 => {
                let id = *next_id;
                *next_id += 1;
                tx.exec_drop(
                    "INSERT INTO accounts VALUES (?, ?, ?, NOW(3), ?, ?, ?, ?)",
                    (
                        id,
                        format!("acct {id}"),
                        format!("{}.{:02}", rng.next(100_000), rng.next(100)),
                        if rng.next(2) == 0 { "open" } else { "closed" },
                        ["a", "b,c", ""][rng.next(3) as usize],
                        if rng.next(3) == 0 {
                            None
                        } else {
                            Some(format!("n{id}"))
                        },
                        u64::MAX - rng.next(1000),
                    ),
                )
                .await
                .expect("insert");
                *counts.by_op.entry(("accounts", "c")).or_default() += 1;
                let lines = 1 + rng.next(3);
                for line in 0..lines {
                    tx.exec_drop(
                        "INSERT INTO invoice_lines VALUES (?, ?, ?)",
                        (id, line, rng.next(50)),
                    )
                    .await
                    .expect("insert line");
                }
                *counts.by_op.entry(("invoice_lines", "c")).or_default() += lines as i64;
            }
            4..=7 => {
                let id = 1 + rng.next(*next_id as u64 - 1) as i64;
                tx.exec_drop(
                    "UPDATE accounts SET balance = balance + 1.25, updated = NOW(3), \
                     flags = IF(flags = 'a', 'a,c', 'a') WHERE id = ?",
                    (id,),
                )
                .await
                .expect("update");
                *counts.by_op.entry(("accounts", "u")).or_default() += tx.affected_rows() as i64;
                tx.exec_drop(
                    "UPDATE invoice_lines SET qty = qty + 1 WHERE inv = ?",
                    (id,),
                )
                .await
                .expect("update lines");
                *counts.by_op.entry(("invoice_lines", "u")).or_default() +=
                    tx.affected_rows() as i64;
            }
            _ => {
                let id = 1 + rng.next(*next_id as u64 - 1) as i64;
                tx.exec_drop("DELETE FROM invoice_lines WHERE inv = ?", (id,))
                    .await
                    .expect("delete lines");
                *counts.by_op.entry(("invoice_lines", "d")).or_default() +=
                    tx.affected_rows() as i64;
                tx.exec_drop("DELETE FROM accounts WHERE id = ?", (id,))
                    .await
                    .expect("delete");
                *counts.by_op.entry(("accounts", "d")).or_default() += tx.affected_rows() as i64;
            }
        }
    }
    tx.commit().await.expect("commit");
}

/// Sleep to the middle of the next wall-clock second and return that instant as
/// SQL text: every transaction so far has a binlog second before it, every later one
/// a binlog second after it.
async fn mid_second() -> String {
    let now = chrono::Utc::now();
    let next = now.timestamp_millis() / 1000 * 1000 + 1500;
    tokio::time::sleep(Duration::from_millis(
        (next - now.timestamp_millis()) as u64,
    ))
    .await;
    let at = chrono::DateTime::from_timestamp_millis(next).unwrap();
    at.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

async fn rest_of_second() {
    let ms = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis((1000 - ms % 1000 + 20) as u64)).await;
}

#[tokio::test]
async fn binlog_capture_survives_sigkill_exactly_once() {
    let db = TestDb::new("cdc").await;
    db.exec(
        "CREATE TABLE accounts (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, \
         balance DECIMAL(12,2) NOT NULL, updated DATETIME(3) NOT NULL, \
         status ENUM('open','closed') NOT NULL, flags SET('a','b','c') NOT NULL, \
         note TEXT NULL, big BIGINT UNSIGNED NOT NULL)",
    )
    .await;
    db.exec(
        "CREATE TABLE invoice_lines (inv INT, line INT, qty INT NOT NULL, PRIMARY KEY (inv, line))",
    )
    .await;
    db.exec(
        "INSERT INTO accounts SELECT seq, CONCAT('seed ', seq), seq * 1.5, \
         '2026-01-01 00:00:00.250', 'open', 'b', NULL, 18446744073709551615 - seq \
         FROM seq_1_to_200",
    )
    .await;
    db.exec("INSERT INTO invoice_lines SELECT seq, 0, seq % 7 FROM seq_1_to_200")
        .await;
    let config = db.config(&replica_config());
    let s = db.name.to_lowercase();

    // First run: snapshot, then stream until caught up.
    let out = ok(db.tidemark(&config, &["run", "--until-caught-up"]));
    assert!(out.contains("caught up"), "{out}");

    let mut conn = db.conn().await;
    let mut rng = Lcg(std::process::id() as u64);
    let mut next_id = 201i64;
    let mut counts = Counts::default();
    // (instant, accounts rows, lines rows) recorded from the source.
    let mut checkpoints: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();

    let mut child = spawn_run(&config);
    for round in 0..6 {
        let n = 20 + rng.next(40);
        for _ in 0..n {
            transaction(&mut conn, &mut rng, &mut next_id, &mut counts).await;
            if rng.next(25) == 0 {
                // SIGKILL at an arbitrary moment of the workload, then restart.
                kill(child);
                child = spawn_run(&config);
            }
        }
        if round % 2 == 0 {
            let at = mid_second().await;
            let acc = source_rows(&mut conn, ACCOUNTS_SRC).await;
            let lines = source_rows(&mut conn, LINES_SRC).await;
            checkpoints.push((at, acc, lines));
            rest_of_second().await;
        }
        if round == 3 {
            // Compaction and maintenance while `run` streams: the current table's base
            // moves, history files are bin-packed, and nothing may change in the answers.
            ok(db.tidemark(&config, &["maintain", "--no-vacuum"]));
        }
        tokio::time::sleep(Duration::from_millis(rng.next(700))).await;
        kill(child);
        child = spawn_run(&config);
    }
    // A graceful stop (SIGTERM) finishes the commit in flight; give the last process
    // time to start streaming and receive the rest first.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop_cleanly(child, &config);

    let out = db.tidemark(&config, &["run", "--until-caught-up"]);
    assert!(out.status.success(), "{}", text(&out));
    let status = ok(db.tidemark(&config, &["status"]));
    assert!(status.contains("streaming"), "{status}");

    // Current tables equal the source.
    let acc_now = source_rows(&mut conn, ACCOUNTS_SRC).await;
    let lines_now = source_rows(&mut conn, LINES_SRC).await;
    assert_same(
        "current accounts",
        rows_of(&db.sql(&accounts_lake(&format!("{s}.accounts"))).await),
        acc_now.clone(),
    );
    assert_same(
        "current invoice_lines",
        rows_of(&db.sql(&lines_lake(&format!("{s}.invoice_lines"))).await),
        lines_now,
    );

    // History: exactly one stored version per source change, none twice.
    for (table, seeded) in [("accounts", 200), ("invoice_lines", 200)] {
        let log = history_log_counts(&db, &s, table).await;
        let mut want: BTreeMap<String, i64> = BTreeMap::new();
        want.insert("r".into(), seeded);
        for ((t, op), n) in &counts.by_op {
            if *t == table && *n > 0 {
                want.insert(op.to_string(), *n);
            }
        }
        assert_eq!(log.0, want, "history of {table} by _op");
        assert_eq!(log.1, 0, "{table}: versions stored twice");
    }

    // Compacting once more changes nothing visible.
    let out = ok(db.tidemark(&config, &["maintain"]));
    assert!(out.contains("changes folded"), "{out}");
    assert_same(
        "current accounts after compaction",
        rows_of(&db.sql(&accounts_lake(&format!("{s}.accounts"))).await),
        acc_now.clone(),
    );

    // AS OF equals the source at each recorded instant.
    assert!(!checkpoints.is_empty());
    for (at, acc, lines) in &checkpoints {
        let asof = |t: &str| format!("{s}.{t} FOR SYSTEM_TIME AS OF TIMESTAMP '{at}'");
        assert_same(
            &format!("accounts AS OF {at}"),
            rows_of(&db.sql(&accounts_lake(&asof("accounts"))).await),
            acc.clone(),
        );
        assert_same(
            &format!("invoice_lines AS OF {at}"),
            rows_of(&db.sql(&lines_lake(&asof("invoice_lines"))).await),
            lines.clone(),
        );
    }
    drop(conn);
    db.drop().await;
}

/// Rows of a history log by `_op`, and how many (`_source_pos`, `_seq`, key) occur more
/// than once, read straight from the stored Delta table (tombstones included).
async fn history_log_counts(
    db: &TestDb,
    schema: &str,
    table: &str,
) -> (BTreeMap<String, i64>, i64) {
    use deltalake::datafusion::prelude::SessionContext;
    let url = url_of(&db.warehouse().join(schema).join(table).join("history"));
    let t = deltalake::open_table(url).await.expect("open history");
    let ctx = SessionContext::new();
    ctx.register_table("h", t.table_provider().await.unwrap())
        .unwrap();
    let by_op = ctx
        .sql("SELECT _op, COUNT(*) FROM h GROUP BY _op")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for r in rows_of(&by_op) {
        let (op, n) = r.split_once('|').unwrap();
        out.insert(op.to_string(), n.parse().unwrap());
    }
    let key = if table == "accounts" {
        "id"
    } else {
        "inv, line"
    };
    let dup = ctx
        .sql(&format!(
            "SELECT COUNT(*) FROM (SELECT _source_pos, _seq, {key}, _op FROM h \
             WHERE _op <> 'r' GROUP BY _source_pos, _seq, {key}, _op HAVING COUNT(*) > 1)"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let dups: i64 = rows_of(&dup)[0].parse().unwrap();
    (out, dups)
}

fn url_of(p: &std::path::Path) -> url::Url {
    url::Url::from_directory_path(p).expect("absolute path")
}

/// Each schema change of the stream, applied while `run` streams: column changes
/// evolve the table in place (history from before the change stays readable, under
/// the column's new name), TRUNCATE and DROP TABLE close the rows in history, new
/// tables are snapshotted and captured, and the changes that cannot carry old values
/// over exactly (narrowing, a non-NULL default) park only their table, with a message
/// naming the table, the binlog position and the way out. A restart applies nothing
/// twice.
#[tokio::test]
async fn schema_changes_evolve_tables_in_place() {
    let db = TestDb::new("ddl").await;
    let tables = [
        "t_index",
        "t_add",
        "t_rename",
        "t_change",
        "t_widen",
        "t_dropcol",
        "t_narrow",
        "t_default",
        "t_computed",
        "t_trunc",
        "t_drop",
        "t_rtab",
        "t_other",
    ];
    for t in tables {
        db.exec(&format!(
            "CREATE TABLE {t} (id INT PRIMARY KEY, v INT NOT NULL, x INT NULL)"
        ))
        .await;
        db.exec(&format!(
            "INSERT INTO {t} SELECT seq, seq, seq * 10 FROM seq_1_to_10"
        ))
        .await;
    }
    let config = db.config(&replica_config());
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut child = spawn_run(&config);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Changes before the DDL (row 11 everywhere, an update of row 1)...
    for t in tables {
        db.exec(&format!("INSERT INTO {t} VALUES (11, 11, 110)"))
            .await;
        db.exec(&format!("UPDATE {t} SET v = 100 WHERE id = 1"))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut conn = db.conn().await;
    let before: String = conn
        .query_first("SELECT DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%d %H:%i:%s')")
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // ...the DDL...
    for sql in [
        "ALTER TABLE t_index ADD INDEX (v)",
        "ALTER TABLE t_add ADD COLUMN w VARCHAR(20) NULL",
        "ALTER TABLE t_rename RENAME COLUMN v TO v2",
        "ALTER TABLE t_change CHANGE v v3 BIGINT NOT NULL",
        "ALTER TABLE t_widen MODIFY v BIGINT NOT NULL",
        "ALTER TABLE t_dropcol DROP COLUMN x",
        "ALTER TABLE t_narrow MODIFY v SMALLINT NOT NULL",
        "ALTER TABLE t_default ADD COLUMN w INT NOT NULL DEFAULT 5",
        "ALTER TABLE t_computed ADD COLUMN w DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP",
        "TRUNCATE TABLE t_trunc",
        "DROP TABLE t_drop",
        "RENAME TABLE t_rtab TO t_rtab2",
        "CREATE TABLE t_new (id INT PRIMARY KEY, v INT NOT NULL, x INT NULL)",
    ] {
        db.exec(sql).await;
    }
    // SIGKILL while `run` works through the statements (each evolution is two
    // commits, a default fill a third), twice, at moments that differ per run.
    let mut rng = Lcg(u64::from(std::process::id()));
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(100 + rng.next(900))).await;
        kill(child);
        child = spawn_run(&config);
    }
    kill(child);
    let child = spawn_run_with(&config, &["--metrics-listen", &addr]);
    // ...and changes after it, in the new shapes.
    for t in ["t_index", "t_trunc", "t_rtab2", "t_new", "t_other"] {
        db.exec(&format!("INSERT INTO {t} VALUES (12, 12, 120)"))
            .await;
    }
    for sql in [
        "INSERT INTO t_add VALUES (12, 12, 120, 'w12')",
        "UPDATE t_add SET w = 'w2' WHERE id = 2",
        "INSERT INTO t_rename VALUES (12, 12, 120)",
        "UPDATE t_rename SET v2 = 200 WHERE id = 2",
        "INSERT INTO t_change VALUES (12, 1099511627776, 120)",
        "INSERT INTO t_widen VALUES (12, 1099511627776, 120)",
        "UPDATE t_widen SET v = 2199023255552 WHERE id = 2",
        "INSERT INTO t_dropcol VALUES (12, 12)",
        "INSERT INTO t_default VALUES (12, 12, 120, 6)",
        "UPDATE t_default SET w = 7 WHERE id = 2",
        "DELETE FROM t_dropcol WHERE id = 3",
        "UPDATE t_new SET v = 13 WHERE id = 12",
    ] {
        db.exec(sql).await;
    }
    let parked_metric = |t: &str| {
        format!(
            "tidemark_table_parked{{source=\"main\",table=\"{}.{t}\"}} 1",
            db.name
        )
    };
    // The restarted run first catches up (a cold CI machine takes seconds to start
    // a debug binary), so poll until both tables show as parked, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let metrics = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let m = try_http_get(&addr, "/metrics").unwrap_or_default();
        let both =
            m.contains(&parked_metric("t_narrow")) && m.contains(&parked_metric("t_computed"));
        if both || std::time::Instant::now() > deadline {
            break m;
        }
    };
    assert!(metrics.contains(&parked_metric("t_narrow")), "{metrics}");
    assert!(metrics.contains(&parked_metric("t_computed")), "{metrics}");
    assert!(!metrics.contains(&parked_metric("t_add")), "{metrics}");
    stop_cleanly(child, &config);

    // A restart re-reads nothing it applied (the TRUNCATE would close row 12 again).
    let out = db.tidemark(&config, &["run", "--until-caught-up"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("2 table(s) are parked"), "{t}");

    // Every table that evolved equals the source.
    let s = db.name.to_lowercase();
    let compare = [
        ("t_index", "id, v, x"),
        ("t_add", "id, v, x, w"),
        ("t_rename", "id, v2, x"),
        ("t_change", "id, v3, x"),
        ("t_widen", "id, v, x"),
        ("t_dropcol", "id, v"),
        ("t_default", "id, v, x, w"),
        ("t_trunc", "id, v, x"),
        ("t_rtab2", "id, v, x"),
        ("t_new", "id, v, x"),
        ("t_other", "id, v, x"),
    ];
    for (t, cols) in compare {
        let lake = rows_of(&db.sql(&format!("SELECT {cols} FROM {s}.{t}")).await);
        let src = source_rows(&mut conn, &format!("SELECT {cols} FROM {t}")).await;
        assert_same(t, lake, src);
    }
    // Dropped and renamed-away tables are empty now; their history stays.
    for t in ["t_drop", "t_rtab"] {
        assert_eq!(
            db.sql_i64(&format!("SELECT COUNT(*) FROM {s}.{t}")).await,
            0,
            "{t}"
        );
        assert_eq!(
            db.sql_i64(&format!(
                "SELECT COUNT(*) FROM {s}.{t} FOR SYSTEM_TIME AS OF TIMESTAMP '{before}'"
            ))
            .await,
            11,
            "{t} before the DDL"
        );
    }
    // History from before each change reads in the table's new shape.
    let as_of = |t: &str, cols: &str| {
        format!(
            "SELECT {cols} FROM {s}.{t} FOR SYSTEM_TIME AS OF TIMESTAMP '{before}' WHERE id <= 2"
        )
    };
    let expect_before = vec!["1|100|10", "2|2|20"];
    for (t, cols) in [
        ("t_rename", "id, v2, x"),
        ("t_change", "id, v3, x"),
        ("t_widen", "id, v, x"),
        ("t_trunc", "id, v, x"),
    ] {
        assert_eq!(
            rows_of(&db.sql(&as_of(t, cols)).await),
            expect_before,
            "{t}"
        );
    }
    assert_eq!(
        rows_of(&db.sql(&as_of("t_add", "id, v, x, w")).await),
        vec!["1|100|10|NULL", "2|2|20|NULL"]
    );
    // Rows that got a default have a version saying so, at the statement.
    assert_eq!(
        rows_of(&db.sql(&as_of("t_default", "id, v, x, w")).await),
        vec!["1|100|10|NULL", "2|2|20|NULL"]
    );
    assert_eq!(
        rows_of(
            &db.sql(&format!(
                "SELECT id, w, _op FROM {s}_history.t_default WHERE id = 2"
            ))
            .await
        ),
        vec!["2|5|u", "2|7|u", "2|NULL|r"]
    );
    // A dropped column's old values stay in the history view.
    assert_eq!(
        rows_of(
            &db.sql(&format!(
                "SELECT id, x FROM {s}_history.t_dropcol WHERE id = 2 ORDER BY _valid_from"
            ))
            .await
        ),
        vec!["2|20"]
    );
    // The widened column's history holds both sizes of value.
    assert_eq!(
        rows_of(
            &db.sql(&format!(
                "SELECT id, v FROM {s}_history.t_widen WHERE id = 2"
            ))
            .await
        ),
        vec!["2|2", "2|2199023255552"]
    );
    // History: one version per source change, none twice.
    assert_eq!(
        db.sql_i64(&format!("SELECT COUNT(*) FROM {s}_history.t_rename"))
            .await,
        10 + 1 + 1 + 1 + 1 // snapshot, insert 11, update 1, insert 12, update 2
    );
    assert_eq!(
        db.sql_i64(&format!(
            "SELECT COUNT(*) FROM {s}_history.t_trunc WHERE _is_current"
        ))
        .await,
        1
    );

    // The parked tables say why and how out.
    let status = ok(db.tidemark(&config, &["status"]));
    let line = |t: &str| {
        status
            .lines()
            .find(|l| l.starts_with(&format!("{s}.{t} ")))
            .unwrap_or_else(|| panic!("no status line for {t}:\n{status}"))
            .to_string()
    };
    for parked in ["t_narrow", "t_computed"] {
        let l = line(parked);
        assert!(l.contains("PARKED"), "{l}");
        assert!(l.contains(&format!("table {}.{parked},", db.name)), "{l}");
        assert!(l.contains("binlog at mysql-bin."), "{l}");
        assert!(l.contains("--resnapshot --table"), "{l}");
    }
    assert!(
        line("t_narrow").contains("int(11) to smallint"),
        "{}",
        line("t_narrow")
    );
    assert!(
        line("t_drop").contains("dropped at the source"),
        "{}",
        line("t_drop")
    );
    assert!(
        line("t_computed").contains("computed default current_timestamp()"),
        "{}",
        line("t_computed")
    );

    // The way out: land the table again; it streams from then on.
    ok(db.tidemark(
        &config,
        &[
            "snapshot",
            "--resnapshot",
            "--table",
            &format!("{}.t_computed", db.name),
        ],
    ));
    db.exec("INSERT INTO t_computed VALUES (13, 13, 130, NOW())")
        .await;
    let out = db.tidemark(&config, &["run", "--until-caught-up"]);
    let t = text(&out);
    assert!(t.contains("1 table(s) are parked"), "{t}");
    let lake = rows_of(
        &db.sql(&format!("SELECT id, v, x FROM {s}.t_computed"))
            .await,
    );
    let src = source_rows(&mut conn, "SELECT id, v, x FROM t_computed").await;
    assert_same("t_computed after resnapshot", lake, src);
    drop(conn);
    db.drop().await;
}
