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
    // The build and the test run recorded their data tests in tidemark.model_tests;
    // the newest run of each is the test run's.
    let last = tidemark_lake::last_model_tests(&wh).await.unwrap();
    assert!(
        last.iter().any(|r| r.model == "customer_summary"
            && r.test == "unique(customer_id)"
            && r.outcome == "pass"
            && r.ran_by == "tidemark test"),
        "{last:#?}"
    );
    // The model answers over SQL with history like a source table.
    let out = ok(run(
        &wh_path,
        &[
            "sql",
            "SELECT count(*) AS versions FROM analytics_history.customer_summary",
        ],
    ));
    assert!(out.contains("versions"), "{out}");
    // The test outcomes answer over SQL too (tidemark's own schema: admins).
    let out = ok(run(
        &wh_path,
        &[
            "sql",
            "SELECT outcome, ran_by FROM tidemark.model_tests WHERE test = 'unique(customer_id)' AND ran_by = 'tidemark test'",
        ],
    ));
    assert!(
        out.contains("pass") && out.contains("tidemark test"),
        "{out}"
    );
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

/// `tidemark` run in an environment of a config file (no --warehouse).
fn in_env(config: &Path, env: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--config")
        .arg(config)
        .arg("--env")
        .arg(env)
        .args(args)
        .env("TIDEMARK_LOG_FORMAT", "json")
        .env_remove("TIDEMARK_ENV")
        .env_remove("TIDEMARK_WAREHOUSE")
        .output()
        .expect("run tidemark")
}

/// Every file and directory under `dir`, with its size, modification time and
/// contents: what must not change in a warehouse that is only read.
fn tree(dir: &Path) -> Vec<(String, u64, std::time::SystemTime, Vec<u8>)> {
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

/// Assert `dir` is as `before` found it, naming what changed.
fn assert_untouched(dir: &Path, before: &[(String, u64, std::time::SystemTime, Vec<u8>)]) {
    let after = tree(dir);
    let names = |t: &[(String, u64, std::time::SystemTime, Vec<u8>)]| -> Vec<String> {
        t.iter().map(|(p, ..)| p.clone()).collect()
    };
    assert_eq!(
        names(before),
        names(&after),
        "files added or removed in prod"
    );
    for (b, a) in before.iter().zip(&after) {
        assert!(b == a, "{} changed in prod", a.0);
    }
    record_checked(after.len(), "prod files unchanged by a deferred dev build");
}

/// A model's rows (its own columns, not tidemark's) in a warehouse, sorted.
async fn model_rows(wh: &Path, table: &str) -> Vec<String> {
    let wh = Warehouse::new(wh.to_str().unwrap(), Default::default()).unwrap();
    let engine = Engine::open(&wh).await.unwrap();
    let df = engine
        .sql(&format!("SELECT * FROM {table}"))
        .await
        .unwrap_or_else(|e| panic!("{table}: {e}"));
    let cols: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .filter(|f| !f.name().starts_with('_'))
        .map(|f| tidemark_lake::quote(f.name()))
        .collect();
    let batches = engine
        .query(&format!("SELECT {} FROM {table}", cols.join(", ")))
        .await
        .unwrap();
    tidemark_query::sorted_lines(&batches, "|").unwrap()
}

/// dbt's defer: dev, with no data of its own, builds reading prod's landed tables
/// (and prod's models it neither selects nor has built) read-only, and writes only to
/// its own warehouse: every file of prod is byte for byte as it was, with its size
/// and modification time, after each dev build; a model built in dev equals the
/// same model built in prod. Incremental models follow prod's changes in dev, and
/// the versions they record name prod, so a later dev build reading dev's own
/// sources builds them whole instead of taking prod's versions for dev's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_build_defers_to_prod_and_never_writes_there() {
    let dir = tempfile::tempdir().unwrap();
    let (prod, dev) = (dir.path().join("prod"), dir.path().join("dev"));
    let config = dir.path().join("tidemark.toml");
    std::fs::write(
        &config,
        format!(
            "[environments.dev]\nwarehouse = \"dev\"\ndefer_to = \"prod\"\n\n\
             [environments.prod]\nwarehouse = \"prod\"\n\n[models]\npath = \"{}\"\n",
            models_dir().display()
        ),
    )
    .unwrap();
    let prod_wh = Warehouse::new(prod.to_str().unwrap(), Default::default()).unwrap();
    let workload = || {
        Workload::new(WorkloadConfig {
            days: 30,
            end_us: 1_717_200_000_000_000,
            ..Default::default()
        })
    };
    let mut lander = Lander::open(&prod_wh, Naming::SnakeCase).await.unwrap();
    let mut days = workload();
    for _ in 0..15 {
        lander.land(&days.next_day().unwrap()).await.unwrap();
    }
    // Prod builds its models, as its daemon would.
    ok(in_env(&config, "prod", &["build"]));
    let before = tree(&prod);

    // Dev builds one model that reads another: the other is prod's.
    let out = ok(in_env(
        &config,
        "dev",
        &["build", "--select", "revenue_by_country"],
    ));
    assert!(
        out.contains("revenue_by_country") && out.contains("built whole"),
        "{out}"
    );
    assert_untouched(&prod, &before);
    let dev_wh = Warehouse::new(dev.to_str().unwrap(), Default::default()).unwrap();
    let listed: Vec<String> = dev_wh
        .list()
        .await
        .unwrap()
        .iter()
        .map(|l| format!("{}.{}", l.schema, l.table))
        .collect();
    assert_eq!(
        listed,
        ["analytics.revenue_by_country"],
        "dev holds what it built, only"
    );
    assert_eq!(
        model_rows(&dev, "analytics.revenue_by_country").await,
        model_rows(&prod, "analytics.revenue_by_country").await
    );
    // `tidemark sql` in dev reads the same way: prod's landed tables (and models dev
    // has not built), read-only, and dev's own model; `--no-defer` only dev's.
    let q = "SELECT (SELECT count(*) FROM invoicing.invoices) AS invoices, \
             (SELECT count(*) FROM analytics.revenue_by_country) AS countries, \
             (SELECT count(*) FROM analytics.open_receivables) AS receivables";
    // The CSV, without the log lines `ok` also returns.
    let csv = |out: String| -> String {
        out.lines()
            .filter(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let in_prod = csv(ok(in_env(&config, "prod", &["sql", "--format", "csv", q])));
    let in_dev = csv(ok(in_env(&config, "dev", &["sql", "--format", "csv", q])));
    assert!(!in_prod.contains(",0"), "prod has rows: {in_prod}");
    assert_eq!(in_dev, in_prod);
    let o = in_env(&config, "dev", &["sql", "--no-defer", q]);
    assert!(
        !o.status.success() && text(&o).contains("does not exist"),
        "dev alone has neither prod's sources nor its models: {}",
        text(&o)
    );
    assert_untouched(&prod, &before);

    // Every model in dev: each equals prod's, built from the same versions.
    let tables = [
        "customer_summary",
        "open_receivables",
        "revenue_by_month",
        "revenue_by_country",
        "payments_received",
    ];
    let same_as_prod = || async {
        for t in tables {
            let t = format!("analytics.{t}");
            let (d, p) = (model_rows(&dev, &t).await, model_rows(&prod, &t).await);
            assert!(!p.is_empty(), "{t}");
            assert_eq!(d, p, "{t} in dev differs from prod's");
        }
    };
    ok(in_env(&config, "dev", &["build"]));
    assert_untouched(&prod, &before);
    same_as_prod().await;
    // Asked to defer to itself, or to an environment not defined: refused.
    let o = in_env(&config, "dev", &["build", "--defer", "dev"]);
    assert!(
        !o.status.success() && text(&o).contains("cannot defer to itself"),
        "{}",
        text(&o)
    );
    let o = in_env(&config, "dev", &["build", "--defer", "staging"]);
    assert!(
        !o.status.success() && text(&o).contains("staging"),
        "{}",
        text(&o)
    );

    // Prod moves on; dev follows from prod's changes, incrementally.
    for _ in 0..5 {
        lander.land(&days.next_day().unwrap()).await.unwrap();
    }
    ok(in_env(&config, "prod", &["build"]));
    let before = tree(&prod);
    let out = ok(in_env(&config, "dev", &["build"]));
    assert!(
        line_of(&out, "customer_summary ").contains("built incrementally"),
        "{out}"
    );
    assert!(
        line_of(&out, "payments_received ").contains("built by appending"),
        "{out}"
    );
    assert_untouched(&prod, &before);
    same_as_prod().await;

    // Dev lands sources of its own and builds from them: the versions its models
    // recorded are prod's, so they build whole, with the reason.
    drop(lander);
    let mut own = Lander::open(&dev_wh, Naming::SnakeCase).await.unwrap();
    let mut days = workload();
    for _ in 0..10 {
        own.land(&days.next_day().unwrap()).await.unwrap();
    }
    let out = ok(in_env(&config, "dev", &["build", "--no-defer"]));
    for name in ["customer_summary ", "payments_received "] {
        let l = line_of(&out, name);
        assert!(
            l.contains("built whole")
                && l.contains("prod")
                && l.contains("this one reads it from this warehouse"),
            "{l}"
        );
    }
    assert_untouched(&prod, &before);
    assert_models_equal_their_sql(&dev_wh).await;
}

fn line_of(out: &str, prefix: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("{prefix}: {out}"))
        .to_string()
}
