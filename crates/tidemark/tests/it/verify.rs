//! `tidemark verify`: the lake proves itself equal to the source at one binlog
//! position, chunk by chunk, and its history consistent.
//!
//! Each test lands a table (snapshot, then changes captured from the binlog), starts
//! verify as a child process, and lands everything up to now while verify waits for
//! the lake to pass the position it read at. A clean warehouse verifies clean across
//! types; Parquet files tampered with by hand (a changed, a removed and an added row
//! in the current table's base; an overlapping version in the closed history) are
//! reported exactly; a source changing all through verify gives no false difference.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Int64Array, RecordBatch, UInt32Array,
};
use deltalake::arrow::compute::{cast, concat_batches, take};
use deltalake::arrow::datatypes::{DataType, Decimal128Type, Int64Type, TimeUnit};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use mysql_async::prelude::Queryable;
use serde_json::Value;

use crate::support::{ok, rows_of, spawn_run_with, text, tidemark, Lcg, TestDb};

/// A config with its own replica server id (the server disconnects a replica when
/// another connects with the same id, and tests run at once).
fn config(db: &TestDb, salt: u32) -> PathBuf {
    db.config(&format!(
        "flush_interval_ms = 200\nserver_id = {}",
        600_000 + salt * 10_000 + std::process::id() % 10_000
    ))
}

const ACCOUNTS: &str = "CREATE TABLE accounts (id INT PRIMARY KEY, amount DECIMAL(10,2) NOT NULL, \
    name VARCHAR(40) NOT NULL, updated DATETIME(6) NOT NULL, note VARCHAR(40) NULL)";

/// Rows of `accounts` with ids `seq * step` for seq in `lo..=hi`.
fn accounts_rows(lo: u32, hi: u32, step: u32) -> String {
    format!(
        "INSERT INTO accounts SELECT seq * {step}, (seq * 7919 % 100000) / 100, CONCAT('account ', seq), \
         TIMESTAMP'2026-01-01 00:00:00' + INTERVAL (seq * 7907) SECOND + INTERVAL (seq * 104723 % 1000000) MICROSECOND, \
         IF(seq % 3 = 0, NULL, CONCAT('note ', seq % 10)) FROM seq_{lo}_to_{hi}"
    )
}

/// A table of many types (sql_mode '' for the zero dates). Its column `b` is the
/// alias the merged current view once gave its base: reading a streamed table with
/// such a column failed until the aliases became names no column is expected to take.
const KINDS: &str = "CREATE TABLE kinds (
  id INT PRIMARY KEY, big BIGINT UNSIGNED NOT NULL, ti TINYINT, f FLOAT, d DOUBLE,
  day DATE, dtm DATETIME, ts TIMESTAMP(3) NULL DEFAULT NULL, tm TIME, tm6 TIME(6), y YEAR,
  flag BIT(1), size ENUM('small','medium','large'), tags SET('a','b','c'), doc JSON,
  raw VARBINARY(32), b BINARY(4), ch CHAR(10), body TEXT, d65 DECIMAL(65,30)
) DEFAULT CHARSET=utf8mb4";

/// Rows of `kinds` for seq in `lo..=hi`: NULLs, zero dates, negative times, floats
/// that are not exact in binary, tiny and huge doubles, empty and zero-padded
/// binaries, emoji.
fn kinds_rows(lo: u32, hi: u32) -> String {
    format!(
        "INSERT INTO kinds SELECT seq, 18446744073709551615 - seq * 1000003, seq % 256 - 128, \
         IF(seq % 13 = 0, NULL, seq / 10), seq * PI() * IF(seq % 2 = 0, 1e10, 1e-10), \
         IF(seq % 500 = 0, '0000-00-00', DATE'2020-01-01' + INTERVAL seq DAY), \
         TIMESTAMP'2010-06-01 00:00:00' + INTERVAL (seq * 86413) SECOND, \
         IF(seq % 17 = 0, NULL, TIMESTAMP'2024-03-01 12:00:00.123' + INTERVAL seq SECOND), \
         SEC_TO_TIME(seq * 397 - 400000), SEC_TO_TIME(seq * 397.123456 - 400000), 1901 + seq % 255, \
         seq % 2, ELT(1 + seq % 3, 'small', 'medium', 'large'), ELT(1 + seq % 4, '', 'a', 'a,c', 'b,c'), \
         JSON_OBJECT('n', seq, 's', CONCAT('x', seq), 'a', JSON_ARRAY(1, 2.5, NULL)), \
         IF(seq % 19 = 0, '', UNHEX(MD5(seq))), CHAR(seq % 256), CONCAT('c', seq % 100), \
         CONCAT('emoji 😀 row ', seq, IF(seq % 5 = 0, ' ünïcödé 日本語', '')), \
         seq + 0.000000000000000000000000000001 * seq \
         FROM (SELECT CAST(seq AS SIGNED) AS seq FROM seq_{lo}_to_{hi}) s"
    )
}

/// A `tidemark verify --format json` running in the background, its stdout and
/// stderr in files beside the config.
struct VerifyRun {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

fn spawn_verify(config: &Path, args: &[&str]) -> VerifyRun {
    let stdout = config.with_file_name("verify.out");
    let stderr = config.with_file_name("verify.err");
    let child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        // Each daemon its own API port: tests run side by side.
        .env("TIDEMARK_API_LISTEN", "127.0.0.1:0")
        .arg("--config")
        .arg(config)
        .arg("verify")
        .args(["--format", "json", "--wait", "60"])
        .args(args)
        .env("TIDEMARK_LOG_FORMAT", "json")
        .env_remove("TIDEMARK_ENV")
        .env_remove("TIDEMARK_WAREHOUSE")
        .stdout(std::fs::File::create(&stdout).expect("verify.out"))
        .stderr(std::fs::File::create(&stderr).expect("verify.err"))
        .spawn()
        .expect("start tidemark verify");
    VerifyRun {
        child,
        stdout,
        stderr,
    }
}

/// What verify reported.
struct Verified {
    status: ExitStatus,
    report: Value,
    /// Exit status, stdout and stderr, for failure messages.
    output: String,
}

impl Verified {
    /// The report of table `name` (`db.table`).
    fn table(&self, name: &str) -> &Value {
        self.report["tables"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["table"] == name))
            .unwrap_or_else(|| panic!("verify reported no table {name}:\n{}", self.output))
    }
}

/// Wait for verify to finish and read its report. With `land`, meanwhile land
/// everything up to now with `run --until-caught-up`, again and again: verify waits
/// for the lake to pass the binlog position it read at, which may come after a
/// given `run` started (other tests move the shared server's binlog all the time).
async fn finish_verify(config: &Path, mut v: VerifyRun, land: bool) -> Verified {
    let deadline = Instant::now() + Duration::from_secs(90);
    let read = |v: &VerifyRun| {
        (
            std::fs::read_to_string(&v.stdout).unwrap_or_default(),
            std::fs::read_to_string(&v.stderr).unwrap_or_default(),
        )
    };
    let status = loop {
        if let Some(s) = v.child.try_wait().expect("wait for verify") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = v.child.kill();
            let _ = v.child.wait();
            let (out, err) = read(&v);
            panic!("verify did not finish within 90 s\nstdout:\n{out}\nstderr:\n{err}");
        }
        if land {
            let out = tidemark(config, &["run", "--until-caught-up"]);
            assert!(
                out.status.success(),
                "run --until-caught-up beside verify failed:\n{}",
                text(&out)
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let (out, err) = read(&v);
    let output = format!("verify exited {status:?}\nstdout:\n{out}\nstderr:\n{err}");
    let report: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("verify's stdout is not one JSON document ({e}):\n{output}"));
    Verified {
        status,
        report,
        output,
    }
}

/// A number of a table report.
fn num(t: &Value, field: &str) -> i64 {
    t[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} is not a number in {t:#}"))
}

/// The examples (`field`: "examples" or "history_examples") of a table report.
fn examples<'a>(t: &'a Value, field: &str) -> &'a Vec<Value> {
    t[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} is not an array in {t:#}"))
}

/// The rows `tidemark.verifications` holds for one verify run, via `tidemark sql`.
fn verifications(config: &Path, run_id: &str) -> Vec<Value> {
    let out = tidemark(
        config,
        &[
            "sql",
            "--format",
            "json",
            &format!(
                "SELECT table_name, status, rows_source, rows_lake, missing_in_lake, extra_in_lake, \
                 different, history_violations, report FROM tidemark.verifications \
                 WHERE run_id = '{run_id}' ORDER BY table_name"
            ),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The verifications row of `table`, checked against the table's report.
fn recorded(config: &Path, v: &Verified, table: &str) -> Value {
    let run_id = v.report["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run_id:\n{}", v.output));
    let rows = verifications(config, run_id);
    let row = rows
        .iter()
        .find(|r| r["table_name"] == table)
        .unwrap_or_else(|| {
            panic!("tidemark.verifications has no row for {table} in run {run_id}: {rows:#?}")
        })
        .clone();
    let t = v.table(table);
    assert_eq!(row["status"], t["status"], "{row:#}");
    for f in [
        "rows_source",
        "rows_lake",
        "missing_in_lake",
        "extra_in_lake",
        "different",
        "history_violations",
    ] {
        assert_eq!(row[f].as_i64(), t[f].as_i64(), "verifications.{f}: {row:#}");
    }
    // The report column holds the table's report as JSON text.
    let report: Value = serde_json::from_str(
        row["report"]
            .as_str()
            .unwrap_or_else(|| panic!("report is not text: {row:#}")),
    )
    .unwrap_or_else(|e| panic!("report is not JSON ({e}): {row:#}"));
    assert!(report.is_object(), "{report:#}");
    row
}

/// The Parquet files of the Delta table at `dir` that its latest version reads.
async fn live_files(dir: &Path) -> Vec<PathBuf> {
    let url = url::Url::from_directory_path(dir).unwrap();
    let table = deltalake::open_table(url)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
    let uris: Vec<String> = table.get_file_uris().unwrap().collect();
    uris.into_iter()
        .map(|u| match url::Url::parse(&u) {
            Ok(url) if url.scheme() == "file" => url.to_file_path().unwrap(),
            _ => PathBuf::from(u),
        })
        .collect()
}

fn read_parquet(path: &Path) -> RecordBatch {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().collect::<Result<_, _>>().unwrap();
    concat_batches(&schema, &batches).unwrap()
}

/// Column `name` of `batch` as i64s (integers and timestamps; NULL as i64::MIN).
fn int64s(batch: &RecordBatch, name: &str) -> Vec<i64> {
    let c = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", batch.schema()));
    let c = cast(c, &DataType::Int64).unwrap();
    c.as_primitive::<Int64Type>()
        .iter()
        .map(|v| v.unwrap_or(i64::MIN))
        .collect()
}

/// Column `name` of `batch` as text.
fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let c = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", batch.schema()));
    let c = cast(c, &DataType::Utf8).unwrap();
    c.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

/// `batch` with column `name` replaced by `f` of it.
fn with_column(
    batch: &RecordBatch,
    name: &str,
    f: impl FnOnce(&ArrayRef) -> ArrayRef,
) -> RecordBatch {
    let i = batch.schema().index_of(name).unwrap();
    let mut cols = batch.columns().to_vec();
    cols[i] = f(&cols[i]);
    RecordBatch::try_new(batch.schema(), cols).unwrap()
}

/// An integer or timestamp column with `f` applied to the value at `row`, in the
/// column's own type.
fn map_int(c: &ArrayRef, row: usize, f: impl Fn(i64) -> i64) -> ArrayRef {
    let v = cast(c, &DataType::Int64).unwrap();
    let new: Int64Array = v
        .as_primitive::<Int64Type>()
        .iter()
        .enumerate()
        .map(|(i, x)| if i == row { x.map(&f) } else { x })
        .collect();
    cast(&new, c.data_type()).unwrap()
}

/// Replace the Parquet file at `path` by one holding `batch` (same schema), of
/// exactly the same size: the Delta log records each file's size and readers fetch
/// the footer at that offset, so the new file (written smaller: zstd, no
/// statistics) is padded with zeros between its data and its footer, which readers
/// locate from the end. Written aside and renamed over the path, since the file may
/// be a hard link shared with another table's (the current table adopts history
/// files by a store-side copy).
fn rewrite_parquet(path: &Path, batch: &RecordBatch) {
    let old_len = std::fs::metadata(path).unwrap().len() as usize;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(19).unwrap()))
        .set_statistics_enabled(EnabledStatistics::None)
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    let n = buf.len();
    assert!(
        n <= old_len && &buf[n - 4..] == b"PAR1",
        "the rewritten {} is {n} bytes, the original {old_len}: cannot keep its size",
        path.display()
    );
    let meta_len = u32::from_le_bytes(buf[n - 8..n - 4].try_into().unwrap()) as usize;
    let footer = n - 8 - meta_len;
    let mut out = Vec::with_capacity(old_len);
    out.extend_from_slice(&buf[..footer]);
    out.resize(footer + (old_len - n), 0);
    out.extend_from_slice(&buf[footer..]);
    assert_eq!(out.len(), old_len);
    let tmp = path.with_extension("tampered");
    std::fs::write(&tmp, &out).unwrap();
    std::fs::rename(&tmp, path).unwrap();
    // It still reads, with the rows written.
    assert_eq!(read_parquet(path).num_rows(), batch.num_rows());
}

/// SIGTERM a background run and wait for it.
fn stop_run(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(None) = child.try_wait() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
}

/// Assert a table's report is clean, with `rows` rows on both sides.
fn assert_clean(v: &Verified, table: &str, rows: i64) {
    let t = v.table(table);
    let o = &v.output;
    assert_eq!(t["status"], "clean", "{table}: {o}");
    assert!(t["error"].is_null(), "{table}: {o}");
    assert_eq!(num(t, "rows_source"), rows, "{table}: {o}");
    assert_eq!(num(t, "rows_lake"), rows, "{table}: {o}");
    for f in [
        "chunks_mismatched",
        "missing_in_lake",
        "extra_in_lake",
        "different",
        "history_violations",
    ] {
        assert_eq!(num(t, f), 0, "{table}: {f}: {o}");
    }
    assert!(num(t, "chunks") >= 1, "{table}: {o}");
    assert!(
        num(t, "history_versions") >= rows,
        "{table}: every row has at least one version: {o}"
    );
    assert!(examples(t, "examples").is_empty(), "{table}: {o}");
    assert!(examples(t, "history_examples").is_empty(), "{table}: {o}");
    let pos = t["source_position"].as_str().unwrap_or_default();
    assert!(
        pos.contains(':'),
        "{table}: source_position is file:offset: {o}"
    );
    for k in ["source", "wait", "lake", "bisect", "history"] {
        assert!(
            t["timings_ms"][k].is_number(),
            "{table}: timings_ms.{k}: {o}"
        );
    }
}

#[tokio::test]
async fn a_clean_warehouse_verifies_clean() {
    let db = TestDb::new("verify_clean").await;
    let config = config(&db, 1);
    let s = &db.name;
    {
        let mut c = db.conn().await;
        c.query_drop("SET SESSION sql_mode = ''").await.unwrap();
        c.query_drop(ACCOUNTS).await.unwrap();
        c.query_drop(accounts_rows(1, 2000, 1)).await.unwrap();
        c.query_drop(KINDS).await.unwrap();
        c.query_drop(kinds_rows(1, 2000)).await.unwrap();
    }
    ok(db.tidemark(&config, &["snapshot"]));

    // Changes captured from the binlog: updates (to NULL too), deletes, inserts, and
    // on the many-types table the binlog's own renderings of each type.
    {
        let mut c = db.conn().await;
        c.query_drop("SET SESSION sql_mode = ''").await.unwrap();
        for sql in [
            "UPDATE accounts SET amount = amount + 1.25, note = NULL, updated = NOW(6) WHERE id % 7 = 0"
                .to_string(),
            "UPDATE accounts SET note = 'changed' WHERE id % 7 = 3".to_string(),
            "DELETE FROM accounts WHERE id % 11 = 0".to_string(),
            accounts_rows(2001, 2100, 1),
            "UPDATE kinds SET f = f * 2, d = -d, doc = JSON_SET(doc, '$.n', 0), ts = NULL, \
             tags = 'a,b,c', body = CONCAT(body, ' ✓'), flag = 1 - flag WHERE id % 9 = 0"
                .to_string(),
            "UPDATE kinds SET day = '0000-00-00', tm = '-00:00:01', raw = '', y = 2155 WHERE id % 250 = 7"
                .to_string(),
            "DELETE FROM kinds WHERE id % 13 = 1".to_string(),
            kinds_rows(2001, 2100),
        ] {
            c.query_drop(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));
    let accounts = db.query_i64("SELECT COUNT(*) FROM accounts").await;
    let kinds = db.query_i64("SELECT COUNT(*) FROM kinds").await;

    // Every selected table by default.
    let v = finish_verify(&config, spawn_verify(&config, &[]), true).await;
    assert!(v.status.success(), "{}", v.output);
    assert_eq!(v.report["clean"], true, "{}", v.output);
    assert_eq!(
        v.report["tables"].as_array().map(Vec::len),
        Some(2),
        "{}",
        v.output
    );
    for (table, rows) in [("accounts", accounts), ("kinds", kinds)] {
        let name = format!("{s}.{table}");
        assert_clean(&v, &name, rows);
        let row = recorded(&config, &v, &name);
        assert_eq!(row["status"], "clean", "{row:#}");
    }
    db.drop().await;
}

#[tokio::test]
async fn a_changed_a_removed_and_an_added_row_in_the_lakes_parquet_are_each_reported() {
    // Even ids 2..4000: Z, odd, never existed at the source.
    const X: i64 = 2002;
    const Y: i64 = 2006;
    const Z: i64 = 2003;
    let db = TestDb::new("verify_tamper").await;
    let config = config(&db, 2);
    let s = db.name.to_lowercase();
    db.exec(ACCOUNTS).await;
    db.exec(&accounts_rows(1, 2000, 2)).await;
    ok(db.tidemark(&config, &["snapshot"]));
    db.exec(&format!(
        "UPDATE accounts SET amount = amount + 1 WHERE id % 10 = 0 AND id NOT IN ({X}, {Y})"
    ))
    .await;
    db.exec(&format!(
        "DELETE FROM accounts WHERE id % 14 = 0 AND id NOT IN ({X}, {Y})"
    ))
    .await;
    db.exec(&accounts_rows(2001, 2050, 2)).await;
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));
    // Fold the tail into the base: the current table is then plain Parquet files.
    ok(db.tidemark(&config, &["maintain", "--no-vacuum"]));
    let rows = db.query_i64("SELECT COUNT(*) FROM accounts").await;
    let source_x: String = {
        let mut c = db.conn().await;
        c.query_first(format!(
            "SELECT CAST(amount AS CHAR) FROM accounts WHERE id = {X}"
        ))
        .await
        .unwrap()
        .unwrap()
    };

    // The base file holding X: change X's amount, drop Y, add Z (a copy of X).
    let current = db.warehouse().join(&s).join("accounts").join("current");
    let files = live_files(&current).await;
    let with_x: Vec<&PathBuf> = files
        .iter()
        .filter(|f| int64s(&read_parquet(f), "id").contains(&X))
        .collect();
    assert_eq!(with_x.len(), 1, "one base file holds {X}: {files:?}");
    let file = with_x[0].clone();
    let batch = read_parquet(&file);
    let ids = int64s(&batch, "id");
    assert!(ids.contains(&Y), "{Y} is in the same file as {X}");
    let (lo, hi) = (ids.iter().min().unwrap(), ids.iter().max().unwrap());
    assert!(
        *lo < Z && Z < *hi,
        "{Z} within the file's key range (its Delta statistics stay right)"
    );
    let mut take_rows: Vec<u32> = Vec::with_capacity(ids.len());
    let mut x_at = usize::MAX;
    for (i, id) in ids.iter().enumerate() {
        if *id == Y {
            continue;
        }
        take_rows.push(i as u32);
        if *id == X {
            x_at = take_rows.len() - 1;
            take_rows.push(i as u32);
        }
    }
    let take_rows = UInt32Array::from(take_rows);
    let cols: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &take_rows, None).unwrap())
        .collect();
    let tampered = RecordBatch::try_new(batch.schema(), cols).unwrap();
    let tampered = with_column(&tampered, "id", |c| map_int(c, x_at + 1, |_| Z));
    let tampered = with_column(&tampered, "amount", |c| {
        let DataType::Decimal128(p, sc) = c.data_type().clone() else {
            panic!("amount is stored as {}", c.data_type())
        };
        let new: Decimal128Array = c
            .as_primitive::<Decimal128Type>()
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if i == x_at {
                    v.map(|v| v + 10i128.pow(sc as u32))
                } else {
                    v
                }
            })
            .collect();
        Arc::new(new.with_precision_and_scale(p, sc).unwrap()) as ArrayRef
    });
    assert_eq!(tampered.num_rows(), batch.num_rows());
    rewrite_parquet(&file, &tampered);
    // The lake now reads the tampered rows.
    let lake_ids: Vec<String> = rows_of(
        &db.sql(&format!(
            "SELECT id FROM {s}.accounts WHERE id IN ({X}, {Y}, {Z})"
        ))
        .await,
    );
    assert_eq!(lake_ids, vec![X.to_string(), Z.to_string()]);

    let name = format!("{}.accounts", db.name);
    let v = finish_verify(
        &config,
        spawn_verify(&config, &["--table", &name, "--chunk-rows", "500"]),
        true,
    )
    .await;
    let o = &v.output;
    assert!(!v.status.success(), "differences exit non-zero: {o}");
    assert_eq!(v.report["clean"], false, "{o}");
    let t = v.table(&name);
    assert_eq!(t["status"], "differences", "{o}");
    assert_eq!(num(t, "rows_source"), rows, "{o}");
    assert_eq!(num(t, "rows_lake"), rows, "one row dropped, one added: {o}");
    assert_eq!(num(t, "missing_in_lake"), 1, "{o}");
    assert_eq!(num(t, "extra_in_lake"), 1, "{o}");
    assert_eq!(num(t, "different"), 1, "{o}");
    assert!(num(t, "chunks_mismatched") >= 1, "{o}");
    let ex = examples(t, "examples");
    assert_eq!(ex.len(), 3, "{o}");
    let find = |kind: &str, id: i64| {
        ex.iter()
            .find(|e| e["kind"] == kind && e["key"]["id"].as_str() == Some(id.to_string().as_str()))
            .unwrap_or_else(|| panic!("no {kind} example for id {id}: {o}"))
    };
    let missing = find("missing_in_lake", Y);
    assert_eq!(missing["source"]["id"], Y.to_string(), "{o}");
    let extra = find("extra_in_lake", Z);
    assert_eq!(extra["lake"]["id"], Z.to_string(), "{o}");
    let different = find("different", X);
    assert_eq!(different["columns"], serde_json::json!(["amount"]), "{o}");
    let amount = |side: &str| -> f64 {
        different[side]["amount"]
            .as_str()
            .unwrap_or_else(|| panic!("{side} amount is not text: {o}"))
            .parse()
            .unwrap()
    };
    assert_eq!(different["source"]["amount"], source_x.as_str(), "{o}");
    assert!(
        (amount("lake") - amount("source") - 1.0).abs() < 1e-9,
        "the lake's amount is the source's + 1.00: {o}"
    );
    // The history checks find the same three keys: the current table no longer
    // matches the last version of each in the log.
    assert_eq!(num(t, "history_violations"), 3, "{o}");
    let mut keys: Vec<String> = examples(t, "history_examples")
        .iter()
        .map(|e| {
            assert_eq!(e["kind"], "current_differs", "{o}");
            e["key"]["id"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    keys.sort();
    let mut want = vec![X.to_string(), Y.to_string(), Z.to_string()];
    want.sort();
    assert_eq!(keys, want, "{o}");
    let row = recorded(&config, &v, &name);
    assert_eq!(row["status"], "differences", "{row:#}");
    db.drop().await;
}

#[tokio::test]
async fn an_overlapping_history_version_is_reported() {
    const K: i64 = 1000;
    let db = TestDb::new("verify_overlap").await;
    let config = config(&db, 3);
    let s = db.name.to_lowercase();
    db.exec(ACCOUNTS).await;
    db.exec(&accounts_rows(1, 2000, 1)).await;
    ok(db.tidemark(&config, &["snapshot"]));
    // Versions of K in distinct seconds, and changes to other keys.
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        db.exec(&format!(
            "UPDATE accounts SET amount = amount + 1, note = 'v{i}' WHERE id = {K}"
        ))
        .await;
        db.exec(&format!(
            "UPDATE accounts SET amount = amount + 2 WHERE id % 97 = {i}"
        ))
        .await;
    }
    db.exec("DELETE FROM accounts WHERE id % 101 = 5").await;
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));
    // Compaction writes the closed history (versions with `_valid_to` stored).
    ok(db.tidemark(&config, &["maintain", "--no-vacuum"]));
    let rows = db.query_i64("SELECT COUNT(*) FROM accounts").await;
    let closed = db.warehouse().join(&s).join("accounts").join("closed");
    assert!(
        closed.join("_delta_log").is_dir(),
        "no closed history at {}",
        closed.display()
    );

    // K's earliest closed version now ends a day later: it overlaps the next.
    let mut target = None;
    for f in live_files(&closed).await {
        let b = read_parquet(&f);
        let ids = int64s(&b, "id");
        let from = int64s(&b, "_valid_from");
        let ops = strings(&b, "_op");
        let first = (0..b.num_rows())
            .filter(|&i| ids[i] == K && ops[i].as_deref() != Some("d"))
            .min_by_key(|&i| from[i]);
        if let Some(i) = first {
            if target.as_ref().is_none_or(|(_, _, f0)| from[i] < *f0) {
                target = Some((f.clone(), i, from[i]));
            }
        }
    }
    let (file, row, _) = target.unwrap_or_else(|| panic!("no closed version of {K}"));
    let batch = read_parquet(&file);
    let tampered = with_column(&batch, "_valid_to", |c| {
        let DataType::Timestamp(unit, _) = c.data_type() else {
            panic!("_valid_to is stored as {}", c.data_type())
        };
        let day = 86_400
            * match unit {
                TimeUnit::Second => 1,
                TimeUnit::Millisecond => 1_000,
                TimeUnit::Microsecond => 1_000_000,
                TimeUnit::Nanosecond => 1_000_000_000,
            };
        assert!(!c.is_null(row), "a closed version has a _valid_to");
        map_int(c, row, |t| t + day)
    });
    rewrite_parquet(&file, &tampered);
    // The history view reads the stretched version.
    let versions = crate::support::rows_of(
        &db.sql(&format!(
            "SELECT id, _valid_from, _valid_to, note, to_unixtime(_valid_to) - to_unixtime(_valid_from) FROM {s}_history.accounts WHERE id = {K} \
             AND to_unixtime(_valid_to) - to_unixtime(_valid_from) > 43200"
        ))
        .await,
    );
    assert_eq!(
        db.sql_i64(&format!(
            "SELECT count(*) FROM {s}_history.accounts WHERE id = {K} \
             AND to_unixtime(_valid_to) - to_unixtime(_valid_from) > 43200"
        ))
        .await,
        1,
        "the tampered _valid_to reads through {s}_history.accounts: {versions:?}"
    );

    let name = format!("{}.accounts", db.name);
    let v = finish_verify(&config, spawn_verify(&config, &["--table", &name]), true).await;
    let o = &v.output;
    assert!(!v.status.success(), "a violation exits non-zero: {o}");
    assert_eq!(v.report["clean"], false, "{o}");
    let t = v.table(&name);
    // The source comparison is clean.
    assert_eq!(num(t, "rows_source"), rows, "{o}");
    assert_eq!(num(t, "rows_lake"), rows, "{o}");
    for f in ["missing_in_lake", "extra_in_lake", "different"] {
        assert_eq!(num(t, f), 0, "{f}: {o}");
    }
    assert!(examples(t, "examples").is_empty(), "{o}");
    // The history check names K, and only K.
    assert!(num(t, "history_violations") >= 1, "{o}");
    let hx = examples(t, "history_examples");
    assert!(!hx.is_empty(), "{o}");
    for e in hx {
        assert_eq!(e["key"]["id"], K.to_string(), "only {K} is wrong: {o}");
    }
    assert!(
        hx.iter().any(|e| e["kind"] == "overlap"),
        "an overlap example: {o}"
    );
    let row = recorded(&config, &v, &name);
    assert_ne!(row["status"], "clean", "{row:#}");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_changing_during_verify_gives_no_false_difference() {
    let db = TestDb::new("verify_busy").await;
    let config = config(&db, 4);
    db.exec(ACCOUNTS).await;
    db.exec(&accounts_rows(1, 2000, 1)).await;
    // Snapshot and catch up, then capture in the background.
    ok(db.tidemark(&config, &["run", "--until-caught-up"]));
    let run = spawn_run_with(&config, &[]);

    // Single-row and multi-row changes all over the key range, every few ms.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut conn = db.conn().await;
        tokio::spawn(async move {
            let mut rng = Lcg(0x5eed ^ std::process::id() as u64);
            let mut next_id = 3001i64;
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let id = 1 + rng.next(2000) as i64;
                let sql = match rng.next(10) {
                    0..=4 => format!(
                        "UPDATE accounts SET amount = amount + 0.01, updated = NOW(6) WHERE id = {id}"
                    ),
                    5 => format!(
                        "UPDATE accounts SET note = IF(note IS NULL, 'busy', NULL) \
                         WHERE id BETWEEN {id} AND {id} + 150"
                    ),
                    6 => {
                        next_id += 1;
                        format!(
                            "INSERT INTO accounts VALUES ({next_id}, 1.00, 'new', NOW(6), NULL)"
                        )
                    }
                    7 => format!(
                        "INSERT IGNORE INTO accounts VALUES ({id}, 2.00, 'back', NOW(6), 'again')"
                    ),
                    _ => format!("DELETE FROM accounts WHERE id = {id}"),
                };
                conn.query_drop(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                n += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let name = format!("{}.accounts", db.name);
    let v = finish_verify(
        &config,
        spawn_verify(
            &config,
            &[
                "--table",
                &name,
                "--chunk-rows",
                "100",
                "--max-rows-per-sec",
                "1000",
            ],
        ),
        false,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let writes = writer.await.expect("writer");
    stop_run(run);

    let o = &v.output;
    assert!(
        writes >= 100,
        "the source changed all through verify ({writes} statements)"
    );
    assert!(v.status.success(), "{o}");
    assert_eq!(v.report["clean"], true, "{o}");
    let t = v.table(&name);
    let rows = num(t, "rows_source");
    assert!(rows > 1500, "{o}");
    assert_clean(&v, &name, rows);
    assert!(num(t, "chunks") >= 10, "--chunk-rows 100: {o}");
    db.drop().await;
}
