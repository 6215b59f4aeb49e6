//! `tidemark console` in a real browser (issue 20): a demo warehouse plus a table
//! snapshotted from MariaDB whose row holds an XSS string, served by the binary and
//! driven by tests/browser/console.py (selenium, headless Chromium, chromedriver; all
//! installed by scripts/test.sh). Screenshots of each page go to
//! `target/test-output/console/`; the pages' load times (the performance API, as
//! the pages measure them) are printed with the browser's report.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{ok, text, tidemark, TestDb};

const PASSWORD: &str = "console-test-password";
/// Stays text in the page; as HTML it would set the title and a global.
const XSS: &str = "<img src=x onerror=\"document.title='pwned';window.__xss=1\">";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn add_user(cfg: &Path, name: &str, role: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--config")
        .arg(cfg)
        .args(["user", "add", name, "--role", role])
        .env("TIDEMARK_USER_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// Where screenshots go: `<target>/test-output/console/`.
fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("..")
        .join("test-output")
        .join("console");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

/// Whether `GET /console/` answers (the console has bound and opened the warehouse).
fn answers(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(
        s,
        "GET /console/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    r.starts_with("HTTP/1.1 200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let python = std::env::var("TIDEMARK_TEST_PYTHON")
        .expect("TIDEMARK_TEST_PYTHON is not set: run the tests with scripts/test.sh (a venv with selenium; chromium and chromium-driver from apt)");
    let db = TestDb::new("console").await;
    db.exec("CREATE TABLE notes (id INT PRIMARY KEY, note VARCHAR(200))")
        .await;
    db.exec(&format!(
        "INSERT INTO notes VALUES (1, '{}'), (2, 'plain')",
        XSS.replace('\'', "''")
    ))
    .await;
    let port = free_port();
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tidemark.toml"),
    )
    .unwrap();
    // The shipped roles: analyst reads every table, finance invoice data only (masked
    // customer, no drafts).
    let roles: String = example
        .split("\n[")
        .filter(|s| s.starts_with("server.roles."))
        .map(|s| format!("\n[{s}"))
        .collect();
    // The models `tidemark demo` writes beside its warehouse, and two feature views:
    // one over a model, one over a table finance reads.
    let models = format!(
        "\n[models]\npath = {:?}\n",
        db.warehouse().join("models").display().to_string()
    );
    let features = "\n[features.customer_spend]\nsource = \"analytics.customer_summary\"\nentity = \"customer_id\"\nttl = \"30d\"\nfeatures = [\"billed\", \"paid\", { name = \"unpaid\", sql = \"billed - paid\" }]\n\n[features.payment_amounts]\nsource = \"invoicing.payments\"\nentity = \"payment_id\"\njoin_on = \"id\"\nfeatures = [\"amount\", \"method\"]\n";
    let cfg = db.config(&format!(
        "\n[server]\nusers_file = \"users.toml\"\nrefresh_interval_ms = 500\n{roles}\n\n[console]\nlisten = \"127.0.0.1:{port}\"\n{models}{features}"
    ));
    let wh = db.warehouse();
    ok(tidemark(
        &cfg,
        &[
            "demo",
            "--dir",
            wh.to_str().unwrap(),
            "--days",
            "10",
            "--scale",
            "0.3",
        ],
    ));
    ok(tidemark(&cfg, &["snapshot"]));
    add_user(&cfg, "ana", "analyst");
    add_user(&cfg, "fiona", "finance");
    add_user(&cfg, "root", "admin");

    let log = std::fs::File::create(cfg.with_file_name("console.log")).unwrap();
    let mut console = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--config")
        .arg(&cfg)
        .arg("console")
        .env("TIDEMARK_LOG_FORMAT", "json")
        .env_remove("TIDEMARK_ENV")
        .env_remove("TIDEMARK_WAREHOUSE")
        .env_remove("TIDEMARK_CONSOLE_LISTEN")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !answers(port) {
        if start.elapsed() > Duration::from_secs(60) || console.try_wait().unwrap().is_some() {
            let _ = console.kill();
            panic!(
                "tidemark console did not answer on port {port}:\n{}",
                std::fs::read_to_string(cfg.with_file_name("console.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let out_dir = output_dir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.py");
    let browser = Command::new(&python)
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(&out_dir)
        .args(["ana", "fiona", PASSWORD])
        .arg(format!("{}.notes", db.name))
        .arg(XSS)
        .arg("root")
        .output()
        .expect("run the browser test (python with selenium)");
    let _ = console.kill();
    let _ = console.wait();
    let console_log =
        std::fs::read_to_string(cfg.with_file_name("console.log")).unwrap_or_default();
    assert!(
        browser.status.success(),
        "browser test failed (screenshots in {}):\n{}\nconsole log:\n{console_log}",
        out_dir.display(),
        text(&browser)
    );
    let report = String::from_utf8_lossy(&browser.stdout);
    eprintln!("browser test: {}", report.trim());
    for shot in [
        "02-health",
        "03-catalog",
        "05-sql-grid-paged",
        "07-finance-health",
        "08-finance-catalog",
        "10-sql-as-of",
        "11-sql-chart",
        "12-dashboard",
        "13-dashboard-as-of",
        "14-dashboard-compare",
        "15-table-page",
        "16-finance-dashboard",
        "17-models",
        "18-features",
        "19-finance-models",
        "20-finance-features",
    ] {
        assert!(
            out_dir.join(format!("{shot}.png")).exists(),
            "{shot}.png in {}",
            out_dir.display()
        );
    }
    // Console statements are audited like the endpoint's, and passwords never logged.
    assert!(
        console_log.contains("tidemark::audit") && console_log.contains("console sign-in"),
        "{console_log}"
    );
    assert!(!console_log.contains(PASSWORD));
    db.drop().await;
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; the status line, headers and body.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    r
}

/// `tidemark run` with `[console] daemon = true` serves the console under its HTTP
/// API, over the endpoint's users and roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_the_console() {
    let db = TestDb::new("consoled").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
        .await;
    db.exec("INSERT INTO t VALUES (1, 'a')").await;
    let cfg = db.config(
        "\n[server]\nusers_file = \"users.toml\"\nrefresh_interval_ms = 200\n\n[server.roles.analyst]\ngrants = [\"*\"]\n\n[console]\ndaemon = true\n\n[jobs.tidy]\nkind = \"maintenance\"\n",
    );
    add_user(&cfg, "ana", "analyst");
    add_user(&cfg, "root", "admin");
    let run = crate::support::spawn_run_with(&cfg, &[]);
    crate::support::wait_for_log(&cfg, "web console at", 1, Duration::from_secs(90));
    let log = std::fs::read_to_string(cfg.with_file_name("run.log")).unwrap();
    let port: u16 = log
        .split("web console at http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no console address in run.log:\n{log}"));

    let page = http(port, "GET", "/console/", &[], "");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'"),
        "{page}"
    );
    let (_, cookie) = sign_in(port, "ana");
    // The table lands from the binlog; the console lists it once the engine has it.
    let table = format!("\"name\":\"{}\"", db.name);
    let start = Instant::now();
    loop {
        let catalog = http(
            port,
            "GET",
            "/console/api/catalog",
            &[("Cookie", &cookie)],
            "",
        );
        assert!(catalog.starts_with("HTTP/1.1 200"), "{catalog}");
        if catalog.contains(&table) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{catalog}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The daemon's own API is still there beside it.
    let api = http(port, "GET", "/healthz", &[], "");
    assert!(api.starts_with("HTTP/1.1 200"), "{api}");

    // The health page shows the daemon's jobs to admins (not to analysts), and an
    // admin triggers a run through the daemon's own scheduler.
    let health = http(
        port,
        "GET",
        "/console/api/health",
        &[("Cookie", &cookie)],
        "",
    );
    assert!(
        health.contains("\"daemon\":true") && health.contains("\"jobs\":null"),
        "{health}"
    );
    let (login, root_cookie) = sign_in(port, "root");
    let csrf = login
        .split("\"csrf\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token: {login}"))
        .to_string();
    let health = http(
        port,
        "GET",
        "/console/api/health",
        &[("Cookie", &root_cookie)],
        "",
    );
    assert!(health.contains("\"name\":\"tidy\""), "{health}");
    let triggered = http(
        port,
        "POST",
        "/console/api/jobs/tidy/runs",
        &[("Cookie", &root_cookie), ("X-CSRF-Token", &csrf)],
        "",
    );
    assert!(
        triggered.starts_with("HTTP/1.1 200") && triggered.contains("\"run\":\"tidy-"),
        "{triggered}"
    );
    let start = Instant::now();
    loop {
        let health = http(
            port,
            "GET",
            "/console/api/health",
            &[("Cookie", &root_cookie)],
            "",
        );
        if health.contains("\"outcome\":\"succeeded\"") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{health}");
        std::thread::sleep(Duration::from_millis(300));
    }
    crate::support::kill(run);
    db.drop().await;
}

/// Sign `user` in to the console on `port`: the login answer and the session
/// cookie (`name=value`).
fn sign_in(port: u16, user: &str) -> (String, String) {
    let login = http(
        port,
        "POST",
        "/console/api/login",
        &[("Content-Type", "application/json")],
        &format!("{{\"user\":\"{user}\",\"password\":\"{PASSWORD}\"}}"),
    );
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    let cookie = login
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie: {login}"))
        .to_string();
    (login, cookie)
}
