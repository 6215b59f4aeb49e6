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
//! Delta commit (`tidemark_capture::sources::pull`), so a run killed half-way resumes, table by
//! table, from what was committed.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use tidemark_capture::sources::pull::pull_table;
use tidemark_scheduler::job::{Job, JobError, JobKind, RunContext, RunOutput};
use tidemark_scheduler::spec::{ConfigError, JobSpec};

use super::{bad, each_table, only, string, Env};

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
            let wh = env.wh.clone();
            let changed = each_table(
                &env,
                &name,
                &cx.cancel,
                |source, t| {
                    source
                        .config
                        .table_options(&t.schema.name.source_db, &t.schema.name.source_table)
                        .watermark
                        .is_some()
                },
                |source, t| {
                    let wh = wh.clone();
                    async move {
                        pull_table(source, &wh, t, reconcile, Default::default())
                            .await
                            .map(|r| r.changed)
                            .map_err(|e| format!("{e:#}"))
                    }
                    .boxed()
                },
            )
            .await?;
            Ok(RunOutput {
                rows: changed,
                message: Some(format!("{changed} changed rows pulled from {name}")),
            })
        }
        .boxed()
    }
}
