//! # tidemark-daemon
//!
//! The one long-running process (`tidemark run`): what Lambda triggers and App
//! Runner jobs did in the old design. It composes, in one process:
//!
//! ```text
//!  sources ──► tidemark-capture ──► commits ──► tidemark-scheduler ──► jobs/*
//!                  (always on)        │         (cron, every, new data,   (sql, maintenance,
//!                                     │          after, manual)            pull, …)
//!                                     ▼                 │
//!                              tidemark.runs ◄──────────┘   api/* (HTTP) ──► Handle
//! ```
//!
//! * [`App::build`] reads the config, opens the warehouse's run store, parses the
//!   jobs through the kinds registered in [`jobs`], binds the HTTP API ([`api`]);
//!   [`App::run_until`] runs capture, the scheduler and the API until asked to stop,
//!   then lets the commits and runs in flight finish.
//! * [`store`]: the scheduler's durable record (claims by conditional put,
//!   `tidemark.runs`); [`inputs`]: the input versions new-data triggers follow.
//! * [`reload`]: a changed config, tokens file or SIGHUP takes effect in the running
//!   daemon; a config that does not parse is refused and the old one stays.
//! * [`status`]: per-table capture state (`tidemark status`, `/api/v1/status`).
//! * [`tokens`]: the API's bearer tokens, stored as hashes; [`watch`]: SIGHUP and
//!   changed files, for every reload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tidemark_core::config::Config;
use tidemark_lake::Warehouse;
use tidemark_scheduler::clock::SystemClock;
use tidemark_scheduler::{parse_jobs, Handle, Scheduler};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub mod api;
pub mod inputs;
pub mod jobs;
pub mod reload;
pub mod status;
pub mod store;
pub mod tokens;
pub mod watch;

/// The scheduler's handle ([`App::handle`]), for front ends that show and trigger
/// jobs in process (the web console).
pub use tidemark_scheduler::Handle as SchedulerHandle;

/// How `tidemark run` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The config file, watched for changes (`None`: not reloaded).
    pub config_path: Option<PathBuf>,
    /// What capture does.
    pub capture: tidemark_capture::Options,
    /// Listen here instead of `[daemon] api_listen` (`off`: no API).
    pub api_listen: Option<String>,
    /// How often new-data inputs are polled for commits made by other processes
    /// (default 1 s; this process's own capture notifies at once).
    pub input_poll: Option<Duration>,
    /// Routes served beside the API on its listener (the web console, under
    /// `/console/`: `tidemark-console`, which depends on this crate, not the reverse).
    pub extra_routes: Option<axum::Router>,
    /// The online feature store to serve at `/api/v1/features` (it follows commits
    /// on its own task; the binary starts it, so the endpoint can share it).
    pub features: Option<Arc<tidemark_features::OnlineStore>>,
}

/// The daemon, built and bound, not yet running.
pub struct App {
    config: Arc<Config>,
    wh: Warehouse,
    options: Options,
    scheduler: Scheduler,
    handle: Handle,
    api: Option<(tokio::net::TcpListener, api::Api)>,
    api_addr: Option<SocketAddr>,
    /// TLS for the API: the endpoint's certificate, when `[server]` has one.
    tls: Option<tokio_rustls::TlsAcceptor>,
    ready: Arc<AtomicBool>,
    metrics: tidemark_capture::metrics::Shared,
    env: jobs::Env,
    /// Whether capture has anything to run.
    captures: bool,
}

impl App {
    /// Parse the jobs, open the run store, bind the API. Errors here are the
    /// config's or the environment's (a port taken), and say which.
    pub async fn build(
        config: Config,
        wh: Warehouse,
        options: Options,
        metrics: tidemark_capture::metrics::Shared,
    ) -> Result<App> {
        let config = Arc::new(config);
        let captures = match tidemark_capture::selected(&config, &options.capture) {
            Ok(_) => true,
            Err(e) if config.jobs.is_empty() => return Err(e),
            // A daemon may only run jobs (a warehouse fed by another one).
            Err(_) => false,
        };
        let engine = Arc::new(
            tidemark_query::Engine::open(&wh)
                .await
                .context("opening the warehouse for jobs")?,
        );
        let env = jobs::Env {
            wh: wh.clone(),
            config: Arc::new(RwLock::new(config.clone())),
            environment: options.capture.environment.clone(),
            engine,
        };
        let registry = jobs::registry(&env);
        let specs = parse_jobs(&config.jobs, &registry).map_err(|e| anyhow::anyhow!("{e}"))?;
        let store = Arc::new(store::LakeRunStore::open(&wh)?);
        let inputs = Arc::new(inputs::LakeInputs::new(&wh));
        let holder = holder_id();
        let scheduler = Scheduler::new(
            specs,
            &registry,
            store,
            inputs,
            Arc::new(SystemClock),
            holder.clone(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_poll_interval(options.input_poll.unwrap_or(Duration::from_secs(1)));
        let handle = scheduler.handle();
        // Capture's commits in this process wake new-data jobs at once; the poll is
        // for commits made elsewhere (another daemon's capture, a `tidemark pull`).
        {
            let h = handle.clone();
            metrics
                .lock()
                .expect("metrics lock")
                .on_landed(Arc::new(move |table: &str| h.notify(table)));
        }
        let ready = Arc::new(AtomicBool::new(false));
        let listen = options
            .api_listen
            .clone()
            .unwrap_or_else(|| config.daemon.api_listen.clone());
        let (api, api_addr) = if listen == "off" {
            (None, None)
        } else {
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| {
                    format!("the HTTP API cannot listen on {listen} ([daemon] api_listen); is another daemon running? choose another port or \"off\"")
                })?;
            let addr = listener.local_addr()?;
            let tokens = tokens::Tokens::load(&config.daemon.tokens_file)?;
            if tokens.tokens.is_empty() {
                warn!(tokens_file = %config.daemon.tokens_file.display(), "the HTTP API has no tokens: every request is refused; add one with `tidemark token add NAME`");
            }
            let state = api::Api {
                scheduler: handle.clone(),
                wh: wh.clone(),
                tokens: Arc::new(RwLock::new(tokens)),
                metrics: metrics.clone(),
                ready: ready.clone(),
                // A users file that does not load must not stop capture: the API
                // then takes tokens only, and says why.
                users: Arc::new(RwLock::new(api::Users::load(&config).unwrap_or_else(|e| {
                    warn!(error = %format!("{e:#}"), "the HTTP API accepts tokens only: the users file cannot be read");
                    api::Users::default()
                }))),
                features: options.features.clone(),
            };
            (Some((listener, state)), Some(addr))
        };
        // The API speaks TLS with the endpoint's certificate when it has one: one
        // certificate to rotate, and a token never crosses the network in the clear
        // where SQL passwords would not.
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) if api.is_some() => {
                let c = tidemark_server::tls::server_config(cert, key, vec![b"http/1.1".to_vec()])
                    .context("the HTTP API's TLS ([server] tls_cert, tls_key)")?;
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(c)))
            }
            _ => None,
        };
        info!(holder = %holder, jobs = config.jobs.len(), api = ?api_addr, tls = tls.is_some(), "daemon built");
        Ok(App {
            config,
            wh,
            options,
            scheduler,
            handle,
            api,
            api_addr,
            tls,
            ready,
            metrics,
            env,
            captures,
        })
    }

    /// Where the HTTP API listens, if it does.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api_addr
    }

    /// The scheduler's handle: trigger, list, watch.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Run until `stop` is set. Capture finishes its commits in flight and the
    /// scheduler its runs; with `until_caught_up`, the daemon stops once capture has
    /// caught up (jobs triggered by its last commits still run first).
    pub async fn run_until(self, stop: Arc<AtomicBool>) -> Result<()> {
        let App {
            config,
            wh,
            options,
            scheduler,
            handle,
            api,
            tls,
            ready,
            metrics,
            env,
            captures,
            ..
        } = self;
        let shutdown = CancellationToken::new();
        // The stop flag is what signal handlers and capture share; the token is what
        // the scheduler and the API wait on.
        {
            let (stop, shutdown) = (stop.clone(), shutdown.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) && !shutdown.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                shutdown.cancel();
            });
        }
        let tokens = api.as_ref().map(|(_, s)| s.tokens.clone());
        let users = api.as_ref().map(|(_, s)| s.users.clone());
        let serving = api.map(|(listener, state)| {
            let shutdown = shutdown.clone();
            let extra = options.extra_routes.clone();
            tokio::spawn(async move {
                let app = match extra {
                    Some(extra) => api::router(state).merge(extra),
                    None => api::router(state),
                };
                match tls {
                    Some(tls) => api::serve_tls(listener, app, tls, shutdown).await,
                    None => {
                        // With the client's address (the console's sign-in limits).
                        let app = app.into_make_service_with_connect_info::<SocketAddr>();
                        if let Err(e) = axum::serve(listener, app)
                            .with_graceful_shutdown(async move { shutdown.cancelled().await })
                            .await
                        {
                            error!(error = %e, "the HTTP API stopped");
                        }
                    }
                }
            })
        });
        // Reloaded configs reach capture too (a changed selection of tables).
        let (config_updates, updates) = tokio::sync::watch::channel(config.clone());
        let reloading = tokio::spawn(reload::watch(
            reload::Watched {
                capture: Some(config_updates),
                config_path: options.config_path.clone(),
                tokens_file: config.daemon.tokens_file.clone(),
                tokens,
                users,
                users_file: config.server.users_file.clone(),
                scheduler: handle.clone(),
                env,
            },
            shutdown.clone(),
        ));
        let scheduling = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { scheduler.run_until(shutdown.cancelled_owned()).await })
        };
        ready.store(true, Ordering::SeqCst);
        let captured = if captures {
            let capture = tidemark_capture::Options {
                config_updates: Some(updates),
                ..options.capture.clone()
            };
            let r = tidemark_capture::run(&config, &wh, &capture, stop.clone(), metrics).await;
            if options.capture.until_caught_up {
                settle(&handle, &config).await;
                stop.store(true, Ordering::SeqCst);
            }
            r
        } else {
            if options.capture.until_caught_up {
                stop.store(true, Ordering::SeqCst);
            }
            shutdown.cancelled().await;
            Ok(())
        };
        // Capture ended (asked to stop, caught up, or failed): stop the rest.
        shutdown.cancel();
        let scheduled = scheduling.await.context("the scheduler panicked")?;
        reloading.abort();
        if let Some(s) = serving {
            let _ = s.await;
        }
        if let Err(e) = scheduled {
            bail!("the scheduler stopped: {e}");
        }
        captured
    }
}

/// After a caught-up capture: wait for the runs its last commits trigger (the
/// longest debounce, then until no run is in flight twice in a row), so that
/// `--until-caught-up` ends with the jobs' outputs landed too.
async fn settle(handle: &Handle, config: &Config) {
    // No job, nothing a commit could trigger: a backfill ends as soon as it has
    // landed (the wait below cost every `--until-caught-up` run 2 s).
    if handle.jobs().is_empty() {
        return;
    }
    let debounce = config
        .jobs
        .values()
        .filter_map(|t| t.get("debounce").and_then(|v| v.as_str()))
        .filter_map(|d| humantime::parse_duration(d).ok())
        .max()
        .unwrap_or(Duration::from_secs(1));
    tokio::time::sleep(debounce + Duration::from_millis(500)).await;
    let mut quiet = 0;
    while quiet < 2 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if handle.jobs().iter().all(|j| j.running.is_none()) {
            quiet += 1;
        } else {
            quiet = 0;
        }
    }
}

/// Who this daemon is in run claims: host, process, and a random part (a restarted
/// process with the same pid is another holder).
fn holder_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}
