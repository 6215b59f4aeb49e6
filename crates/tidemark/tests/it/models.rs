//! `tidemark build` and `tidemark test` as users run them, and builds killed at
//! random moments: the example models (examples/models) must end equal to their SQL
//! on the same inputs, every change landed once.
//!
//! No MariaDB: the inputs are the demo's tables, landed a few days at a time by the
//! test itself between builds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tidemark_core::names::Naming;
use tidemark_demo::{Lander, Workload, WorkloadConfig};
use tidemark_lake::Warehouse;
use tidemark_query::Engine;

use crate::support::{ok, record_checked, record_fault, text, Lcg};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/models")
}

fn build_cmd(wh: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    c.arg("--warehouse")
        .arg(wh)
        .arg("--config")
        .arg(wh.join("no-config.toml"))
        .arg("build")
        .arg("--models")
        .arg(models_dir())
        .args(extra)
        .env("TIDEMARK_LOG_FORMAT", "json")
        .env_remove("TIDEMARK_ENV");
    c
}

fn run(wh: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--warehouse")
        .arg(wh)
        .arg("--config")
        .arg(wh.join("no-config.toml"))
        .args(args)
        .env("TIDEMARK_LOG_FORMAT", "json")
        .env_remove("TIDEMARK_ENV")
        .output()
        .expect("run tidemark")
}

/// Every model's rows equal its SQL's on the inputs as they are; returns the rows.
async fn assert_models_equal_their_sql(wh: &Warehouse) -> usize {
    let engine = Engine::open(wh).await.unwrap();
    let config = tidemark_core::config::ModelsConfig {
        path: models_dir(),
        ..Default::default()
    };
    let project =
        tidemark_models::Project::load(&config, Some(&engine.landed_names()), "dev").unwrap();
    let mut total = 0;
    for (name, d) in tidemark_models::drift::drift_all(&engine, &project)
        .await
        .unwrap()
    {
        assert!(d.is_none(), "model {name} differs from its SQL: {d:#?}");
        total += d.landed;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_and_test_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let wh_path = dir.path().join("wh");
    let wh = Warehouse::new(wh_path.to_str().unwrap(), Default::default()).unwrap();
    let mut lander = Lander::open(&wh, Naming::SnakeCase).await.unwrap();
    let mut workload = Workload::new(WorkloadConfig {
        days: 20,
        ..Default::default()
    });
    while let Some(day) = workload.next_day() {
        lander.land(&day).await.unwrap();
    }
    let out = ok(build_cmd(&wh_path, &["--select", "+revenue_by_country"])
        .output()
        .unwrap());
    assert!(
        out.contains("customer_summary") && out.contains("revenue_by_country"),
        "{out}"
    );
    assert!(
        !out.contains("open_receivables"),
        "only what was selected: {out}"
    );
    let out = ok(build_cmd(&wh_path, &[]).output().unwrap());
    assert!(out.contains("up to date"), "{out}");
    let out = ok(run(
        &wh_path,
        &["test", "--models", models_dir().to_str().unwrap()],
    ));
    assert!(out.contains("pass  unique(customer_id)"), "{out}");
    assert!(out.contains("pass  unit test"), "{out}");
    assert!(out.contains("0 failed"), "{out}");
    // The model answers over SQL with history like a source table.
    let out = ok(run(
        &wh_path,
        &[
            "sql",
            "SELECT count(*) AS versions FROM analytics_history.customer_summary",
        ],
    ));
    assert!(out.contains("versions"), "{out}");
    // A bad selector says which models there are.
    let o = build_cmd(&wh_path, &["--select", "nope"]).output().unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("no model nope"), "{}", text(&o));
    assert_models_equal_their_sql(&wh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_killed_at_random_moments_lose_and_double_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wh_path = dir.path().join("wh");
    let wh = Warehouse::new(wh_path.to_str().unwrap(), Default::default()).unwrap();
    let mut lander = Lander::open(&wh, Naming::SnakeCase).await.unwrap();
    let mut workload = Workload::new(WorkloadConfig {
        days: 40,
        ..Default::default()
    });
    for _ in 0..20 {
        lander.land(&workload.next_day().unwrap()).await.unwrap();
    }
    ok(build_cmd(&wh_path, &[]).output().unwrap());
    let mut rng = Lcg(0x5eed_0017);
    let mut kills = 0;
    // Each round: a few more days land, a build starts and is killed at a random
    // moment (some finish first); the next round's build picks up from whatever
    // the lake holds.
    for _ in 0..6 {
        for _ in 0..3 {
            if let Some(day) = workload.next_day() {
                lander.land(&day).await.unwrap();
            }
        }
        let mut child = build_cmd(&wh_path, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50 + rng.next(1500))).await;
        if let Ok(None) = child.try_wait() {
            record_fault("sigkill", "tidemark build");
            kills += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        kills > 0,
        "no build was killed mid-way; the test proves nothing"
    );
    // Whatever the kills left, one more build brings every model level with its
    // inputs: incremental models from the versions their last commit recorded.
    let out = ok(build_cmd(&wh_path, &[]).output().unwrap());
    assert!(!out.contains("FAILED"), "{out}");
    let rows = assert_models_equal_their_sql(&wh).await;
    record_checked(rows, "model rows after killed builds");

    // An engine that shares no code with tidemark (DuckDB, reading the inputs' Delta
    // tables with the `deltalake` package) runs the same SQL on the same inputs and
    // gets the same rows. Its reader takes each table's files as they are, so the
    // tails are folded in first.
    ok(run(&wh_path, &["maintain", "--no-vacuum"]));
    let compiled = dir.path().join("compiled");
    ok(run(
        &wh_path,
        &[
            "compile",
            "--models",
            models_dir().to_str().unwrap(),
            "--out",
            compiled.to_str().unwrap(),
        ],
    ));
    let python = std::env::var("TIDEMARK_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("TIDEMARK_TEST_PYTHON is not set: run the tests with scripts/test.sh, which provides a venv with duckdb and deltalake")
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/duckdb_models.py");
    let o = Command::new(python)
        .arg(script)
        .arg("compare")
        .arg(&wh_path)
        .arg(&compiled)
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "DuckDB disagrees:\n{out}");
    assert!(out.contains("\"differ\": 0"), "{out}");
}
