//! Incremental build against a whole rebuild, on one machine, in one run
//! (bench/models.sh runs it; figures go to bench/RESULTS.md).
//!
//! `bench.events` gets `--rows` rows (five per customer) in the layout capture lands
//! (history log, compacted current table). Two incremental models read it: one sums
//! the rows per customer (an aggregate by a column that is not the input's key), one
//! cleans them row by row (keyed by the input's key, dbt's staging model). After
//! their first builds, `--change` of the rows change (updates of amount and status,
//! deletes, inserts, spread over random customers) in one commit, and, per model:
//!
//! * the incremental build lands them (timed);
//! * a whole rebuild of the same state is timed (`--full-refresh`);
//! * the model is checked equal to its SQL.
//!
//! ```sh
//! cargo run --release -p tidemark-models --example models_bench -- --rows 5000000 --change 0.01
//! ```

use std::sync::Arc;
use std::time::Instant;

use deltalake::arrow::array::{
    Decimal128Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use tidemark_core::change::ChangeBatch;
use tidemark_core::config::ModelsConfig;
use tidemark_core::names::{Naming, TableName};
use tidemark_core::position::SourceState;
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_lake::{TableWriter, Warehouse};
use tidemark_models::{Options, Outcome, Project};
use tidemark_query::Engine;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn column(
    name: &str,
    data_type: &str,
    column_type: &str,
    p: Option<u64>,
    s: Option<u64>,
) -> ColumnSchema {
    ColumnSchema {
        source_name: name.into(),
        name: name.into(),
        column_type: column_type.into(),
        data_type: data_type.into(),
        precision: p,
        scale: s,
        stored: Vec::new(),
    }
}

/// A tiny deterministic generator (no dependency for a benchmark).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Rows as a change batch: (id, customer, cents, status, op).
fn batch(
    schema: &Arc<TableSchema>,
    rows: &[(i64, i64, i128, &str, &str)],
    ts: i64,
    seq: i64,
) -> ChangeBatch {
    let n = rows.len();
    let data = RecordBatch::try_new(
        schema.change_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(
                Decimal128Array::from_iter_values(rows.iter().map(|r| r.2))
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
            ),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.4))),
            Arc::new(TimestampMicrosecondArray::from(vec![ts; n]).with_timezone("UTC")),
            Arc::new(StringArray::from(vec!["bench"; n])),
            Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| seq + i))),
        ],
    )
    .unwrap();
    ChangeBatch {
        table: schema.clone(),
        data,
    }
}

async fn build(
    wh: &Warehouse,
    project: &Project,
    model: &str,
    full_refresh: bool,
) -> (f64, tidemark_models::Built) {
    let engine = Arc::new(Engine::open(wh).await.unwrap());
    let started = Instant::now();
    let report = tidemark_models::build(
        wh,
        engine,
        project,
        &Options {
            select: vec![model.to_string()],
            full_refresh,
            threads: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let took = started.elapsed().as_secs_f64();
    match report.get(model) {
        Some(Outcome::Built(b)) => (took, b.clone()),
        other => panic!("{model}: {other:?}"),
    }
}

#[tokio::main]
async fn main() {
    // RUST_LOG=tidemark_models=info shows each build's phases (bench/models.sh sets it).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let rows: i64 = arg("--rows", "5000000").parse().unwrap();
    let change: f64 = arg("--change", "0.01").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::new(dir.path().join("wh").to_str().unwrap(), Default::default()).unwrap();
    let customers = (rows / 5).max(1);
    let schema = Arc::new(
        TableSchema::new(
            TableName::new("bench", "events", Naming::SnakeCase),
            vec![
                column("id", "bigint", "bigint(20)", Some(19), Some(0)),
                column("customer_id", "bigint", "bigint(20)", Some(19), Some(0)),
                column("amount", "decimal", "decimal(12,2)", Some(12), Some(2)),
                column("status", "varchar", "varchar(10)", None, None),
            ],
            &["id".to_string()],
            Naming::SnakeCase,
        )
        .unwrap(),
    );
    let mut w = TableWriter::open(&wh, schema.clone()).await.unwrap();
    w.start_merge_on_read().await.unwrap();
    let state = SourceState {
        source: "bench".into(),
        source_table: "bench.events".into(),
        ..Default::default()
    };
    let mut rng = Rng(17);
    let started = Instant::now();
    let ts = 1_717_200_000_000_000i64;
    let chunk = 500_000i64;
    let mut id = 0i64;
    while id < rows {
        let n = chunk.min(rows - id);
        let b: Vec<(i64, i64, i128, &str, &str)> = (id..id + n)
            .map(|i| {
                (
                    i,
                    i % customers,
                    (rng.below(100_000) + 1) as i128,
                    "open",
                    "c",
                )
            })
            .collect();
        w.append_history(&batch(&schema, &b, ts, id), state.clone())
            .await
            .unwrap();
        id += n;
    }
    w.compact_current().await.unwrap();
    eprintln!(
        "landed {rows} rows in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    // Two shapes of incremental model, each measured on its own:
    // * an aggregate by a column that is not the input's key (a customer summary):
    //   a build recomputes every customer a change touched, from all their rows;
    // * a row-level model keyed by the input's key (dbt's staging model, the merge
    //   step of the old design): a build recomputes the changed rows only.
    // The models' files are the test's (tests/models.rs), so what is measured here
    // is what is checked there.
    for (name, sql) in [
        (
            "customer_totals.sql",
            include_str!("../tests/bench_models/customer_totals.sql"),
        ),
        (
            "events_clean.sql",
            include_str!("../tests/bench_models/events_clean.sql"),
        ),
    ] {
        std::fs::write(models.join(name), sql).unwrap();
    }
    let shapes = [
        (
            "customer_totals",
            "aggregate by a column other than the input's key",
        ),
        ("events_clean", "row-level, keyed by the input's key"),
    ];
    let engine = Engine::open(&wh).await.unwrap();
    let config = ModelsConfig {
        path: models,
        ..Default::default()
    };
    let project = Project::load(&config, Some(&engine.landed_names()), "bench").unwrap();
    let mut first = Vec::new();
    for (model, _) in shapes {
        first.push(build(&wh, &project, model, false).await.0);
    }

    // The change: updates, deletes, inserts over random rows, one commit.
    let changes = ((rows as f64) * change) as i64;
    let mut seen = std::collections::BTreeSet::new();
    let mut b: Vec<(i64, i64, i128, &str, &str)> = Vec::new();
    for k in 0..changes {
        let what = rng.below(10);
        if what < 2 {
            b.push((
                rows + k,
                rng.below(customers as u64) as i64,
                500,
                "open",
                "c",
            ));
            continue;
        }
        let row = rng.below(rows as u64) as i64;
        if !seen.insert(row) {
            continue;
        }
        if what < 4 {
            b.push((row, row % customers, 0, "open", "d"));
        } else {
            let status = if what < 6 { "void" } else { "paid" };
            b.push((
                row,
                row % customers,
                (rng.below(100_000) + 1) as i128,
                status,
                "u",
            ));
        }
    }
    let landed = b.len();
    w.append_history(&batch(&schema, &b, ts + 1_000_000, rows * 2), state.clone())
        .await
        .unwrap();

    let mut measured = Vec::new();
    for ((model, shape), first) in shapes.into_iter().zip(first) {
        let (incremental, inc) = build(&wh, &project, model, false).await;
        assert!(inc.incremental, "{inc:?}");
        let (full, whole) = build(&wh, &project, model, true).await;
        let engine = Engine::open(&wh).await.unwrap();
        let drift = tidemark_models::drift::drift(&engine, &project.models[model])
            .await
            .unwrap();
        assert!(drift.is_none(), "{model}: {drift:?}");
        measured.push(serde_json::json!({
            "model": model,
            "shape": shape,
            "first_build_s": first,
            "incremental_s": incremental,
            "incremental_keys": inc.rows,
            "incremental_landed": inc.inserted + inc.updated + inc.deleted,
            "full_rebuild_s": full,
            "full_rows": whole.rows,
            "incremental_over_full": incremental / full,
        }));
    }
    println!(
        "{}",
        serde_json::json!({
            "rows": rows,
            "customers": customers,
            "changed_rows": landed,
            "models": measured,
        })
    );
}
