//! `tidemark serve` picks up users and roles without a restart and without dropping
//! sessions: a user added with `tidemark user add` logs in, and a grant added to the
//! config reaches a session that was open before, from its next statement. A config
//! that does not parse is refused and the server keeps serving. Needs no MariaDB
//! (the warehouse comes from `tidemark demo`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{ok, text, tidemark};

/// `tidemark user add NAME --role ROLE` with the password in the environment.
fn add_user(cfg: &Path, name: &str, role: &str, password: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .env("TIDEMARK_API_LISTEN", "127.0.0.1:0")
        .arg("--config")
        .arg(cfg)
        .args(["user", "add", name, "--role", role])
        .env("TIDEMARK_USER_PASSWORD", password)
        .output()
        .unwrap()
}

fn conninfo(port: u16, user: &str) -> String {
    format!("host=127.0.0.1 port={port} user={user} dbname=tidemark connect_timeout=5")
}

/// One statement through a new psql connection, unaligned and tuples only.
fn psql_once(port: u16, user: &str, password: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .arg(conninfo(port, user))
        .args(["-X", "-At", "-c", sql])
        .env("PGPASSWORD", password)
        .output()
        .expect("psql (Debian postgresql-client)")
}

/// A psql session kept open: statements are written to its stdin one at a time, and
/// its output (rows and errors, in order) is read up to a marker echoed after each.
struct OpenSession {
    child: Child,
    stdin: ChildStdin,
    output: Arc<Mutex<String>>,
    read: usize,
    statements: usize,
}

impl OpenSession {
    fn open(port: u16, user: &str, password: &str) -> Self {
        // Errors into the same pipe as rows, so they come in order; stdout line
        // buffered (psql's stdio would otherwise hold rows until it exits).
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec stdbuf -oL -eL psql \"$1\" -X -At -v ON_ERROR_STOP=0 2>&1")
            .arg("sh")
            .arg(conninfo(port, user))
            .env("PGPASSWORD", password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("psql (Debian postgresql-client) and stdbuf");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let sink = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut o = sink.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        });
        Self {
            child,
            stdin,
            output,
            read: 0,
            statements: 0,
        }
    }

    /// Run one statement in this same connection; what psql printed for it.
    fn run(&mut self, sql: &str) -> String {
        self.statements += 1;
        let marker = format!("-- end of statement {} --", self.statements);
        writeln!(self.stdin, "{sql};\n\\echo '{marker}'").unwrap();
        self.stdin.flush().unwrap();
        let start = Instant::now();
        loop {
            {
                let o = self.output.lock().unwrap();
                if let Some(at) = o[self.read..].find(&marker) {
                    let got = o[self.read..self.read + at].trim().to_string();
                    self.read += at + marker.len();
                    return got;
                }
                if start.elapsed() > Duration::from_secs(30) {
                    panic!("{sql}: no answer in the open session; its output:\n{o}");
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn close(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The config: role `finance` reads `grants`.
fn config(wh: &Path, port: u16, grants: &[&str]) -> String {
    let grants: Vec<String> = grants.iter().map(|g| format!("{g:?}")).collect();
    format!(
        "[environments.dev]\nwarehouse = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\nusers_file = \"users.toml\"\n\n[server.roles.finance]\ngrants = [{}]\n",
        wh.display(),
        grants.join(", ")
    )
}

fn count_in(log: &Path, what: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(what))
        .count()
}

const RELOADED: &str = "users and roles reloaded";
const REFUSED: &str = "users and roles not reloaded";
const INVOICES: &str = "SELECT count(*) > 0 FROM invoicing.invoices";
const CUSTOMERS: &str = "SELECT count(*) > 0 FROM invoicing.customers";

#[test]
fn serve_reloads_users_and_roles_for_open_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let cfg = dir.path().join("tidemark.toml");
    let log_path = dir.path().join("serve.log");
    let port = free_port();
    std::fs::write(&cfg, config(&wh, port, &["invoicing.invoices"])).unwrap();
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
    let out = add_user(&cfg, "fiona", "finance", "s3cret-fiona");
    assert!(out.status.success(), "{}", text(&out));

    let mut server = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .env("TIDEMARK_API_LISTEN", "127.0.0.1:0")
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .env("TIDEMARK_LOG_FORMAT", "json")
        .env_remove("TIDEMARK_ENV")
        .env_remove("TIDEMARK_WAREHOUSE")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // Polls `f` until it holds; panics with the server log after `secs`.
    let wait = |what: &str, secs: u64, f: &mut dyn FnMut() -> bool| {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "{what}: not within {secs} s\nserver log:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait("the server serves fiona", 60, &mut || {
        psql_once(port, "fiona", "s3cret-fiona", INVOICES)
            .status
            .success()
    });

    // A session of role finance, open from here to the end.
    let mut session = OpenSession::open(port, "fiona", "s3cret-fiona");
    assert_eq!(session.run(INVOICES), "t");
    let refused = session.run(CUSTOMERS);
    assert!(
        refused.contains("permission denied for table invoicing.customers"),
        "{refused}"
    );
    let greta = || psql_once(port, "greta", "s3cret-greta", "SELECT current_user");
    let out = greta();
    assert!(!out.status.success(), "{}", text(&out));

    // (a) a second user, (b) finance reads customers too: no restart, no reconnect.
    let out = add_user(&cfg, "greta", "finance", "s3cret-greta");
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(
        &cfg,
        config(&wh, port, &["invoicing.invoices", "invoicing.customers"]),
    )
    .unwrap();
    wait("greta logs in", 15, &mut || {
        let out = greta();
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "greta"
    });
    let mut last = String::new();
    wait("the open session reads customers", 15, &mut || {
        last = session.run(CUSTOMERS);
        last == "t"
    });
    assert_eq!(session.run(INVOICES), "t");
    assert!(count_in(&log_path, RELOADED) >= 1, "{}", log());

    // A config that does not parse is refused; the grants in force stay.
    let refusals = count_in(&log_path, REFUSED);
    std::fs::write(&cfg, "[server\nthis is not TOML").unwrap();
    wait("the broken config is refused", 15, &mut || {
        count_in(&log_path, REFUSED) > refusals
    });
    let refusal = log()
        .lines()
        .rfind(|l| l.contains(REFUSED))
        .unwrap()
        .to_string();
    assert!(
        refusal.contains("\"level\":\"ERROR\"") && refusal.contains("tidemark.toml"),
        "{refusal}"
    );
    assert!(
        server.try_wait().unwrap().is_none(),
        "the server exited:\n{}",
        log()
    );
    assert_eq!(session.run(CUSTOMERS), "t");
    assert_eq!(session.run("SELECT current_user"), "fiona");
    let out = greta();
    assert!(out.status.success(), "{}", text(&out));

    session.close();
    let _ = server.kill();
    let _ = server.wait();
    // Secrets never reach the log.
    let log = log();
    for secret in ["s3cret-fiona", "s3cret-greta"] {
        assert!(!log.contains(secret), "{log}");
    }
}
