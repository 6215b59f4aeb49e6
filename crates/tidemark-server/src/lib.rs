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
//! and the statement timeout that also covers streaming rows.
//!
//! Each connection plans on its own DataFusion `SessionContext` sharing the engine's
//! catalog, so a session's `SET` or functions never reach another session.

#![warn(missing_docs)]

pub mod auth;
mod catalog;
mod compat;
mod error;
mod handlers;
mod query;
mod session;
mod tls;
mod utility;

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
    pub(crate) require_tls: bool,
    pub(crate) statement_timeout: Option<Duration>,
    /// Keys the fake salt shown for unknown users, so it is stable within a run but
    /// unpredictable.
    pub(crate) fake_salt_secret: [u8; 32],
    pub(crate) connections: Arc<ConnectionManager>,
    pub(crate) pids: pgwire::api::RandomPidSecretKeyGenerator,
}

/// A bound endpoint, ready to serve.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    slots: Arc<Semaphore>,
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
    /// Load the users and the TLS material, set up pg_catalog and bind. Any problem
    /// is an error here, before a client could be served in a weaker mode.
    pub async fn bind(engine: Arc<Engine>, opts: Options) -> Result<Self> {
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
        let base = catalog::base_context(&engine)?;
        compat::install(&base)?;
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
        tokio::pin!(shutdown);
        loop {
            let (socket, peer) = tokio::select! {
                _ = &mut shutdown => return Ok(()),
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
