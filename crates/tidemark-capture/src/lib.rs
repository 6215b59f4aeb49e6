//! # tidemark-capture
//!
//! Change capture as a library: what `tidemark run` (and, through it, the daemon)
//! starts, stops and watches. Every pipeline walks the same way:
//!
//! ```text
//! source ──► change batch + position ──► TableWriter commit (data and position in
//!                                        one Delta commit) ──► compaction due?
//! ```
//!
//! * [`landing`]: the one landing loop every source runs through — flush policy,
//!   barriers (schema changes, truncates, rebalances, reconnects), commits and
//!   their metrics, the compaction trigger ([`landing::compaction`]) — and the one
//!   way a landed table evolves to a changed source definition
//!   ([`landing::evolve`]). A source plugs in through [`landing::Source`].
//! * [`sources`]: one file per kind of source.
//!   - [`sources::binlog`]: the MySQL binlog (snapshotting first what was never
//!     landed); DDL events are its barriers;
//!   - [`sources::events`]: Debezium / AWS DMS change events, from
//!     [`sources::kafka`] (a Kafka consumer group, or JSON-lines files), with dead
//!     letters and scale-out across workers;
//!   - [`sources::snapshot`] and [`sources::pull`]: the bounded passes (`tidemark
//!     snapshot`, `tidemark pull`, the daemon's snapshot and pull jobs), run through
//!     the same loop until they have read what there was.
//! * [`metrics`]: the figures `/metrics` shows (changes, lag, commits, parked tables).
//!
//! `tidemark_mysql` only reads the MySQL source; every lake write of capture is here.
//!
//! Exactly once: a table's commits carry the position just after the last source
//! transaction (or Kafka offset) they contain, so a pipeline restarted at any instant
//! skips what each table already has. Nothing here keeps state outside the lake.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Result};
use futures::FutureExt;
use tidemark_core::config::{Capture, Config};
use tidemark_lake::Warehouse;
use tracing::error;

pub mod landing;
pub mod metrics;
pub mod sources;

/// The Kafka client this crate links, for code that must speak to the same broker
/// (tests producing events) without linking librdkafka a second time.
pub use rdkafka;

/// What to capture and how long.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The environment whose credentials the sources connect with.
    pub environment: String,
    /// Only this source or stream (default: every source with `capture = "binlog"`
    /// and every stream in the config).
    pub only: Option<String>,
    /// Return once every pipeline has caught up (the binlog: read what the server
    /// had written when the run began, then nothing new for one flush interval),
    /// after committing every table's position. For backfills and tests.
    pub until_caught_up: bool,
    /// Configs reloaded while running (the daemon's SIGHUP and file watch): a binlog
    /// source follows a changed selection of its tables without a restart.
    pub config_updates: Option<tokio::sync::watch::Receiver<Arc<Config>>>,
}

/// What every pipeline runs with.
#[derive(Clone)]
pub struct Pipeline<'a> {
    /// The config in force.
    pub config: &'a Config,
    /// Where tables land.
    pub wh: &'a Warehouse,
    /// Environment and bounds of the run.
    pub options: &'a Options,
    /// Set to stop: each pipeline finishes the commit in flight.
    pub stop: Arc<AtomicBool>,
    /// Figures for `/metrics`, and commit notifications.
    pub metrics: metrics::Shared,
}

/// The binlog sources and event streams `options` selects.
pub fn selected(config: &Config, options: &Options) -> Result<(Vec<String>, Vec<String>)> {
    // Sources whose changes arrive through a stream are not read from the binlog.
    let (sources, streams): (Vec<String>, Vec<String>) = match options.only.as_deref() {
        Some(one) if config.streams.contains_key(one) => (Vec::new(), vec![one.to_string()]),
        // A stream whose messages define its tables needs no source at all.
        None if config.sources.is_empty() => (Vec::new(), config.streams.keys().cloned().collect()),
        one => (
            source_names(config, one)?
                .into_iter()
                .filter(|n| config.sources[n].capture == Capture::Binlog)
                .collect(),
            if one.is_none() {
                config.streams.keys().cloned().collect()
            } else {
                Vec::new()
            },
        ),
    };
    if sources.is_empty() && streams.is_empty() {
        bail!("nothing to capture: every selected source has capture = \"none\" and no stream is configured");
    }
    Ok((sources, streams))
}

/// Run every selected pipeline until `stop` is set (each finishes the commit in
/// flight), or until each has caught up. One pipeline's failure does not stop the
/// others; the errors are returned together at the end.
pub async fn run(
    config: &Config,
    wh: &Warehouse,
    options: &Options,
    stop: Arc<AtomicBool>,
    metrics: metrics::Shared,
) -> Result<()> {
    let (binlogs, streams) = selected(config, options)?;
    let pipelines = binlogs
        .iter()
        .map(|n| ("source", n))
        .chain(streams.iter().map(|n| ("stream", n)));
    let cx = Pipeline {
        config,
        wh,
        options,
        stop,
        metrics,
    };
    let runs = pipelines.map(|(what, name)| {
        let cx = cx.clone();
        async move {
            let r = if what == "source" {
                sources::binlog::run_source(&cx, name).await
            } else {
                sources::events::run_stream(&cx, name).await
            };
            (format!("{what} {name}"), r)
        }
        // Boxed where the borrows are concrete, so `run` can be spawned.
        .boxed()
    });
    let results = futures::future::join_all(runs).await;
    let mut failed = Vec::new();
    for (name, r) in results {
        if let Err(e) = r {
            error!(what = %name, error = %format!("{e:#}"), "capture stopped");
            failed.push(format!("{name}: {e:#}"));
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("\n"));
    }
    Ok(())
}

/// The names of the sources a command acts on.
pub fn source_names(
    config: &tidemark_core::config::Config,
    only: Option<&str>,
) -> Result<Vec<String>> {
    match only {
        Some(s) if config.sources.contains_key(s) => Ok(vec![s.to_string()]),
        Some(s) => bail!("source {s:?} is not defined in the config"),
        None if config.sources.is_empty() => bail!("the config defines no [sources.NAME]"),
        None => Ok(config.sources.keys().cloned().collect()),
    }
}
