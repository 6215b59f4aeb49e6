//! # tidemark-console
//!
//! The web console (issue 20): a place to look at the warehouse from a browser, with
//! nothing to install and no service of its own. It is an axum [`Router`] under
//! `/console/`, served by `tidemark console` on its own listener and merged into the
//! daemon's HTTP API by `tidemark run` when `[console] daemon = true`.
//!
//! ```text
//!  browser ──► /console/            index.html, app.js, app.css (rust-embed, in the binary)
//!              /console/api/login    password ─► tidemark-server Gateway::login (SCRAM verifier)
//!              /console/api/catalog  the role's catalog ─┐
//!              /console/api/queries  DirectSession::query ├─► tidemark-server: same users, roles,
//!              /console/api/csv      (paged cursors)      │   masks, row filters, audit as psql
//!              /console/api/health   tidemark-daemon status::tables, filtered by the role;
//!                                    the daemon's jobs (admins)
//!              /console/api/charts, /dashboards   saved in tidemark.console_* (Delta),
//!                                    their data run as the viewer (as of an instant)
//!              /console/api/models   tidemark-models Project (the DAG, tests) + each
//!                                    model table's last build commit, filtered by the role
//!              /console/api/features [features.*] the role may read (feature_access);
//!                                    the online store's counts when it runs in process
//! ```
//!
//! What is decided here and nowhere else: HTTP sessions (an HttpOnly, SameSite=Strict
//! cookie, Secure under TLS; [`auth`]), the CSRF token every state-changing request
//! carries, login rate limiting, the Content-Security-Policy and the assets
//! ([`assets`]), and how a result reaches the browser: a page at a time from a
//! cursor held here, never the whole result ([`query`]). What a user may read is
//! decided by tidemark-server's access code only, through
//! [`tidemark_server::direct`]: the console has no grant logic of its own.

#![warn(missing_docs)]

pub mod assets;
pub mod auth;
mod cache;
mod catalog;
mod error;
mod features;
mod health;
mod models;
pub mod query;
mod saved;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{delete, get, post};
use axum::Router;
use tidemark_lake::Warehouse;
use tidemark_server::direct::Gateway;

pub use error::ConsoleError;

/// Where the console lives under a server's root.
pub const BASE: &str = "/console";

/// How the console behaves (from `[console]` in tidemark.toml).
#[derive(Debug, Clone)]
pub struct Options {
    /// Served over TLS: session cookies get `Secure`.
    pub secure_cookies: bool,
    /// A session unused for this long is signed out.
    pub session_idle: Duration,
    /// Where query work runs (planning and producing pages). `tidemark run` passes
    /// the SQL endpoint's runtime, so console queries do not take capture's threads;
    /// `None`: the runtime serving the request.
    pub runtime: Option<tokio::runtime::Handle>,
    /// The SQL models the Models page shows (`[models]`), read again at each
    /// request so an edited model shows at once; `None`: no models directory.
    pub models: Option<tidemark_core::config::ModelsConfig>,
    /// The environment served, whose `[models.env.*]` vars the models render with.
    pub environment: String,
    /// The feature views the Features page lists (`[features.*]`).
    pub features: tidemark_features::FeatureViews,
    /// The online feature store, when one runs in this process (`tidemark run`):
    /// the Features page shows its entity counts and freshness.
    pub online: Option<Arc<tidemark_features::OnlineStore>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            session_idle: Duration::from_secs(60 * 60),
            runtime: None,
            models: None,
            environment: "dev".into(),
            features: Default::default(),
            online: None,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    gateway: Gateway,
    wh: Warehouse,
    options: Options,
    sessions: auth::Sessions,
    limiter: auth::Limiter,
    /// The daemon's scheduler, once `tidemark run` has built it (see
    /// [`Console::attach_jobs`]); never set under `tidemark console` alone.
    jobs: std::sync::OnceLock<tidemark_daemon::SchedulerHandle>,
    /// Chart results kept while their tables do not change.
    charts: cache::Cache,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// A console over `gateway`'s users, roles and audit, reading table status from
    /// `wh`.
    pub fn new(gateway: Gateway, wh: Warehouse, options: Options) -> Self {
        Self {
            inner: Arc::new(Inner {
                gateway,
                wh,
                sessions: auth::Sessions::new(options.session_idle),
                limiter: auth::Limiter::default(),
                jobs: std::sync::OnceLock::new(),
                charts: cache::Cache::default(),
                options,
            }),
        }
    }

    /// Show the daemon's jobs on the health page, with a trigger for admins: the
    /// daemon's own scheduler, in process (`tidemark run` builds it after the
    /// console's routes). Later calls are ignored.
    pub fn attach_jobs(&self, handle: tidemark_daemon::SchedulerHandle) {
        let _ = self.inner.jobs.set(handle);
    }

    /// The console's routes, all under [`BASE`], with the security headers on every
    /// answer. Merge it into another router or serve it as it is (with
    /// `into_make_service_with_connect_info::<SocketAddr>()`, so that login rate
    /// limiting knows the client's address).
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/login", post(auth::login))
            .route("/logout", post(auth::logout))
            .route("/session", get(auth::session))
            .route("/catalog", get(catalog::catalog))
            .route("/health", get(health::health))
            .route("/health/throughput", get(health::throughput))
            .route("/health/compactions", get(health::compactions))
            .route("/jobs/{name}/runs", post(health::trigger))
            .route("/models", get(models::models))
            .route("/features", get(features::features))
            .route("/charts", get(saved::list_charts).post(saved::save_chart))
            .route("/charts/{id}", delete(saved::delete_chart))
            .route("/charts/{id}/data", post(saved::chart_data))
            .route("/chart-data", post(saved::adhoc_data))
            .route(
                "/dashboards",
                get(saved::list_dashboards).post(saved::save_dashboard),
            )
            .route(
                "/dashboards/{id}",
                get(saved::dashboard).delete(saved::delete_dashboard),
            )
            .route("/queries", post(query::start))
            .route("/queries/{id}/next", post(query::next))
            .route("/queries/{id}", delete(query::close))
            .route("/csv", post(query::csv))
            .layer(axum::middleware::map_response(assets::no_store));
        Router::new()
            .route("/", get(assets::to_console))
            .route(BASE, get(assets::to_console))
            .route(&format!("{BASE}/"), get(assets::index))
            .route(&format!("{BASE}/assets/{{file}}"), get(assets::asset))
            .route(
                &format!("{BASE}/assets/vendor/{{lib}}/{{file}}"),
                get(assets::vendor),
            )
            .nest(&format!("{BASE}/api"), api)
            .layer(axum::middleware::map_response(assets::security_headers))
            .with_state(self.clone())
    }

    /// Run query work on the configured runtime (see [`Options::runtime`]), stopping
    /// it when the caller stops waiting (a closed browser tab, a cancel).
    pub(crate) async fn exec<F>(&self, work: F) -> Result<F::Output, ConsoleError>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = match &self.inner.options.runtime {
            Some(rt) => rt.spawn(work),
            None => tokio::spawn(work),
        };
        AbortOnDrop(handle)
            .await
            .map_err(|e| ConsoleError::Internal(format!("query task: {e}")))
    }
}

/// A spawned task, aborted when whoever waits for it goes away (dropping a tokio
/// `JoinHandle` alone would leave the query running).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A random password (144 bits, URL-safe base64) for a generated user: the one
/// `tidemark demo` prints with the console's address.
pub fn random_password() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>())
}

/// Pick up commits landed since the engine was opened, every `every`, until the
/// returned task is aborted (what the PostgreSQL endpoint does for itself; a console
/// running alone needs its own).
pub fn keep_fresh(
    engine: Arc<tidemark_query::Engine>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = engine.refresh().await {
                tracing::warn!(error = %e, "refreshing the console's tables failed; serving the last good state");
            }
        }
    })
}
