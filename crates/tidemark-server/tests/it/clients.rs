//! Client libraries analysts actually use, each as its own program in
//! tests/clients/: psycopg 3, SQLAlchemy's inspector (over psycopg) and the PostgreSQL
//! JDBC driver. Each program makes its own assertions and prints what it saw; the
//! test runs it against a fresh server and fails with that output.
//!
//! The interpreters and drivers come from scripts/test.sh: TIDEMARK_TEST_PYTHON (a
//! venv with psycopg and SQLAlchemy) and TIDEMARK_TEST_PGJDBC (postgresql.jar). The
//! password reaches the programs by environment, never on a command line.

use std::path::PathBuf;
use std::process::{Command, Output};

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

/// Run a client program against `s` (in a blocking thread: the server runs on this
/// test's runtime) and return its output, checked for success and `ok_line`.
async fn run_client(s: &TestServer, program: &str, args: Vec<String>, ok_line: &str) -> String {
    let port = s.port.to_string();
    let program = program.to_string();
    let shown = format!("{program} {}", args.join(" "));
    let o: Output = tokio::task::spawn_blocking(move || {
        Command::new(&program)
            .args(&args)
            .env("TIDEMARK_PG_PORT", port)
            .env("TIDEMARK_PG_USER", USER)
            .env("TIDEMARK_PG_PASSWORD", PASSWORD)
            // libpq would otherwise take these over the conninfo's defaults.
            .env_remove("PGSSLMODE")
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
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
