//! `kind = "publish"`: publish a `[publish.NAME]` publication (tidemark-publish), as
//! `tidemark publish NAME` does, on a schedule or when its tables land new data.
//!
//! ```toml
//! [jobs.to_dw]
//! kind = "publish"
//! publication = "dw"            # [publish.dw]
//! tables = ["shop.orders"]      # optional: a subset of the publication's tables
//! on = "new_data"
//! inputs = ["shop.orders"]
//! debounce = "30s"
//! ```
//!
//! Exactly once comes from the publication itself (the target's state table is
//! written in the transaction that writes the rows), so a retried or overlapping run
//! sends nothing twice. A full refresh is not a job setting: it drops target tables,
//! which is a person's decision (`tidemark publish NAME --full-refresh`).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use tidemark_publish::{Options, Outcome};
use tidemark_scheduler::job::{Job, JobError, JobKind, RunContext, RunOutput};
use tidemark_scheduler::spec::{ConfigError, JobSpec};

use super::{bad, only, string, strings, Env};

/// The kind.
pub struct Kind(pub Env);

impl JobKind for Kind {
    fn kind(&self) -> &'static str {
        "publish"
    }

    fn build(&self, spec: &JobSpec) -> Result<Arc<dyn Job>, ConfigError> {
        only(spec, &["publication", "tables"])?;
        let publication = string(spec, "publication", "\"dw\"")?;
        let tables = strings(spec, "tables")?;
        let config = self.0.config();
        let Some(p) = config.publish.get(&publication) else {
            return Err(bad(
                spec,
                format!(
                    "publication {publication:?} is not defined; define [publish.{publication}]"
                ),
            ));
        };
        if let Some(t) = tables.iter().find(|t| !p.tables.contains(t)) {
            return Err(bad(
                spec,
                format!("tables: {t} is not one of publication {publication}'s tables"),
            ));
        }
        Ok(Arc::new(Publish {
            env: self.0.clone(),
            publication,
            tables,
        }))
    }
}

struct Publish {
    env: Env,
    publication: String,
    tables: Vec<String>,
}

impl Job for Publish {
    fn run(&self, _cx: RunContext) -> BoxFuture<'static, Result<RunOutput, JobError>> {
        let env = self.env.clone();
        let name = self.publication.clone();
        let options = Options {
            tables: self.tables.clone(),
            full_refresh: false,
        };
        async move {
            let config = env.config();
            let Some(p) = config.publish.get(&name) else {
                return Err(JobError::Definite {
                    message: format!("publication {name} is no longer defined"),
                    action: format!("define [publish.{name}] or remove the job"),
                });
            };
            env.engine
                .refresh()
                .await
                .map_err(|e| JobError::Transient(format!("reading the warehouse: {e}")))?;
            let report = tidemark_publish::publish(&env.engine, &name, p, &options)
                .await
                .map_err(|e| {
                    if e.is_transient() {
                        JobError::Transient(e.to_string())
                    } else {
                        JobError::Definite {
                            message: e.to_string(),
                            action: format!("correct [publish.{name}]"),
                        }
                    }
                })?;
            let (mut rows, mut parked, mut failed) = (0, Vec::new(), Vec::new());
            for (t, o) in &report.tables {
                match o {
                    Outcome::Published(p) => rows += p.rows,
                    Outcome::Parked(m) => parked.push(format!("{t}: {m}")),
                    Outcome::Failed(m) => failed.push(format!("{t}: {m}")),
                    Outcome::UpToDate => {}
                }
            }
            if !parked.is_empty() {
                return Err(JobError::Definite {
                    message: format!(
                        "{} table(s) parked ({rows} rows published for the others):\n  {}",
                        parked.len(),
                        parked.iter().chain(&failed).cloned().collect::<Vec<_>>().join("\n  ")
                    ),
                    action: format!("run `tidemark publish {name} --full-refresh --table T` for each parked table T"),
                });
            }
            if !failed.is_empty() {
                return Err(JobError::Transient(format!(
                    "{} table(s) failed (nothing of them committed; a retry publishes them): {}",
                    failed.len(),
                    failed.join("; ")
                )));
            }
            Ok(RunOutput {
                rows,
                message: Some(format!(
                    "{} table(s); {rows} rows published",
                    report.tables.len()
                )),
            })
        }
        .boxed()
    }
}
