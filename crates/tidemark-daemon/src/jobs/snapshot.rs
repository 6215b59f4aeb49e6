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
//! (`tidemark_capture::sources::snapshot`).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use indicatif::ProgressBar;
use tidemark_capture::sources::snapshot::snapshot_table;
use tidemark_scheduler::job::{Job, JobError, JobKind, RunContext, RunOutput};
use tidemark_scheduler::spec::{ConfigError, JobSpec};

use super::{bad, each_table, only, string, strings, Env};

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
            let wh = env.wh.clone();
            let rows = each_table(
                &env,
                &name,
                &cx.cancel,
                |_, t| only.is_empty() || only.contains(&t.schema.name.source()),
                |source, t| {
                    let (wh, chunk_rows) = (wh.clone(), source.config.snapshot_chunk_rows);
                    async move {
                        // A cancelled run is dropped between chunks; each chunk
                        // lands atomically, so nothing is lost.
                        let stop = Default::default();
                        snapshot_table(source, &wh, t, chunk_rows, ProgressBar::hidden(), stop)
                            .await
                            // A table landed before gives nothing: it is left alone.
                            .map(|r| if r.already_done { 0 } else { r.total_rows })
                            .map_err(|e| format!("{e:#}"))
                    }
                    .boxed()
                },
            )
            .await?;
            Ok(RunOutput {
                rows,
                message: Some(format!("{rows} rows landed from {name}")),
            })
        }
        .boxed()
    }
}
