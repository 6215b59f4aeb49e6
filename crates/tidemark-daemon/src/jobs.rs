//! The job kinds the daemon registers with the scheduler, one file each. The
//! scheduler knows none of them: each turns its `[jobs.NAME]` keys into a runnable
//! job ([`tidemark_scheduler::JobKind`]) and says in its errors which key is wrong.
//!
//! * [`sql`]: a SQL statement whose result lands as a table (`schema.table`);
//! * [`maintenance`]: compaction, checkpoints and VACUUM of the warehouse's tables;
//! * [`pull`]: a batch pull (and reconcile) of a source's tables by watermark;
//! * [`snapshot`]: land the tables of a source not landed yet;
//! * [`build`]: build the SQL models (tidemark-models);
//! * [`publish`]: publish a publication's tables to its target (tidemark-publish).
//!
//! Capture is not a job: it is always on (see [`crate::App`]).

use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use tidemark_core::config::Config;
use tidemark_lake::Warehouse;
use tidemark_mysql::connect::Source;
use tidemark_mysql::discover::{discover, DiscoveredTable};
use tidemark_query::Engine;
use tidemark_scheduler::job::{JobError, Registry};
use tidemark_scheduler::spec::{ConfigError, JobSpec};
use tokio_util::sync::CancellationToken;
use tracing::error;

pub mod build;
pub mod maintenance;
pub mod publish;
pub mod pull;
pub mod snapshot;
pub mod sql;

/// What jobs run against.
#[derive(Clone)]
pub struct Env {
    /// The warehouse.
    pub wh: Warehouse,
    /// The config in force, swapped whole on a reload: jobs built before it read
    /// the new one from their next run.
    pub config: Arc<RwLock<Arc<Config>>>,
    /// The environment whose credentials sources connect with.
    pub environment: String,
    /// One SQL engine for every job, refreshed before each run that reads.
    pub engine: Arc<Engine>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("environment", &self.environment)
            .finish()
    }
}

impl Env {
    /// The config in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().expect("config lock").clone()
    }
}

/// Every kind the daemon knows.
pub fn registry(env: &Env) -> Registry {
    let mut r = Registry::new();
    r.register(Arc::new(sql::Kind(env.clone())));
    r.register(Arc::new(maintenance::Kind(env.clone())));
    r.register(Arc::new(pull::Kind(env.clone())));
    r.register(Arc::new(snapshot::Kind(env.clone())));
    r.register(Arc::new(build::Kind(env.clone())));
    r.register(Arc::new(publish::Kind(env.clone())));
    r
}

/// A required string key of a job's table.
pub(crate) fn string(spec: &JobSpec, key: &str, example: &str) -> Result<String, ConfigError> {
    match spec.params.get(key) {
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(_) => Err(bad(
            spec,
            format!("{key} must be a string, e.g. {key} = {example}"),
        )),
        None => Err(bad(
            spec,
            format!("kind {:?} needs {key}, e.g. {key} = {example}", spec.kind),
        )),
    }
}

/// An optional list of strings.
pub(crate) fn strings(spec: &JobSpec, key: &str) -> Result<Vec<String>, ConfigError> {
    match spec.params.get(key) {
        None => Ok(Vec::new()),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    bad(
                        spec,
                        format!("{key} must be a list of strings, e.g. {key} = [\"shop.orders\"]"),
                    )
                })
            })
            .collect(),
        Some(_) => Err(bad(
            spec,
            format!("{key} must be a list of strings, e.g. {key} = [\"shop.orders\"]"),
        )),
    }
}

/// Refuse keys the kind does not know (a typo silently ignored is a job that
/// silently does something else).
pub(crate) fn only(spec: &JobSpec, known: &[&str]) -> Result<(), ConfigError> {
    for k in spec.params.keys() {
        if !known.contains(&k.as_str()) {
            return Err(bad(
                spec,
                format!(
                    "unknown key {k:?} for kind {:?} (it takes: {})",
                    spec.kind,
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

pub(crate) fn bad(spec: &JobSpec, message: String) -> ConfigError {
    ConfigError::new(&spec.name, message)
}

/// A failure a retry may cure (the lake, the network) or not (everything else).
pub(crate) fn lake_error(e: tidemark_lake::Error, what: &str) -> JobError {
    if e.is_transient() {
        JobError::Transient(format!("{what}: {e}"))
    } else {
        JobError::Definite {
            message: format!("{what}: {e}"),
            action: "fix what the error names".into(),
        }
    }
}

/// What one table of a source gave a batch job: rows, or why it failed.
pub(crate) type TableDone<'a> = BoxFuture<'a, Result<u64, String>>;

/// Connect to source `name` and run `each` on its selected tables that `keep`
/// accepts, one at a time, until `cancel`. A table's failure is logged and the
/// others go on; then the failures are one transient error naming each (a retry
/// resumes them: each table's commits carry their own position). The rows summed.
pub(crate) async fn each_table<K, F>(
    env: &Env,
    name: &str,
    cancel: &CancellationToken,
    keep: K,
    mut each: F,
) -> Result<u64, JobError>
where
    K: Fn(&Source, &DiscoveredTable) -> bool,
    F: for<'a> FnMut(&'a Source, &'a DiscoveredTable) -> TableDone<'a>,
{
    let cfg = env
        .config()
        .source_for(&env.environment, name)
        .map_err(|e| JobError::Definite {
            message: e.to_string(),
            action: format!("correct [sources.{name}]"),
        })?;
    let source = Source::connect(name, cfg).await.map_err(mysql_error)?;
    let tables = discover(&source).await.map_err(mysql_error)?;
    let (mut rows, mut failed) = (0u64, Vec::new());
    for t in tables.iter().filter(|t| keep(&source, t)) {
        // Between tables: each is done or resumable.
        if cancel.is_cancelled() {
            break;
        }
        match each(&source, t).await {
            Ok(n) => rows += n,
            Err(e) => {
                error!(source = %name, table = %t.schema.name.source(), error = %e, "table failed; the others go on");
                failed.push(format!("{}: {e}", t.schema.name.source()));
            }
        }
    }
    source.close().await;
    if !failed.is_empty() {
        return Err(JobError::Transient(format!(
            "{} table(s) failed (the others are done; a retry resumes them): {}",
            failed.len(),
            failed.join("; ")
        )));
    }
    Ok(rows)
}

/// A source error: a refused login or a missing privilege will not cure itself.
pub(crate) fn mysql_error(e: tidemark_mysql::Error) -> JobError {
    let text = e.to_string();
    match e {
        tidemark_mysql::Error::Unreachable { .. } => JobError::Transient(text),
        _ => JobError::Definite {
            message: text,
            action: "fix what the error names (`tidemark check` helps)".into(),
        },
    }
}
