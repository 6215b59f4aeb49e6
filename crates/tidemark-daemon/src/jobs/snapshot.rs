//! `kind = "snapshot"`: land the source's selected tables that are not landed yet
//! (or whose snapshot was interrupted: it resumes after the last committed chunk).
//! A table already landed is left alone, so the job is cheap to run often: a table
//! created at the source appears in the lake by the next run.
//!
//! ```toml
//! [jobs.land_new_tables]
//! kind = "snapshot"
//! source = "crm"
//! every = "1h"
//! tables = ["crm.accounts"]   # default: every selected table
//! ```
//!
//! Exactly once: each chunk is one Delta commit carrying its resume key
//! (`tidemark_mysql::snapshot`).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use indicatif::ProgressBar;
use tidemark_mysql::connect::Source;
use tidemark_mysql::discover::discover;
use tidemark_mysql::snapshot::snapshot_table;
use tidemark_scheduler::job::{Job, JobError, JobKind, RunContext, RunOutput};
use tidemark_scheduler::spec::{ConfigError, JobSpec};
use tracing::error;

use super::pull::mysql_error;
use super::{bad, only, string, strings, Env};

/// The kind.
pub struct Kind(pub Env);

impl JobKind for Kind {
    fn kind(&self) -> &'static str {
        "snapshot"
    }

    fn build(&self, spec: &JobSpec) -> Result<Arc<dyn Job>, ConfigError> {
        only(spec, &["source", "tables"])?;
        let source = string(spec, "source", "\"crm\"")?;
        if !self.0.config().sources.contains_key(&source) {
            return Err(bad(
                spec,
                format!("source {source:?} is not defined; define [sources.{source}]"),
            ));
        }
        Ok(Arc::new(Snapshot {
            env: self.0.clone(),
            source,
            tables: strings(spec, "tables")?,
        }))
    }
}

struct Snapshot {
    env: Env,
    source: String,
    tables: Vec<String>,
}

impl Job for Snapshot {
    fn run(&self, cx: RunContext) -> BoxFuture<'static, Result<RunOutput, JobError>> {
        let (env, name, only) = (self.env.clone(), self.source.clone(), self.tables.clone());
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
            let chunk_rows = source.config.snapshot_chunk_rows;
            let (mut landed, mut rows) = (0u64, 0u64);
            let mut failed = Vec::new();
            for t in tables
                .iter()
                .filter(|t| only.is_empty() || only.contains(&t.schema.name.source()))
            {
                // Between tables: each is landed or resumable.
                if cx.cancel.is_cancelled() {
                    break;
                }
                match snapshot_table(&source, &env.wh, t, chunk_rows, ProgressBar::hidden()).await {
                    Ok(r) if !r.already_done => {
                        landed += 1;
                        rows += r.total_rows;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        error!(source = %name, table = %t.schema.name.source(), error = %e, "snapshot failed");
                        failed.push(format!("{}: {e}", t.schema.name.source()));
                    }
                }
            }
            source.close().await;
            if !failed.is_empty() {
                return Err(JobError::Transient(format!(
                    "{} table(s) failed (the others are landed; a retry resumes them): {}",
                    failed.len(),
                    failed.join("; ")
                )));
            }
            Ok(RunOutput {
                rows,
                message: Some(format!("{landed} tables landed from {name}")),
            })
        }
        .boxed()
    }
}
