//! The publish benchmark's tidemark side (bench/publish.sh runs it, in release):
//! lands `--rows` rows into `bench.events` as capture lands them (history commits of
//! 500,000 rows on a merge-on-read table), publishes them whole to the target (timed),
//! changes `--change` of them (updates, deletes, inserts) in one commit and publishes
//! again (timed: the incremental publish). Prints one JSON object.
//!
//! ```text
//! publish_bench --rows 5000000 --change 0.01 --mode append --schema bench_publish \
//!     --dir /tmp/wh --target postgres://tidemark@127.0.0.1:35432/postgres
//! ```
//! The password comes from TIDEMARK_TEST_PG_PASSWORD (as in the tests).

use std::sync::Arc;
use std::time::Instant;

use tidemark_core::change::{ChangeBatchBuilder, Op, Value};
use tidemark_core::config::{PublishConfig, PublishMode};
use tidemark_core::names::{Naming, TableName};
use tidemark_core::position::SourceState;
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_lake::{TableWriter, Warehouse};
use tidemark_publish::{publish, Options, Outcome};
use tidemark_query::Engine;

const CHUNK: usize = 500_000;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn schema() -> Arc<TableSchema> {
    let c = ColumnSchema::source;
    Arc::new(
        TableSchema::new(
            TableName::new("bench", "events", Naming::SnakeCase),
            vec![
                c("id", "bigint", "bigint(20)", None, None),
                c("customer_id", "int", "int(11)", None, None),
                c("amount", "decimal", "decimal(12,2)", Some(12), Some(2)),
                c("status", "varchar", "varchar(16)", None, None),
                c("created_at", "datetime", "datetime(6)", None, None),
                c("note", "varchar", "varchar(64)", None, None),
            ],
            &["id".to_string()],
            Naming::SnakeCase,
        )
        .expect("schema"),
    )
}

fn row(id: i64, version: i64) -> Vec<Value> {
    let statuses = ["open", "paid", "void", "late"];
    vec![
        Value::Int(id),
        Value::Int(id % 100_003),
        Value::Decimal(format!("{}.{:02}", (id * 7 + version) % 100_000, id % 100)),
        Value::Text(statuses[((id + version) % 4) as usize].into()),
        Value::Timestamp(1_767_225_600_000_000 + id * 1_000_000),
        Value::Text(format!("event {id} version {version}")),
    ]
}

fn state() -> SourceState {
    SourceState {
        source: "bench".into(),
        source_table: "bench.events".into(),
        ..Default::default()
    }
}

async fn land(w: &mut TableWriter, rows: &[(Op, Vec<Value>)], seq: &mut i64) {
    let mut b = ChangeBatchBuilder::new(w.schema().clone(), rows.len());
    for (op, values) in rows {
        *seq += 1;
        b.push_values(
            values,
            *op,
            1_767_225_600_000_000 + *seq,
            &format!("bench:{seq}"),
            *seq,
        )
        .expect("row");
    }
    w.append_history(&b.finish().expect("batch"), state())
        .await
        .expect("commit");
}

async fn timed_publish(dir: &str, cfg: &PublishConfig) -> (f64, u64) {
    let wh = Warehouse::new(dir, Default::default()).expect("warehouse");
    let start = Instant::now();
    let engine = Engine::open(&wh).await.expect("engine");
    let report = publish(&engine, "bench", cfg, &Options::default())
        .await
        .expect("publish");
    let secs = start.elapsed().as_secs_f64();
    match &report.tables[0].1 {
        Outcome::Published(p) => (secs, p.rows),
        other => panic!("publish: {other:?}"),
    }
}

#[tokio::main]
async fn main() {
    let rows: i64 = arg("--rows", "5000000").parse().expect("--rows");
    let change: f64 = arg("--change", "0.01").parse().expect("--change");
    let dir = arg("--dir", "target/bench/publish/wh");
    let mode = match arg("--mode", "append").as_str() {
        "append" => PublishMode::Append,
        "merge" => PublishMode::Merge,
        "mirror" => PublishMode::Mirror,
        m => panic!("--mode {m}"),
    };
    let cfg = PublishConfig {
        target: arg("--target", "postgres://tidemark@127.0.0.1:35432/postgres"),
        password_env: Some("TIDEMARK_TEST_PG_PASSWORD".into()),
        password_file: None,
        tables: vec!["bench.events".into()],
        mode,
        schema: arg("--schema", "bench_publish"),
        staging: None,
        staging_options: Default::default(),
        iam_role: None,
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let wh = Warehouse::new(&dir, Default::default()).expect("warehouse");
    let mut w = TableWriter::open(&wh, schema()).await.expect("open");
    w.start_merge_on_read().await.expect("merge-on-read");
    let mut seq = 0;
    let start = Instant::now();
    let mut id = 0;
    while id < rows {
        let n = CHUNK.min((rows - id) as usize);
        let chunk: Vec<(Op, Vec<Value>)> =
            (id..id + n as i64).map(|i| (Op::Read, row(i, 0))).collect();
        land(&mut w, &chunk, &mut seq).await;
        id += n as i64;
    }
    let land_secs = start.elapsed().as_secs_f64();

    let (full_secs, full_rows) = timed_publish(&dir, &cfg).await;

    // Change a fraction: 80 % updates, 10 % deletes, 10 % new keys.
    let n = ((rows as f64) * change) as i64;
    let step = (rows / n.max(1)).max(1);
    let mut changes = Vec::with_capacity(n as usize);
    for k in 0..n {
        let key = (k * step) % rows;
        match k % 10 {
            0 => changes.push((Op::Delete, row(key, 0))),
            1 => changes.push((Op::Create, row(rows + k, 0))),
            _ => changes.push((Op::Update, row(key, 1))),
        }
    }
    land(&mut w, &changes, &mut seq).await;
    let (inc_secs, inc_rows) = timed_publish(&dir, &cfg).await;
    println!(
        "{{\"rows\": {rows}, \"mode\": \"{}\", \"land_secs\": {land_secs:.2}, \"full_publish_secs\": {full_secs:.2}, \"full_rows\": {full_rows}, \"full_rows_per_sec\": {:.0}, \"changed\": {n}, \"incremental_publish_secs\": {inc_secs:.2}, \"incremental_rows\": {inc_rows}, \"incremental_of_full\": {:.4}}}",
        mode.as_str(),
        full_rows as f64 / full_secs,
        inc_secs / full_secs
    );
}
