//! `tidemark user add` and `tidemark serve` end to end: the binary, a config file with
//! `[server]`, psql. Needs no MariaDB (the warehouse comes from `tidemark demo`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{ok, text, tidemark};

/// `tidemark user add NAME --role ROLE` with the password in the environment.
fn add_user(cfg: &std::path::Path, name: &str, role: &str, password: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        // Each daemon its own API port: tests run side by side.
        .env("TIDEMARK_API_LISTEN", "127.0.0.1:0")
        .arg("--config")
        .arg(cfg)
        .args(["user", "add", name, "--role", role])
        .env("TIDEMARK_USER_PASSWORD", password)
        .output()
        .unwrap()
}

/// One statement through psql, unaligned and tuples only.
fn psql_at(port: u16, user: &str, password: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} user={user} dbname=tidemark connect_timeout=5"
        ))
        .args(["-X", "-At", "-c", sql])
        .env("PGPASSWORD", password)
        .output()
        .expect("psql (Debian postgresql-client)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn serve_with_config_users_and_psql() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let cfg = dir.path().join("tidemark.toml");
    let port = free_port();
    std::fs::write(
        &cfg,
        format!(
            "[environments.dev]\nwarehouse = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\nusers_file = \"users.toml\"\n\n[server.roles.analyst]\ngrants = [\"*\"]\n",
            wh.display()
        ),
    )
    .unwrap();
    ok(tidemark(
        &cfg,
        &[
            "demo",
            "--dir",
            wh.to_str().unwrap(),
            "--days",
            "10",
            "--scale",
            "0.2",
        ],
    ));

    // The password comes from the environment, never the command line.
    let out = add_user(&cfg, "bob", "analyst", "s3cret-bob");
    assert!(out.status.success(), "{}", text(&out));
    let users = std::fs::read_to_string(dir.path().join("users.toml")).unwrap();
    assert!(
        users.contains("[users.bob]") && !users.contains("s3cret-bob"),
        "{users}"
    );

    // A role the config does not define is refused now, not at the next restart.
    let out = add_user(&cfg, "dave", "finanse", "s3cret-dave");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("role \"finanse\" is not defined in [server.roles]"),
        "{}",
        text(&out)
    );

    // ... or from stdin.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        // Each daemon its own API port: tests run side by side.
        .env("TIDEMARK_API_LISTEN", "127.0.0.1:0")
        .arg("--config")
        .arg(&cfg)
        .args(["user", "add", "carol"])
        .env_remove("TIDEMARK_USER_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret-carol\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        // Each daemon its own API port: tests run side by side.
        .env("TIDEMARK_API_LISTEN", "127.0.0.1:0")
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .env("TIDEMARK_LOG_FORMAT", "json")
        .env_remove("TIDEMARK_ENV")
        .env_remove("TIDEMARK_WAREHOUSE")
        .stderr(log)
        .spawn()
        .unwrap();
    let psql = |user: &str, password: &str, sql: &str| psql_at(port, user, password, sql);
    let start = Instant::now();
    let out = loop {
        let out = psql(
            "bob",
            "s3cret-bob",
            "SELECT count(*) > 0 FROM invoicing.invoices",
        );
        if out.status.success() || start.elapsed() > Duration::from_secs(60) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let carol = psql("carol", "s3cret-carol", "SELECT current_user");
    let wrong = psql("carol", "s3cret-bob", "SELECT 1");
    let _ = server.kill();
    let _ = server.wait();
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(out.status.success(), "{}\nserver log:\n{log}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t");
    assert_eq!(
        String::from_utf8_lossy(&carol.stdout).trim(),
        "carol",
        "{}",
        text(&carol)
    );
    assert!(text(&wrong).contains("password authentication failed for user \"carol\""));
    // Every statement is in the audit log line (and tidemark.audit).
    assert!(
        log.contains("tidemark::audit") && log.contains("SELECT current_user"),
        "{log}"
    );
    // Secrets never reach the log.
    for secret in ["s3cret-bob", "s3cret-carol"] {
        assert!(!log.contains(secret), "{log}");
    }
}

#[test]
fn serve_refuses_to_start_with_a_broken_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    std::fs::create_dir_all(&wh).unwrap();
    std::fs::write(dir.path().join("bad.crt"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("bad.key"), "not a key").unwrap();
    std::fs::write(dir.path().join("users.toml"), "").unwrap();
    let cfg = dir.path().join("tidemark.toml");
    std::fs::write(
        &cfg,
        format!(
            "[environments.dev]\nwarehouse = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:{}\"\ntls_cert = \"bad.crt\"\ntls_key = \"bad.key\"\n",
            wh.display(),
            free_port()
        ),
    )
    .unwrap();
    let out = tidemark(&cfg, &["serve"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("TLS:") && t.contains("bad.crt"), "{t}");

    // require_tls without a certificate is a config error.
    std::fs::write(
        &cfg,
        format!(
            "[environments.dev]\nwarehouse = \"{}\"\n\n[server]\nrequire_tls = true\n",
            wh.display()
        ),
    )
    .unwrap();
    let out = tidemark(&cfg, &["serve"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("require_tls"), "{}", text(&out));
}

/// `tidemark run --serve`: change capture and the endpoint in one process; rows
/// committed at the source become visible over the wire without a restart (the
/// endpoint picks up new commits every `refresh_interval_ms`), in current and history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_what_it_lands() {
    let db = crate::support::TestDb::new("runserve").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
        .await;
    db.exec("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await;
    let port = free_port();
    let cfg = db.config(&format!(
        "\n[server]\nlisten = \"127.0.0.1:{port}\"\nusers_file = \"users.toml\"\nrefresh_interval_ms = 200\n\n[server.roles.analyst]\ngrants = [\"*\"]\n"
    ));
    let out = add_user(&cfg, "bob", "analyst", "s3cret-bob");
    assert!(out.status.success(), "{}", text(&out));
    let run = crate::support::spawn_run_with(&cfg, &["--serve"]);
    let psql = |sql: &str| psql_at(port, "bob", "s3cret-bob", sql);
    let wait_for = |sql: &str, want: &str| {
        let start = Instant::now();
        loop {
            let out = psql(sql);
            let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if got == want {
                return;
            }
            if start.elapsed() > Duration::from_secs(90) {
                let log =
                    std::fs::read_to_string(cfg.with_file_name("run.log")).unwrap_or_default();
                panic!(
                    "{sql}: still {got:?} ({}), want {want}\nrun.log:\n{log}",
                    text(&out)
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let t = format!("{}.t", db.name);
    // The snapshot, served.
    wait_for(&format!("SELECT count(*) FROM {t}"), "3");
    // Changes captured from the binlog reach the same server's sessions.
    db.exec("INSERT INTO t VALUES (4, 'd'), (5, 'e')").await;
    db.exec("UPDATE t SET v = 'z' WHERE id = 1").await;
    wait_for(&format!("SELECT count(*) FROM {t}"), "5");
    wait_for(&format!("SELECT v FROM {t} WHERE id = 1"), "z");
    wait_for(
        &format!("SELECT count(*) FROM {}_history.t WHERE id = 1", db.name),
        "2",
    );
    crate::support::kill(run);
    db.drop().await;
}
