//! `tidemark publish` killed with SIGKILL in the middle of a publish, then run
//! again: the target equals the source exactly, with no version twice and none lost.
//!
//! The lake is written through the lake writer as the compaction test writes it
//! (no MySQL needed); the target is the
//! PostgreSQL scripts/test.sh starts (TIDEMARK_TEST_PG_URL, password in
//! TIDEMARK_TEST_PG_PASSWORD). Kills land at random moments, and while the server
//! shows the publish's COPY running (so at least those are inside the transaction).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidemark_lake::{TableWriter, Warehouse};
use tidemark_query::Engine;

use crate::compaction::{land, schema};
use crate::support::{ok, record_checked, record_fault, rows_of, tidemark, Lcg};

fn pg_url() -> String {
    std::env::var("TIDEMARK_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "TIDEMARK_TEST_PG_URL is not set: the publish tests need a PostgreSQL. Run them \
             through scripts/test.sh, which starts one (scripts/postgres.sh)."
        )
    })
}

async fn pg() -> tokio_postgres::Client {
    let mut cfg: tokio_postgres::Config = pg_url().parse().unwrap();
    if let Ok(p) = std::env::var("TIDEMARK_TEST_PG_PASSWORD") {
        cfg.password(p);
    }
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Start `tidemark publish NAME` and SIGKILL it: after `delay`, or (`None`) as soon
/// as the server shows its COPY running. Whether the kill found it still running.
async fn publish_killed(config: &Path, name: &str, delay: Option<Duration>) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--config")
        .arg(config)
        .args(["publish", name])
        .env("TIDEMARK_LOG_FORMAT", "json")
        .env_remove("TIDEMARK_ENV")
        .env_remove("TIDEMARK_WAREHOUSE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tidemark publish");
    let start = Instant::now();
    match delay {
        Some(d) => tokio::time::sleep(d).await,
        None => {
            let c = pg().await;
            while start.elapsed() < Duration::from_secs(60) {
                let copying: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tidemark publish' AND query LIKE 'COPY%' AND state = 'active'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if copying > 0 || child.try_wait().unwrap().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let running = child.try_wait().unwrap().is_none();
    if running {
        record_fault("sigkill", "tidemark publish");
    }
    let _ = child.kill();
    let _ = child.wait();
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_killed_at_any_moment_neither_doubles_nor_loses_rows() {
    let url = pg_url();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("wh");
    let wh = Warehouse::new(root.to_str().unwrap(), Default::default()).unwrap();
    let mut w = TableWriter::open(&wh, schema()).await.unwrap();
    w.start_merge_on_read().await.unwrap();
    let (mut rng, mut clock, mut seq) = (Lcg(0x9b1d), 1_767_225_600_000_000i64, 0i64);
    let mut versions = 0;
    for _ in 0..4 {
        land(&mut w, &mut rng, &mut clock, &mut seq, 60_000).await;
        versions += 60_000;
    }
    // Fresh target schemas: one append publication (a doubled or lost version shows
    // in the counts), one mirror publication (the target must equal the table).
    let c = pg().await;
    c.batch_execute(
        "DROP SCHEMA IF EXISTS kill_append CASCADE; DROP SCHEMA IF EXISTS kill_mirror CASCADE",
    )
    .await
    .unwrap();
    let config = dir.path().join("tidemark.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[environments.dev]
warehouse = "{root}"

[publish.log]
target = "{url}"
password_env = "TIDEMARK_TEST_PG_PASSWORD"
tables = ["shop.items"]
mode = "append"
schema = "kill_append"

[publish.copy]
target = "{url}"
password_env = "TIDEMARK_TEST_PG_PASSWORD"
tables = ["shop.items"]
mode = "mirror"
schema = "kill_mirror"
"#,
            root = root.display()
        ),
    )
    .unwrap();

    // Each round lands more changes, so every publish has rows to send; odd rounds
    // kill at a random moment, even ones once the server shows the COPY running.
    let mut killed_running = 0;
    let rounds = 8;
    for round in 0..rounds {
        land(&mut w, &mut rng, &mut clock, &mut seq, 30_000).await;
        versions += 30_000;
        for name in ["log", "copy"] {
            let delay = (round % 2 == 1).then(|| Duration::from_millis(rng.next(600)));
            if publish_killed(&config, name, delay).await {
                killed_running += 1;
            }
        }
    }
    eprintln!(
        "{killed_running} of {} kills found the publish running",
        2 * rounds
    );
    assert!(
        killed_running >= rounds,
        "only {killed_running} of {} kills found a publish running: the test did not test",
        2 * rounds
    );
    ok(tidemark(&config, &["publish", "log"]));
    ok(tidemark(&config, &["publish", "copy"]));

    // Append: every version exactly once.
    let row = c
        .query_one(
            "SELECT count(*), count(DISTINCT (_source_pos, _seq)) FROM kill_append.items",
            &[],
        )
        .await
        .unwrap();
    let (n, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(
        n as usize, versions,
        "versions at the target after the kills"
    );
    assert_eq!(distinct, n, "a version was published twice");

    // Mirror: the target equals the table, row for row.
    let engine = Engine::open(&wh).await.unwrap();
    let want = rows_of(
        &engine
            .query("SELECT CAST(id AS VARCHAR), CAST(qty AS VARCHAR), note FROM shop.items")
            .await
            .unwrap(),
    );
    let mut got: Vec<String> = c
        .query(
            "SELECT id::text, qty::text, note FROM kill_mirror.items",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2)
            )
        })
        .collect();
    got.sort();
    assert_eq!(got.len(), want.len(), "rows at the mirror");
    assert_eq!(got, want, "the mirror differs from the table");
    record_checked(n as usize + got.len(), "publish target after kills");
}
