//! The pipelines and the daemon as libraries, in this process (no binary spawned):
//! binlog capture through `tidemark_capture::run`, stopped mid-stream and resumed
//! exactly once; and `tidemark_daemon::App` running a job triggered by new data and
//! one triggered through its handle.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidemark_core::config::Config;
use tidemark_lake::Warehouse;
use tidemark_scheduler::store::{Outcome, RunRecord};

use crate::support::TestDb;

fn options(until_caught_up: bool) -> tidemark_capture::Options {
    tidemark_capture::Options {
        environment: "dev".into(),
        only: None,
        until_caught_up,
        config_updates: None,
    }
}

fn load(config: &std::path::Path) -> (Config, Warehouse) {
    let c = Config::from_file(config).expect("config");
    let env = c.environment("dev").unwrap();
    let wh = Warehouse::new(&env.warehouse, Default::default()).unwrap();
    (c, wh)
}

/// A daemon (`tidemark_daemon::App`) on `config`, running in a task until the flag it
/// returns is set; `watched`: it reloads the config file when it changes and polls
/// its jobs' inputs every 100 ms.
async fn start_daemon(
    config: &std::path::Path,
    watched: bool,
) -> (
    tokio::task::JoinHandle<anyhow::Result<()>>,
    Arc<AtomicBool>,
    tidemark_scheduler::Handle,
) {
    let (c, wh) = load(config);
    let app = tidemark_daemon::App::build(
        c,
        wh,
        tidemark_daemon::Options {
            config_path: watched.then(|| config.to_path_buf()),
            capture: options(false),
            api_listen: None,
            input_poll: watched.then_some(Duration::from_millis(100)),
            extra_routes: None,
            features: None,
        },
        Default::default(),
    )
    .await
    .expect("build the daemon");
    assert!(app.api_addr().is_none(), "api_listen = \"off\"");
    let handle = app.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let running = {
        let stop = stop.clone();
        tokio::spawn(async move { app.run_until(stop).await })
    };
    (running, stop, handle)
}

/// Trigger `job` through the daemon's handle and wait for the run's end.
async fn run_job(handle: &tidemark_scheduler::Handle, job: &str) -> RunRecord {
    let id = handle
        .trigger(job, "test", BTreeMap::new())
        .await
        .expect("a known job");
    let start = Instant::now();
    loop {
        if let Some(r) = handle.run(&id) {
            if r.outcome != Outcome::Running {
                return r;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{job} never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn binlog_capture_runs_as_a_library_and_resumes_exactly_once() {
    let db = TestDb::new("capture_lib").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
        .await;
    db.exec("INSERT INTO t VALUES (1, 1), (2, 2)").await;
    let config = db.config(&format!(
        "flush_interval_ms = 100\nserver_id = {}",
        300_000 + std::process::id()
    ));
    let (c, wh) = load(&config);
    // Snapshot and catch up, in-process.
    tidemark_capture::run(
        &c,
        &wh,
        &options(true),
        Arc::new(AtomicBool::new(false)),
        Default::default(),
    )
    .await
    .expect("first capture");
    assert_eq!(
        db.sql_i64(&format!("SELECT count(*) FROM {}.t", db.name))
            .await,
        2
    );
    // A long-running capture, stopped by its flag while changes flow.
    let stop = Arc::new(AtomicBool::new(false));
    let running = {
        let (c, wh, stop) = (c.clone(), wh.clone(), stop.clone());
        tokio::spawn(async move {
            tidemark_capture::run(&c, &wh, &options(false), stop, Default::default()).await
        })
    };
    for i in 3..=40 {
        db.exec(&format!("INSERT INTO t VALUES ({i}, {i})")).await;
        if i == 20 {
            db.exec("UPDATE t SET v = v + 100 WHERE id <= 10").await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    running.await.unwrap().expect("stopped cleanly");
    db.exec("DELETE FROM t WHERE id = 40").await;
    // The rest, from the committed positions.
    tidemark_capture::run(
        &c,
        &wh,
        &options(true),
        Arc::new(AtomicBool::new(false)),
        Default::default(),
    )
    .await
    .expect("resumed capture");
    let t = &db.name;
    assert_eq!(db.sql_i64(&format!("SELECT count(*) FROM {t}.t")).await, 39);
    assert_eq!(
        db.sql_i64(&format!("SELECT sum(v) FROM {t}.t")).await,
        db.query_i64("SELECT sum(v) FROM t").await
    );
    // One version per change: 40 inserts, 10 updates, 1 delete (tombstones hidden).
    assert_eq!(
        db.sql_i64(&format!("SELECT count(*) FROM {t}_history.t"))
            .await,
        50
    );
    crate::support::record_checked(39, "library capture after a stop and a resume");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_app_runs_jobs_in_process() {
    let db = TestDb::new("daemon_lib").await;
    let d = &db.name;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
        .await;
    db.exec("INSERT INTO t VALUES (1, 1), (2, 2), (3, 3)").await;
    let config = db.config(&format!(
        "flush_interval_ms = 100\nserver_id = {}\n\n[daemon]\napi_listen = \"off\"\n\n\
         [jobs.sums]\nkind = \"sql\"\nsql = \"SELECT sum(v) AS s FROM {d}.t\"\ntarget = \"reports.sums\"\non = \"new_data\"\ninputs = [\"{d}.t\"]\ndebounce = \"100ms\"\n\n\
         [jobs.manual]\nkind = \"sql\"\nsql = \"SELECT count(*) AS n FROM {d}.t\"\ntarget = \"reports.manual\"\n",
        400_000 + std::process::id()
    ));
    let (running, stop, handle) = start_daemon(&config, true).await;
    let start = Instant::now();
    loop {
        // Not there until the job's first run: asked without panicking.
        let engine = tidemark_query::Engine::open(&load(&config).1)
            .await
            .unwrap();
        if let Ok(b) = engine.query("SELECT s FROM reports.sums").await {
            if b.iter().map(|b| b.num_rows()).sum::<usize>() == 1 {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the new-data job never ran"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(db.sql_i64("SELECT s FROM reports.sums").await, 6);
    let r = run_job(&handle, "manual").await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    assert_eq!(db.sql_i64("SELECT n FROM reports.manual").await, 3);
    assert!(handle
        .trigger("nope", "test", BTreeMap::new())
        .await
        .is_err());
    stop.store(true, Ordering::SeqCst);
    running.await.unwrap().expect("the daemon stops cleanly");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_and_pull_jobs_land_a_source_without_capture() {
    let db = TestDb::new("snapshot_job").await;
    db.exec("CREATE TABLE a (id INT PRIMARY KEY, v INT NOT NULL, updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))")
        .await;
    db.exec("INSERT INTO a (id, v) VALUES (1, 1), (2, 2)").await;
    let d = &db.name;
    let config = db.config(&format!(
        "capture = \"none\"\n\n[sources.main.tables.\"{d}.a\"]\nwatermark = \"updated_at\"\n\n[daemon]\napi_listen = \"off\"\n\n\
         [jobs.land]\nkind = \"snapshot\"\nsource = \"main\"\n\n[jobs.refresh]\nkind = \"pull\"\nsource = \"main\"\n"
    ));
    let (running, stop, handle) = start_daemon(&config, false).await;
    let r = run_job(&handle, "land").await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    assert_eq!(r.rows, 2);
    assert_eq!(db.sql_i64(&format!("SELECT count(*) FROM {d}.a")).await, 2);
    // Landed tables are left alone; changes come by the pull.
    db.exec("UPDATE a SET v = 20 WHERE id = 2").await;
    db.exec("INSERT INTO a (id, v) VALUES (3, 3)").await;
    assert_eq!(run_job(&handle, "land").await.rows, 0);
    let r = run_job(&handle, "refresh").await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    assert_eq!(db.sql_i64(&format!("SELECT sum(v) FROM {d}.a")).await, 24);
    stop.store(true, Ordering::SeqCst);
    running.await.unwrap().expect("the daemon stops cleanly");
    db.drop().await;
}

/// Wait until `query` over the lake returns `want` (the lake is opened afresh each time).
async fn wait_for(config: &std::path::Path, query: &str, want: i64, what: &str) {
    let start = Instant::now();
    loop {
        let engine = tidemark_query::Engine::open(&load(config).1).await.unwrap();
        if let Ok(b) = engine.query(query).await {
            let got = b.first().filter(|b| b.num_rows() == 1).and_then(|b| {
                deltalake::arrow::compute::cast(
                    b.column(0),
                    &deltalake::arrow::datatypes::DataType::Int64,
                )
                .ok()
                .and_then(|c| {
                    c.as_any()
                        .downcast_ref::<deltalake::arrow::array::Int64Array>()
                        .map(|a| a.value(0))
                })
            });
            if got == Some(want) {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{what}: {query} never gave {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_added_to_the_selection_is_captured_without_a_restart() {
    let db = TestDb::new("reselect").await;
    let d = db.name.clone();
    for t in ["a", "b"] {
        db.exec(&format!(
            "CREATE TABLE {t} (id INT PRIMARY KEY, v INT NOT NULL)"
        ))
        .await;
        db.exec(&format!("INSERT INTO {t} VALUES (1, 1), (2, 2)"))
            .await;
    }
    let settings = |include: &str| {
        format!(
            "flush_interval_ms = 100\nserver_id = {}\ninclude = [{include}]\n\n[daemon]\napi_listen = \"off\"\n",
            500_000 + std::process::id()
        )
    };
    let config = db.config(&settings(&format!("\"{d}.a\"")));
    let (running, stop, _) = start_daemon(&config, true).await;
    db.exec("INSERT INTO a VALUES (3, 3)").await;
    db.exec("INSERT INTO b VALUES (3, 3)").await;
    wait_for(
        &config,
        &format!("SELECT count(*) FROM {d}.a"),
        3,
        "a captured",
    )
    .await;
    let engine = tidemark_query::Engine::open(&load(&config).1)
        .await
        .unwrap();
    assert!(
        engine.query(&format!("SELECT * FROM {d}.b")).await.is_err(),
        "b is not selected yet"
    );
    // The finance team's table joins the selection: the running daemon snapshots it
    // and streams it from then on, and `a` keeps flowing meanwhile.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(&format!("[\"{d}.a\"]"), &format!("[\"{d}.a\", \"{d}.b\"]")),
    )
    .unwrap();
    wait_for(
        &config,
        &format!("SELECT count(*) FROM {d}.b"),
        3,
        "b snapshotted",
    )
    .await;
    db.exec("INSERT INTO b VALUES (4, 4)").await;
    db.exec("UPDATE b SET v = v + 10 WHERE id = 1").await;
    db.exec("INSERT INTO a VALUES (4, 4)").await;
    wait_for(
        &config,
        &format!("SELECT sum(v) FROM {d}.b"),
        20,
        "b streamed",
    )
    .await;
    wait_for(
        &config,
        &format!("SELECT count(*) FROM {d}.a"),
        4,
        "a still flowing",
    )
    .await;
    // Out of the selection again: capture of `a` stops, its history stays.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(&format!("[\"{d}.a\", \"{d}.b\"]"), &format!("[\"{d}.b\"]")),
    )
    .unwrap();
    // The reload is seen within a second or two; then a change to `a` is not landed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    db.exec("INSERT INTO a VALUES (5, 5)").await;
    db.exec("INSERT INTO b VALUES (5, 5)").await;
    wait_for(
        &config,
        &format!("SELECT count(*) FROM {d}.b"),
        5,
        "b after a left",
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    running.await.unwrap().expect("the daemon stops cleanly");
    assert_eq!(db.sql_i64(&format!("SELECT count(*) FROM {d}.a")).await, 4);
    // One version per change of b: 3 snapshot rows, 2 inserts, 1 update.
    assert_eq!(
        db.sql_i64(&format!("SELECT count(*) FROM {d}_history.b"))
            .await,
        6
    );
    db.drop().await;
}

/// The daemon's `publish` kind: a snapshot job lands a table, a publish job mirrors
/// it into the PostgreSQL scripts/test.sh starts, and a second run sends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_publish_job_mirrors_a_landed_table_into_postgres() {
    let pg_url = std::env::var("TIDEMARK_TEST_PG_URL").expect(
        "TIDEMARK_TEST_PG_URL is not set: run the tests with scripts/test.sh, which starts a PostgreSQL (scripts/postgres.sh)",
    );
    let db = TestDb::new("publish_job").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v DECIMAL(10,2) NOT NULL)")
        .await;
    db.exec("INSERT INTO t VALUES (1, 1.50), (2, 2.25), (3, 3.00)")
        .await;
    let d = &db.name;
    let target_schema = format!("job_{}", std::process::id());
    let config = db.config(&format!(
        "capture = \"none\"\n\n[daemon]\napi_listen = \"off\"\n\n\
         [publish.dw]\ntarget = \"{pg_url}\"\npassword_env = \"TIDEMARK_TEST_PG_PASSWORD\"\ntables = [\"{d}.t\"]\nmode = \"mirror\"\nschema = \"{target_schema}\"\n\n\
         [jobs.land]\nkind = \"snapshot\"\nsource = \"main\"\n\n\
         [jobs.publish_dw]\nkind = \"publish\"\npublication = \"dw\"\n"
    ));
    let (running, stop, handle) = start_daemon(&config, false).await;
    assert_eq!(run_job(&handle, "land").await.outcome, Outcome::Succeeded);
    let r = run_job(&handle, "publish_dw").await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    let again = run_job(&handle, "publish_dw").await;
    assert_eq!(again.outcome, Outcome::Succeeded, "{again:?}");
    assert_eq!(again.rows, 0, "nothing new: the second run sends nothing");
    stop.store(true, Ordering::SeqCst);
    running.await.unwrap().expect("the daemon stops cleanly");

    let mut cfg: tokio_postgres::Config = pg_url.parse().unwrap();
    if let Ok(p) = std::env::var("TIDEMARK_TEST_PG_PASSWORD") {
        cfg.password(p);
    }
    let (pg, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let row = pg
        .query_one(
            &format!("SELECT count(*), sum(v)::text FROM \"{target_schema}\".t"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
    assert_eq!(row.get::<_, String>(1), "6.75");
    // The state table lives in the target schema: dropping it leaves nothing behind.
    pg.batch_execute(&format!("DROP SCHEMA \"{target_schema}\" CASCADE"))
        .await
        .unwrap();
    db.drop().await;
}
