//! Changes without a restart: on SIGHUP, and whenever the config file or the
//! tokens file changes on disk (checked each second: polling works the same on
//! every filesystem, and a second is well within what an operator waits for).
//!
//! * The config: its jobs are parsed and validated through the registered kinds;
//!   if anything is wrong the new config is refused, the reason logged, and the old
//!   jobs stay in force. Otherwise the scheduler takes the new jobs: runs in flight
//!   finish, removed jobs stop, a changed job is un-paused.
//! * The tokens file: swapped whole, so a request sees the old or the new set.
//! * The endpoint's users file (users may log in to the API too): likewise.
//!
//! Not reloaded here: capture's sources (a changed selection takes a restart of
//! `tidemark run`, which resumes exactly where it stopped).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tidemark_core::config::Config;
use tidemark_scheduler::{parse_jobs, Handle};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::jobs::{registry, Env};
use crate::tokens::Tokens;

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
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Watch until `shutdown`.
pub async fn watch(w: Watched, shutdown: CancellationToken) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen_config = w.config_path.as_deref().and_then(modified);
    let mut seen_tokens = modified(&w.tokens_file);
    let mut seen_users = modified(&w.users_file);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let forced = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hangup => true,
            _ = tokio::time::sleep(Duration::from_secs(1)) => false,
        };
        if forced {
            info!("SIGHUP: reading the config and tokens again");
        }
        let mut config_changed = false;
        if let Some(path) = &w.config_path {
            let now = modified(path);
            if forced || now != seen_config {
                config_changed = true;
                seen_config = now;
                match reload_config(path, &w) {
                    Ok(n) => info!(config = %path.display(), jobs = n, "config reloaded"),
                    Err(e) => {
                        error!(config = %path.display(), error = %e, "the changed config is refused; the one in force stays")
                    }
                }
            }
        }
        // The API's view of the endpoint's users: a changed users file or config
        // (admin roles) is read again.
        let users_now = modified(&w.users_file);
        if forced || users_now != seen_users || config_changed {
            seen_users = users_now;
            if let Some(users) = &w.users {
                match crate::api::Users::load(&w.env.config()) {
                    Ok(u) => *users.write().expect("users lock") = u,
                    Err(e) => {
                        error!(error = %e, "the changed users file is refused for the HTTP API; the users in force stay")
                    }
                }
            }
        }
        let now = modified(&w.tokens_file);
        if forced || now != seen_tokens {
            seen_tokens = now;
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
    let old = std::mem::replace(&mut *w.env.config.write().expect("config lock"), config);
    if let Err(e) = w.scheduler.replace(specs) {
        *w.env.config.write().expect("config lock") = old;
        anyhow::bail!("{e}");
    }
    Ok(n)
}
