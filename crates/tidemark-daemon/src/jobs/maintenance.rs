//! `kind = "maintenance"`: fold each table's history tail into its current table,
//! bin-pack, checkpoint and VACUUM (history itself is never removed), and expire
//! the audit past its retention. What `tidemark maintain` does by hand.
//!
//! ```toml
//! [jobs.nightly_maintenance]
//! kind = "maintenance"
//! cron = "0 3 * * *"
//! timezone = "Europe/Paris"
//! retain_hours = 168        # what VERSION AS OF can reach
//! tables = ["shop.orders"]  # default: every table
//! ```

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use tidemark_lake::{stored_schema, TableKind, TableWriter};
use tidemark_scheduler::job::{Job, JobError, JobKind, RunContext, RunOutput};
use tidemark_scheduler::spec::{ConfigError, JobSpec};

use super::{bad, lake_error, only, strings, Env};

/// The kind.
pub struct Kind(pub Env);

impl JobKind for Kind {
    fn kind(&self) -> &'static str {
        "maintenance"
    }

    fn build(&self, spec: &JobSpec) -> Result<Arc<dyn Job>, ConfigError> {
        only(spec, &["retain_hours", "tables"])?;
        let retain_hours = match spec.params.get("retain_hours") {
            None => 168,
            Some(toml::Value::Integer(h)) if *h >= 0 => *h,
            Some(_) => {
                return Err(bad(
                    spec,
                    "retain_hours must be a whole number of hours, e.g. retain_hours = 168".into(),
                ))
            }
        };
        Ok(Arc::new(Maintain {
            env: self.0.clone(),
            retain: chrono::Duration::hours(retain_hours),
            tables: strings(spec, "tables")?,
        }))
    }
}

struct Maintain {
    env: Env,
    retain: chrono::Duration,
    tables: Vec<String>,
}

impl Job for Maintain {
    fn run(&self, cx: RunContext) -> BoxFuture<'static, Result<RunOutput, JobError>> {
        let (env, retain, only) = (self.env.clone(), self.retain, self.tables.clone());
        async move {
            let wh = &env.wh;
            let mut done = 0u64;
            let mut folded = 0u64;
            for loc in wh
                .list()
                .await
                .map_err(|e| lake_error(e, "listing tables"))?
            {
                let sql = format!("{}.{}", loc.schema, loc.table);
                if !only.is_empty() && !only.contains(&sql) {
                    continue;
                }
                // Stopping between tables leaves each either maintained or not.
                if cx.cancel.is_cancelled() {
                    return Err(JobError::Transient(format!(
                        "cancelled after {done} tables; the rest are maintained by the next run"
                    )));
                }
                let url = wh.table_url(&loc.schema, &loc.table, TableKind::Current);
                let (cur, _) = wh
                    .delta_table(&url)
                    .await
                    .map_err(|e| lake_error(e, &sql))?;
                let Some(schema) = stored_schema(&cur) else {
                    continue;
                };
                let mut w = TableWriter::open(wh, Arc::new(schema))
                    .await
                    .map_err(|e| lake_error(e, &sql))?;
                let m = w
                    .maintain(Some(retain))
                    .await
                    .map_err(|e| lake_error(e, &sql))?;
                folded += m.compaction.map_or(0, |c| c.tail_rows);
                done += 1;
            }
            let keep_days = env.config().server.audit_retention_days;
            tidemark_lake::Audit::maintain(wh, Some(retain), keep_days)
                .await
                .map_err(|e| lake_error(e, "tidemark.audit"))?;
            for table in tidemark_lake::KEPT_RECORDS {
                tidemark_lake::maintain_records(wh, table, Some(retain))
                    .await
                    .map_err(|e| {
                        lake_error(e, &format!("{}.{table}", tidemark_lake::OWN_SCHEMA))
                    })?;
            }
            Ok(RunOutput {
                rows: folded,
                message: Some(format!(
                    "{done} tables maintained; {folded} changes folded into current tables"
                )),
            })
        }
        .boxed()
    }
}
