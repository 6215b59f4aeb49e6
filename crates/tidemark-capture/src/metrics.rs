//! Prometheus metrics of `tidemark run`, served at `/metrics` when `--metrics-listen`
//! is given. Hand-written text exposition: a handful of gauges and counters do not
//! need a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tracing::info;

/// Per-table figures.
#[derive(Debug, Default, Clone)]
pub struct TableMetrics {
    /// Row changes landed.
    pub changes: u64,
    /// Source commit instant of the last change landed (micros).
    pub last_source_ts_us: Option<i64>,
    /// When it landed (micros).
    pub last_ingest_us: Option<i64>,
    /// Parked (change capture stopped for it).
    pub parked: bool,
}

/// Everything `/metrics` shows, keyed by (source, table).
#[derive(Default)]
pub struct Metrics {
    tables: BTreeMap<(String, String), TableMetrics>,
    commits: BTreeMap<String, (u64, f64)>,
    /// Per stream: messages sent to the dead letters, and replays skipped.
    streams: BTreeMap<String, (u64, u64)>,
    /// Told the SQL name of each table that committed rows (the daemon's scheduler,
    /// so that new-data jobs start without waiting for their next poll).
    watchers: Vec<OnLanded>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("tables", &self.tables.len())
            .finish_non_exhaustive()
    }
}

/// Shared handle.
pub type Shared = Arc<Mutex<Metrics>>;

/// What [`Metrics::on_landed`] calls with a table's SQL name.
pub type OnLanded = Arc<dyn Fn(&str) + Send + Sync>;

impl Metrics {
    /// A table's entry.
    pub fn table(&mut self, source: &str, table: &str) -> &mut TableMetrics {
        self.tables
            .entry((source.to_string(), table.to_string()))
            .or_default()
    }

    /// Call `f` with a table's SQL name each time rows of it are committed.
    pub fn on_landed(&mut self, f: OnLanded) {
        self.watchers.push(f);
    }

    /// Rows of `sql_name` were committed.
    pub fn landed(&self, sql_name: &str) {
        for w in &self.watchers {
            w(sql_name);
        }
    }

    /// One commit round of a source took `seconds`.
    pub fn committed(&mut self, source: &str, seconds: f64) {
        let e = self.commits.entry(source.to_string()).or_default();
        e.0 += 1;
        e.1 = seconds;
    }

    /// A stream sent `dead` messages to the dead letters and skipped `replayed` changes
    /// it had landed already.
    pub fn stream(&mut self, stream: &str, dead: u64, replayed: u64) {
        let e = self.streams.entry(stream.to_string()).or_default();
        e.0 += dead;
        e.1 += replayed;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, now_us: i64) -> String {
        let mut out = String::new();
        let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        };
        let per_table = |f: &dyn Fn(&TableMetrics) -> Option<f64>| -> Vec<(String, f64)> {
            self.tables
                .iter()
                .filter_map(|((s, t), m)| {
                    f(m).map(|v| (format!("source=\"{}\",table=\"{}\"", label(s), label(t)), v))
                })
                .collect()
        };
        family(
            "tidemark_changes_applied_total",
            "counter",
            "Row changes landed in current + history since the process started.",
            per_table(&|m| Some(m.changes as f64)),
        );
        family(
            "tidemark_last_source_commit_timestamp_seconds",
            "gauge",
            "Source commit instant of the last change landed (Unix seconds).",
            per_table(&|m| m.last_source_ts_us.map(|t| t as f64 / 1e6)),
        );
        family(
            "tidemark_landing_delay_seconds",
            "gauge",
            "Source commit to landing, for the last change landed.",
            per_table(&|m| Some((m.last_ingest_us? - m.last_source_ts_us?) as f64 / 1e6)),
        );
        family(
            "tidemark_behind_seconds",
            "gauge",
            "How old the newest landed change is (now minus its source commit instant).",
            per_table(&|m| m.last_source_ts_us.map(|t| (now_us - t) as f64 / 1e6)),
        );
        family(
            "tidemark_table_parked",
            "gauge",
            "1 when change capture stopped for the table (see tidemark status).",
            per_table(&|m| Some(if m.parked { 1.0 } else { 0.0 })),
        );
        let commits = |f: &dyn Fn(&(u64, f64)) -> f64| -> Vec<(String, f64)> {
            self.commits
                .iter()
                .map(|(s, c)| (format!("source=\"{}\"", label(s)), f(c)))
                .collect()
        };
        family(
            "tidemark_commit_rounds_total",
            "counter",
            "Commit rounds (all tables with pending changes) since the process started.",
            commits(&|c| c.0 as f64),
        );
        family(
            "tidemark_last_commit_round_seconds",
            "gauge",
            "Duration of the last commit round.",
            commits(&|c| c.1),
        );
        let streams = |f: &dyn Fn(&(u64, u64)) -> u64| -> Vec<(String, f64)> {
            self.streams
                .iter()
                .map(|(s, c)| (format!("stream=\"{}\"", label(s)), f(c) as f64))
                .collect()
        };
        family(
            "tidemark_dead_letters_total",
            "counter",
            "Messages of an event stream that could not be landed and went to tidemark.dead_letters.",
            streams(&|c| c.0),
        );
        family(
            "tidemark_replays_skipped_total",
            "counter",
            "Changes an event stream delivered again (same source position) and tidemark skipped.",
            streams(&|c| c.1),
        );
        out
    }
}

/// Serve `/metrics` on `addr` in the background.
pub async fn serve(addr: &str, metrics: Shared) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics-listen {addr}: cannot listen there"))?;
    info!(address = %listener.local_addr()?, "serving Prometheus metrics at /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                let now = chrono::Utc::now().timestamp_micros();
                let body = m.lock().map(|m| m.render(now)).unwrap_or_default();
                ([("content-type", "text/plain; version=0.0.4")], body)
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(())
}
