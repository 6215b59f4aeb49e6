//! # tidemark-server
//!
//! The PostgreSQL-wire endpoint (`tidemark serve`): analysts connect psql, JDBC,
//! psycopg or tokio-postgres to the warehouse and run the same SQL, time travel
//! included, as `tidemark sql`.
//!
//! ```text
//!   client ──TLS (rustls, ring)──► listener ──► ScramStartup ──► QueryHandler ──► tidemark-query Engine
//!                                  (max_connections)  (users file:      (simple + extended       (parse, time-travel
//!                                                      SCRAM verifiers)  protocol, SET/SHOW,       rewrite, plan; one
//!                                                                        BEGIN/COMMIT no-ops)      SessionContext per
//!                                                                                                  connection)
//! ```
//!
//! Built from the pieces of the datafusion-postgres project rather than on its
//! `serve()`, which accepts any password and falls back to plaintext when TLS fails
//! (docs/research/postgres-endpoint.md has the whole reasoning):
//! * [`pgwire`] speaks the protocol (startup, SSL negotiation, extended-query state);
//! * [`arrow_pg`] encodes Arrow batches as text or binary rows and decodes bound
//!   parameters;
//! * [`datafusion_pg_catalog`] provides `pg_catalog` (so `\dt`, `\d t`, JDBC metadata
//!   work) and rewrites the catalog queries clients send into ones DataFusion runs.
//!
//! What is ours: SCRAM-SHA-256 with PostgreSQL-format verifiers (the server keeps
//! only StoredKey/ServerKey, see [`auth::scram`]), TLS that is a startup error when
//! broken, the read-only rules (DDL/DML get SQLSTATE 25006), per-session settings,
//! the statement timeout and cancel that also cover streaming rows, roles with
//! grants, masks and row filters ([`access`]), the audit (`tidemark.audit`),
//! `COPY … TO STDOUT`, and the engine refresh that serves newly landed commits.
//!
//! Each connection plans on its own DataFusion `SessionContext`: the engine's catalog
//! seen through its role's grants (with a pg_catalog over that same view), its own
//! settings and functions, its own memory pool. Nothing a session does reaches
//! another.

#![warn(missing_docs)]

pub mod access;
mod audit;
pub mod auth;
mod catalog;
mod compat;
mod copy;
mod error;
mod handlers;
mod privileges;
mod query;
mod session;
mod tls;
mod utility;
mod wire_fix;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pgwire::api::ConnectionManager;
use tidemark_query::Engine;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{info, warn};

pub use error::{Error, Result};

/// The endpoint's settings (from `[server]` in tidemark.toml).
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to listen on; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// PEM certificate chain and private key: TLS is offered when set.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Refuse clients that do not use TLS.
    pub require_tls: bool,
    /// The users file with SCRAM verifiers.
    pub users_file: PathBuf,
    /// The longest a statement may run; `None` for no limit. A session's
    /// `SET statement_timeout` can only lower it.
    pub statement_timeout: Option<Duration>,
    /// Connections served at once.
    pub max_connections: usize,
    /// Memory one statement may use (bytes); `None` for no limit.
    pub query_memory: Option<usize>,
    /// How long audit records wait before they are committed to `tidemark.audit`.
    pub audit_flush: Duration,
    /// How often to pick up newly landed commits; `None`: tables as of startup.
    pub refresh: Option<Duration>,
    /// Roles and what they read.
    pub policy: access::Policy,
}

impl Options {
    /// The options a `[server]` config section describes.
    pub fn from_config(c: &tidemark_core::config::ServerConfig) -> Result<Self> {
        let listen = c.listen.parse().map_err(|e| Error::Config {
            message: format!("server.listen = {:?} is not host:port ({e})", c.listen),
        })?;
        Ok(Self {
            listen,
            tls: c.tls_cert.clone().zip(c.tls_key.clone()),
            require_tls: c.require_tls,
            users_file: c.users_file.clone(),
            statement_timeout: (c.statement_timeout_ms > 0)
                .then(|| Duration::from_millis(c.statement_timeout_ms)),
            max_connections: c.max_connections,
            query_memory: (c.query_memory_mb > 0).then(|| {
                usize::try_from(c.query_memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
            }),
            audit_flush: Duration::from_millis(c.audit_flush_ms.max(10)),
            refresh: (c.refresh_interval_ms > 0)
                .then(|| Duration::from_millis(c.refresh_interval_ms)),
            policy: access::Policy::from_config(&c.roles)?,
        })
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) engine: Arc<Engine>,
    /// The engine's session with pg_catalog and the PostgreSQL functions set up once;
    /// each connection starts from a copy of its state.
    pub(crate) base: deltalake::datafusion::prelude::SessionContext,
    pub(crate) users: auth::Users,
    pub(crate) policy: access::Policy,
    /// Parses the policy's mask and filter expressions.
    pub(crate) policy_ctx: deltalake::datafusion::prelude::SessionContext,
    pub(crate) pg_static: Arc<datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables>,
    pub(crate) query_memory: Option<usize>,
    pub(crate) audit: audit::AuditLog,
    pub(crate) require_tls: bool,
    pub(crate) statement_timeout: Option<Duration>,
    /// Keys the fake salt shown for unknown users, so it is stable within a run but
    /// unpredictable.
    pub(crate) fake_salt_secret: [u8; 32],
    pub(crate) connections: Arc<ConnectionManager>,
    pub(crate) pids: pgwire::api::RandomPidSecretKeyGenerator,
}

/// Stops a background task when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A bound endpoint, ready to serve.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    slots: Arc<Semaphore>,
    refresh: Option<Duration>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listen", &self.listener.local_addr().ok())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Load the users, the roles and the TLS material, set up pg_catalog, open the
    /// audit table and bind. Any problem is an error here, before a client could be
    /// served in a weaker mode. `wh` is where the audit table lives.
    pub async fn bind(
        engine: Arc<Engine>,
        wh: &tidemark_lake::Warehouse,
        opts: Options,
    ) -> Result<Self> {
        let tls = match &opts.tls {
            Some((cert, key)) => Some(tls::acceptor(cert, key)?),
            None if opts.require_tls => {
                return Err(Error::Config {
                    message: "require_tls needs tls_cert and tls_key".into(),
                })
            }
            None => None,
        };
        let users = auth::Users::load(&opts.users_file)?;
        if users.is_empty() {
            warn!(users_file = %opts.users_file.display(), "no users: nobody can log in; add one with `tidemark user add NAME`");
        }
        for (name, role) in users.roles() {
            if opts.policy.role(role).is_none() {
                return Err(Error::Config {
                    message: format!(
                        "user {name} has role {role:?}, which [server.roles] does not define (roles: {}); define it or change the user's role with `tidemark user add {name} --role ROLE`",
                        opts.policy.names().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        let base = catalog::base_context(&engine)?;
        compat::install(&base);
        let policy_ctx = deltalake::datafusion::prelude::SessionContext::new();
        opts.policy.check(&engine, &base).await?;
        let audit = audit::AuditLog::start(wh, &engine, &base, opts.audit_flush).await?;
        let listener = TcpListener::bind(opts.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: opts.listen,
                source,
            })?;
        let shared = Arc::new(Shared {
            engine,
            base,
            users,
            policy: opts.policy,
            policy_ctx,
            pg_static: catalog::static_tables()?,
            query_memory: opts.query_memory,
            audit,
            require_tls: opts.require_tls,
            statement_timeout: opts.statement_timeout,
            fake_salt_secret: rand::random(),
            connections: Arc::new(ConnectionManager::new()),
            pids: Default::default(),
        });
        Ok(Self {
            listener,
            shared,
            tls,
            slots: Arc::new(Semaphore::new(opts.max_connections)),
            refresh: opts.refresh,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|source| Error::Io {
            what: "listening socket".into(),
            source,
        })
    }

    /// Serve until `shutdown` completes; connections in progress are dropped then.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let addr = self.local_addr()?;
        info!(%addr, tls = self.tls.is_some(), require_tls = self.shared.require_tls, users = self.shared.users.len(), "serving PostgreSQL protocol");
        let handlers = handlers::Handlers::new(self.shared.clone());
        let _refresher = self.refresh.map(|every| {
            let engine = self.shared.engine.clone();
            AbortOnDrop(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match engine.refresh().await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(tables = n, "picked up newly landed commits"),
                        // Served as before; tried again next time.
                        Err(e) => warn!(error = %e, "refreshing the served tables failed; serving the last good state"),
                    }
                }
            }))
        });
        tokio::pin!(shutdown);
        loop {
            let (socket, peer) = tokio::select! {
                _ = &mut shutdown => {
                    // Statements answered so far reach tidemark.audit before exit.
                    self.shared.audit.close().await;
                    return Ok(());
                }
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: keep serving the
                        // connections we have rather than exit.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let permit = self.slots.clone().try_acquire_owned().ok();
            let handlers = if permit.is_some() {
                handlers.clone()
            } else {
                warn!(%peer, "connection refused: max_connections reached");
                handlers.refusing()
            };
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
    }
}
