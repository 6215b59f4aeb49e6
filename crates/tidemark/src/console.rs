//! `tidemark console`: the web console (tidemark-console) on a listener of its own,
//! over the SQL endpoint's users, roles and audit. `tidemark run` serves the same
//! console under its HTTP API when `[console] daemon = true` ([`in_daemon`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tidemark_console::{Console, Options};
use tidemark_core::config::Config;
use tidemark_query::Engine;
use tidemark_server::direct::Gateway;

use crate::common::{init_logging, load_config, warehouse, GlobalArgs};

/// Options of `tidemark console`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Listen on this address instead of `[console] listen` (default 127.0.0.1:8420;
    /// port 0 picks a free port).
    #[arg(long, env = "TIDEMARK_CONSOLE_LISTEN")]
    pub listen: Option<String>,
}

/// Stops a background task with the console.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn options(
    g: &GlobalArgs,
    config: Option<&Config>,
    tls: bool,
    runtime: Option<tokio::runtime::Handle>,
    online: Option<Arc<tidemark_features::OnlineStore>>,
) -> Result<Options> {
    let idle = config.map_or(60, |c| c.console.session_idle_minutes.max(1));
    // Refused as `tidemark run` refuses it: a view the console would list but
    // nothing could serve.
    let features = match config {
        Some(c) => tidemark_features::FeatureViews::parse(&c.features)
            .context("[features.*] in the config file")?,
        None => Default::default(),
    };
    Ok(Options {
        secure_cookies: tls,
        session_idle: Duration::from_secs(idle.saturating_mul(60)),
        runtime,
        // As `tidemark build` finds them: [models] path, else ./models.
        models: Some(config.map(|c| c.models.clone()).unwrap_or_default()),
        environment: g.environment.clone(),
        features,
        online,
    })
}

/// Run `tidemark console` until Ctrl-C / SIGTERM.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    init_logging(g);
    serve(g, args).await
}

/// Serve the console until Ctrl-C / SIGTERM, logging already set up (`tidemark demo
/// --console` serves it after landing).
pub async fn serve(g: &GlobalArgs, args: Args) -> Result<()> {
    let config = load_config(g, false)?;
    let server_config = config
        .as_ref()
        .map(|c| c.server.clone())
        .unwrap_or_default();
    let listen = args.listen.unwrap_or_else(|| {
        config
            .as_ref()
            .map(|c| c.console.listen.clone())
            .unwrap_or_default()
    });
    let listen = if listen.is_empty() {
        tidemark_core::config::ConsoleConfig::default().listen
    } else {
        listen
    };
    let wh = warehouse(g, config.as_ref())?;
    let server_options = tidemark_server::Options::from_config(&server_config)?;
    let (refresh, tls) = (server_options.refresh, server_options.tls.clone());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("the console cannot listen on {listen} ([console] listen)"))?;
    let addr = listener.local_addr()?;
    // Passwords are typed into the sign-in page: off this machine only over TLS.
    if tls.is_none() && !addr.ip().is_loopback() {
        bail!("the console would listen on {addr} without TLS, so passwords would cross the network in the clear; set [server] tls_cert and tls_key, or listen on a loopback address");
    }
    let engine = Arc::new(Engine::open(&wh).await?);
    let gateway = Gateway::open(engine.clone(), &wh, server_options).await?;
    let _fresh = refresh.map(|every| AbortOnDrop(tidemark_console::keep_fresh(engine, every)));
    let _reload = AbortOnDrop(crate::serve::spawn_reload(
        gateway.reloader(),
        g.config.clone(),
    ));
    // No online feature store here: `tidemark run` serves it.
    let console = Console::new(
        gateway.clone(),
        wh,
        options(g, config.as_ref(), tls.is_some(), None, None)?,
    );
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!(
        "tidemark: web console at {scheme}://{addr}/console/ (environment {}); sign in as a user of the SQL endpoint",
        g.environment
    );
    let app = console.router();
    match &tls {
        Some((cert, key)) => {
            tidemark_daemon::api::serve_https(listener, app, cert, key, crate::common::shutdown())
                .await?
        }
        None => axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(crate::common::shutdown())
        .await
        .context("serving the console")?,
    }
    // Statements run so far reach tidemark.audit before exit.
    gateway.close().await;
    Ok(())
}

/// The console as `tidemark run` serves it, at `/console/` of the HTTP API, and what
/// must live as long as it does.
pub struct InDaemon {
    /// The routes to merge into the API's.
    pub routes: axum::Router,
    /// The console's own gateway, when it opened one (to close at shutdown).
    own: Option<Gateway>,
    console: Console,
    _tasks: Vec<AbortOnDrop>,
}

impl InDaemon {
    /// Show the daemon's jobs (and a trigger for admins) on the health page.
    pub fn attach_jobs(&self, handle: tidemark_daemon::SchedulerHandle) {
        self.console.attach_jobs(handle);
    }

    /// Commit the audit records of console statements not yet written.
    pub async fn close(self) {
        if let Some(g) = self.own {
            g.close().await;
        }
    }
}

/// The console for `tidemark run`, its queries on `runtime` (the SQL endpoint's, not
/// capture's). With `--serve`, `gateway` is the endpoint's: one audit writer, one
/// reload; without, the console opens its own on `runtime`. `online`: the daemon's
/// online feature store, whose state the Features page shows.
pub async fn in_daemon(
    g: &GlobalArgs,
    config: &Config,
    wh: &tidemark_lake::Warehouse,
    gateway: Option<Gateway>,
    runtime: tokio::runtime::Handle,
    online: Option<Arc<tidemark_features::OnlineStore>>,
) -> Result<InDaemon> {
    let server_options = tidemark_server::Options::from_config(&config.server)?;
    let (refresh, tls) = (server_options.refresh, server_options.tls.is_some());
    let mut tasks = Vec::new();
    let mut own = None;
    let gateway = match gateway {
        Some(g) => g,
        None => {
            let owh = wh.clone();
            let gateway = runtime
                .spawn(async move {
                    let engine = Arc::new(Engine::open(&owh).await?);
                    anyhow::Ok(Gateway::open(engine, &owh, server_options).await?)
                })
                .await
                .context("starting the console")??;
            let _on_its_runtime = runtime.enter();
            if let Some(every) = refresh {
                tasks.push(AbortOnDrop(tidemark_console::keep_fresh(
                    gateway.engine().clone(),
                    every,
                )));
            }
            tasks.push(AbortOnDrop(crate::serve::spawn_reload(
                gateway.reloader(),
                g.config.clone(),
            )));
            own = Some(gateway.clone());
            gateway
        }
    };
    let console = Console::new(
        gateway,
        wh.clone(),
        options(g, Some(config), tls, Some(runtime), online)?,
    );
    Ok(InDaemon {
        routes: console.router(),
        console,
        own,
        _tasks: tasks,
    })
}
