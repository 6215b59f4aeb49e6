//! The endpoint serves what lands while it runs: commits made to the warehouse after
//! startup reach open sessions within `refresh_interval_ms`, without a reconnect.

use std::time::{Duration, Instant};

use tidemark_core::names::Naming;
use tidemark_lake::Warehouse;

use crate::support::TestServer;

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_see_commits_landed_after_startup() {
    let s = TestServer::start_with(|o| o.refresh = Some(Duration::from_millis(100))).await;
    let c = s.client().await;
    let history = "SELECT count(*) FROM invoicing_history.invoices";
    let before = count(&c, history).await;
    let newest = "SELECT CAST(max(_ingest_ts) AS VARCHAR) FROM invoicing.invoices";
    let newest_before: String = c.query_one(newest, &[]).await.unwrap().get(0);

    // More days of the workload land in the served warehouse (as `tidemark run`
    // would land them), three commits per table.
    let wh = Warehouse::new(s.path("warehouse").to_str().unwrap(), Default::default()).unwrap();
    let mut w = tidemark_demo::Workload::new(tidemark_demo::WorkloadConfig {
        scale: 0.2,
        days: 3,
        seed: 8,
        ..Default::default()
    });
    let (_, landed) = tidemark_demo::land(&wh, Naming::SnakeCase, &mut w, 1)
        .await
        .unwrap();
    assert!(landed > 0);

    let start = Instant::now();
    let after = loop {
        let n = count(&c, history).await;
        if n > before || start.elapsed() > Duration::from_secs(60) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        after > before,
        "history still {after} rows, as before the new commits"
    );
    // The current table and time travel moved too, on the same connection.
    let newest_after: String = c.query_one(newest, &[]).await.unwrap().get(0);
    assert!(
        newest_after > newest_before,
        "{newest_after} vs {newest_before}"
    );
    // changes() reads the new log, not the one registered at its first use.
    let changes =
        "SELECT count(*) FROM changes('invoicing.invoices', TIMESTAMP '1970-01-01 00:00:00')";
    // History first: a refresh may still be picking up the last commits, and it only
    // moves forward, so changes() read afterwards sees at least these versions.
    let logged = count(&c, "SELECT count(*) FROM invoicing_history.invoices").await;
    let n = count(&c, changes).await;
    assert!(n >= logged, "changes() {n} < history versions {logged}");
    s.stop().await;
}

/// The engine's refresh itself: a no-op when nothing landed, the changed tables
/// after new commits, and queries planned afterwards read them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_refresh_swaps_in_new_commits() {
    let dir = tempfile::tempdir().unwrap();
    let wh = crate::support::demo_warehouse(&dir.path().join("warehouse")).await;
    let engine = tidemark_query::Engine::open(&wh).await.unwrap();
    let before = history_rows(&engine).await;
    assert_eq!(engine.refresh().await.unwrap(), 0, "nothing landed yet");
    let mut w = tidemark_demo::Workload::new(tidemark_demo::WorkloadConfig {
        scale: 0.2,
        days: 2,
        seed: 9,
        ..Default::default()
    });
    tidemark_demo::land(&wh, Naming::SnakeCase, &mut w, 1)
        .await
        .unwrap();
    let changed = engine.refresh().await.unwrap();
    assert!(changed >= 3, "{changed} tables refreshed");
    let after = history_rows(&engine).await;
    assert_ne!(before, after);
}

async fn history_rows(e: &tidemark_query::Engine) -> String {
    let b = e
        .query("SELECT count(*) AS n FROM invoicing_history.invoices")
        .await
        .unwrap();
    deltalake::arrow::util::pretty::pretty_format_batches(&b)
        .unwrap()
        .to_string()
}

/// Land three more days of the demo workload in the warehouse `s` serves, as
/// `tidemark run` would while the endpoint runs.
pub(crate) async fn land_more(s: &TestServer, seed: u64) {
    let wh = Warehouse::new(s.path("warehouse").to_str().unwrap(), Default::default()).unwrap();
    let mut w = tidemark_demo::Workload::new(tidemark_demo::WorkloadConfig {
        scale: 0.2,
        days: 3,
        seed,
        ..Default::default()
    });
    let (_, landed) = tidemark_demo::land(&wh, Naming::SnakeCase, &mut w, 1)
        .await
        .unwrap();
    assert!(landed > 0);
}

/// Wait until a fresh statement on `c` sees more than `before` rows from `sql`.
pub(crate) async fn wait_for_more(c: &tokio_postgres::Client, sql: &str, before: i64) -> i64 {
    let start = Instant::now();
    loop {
        let n = count(c, sql).await;
        if n > before || start.elapsed() > Duration::from_secs(60) {
            assert!(
                n > before,
                "{sql}: still {n} rows, as before the new commits"
            );
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A prepared statement reads the tables as they are when it is executed, not as
/// they were when it was prepared: drivers keep statements prepared for the life of
/// a pooled connection (pgjdbc server-prepares after a few executions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_read_commits_landed_after_parse() {
    let s = TestServer::start_with(|o| o.refresh = Some(Duration::from_millis(100))).await;
    let c = s.client().await;
    let history = "SELECT count(*) FROM invoicing_history.invoices WHERE status <> $1";
    let current = "SELECT CAST(max(_ingest_ts) AS VARCHAR) FROM invoicing.invoices";
    let history_stmt = c.prepare(history).await.unwrap();
    let current_stmt = c.prepare(current).await.unwrap();
    let before: i64 = c
        .query_one(&history_stmt, &[&"no such status"])
        .await
        .unwrap()
        .get(0);
    let newest_before: String = c.query_one(&current_stmt, &[]).await.unwrap().get(0);

    land_more(&s, 8).await;
    // A statement parsed now sees the new commits once the endpoint refreshed...
    let landed = wait_for_more(
        &c,
        "SELECT count(*) FROM invoicing_history.invoices",
        before,
    )
    .await;

    // ... and so does the one prepared before them, executed again.
    let after: i64 = c
        .query_one(&history_stmt, &[&"no such status"])
        .await
        .unwrap()
        .get(0);
    assert!(
        after >= landed,
        "the prepared statement still reads {after} rows (before the commits: {before}, a new statement: {landed})"
    );
    let newest_after: String = c.query_one(&current_stmt, &[]).await.unwrap().get(0);
    assert!(
        newest_after > newest_before,
        "the prepared statement's current table did not move: {newest_after} vs {newest_before}"
    );
    s.stop().await;
}
