//! The daemon end to end: `tidemark run` with capture, a cron job, a new-data job
//! and a manual job together; the HTTP API with good, bad, missing and weak tokens;
//! SIGKILL while jobs run; two daemons on one warehouse; config changes taking
//! effect without a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{kill, ok, spawn_run_with, stop_cleanly, tidemark, wait_for_log, Lcg, TestDb};

/// Config for a test that streams: its own replica server id (tests run at once).
fn replica_config() -> String {
    format!(
        "flush_interval_ms = 200\nserver_id = {}",
        200_000 + std::process::id()
    )
}

/// The newest API address the background runs beside `config` logged.
fn api_addr(config: &Path, runs: usize) -> String {
    wait_for_log(config, "HTTP API at", runs, Duration::from_secs(120));
    let log = std::fs::read_to_string(config.with_file_name("run.log")).unwrap();
    log.lines()
        .filter(|l| l.contains("HTTP API at"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["address"].as_str().map(str::to_string))
        .next_back()
        .expect("an address in the log")
}

/// A token made by `tidemark token add`.
fn token(config: &Path, name: &str, role: &str) -> String {
    let out = ok(tidemark(config, &["token", "add", name, "--role", role]));
    out.lines()
        .find(|l| l.starts_with("tmk_"))
        .expect("the token is printed")
        .to_string()
}

/// GET `path` of the API with `token`: the JSON answer, or `None` on any failure.
async fn get_json(base: &str, path: &str, token: &str) -> Option<serde_json::Value> {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Wait for run `id` to end; its record.
async fn run_end(base: &str, id: &str, token: &str) -> serde_json::Value {
    eventually(60, "the triggered run to end", || async {
        let r = get_json(base, &format!("/api/v1/runs/{id}"), token).await?;
        (r["outcome"].as_str()? != "running").then_some(r)
    })
    .await
}

/// Trigger `job` through the API and wait for the run to succeed (a run already in
/// flight takes the trigger as its next run: "queued").
async fn trigger_and_succeed(base: &str, job: &str, token: &str) {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/jobs/{job}/runs"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["run"]
        .as_str()
        .unwrap()
        .to_string();
    if id != "queued" {
        let end = run_end(base, &id, token).await;
        assert_eq!(end["outcome"], "succeeded", "{end}");
    }
}

/// Poll `f` until it is `Some`, for at most `secs`.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One integer from the warehouse, or `None` while the table does not exist yet.
async fn lake_i64(db: &TestDb, sql: &str) -> Option<i64> {
    let wh = tidemark_lake::Warehouse::new(db.warehouse().to_str().unwrap(), Default::default())
        .unwrap();
    let engine = tidemark_query::Engine::open(&wh).await.ok()?;
    let batches = engine.query(sql).await.ok()?;
    let b = batches.iter().find(|b| b.num_rows() > 0)?;
    let col =
        deltalake::arrow::compute::cast(b.column(0), &deltalake::arrow::datatypes::DataType::Int64)
            .ok()?;
    use deltalake::arrow::array::Array;
    let ints = col
        .as_any()
        .downcast_ref::<deltalake::arrow::array::Int64Array>()?;
    (!ints.is_null(0)).then(|| ints.value(0))
}

/// The application-transaction versions of every commit to a table a job writes:
/// one per run that landed, never two commits for one run.
fn job_commits(db: &TestDb, schema: &str, table: &str) -> Vec<i64> {
    let log = db
        .warehouse()
        .join(schema)
        .join(table)
        .join("derived")
        .join("_delta_log");
    let mut files: Vec<_> = std::fs::read_dir(&log)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    let mut out = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(version) = v["txn"]["version"].as_i64() {
                out.push(version);
            }
        }
    }
    out
}

/// Every run claim of `job` in the warehouse.
fn claims(db: &TestDb, job: &str) -> Vec<serde_json::Value> {
    let dir = db.warehouse().join(".tidemark").join("runs").join(job);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_runs_capture_cron_new_data_and_http_triggered_jobs() {
    let db = TestDb::new("daemon").await;
    let d = &db.name;
    db.exec("CREATE TABLE invoices (id INT PRIMARY KEY, amount INT NOT NULL)")
        .await;
    db.exec("INSERT INTO invoices VALUES (1, 10), (2, 20), (3, 30)")
        .await;
    let config = db.config(&format!(
        "{}\n\n[jobs.totals]\nkind = \"sql\"\nsql = \"SELECT count(*) AS n, sum(amount) AS total FROM {d}.invoices\"\ntarget = \"reports.totals\"\non = \"new_data\"\ninputs = [\"{d}.invoices\"]\ndebounce = \"200ms\"\n\n\
         [jobs.heartbeat]\nkind = \"sql\"\nsql = \"SELECT 1 AS one\"\ntarget = \"reports.heartbeat\"\ncron = \"* * * * * *\"\n\n\
         [jobs.by_hand]\nkind = \"sql\"\nsql = \"SELECT count(*) AS n FROM {d}.invoices\"\ntarget = \"reports.by_hand\"\n",
        replica_config()
    ));
    let operator = token(&config, "ci", "operator");
    let viewer = token(&config, "dashboard", "viewer");
    let run = spawn_run_with(&config, &[]);
    let addr = api_addr(&config, 1);
    let base = format!("http://{addr}");

    // The snapshot lands, and the new-data job follows it.
    let n = eventually(120, "reports.totals after the snapshot", || {
        lake_i64(&db, "SELECT n FROM reports.totals")
    })
    .await;
    assert_eq!(n, 3);
    // A change at the source reaches the job's output: capture, then the trigger.
    db.exec("INSERT INTO invoices VALUES (4, 40), (5, 50)")
        .await;
    eventually(60, "reports.totals to count the new rows", || async {
        (lake_i64(&db, "SELECT n FROM reports.totals").await == Some(5)).then_some(())
    })
    .await;
    assert_eq!(
        lake_i64(&db, "SELECT total FROM reports.totals").await,
        Some(150)
    );

    let http = reqwest::Client::new();
    let trigger = format!("{base}/api/v1/jobs/by_hand/runs");
    // No token, an unknown token: 401 with a reason. A read-only token: 403.
    let r = http.post(&trigger).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("no bearer token"),
        "{body}"
    );
    let r = http
        .post(&trigger)
        .bearer_auth("tmk_not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(&trigger)
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("needs operator"),
        "{body}"
    );
    // A user of the PostgreSQL endpoint logs in too: an analyst may read, not trigger.
    let users = config.with_file_name("users.toml");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--config")
        .arg(&config)
        .args(["user", "add", "ana", "--role", "admin"])
        .env("TIDEMARK_USER_PASSWORD", "s3cret pass")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(users.exists());
    let as_ana = eventually(15, "the new user to be accepted", || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http
                .get(format!("{base}/api/v1/jobs"))
                .basic_auth("ana", Some("s3cret pass"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        }
    });
    as_ana.await;
    let r = http
        .get(format!("{base}/api/v1/jobs"))
        .basic_auth("ana", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // An unknown job: 404.
    let r = http
        .post(format!("{base}/api/v1/jobs/nope/runs"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The operator's trigger runs the job.
    let r = http
        .post(&trigger)
        .bearer_auth(&operator)
        .json(&serde_json::json!({"params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    let id = body["run"].as_str().unwrap().to_string();
    let outcome = run_end(&base, &id, &viewer).await;
    assert_eq!(outcome["outcome"], "succeeded", "{outcome}");
    assert_eq!(outcome["reason"], "manual:api:ci", "{outcome}");
    assert_eq!(
        lake_i64(&db, "SELECT n FROM reports.by_hand").await,
        Some(5)
    );

    // The cron job has ticked, once per second, each tick once.
    eventually(30, "three heartbeats", || async {
        (job_commits(&db, "reports", "heartbeat").len() >= 3).then_some(())
    })
    .await;
    let jobs = get_json(&base, "/api/v1/jobs", &viewer).await.unwrap();
    let names: BTreeSet<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["by_hand", "heartbeat", "totals"]));
    // Status answers what `tidemark status --json` prints, plus the jobs.
    let status = get_json(&base, "/api/v1/status", &viewer).await.unwrap();
    assert!(
        status["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["table"] == format!("{d}.invoices")),
        "{status}"
    );
    // The OpenAPI description is generated from the handlers.
    let doc = get_json(&base, "/api/v1/openapi.json", &viewer)
        .await
        .unwrap();
    for path in [
        "/api/v1/jobs",
        "/api/v1/jobs/{name}/runs",
        "/api/v1/runs/{id}",
        "/api/v1/status",
    ] {
        assert!(doc["paths"][path].is_object(), "openapi lacks {path}");
    }
    // Health needs no token; metrics do.
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tidemark_job_running{job=\"totals\"}"),
        "{metrics}"
    );

    stop_cleanly(run, &config);
    // Each cron tick was served by one run.
    let ticks: Vec<String> = claims(&db, "heartbeat")
        .iter()
        .filter_map(|c| c["tick"].as_str().map(str::to_string))
        .collect();
    let unique: BTreeSet<&String> = ticks.iter().collect();
    assert_eq!(unique.len(), ticks.len(), "a tick ran twice: {ticks:?}");
    // The runs are readable over SQL, and from the CLI.
    assert_eq!(
        lake_i64(
            &db,
            "SELECT count(*) FROM tidemark.runs WHERE job = 'by_hand' AND outcome = 'succeeded'"
        )
        .await,
        Some(1)
    );
    let history = ok(tidemark(&config, &["jobs", "history", "by_hand"]));
    assert!(history.contains("by_hand-"), "{history}");
    let list = ok(tidemark(&config, &["jobs", "list"]));
    assert!(
        list.contains("heartbeat") && list.contains("cron"),
        "{list}"
    );
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_while_jobs_run_loses_no_trigger_and_doubles_no_output() {
    let db = TestDb::new("daemon_kill").await;
    let d = &db.name;
    db.exec("CREATE TABLE orders (id INT PRIMARY KEY, qty INT NOT NULL)")
        .await;
    db.exec("INSERT INTO orders VALUES (1, 1)").await;
    let config = db.config(&format!(
        "{}\n\n[jobs.order_totals]\nkind = \"sql\"\nsql = \"SELECT count(*) AS n, sum(qty) AS qty FROM {d}.orders\"\ntarget = \"reports.order_totals\"\non = \"new_data\"\ninputs = [\"{d}.orders\"]\ndebounce = \"100ms\"\n\n\
         [jobs.beat]\nkind = \"sql\"\nsql = \"SELECT count(*) AS n FROM {d}.orders\"\ntarget = \"reports.beat\"\nevery = \"1s\"\n",
        replica_config()
    ));
    let mut rng = Lcg(7);
    let mut next = 2;
    let mut runs = 0;
    for _round in 0..4 {
        let child = spawn_run_with(&config, &[]);
        runs += 1;
        wait_for_log(&config, "HTTP API at", runs, Duration::from_secs(120));
        for _ in 0..3 {
            let qty = rng.next(9) + 1;
            db.exec(&format!("INSERT INTO orders VALUES ({next}, {qty})"))
                .await;
            next += 1;
            tokio::time::sleep(Duration::from_millis(100 + rng.next(700))).await;
        }
        kill(child);
    }
    // A last, clean run: whatever the kills cut short is done now.
    let child = spawn_run_with(&config, &[]);
    runs += 1;
    wait_for_log(&config, "HTTP API at", runs, Duration::from_secs(120));
    let want_n = db.query_i64("SELECT count(*) FROM orders").await;
    let want_qty = db.query_i64("SELECT sum(qty) FROM orders").await;
    eventually(120, "the job's output to match the source", || async {
        (lake_i64(&db, "SELECT n FROM reports.order_totals").await == Some(want_n)).then_some(())
    })
    .await;
    assert_eq!(
        lake_i64(&db, "SELECT qty FROM reports.order_totals").await,
        Some(want_qty)
    );
    stop_cleanly(child, &config);
    crate::support::record_checked(want_n as usize, "daemon job output after SIGKILLs");
    // Never two commits for one run, in either job's output.
    for table in ["order_totals", "beat"] {
        let versions = job_commits(&db, "reports", table);
        let unique: BTreeSet<i64> = versions.iter().copied().collect();
        assert_eq!(
            unique.len(),
            versions.len(),
            "{table}: a run committed twice: {versions:?}"
        );
    }
    // Runs the kills cut short were found and marked at the next start.
    let all: Vec<serde_json::Value> = ["order_totals", "beat"]
        .iter()
        .flat_map(|j| claims(&db, j))
        .collect();
    assert!(
        all.iter().all(|c| c["outcome"] != "running"),
        "a run is still marked running after a clean stop"
    );
    db.drop().await;
}

/// A config with jobs only (no capture), so that two daemons can share it.
fn jobs_only_config(dir: &Path, warehouse: &Path, jobs: &str) -> std::path::PathBuf {
    let path = dir.join("tidemark.toml");
    std::fs::write(
        &path,
        format!(
            "[environments.dev]\nwarehouse = \"{}\"\n\n{jobs}",
            warehouse.display()
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_on_one_warehouse_never_run_one_job_twice() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("warehouse");
    let config = jobs_only_config(
        dir.path(),
        &wh,
        "[jobs.beat]\nkind = \"sql\"\nsql = \"SELECT 1 AS one\"\ntarget = \"reports.beat\"\ncron = \"* * * * * *\"\n",
    );
    let a = spawn_run_with(&config, &[]);
    let b = spawn_run_with(&config, &[]);
    wait_for_log(&config, "HTTP API at", 2, Duration::from_secs(60));
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop_cleanly(a, &config);
    stop_cleanly(b, &config);
    let dir_runs = wh.join(".tidemark").join("runs").join("beat");
    let mut by_tick: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut holders = BTreeSet::new();
    for e in std::fs::read_dir(&dir_runs).unwrap() {
        let c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap();
        holders.insert(c["holder"].as_str().unwrap().to_string());
        if let Some(t) = c["tick"].as_str() {
            by_tick
                .entry(t.to_string())
                .or_default()
                .push(c["id"].as_str().unwrap().to_string());
        }
    }
    assert!(by_tick.len() >= 4, "too few ticks served: {by_tick:?}");
    for (tick, ids) in &by_tick {
        assert_eq!(ids.len(), 1, "tick {tick} ran {} times: {ids:?}", ids.len());
    }
    let commits = {
        let log = wh
            .join("reports")
            .join("beat")
            .join("derived")
            .join("_delta_log");
        let mut v = Vec::new();
        for e in std::fs::read_dir(log).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                for line in std::fs::read_to_string(&p).unwrap().lines() {
                    let j: serde_json::Value = serde_json::from_str(line).unwrap();
                    if let Some(ver) = j["txn"]["version"].as_i64() {
                        v.push(ver);
                    }
                }
            }
        }
        v
    };
    let unique: BTreeSet<i64> = commits.iter().copied().collect();
    assert_eq!(
        unique.len(),
        commits.len(),
        "a run committed twice: {commits:?}"
    );
    eprintln!("holders that ran beat: {holders:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_and_tokens_change_without_a_restart_and_a_bad_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("warehouse");
    let one =
        "[jobs.first]\nkind = \"sql\"\nsql = \"SELECT 1 AS one\"\ntarget = \"reports.first\"\n";
    let config = jobs_only_config(dir.path(), &wh, one);
    let viewer = token(&config, "viewer", "viewer");
    let child = spawn_run_with(&config, &[]);
    let base = format!("http://{}", api_addr(&config, 1));
    let http = reqwest::Client::new();
    let names = |token: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http
                .get(format!("{base}/api/v1/jobs"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?;
            if !r.status().is_success() {
                return None;
            }
            let v: serde_json::Value = r.json().await.ok()?;
            Some(
                v.as_array()?
                    .iter()
                    .filter_map(|j| j["name"].as_str().map(str::to_string))
                    .collect::<BTreeSet<String>>(),
            )
        }
    };
    assert_eq!(
        names(viewer.clone()).await.unwrap(),
        BTreeSet::from(["first".to_string()])
    );
    // A job added to the config appears in the running daemon.
    let two = format!(
        "{one}\n[jobs.second]\nkind = \"maintenance\"\ncron = \"0 3 * * *\"\ntimezone = \"Europe/Paris\"\n"
    );
    jobs_only_config(dir.path(), &wh, &two);
    eventually(15, "the second job", || async {
        (names(viewer.clone()).await?.len() == 2).then_some(())
    })
    .await;
    // A config that does not validate is refused; the jobs in force stay.
    jobs_only_config(
        dir.path(),
        &wh,
        &format!("{two}\n[jobs.third]\nkind = \"sql\"\ncron = \"not a cron\"\n"),
    );
    wait_for_log(
        &config,
        "the changed config is refused",
        1,
        Duration::from_secs(15),
    );
    assert_eq!(names(viewer.clone()).await.unwrap().len(), 2);
    // A token added while it runs is accepted; a removed one is refused.
    let late = token(&config, "late", "viewer");
    eventually(15, "the new token to be accepted", || names(late.clone())).await;
    ok(tidemark(&config, &["token", "remove", "viewer"]));
    eventually(15, "the removed token to be refused", || async {
        names(viewer.clone()).await.is_none().then_some(())
    })
    .await;
    stop_cleanly(child, &config);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_config_runs_capture_cron_new_data_and_chained_jobs_and_takes_an_api_trigger() {
    let db = TestDb::new("example").await;
    let d = db.name.clone();
    db.exec(
        "CREATE TABLE invoices (id INT PRIMARY KEY, status VARCHAR(10) NOT NULL, \
         total DECIMAL(12,2) NOT NULL, updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
    )
    .await;
    db.exec(
        "CREATE TABLE audit_log (id INT NOT NULL, updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
    )
    .await;
    db.exec("INSERT INTO invoices (id, status, total) VALUES (1, 'open', 10.00), (2, 'paid', 20.00), (3, 'overdue', 5.50)")
        .await;
    // The shipped example, pointed at this test's server, database and warehouse; its
    // nightly job made to tick every 2 seconds so the test sees it run.
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tidemark.toml"),
    )
    .unwrap();
    let text: String = example
        .lines()
        .filter(|l| !l.starts_with("password_env = \"TIDEMARK_SHOP_PASSWORD\""))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace(
            "url = \"mysql://tidemark@127.0.0.1:3306\"",
            &format!("url = \"{}\"", crate::support::server_url()),
        )
        .replace("./warehouse/dev", db.warehouse().to_str().unwrap())
        .replace("invoicing", &d)
        .replace(
            "[sources.shop]\n",
            &format!("[sources.shop]\n{}\n", replica_config()),
        )
        .replace("cron = \"0 3 * * *\"", "cron = \"*/2 * * * * *\"");
    let config = db.dir.path().join("tidemark.toml");
    std::fs::write(&config, text).unwrap();
    let operator = token(&config, "ci", "operator");
    let run = spawn_run_with(&config, &[]);
    let base = format!("http://{}", api_addr(&config, 1));

    // Capture lands the invoices; the new-data job and the job chained after it follow.
    eventually(120, "revenue by status after the snapshot", || async {
        (lake_i64(&db, "SELECT sum(invoices) FROM reports.revenue_by_status").await == Some(3))
            .then_some(())
    })
    .await;
    db.exec("INSERT INTO invoices (id, status, total) VALUES (4, 'open', 1.00), (5, 'open', 2.00)")
        .await;
    eventually(60, "the new invoices in the revenue", || async {
        (lake_i64(
            &db,
            "SELECT invoices FROM reports.revenue_by_status WHERE status = 'open'",
        )
        .await
            == Some(3))
        .then_some(())
    })
    .await;
    eventually(60, "the chained job's output", || async {
        (lake_i64(&db, "SELECT count(*) FROM reports.unpaid").await == Some(2)).then_some(())
    })
    .await;
    // The cron job has run, capture still flowing beside it.
    eventually(60, "a nightly maintenance run", || async {
        let runs = get_json(&base, "/api/v1/runs?job=nightly_maintenance", &operator).await?;
        runs.as_array()?
            .iter()
            .any(|r| r["outcome"] == "succeeded")
            .then_some(())
    })
    .await;
    // And a run triggered through the API.
    trigger_and_succeed(&base, "daily_revenue", &operator).await;
    // Capture kept landing while the jobs ran.
    db.exec("INSERT INTO invoices (id, status, total) VALUES (6, 'paid', 3.00)")
        .await;
    eventually(60, "the last invoice", || async {
        (lake_i64(&db, &format!("SELECT count(*) FROM {d}.invoices")).await == Some(6))
            .then_some(())
    })
    .await;
    stop_cleanly(run, &config);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_serves_tls_with_the_endpoints_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    let o = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl CLI");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let wh = dir.path().join("warehouse");
    let config = jobs_only_config(
        dir.path(),
        &wh,
        "[server]\ntls_cert = \"server.crt\"\ntls_key = \"server.key\"\n\n\
         [jobs.noop]\nkind = \"sql\"\nsql = \"SELECT 1 AS one\"\ntarget = \"reports.noop\"\n",
    );
    let viewer = token(&config, "viewer", "viewer");
    let child = spawn_run_with(&config, &[]);
    let addr = api_addr(&config, 1);
    let port = addr.rsplit(':').next().unwrap().to_string();
    let curl = |url: String, extra: &[&str]| {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&cert)
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(extra)
            .arg(url)
            .output()
            .expect("curl")
    };
    let o = curl(format!("https://localhost:{port}/healthz"), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ok");
    let auth = format!("Authorization: Bearer {viewer}");
    let o = curl(
        format!("https://localhost:{port}/api/v1/jobs"),
        &["-H", &auth],
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"noop\""),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // Plain HTTP is not answered.
    let o = curl(format!("http://localhost:{port}/healthz"), &[]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("ok"));
    stop_cleanly(child, &config);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_job_keeps_the_models_level_with_new_data() {
    use tidemark_core::names::Naming;
    let dir = tempfile::tempdir().unwrap();
    let wh_path = dir.path().join("warehouse");
    let wh = tidemark_lake::Warehouse::new(wh_path.to_str().unwrap(), Default::default()).unwrap();
    let mut lander = tidemark_demo::Lander::open(&wh, Naming::SnakeCase)
        .await
        .unwrap();
    let mut workload = tidemark_demo::Workload::new(tidemark_demo::WorkloadConfig {
        days: 20,
        ..Default::default()
    });
    for _ in 0..10 {
        lander.land(&workload.next_day().unwrap()).await.unwrap();
    }
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
    let config = jobs_only_config(
        dir.path(),
        &wh_path,
        &format!(
            "[models]\npath = \"{}\"\n\n[jobs.models]\nkind = \"build\"\non = \"new_data\"\n\
             inputs = [\"invoicing.invoices\", \"invoicing.customers\"]\ndebounce = \"200ms\"\n",
            models.display()
        ),
    );
    let operator = token(&config, "ci", "operator");
    let run = spawn_run_with(&config, &[]);
    let base = format!("http://{}", api_addr(&config, 1));
    // By hand first: every model built.
    trigger_and_succeed(&base, "models", &operator).await;
    // Its data tests' outcomes are kept, with the job that ran them.
    let tested = tidemark_lake::last_model_tests(&wh).await.unwrap();
    assert!(
        !tested.is_empty()
            && tested
                .iter()
                .all(|r| r.ran_by == "job:models" && r.outcome == "pass"),
        "{tested:#?}"
    );
    // Then new invoices land: the job follows on its own, incrementally.
    for _ in 0..5 {
        lander.land(&workload.next_day().unwrap()).await.unwrap();
    }
    let project = |engine: &tidemark_query::Engine| {
        tidemark_models::Project::load(
            &tidemark_core::config::ModelsConfig {
                path: models.clone(),
                ..Default::default()
            },
            Some(&engine.landed_names()),
            "dev",
        )
        .unwrap()
    };
    let level = || async {
        let engine = tidemark_query::Engine::open(&wh).await.ok()?;
        let p = project(&engine);
        for m in p.models.values() {
            if !tidemark_models::drift::drift(&engine, m)
                .await
                .ok()?
                .is_none()
            {
                return None;
            }
        }
        // Built after the new days: versions of the first build closed by a second.
        let b = engine
            .query("SELECT count(*) AS n FROM analytics_history.customer_summary WHERE _valid_to IS NOT NULL")
            .await
            .ok()?;
        let col = b.first()?.column(0);
        let n = deltalake::arrow::util::display::array_value_to_string(col, 0).ok()?;
        (n.parse::<i64>().ok()? > 0).then_some(())
    };
    let start = Instant::now();
    while level().await.is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let runs = get_json(&base, "/api/v1/runs?job=models", &operator).await;
            let log = std::fs::read_to_string(config.with_file_name("run.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!(
                "the models did not follow the new days; runs: {runs:#?}\nlog (newest first):\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop_cleanly(run, &config);
}
