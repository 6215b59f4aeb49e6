//! The writer against an S3-compatible server (moto, started by scripts/test.sh):
//! commits through object_store's S3 client with conditional writes, state read back
//! on reopen, tables listed from the bucket, a stale writer refused.
//!
//! Needs TIDEMARK_TEST_S3_ENDPOINT (and dummy AWS_* credentials); without it the tests
//! fail rather than skip, so a run that silently tests nothing cannot pass.

mod common;

use common::{batch, schema, state};
use tidemark_core::change::Op;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;

use deltalake::datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions};
use tidemark_lake::{Committed, TableKind, TableLocation, TableWriter, Warehouse};
use url::Url;

const BUCKET: &str = "tidemark-test";

fn endpoint() -> String {
    let endpoint = std::env::var("TIDEMARK_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "TIDEMARK_TEST_S3_ENDPOINT is not set: the S3 tests need an S3-compatible server. \
             Run them through scripts/test.sh, which starts one (moto) and sets it \
             together with dummy AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION."
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
    let url = Url::parse(endpoint).expect("TIDEMARK_TEST_S3_ENDPOINT is a URL");
    let host = url.host_str().expect("endpoint host");
    let port = url.port_or_known_default().expect("endpoint port");
    let mut conn = TcpStream::connect((host, port))
        .unwrap_or_else(|e| panic!("cannot reach the S3 test server at {endpoint}: {e}"));
    write!(
        conn,
        "PUT /{BUCKET} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
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

/// A warehouse under a prefix of its own, so reruns against one server never collide.
fn warehouse(test: &str) -> (String, HashMap<String, String>) {
    let endpoint = endpoint();
    create_bucket(&endpoint);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let location = format!("s3://{BUCKET}/wh-{test}-{}-{nanos}", std::process::id());
    let options = HashMap::from([
        ("endpoint".to_string(), endpoint),
        ("region".to_string(), "us-east-1".to_string()),
        ("allow_http".to_string(), "true".to_string()),
    ]);
    (location, options)
}

async fn count(table: &DeltaTable) -> i64 {
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    let rows = ctx
        .sql("SELECT count(*) AS n FROM t")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    rows[0]
        .column(0)
        .as_any()
        .downcast_ref::<deltalake::arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

/// A snapshot chunk on S3: the current table adopts the history's files (a
/// server-side copy, or a read and write where the store has none) and reads back.
#[tokio::test]
async fn snapshot_chunks_are_encoded_once_on_s3() {
    let (location, options) = warehouse("once");
    let wh = Warehouse::new(&location, options).unwrap();
    let mut w = TableWriter::open(&wh, schema()).await.unwrap();
    common::land_snapshot_chunk(&mut w).await;
    assert_eq!(count(w.delta(TableKind::Current)).await, 3);
    assert_eq!(count(w.delta(TableKind::History)).await, 3);
}

#[tokio::test]
async fn lands_reopens_and_lists_on_s3() {
    let (location, options) = warehouse("land");
    let wh = Warehouse::new(&location, options.clone()).unwrap();
    assert_eq!(wh.root().scheme(), "s3");
    assert!(wh.list().await.unwrap().is_empty());

    let mut w = TableWriter::open(&wh, schema()).await.unwrap();
    assert!(w.url(TableKind::Current).as_str().starts_with(&location));
    let b1 = batch(&[(Op::Create, 1, "one", 1), (Op::Create, 2, "two", 2)]);
    let b2 = batch(&[
        (Op::Update, 1, "uno", 3),
        (Op::Delete, 2, "two", 4),
        (Op::Create, 3, "three", 5),
    ]);
    for (b, s) in [(&b1, state(2)), (&b2, state(5))] {
        for kind in [TableKind::Current, TableKind::History] {
            w.apply(kind, b, 10, s.clone()).await.unwrap();
        }
    }
    drop(w);

    // A restarted process: new warehouse handle, new writer, state read from S3.
    let wh = Warehouse::new(&location, options).unwrap();
    let w = TableWriter::open(&wh, schema()).await.unwrap();
    let want = Committed {
        txn: 2,
        state: state(5),
    };
    assert_eq!(w.committed(TableKind::Current), &want);
    assert_eq!(w.committed(TableKind::History), &want);
    assert_eq!(count(w.delta(TableKind::Current)).await, 2, "ids 1 and 3");
    assert_eq!(
        count(w.delta(TableKind::History)).await,
        5,
        "every change, the delete as a tombstone"
    );

    let s = schema();
    assert_eq!(
        wh.list().await.unwrap(),
        vec![TableLocation {
            schema: s.name.schema.clone(),
            table: s.name.table.clone(),
        }]
    );
}

#[tokio::test]
async fn stale_writers_are_refused_on_s3() {
    let (location, options) = warehouse("stale");
    let wh = Warehouse::new(&location, options).unwrap();
    common::stale_writer_is_refused(&wh).await;
}

/// The store delta-rs commits through (built by tidemark's registered factory) does
/// put-if-absent: an existing commit file cannot be overwritten, and of writers racing
/// for one new file exactly one wins.
#[tokio::test]
async fn commit_files_are_put_if_absent() {
    let (location, options) = warehouse("cas");
    let wh = Warehouse::new(&location, options).unwrap();
    let w = TableWriter::open(&wh, schema()).await.unwrap();
    let store = w.delta(TableKind::Current).log_store().object_store(None);
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };

    let first = Path::from("_delta_log/00000000000000000000.json");
    let err = store
        .put_opts(&first, "{}".into(), create())
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. }),
        "{err}"
    );

    let scratch = Path::from("race/commit.json");
    let racers = (0..8).map(|i| {
        let store = store.clone();
        let scratch = scratch.clone();
        tokio::spawn(async move {
            store
                .put_opts(&scratch, format!("{{\"writer\":{i}}}").into(), create())
                .await
        })
    });
    let mut won = 0;
    for r in futures::future::join_all(racers).await {
        match r.unwrap() {
            Ok(_) => won += 1,
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(won, 1, "exactly one writer creates the file");
}
