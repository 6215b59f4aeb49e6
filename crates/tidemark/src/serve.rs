//! `tidemark serve`: the PostgreSQL-protocol endpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use tidemark_core::config::{Config, ServerConfig};
use tidemark_daemon::watch::{Change, Watcher};
use tidemark_query::Engine;
use tidemark_server::{Options, Reloader, Server};
use tracing::{error, info, warn};

use crate::common::{init_logging, load_config, warehouse, GlobalArgs};

/// Options of `tidemark serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Listen on this address instead of `[server] listen` (default 127.0.0.1:5433).
    #[arg(long, env = "TIDEMARK_LISTEN")]
    pub listen: Option<String>,
}

/// Run `tidemark serve` until Ctrl-C / SIGTERM.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    init_logging(g);
    let config = load_config(g, false)?;
    let mut server_config = config
        .as_ref()
        .map(|c| c.server.clone())
        .unwrap_or_default();
    if let Some(l) = args.listen {
        server_config.listen = l;
    }
    let wh = warehouse(g, config.as_ref())?;
    let server = bind(&g.environment, &server_config, &wh).await?;
    // The online feature store, as schema `features` (followed while serving).
    let _online = match &config {
        Some(c) => crate::features::start_online(c, &wh).await?,
        None => None,
    };
    if let Some(o) = &_online {
        server.set_features(o.pg());
    }
    let _reload = AbortOnDrop(spawn_reload(server.reloader(), g.config.clone()));
    server
        .run_until(crate::common::shutdown())
        .await
        .context("serving the PostgreSQL protocol")?;
    Ok(())
}

/// Open the warehouse's tables and bind the endpoint (`tidemark serve`, and
/// `tidemark run --serve` beside change capture).
pub async fn bind(
    environment: &str,
    server_config: &tidemark_core::config::ServerConfig,
    wh: &tidemark_lake::Warehouse,
) -> Result<Server> {
    let engine = Arc::new(Engine::open(wh).await?);
    let server = Server::bind(engine, wh, Options::from_config(server_config)?).await?;
    let addr = server.local_addr()?;
    eprintln!("tidemark: PostgreSQL protocol on {addr} (environment {environment})");
    Ok(server)
}

/// Stops the reload watcher with the server.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keep the endpoint's users and roles in step with the files, without a restart
/// and without dropping sessions: on SIGHUP, and whenever the config file or the
/// users file it names changes (modification time and size, checked each second),
/// read the config again and hand its users file and `[server.roles]` to
/// [`Reloader::reload`]. Logs `users and roles reloaded` when they are in force, and
/// an error with the reason when they are refused (the ones in force stay).
///
/// Only users and roles are reloaded; other `[server]` settings (listen, TLS,
/// limits) take effect at the next restart, which is logged as a warning when they
/// change. Runs on the current tokio runtime until the returned task is aborted.
pub fn spawn_reload(reloader: Reloader, config_path: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(watch(reloader, config_path))
}

/// The `[server]` section the reload reads: the config's, or the defaults when
/// there was no config file at startup either (as `tidemark serve` runs then).
fn server_config(path: &Path, optional: bool) -> Result<ServerConfig> {
    if optional && !path.exists() {
        return Ok(ServerConfig::default());
    }
    Ok(Config::from_file(path)?.server)
}

/// `[server]` settings that only a restart applies, as text to compare.
fn restart_settings(c: &ServerConfig) -> String {
    format!(
        "{:?}",
        (
            &c.listen,
            &c.tls_cert,
            &c.tls_key,
            c.require_tls,
            c.statement_timeout_ms,
            c.max_connections,
            c.query_memory_mb,
            c.refresh_interval_ms,
            c.audit_flush_ms,
        )
    )
}

async fn watch(reloader: Reloader, config_path: PathBuf) {
    // No config file at startup: the defaults are served (see `run`), and a config
    // file written later is read; one that existed and went away is an error.
    let optional = !config_path.exists();
    let mut last = server_config(&config_path, optional).ok();
    let users_file = last.as_ref().map_or_else(
        || ServerConfig::default().users_file,
        |c| c.users_file.clone(),
    );
    let mut files = Watcher::new(vec![config_path.clone(), users_file]);
    loop {
        if files.next().await == Change::Hangup {
            info!("SIGHUP: reading the users and roles again");
        }
        let config = match server_config(&config_path, optional) {
            Ok(c) => c,
            Err(e) => {
                error!(config = %config_path.display(), error = %format!("{e:#}"), "users and roles not reloaded: the config file cannot be used; the previous users and roles stay in force");
                continue;
            }
        };
        if let Some(previous) = &last {
            if restart_settings(previous) != restart_settings(&config) {
                warn!(config = %config_path.display(), "[server] settings other than users_file and roles changed; they take effect at the next restart");
            }
        }
        // The config may name another users file: that one is watched from now.
        files.replace(1, config.users_file.clone());
        match reloader.reload(&config.users_file, &config.roles).await {
            Ok(summary) => {
                info!(
                    config = %config_path.display(),
                    users_file = %config.users_file.display(),
                    users = summary.users,
                    roles = summary.roles,
                    changes = %summary,
                    "users and roles reloaded"
                );
            }
            Err(e) => {
                error!(config = %config_path.display(), users_file = %config.users_file.display(), error = %e, "users and roles not reloaded");
            }
        }
        last = Some(config);
    }
}
