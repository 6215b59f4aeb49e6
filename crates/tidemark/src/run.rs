//! `tidemark run`: the daemon (capture, jobs, HTTP API: `tidemark_daemon::App`).
//! This file parses options, handles signals, and with `--serve` runs the
//! PostgreSQL endpoint beside it on a runtime of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use tracing::{error, info, warn};

use crate::common::{init_logging, load_config, warehouse, GlobalArgs};

/// Options of `tidemark run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this source or stream (default: every source with `capture = "binlog"` and
    /// every stream in the config).
    #[arg(long)]
    pub source: Option<String>,
    /// Exit once the stream has caught up with the server (read what it had written
    /// when the run began, then nothing new for one flush interval), after committing
    /// every table's position, and after the jobs those commits trigger have run.
    /// For backfills and tests.
    #[arg(long)]
    pub until_caught_up: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464). Off
    /// unless given; bind a loopback address unless a scraper elsewhere needs it.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Also serve the PostgreSQL endpoint (`[server]` in the config) from this
    /// process, as `tidemark serve` does; it picks up each commit within
    /// `refresh_interval_ms`.
    #[arg(long)]
    pub serve: bool,
    /// Serve the HTTP API (jobs, runs, status) here instead of `[daemon]
    /// api_listen` (default 127.0.0.1:8421); `off` to not serve it.
    #[arg(long, value_name = "ADDR", env = "TIDEMARK_API_LISTEN")]
    pub api_listen: Option<String>,
}

/// Run `tidemark run`.
pub async fn run(g: &GlobalArgs, args: Args) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(stop.clone());
    init_logging(g);
    let config = load_config(g, true)?.expect("required");
    let wh = warehouse(g, Some(&config))?;
    let metrics = tidemark_capture::metrics::Shared::default();
    if let Some(addr) = &args.metrics_listen {
        tidemark_capture::metrics::serve(addr, metrics.clone()).await?;
    }
    // The online feature store follows the warehouse's commits itself (no job to
    // schedule), served by the HTTP API and, with --serve, by the endpoint.
    let online = crate::features::start_online(&config, &wh).await?;
    let online_store = online.as_ref().map(|o| o.store.clone());
    // The endpoint runs on threads of its own. Queries are CPU-bound and run on the
    // runtime that polls them: sharing capture's runtime, fifty busy sessions
    // stretched capture commits from 10 ms to 8 s (bench/serve.sh). With a runtime
    // each, the OS shares the cores between the two, and capture, idle most of the
    // time, gets its turn as soon as it has work.
    let (serve_stop, serving, sql_runtime, gateway) = if args.serve {
        let runtime = SqlRuntime::new()?;
        let (environment, server_config, server_wh) =
            (g.environment.clone(), config.server.clone(), wh.clone());
        let server = runtime
            .handle()
            .spawn(
                async move { crate::serve::bind(&environment, &server_config, &server_wh).await },
            )
            .await
            .context("starting the PostgreSQL endpoint")??;
        if let Some(o) = &online {
            server.set_features(o.pg());
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // Users and roles reload in the running endpoint (SIGHUP, a changed config
        // or users file), on the endpoint's runtime, stopping with it.
        let gateway = server.gateway();
        let (reloader, config_path) = (server.reloader(), g.config.clone());
        let reload = {
            let _on_its_runtime = runtime.handle().enter();
            crate::serve::spawn_reload(reloader, config_path)
        };
        let task = runtime.handle().spawn(async move {
            let r = server
                .run_until(async move {
                    let _ = rx.await;
                })
                .await;
            reload.abort();
            r
        });
        (Some(tx), Some(task), Some(runtime), Some(gateway))
    } else {
        (None, None, None, None)
    };
    // The web console under the HTTP API (`[console] daemon = true`): its queries on
    // the endpoint's runtime (or one like it), not capture's; with --serve, over the
    // endpoint's own users, roles and audit.
    let (console, _sql_runtime) = if config.console.daemon {
        let runtime = match sql_runtime {
            Some(r) => r,
            None => SqlRuntime::new()?,
        };
        let handle = runtime.handle().clone();
        let console =
            crate::console::in_daemon(g, &config, &wh, gateway, handle, online_store.clone())
                .await?;
        (Some(console), Some(runtime))
    } else {
        (None, sql_runtime)
    };
    let options = tidemark_daemon::Options {
        config_path: Some(g.config.clone()),
        capture: tidemark_capture::Options {
            environment: g.environment.clone(),
            only: args.source.clone(),
            until_caught_up: args.until_caught_up,
            // The daemon gives capture its reloaded configs.
            config_updates: None,
        },
        api_listen: args.api_listen.clone(),
        input_poll: None,
        extra_routes: console.as_ref().map(|c| c.routes.clone()),
        features: online_store,
    };
    let captured = match tidemark_daemon::App::build(config, wh, options, metrics).await {
        Ok(app) => {
            if let Some(c) = &console {
                c.attach_jobs(app.handle());
            }
            if let Some(addr) = app.api_addr() {
                info!(address = %addr, "HTTP API at http://{addr}/api/v1/ (OpenAPI: /api/v1/openapi.json)");
                if console.is_some() {
                    info!(address = %addr, "web console at http://{addr}/console/");
                }
            } else if console.is_some() {
                warn!("[console] daemon = true, but the HTTP API is off, so the console is not served");
            }
            app.run_until(stop).await
        }
        Err(e) => Err(e),
    };
    if let Some(c) = console {
        c.close().await;
    }
    drop(online);
    // The endpoint stops with capture (statements answered so far reach the audit).
    if let (Some(tx), Some(task)) = (serve_stop, serving) {
        let _ = tx.send(());
        if let Ok(Err(e)) = task.await {
            error!(error = %format!("{e:#}"), "the PostgreSQL endpoint stopped with an error");
        }
    }
    captured
}

/// SIGTERM / Ctrl-C ask the loop to finish the commit in flight and stop; a second
/// signal exits at once.
fn spawn_signal_handler(stop: Arc<AtomicBool>) {
    // Registered before spawning, so a signal that arrives while the task has not run
    // yet is not lost (the default action would kill the process mid-commit).
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::spawn(async move {
        loop {
            #[cfg(unix)]
            match term.as_mut() {
                Some(t) => {
                    tokio::select! {
                        _ = t.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            info!("stopping: finishing the commit in flight (signal again to exit at once)");
        }
    });
}

/// The endpoint's runtime under `tidemark run --serve` (see [`run`]). A runtime may
/// not be dropped inside another one's async context, so it is shut down in the
/// background when this goes, on every path out of [`run`].
struct SqlRuntime(Option<tokio::runtime::Runtime>);

impl SqlRuntime {
    fn new() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("tidemark-sql")
            .enable_all()
            .build()
            .context("starting the PostgreSQL endpoint's runtime")?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("runtime until drop").handle()
    }
}

impl Drop for SqlRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
