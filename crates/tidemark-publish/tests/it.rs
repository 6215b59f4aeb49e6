//! Publishing against a real PostgreSQL (the one scripts/test.sh starts, named in
//! TIDEMARK_TEST_PG_URL, password in TIDEMARK_TEST_PG_PASSWORD). The lake side is
//! written through the lake writer, as capture writes it (a snapshot, then a
//! merge-on-read log of changes), so no MySQL is needed.
//!
//! Without TIDEMARK_TEST_PG_URL the tests fail with the reason rather than skip, as
//! the S3 and MySQL tests do: a run that silently tests nothing must not pass.
//! Each test publishes into a schema of its own, so they run side by side.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use tidemark_core::change::{ChangeBatchBuilder, Op, Value};
use tidemark_core::config::{PublishConfig, PublishMode};
use tidemark_core::names::{Naming, TableName};
use tidemark_core::position::SourceState;
use tidemark_core::schema::{ColumnSchema, TableSchema};
use tidemark_lake::{TableKind, TableWriter, Warehouse};
use tidemark_publish::{publish, Error, Options, Outcome};
use tidemark_query::Engine;

#[path = "it/redshift.rs"]
mod redshift;
#[path = "it/tls.rs"]
mod tls;

const PASSWORD_ENV: &str = "TIDEMARK_TEST_PG_PASSWORD";

fn pg_url() -> String {
    std::env::var("TIDEMARK_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "TIDEMARK_TEST_PG_URL is not set: the publish tests need a PostgreSQL. Run them \
             through scripts/test.sh, which starts one (scripts/postgres.sh) and sets it \
             together with TIDEMARK_TEST_PG_PASSWORD."
        )
    })
}

async fn pg() -> tokio_postgres::Client {
    let mut cfg: tokio_postgres::Config = pg_url().parse().unwrap();
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        cfg.password(p);
    }
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// A fresh target schema for one test.
async fn target_schema(test: &str) -> String {
    let schema = format!("pub_{test}");
    pg().await
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap();
    schema
}

fn publication(schema: &str, tables: &[&str], mode: PublishMode) -> PublishConfig {
    PublishConfig {
        target: pg_url(),
        password_env: Some(PASSWORD_ENV.into()),
        password_file: None,
        tables: tables.iter().map(|t| t.to_string()).collect(),
        mode,
        schema: schema.into(),
        staging: None,
        staging_options: Default::default(),
        iam_role: None,
    }
}

fn column(name: &str, dt: &str, ct: &str) -> ColumnSchema {
    ColumnSchema::source(name, dt, ct, None, None)
}

fn items_schema(cols: Vec<ColumnSchema>) -> TableSchema {
    TableSchema::new(
        TableName::new("shop", "items", Naming::SnakeCase),
        cols,
        &["id".to_string()],
        Naming::SnakeCase,
    )
    .unwrap()
}

fn items_columns() -> Vec<ColumnSchema> {
    vec![
        column("id", "int", "int(11)"),
        column("name", "varchar", "varchar(20)"),
        column("qty", "int", "int(11)"),
    ]
}

fn state() -> SourceState {
    SourceState {
        source: "test".into(),
        source_table: "shop.items".into(),
        ..Default::default()
    }
}

/// A lake with one table, `shop.items`, written as capture writes it.
struct Lake {
    _dir: tempfile::TempDir,
    wh: Warehouse,
    w: TableWriter,
    now: i64,
    seq: i64,
    /// Versions written to the log.
    versions: usize,
}

impl Lake {
    async fn new(schema: TableSchema) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let wh = Warehouse::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
        let mut w = TableWriter::open(&wh, Arc::new(schema)).await.unwrap();
        w.start_merge_on_read().await.unwrap();
        Self {
            _dir: dir,
            wh,
            w,
            now: 1_767_225_600_000_000, // 2026-01-01
            seq: 0,
            versions: 0,
        }
    }

    /// One history commit of `(op, values)` rows.
    async fn land(&mut self, rows: &[(Op, Vec<Value>)]) {
        let mut b = ChangeBatchBuilder::new(self.w.schema().clone(), rows.len());
        for (op, values) in rows {
            self.now += 1_000_000;
            self.seq += 1;
            b.push_values(
                values,
                *op,
                self.now,
                &format!("pos:{}", self.seq),
                self.seq,
            )
            .unwrap();
        }
        self.w
            .append_history(&b.finish().unwrap(), state())
            .await
            .unwrap();
        self.versions += rows.len();
    }

    async fn engine(&self) -> Engine {
        Engine::open(&self.wh).await.unwrap()
    }
}

fn item(id: i64, name: &str, qty: i64) -> Vec<Value> {
    vec![Value::Int(id), Value::Text(name.into()), Value::Int(qty)]
}

/// Rows as text lines (NULL spelled out), sorted.
fn lines(batches: &[RecordBatch]) -> Vec<String> {
    tidemark_query::sorted_lines(batches, "|").unwrap()
}

async fn lake_lines(engine: &Engine, sql: &str) -> Vec<String> {
    lines(
        &engine
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
    )
}

/// The target's rows of `sql` (every column cast to text in the query), as lines.
async fn target_lines(sql: &str) -> Vec<String> {
    let rows = pg()
        .await
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let mut out: Vec<String> = rows
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    r.get::<_, Option<String>>(i)
                        .unwrap_or_else(|| "NULL".into())
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    out.sort();
    out
}

async fn target_count(sql: &str) -> i64 {
    pg().await.query_one(sql, &[]).await.unwrap().get(0)
}

async fn run(engine: &Engine, name: &str, cfg: &PublishConfig) -> Vec<(String, Outcome)> {
    publish(engine, name, cfg, &Options::default())
        .await
        .unwrap_or_else(|e| panic!("publish {name}: {e}"))
        .tables
}

fn published(outcome: &[(String, Outcome)]) -> &tidemark_publish::Published {
    match &outcome[0].1 {
        Outcome::Published(p) => p,
        other => panic!("expected a publish, got {other:?}"),
    }
}

/// A deterministic pseudo-random sequence.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Random inserts, updates, deletes and re-inserts of a few keys, `commits` commits.
async fn random_changes(
    lake: &mut Lake,
    rng: &mut Rng,
    live: &mut BTreeMap<i64, bool>,
    commits: usize,
) {
    for _ in 0..commits {
        let n = 1 + rng.below(20) as usize;
        let mut rows = Vec::new();
        for _ in 0..n {
            let id = rng.below(40) as i64;
            let exists = live.get(&id).copied().unwrap_or(false);
            let op = match (exists, rng.below(4)) {
                (false, _) => Op::Create,
                (true, 0) => Op::Delete,
                (true, _) => Op::Update,
            };
            live.insert(id, op != Op::Delete);
            rows.push((
                op,
                item(id, &format!("n{}", rng.below(1000)), rng.below(100) as i64),
            ));
        }
        lake.land(&rows).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_equals_the_table_through_updates_and_deletes() {
    let schema = target_schema("mirror").await;
    let cfg = publication(&schema, &["shop.items"], PublishMode::Mirror);
    let mut lake = Lake::new(items_schema(items_columns())).await;
    let (mut rng, mut live) = (Rng(0x5eed), BTreeMap::new());
    let mut deleted = 0;
    for round in 0..6 {
        random_changes(&mut lake, &mut rng, &mut live, 1 + round).await;
        let engine = lake.engine().await;
        let out = run(&engine, "m", &cfg).await;
        deleted += published(&out).deleted;
        let want = lake_lines(&engine, "SELECT id, name, qty FROM shop.items").await;
        let got = target_lines(&format!(
            "SELECT id::text, name, qty::text FROM \"{schema}\".items"
        ))
        .await;
        assert_eq!(
            got, want,
            "round {round}: the target differs from the table"
        );
        assert!(!want.is_empty());
        // A second run finds nothing new and changes nothing.
        assert_eq!(run(&engine, "m", &cfg).await[0].1, Outcome::UpToDate);
    }
    assert!(deleted > 0, "the workload deleted nothing at the target");
    let key: Vec<String> = target_lines(&format!(
        "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
         AND a.attnum = ANY(i.indkey) WHERE i.indrelid = '\"{schema}\".items'::regclass AND i.indisprimary"
    ))
    .await;
    assert_eq!(
        key,
        ["id"],
        "mirror tables get the lake's key as primary key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_upserts_and_keeps_deleted_rows_marked() {
    let schema = target_schema("merge").await;
    let cfg = publication(&schema, &["shop.items"], PublishMode::Merge);
    let mut lake = Lake::new(items_schema(items_columns())).await;
    lake.land(&[
        (Op::Create, item(1, "one", 1)),
        (Op::Create, item(2, "two", 2)),
        (Op::Create, item(3, "three", 3)),
    ])
    .await;
    let out = run(&lake.engine().await, "g", &cfg).await;
    assert_eq!(published(&out).rows, 3);
    lake.land(&[
        (Op::Update, item(1, "uno", 10)),
        (Op::Delete, item(2, "two", 2)),
        (Op::Update, item(3, "tres", 30)),
        (Op::Update, item(3, "drei", 300)),
        (Op::Create, item(4, "four", 4)),
        (Op::Delete, item(4, "four", 4)),
    ])
    .await;
    let out = run(&lake.engine().await, "g", &cfg).await;
    // Keys 1, 2, 3, 4 once each: the last version of each key.
    assert_eq!(published(&out).rows, 4);
    let got = target_lines(&format!(
        "SELECT id::text, name, qty::text, _op FROM \"{schema}\".items"
    ))
    .await;
    assert_eq!(
        got,
        [
            "1|uno|10|u",
            "2|two|2|d",
            "3|drei|300|u",
            // Inserted and deleted between two publishes: its last image, deleted.
            "4|four|4|d",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_sends_every_version_once() {
    let schema = target_schema("append").await;
    let cfg = publication(&schema, &["shop.items"], PublishMode::Append);
    let mut lake = Lake::new(items_schema(items_columns())).await;
    let (mut rng, mut live) = (Rng(0xa99e), BTreeMap::new());
    for round in 0..4 {
        random_changes(&mut lake, &mut rng, &mut live, 3).await;
        let engine = lake.engine().await;
        run(&engine, "a", &cfg).await;
        // A retry of the same run (the process did not learn of its commit).
        assert_eq!(run(&engine, "a", &cfg).await[0].1, Outcome::UpToDate);
        let n = target_count(&format!("SELECT count(*) FROM \"{schema}\".items")).await;
        assert_eq!(
            n as usize, lake.versions,
            "round {round}: versions at the target"
        );
        let distinct = target_count(&format!(
            "SELECT count(*) FROM (SELECT DISTINCT _source_pos, _seq FROM \"{schema}\".items) d"
        ))
        .await;
        assert_eq!(distinct, n, "round {round}: a version arrived twice");
    }
    let deletes = target_count(&format!(
        "SELECT count(*) FROM \"{schema}\".items WHERE _op = 'd'"
    ))
    .await;
    assert!(deletes > 0, "append carries deletes as rows with _op = 'd'");
}

/// `shop.types`: a column of every MySQL type the lake lands, and three rows: one
/// with a value in each, one of NULLs, one of small values.
fn all_types() -> (TableSchema, Vec<(Op, Vec<Value>)>) {
    let dec = |p: u64, s: u64| ColumnSchema {
        precision: Some(p),
        scale: Some(s),
        ..column("x", "decimal", &format!("decimal({p},{s})"))
    };
    let named = |c: ColumnSchema, n: &str| ColumnSchema {
        source_name: n.into(),
        ..c
    };
    let cols = vec![
        column("id", "int", "int(11)"),
        named(column("", "tinyint", "tinyint(4)"), "t_tiny"),
        named(column("", "smallint", "smallint(6)"), "t_small"),
        named(column("", "int", "int(10) unsigned"), "t_uint"),
        named(column("", "bigint", "bigint(20)"), "t_big"),
        named(column("", "bigint", "bigint(20) unsigned"), "t_ubig"),
        named(dec(10, 2), "t_dec"),
        named(dec(38, 10), "t_dec38"),
        named(dec(65, 30), "t_dec65"),
        named(column("", "float", "float"), "t_float"),
        named(column("", "double", "double"), "t_double"),
        named(
            ColumnSchema {
                precision: Some(1),
                ..column("", "bit", "bit(1)")
            },
            "t_bool",
        ),
        named(column("", "date", "date"), "t_date"),
        named(column("", "datetime", "datetime(6)"), "t_datetime"),
        named(column("", "timestamp", "timestamp(6)"), "t_timestamp"),
        named(column("", "time", "time"), "t_time"),
        named(column("", "varchar", "varchar(50)"), "t_text"),
        named(column("", "json", "json"), "t_json"),
        named(column("", "blob", "blob"), "t_blob"),
        named(column("", "year", "year(4)"), "t_year"),
    ];
    let ts = TableSchema::new(
        TableName::new("shop", "types", Naming::SnakeCase),
        cols,
        &["id".to_string()],
        Naming::SnakeCase,
    )
    .unwrap();
    // 2026-03-04 05:06:07.089012 UTC, in micros.
    let instant: i64 = 1_772_600_767_089_012;
    let full = vec![
        Value::Int(1),
        Value::Int(-128),
        Value::Int(-32768),
        Value::Int(4_294_967_295),
        Value::Int(i64::MIN),
        Value::UInt(u64::MAX),
        Value::Decimal("-12345678.90".into()),
        Value::Decimal("1234567890123456789012345678.0123456789".into()),
        Value::Decimal(
            "-12345678901234567890123456789012345.123456789012345678901234567890".into(),
        ),
        Value::Float(1.5),
        Value::Float(-2.25e300),
        Value::Bool(true),
        Value::Date(-719_162), // 0001-01-01
        Value::Timestamp(instant),
        Value::Timestamp(instant),
        Value::Text("-838:59:59.000000".into()),
        Value::Text("héllo, 'wörld' \"😀\"\\".into()),
        Value::Text("{\"a\": [1, 2.5, null], \"b\": \"x\"}".into()),
        Value::Bytes(vec![0, 1, 2, 255, b'\\']),
        Value::Int(2155),
    ];
    let mut nulls = vec![Value::Int(2)];
    nulls.extend(std::iter::repeat_n(Value::Null, full.len() - 1));
    let small = {
        let mut v = full.clone();
        v[0] = Value::Int(3);
        v[6] = Value::Decimal("0.01".into());
        v[7] = Value::Decimal("-0.0000000001".into());
        v[8] = Value::Decimal("0".into());
        v[12] = Value::Date(0);
        v
    };
    (
        ts,
        vec![(Op::Create, full), (Op::Create, nulls), (Op::Create, small)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips() {
    let schema = target_schema("types").await;
    let (ts, rows) = all_types();
    let mut lake = Lake::new(ts).await;
    lake.land(&rows).await;
    let cfg = publication(&schema, &["shop.types"], PublishMode::Mirror);
    let out = run(&lake.engine().await, "t", &cfg).await;
    assert_eq!(published(&out).rows, 3);

    let types = target_lines(&format!(
        "SELECT attname::text || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = '\"{schema}\".types'::regclass AND attnum > 0 AND NOT attisdropped"
    ))
    .await;
    let want_types = [
        "_ingest_ts timestamp with time zone",
        "_op text",
        "_source_ts timestamp with time zone",
        "id integer",
        "t_big bigint",
        "t_blob bytea",
        "t_bool boolean",
        "t_date date",
        "t_datetime timestamp without time zone",
        "t_dec numeric(10,2)",
        "t_dec38 numeric(38,10)",
        "t_dec65 numeric(65,30)",
        "t_double double precision",
        "t_float real",
        "t_json jsonb",
        "t_small smallint",
        "t_text text",
        "t_time text",
        "t_timestamp timestamp with time zone",
        "t_tiny smallint",
        "t_ubig numeric(20,0)",
        "t_uint bigint",
        "t_year smallint",
    ];
    assert_eq!(types, want_types);

    let cols = [
        "id",
        "t_tiny",
        "t_small",
        "t_uint",
        "t_big",
        "t_ubig",
        "t_dec",
        "t_dec38",
        "t_dec65",
        "t_float",
        "t_double",
        "t_bool",
        "t_date",
        "t_datetime",
        "t_timestamp AT TIME ZONE 'UTC'",
        "t_time",
        "t_text",
        "t_json",
        "encode(t_blob, 'hex')",
        "t_year",
    ];
    let cast: Vec<String> = cols.iter().map(|c| format!("({c})::text")).collect();
    let got = target_lines(&format!(
        "SELECT {} FROM \"{schema}\".types",
        cast.join(", ")
    ))
    .await;
    assert_eq!(
        got,
        [
            "1|-128|-32768|4294967295|-9223372036854775808|18446744073709551615|-12345678.90|\
             1234567890123456789012345678.0123456789|\
             -12345678901234567890123456789012345.123456789012345678901234567890|1.5|-2.25e+300|\
             true|0001-01-01|2026-03-04 05:06:07.089012|2026-03-04 05:06:07.089012|-838:59:59.000000|\
             héllo, 'wörld' \"😀\"\\|{\"a\": [1, 2.5, null], \"b\": \"x\"}|000102ff5c|2155",
            "2|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL",
            "3|-128|-32768|4294967295|-9223372036854775808|18446744073709551615|0.01|\
             -0.0000000001|0.000000000000000000000000000000|1.5|-2.25e+300|\
             true|1970-01-01|2026-03-04 05:06:07.089012|2026-03-04 05:06:07.089012|-838:59:59.000000|\
             héllo, 'wörld' \"😀\"\\|{\"a\": [1, 2.5, null], \"b\": \"x\"}|000102ff5c|2155",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_column_is_added_and_a_changed_type_parks_only_its_table() {
    let schema = target_schema("evolve").await;
    let mut lake = Lake::new(items_schema(items_columns())).await;
    lake.land(&[(Op::Create, item(1, "one", 1))]).await;
    // A second table in the same warehouse and publication, which must go on.
    let other_ts = TableSchema::new(
        TableName::new("shop", "other", Naming::SnakeCase),
        vec![column("id", "int", "int(11)")],
        &["id".to_string()],
        Naming::SnakeCase,
    )
    .unwrap();
    let mut other = TableWriter::open(&lake.wh, Arc::new(other_ts))
        .await
        .unwrap();
    other.start_merge_on_read().await.unwrap();
    let land_other = |ts: Arc<TableSchema>, id: i64| {
        let mut b = ChangeBatchBuilder::new(ts, 1);
        b.push_values(
            &[Value::Int(id)],
            Op::Create,
            1_767_225_600_000_000 + id,
            "p",
            id,
        )
        .unwrap();
        b.finish().unwrap()
    };
    let batch = land_other(other.schema().clone(), 1);
    other.append_history(&batch, state()).await.unwrap();
    let cfg = publication(&schema, &["shop.items", "shop.other"], PublishMode::Mirror);
    run(&lake.engine().await, "e", &cfg).await;

    // A column added upstream.
    let evolve = |lake: &Lake, cols: Vec<ColumnSchema>| {
        let log_columns: Vec<String> = lake
            .w
            .delta(TableKind::History)
            .snapshot()
            .unwrap()
            .schema()
            .fields()
            .map(|f| f.name().clone())
            .collect();
        tidemark_core::evolve::evolve(lake.w.schema(), &items_schema(cols), &[], &log_columns)
            .unwrap()
    };
    let mut cols = items_columns();
    cols.push(column("note", "varchar", "varchar(10)"));
    let e = evolve(&lake, cols.clone());
    lake.w.evolve(e.schema, &e.added, state()).await.unwrap();
    lake.land(&[(
        Op::Create,
        vec![
            Value::Int(2),
            Value::Text("two".into()),
            Value::Int(2),
            Value::Text("new".into()),
        ],
    )])
    .await;
    let out = run(&lake.engine().await, "e", &cfg).await;
    assert_eq!(published(&out).added_columns, ["note"]);
    let got = target_lines(&format!(
        "SELECT id::text, name, qty::text, note FROM \"{schema}\".items"
    ))
    .await;
    assert_eq!(got, ["1|one|1|NULL", "2|two|2|new"]);

    // A type changed upstream (int → bigint: the lake widens in place, the target's
    // integer column would not hold the new values).
    cols[2] = column("qty", "bigint", "bigint(20)");
    let e = evolve(&lake, cols);
    lake.w.evolve(e.schema, &e.added, state()).await.unwrap();
    lake.land(&[(
        Op::Update,
        vec![
            Value::Int(2),
            Value::Text("two".into()),
            Value::Int(5_000_000_000),
            Value::Text("big".into()),
        ],
    )])
    .await;
    let batch = land_other(other.schema().clone(), 2);
    other.append_history(&batch, state()).await.unwrap();
    let out = run(&lake.engine().await, "e", &cfg).await;
    let Outcome::Parked(why) = &out[0].1 else {
        panic!("a changed type must park the table: {out:?}");
    };
    assert!(
        why.contains("column qty is integer at the target and bigint")
            && why.contains("tidemark publish e --full-refresh --table shop.items"),
        "{why}"
    );
    assert!(
        matches!(&out[1].1, Outcome::Published(p) if p.rows == 1),
        "the other table goes on: {out:?}"
    );
    // Parked until the way out is taken, which republishes the whole table.
    assert!(matches!(
        run(&lake.engine().await, "e", &cfg).await[0].1,
        Outcome::Parked(_)
    ));
    let engine = lake.engine().await;
    let report = publish(
        &engine,
        "e",
        &cfg,
        &Options {
            tables: vec!["shop.items".into()],
            full_refresh: true,
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(&report.tables[0].1, Outcome::Published(p) if p.created),
        "{report:?}"
    );
    let got = target_lines(&format!(
        "SELECT id::text, name, qty::text, note, format_type(pg_typeof(qty), NULL) FROM \"{schema}\".items"
    ))
    .await;
    assert_eq!(got, ["1|one|1|NULL|bigint", "2|two|5000000000|big|bigint"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_down_is_named_and_a_later_run_catches_up() {
    let schema = target_schema("down").await;
    let mut lake = Lake::new(items_schema(items_columns())).await;
    lake.land(&[
        (Op::Create, item(1, "one", 1)),
        (Op::Create, item(2, "two", 2)),
    ])
    .await;
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut down = publication(&schema, &["shop.items"], PublishMode::Append);
    down.target = format!("postgres://tidemark@127.0.0.1:{port}/postgres");
    let engine = lake.engine().await;
    let err = publish(&engine, "d", &down, &Options::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Unreachable { .. }) && err.is_transient(),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "target postgres://tidemark@127.0.0.1:{port}/postgres is unreachable"
        )) && text.contains("nothing was lost"),
        "{text}"
    );
    // More changes land while the target is down; the next run sends them all.
    lake.land(&[(Op::Update, item(1, "uno", 10))]).await;
    let up = publication(&schema, &["shop.items"], PublishMode::Append);
    let out = run(&lake.engine().await, "d", &up).await;
    assert_eq!(published(&out).rows, 3);
    assert_eq!(
        target_lines(&format!(
            "SELECT id::text, name, _op FROM \"{schema}\".items"
        ))
        .await,
        ["1|one|c", "1|uno|u", "2|two|c"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_publishers_at_once_never_double_a_row() {
    let schema = target_schema("race").await;
    let mut lake = Lake::new(items_schema(items_columns())).await;
    let (mut rng, mut live) = (Rng(0x7ace), BTreeMap::new());
    let cfg = publication(&schema, &["shop.items"], PublishMode::Append);
    for round in 0..5 {
        random_changes(&mut lake, &mut rng, &mut live, 2).await;
        // Two engines, as two processes would have: each its own snapshot of the lake.
        let (e1, e2) = (lake.engine().await, lake.engine().await);
        let opts = Options::default();
        let (a, b) = tokio::join!(
            publish(&e1, "r", &cfg, &opts),
            publish(&e2, "r", &cfg, &opts)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let sent = |r: &tidemark_publish::Report| match &r.tables[0].1 {
            Outcome::Published(p) => p.rows,
            Outcome::UpToDate => 0,
            other => panic!("{other:?}"),
        };
        // Exactly one of them sent the new versions; the other found them there.
        assert_eq!(sent(&a).min(sent(&b)), 0, "round {round}: both sent rows");
        let n = target_count(&format!("SELECT count(*) FROM \"{schema}\".items")).await;
        assert_eq!(n as usize, lake.versions, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_unknown_tables_and_foreign_target_tables_are_refused() {
    let schema = target_schema("refuse").await;
    let mut lake = Lake::new(items_schema(items_columns())).await;
    lake.land(&[(Op::Create, item(1, "one", 1))]).await;
    let engine = lake.engine().await;
    let err = publish(
        &engine,
        "x",
        &publication(&schema, &["shop.nope"], PublishMode::Mirror),
        &Options::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("publication x") && err.contains("shop.nope is not a landed table"),
        "{err}"
    );
    // A table at the target that this publication did not create is not written to.
    let c = pg().await;
    c.batch_execute(&format!(
        "CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".items (id int primary key, mine text)"
    ))
    .await
    .unwrap();
    let out = run(
        &engine,
        "x",
        &publication(&schema, &["shop.items"], PublishMode::Mirror),
    )
    .await;
    assert!(
        matches!(&out[0].1, Outcome::Parked(m) if m.contains("has no record of publishing it")),
        "{out:?}"
    );
}
