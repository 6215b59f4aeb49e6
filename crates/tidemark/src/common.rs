//! What every subcommand shares: the config file, the environment, logging.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use tidemark_core::config::Config;
use tidemark_lake::Warehouse;
use tracing::info;

/// Options of every subcommand.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Config file.
    #[arg(
        long,
        global = true,
        env = "TIDEMARK_CONFIG",
        default_value = "tidemark.toml"
    )]
    pub config: PathBuf,
    /// Environment to act on (each has its own warehouse and credentials).
    #[arg(
        long = "env",
        global = true,
        env = "TIDEMARK_ENV",
        default_value = "dev"
    )]
    pub environment: String,
    /// Use this warehouse directory instead of the environment's.
    #[arg(long, global = true, env = "TIDEMARK_WAREHOUSE")]
    pub warehouse: Option<String>,
    /// Log format: `text`, or `json` (the default when stderr is not a terminal).
    #[arg(long, global = true, env = "TIDEMARK_LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// Set up logging. On a terminal, progress bars show progress and logs are warnings
/// and errors; elsewhere every step is a structured JSON line.
pub fn init_logging(g: &GlobalArgs) {
    let tty = std::io::stderr().is_terminal();
    let json = match g.log_format.as_deref() {
        Some("json") => true,
        Some(_) => false,
        None => !tty,
    };
    let default = if tty { "warn" } else { "info" };
    // Targets match by crate name: delta-rs logs as `deltalake_core`. Its MERGE warns
    // "Missing target skipped-file metric; deriving from total-files minus
    // scanned-files" on every merge (about its own metrics, not the data), which would
    // drown out tidemark's own warnings.
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDEMARK_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{default},deltalake=warn,deltalake_core=warn,deltalake_core::operations::merge=error,datafusion=warn,buoyant_kernel=off"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.with_target(false).init();
    }
}

/// The loaded config, or `None` when the file does not exist and nothing requires it.
pub fn load_config(g: &GlobalArgs, required: bool) -> Result<Option<Config>> {
    if !g.config.exists() {
        if required {
            anyhow::bail!(
                "config file {} not found; pass --config FILE or set TIDEMARK_CONFIG (docs/configuration.md has an example)",
                g.config.display()
            );
        }
        return Ok(None);
    }
    Ok(Some(Config::from_file(&g.config)?))
}

/// The warehouse the command acts on: `--warehouse`, else the environment's.
pub fn warehouse(g: &GlobalArgs, config: Option<&Config>) -> Result<Warehouse> {
    let (location, options) = match (&g.warehouse, config) {
        (Some(w), _) => (w.clone(), HashMap::new()),
        (None, Some(c)) => {
            let env = c.environment(&g.environment)?;
            (
                env.warehouse.clone(),
                env.storage_options.clone().into_iter().collect(),
            )
        }
        (None, None) => anyhow::bail!(
            "no warehouse: pass --warehouse DIR, or a config file (--config) that defines environment {:?}",
            g.environment
        ),
    };
    info!(environment = %g.environment, warehouse = %location, "acting on");
    Warehouse::new(&location, options).with_context(|| format!("environment {}", g.environment))
}

/// Resolves on Ctrl-C or SIGTERM: when a long-running command (`serve`, `console`)
/// stops serving and flushes what it holds.
pub async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
