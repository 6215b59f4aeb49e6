//! Shared test plumbing: a private database per test, a warehouse, the binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use deltalake::arrow::array::RecordBatch;
use mysql_async::prelude::Queryable;
use tidemark_lake::Warehouse;
use tidemark_query::Engine;

/// Root URL of the test server.
pub fn server_url() -> String {
    std::env::var("TIDEMARK_TEST_MYSQL_URL").expect(
        "TIDEMARK_TEST_MYSQL_URL is not set: run the tests with scripts/test.sh, which starts a private MariaDB",
    )
}

/// A database of its own on the test server, and a warehouse of its own.
pub struct TestDb {
    pub name: String,
    pub dir: tempfile::TempDir,
    pool: mysql_async::Pool,
    url: String,
}

impl TestDb {
    pub async fn new(test: &str) -> Self {
        Self::new_on(&server_url(), test).await
    }

    /// A database on the server at `url` (a test's own instance).
    pub async fn new_on(url: &str, test: &str) -> Self {
        let name = format!("tm_{test}_{}", std::process::id());
        let pool = mysql_async::Pool::new(url);
        let db = Self {
            name,
            dir: tempfile::tempdir().expect("tempdir"),
            pool,
            url: url.to_string(),
        };
        db.exec(&format!("DROP DATABASE IF EXISTS `{}`", db.name))
            .await;
        db.exec(&format!(
            "CREATE DATABASE `{}` CHARACTER SET utf8mb4",
            db.name
        ))
        .await;
        db
    }

    pub async fn conn(&self) -> mysql_async::Conn {
        let mut c = self.pool.get_conn().await.expect("connect to test MariaDB");
        c.query_drop(format!("USE `{}`", self.name))
            .await
            .expect("use db");
        c.query_drop("SET time_zone = '+00:00'").await.expect("tz");
        c
    }

    pub async fn exec(&self, sql: &str) {
        let mut c = self.pool.get_conn().await.expect("connect to test MariaDB");
        if !sql.starts_with("DROP DATABASE") && !sql.starts_with("CREATE DATABASE") {
            c.query_drop(format!("USE `{}`", self.name))
                .await
                .expect("use db");
        }
        c.query_drop("SET time_zone = '+00:00'").await.expect("tz");
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn query_i64(&self, sql: &str) -> i64 {
        let mut c = self.conn().await;
        c.query_first::<i64, _>(sql)
            .await
            .expect(sql)
            .expect("a row")
    }

    pub fn warehouse(&self) -> PathBuf {
        self.dir.path().join("warehouse")
    }

    /// Write a config selecting this database, with extra TOML appended.
    pub fn config(&self, extra: &str) -> PathBuf {
        self.config_with_url(&self.url, extra)
    }

    pub fn config_with_url(&self, url: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join("tidemark.toml");
        let text = format!(
            "[environments.dev]\nwarehouse = \"{}\"\n\n[sources.main]\nurl = \"{url}\"\ndatabases = [\"{}\"]\n{extra}\n",
            self.warehouse().display(),
            self.name
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Create a login `{prefix}_{pid}` with `password`; returns its name.
    pub async fn create_user(&self, prefix: &str, password: &str) -> String {
        let user = format!("{prefix}_{}", std::process::id());
        self.exec(&format!(
            "CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}'"
        ))
        .await;
        user
    }

    /// A config that logs in as `user`, with `password` read from a file.
    pub fn config_as(&self, user: &str, password: &str) -> PathBuf {
        let pwfile = self.dir.path().join("pw");
        std::fs::write(&pwfile, format!("{password}\n")).expect("write password file");
        let url = server_url().replace("root@", &format!("{user}@"));
        self.config_with_url(&url, &format!("password_file = \"{}\"", pwfile.display()))
    }

    /// Run the binary with a config.
    pub fn tidemark(&self, config: &Path, args: &[&str]) -> Output {
        tidemark(config, args)
    }

    /// Query the warehouse in-process.
    pub async fn sql(&self, query: &str) -> Vec<RecordBatch> {
        let wh = Warehouse::new(self.warehouse().to_str().unwrap(), Default::default()).unwrap();
        let engine = Engine::open(&wh).await.expect("open warehouse");
        engine
            .query(query)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    /// A single integer from the warehouse.
    pub async fn sql_i64(&self, query: &str) -> i64 {
        let batches = self.sql(query).await;
        let col = batches[0].column(0);
        let v = deltalake::arrow::compute::cast(col, &deltalake::arrow::datatypes::DataType::Int64)
            .unwrap();
        v.as_any()
            .downcast_ref::<deltalake::arrow::array::Int64Array>()
            .unwrap()
            .value(0)
    }

    pub async fn drop(self) {
        self.exec(&format!("DROP DATABASE IF EXISTS `{}`", self.name))
            .await;
        let _ = self.pool.disconnect().await;
    }
}

/// Run the binary; logs as JSON lines on stderr.
pub fn tidemark(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        // Each daemon its own API port: tests run side by side.
        .env("TIDEMARK_API_LISTEN", "127.0.0.1:0")
        .arg("--config")
        .arg(config)
        .args(args)
        .env("TIDEMARK_LOG_FORMAT", "json")
        .env_remove("TIDEMARK_ENV")
        .env_remove("TIDEMARK_WAREHOUSE")
        .output()
        .expect("run tidemark")
}

/// stdout + stderr, for assertions and failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Assert success, printing the output otherwise.
pub fn ok(o: Output) -> String {
    let t = text(&o);
    assert!(o.status.success(), "tidemark failed:\n{t}");
    t
}

/// A deterministic pseudo-random sequence (no dependency needed for a test).
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Start `tidemark run` with `extra` arguments in the background, its log appended
/// to `run.log` beside the config.
pub fn spawn_run_with(config: &std::path::Path, extra: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("run.log"))
        .expect("run.log");
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        // Each daemon its own API port: tests run side by side.
        .env("TIDEMARK_API_LISTEN", "127.0.0.1:0")
        .arg("--config")
        .arg(config)
        .arg("run")
        .args(extra)
        .env("TIDEMARK_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start tidemark run")
}

/// SIGTERM a background run and require a clean exit, showing the tail of its
/// `run.log` otherwise.
pub fn stop_cleanly(mut child: Child, config: &Path) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    if !status.success() {
        let log = std::fs::read_to_string(config.with_file_name("run.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        panic!(
            "SIGTERM should stop cleanly: {status:?}; log tail (newest first):\n{}",
            tail.join("\n")
        );
    }
}

/// SIGKILL a background run (no chance to finish anything) and wait for it to go.
pub fn kill(mut child: Child) {
    if let Ok(None) = child.try_wait() {
        record_fault("sigkill", "tidemark run");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Append a line to `$TIDEMARK_FAULT_LOG` (set by scripts/test.sh, which totals the
/// faults injected and the rows checked after them at the end of the run).
fn fault_log(line: &str) {
    use std::io::Write;
    if let Ok(path) = std::env::var("TIDEMARK_FAULT_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// A fault injected into a running process (`kind`: sigkill, sigstop, restart, …).
pub fn record_fault(kind: &str, what: &str) {
    fault_log(&format!("fault {kind} {what}"));
}

/// Rows compared against the source (or a model) after faults.
pub fn record_checked(rows: usize, what: &str) {
    fault_log(&format!("checked {rows} {what}"));
}

/// Wait until the background runs' `run.log` beside `config` has `count` lines
/// containing `what` (a log message, quoted as the JSON log has it); panics with the
/// log's tail after `timeout`.
pub fn wait_for_log(config: &Path, what: &str, count: usize, timeout: std::time::Duration) {
    let start = std::time::Instant::now();
    loop {
        let log = std::fs::read_to_string(config.with_file_name("run.log")).unwrap_or_default();
        if log.matches(what).count() >= count {
            return;
        }
        if start.elapsed() > timeout {
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!(
                "run.log has fewer than {count} lines with {what} after {timeout:?}:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Create `bucket` on the S3-compatible test server with a plain HTTP PUT (moto
/// accepts it unsigned); an existing bucket is fine.
pub fn create_bucket(endpoint: &str, bucket: &str) {
    use std::io::{Read, Write};
    let url = url::Url::parse(endpoint).expect("TIDEMARK_TEST_S3_ENDPOINT is a URL");
    let (host, port) = (
        url.host_str().expect("host"),
        url.port_or_known_default().expect("port"),
    );
    let mut conn = std::net::TcpStream::connect((host, port))
        .unwrap_or_else(|e| panic!("cannot reach the S3 test server at {endpoint}: {e}"));
    write!(conn, "PUT /{bucket} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap_or("");
    assert!(
        status == "200" || status == "409",
        "creating bucket {bucket}: {response}"
    );
}

/// Rows of a result, each as its cells' text, sorted.
pub fn rows_of(batches: &[RecordBatch]) -> Vec<String> {
    tidemark_query::sorted_lines(batches, "|").unwrap()
}

/// The same projection at the source, as text.
pub async fn source_rows(conn: &mut mysql_async::Conn, sql: &str) -> Vec<String> {
    let rows: Vec<mysql_async::Row> = conn.query(sql).await.expect(sql);
    let mut out: Vec<String> = rows
        .into_iter()
        .map(|r| {
            (0..r.len())
                .map(|i| match r.as_ref(i).unwrap() {
                    mysql_async::Value::NULL => "NULL".to_string(),
                    mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                    mysql_async::Value::Int(i) => i.to_string(),
                    mysql_async::Value::UInt(u) => u.to_string(),
                    v => format!("{v:?}"),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    out.sort();
    out
}
