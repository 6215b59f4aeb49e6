//! `kind = "build"`: build the SQL models (tidemark-models), as `tidemark build`
//! does, on a schedule or when their inputs land new data.
//!
//! ```toml
//! [jobs.finance_models]
//! kind = "build"
//! select = ["tag:finance"]      # dbt selectors; default: every model
//! on = "new_data"
//! inputs = ["invoicing.invoices", "invoicing.customers"]
//! debounce = "30s"
//! ```
//!
//! The models directory is read at each run, so an edited model takes effect at the
//! next run without a restart. Exactly once comes from the models themselves: each
//! model's commit carries the input versions it read, and a model whose SQL and
//! inputs are unchanged is up to date. A manual trigger may pass `select`.
//!
//! In an environment that defers (`[environments.<env>] defer_to`), the build reads
//! the deferred environment's sources read-only, as `tidemark build` does there.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use tidemark_models::{Options, Outcome};
use tidemark_scheduler::job::{Job, JobError, JobKind, RunContext, RunOutput};
use tidemark_scheduler::spec::{ConfigError, JobSpec};

use super::{bad, only, strings, Env};

/// The kind.
pub struct Kind(pub Env);

impl JobKind for Kind {
    fn kind(&self) -> &'static str {
        "build"
    }

    fn build(&self, spec: &JobSpec) -> Result<Arc<dyn Job>, ConfigError> {
        only(spec, &["select", "full_refresh"])?;
        let full_refresh = match spec.params.get("full_refresh") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => return Err(bad(spec, "full_refresh must be true or false".into())),
        };
        let select = match spec.params.get("select") {
            Some(toml::Value::String(s)) => vec![s.clone()],
            _ => strings(spec, "select")?,
        };
        Ok(Arc::new(Build {
            env: self.0.clone(),
            select,
            full_refresh,
        }))
    }
}

struct Build {
    env: Env,
    select: Vec<String>,
    full_refresh: bool,
}

impl Job for Build {
    fn run(&self, cx: RunContext) -> BoxFuture<'static, Result<RunOutput, JobError>> {
        let env = self.env.clone();
        let select = match cx.params.get("select") {
            Some(s) => vec![s.clone()],
            None => self.select.clone(),
        };
        let full_refresh = self.full_refresh;
        async move {
            let config = env.config();
            let defer = tidemark_models::deferred_to(Some(&config), &env.environment, None, false)
                .map_err(|e| JobError::Definite {
                    message: e,
                    action: format!("correct [environments.{}] defer_to in the config", env.environment),
                })?;
            // An engine of its own: the build refreshes it as models land, and
            // records the input versions its plans read.
            let (engine, project) = tidemark_models::open(
                &env.wh,
                defer.as_ref(),
                &config.models,
                &env.environment,
                &select,
            )
            .await
            .map_err(|e| match e {
                tidemark_models::OpenError::Warehouse(m) => JobError::Transient(m),
                tidemark_models::OpenError::Models(message) => JobError::Definite {
                    message,
                    action: "correct [models] path (or the job's select) in the config".into(),
                },
            })?;
            let options = Options {
                select,
                full_refresh,
                threads: config.models.threads,
                progress: false,
                ran_by: tidemark_models::RanBy {
                    who: format!("job:{}", cx.job),
                    environment: env.environment.clone(),
                },
            };
            let report = tidemark_models::build(&env.wh, engine, &project, &options)
                .await
                .map_err(|e| JobError::Definite {
                    message: e,
                    action: "correct the job's select".into(),
                })?;
            let mut rows = 0;
            let (mut built, mut fresh) = (0, 0);
            for (_, o) in &report.models {
                match o {
                    Outcome::Built(b) => {
                        built += 1;
                        rows += b.inserted + b.updated + b.deleted;
                    }
                    Outcome::UpToDate => fresh += 1,
                    _ => {}
                }
            }
            let failures = report.failures();
            if !failures.is_empty() {
                let list: Vec<String> = failures
                    .iter()
                    .map(|(n, o)| format!("{n}: {}", o.reason()))
                    .collect();
                return Err(JobError::Definite {
                    message: format!(
                        "{} model(s) failed or were skipped ({built} built, {fresh} up to date):\n  {}",
                        list.len(),
                        list.join("\n  ")
                    ),
                    action: "fix the models named (the others were built), then trigger the job".into(),
                });
            }
            Ok(RunOutput {
                rows,
                message: Some(format!(
                    "{built} model(s) built, {fresh} up to date; {rows} row changes landed"
                )),
            })
        }
        .boxed()
    }
}
