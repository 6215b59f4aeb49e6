//! `kind = "pull"`: a batch pull of a source's tables by their watermark columns
//! (rows changed since the last pull), optionally followed by a reconcile pass that
//! finds deleted keys. For sources without binlog access (`capture = "none"`).
//!
//! ```toml
//! [jobs.pull_crm]
//! kind = "pull"
//! source = "crm"
//! every = "15m"
//! reconcile = false
//! ```
//!
//! Exactly once: each table's pull commits its rows with the new watermark in one
//! Delta commit (`tidemark_mysql::pull`), so a run killed half-way resumes, table by
//! table, from what was committed.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use tidemark_mysql::connect::Source;
use tidemark_mysql::discover::discover;
use tidemark_mysql::pull::pull_table;
use tidemark_scheduler::job::{Job, JobError, JobKind, RunContext, RunOutput};
use tidemark_scheduler::spec::{ConfigError, JobSpec};
use tracing::error;

use super::{bad, only, string, Env};

/// The kind.
pub struct Kind(pub Env);

impl JobKind for Kind {
    fn kind(&self) -> &'static str {
        "pull"
    }

    fn build(&self, spec: &JobSpec) -> Result<Arc<dyn Job>, ConfigError> {
        only(spec, &["source", "reconcile"])?;
        let source = string(spec, "source", "\"crm\"")?;
        if !self.0.config().sources.contains_key(&source) {
            return Err(bad(
                spec,
                format!("source {source:?} is not defined; define [sources.{source}]"),
            ));
        }
        let reconcile = match spec.params.get("reconcile") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => return Err(bad(spec, "reconcile must be true or false".into())),
        };
        Ok(Arc::new(Pull {
            env: self.0.clone(),
            source,
            reconcile,
        }))
    }
}

struct Pull {
    env: Env,
    source: String,
    reconcile: bool,
}

impl Job for Pull {
    fn run(&self, cx: RunContext) -> BoxFuture<'static, Result<RunOutput, JobError>> {
        let (env, name, reconcile) = (self.env.clone(), self.source.clone(), self.reconcile);
        async move {
            let cfg = env
                .config()
                .source_for(&env.environment, &name)
                .map_err(|e| JobError::Definite {
                    message: e.to_string(),
                    action: format!("correct [sources.{name}]"),
                })?;
            let source = Source::connect(&name, cfg).await.map_err(mysql_error)?;
            let tables = discover(&source).await.map_err(mysql_error)?;
            let mut changed = 0u64;
            let mut failed = Vec::new();
            for t in tables.iter().filter(|t| {
                source
                    .config
                    .table_options(&t.schema.name.source_db, &t.schema.name.source_table)
                    .watermark
                    .is_some()
            }) {
                if cx.cancel.is_cancelled() {
                    break;
                }
                match pull_table(&source, &env.wh, t, reconcile).await {
                    Ok(r) => changed += r.changed,
                    Err(e) => {
                        error!(source = %name, table = %t.schema.name.source(), error = %e, "pull failed");
                        failed.push(format!("{}: {e}", t.schema.name.source()));
                    }
                }
            }
            source.close().await;
            if !failed.is_empty() {
                return Err(JobError::Transient(format!(
                    "{} table(s) failed (the others were pulled): {}",
                    failed.len(),
                    failed.join("; ")
                )));
            }
            Ok(RunOutput {
                rows: changed,
                message: Some(format!("{changed} changed rows pulled from {name}")),
            })
        }
        .boxed()
    }
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
