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
//! grants, masks and row filters ([`access`]) that a [`Reloader`] replaces while
//! sessions stay open, the audit (`tidemark.audit`),
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
pub mod direct;
mod error;
mod handlers;
mod privileges;
mod query;
mod session;
pub mod tls;
mod training;
mod utility;
mod wire_fix;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use deltalake::datafusion::prelude::SessionContext;
use pgwire::api::ConnectionManager;
use tidemark_core::config::RoleConfig;
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

/// The users and roles in force. Replaced whole by [`Reloader::reload`], so a login
/// or a statement always sees users and roles that were checked together.
#[derive(Debug)]
pub(crate) struct Access {
    pub(crate) users: auth::Users,
    pub(crate) policy: access::Policy,
}

/// Why a session may no longer run statements after a reload.
pub(crate) enum Revoked {
    /// The user is no longer in the users file.
    UserRemoved,
    /// The user's role is another one now.
    RoleChanged(String),
    /// The role is no longer defined (a guard: a reload refuses to leave a user with
    /// an undefined role).
    RoleRemoved,
}

impl Revoked {
    /// What the session's client is told.
    pub(crate) fn message(&self, user: &str, role: &str) -> String {
        match self {
            Revoked::UserRemoved => {
                format!("user \"{user}\" was removed from the users file; this session ends")
            }
            Revoked::RoleChanged(now) => format!(
                "user \"{user}\" has role {now} now, not {role}; reconnect to read as {now}"
            ),
            Revoked::RoleRemoved => format!("role {role} no longer exists; reconnect"),
        }
    }
}

impl Access {
    /// The role a session of `user`, logged in with `role`, reads through now.
    pub(crate) fn session_role(
        &self,
        user: &str,
        role: &str,
    ) -> std::result::Result<Arc<access::Role>, Revoked> {
        match self.users.get(user) {
            None => Err(Revoked::UserRemoved),
            Some((now, _)) if now != role => Err(Revoked::RoleChanged(now.clone())),
            Some(_) => self.policy.role(role).ok_or(Revoked::RoleRemoved),
        }
    }

    /// What a server refuses to start with (and a reload to swap in): a user whose
    /// role is not defined, a mask or row filter that does not apply.
    async fn validate(&self, engine: &Engine, base: &SessionContext) -> Result<()> {
        for (name, role) in self.users.roles() {
            if self.policy.role(role).is_none() {
                return Err(Error::Config {
                    message: format!(
                        "user {name} has role {role:?}, which [server.roles] does not define (roles: {}); define it or change the user's role with `tidemark user add {name} --role ROLE`",
                        self.policy.names().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        self.policy.check(engine, base).await
    }
}

/// The users and roles in force, shared by the server and every session.
#[derive(Debug)]
pub(crate) struct LiveAccess(RwLock<Arc<Access>>);

impl LiveAccess {
    fn new(access: Access) -> Self {
        Self(RwLock::new(Arc::new(access)))
    }

    /// The users and roles in force now.
    pub(crate) fn get(&self) -> Arc<Access> {
        // A panic while holding the lock cannot leave a half-written Arc behind.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, access: Arc<Access>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = access;
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) engine: Arc<Engine>,
    /// The engine's session with pg_catalog and the PostgreSQL functions set up once;
    /// each connection starts from a copy of its state.
    pub(crate) base: deltalake::datafusion::prelude::SessionContext,
    /// The users and roles in force (see [`Reloader`]).
    pub(crate) access: Arc<LiveAccess>,
    /// One reload at a time: each checks and swaps as one step.
    reloading: tokio::sync::Mutex<()>,
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
    /// The online feature store, served as schema `features` (see
    /// [`Server::set_features`]).
    features: RwLock<Option<Arc<dyn access::FeatureSource>>>,
}

impl Shared {
    /// What a [`Server`] and a [`direct::Gateway`] both start from: the users and
    /// roles loaded and checked, pg_catalog set up, `tidemark.audit` open.
    async fn open(
        engine: Arc<Engine>,
        wh: &tidemark_lake::Warehouse,
        opts: &Options,
    ) -> Result<Arc<Self>> {
        let users = auth::Users::load(&opts.users_file)?;
        if users.is_empty() {
            warn!(users_file = %opts.users_file.display(), "no users: nobody can log in; add one with `tidemark user add NAME`");
        }
        let access = Access {
            users,
            policy: opts.policy.clone(),
        };
        let base = catalog::base_context(&engine)?;
        compat::install(&base);
        let policy_ctx = SessionContext::new();
        access.validate(&engine, &base).await?;
        let audit = audit::AuditLog::start(wh, &engine, &base, opts.audit_flush).await?;
        Ok(Arc::new(Shared {
            engine,
            base,
            access: Arc::new(LiveAccess::new(access)),
            reloading: tokio::sync::Mutex::new(()),
            policy_ctx,
            pg_static: catalog::static_tables()?,
            query_memory: opts.query_memory,
            audit,
            require_tls: opts.require_tls,
            statement_timeout: opts.statement_timeout,
            fake_salt_secret: rand::random(),
            connections: Arc::new(ConnectionManager::new()),
            pids: Default::default(),
            features: RwLock::new(None),
        }))
    }

    /// The online feature store, if one is served.
    pub(crate) fn features(&self) -> Option<Arc<dyn access::FeatureSource>> {
        self.features
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
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
        let shared = Shared::open(engine, wh, &opts).await?;
        let listener = TcpListener::bind(opts.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: opts.listen,
                source,
            })?;
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

    /// A handle that replaces the users and roles of this server while it runs (see
    /// [`Reloader::reload`]); take it before [`Self::run_until`].
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: self.shared.clone(),
        }
    }

    /// Serve the online feature store as schema `features` to sessions opened from
    /// now on (`SELECT * FROM features.v WHERE key = $1`), under the same grants
    /// and masks as the views' sources.
    pub fn set_features(&self, features: Arc<dyn access::FeatureSource>) {
        if self
            .shared
            .engine
            .landed_names()
            .iter()
            .any(|n| n.schema == access::FEATURES)
        {
            warn!("the warehouse has a database named features; its tables are served under that name, and the online feature views are not");
        }
        *self
            .shared
            .features
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(features);
    }

    /// In-process sessions over this server's users, roles and audit (the web
    /// console beside `tidemark run --serve`): one audit writer, one reload for both.
    pub fn gateway(&self) -> direct::Gateway {
        direct::Gateway::new(self.shared.clone())
    }

    /// Serve until `shutdown` completes; connections in progress are dropped then.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let addr = self.local_addr()?;
        info!(%addr, tls = self.tls.is_some(), require_tls = self.shared.require_tls, users = self.shared.access.get().users.len(), "serving PostgreSQL protocol");
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

/// Replaces the users and roles of a running [`Server`] (`tidemark serve` calls it on
/// SIGHUP and when the config or users file changes). Cheap to clone.
///
/// Sessions keep running across a reload and read through their role as it is
/// now from their next statement on: new grants, masks and row filters apply to
/// them, removed ones no longer do. A session whose user was removed from the
/// users file, or whose user now has another role, is ended at its next statement
/// with a message saying why. New logins check the new users file.
#[derive(Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Users in force now.
    pub users: usize,
    /// Roles in force now (the built-in `admin` included).
    pub roles: usize,
    /// Users that were not there before.
    pub users_added: Vec<String>,
    /// Users that are gone: their new logins fail, their open sessions end at their
    /// next statement.
    pub users_removed: Vec<String>,
    /// Users whose role or password changed. Open sessions of a user whose role
    /// changed end at their next statement; a changed password applies to new logins.
    pub users_changed: Vec<String>,
    /// Roles that were not there before.
    pub roles_added: Vec<String>,
    /// Roles that are gone.
    pub roles_removed: Vec<String>,
    /// Roles whose grants, masks, row filters or admin flag changed.
    pub roles_changed: Vec<String>,
}

impl ReloadSummary {
    fn between(old: &Access, new: &Access) -> Self {
        fn diff<'a, V: PartialEq + 'a>(
            old: impl Iterator<Item = (&'a str, V)>,
            new: impl Iterator<Item = (&'a str, V)>,
        ) -> (Vec<String>, Vec<String>, Vec<String>) {
            let old: BTreeMap<&str, V> = old.collect();
            let new: BTreeMap<&str, V> = new.collect();
            let added = new.keys().filter(|k| !old.contains_key(*k));
            let removed = old.keys().filter(|k| !new.contains_key(*k));
            let changed = new
                .iter()
                .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v));
            (
                added.map(|k| k.to_string()).collect(),
                removed.map(|k| k.to_string()).collect(),
                changed.map(|(k, _)| k.to_string()).collect(),
            )
        }
        let (users_added, users_removed, users_changed) =
            diff(old.users.entries(), new.users.entries());
        let (roles_added, roles_removed, roles_changed) =
            diff(old.policy.roles(), new.policy.roles());
        Self {
            users: new.users.len(),
            roles: new.policy.names().count(),
            users_added,
            users_removed,
            users_changed,
            roles_added,
            roles_removed,
            roles_changed,
        }
    }

    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        !(self.users_added.is_empty()
            && self.users_removed.is_empty()
            && self.users_changed.is_empty()
            && self.roles_added.is_empty()
            && self.roles_removed.is_empty()
            && self.roles_changed.is_empty())
    }
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} users, {} roles", self.users, self.roles)?;
        if !self.changed() {
            return write!(f, "; nothing changed");
        }
        for (what, names) in [
            ("users added", &self.users_added),
            ("users removed", &self.users_removed),
            ("users changed", &self.users_changed),
            ("roles added", &self.roles_added),
            ("roles removed", &self.roles_removed),
            ("roles changed", &self.roles_changed),
        ] {
            if !names.is_empty() {
                write!(f, "; {what}: {}", names.join(", "))?;
            }
        }
        Ok(())
    }
}

impl Reloader {
    /// Load the users file and compile `roles` (`[server.roles]`), check them as
    /// [`Server::bind`] does (every user's role is defined, every mask and row filter
    /// applies to the tables served), and only then put both in force at once. On
    /// any error nothing changes: the error says what is wrong, and the users and
    /// roles in force before stay in force.
    pub async fn reload(
        &self,
        users_file: &Path,
        roles: &BTreeMap<String, RoleConfig>,
    ) -> Result<ReloadSummary> {
        let refused = |e: Error| Error::Reload {
            message: e.to_string(),
        };
        let shared = &self.shared;
        let _one_at_a_time = shared.reloading.lock().await;
        let new = Access {
            policy: access::Policy::from_config(roles).map_err(refused)?,
            users: auth::Users::load(users_file).map_err(refused)?,
        };
        new.validate(&shared.engine, &shared.base)
            .await
            .map_err(refused)?;
        if new.users.is_empty() {
            warn!(users_file = %users_file.display(), "no users: nobody can log in; add one with `tidemark user add NAME`");
        }
        let old = shared.access.get();
        let summary = ReloadSummary::between(&old, &new);
        shared.access.set(Arc::new(new));
        Ok(summary)
    }
}
