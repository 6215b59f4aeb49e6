//! `kind = "sql"`: run a SQL statement over the warehouse and land its result as the
//! table `target` (`schema.table`), replaced whole by each run.
//!
//! ```toml
//! [jobs.daily_revenue]
//! kind = "sql"
//! sql = "SELECT date_trunc('day', issued_at) AS day, sum(amount) AS revenue FROM shop.invoices GROUP BY 1"
//! target = "reports.daily_revenue"
//! on = "new_data"
//! inputs = ["shop.invoices"]
//! ```
//!
//! Exactly once: the result is one Delta commit (an overwrite) carrying the run's
//! sequence number as an application transaction (`tidemark-job:<name>`) and the
//! input versions the run consumed. A run that lands its commit and dies before
//! recording its end is found committed when tried again, and not written twice.
//! The result is read at the inputs' newest versions, which may be newer than the
//! cursor the run recorded: the next new-data run then reads them again (a replace
//! is idempotent, so nothing is doubled).

use std::sync::Arc;

use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::Transaction;
use deltalake::protocol::SaveMode;
use futures::future::BoxFuture;
use futures::FutureExt;
use tidemark_scheduler::job::{Job, JobError, JobKind, RunContext, RunOutput};
use tidemark_scheduler::spec::{ConfigError, JobSpec};
use tracing::info;

use super::{bad, lake_error, only, string, Env};

/// The kind.
pub struct Kind(pub Env);

impl JobKind for Kind {
    fn kind(&self) -> &'static str {
        "sql"
    }

    fn build(&self, spec: &JobSpec) -> Result<Arc<dyn Job>, ConfigError> {
        only(spec, &["sql", "target"])?;
        let sql = string(spec, "sql", "\"SELECT …\"")?;
        let target = string(spec, "target", "\"reports.daily_revenue\"")?;
        let Some((schema, table)) = target.split_once('.') else {
            return Err(bad(
                spec,
                format!("target {target:?} must be schema.table, e.g. \"reports.daily_revenue\""),
            ));
        };
        if schema == tidemark_lake::OWN_SCHEMA || schema.ends_with("_history") {
            return Err(bad(
                spec,
                format!("target {target:?}: schema {schema} is tidemark's; choose another, e.g. \"reports.{table}\""),
            ));
        }
        // Caught at load, not at 3 a.m.: the statement must parse as one query.
        let parsed = tidemark_query::parse(&sql)
            .map_err(|e| bad(spec, format!("sql does not parse: {e}")))?;
        if parsed.len() != 1 {
            return Err(bad(spec, "sql must be exactly one SELECT statement".into()));
        }
        Ok(Arc::new(SqlJob {
            env: self.0.clone(),
            name: spec.name.clone(),
            sql,
            schema: schema.to_string(),
            table: table.to_string(),
        }))
    }
}

struct SqlJob {
    env: Env,
    name: String,
    sql: String,
    schema: String,
    table: String,
}

/// The run's sequence number, from its id (`<job>-<seq>`).
pub(crate) fn seq_of(run_id: &str) -> i64 {
    run_id
        .rsplit_once('-')
        .and_then(|(_, s)| s.parse().ok())
        .unwrap_or(0)
}

/// The application id a job's commits carry.
pub(crate) fn app_id(job: &str) -> String {
    format!("tidemark-job:{job}")
}

impl Job for SqlJob {
    fn run(&self, cx: RunContext) -> BoxFuture<'static, Result<RunOutput, JobError>> {
        let (env, name, sql) = (self.env.clone(), self.name.clone(), self.sql.clone());
        let (schema, table) = (self.schema.clone(), self.table.clone());
        async move {
            let target = format!("{schema}.{table}");
            let seq = seq_of(&cx.run_id);
            let url = env.wh.derived_url(&schema, &table);
            let (delta, exists) = env
                .wh
                .delta_table(&url)
                .await
                .map_err(|e| lake_error(e, &target))?;
            let app = app_id(&name);
            if exists {
                let done = delta
                    .snapshot()
                    .map_err(|e| JobError::Transient(format!("{target}: {e}")))?
                    .transaction_version(delta.log_store().as_ref(), &app)
                    .await
                    .map_err(|e| JobError::Transient(format!("{target}: {e}")))?;
                if done.is_some_and(|v| v >= seq) {
                    return Ok(RunOutput {
                        rows: 0,
                        message: Some(format!(
                            "{target}: run {seq} had committed before its end was recorded; not written again"
                        )),
                    });
                }
            }
            env.engine
                .refresh()
                .await
                .map_err(|e| JobError::Transient(format!("reading the warehouse: {e}")))?;
            let failed = |e: &dyn std::fmt::Display| JobError::Definite {
                message: format!("its SQL failed: {e}"),
                action: format!("correct [jobs.{name}].sql"),
            };
            let df = env.engine.sql(&sql).await.map_err(|e| failed(&e))?;
            let result_schema = std::sync::Arc::new(df.schema().as_arrow().clone());
            let mut batches = df.collect().await.map_err(|e| failed(&e))?;
            if batches.is_empty() {
                // An empty result still replaces the table, with no rows.
                batches.push(deltalake::arrow::array::RecordBatch::new_empty(result_schema));
            }
            if cx.cancel.is_cancelled() {
                return Err(JobError::Transient("cancelled before its commit".into()));
            }
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            let metadata = serde_json::json!({
                "tidemark.job": name,
                "tidemark.run": cx.run_id,
                "tidemark.inputs": cx.inputs,
            });
            let props = CommitProperties::default()
                .with_application_transaction(Transaction::new(&app, seq))
                .with_metadata(metadata.as_object().cloned().unwrap_or_default());
            let write = delta.write(batches);
            write
                .with_save_mode(SaveMode::Overwrite)
                .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
                .with_commit_properties(props)
                .await
                .map_err(|e| JobError::Transient(format!("{target}: committing the result: {e}")))?;
            info!(job = %name, run = %cx.run_id, target = %target, rows, "result landed");
            Ok(RunOutput {
                rows: rows as u64,
                message: Some(format!("{rows} rows landed in {target}")),
            })
        }
        .boxed()
    }
}
