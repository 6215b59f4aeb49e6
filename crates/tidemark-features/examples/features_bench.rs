//! The feature store benchmark's Rust half (bench/features.sh drives it):
//!
//! * `land DIR N`: three source tables of N entities each (`bench.users`,
//!   `bench.accounts`, `bench.activity`; 10 features together), landed with history
//!   through the lake's writer (every key inserted 30 days ago, a fifth of them
//!   updated 10 days ago, then compacted as `tidemark run` would), the same rows as
//!   Parquet for Feast (`DIR/feast/*.parquet`, with `event_timestamp`), and N entity
//!   rows at random instants of the last 30 days (`DIR/entities.parquet`).
//! * `lookup DIR`: the online store built from that warehouse (the start-up rebuild),
//!   its memory, then in-process lookups of 1 and of 100 keys, timed one by one;
//!   prints one JSON object.

use std::sync::Arc;
use std::time::Instant;

use deltalake::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tidemark_core::change::{ChangeBatchBuilder, Op, Value};
use tidemark_core::names::{Naming, TableName};
use tidemark_core::position::SourceState;
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_features::{FeatureViews, OnlineStore, Variant};
use tidemark_lake::{TableWriter, Warehouse};
use tidemark_query::Engine;

/// The views bench/features.sh also writes into its tidemark.toml.
pub const VIEWS: &str = r#"
[features.profile]
source = "bench.users"
entity = "user_id"
join_on = "id"
features = ["age", "country", "score", "plan"]

[features.account]
source = "bench.accounts"
entity = "user_id"
join_on = "id"
features = ["balance", "tier", "open_days"]

[features.activity]
source = "bench.activity"
entity = "user_id"
join_on = "id"
features = ["logins", "clicks", "device"]
"#;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn col(name: &str, dt: &str) -> ColumnSchema {
    ColumnSchema {
        source_name: name.into(),
        name: String::new(),
        column_type: match dt {
            "varchar" => "varchar(32)".into(),
            other => other.into(),
        },
        data_type: dt.into(),
        precision: None,
        scale: None,
        stored: Vec::new(),
    }
}

const DAY_US: i64 = 86_400_000_000;
const COUNTRIES: [&str; 6] = ["FR", "DE", "US", "BR", "JP", "IN"];
const PLANS: [&str; 3] = ["free", "pro", "team"];
const DEVICES: [&str; 4] = ["ios", "android", "web", "desktop"];

/// One table's rows: (id, values, valid_from); a kind of column per feature.
struct Table {
    name: &'static str,
    columns: Vec<(&'static str, &'static str)>,
}

fn tables() -> Vec<Table> {
    vec![
        Table {
            name: "users",
            columns: vec![
                ("age", "int"),
                ("country", "varchar"),
                ("score", "double"),
                ("plan", "varchar"),
            ],
        },
        Table {
            name: "accounts",
            columns: vec![("balance", "double"), ("tier", "int"), ("open_days", "int")],
        },
        Table {
            name: "activity",
            columns: vec![("logins", "int"), ("clicks", "int"), ("device", "varchar")],
        },
    ]
}

fn value(rng: &mut Rng, kind: &str, name: &str) -> Value {
    match (kind, name) {
        ("varchar", "country") => Value::Text(COUNTRIES[rng.below(6) as usize].into()),
        ("varchar", "plan") => Value::Text(PLANS[rng.below(3) as usize].into()),
        ("varchar", _) => Value::Text(DEVICES[rng.below(4) as usize].into()),
        ("double", _) => Value::Float(rng.below(1_000_000) as f64 / 100.0),
        _ => Value::Int(rng.below(10_000) as i64),
    }
}

fn write_parquet(path: &std::path::Path, batches: &[RecordBatch]) {
    let file = std::fs::File::create(path).unwrap();
    let mut w =
        deltalake::parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), None).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

async fn land(dir: &std::path::Path, n: i64) {
    let wh = Warehouse::new(dir.join("wh").to_str().unwrap(), Default::default()).unwrap();
    std::fs::create_dir_all(dir.join("feast")).unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    let t0 = now - 30 * DAY_US;
    let t1 = now - 10 * DAY_US;
    for (ti, t) in tables().into_iter().enumerate() {
        let started = Instant::now();
        let mut columns = vec![col("id", "bigint")];
        columns.extend(t.columns.iter().map(|(c, k)| col(c, k)));
        let ts = Arc::new(
            TableSchema::new(
                TableName::new("bench", t.name, Naming::SnakeCase),
                columns,
                &["id".to_string()],
                Naming::SnakeCase,
            )
            .unwrap(),
        );
        let mut w = TableWriter::open(&wh, ts.clone()).await.unwrap();
        w.start_merge_on_read().await.unwrap();
        let mut rng = Rng(0x5EED_0000 + ti as u64);
        // Parquet for Feast: id, features, event_timestamp (both versions).
        let mut p_ids: Vec<i64> = Vec::new();
        let mut p_vals: Vec<Vec<Value>> = vec![Vec::new(); t.columns.len()];
        let mut p_ts: Vec<i64> = Vec::new();
        let mut seq = 0i64;
        for (pass, op) in [(0, Op::Create), (1, Op::Update)] {
            let chunk = 200_000usize;
            let mut start = 0i64;
            while start < n {
                let end = (start + chunk as i64).min(n);
                let mut b = ChangeBatchBuilder::new(ts.clone(), chunk);
                for id in start..end {
                    if pass == 1 && id % 5 != 0 {
                        continue;
                    }
                    seq += 1;
                    let vf = if pass == 0 {
                        t0 + id % DAY_US
                    } else {
                        t1 + id % DAY_US
                    };
                    let mut row = vec![Value::Int(id)];
                    for (j, (c, k)) in t.columns.iter().enumerate() {
                        let v = value(&mut rng, k, c);
                        p_vals[j].push(v.clone());
                        row.push(v);
                    }
                    p_ids.push(id);
                    p_ts.push(vf);
                    b.push_values(&row, op, vf, &format!("bench:{seq}"), seq)
                        .unwrap();
                }
                let state = SourceState {
                    source: "bench".into(),
                    source_table: format!("bench.{}", t.name),
                    ..Default::default()
                };
                w.append_history(&b.finish().unwrap(), state).await.unwrap();
                start = end;
            }
        }
        w.compact_current().await.unwrap();
        let mut fields = vec![Field::new("user_id", DataType::Int64, false)];
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(p_ids))];
        for (j, (c, k)) in t.columns.iter().enumerate() {
            let vals = std::mem::take(&mut p_vals[j]);
            match *k {
                "varchar" => {
                    fields.push(Field::new(*c, DataType::Utf8, true));
                    arrays.push(Arc::new(StringArray::from_iter_values(
                        vals.into_iter().map(|v| match v {
                            Value::Text(s) => s,
                            _ => unreachable!(),
                        }),
                    )));
                }
                "double" => {
                    fields.push(Field::new(*c, DataType::Float64, true));
                    arrays.push(Arc::new(Float64Array::from_iter_values(
                        vals.into_iter().map(|v| match v {
                            Value::Float(f) => f,
                            _ => unreachable!(),
                        }),
                    )));
                }
                _ => {
                    fields.push(Field::new(*c, DataType::Int64, true));
                    arrays.push(Arc::new(Int64Array::from_iter_values(
                        vals.into_iter().map(|v| match v {
                            Value::Int(i) => i,
                            _ => unreachable!(),
                        }),
                    )));
                }
            }
        }
        fields.push(Field::new(
            "event_timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ));
        arrays.push(Arc::new(
            TimestampMicrosecondArray::from(p_ts).with_timezone("UTC"),
        ));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap();
        write_parquet(
            &dir.join("feast").join(format!("{}.parquet", t.name)),
            &[batch],
        );
        eprintln!(
            "landed bench.{} ({n} entities) in {:.1} s",
            t.name,
            started.elapsed().as_secs_f64()
        );
    }
    // Entity rows: every entity once, at a random instant of the last 30 days.
    let mut rng = Rng(0xE17);
    let ids: Vec<i64> = (0..n).collect();
    let ts: Vec<i64> = (0..n)
        .map(|_| now - 1 - rng.below((30 * DAY_US) as u64) as i64)
        .collect();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Int64, false),
            Field::new(
                "event_timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ])),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
        ],
    )
    .unwrap();
    write_parquet(&dir.join("entities.parquet"), &[batch]);
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn lookup(dir: &std::path::Path) {
    #[derive(serde::Deserialize)]
    struct File {
        features: std::collections::BTreeMap<String, toml::Table>,
    }
    let f: File = toml::from_str(VIEWS).unwrap();
    let views = FeatureViews::parse(&f.features).unwrap();
    let wh = Warehouse::new(dir.join("wh").to_str().unwrap(), Default::default()).unwrap();
    let before = rss_kib();
    let started = Instant::now();
    let engine = Engine::open(&wh).await.unwrap();
    let store = OnlineStore::new(views.iter(), &Default::default());
    store.catch_up(&engine, true).await;
    let build_s = started.elapsed().as_secs_f64();
    let after = rss_kib();
    let v = store.view("profile").unwrap();
    let mem: Vec<_> = store
        .views()
        .map(|v| (v.def.name.clone(), v.memory()))
        .collect();
    let entities = v.memory().entities as u64;
    let mut rng = Rng(42);
    let now = chrono::Utc::now().timestamp_micros();
    let mut one = Vec::new();
    for _ in 0..200_000 {
        let k = rng.below(entities).to_string();
        let t = Instant::now();
        let key = v.key(&[&k]).unwrap();
        let found = v.lookup(&[key], Variant::Plain, now).unwrap();
        std::hint::black_box(&found);
        one.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mut hundred = Vec::new();
    for _ in 0..10_000 {
        let ks: Vec<String> = (0..100).map(|_| rng.below(entities).to_string()).collect();
        let t = Instant::now();
        let keys: Vec<String> = ks.iter().map(|k| v.key(&[k]).unwrap()).collect();
        let found = v.lookup(&keys, Variant::Plain, now).unwrap();
        std::hint::black_box(&found);
        hundred.push(t.elapsed().as_secs_f64() * 1e6);
    }
    one.sort_by(f64::total_cmp);
    hundred.sort_by(f64::total_cmp);
    // Save and load: what `tidemark features materialize` writes and a start reads.
    let t = Instant::now();
    let saved = store.save(&wh, &[]).await.unwrap();
    let save_s = t.elapsed().as_secs_f64();
    let again = OnlineStore::new(views.iter(), &Default::default());
    let t = Instant::now();
    again.load(&engine, &wh).await.unwrap();
    again.catch_up(&engine, true).await;
    let load_s = t.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "entities": entities,
        "build_s": build_s,
        "rss_growth_mib": (after.saturating_sub(before)) as f64 / 1024.0,
        "memory": mem.iter().map(|(n, m)| serde_json::json!({"view": n, "entities": m.entities, "bytes": m.bytes, "bytes_per_entity": m.bytes as f64 / m.entities.max(1) as f64})).collect::<Vec<_>>(),
        "one_key_us": {"p50": percentile(&one, 0.5), "p99": percentile(&one, 0.99)},
        "hundred_keys_us": {"p50": percentile(&hundred, 0.5), "p99": percentile(&hundred, 0.99)},
        "snapshot_bytes": saved.iter().map(|s| s.bytes).sum::<usize>(),
        "snapshot_save_s": save_s,
        "snapshot_load_and_catch_up_s": load_s,
    });
    println!("{out}");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("land") => {
            let n: i64 = args
                .get(3)
                .and_then(|n| n.parse().ok())
                .unwrap_or(1_000_000);
            land(std::path::Path::new(&args[2]), n).await;
        }
        Some("lookup") => lookup(std::path::Path::new(&args[2])).await,
        Some("views") => print!("{VIEWS}"),
        _ => {
            eprintln!("usage: features_bench land DIR [N] | lookup DIR | views");
            std::process::exit(2);
        }
    }
}
