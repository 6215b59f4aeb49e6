//! A demo warehouse, a users file and a running server per test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use tidemark_core::names::Naming;
use tidemark_lake::Warehouse;
use tidemark_query::Engine;
use tidemark_server::auth::UsersFile;
use tidemark_server::{Options, Server};

pub const USER: &str = "alice";
/// A user of role `finance` (same password).
pub const FINANCE: &str = "fiona";
/// A user of role `admin` (same password).
pub const ADMIN: &str = "root";
pub const PASSWORD: &str = "correct horse battery staple";

/// Land 30 simulated days of the demo workload (one commit per table per 5 days),
/// as `tidemark demo` does, so history reaches back a month.
pub async fn demo_warehouse(dir: &Path) -> Warehouse {
    let wh = Warehouse::new(dir.to_str().unwrap(), Default::default()).unwrap();
    let mut w = tidemark_demo::Workload::new(tidemark_demo::WorkloadConfig {
        scale: 0.2,
        days: 30,
        seed: 7,
        ..Default::default()
    });
    tidemark_demo::land(&wh, Naming::SnakeCase, &mut w, 5)
        .await
        .unwrap();
    wh
}

/// The roles of the shipped example config (examples/tidemark.toml): `analyst` reads
/// every source table, `finance` invoice data only, `admin` everything.
pub fn roles() -> std::collections::BTreeMap<String, tidemark_core::config::RoleConfig> {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tidemark.toml"),
    )
    .unwrap();
    let config: tidemark_core::config::Config = toml::from_str(&example).unwrap();
    config.server.roles
}

/// Options for a test server: loopback, a free port, no TLS, the example's roles.
pub fn options(users_file: PathBuf) -> Options {
    Options::from_config(&tidemark_core::config::ServerConfig {
        listen: "127.0.0.1:0".into(),
        users_file,
        max_connections: 20,
        audit_flush_ms: 100,
        roles: roles(),
        ..Default::default()
    })
    .unwrap()
}

/// A running endpoint over its own demo warehouse.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// Replaces the server's users and roles while it runs.
    pub reloader: tidemark_server::Reloader,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Default options: no TLS, user alice.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Start with options adjusted by `f` (the users file is already set).
    pub async fn start_with(f: impl FnOnce(&mut Options)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let wh = demo_warehouse(&dir.path().join("warehouse")).await;
        Self::serve(dir, &wh, f).await
    }

    /// Serve a warehouse built elsewhere; `dir` (kept until the server is dropped)
    /// gets the users file.
    pub async fn serve(
        dir: tempfile::TempDir,
        wh: &Warehouse,
        f: impl FnOnce(&mut Options),
    ) -> Self {
        let users = dir.path().join("users.toml");
        UsersFile::add_user(&users, USER, "analyst", PASSWORD).unwrap();
        UsersFile::add_user(&users, FINANCE, "finance", PASSWORD).unwrap();
        UsersFile::add_user(&users, ADMIN, "admin", PASSWORD).unwrap();
        let mut opts = options(users);
        f(&mut opts);
        let engine = Arc::new(Engine::open(wh).await.unwrap());
        let server = Server::bind(engine, wh, opts).await.unwrap();
        let port = server.local_addr().unwrap().port();
        let reloader = server.reloader();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run_until(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            dir,
            port,
            reloader,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A tokio-postgres connection string.
    pub fn conninfo(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password='{password}' dbname=tidemark connect_timeout=10",
            self.port
        )
    }

    /// Connect with tokio-postgres (no TLS) and drive the connection in the background.
    pub async fn client(&self) -> tokio_postgres::Client {
        self.client_as(USER).await
    }

    /// Connect as `user` (password [`PASSWORD`]).
    pub async fn client_as(&self, user: &str) -> tokio_postgres::Client {
        let (client, conn) =
            tokio_postgres::connect(&self.conninfo(user, PASSWORD), tokio_postgres::NoTls)
                .await
                .expect("connect");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Run psql (in a blocking thread: the server runs on this test's runtime).
    pub async fn psql(&self, extra_conninfo: &str, password: &str, args: &[&str]) -> Output {
        self.psql_as(USER, extra_conninfo, password, args).await
    }

    /// Run psql as `user`.
    pub async fn psql_as(
        &self,
        user: &str,
        extra_conninfo: &str,
        password: &str,
        args: &[&str],
    ) -> Output {
        let conninfo = format!(
            "host=127.0.0.1 port={} user={user} dbname=tidemark connect_timeout=10 {extra_conninfo}",
            self.port
        );
        let password = password.to_string();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            Command::new("psql")
                .arg(conninfo)
                .args(["-X", "--no-psqlrc", "-v", "ON_ERROR_STOP=1"])
                .args(&args)
                .env("PGPASSWORD", password)
                .env_remove("PGSSLMODE")
                .output()
                .expect("psql is installed (Debian postgresql-client)")
        })
        .await
        .unwrap()
    }

    /// Run `sql` in psql as `user` with verbose errors; it must fail. The output.
    pub async fn psql_error(&self, user: &str, sql: &str) -> String {
        let o = self
            .psql_as(user, "", PASSWORD, &["-v", "VERBOSITY=verbose", "-c", sql])
            .await;
        let out = text(&o);
        assert!(!o.status.success(), "{sql} should fail:\n{out}");
        out
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// stdout and stderr of a process, for assertions.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
