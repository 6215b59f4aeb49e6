//! Issue 21, part 4: with Debezium's transaction metadata (`transaction_topic`), a
//! table's changes of one source transaction land in one commit, never split.
//!
//! Against the test broker (tansu): 40 source transactions, each inserting 1–4 rows
//! of `orders` and 1–3 of `items`, both topics of two partitions keyed by row, so a
//! transaction's rows of one table are spread over both partitions; the
//! transaction topic holds each transaction's `END` with its per-table counts. The
//! stream commits after every change it buffers (`flush_rows = 1`), the harshest
//! setting for splitting. Then:
//!
//! 1. with the ENDs of the first 20 transactions only, a caught-up run lands those
//!    20, whole, and fails naming what it holds back;
//! 2. with 10 more ENDs, a run is SIGKILLed once they have landed; with the last 10,
//!    a caught-up run lands the rest;
//! 3. every row landed once, and each transaction's rows of each table share one
//!    commit (`_ingest_ts`);
//! 4. the same messages through a stream without `transaction_topic` do split
//!    transactions: the check above can fail.

use std::time::{Duration, Instant};

use crate::streams::{broker, create_topic, produce, producer};
use crate::support::{kill, ok, spawn_run_with, text, TestDb};

const TXNS: u64 = 40;

/// A schemaless Debezium insert of `db.table` (`id`, `amount`) in transaction `txn`.
fn insert(db: &str, table: &str, id: u64, txn: u64, order: u64, pos: u64) -> String {
    let ts_ms = 1_767_225_600_000 + txn as i64 * 1000;
    format!(
        r#"{{"before": null, "after": {{"id": {id}, "amount": {}}}, "source": {{"version": "2.7.0.Final", "connector": "mysql", "name": "tx", "ts_ms": {ts_ms}, "snapshot": "false", "db": "{db}", "table": "{table}", "server_id": 1, "gtid": null, "file": "mysql-bin.000003", "pos": {pos}, "row": 0}}, "op": "c", "ts_ms": {ts_ms}, "transaction": {{"id": "mysql-bin.000003:{txn}", "total_order": {order}, "data_collection_order": {order}}}}}"#,
        id * 7 % 100
    )
}

/// The transaction's END on the transaction topic.
fn end(db: &str, txn: u64, orders: u64, items: u64) -> String {
    format!(
        r#"{{"status": "END", "id": "mysql-bin.000003:{txn}", "ts_ms": {}, "event_count": {}, "data_collections": [{{"data_collection": "{db}.orders", "event_count": {orders}}}, {{"data_collection": "{db}.items", "event_count": {items}}}]}}"#,
        1_767_225_600_000 + txn as i64 * 1000,
        orders + items
    )
}

/// Rows of `orders` and `items` in transaction `k` (ids `k * 10 + i`).
fn rows_of(k: u64) -> (u64, u64) {
    (1 + k % 4, 1 + k % 3)
}

/// Transactions (by `id / 10`) with rows of `table` in more than one commit.
fn split(config: &std::path::Path, db: &str, table: &str) -> i64 {
    let out = ok(crate::support::tidemark(
        config,
        &[
            "sql",
            "--format",
            "csv",
            &format!(
                "SELECT count(*) FROM (SELECT id / 10 AS k FROM {db}_history.{table} GROUP BY id / 10 HAVING count(DISTINCT _ingest_ts) > 1)"
            ),
        ],
    ));
    // The CSV's header, then the count (the log follows on stderr).
    out.lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("not a count: {out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transactions_changes_of_one_table_land_in_one_commit() {
    let db = TestDb::new("txnmeta").await;
    for t in ["orders", "items"] {
        db.exec(&format!(
            "CREATE TABLE {t} (id INT PRIMARY KEY, amount INT)"
        ))
        .await;
    }
    let s = db.name.clone();
    let prefix = format!("tx{}", std::process::id());
    let (orders_t, items_t, txn_t) = (
        format!("{prefix}.{s}.orders"),
        format!("{prefix}.{s}.items"),
        format!("{prefix}.transaction"),
    );
    create_topic(&orders_t, 2).await;
    create_topic(&items_t, 2).await;
    create_topic(&txn_t, 1).await;

    let (mut orders, mut items, mut ends) = (Vec::new(), Vec::new(), Vec::new());
    let (mut want_orders, mut want_items) = (0, 0);
    for k in 1..=TXNS {
        let (o, l) = rows_of(k);
        let mut order = 0;
        for i in 0..o {
            order += 1;
            let id = k * 10 + i;
            let v = insert(&s, "orders", id, k, order, k * 1000 + order);
            orders.push(((id % 2) as i32, format!(r#"{{"id": {id}}}"#), Some(v)));
        }
        for i in 0..l {
            order += 1;
            let id = k * 10 + i;
            let v = insert(&s, "items", id, k, order, k * 1000 + order);
            items.push(((id % 2) as i32, format!(r#"{{"id": {id}}}"#), Some(v)));
        }
        ends.push((0, format!("mysql-bin.000003:{k}"), Some(end(&s, k, o, l))));
        if k <= 20 {
            want_orders += o;
            want_items += l;
        }
    }
    let p = producer();
    produce(&p, &orders_t, &orders).await;
    produce(&p, &items_t, &items).await;
    produce(&p, &txn_t, &ends[..20]).await;

    let stream = |txn_line: &str, group: &str| {
        format!(
            "capture = \"none\"\n\n[streams.events]\nkind = \"kafka\"\nformat = \"debezium\"\nschema_from = \"main\"\nbrokers = \"{}\"\ntopics = [\"{orders_t}\", \"{items_t}\"]\n{txn_line}group_id = \"{group}\"\nflush_interval_ms = 100\nflush_rows = 1\n\n[streams.events.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n",
            broker()
        )
    };
    let config = db.config(&stream(
        &format!("transaction_topic = \"{txn_t}\"\n"),
        &format!("{s}-txn"),
    ));
    let count = |table: &str| format!("SELECT count(*) FROM {s}_history.{table}");

    // 1. Twenty ENDs: twenty transactions land, whole; the run says what it holds.
    let first = db.tidemark(&config, &["run", "--until-caught-up"]);
    assert!(!first.status.success(), "{}", text(&first));
    let said = text(&first);
    assert!(
        said.contains("read but not landed") && said.contains("END has not been read"),
        "{said}"
    );
    assert_eq!(db.sql_i64(&count("orders")).await, want_orders as i64);
    assert_eq!(db.sql_i64(&count("items")).await, want_items as i64);
    assert_eq!(
        db.sql_i64(&format!(
            "SELECT count(*) FROM {s}_history.orders WHERE id / 10 > 20"
        ))
        .await,
        0
    );

    // 2. Ten more ENDs: a run lands them and is killed; then the last ten.
    produce(&p, &txn_t, &ends[20..30]).await;
    let want_30: u64 = (1..=30).map(|k| rows_of(k).0).sum();
    let run = spawn_run_with(&config, &[]);
    let started = Instant::now();
    while db.sql_i64(&count("orders")).await < want_30 as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "30 transactions did not land in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    kill(run);
    produce(&p, &txn_t, &ends[30..]).await;
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));

    // 3. Every row once; no transaction split.
    let (all_orders, all_items): (u64, u64) = (1..=TXNS)
        .map(rows_of)
        .fold((0, 0), |(a, b), (o, l)| (a + o, b + l));
    for (table, n) in [("orders", all_orders), ("items", all_items)] {
        assert_eq!(db.sql_i64(&count(table)).await, n as i64, "{table}");
        assert_eq!(
            db.sql_i64(&format!("SELECT count(DISTINCT id) FROM {s}.{table}"))
                .await,
            n as i64,
            "{table}"
        );
        assert_eq!(split(&config, &s, table), 0, "{table}: a transaction split");
    }

    // 4. Without transaction_topic, commits after every change do split them.
    let plain = db.dir.path().join("plain.toml");
    let text_of = std::fs::read_to_string(db.config(&stream("", &format!("{s}-plain")))).unwrap();
    let wh = db.warehouse().display().to_string();
    std::fs::write(&plain, text_of.replace(&wh, &format!("{wh}-plain"))).unwrap();
    ok(db.tidemark(&plain, &["run", "--until-caught-up"]));
    assert!(
        split(&plain, &s, "orders") > 0,
        "a stream without transaction_topic committing after every change splits transactions"
    );
    db.drop().await;
}
