//! Redshift targets, as far as they can be tested without a Redshift:
//!
//! * staging: Parquet files and the manifest written to the S3 test server (moto,
//!   TIDEMARK_TEST_S3_ENDPOINT from scripts/test.sh), read back with the parquet
//!   crate and compared with the lake;
//! * the generated SQL of each mode (golden strings and structure);
//! * the whole publish run against the test PostgreSQL speaking for Redshift (same
//!   protocol): every statement runs as generated, except `COPY … FROM 's3://…'`,
//!   which PostgreSQL does not have — in its place the test reads the manifest and
//!   the files it lists from S3, as COPY would, and INSERTs their rows into the
//!   stage. PostgreSQL's MERGE (15+) has the form Redshift's has; that the statements
//!   run on PostgreSQL shows their logic, not that Redshift accepts them.
//!
//! Without TIDEMARK_TEST_S3_ENDPOINT (or TIDEMARK_TEST_PG_URL) the tests that need it
//! fail with the reason rather than skip, as the lake's S3 tests do.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::{Array, RecordBatch};
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::util::display::array_value_to_string;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::FutureExt;
use tidemark_core::config::Config;
use tidemark_lake::object_store::path::Path as ObjectPath;
use tidemark_lake::object_store::{ObjectStore, ObjectStoreExt};
use tidemark_publish::redshift::{
    self, Increment, InsteadOfCopy, Kind, Load, Plan, Staged, Staging, State, STAGE,
};
use tidemark_publish::PgType;

use super::*;

const BUCKET: &str = "tidemark-publish-test";
const ROLE: &str = "arn:aws:iam::123456789012:role/tidemark-test";

fn s3_endpoint() -> String {
    let endpoint = std::env::var("TIDEMARK_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "TIDEMARK_TEST_S3_ENDPOINT is not set: the Redshift staging tests need an \
             S3-compatible server. Run them through scripts/test.sh, which starts one (moto) \
             and sets it together with dummy AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION."
        )
    });
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(
            std::env::var_os(var).is_some(),
            "{var} is not set; run the tests through scripts/test.sh (it sets dummy credentials for the test server)"
        );
    }
    endpoint
}

/// Create the test bucket with a plain HTTP PUT (moto accepts it unsigned); an
/// existing bucket is fine.
fn create_bucket(endpoint: &str) {
    use std::io::{Read, Write};
    let rest = endpoint.trim_start_matches("http://");
    let hostport = rest.split('/').next().unwrap();
    let mut conn = std::net::TcpStream::connect(hostport)
        .unwrap_or_else(|e| panic!("cannot reach the S3 test server at {endpoint}: {e}"));
    write!(
        conn,
        "PUT /{BUCKET} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap_or("");
    assert!(
        status == "200" || status == "409",
        "creating bucket {BUCKET}: {response}"
    );
}

/// A staging prefix of its own for one test (reruns never collide), and its options.
fn staging_location(test: &str) -> (String, BTreeMap<String, String>) {
    let endpoint = s3_endpoint();
    create_bucket(&endpoint);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let location = format!("s3://{BUCKET}/stage-{test}-{}-{nanos}/", std::process::id());
    let options = BTreeMap::from([
        ("endpoint".to_string(), endpoint),
        ("region".to_string(), "us-east-1".to_string()),
        ("allow_http".to_string(), "true".to_string()),
    ]);
    (location, options)
}

/// Every object under `prefix`: (key, size), sorted.
async fn listing(store: &Arc<dyn ObjectStore>, prefix: &ObjectPath) -> Vec<(String, u64)> {
    use futures::TryStreamExt;
    let mut all: Vec<(String, u64)> = store
        .list(Some(prefix))
        .map_ok(|m| (m.location.to_string(), m.size))
        .try_collect()
        .await
        .unwrap();
    all.sort();
    all
}

async fn read_parquet(store: &Arc<dyn ObjectStore>, path: &ObjectPath) -> Vec<RecordBatch> {
    let bytes = store.get(path).await.unwrap().bytes().await.unwrap();
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// The manifest as Redshift reads it: (url, mandatory, content_length) per entry.
async fn manifest_entries(staging: &Staging, staged: &Staged) -> Vec<(String, bool, u64)> {
    let (path, url) = staged.manifest.as_ref().expect("a manifest");
    assert_eq!(url, &staging.url(path));
    assert!(url.starts_with(&format!("s3://{BUCKET}/")) && url.ends_with("/manifest.json"));
    let bytes = staging
        .store()
        .get(path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        m.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["entries"],
        "{m}"
    );
    m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["url"].as_str().unwrap().to_string(),
                e["mandatory"].as_bool().unwrap(),
                e["meta"]["content_length"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn increment<'a>(
    engine_tables: &'a (TableSchema, deltalake::DeltaTable),
    mode: PublishMode,
    mark: Option<i64>,
    new_table: bool,
) -> Increment<'a> {
    Increment {
        hist: &engine_tables.1,
        ts: &engine_tables.0,
        mode,
        mark,
        new_table,
    }
}

fn loaded(engine: &Engine, schema: &str, table: &str) -> (TableSchema, deltalake::DeltaTable) {
    (
        engine.landed_schema(schema, table).unwrap(),
        engine.loaded_history(schema, table).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_parquet_holds_the_published_rows_in_every_type() {
    let (location, options) = staging_location("types");
    let staging = Staging::new(&location, &options).unwrap();
    let (ts, rows) = all_types();
    let mut lake = Lake::new(ts).await;
    lake.land(&rows).await;
    let engine = lake.engine().await;
    let t = loaded(&engine, "shop", "types");
    let prefix = staging.run_prefix("dw", "shop.types", &redshift::run_id(0));
    let (staged, next) = redshift::stage_increment(
        &staging,
        prefix.clone(),
        &increment(&t, PublishMode::Mirror, None, true),
        redshift::STAGE_FILE_BYTES,
    )
    .await
    .unwrap()
    .expect("rows to stage");
    assert!(next > 0);
    assert_eq!((staged.rows, staged.files.len()), (3, 1));

    let batches = read_parquet(staging.store(), &staged.files[0].path).await;
    // The files' columns are the published ones, in order, with the types the
    // Redshift columns load from (COPY of Parquet maps by position).
    let schema = batches[0].schema();
    let got: Vec<(String, DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let want: Vec<(String, DataType)> = staged
        .columns
        .iter()
        .map(|(n, t)| (n.clone(), t.arrow()))
        .collect();
    assert_eq!(got, want);
    let names: Vec<&str> = staged.columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"id"));
    assert_eq!(
        &names[names.len() - 3..],
        ["_op", "_source_ts", "_ingest_ts"]
    );
    let types: BTreeMap<&str, String> = staged
        .columns
        .iter()
        .map(|(n, t)| (n.as_str(), redshift::column_type(*t)))
        .collect();
    assert_eq!(types["t_ubig"], "NUMERIC(20,0)");
    assert_eq!(types["t_dec38"], "NUMERIC(38,10)");
    assert_eq!(types["t_dec65"], "VARCHAR(67)");
    assert_eq!(types["t_json"], "VARCHAR(65535)");
    assert_eq!(types["t_blob"], "VARBYTE(1024000)");
    assert_eq!(types["t_datetime"], "TIMESTAMP");
    assert_eq!(types["t_timestamp"], "TIMESTAMPTZ");
    assert_eq!(types["_ingest_ts"], "TIMESTAMPTZ");

    // Row for row what the table holds, every value of every type.
    let want = lake_lines(
        &engine,
        &format!("SELECT {} FROM shop.types", names.join(", ")),
    )
    .await;
    assert_eq!(lines(&batches), want);
    let full = lines(&batches)
        .into_iter()
        .find(|l| l.starts_with("1|"))
        .unwrap();
    for v in [
        "|18446744073709551615|",
        "|1234567890123456789012345678.0123456789|",
        "|-12345678901234567890123456789012345.123456789012345678901234567890|",
        "|0001-01-01|",
        "|-838:59:59.000000|",
        "|héllo, 'wörld' \"😀\"\\|",
        "|{\"a\": [1, 2.5, null], \"b\": \"x\"}|",
        "|000102ff5c|",
    ] {
        assert!(full.contains(v), "{v} missing from {full}");
    }
    staged.remove(&staging).await.unwrap();
    assert!(listing(staging.store(), &prefix).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_bounded_and_each_manifest_lists_exactly_its_run_s_files() {
    let (location, options) = staging_location("manifest");
    let staging = Staging::new(&location, &options).unwrap();
    let mut lake = Lake::new(items_schema(items_columns())).await;
    let batch = |from: i64, n: i64| -> Vec<(Op, Vec<Value>)> {
        (from..from + n)
            .map(|i| {
                (
                    Op::Create,
                    item(i, &format!("name-{i}-{}", i * 7919 % 1000), i),
                )
            })
            .collect()
    };
    for c in 0..4 {
        lake.land(&batch(c * 5000, 5000)).await;
    }
    let max_file_bytes = 64 * 1024;
    let engine = lake.engine().await;
    let t = loaded(&engine, "shop", "items");
    let first_prefix = staging.run_prefix("dw", "shop.items", &redshift::run_id(1));
    let (first, mark) = redshift::stage_increment(
        &staging,
        first_prefix.clone(),
        &increment(&t, PublishMode::Append, None, true),
        max_file_bytes,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(first.rows, 20_000);
    assert!(
        first.files.len() > 2,
        "20000 rows in files of about {max_file_bytes} bytes: {:?}",
        first.files
    );

    let check = |staged: &Staged, listed: &[(String, u64)], entries: &[(String, bool, u64)]| {
        // The prefix holds the files and the manifest, nothing else.
        let (manifest_path, _) = staged.manifest.as_ref().unwrap();
        let mut want: Vec<(String, u64)> = staged
            .files
            .iter()
            .map(|f| (f.path.to_string(), f.bytes))
            .collect();
        let manifest_size = listed
            .iter()
            .find(|(p, _)| *p == manifest_path.to_string())
            .expect("the manifest is stored")
            .1;
        want.push((manifest_path.to_string(), manifest_size));
        want.sort();
        assert_eq!(listed, want);
        // The manifest lists exactly the stored Parquet files, with their real sizes.
        let mut stored: Vec<(String, bool, u64)> = listed
            .iter()
            .filter(|(p, _)| p.ends_with(".parquet"))
            .map(|(p, n)| (format!("s3://{BUCKET}/{p}"), true, *n))
            .collect();
        stored.sort();
        let mut entries = entries.to_vec();
        entries.sort();
        assert_eq!(entries, stored);
        for f in &staged.files {
            // Bounded: about the bound, never more than one slice of rows over it.
            assert!(
                f.bytes <= 2 * max_file_bytes as u64,
                "{} is {} bytes",
                f.url,
                f.bytes
            );
        }
    };
    let listed = listing(staging.store(), &first_prefix).await;
    let entries = manifest_entries(&staging, &first).await;
    check(&first, &listed, &entries);
    let mut rows = 0;
    let mut all = Vec::new();
    for f in &first.files {
        let b = read_parquet(staging.store(), &f.path).await;
        let n: usize = b.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(n as u64, f.rows);
        rows += n;
        all.extend(b);
    }
    assert_eq!(rows, 20_000);
    let versions = lines(&all);
    let mut distinct = versions.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 20_000, "a version staged twice");

    // A second run above the first's mark: its manifest names its own files only.
    lake.land(&batch(20_000, 3000)).await;
    let engine = lake.engine().await;
    let t = loaded(&engine, "shop", "items");
    let second_prefix = staging.run_prefix("dw", "shop.items", &redshift::run_id(2));
    assert_ne!(first_prefix, second_prefix);
    let (second, _) = redshift::stage_increment(
        &staging,
        second_prefix.clone(),
        &increment(&t, PublishMode::Append, Some(mark), false),
        max_file_bytes,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(second.rows, 3000);
    let listed = listing(staging.store(), &second_prefix).await;
    let entries = manifest_entries(&staging, &second).await;
    check(&second, &listed, &entries);
    let first_urls: Vec<&str> = first.files.iter().map(|f| f.url.as_str()).collect();
    assert!(entries
        .iter()
        .all(|(u, _, _)| !first_urls.contains(&u.as_str())
            && u.starts_with(&staging.url(&second_prefix))));
    // Nothing new above the second's mark: nothing staged.
    first.remove(&staging).await.unwrap();
    second.remove(&staging).await.unwrap();
    let root = ObjectPath::parse(
        location
            .trim_start_matches(&format!("s3://{BUCKET}/"))
            .trim_end_matches('/'),
    )
    .unwrap();
    assert!(listing(staging.store(), &root).await.is_empty());
}

// ------------------------------------------------------------------ SQL

fn small_columns() -> Vec<(String, PgType)> {
    vec![
        ("id".to_string(), PgType::Integer),
        ("name".to_string(), PgType::Text),
        ("_op".to_string(), PgType::Text),
        ("_source_ts".to_string(), PgType::TimestampTz),
        ("_ingest_ts".to_string(), PgType::TimestampTz),
    ]
}

fn sql_of(mode: PublishMode, plan: &Plan, copy: bool) -> Vec<redshift::Statement> {
    let cols = small_columns();
    let key: Vec<&str> = if mode == PublishMode::Append {
        vec![]
    } else {
        vec!["id"]
    };
    let state = State {
        mode: mode.as_str().into(),
        version: 7,
        ingest_us: 1_767_225_601_000_000,
        table_id: "0b6e-tbl".into(),
        rows: 42,
        key: key.iter().map(|k| k.to_string()).collect(),
        columns: plan.columns.clone(),
    };
    redshift::statements(&Load {
        publication: "dw",
        table: "shop.items",
        schema: "lake",
        name: "items",
        mode,
        columns: &cols,
        key: &key,
        plan,
        copy: copy.then_some(("s3://bkt/stage/dw/shop.items/v7-1/manifest.json", ROLE)),
        state: &state,
        published_at_us: 1_767_225_602_500_000,
    })
    .unwrap()
}

fn first_plan() -> Plan {
    Plan {
        drop_first: false,
        create: true,
        add: vec![],
        mark: None,
        rows_before: 0,
        columns: small_columns()
            .into_iter()
            .map(|(n, t)| (n, redshift::column_type(t)))
            .collect(),
    }
}

#[test]
fn generated_sql_of_each_mode() {
    let begin: Vec<String> = redshift::begin("lake").into_iter().map(|s| s.sql).collect();
    assert_eq!(begin, ["BEGIN", "LOCK \"lake\".\"tidemark_publish_state\""]);

    // Merge, first publish: golden.
    let merge: Vec<String> = sql_of(PublishMode::Merge, &first_plan(), true)
        .into_iter()
        .map(|s| s.sql)
        .collect();
    let want = [
        "CREATE TABLE \"lake\".\"items\" (\"id\" INTEGER, \"name\" VARCHAR(65535), \"_op\" VARCHAR(65535), \"_source_ts\" TIMESTAMPTZ, \"_ingest_ts\" TIMESTAMPTZ, PRIMARY KEY (\"id\"))",
        "CREATE TEMP TABLE \"__tidemark_stage\" (\"id\" INTEGER, \"name\" VARCHAR(65535), \"_op\" VARCHAR(65535), \"_source_ts\" TIMESTAMPTZ, \"_ingest_ts\" TIMESTAMPTZ)",
        "COPY \"__tidemark_stage\" FROM 's3://bkt/stage/dw/shop.items/v7-1/manifest.json' IAM_ROLE 'arn:aws:iam::123456789012:role/tidemark-test' FORMAT AS PARQUET MANIFEST",
        "MERGE INTO \"lake\".\"items\" USING \"__tidemark_stage\" ON \"items\".\"id\" = \"__tidemark_stage\".\"id\" \
         WHEN MATCHED THEN UPDATE SET \"name\" = CASE WHEN \"__tidemark_stage\".\"_op\" = 'd' THEN \"items\".\"name\" ELSE \"__tidemark_stage\".\"name\" END, \
         \"_op\" = \"__tidemark_stage\".\"_op\", \"_source_ts\" = \"__tidemark_stage\".\"_source_ts\", \"_ingest_ts\" = \"__tidemark_stage\".\"_ingest_ts\" \
         WHEN NOT MATCHED THEN INSERT (\"id\", \"name\", \"_op\", \"_source_ts\", \"_ingest_ts\") VALUES (\"__tidemark_stage\".\"id\", \"__tidemark_stage\".\"name\", \"__tidemark_stage\".\"_op\", \"__tidemark_stage\".\"_source_ts\", \"__tidemark_stage\".\"_ingest_ts\")",
        "DROP TABLE \"__tidemark_stage\"",
        "DELETE FROM \"lake\".\"tidemark_publish_state\" WHERE \"publication\" = 'dw' AND \"table_name\" = 'shop.items'",
        "INSERT INTO \"lake\".\"tidemark_publish_state\" (\"publication\", \"table_name\", \"mode\", \"version\", \"ingest_us\", \"table_id\", \"rows_published\", \"key_columns\", \"column_types\", \"published_at\") \
         VALUES ('dw', 'shop.items', 'merge', 7, 1767225601000000, '0b6e-tbl', 42, '[\"id\"]', \
         '[[\"id\",\"INTEGER\"],[\"name\",\"VARCHAR(65535)\"],[\"_op\",\"VARCHAR(65535)\"],[\"_source_ts\",\"TIMESTAMPTZ\"],[\"_ingest_ts\",\"TIMESTAMPTZ\"]]', \
         CAST('2026-01-01 00:00:02.500000+00' AS TIMESTAMPTZ))",
        "COMMIT",
    ];
    assert_eq!(merge, want);

    let kinds = |sql: &[redshift::Statement]| sql.iter().map(|s| s.kind).collect::<Vec<_>>();
    // Mirror, a later publish with a column added upstream.
    let mut later = first_plan();
    later.create = false;
    later.mark = Some(1);
    later.add = vec![("note".into(), PgType::Text)];
    let mirror = sql_of(PublishMode::Mirror, &later, true);
    assert_eq!(
        kinds(&mirror),
        [
            Kind::AddColumn,
            Kind::CreateStage,
            Kind::Copy,
            Kind::DeleteDeleted,
            Kind::PruneStage,
            Kind::Merge,
            Kind::DropStage,
            Kind::DeleteState,
            Kind::InsertState,
            Kind::Commit,
        ]
    );
    assert_eq!(
        mirror[0].sql,
        "ALTER TABLE \"lake\".\"items\" ADD COLUMN \"note\" VARCHAR(65535)"
    );
    assert_eq!(
        mirror[3].sql,
        "DELETE FROM \"lake\".\"items\" USING \"__tidemark_stage\" WHERE \"__tidemark_stage\".\"_op\" = 'd' AND \"items\".\"id\" = \"__tidemark_stage\".\"id\""
    );
    assert_eq!(
        mirror[4].sql,
        "DELETE FROM \"__tidemark_stage\" WHERE \"_op\" = 'd'"
    );
    // Mirror's MERGE takes every column from the stage (deleted keys are gone).
    assert!(
        mirror[5].sql.contains("ON \"items\".\"id\" = \"__tidemark_stage\".\"id\" WHEN MATCHED THEN UPDATE SET \"name\" = \"__tidemark_stage\".\"name\", \"_op\" = ")
            && !mirror[5].sql.contains("CASE"),
        "{}",
        mirror[5].sql
    );

    // Append: the stage's rows inserted as they are.
    let append = sql_of(PublishMode::Append, &later, true);
    assert_eq!(
        kinds(&append),
        [
            Kind::AddColumn,
            Kind::CreateStage,
            Kind::Copy,
            Kind::Insert,
            Kind::DropStage,
            Kind::DeleteState,
            Kind::InsertState,
            Kind::Commit,
        ]
    );
    assert_eq!(
        append[3].sql,
        "INSERT INTO \"lake\".\"items\" (\"id\", \"name\", \"_op\", \"_source_ts\", \"_ingest_ts\") SELECT \"id\", \"name\", \"_op\", \"_source_ts\", \"_ingest_ts\" FROM \"__tidemark_stage\""
    );

    for s in merge
        .iter()
        .chain(mirror.iter().map(|s| &s.sql))
        .chain(append.iter().map(|s| &s.sql))
    {
        assert!(s.len() < redshift::MAX_STATEMENT_BYTES);
    }
    // Every mode: the COPY names the manifest and the role, and the state row is
    // written in the same transaction, right before its COMMIT.
    for sql in [&mirror, &append] {
        let copy = sql.iter().find(|s| s.kind == Kind::Copy).unwrap();
        assert!(copy
            .sql
            .contains("FROM 's3://bkt/stage/dw/shop.items/v7-1/manifest.json'"));
        assert!(copy.sql.contains(&format!("IAM_ROLE '{ROLE}'")));
        assert!(copy.sql.ends_with("FORMAT AS PARQUET MANIFEST"));
        assert_eq!(
            kinds(&sql[sql.len() - 3..]),
            [Kind::DeleteState, Kind::InsertState, Kind::Commit]
        );
        assert_eq!(
            sql.iter().filter(|s| s.kind == Kind::Commit).count(),
            1,
            "one transaction"
        );
    }

    // Nothing staged (a new table of deleted rows only, or only new columns): no
    // stage, no COPY; the state row still moves.
    let empty = sql_of(PublishMode::Mirror, &first_plan(), false);
    assert_eq!(
        kinds(&empty),
        [
            Kind::CreateTable,
            Kind::DeleteState,
            Kind::InsertState,
            Kind::Commit
        ]
    );
    // A full refresh drops the table first.
    let mut refresh = first_plan();
    refresh.drop_first = true;
    assert_eq!(
        sql_of(PublishMode::Merge, &refresh, true)[0].sql,
        "DROP TABLE \"lake\".\"items\""
    );
}

#[test]
fn an_iam_role_with_a_quote_cannot_reach_the_sql() {
    let cols = small_columns();
    let plan = first_plan();
    let state = State {
        mode: "append".into(),
        version: 1,
        ingest_us: 1,
        table_id: "t".into(),
        rows: 1,
        key: vec![],
        columns: plan.columns.clone(),
    };
    let sql = redshift::statements(&Load {
        publication: "dw",
        table: "shop.items",
        schema: "lake",
        name: "items",
        mode: PublishMode::Append,
        columns: &cols,
        key: &[],
        plan: &plan,
        copy: Some(("s3://b/m.json", "arn:aws:iam::1:role/x' IAM_ROLE 'y")),
        state: &state,
        published_at_us: 0,
    })
    .unwrap();
    let copy = sql.iter().find(|s| s.kind == Kind::Copy).unwrap();
    assert!(
        copy.sql
            .contains("IAM_ROLE 'arn:aws:iam::1:role/x'' IAM_ROLE ''y'"),
        "{}",
        copy.sql
    );
    assert!(redshift::statements(&Load {
        publication: "dw\\",
        table: "shop.items",
        schema: "lake",
        name: "items",
        mode: PublishMode::Append,
        columns: &cols,
        key: &[],
        plan: &plan,
        copy: None,
        state: &state,
        published_at_us: 0,
    })
    .unwrap_err()
    .contains("backslash"));
}

// ------------------------------------------------------------------ config

const REDSHIFT_CONFIG: &str = r#"
[environments.dev]
warehouse = "./wh/dev"
[publish.rs]
target = "redshift://loader@dw.example.com:5439/analytics"
password_env = "DW_PASSWORD"
tables = ["shop.items"]
mode = "mirror"
staging = "s3://my-bucket/tidemark-staging/"
iam_role = "arn:aws:iam::123456789012:role/tidemark-copy"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redshift_publication_without_iam_role_or_staging_is_refused() {
    let parse = |text: &str| Config::parse(text, std::path::Path::new("t.toml"));
    let c = parse(REDSHIFT_CONFIG).unwrap();
    assert!(c.publish["rs"].is_redshift());
    let e = parse(&REDSHIFT_CONFIG.replace("iam_role = ", "# iam_role = "))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("publish.rs: a redshift:// target needs iam_role")
            && e.contains("e.g. iam_role = \"arn:aws:iam::"),
        "{e}"
    );
    let e = parse(&REDSHIFT_CONFIG.replace("staging = ", "# staging = "))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("publish.rs: a redshift:// target needs staging")
            && e.contains("e.g. staging = \"s3://"),
        "{e}"
    );
    // A configuration built in code gets the same answer from publish itself.
    let mut lake = Lake::new(items_schema(items_columns())).await;
    lake.land(&[(Op::Create, item(1, "one", 1))]).await;
    let engine = lake.engine().await;
    let mut cfg = c.publish["rs"].clone();
    cfg.iam_role = None;
    let err = publish(&engine, "rs", &cfg, &Options::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config { .. }) && err.to_string().contains("needs iam_role"),
        "{err}"
    );
    cfg.iam_role = Some(ROLE.into());
    cfg.staging = None;
    let err = publish(&engine, "rs", &cfg, &Options::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("needs staging"), "{err}");
}

// ------------------------------------------------------------------ a run, on PostgreSQL

/// A Redshift publication whose target is the test PostgreSQL.
fn redshift_publication(
    schema: &str,
    mode: PublishMode,
    staging: &(String, BTreeMap<String, String>),
) -> PublishConfig {
    let url = pg_url();
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .unwrap();
    PublishConfig {
        target: format!("redshift://{rest}"),
        staging: Some(staging.0.clone()),
        staging_options: staging.1.clone(),
        iam_role: Some(ROLE.into()),
        ..publication(schema, &["shop.items"], mode)
    }
}

/// A value as a SQL literal PostgreSQL casts to the stage's column type.
fn sql_value(a: &dyn Array, i: usize) -> String {
    if a.is_null(i) {
        return "NULL".into();
    }
    format!(
        "'{}'",
        array_value_to_string(a, i).unwrap().replace('\'', "''")
    )
}

/// In place of `COPY stage FROM '<manifest>' … MANIFEST`: read the manifest from S3
/// and every file it lists (checking its content_length), and INSERT their rows.
fn copy_from_manifest(staging: Staging) -> Box<InsteadOfCopy> {
    Box::new(move |staged: Staged| {
        let staging = staging.clone();
        async move {
            let entries = manifest_entries(&staging, &staged).await;
            let mut out = Vec::new();
            for (url, mandatory, length) in entries {
                assert!(mandatory);
                let key = url.strip_prefix(&format!("s3://{BUCKET}/")).unwrap();
                let path = ObjectPath::parse(key).unwrap();
                let size = staging.store().head(&path).await.unwrap().size;
                assert_eq!(size, length, "content_length of {url}");
                for b in read_parquet(staging.store(), &path).await {
                    for chunk in (0..b.num_rows()).collect::<Vec<_>>().chunks(500) {
                        let rows: Vec<String> = chunk
                            .iter()
                            .map(|&r| {
                                let v: Vec<String> = b
                                    .columns()
                                    .iter()
                                    .map(|c| sql_value(c.as_ref(), r))
                                    .collect();
                                format!("({})", v.join(", "))
                            })
                            .collect();
                        out.push(format!(
                            "INSERT INTO \"{STAGE}\" VALUES {}",
                            rows.join(", ")
                        ));
                    }
                }
            }
            Ok(out)
        }
        .boxed()
    })
}

struct RedshiftRun {
    cfg: PublishConfig,
    staging: Staging,
    copy: Box<InsteadOfCopy>,
    root: ObjectPath,
}

impl RedshiftRun {
    async fn new(test: &str, mode: PublishMode) -> (Self, String) {
        let schema = target_schema(test).await;
        let location = staging_location(test);
        let staging = Staging::new(&location.0, &location.1).unwrap();
        let root = ObjectPath::parse(
            location
                .0
                .trim_start_matches(&format!("s3://{BUCKET}/"))
                .trim_end_matches('/'),
        )
        .unwrap();
        (
            Self {
                cfg: redshift_publication(&schema, mode, &location),
                copy: copy_from_manifest(staging.clone()),
                staging,
                root,
            },
            schema,
        )
    }

    /// One run, then: the staged files are gone, committed or not.
    async fn run(&self, engine: &Engine) -> Vec<(String, Outcome)> {
        let out = self.run_only(engine).await;
        self.assert_nothing_staged().await;
        out
    }

    async fn run_only(&self, engine: &Engine) -> Vec<(String, Outcome)> {
        redshift::publish_with(
            engine,
            "rs",
            &self.cfg,
            &Options::default(),
            Some(&*self.copy),
        )
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"))
        .tables
    }

    async fn assert_nothing_staged(&self) {
        let left = listing(self.staging.store(), &self.root).await;
        assert!(left.is_empty(), "staged files left behind: {left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_mirror_on_postgres_equals_the_table() {
    let (rs, schema) = RedshiftRun::new("rs_mirror", PublishMode::Mirror).await;
    let mut lake = Lake::new(items_schema(items_columns())).await;
    let (mut rng, mut live) = (Rng(0x4ed5), BTreeMap::new());
    let mut deleted = 0;
    for round in 0..5 {
        random_changes(&mut lake, &mut rng, &mut live, 1 + round).await;
        let engine = lake.engine().await;
        let out = rs.run(&engine).await;
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
        assert_eq!(rs.run(&engine).await[0].1, Outcome::UpToDate);
    }
    assert!(deleted > 0, "the workload deleted nothing at the target");
    let state = target_lines(&format!(
        "SELECT mode, key_columns, column_types FROM \"{schema}\".tidemark_publish_state"
    ))
    .await;
    assert_eq!(
        state,
        ["mirror|[\"id\"]|[[\"id\",\"INTEGER\"],[\"name\",\"VARCHAR(65535)\"],[\"qty\",\"INTEGER\"],\
          [\"_op\",\"VARCHAR(65535)\"],[\"_source_ts\",\"TIMESTAMPTZ\"],[\"_ingest_ts\",\"TIMESTAMPTZ\"]]"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_merge_on_postgres_keeps_deleted_rows_marked() {
    let (rs, schema) = RedshiftRun::new("rs_merge", PublishMode::Merge).await;
    let mut lake = Lake::new(items_schema(items_columns())).await;
    lake.land(&[
        (Op::Create, item(1, "one", 1)),
        (Op::Create, item(2, "two", 2)),
        (Op::Create, item(3, "three", 3)),
    ])
    .await;
    let out = rs.run(&lake.engine().await).await;
    assert!(matches!(&out[0].1, Outcome::Published(p) if p.rows == 3 && p.created));
    lake.land(&[
        (Op::Update, item(1, "uno", 10)),
        (Op::Delete, item(2, "two", 2)),
        (Op::Update, item(3, "tres", 30)),
        (Op::Update, item(3, "drei", 300)),
        (Op::Create, item(4, "four", 4)),
        (Op::Delete, item(4, "four", 4)),
    ])
    .await;
    let out = rs.run(&lake.engine().await).await;
    assert_eq!(published(&out).rows, 4);
    let got = target_lines(&format!(
        "SELECT id::text, name, qty::text, _op FROM \"{schema}\".items"
    ))
    .await;
    assert_eq!(
        got,
        ["1|uno|10|u", "2|two|2|d", "3|drei|300|u", "4|four|4|d"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_append_on_postgres_sends_every_version_once() {
    let (rs, schema) = RedshiftRun::new("rs_append", PublishMode::Append).await;
    let mut lake = Lake::new(items_schema(items_columns())).await;
    let (mut rng, mut live) = (Rng(0xa99f), BTreeMap::new());
    for round in 0..3 {
        random_changes(&mut lake, &mut rng, &mut live, 3).await;
        let engine = lake.engine().await;
        rs.run(&engine).await;
        assert_eq!(rs.run(&engine).await[0].1, Outcome::UpToDate);
        let n = target_count(&format!("SELECT count(*) FROM \"{schema}\".items")).await;
        assert_eq!(n as usize, lake.versions, "round {round}");
        let distinct = target_count(&format!(
            "SELECT count(*) FROM (SELECT DISTINCT _source_pos, _seq FROM \"{schema}\".items) d"
        ))
        .await;
        assert_eq!(distinct, n, "round {round}: a version arrived twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_wider_than_redshift_holds_fails_its_table_and_commits_nothing() {
    let (rs, schema) = RedshiftRun::new("rs_wide", PublishMode::Mirror).await;
    let mut lake = Lake::new(items_schema(items_columns())).await;
    lake.land(&[(Op::Create, item(1, "one", 1))]).await;
    rs.run(&lake.engine().await).await;
    let wide = "x".repeat(redshift::MAX_VARCHAR_BYTES + 1);
    lake.land(&[
        (Op::Update, item(1, "uno", 10)),
        (Op::Create, item(2, &wide, 2)),
    ])
    .await;
    let out = rs.run(&lake.engine().await).await;
    let Outcome::Failed(why) = &out[0].1 else {
        panic!("expected a failure: {out:?}");
    };
    assert!(
        why.contains("table shop.items")
            && why.contains("column name has a value of 65536 bytes")
            && why.contains("VARCHAR(65535)"),
        "{why}"
    );
    // Rolled back: neither the rows nor the mark moved.
    assert_eq!(
        target_lines(&format!(
            "SELECT id::text, name, qty::text FROM \"{schema}\".items"
        ))
        .await,
        ["1|one|1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_redshift_publishers_at_once_never_double_a_row() {
    // LOCK of the state table in place of PostgreSQL's advisory lock: the second
    // publisher waits, then reads the mark the first committed.
    let (rs, schema) = RedshiftRun::new("rs_race", PublishMode::Append).await;
    let mut lake = Lake::new(items_schema(items_columns())).await;
    let (mut rng, mut live) = (Rng(0x7acf), BTreeMap::new());
    for round in 0..4 {
        random_changes(&mut lake, &mut rng, &mut live, 2).await;
        let (e1, e2) = (lake.engine().await, lake.engine().await);
        let (a, b) = tokio::join!(rs.run_only(&e1), rs.run_only(&e2));
        rs.assert_nothing_staged().await;
        let sent = |out: &[(String, Outcome)]| match &out[0].1 {
            Outcome::Published(p) => p.rows,
            Outcome::UpToDate => 0,
            other => panic!("{other:?}"),
        };
        assert_eq!(sent(&a).min(sent(&b)), 0, "round {round}: both sent rows");
        let n = target_count(&format!("SELECT count(*) FROM \"{schema}\".items")).await;
        assert_eq!(n as usize, lake.versions, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_adds_new_columns_parks_a_changed_type_and_refreshes() {
    let (rs, schema) = RedshiftRun::new("rs_evolve", PublishMode::Mirror).await;
    let mut lake = Lake::new(items_schema(items_columns())).await;
    lake.land(&[(Op::Create, item(1, "one", 1))]).await;
    rs.run(&lake.engine().await).await;
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

    // A column added upstream is added at the target, in the same transaction.
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
    let out = rs.run(&lake.engine().await).await;
    assert_eq!(published(&out).added_columns, ["note"]);
    assert_eq!(
        target_lines(&format!(
            "SELECT id::text, name, qty::text, note FROM \"{schema}\".items"
        ))
        .await,
        ["1|one|1|NULL", "2|two|2|new"]
    );

    // A type changed upstream parks the table, naming the way out.
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
    let out = rs.run(&lake.engine().await).await;
    let Outcome::Parked(why) = &out[0].1 else {
        panic!("a changed type must park the table: {out:?}");
    };
    assert!(
        why.contains("column qty is INTEGER at the target and BIGINT in the lake now")
            && why.contains("tidemark publish rs --full-refresh --table shop.items"),
        "{why}"
    );
    // The way out: drop and publish again from the whole history.
    let report = redshift::publish_with(
        &lake.engine().await,
        "rs",
        &rs.cfg,
        &Options {
            tables: vec!["shop.items".into()],
            full_refresh: true,
        },
        Some(&*rs.copy),
    )
    .await
    .unwrap();
    assert!(
        matches!(&report.tables[0].1, Outcome::Published(p) if p.created && p.rows == 2),
        "{report:?}"
    );
    assert_eq!(
        target_lines(&format!(
            "SELECT id::text, name, qty::text, note, format_type(pg_typeof(qty), NULL) FROM \"{schema}\".items"
        ))
        .await,
        ["1|one|1|NULL|bigint", "2|two|5000000000|big|bigint"]
    );
}
