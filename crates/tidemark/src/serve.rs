//! `tidemark serve`: the PostgreSQL-protocol endpoint.

use std::sync::Arc;

use anyhow::{Context, Result};
use tidemark_query::Engine;
use tidemark_server::{Options, Server};

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
    server
        .run_until(shutdown())
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

async fn shutdown() {
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
