//! Client libraries analysts actually use, each as its own program in
//! tests/clients/: psycopg 3, SQLAlchemy's inspector (over psycopg) and the PostgreSQL
//! JDBC driver. Each program makes its own assertions and prints what it saw; the
//! test runs it against a fresh server and fails with that output.
//!
//! The interpreters and drivers come from scripts/test.sh: TIDEMARK_TEST_PYTHON (a
//! venv with psycopg and SQLAlchemy) and TIDEMARK_TEST_PGJDBC (postgresql.jar). The
//! password reaches the programs by environment, never on a command line.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::{text, TestServer, PASSWORD, USER};

fn required_env(name: &str, what: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test.sh, which provides {what}")
    })
}

/// The venv python with psycopg[binary] and SQLAlchemy.
fn python() -> String {
    required_env(
        "TIDEMARK_TEST_PYTHON",
        "a Python venv with psycopg[binary] and sqlalchemy",
    )
}

/// The pgjdbc jar (Debian libpostgresql-jdbc-java).
fn pgjdbc() -> String {
    required_env(
        "TIDEMARK_TEST_PGJDBC",
        "the PostgreSQL JDBC driver jar (Debian libpostgresql-jdbc-java)",
    )
}

fn client_program(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// A client program's command, with the endpoint's address and credentials in its
/// environment.
fn client_command(program: &str, args: &[String], port: &str) -> Command {
    let mut c = Command::new(program);
    c.args(args)
        .env("TIDEMARK_PG_PORT", port)
        .env("TIDEMARK_PG_USER", USER)
        .env("TIDEMARK_PG_PASSWORD", PASSWORD)
        // libpq would otherwise take these over the conninfo's defaults.
        .env_remove("PGSSLMODE")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE");
    c
}

/// Run a client program against `s` (in a blocking thread: the server runs on this
/// test's runtime) and return its output, checked for success and `ok_line`.
async fn run_client(s: &TestServer, program: &str, args: Vec<String>, ok_line: &str) -> String {
    let port = s.port.to_string();
    let program = program.to_string();
    let shown = format!("{program} {}", args.join(" "));
    let o: Output = tokio::task::spawn_blocking(move || {
        client_command(&program, &args, &port)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {program} ({e}): run the tests with scripts/test.sh, which installs it")
            })
    })
    .await
    .unwrap();
    let out = text(&o);
    assert!(
        o.status.success() && out.lines().any(|l| l == ok_line),
        "{shown} failed ({}):\n{out}",
        o.status
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_binds_parameters_and_maps_types() {
    let s = TestServer::start().await;
    let script = client_program("psycopg_client.py");
    let out = run_client(
        &s,
        &python(),
        vec![script.display().to_string()],
        "OK psycopg",
    )
    .await;
    println!("{out}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_inspects_schemas_tables_columns_and_selects() {
    let s = TestServer::start().await;
    let script = client_program("sqlalchemy_inspect.py");
    let out = run_client(
        &s,
        &python(),
        vec![script.display().to_string()],
        "OK sqlalchemy",
    )
    .await;
    println!("{out}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_metadata_and_prepared_statements() {
    let s = TestServer::start().await;
    let program = client_program("JdbcMetadata.java");
    // Java 11+ runs a single source file directly: no build tool.
    let out = run_client(
        &s,
        "java",
        vec!["-cp".into(), pgjdbc(), program.display().to_string()],
        "OK jdbc",
    )
    .await;
    println!("{out}");
    s.stop().await;
}

/// pgjdbc with `prepareThreshold=1` keeps a server-prepared statement; executed again
/// after new commits landed (and the endpoint refreshed), it reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_server_prepared_statement_reads_new_commits() {
    let s = TestServer::start_with(|o| o.refresh = Some(Duration::from_millis(100))).await;
    let program = client_program("JdbcPrepared.java").display().to_string();
    let args = vec!["-cp".to_string(), pgjdbc(), program];
    let mut child = client_command("java", &args, &s.port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("java runs (scripts/test.sh installs a JDK)");
    let stdout = child.stdout.take().expect("piped");
    // The program's first line, "before N", once it has executed the statement.
    let (mut reader, seen, before) = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                return (reader, seen, None);
            }
            seen.push_str(&line);
            if let Some(n) = line.trim().strip_prefix("before ") {
                let n = n.parse::<i64>().ok();
                return (reader, seen, n);
            }
        }
    })
    .await
    .unwrap();
    let Some(before) = before else {
        let mut err = String::new();
        let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
        let _ = child.kill();
        panic!("JdbcPrepared.java did not report its first count:\n{seen}{err}");
    };

    crate::refresh::land_more(&s, 8).await;
    let admin = s.client_as(crate::support::ADMIN).await;
    crate::refresh::wait_for_more(
        &admin,
        "SELECT count(*) FROM invoicing_history.invoices",
        before,
    )
    .await;

    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(b"landed\n").unwrap();
    drop(stdin);
    let (rest, status, err) = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            e.read_to_string(&mut err).unwrap();
        }
        (rest, child.wait().unwrap(), err)
    })
    .await
    .unwrap();
    let out = format!("{seen}{rest}{err}");
    assert!(
        status.success() && rest.lines().any(|l| l == "OK jdbc prepared"),
        "JdbcPrepared.java failed ({status}):\n{out}"
    );
    println!("{out}");
    s.stop().await;
}
