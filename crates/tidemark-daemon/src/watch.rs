//! Waiting for a reason to read files again: SIGHUP, or one of the watched files
//! changing. Files are polled each second (modification time and size): polling
//! behaves the same on every filesystem, including the network mounts and
//! bind-mounted secrets where change notifications go missing, and a second is well
//! within what an operator waits for. A file that is still changing (an editor
//! saving in place) is read once it has settled, never half-written.
//!
//! Used by the daemon's reload (config, tokens, users) and by the PostgreSQL
//! endpoint's (config, users).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// One look at a file: modification time and size, or absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp(Option<(SystemTime, u64)>);

impl Stamp {
    /// The file at `p` now.
    pub fn of(p: &Path) -> Self {
        Self(
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len()))),
        )
    }
}

/// Why [`Watcher::next`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// SIGHUP: read everything again.
    Hangup,
    /// These watched files (indices into the paths) changed.
    Files(Vec<usize>),
}

impl Change {
    /// Whether the file at `index` is to be read again.
    pub fn touches(&self, index: usize) -> bool {
        match self {
            Change::Hangup => true,
            Change::Files(f) => f.contains(&index),
        }
    }
}

/// Watches a set of files and SIGHUP.
#[derive(Debug)]
pub struct Watcher {
    paths: Vec<PathBuf>,
    seen: Vec<Stamp>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Watcher {
    /// Watch `paths` from their state now. Without a SIGHUP handler (it could not
    /// be installed), only file changes count.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        let seen = paths.iter().map(|p| Stamp::of(p)).collect();
        Self {
            paths,
            seen,
            #[cfg(unix)]
            hup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// Watch another file at `index` (a config that now names another users file),
    /// from its state now.
    pub fn replace(&mut self, index: usize, path: PathBuf) {
        if self.paths[index] != path {
            self.seen[index] = Stamp::of(&path);
            self.paths[index] = path;
        }
    }

    /// Wait for SIGHUP or a settled change of a watched file.
    pub async fn next(&mut self) -> Change {
        loop {
            #[cfg(unix)]
            let hangup = async {
                match self.hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            let forced = tokio::select! {
                _ = hangup => true,
                _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            };
            let now: Vec<Stamp> = self.paths.iter().map(|p| Stamp::of(p)).collect();
            if forced {
                self.seen = now;
                return Change::Hangup;
            }
            if now == self.seen {
                continue;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if self.paths.iter().map(|p| Stamp::of(p)).collect::<Vec<_>>() != now {
                continue;
            }
            let changed = (0..now.len()).filter(|&i| now[i] != self.seen[i]).collect();
            self.seen = now;
            return Change::Files(changed);
        }
    }
}
