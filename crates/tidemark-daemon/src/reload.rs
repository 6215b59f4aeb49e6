//! Changes without a restart: on SIGHUP, and whenever the config file, the tokens
//! file or the users file changes on disk ([`crate::watch`]).
//!
//! * The config: its jobs are parsed and validated through the registered kinds;
//!   if anything is wrong the new config is refused, the reason logged, and the old
//!   jobs stay in force. Otherwise the scheduler takes the new jobs: runs in flight
//!   finish, removed jobs stop, a changed job is un-paused.
//! * The tokens file: swapped whole, so a request sees the old or the new set.
//! * The endpoint's users file (users may log in to the API too): likewise.
//!
//! * Capture: a config that passed goes to the running capture too, where a binlog
//!   source follows a changed selection of its tables (`databases`, `include`,
//!   `exclude`) without stopping.
//!
//! Not reloaded: a source or stream added or removed, a source's address or
//! credentials, a stream's settings. Those take a restart of `tidemark run`, which
//! resumes exactly where it stopped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tidemark_core::config::Config;
use tidemark_scheduler::{parse_jobs, Handle};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::jobs::{registry, Env};
use crate::tokens::Tokens;
use crate::watch::{Change, Watcher};

/// What the watcher reloads.
pub struct Watched {
    /// The config file (`None`: only the tokens are watched).
    pub config_path: Option<PathBuf>,
    /// The tokens file.
    pub tokens_file: PathBuf,
    /// The API's tokens, when it serves.
    pub tokens: Option<Arc<RwLock<Tokens>>>,
    /// The endpoint's users the API accepts, when it serves.
    pub users: Option<Arc<RwLock<crate::api::Users>>>,
    /// The users file.
    pub users_file: PathBuf,
    /// Where new jobs go.
    pub scheduler: Handle,
    /// What jobs are built against (its config is replaced by the new one).
    pub env: Env,
    /// Running capture, told of each config that passed.
    pub capture: Option<tokio::sync::watch::Sender<Arc<Config>>>,
}

/// Watch until `shutdown`.
pub async fn watch(w: Watched, shutdown: CancellationToken) {
    const CONFIG: usize = 0;
    const TOKENS: usize = 1;
    const USERS: usize = 2;
    let config_path = w.config_path.clone().unwrap_or_default();
    let mut files = Watcher::new(vec![
        config_path.clone(),
        w.tokens_file.clone(),
        w.users_file.clone(),
    ]);
    loop {
        let change = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = files.next() => c,
        };
        if change == Change::Hangup {
            info!("SIGHUP: reading the config, tokens and users again");
        }
        let config_changed = w.config_path.is_some() && change.touches(CONFIG);
        if config_changed {
            match reload_config(&config_path, &w) {
                Ok(n) => info!(config = %config_path.display(), jobs = n, "config reloaded"),
                Err(e) => {
                    error!(config = %config_path.display(), error = %e, "the changed config is refused; the one in force stays")
                }
            }
        }
        if change.touches(TOKENS) {
            if let Some(tokens) = &w.tokens {
                match Tokens::load(&w.tokens_file) {
                    Ok(t) => {
                        let n = t.tokens.len();
                        *tokens.write().expect("tokens lock") = t;
                        info!(tokens = n, "API tokens reloaded");
                    }
                    Err(e) => {
                        error!(error = %e, "the changed tokens file is refused; the tokens in force stay")
                    }
                }
            }
        }
        // The API's view of the endpoint's users: a changed users file, or a config
        // that changes the admin roles.
        if change.touches(USERS) || config_changed {
            if let Some(users) = &w.users {
                match crate::api::Users::load(&w.env.config()) {
                    Ok(u) => *users.write().expect("users lock") = u,
                    Err(e) => {
                        error!(error = %e, "the changed users file is refused for the HTTP API; the users in force stay")
                    }
                }
            }
        }
    }
}

/// Parse, validate and apply the config at `path`; the number of jobs in force.
fn reload_config(path: &Path, w: &Watched) -> anyhow::Result<usize> {
    let config = Arc::new(Config::from_file(path)?);
    // Validated against the new config before anything changes.
    let trial = Env {
        config: Arc::new(RwLock::new(config.clone())),
        ..w.env.clone()
    };
    let specs = parse_jobs(&config.jobs, &registry(&trial)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let n = specs.len();
    let old = std::mem::replace(
        &mut *w.env.config.write().expect("config lock"),
        config.clone(),
    );
    if let Err(e) = w.scheduler.replace(specs) {
        *w.env.config.write().expect("config lock") = old;
        anyhow::bail!("{e}");
    }
    if let Some(capture) = &w.capture {
        // Capture may have ended (caught up); then nobody listens, which is fine.
        let _ = capture.send(config);
    }
    Ok(n)
}
