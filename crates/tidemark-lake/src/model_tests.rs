//! `tidemark.model_tests`: one row per data test run of the SQL models
//! (tidemark-models), by `tidemark build` (each model's tests after it lands),
//! `tidemark test`, or a daemon's build job, so the console shows each test's last
//! outcome and an admin can query the outcomes over SQL.
//!
//! A plain Delta table at `<warehouse>/tidemark/model_tests/`, appended once per
//! build or test invocation (blind appends: a daemon's job and a hand-run
//! `tidemark test` may overlap).

use std::sync::Arc;

use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::DeltaTable;

use crate::own::{self, OWN_SCHEMA};
use crate::warehouse::Warehouse;
use crate::{Error, Result};

/// SQL name of the table in [`OWN_SCHEMA`].
pub const MODEL_TESTS: &str = "model_tests";

/// One run of one data test.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelTestRow {
    /// The model tested.
    pub model: String,
    /// The test, as tidemark-models names it (`unique(id)`, a SQL test's file stem).
    pub test: String,
    /// `error` or `warn`.
    pub severity: String,
    /// `pass`, `fail` (it returned rows) or `error` (it could not run).
    pub outcome: String,
    /// Failing rows it found.
    pub failing_rows: i64,
    /// A few of them as text, one a line (bounded by the writer).
    pub failing_sample: Option<String>,
    /// Why it could not run.
    pub error: Option<String>,
    /// When it started and ended (µs, UTC).
    pub started_us: i64,
    /// See `started_us`.
    pub ended_us: i64,
    /// `tidemark build`, `tidemark test` or `job:<name>`.
    pub ran_by: String,
    /// The environment whose warehouse this is.
    pub environment: String,
}

fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let s = |n: &str, null| Field::new(n, DataType::Utf8, null);
    Arc::new(Schema::new(vec![
        s("model", false),
        s("test", false),
        s("severity", false),
        s("outcome", false),
        Field::new("failing_rows", DataType::Int64, false),
        s("failing_sample", true),
        s("error", true),
        Field::new("started_at", ts.clone(), false),
        Field::new("ended_at", ts, false),
        s("ran_by", false),
        s("environment", false),
    ]))
}

/// Append `rows` to `tidemark.model_tests` in one commit, creating it on first use.
pub async fn record_model_tests(wh: &Warehouse, rows: &[ModelTestRow]) -> Result<DeltaTable> {
    let table = own::open_or_create(
        wh,
        MODEL_TESTS,
        schema(),
        "tidemark: one row per run of a SQL model's data test",
    )
    .await?;
    let name = format!("{OWN_SCHEMA}.{MODEL_TESTS}");
    let columns = vec![
        own::texts(rows, |r| Some(&r.model)),
        own::texts(rows, |r| Some(&r.test)),
        own::texts(rows, |r| Some(&r.severity)),
        own::texts(rows, |r| Some(&r.outcome)),
        own::ints(rows, |r| r.failing_rows),
        own::texts(rows, |r| r.failing_sample.as_deref()),
        own::texts(rows, |r| r.error.as_deref()),
        own::instants(rows, |r| Some(r.started_us)),
        own::instants(rows, |r| Some(r.ended_us)),
        own::texts(rows, |r| Some(&r.ran_by)),
        own::texts(rows, |r| Some(&r.environment)),
    ];
    own::append(table, name, schema(), columns).await
}

/// `tidemark.model_tests`, if a test has run.
pub async fn existing(wh: &Warehouse) -> Result<Option<DeltaTable>> {
    own::existing(wh, MODEL_TESTS).await
}

/// The newest run of every (model, test) the table holds, by model then test;
/// none when no test has run. Read directly from the Delta table (the console
/// shows outcomes to roles that have no grant on `tidemark.*`, and filters them
/// itself by the models each role reads).
pub async fn last_model_tests(wh: &Warehouse) -> Result<Vec<ModelTestRow>> {
    let Some(table) = existing(wh).await? else {
        return Ok(Vec::new());
    };
    let full = format!("{OWN_SCHEMA}.{MODEL_TESTS}");
    let err = |e: &dyn std::fmt::Display| Error::Batch {
        table: full.clone(),
        message: e.to_string(),
    };
    let provider = table.table_provider().await.map_err(|e| err(&e))?;
    let ctx = SessionContext::new();
    ctx.register_table("t", provider).map_err(|e| err(&e))?;
    // Ties (one invocation ends two runs of a test in the same µs) go to the
    // later start, then to either: both are that invocation's.
    let batches: Vec<RecordBatch> = async {
        ctx.sql(
            "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY model, test \
             ORDER BY ended_at DESC, started_at DESC) AS __n FROM t) WHERE __n = 1 \
             ORDER BY model, test",
        )
        .await?
        .collect()
        .await
    }
    .await
    .map_err(|e| err(&e))?;
    let mut out = Vec::new();
    for b in &batches {
        let text = |c: &str, i: usize| -> Option<String> {
            let a = b.column_by_name(c)?;
            if a.is_null(i) {
                return None;
            }
            a.as_string_opt::<i32>()
                .map(|s| s.value(i).to_string())
                .or_else(|| a.as_string_view_opt().map(|s| s.value(i).to_string()))
        };
        let instant = |c: &str, i: usize| {
            b.column_by_name(c)
                .and_then(|a| a.as_primitive_opt::<TimestampMicrosecondType>())
                .map_or(0, |a| a.value(i))
        };
        for i in 0..b.num_rows() {
            out.push(ModelTestRow {
                model: text("model", i).unwrap_or_default(),
                test: text("test", i).unwrap_or_default(),
                severity: text("severity", i).unwrap_or_default(),
                outcome: text("outcome", i).unwrap_or_default(),
                failing_rows: b
                    .column_by_name("failing_rows")
                    .and_then(|a| a.as_primitive_opt::<Int64Type>())
                    .map_or(0, |a| a.value(i)),
                failing_sample: text("failing_sample", i),
                error: text("error", i),
                started_us: instant("started_at", i),
                ended_us: instant("ended_at", i),
                ran_by: text("ran_by", i).unwrap_or_default(),
                environment: text("environment", i).unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, test: &str, outcome: &str, ended_us: i64) -> ModelTestRow {
        ModelTestRow {
            model: model.into(),
            test: test.into(),
            severity: "error".into(),
            outcome: outcome.into(),
            failing_rows: if outcome == "fail" { 2 } else { 0 },
            failing_sample: (outcome == "fail").then(|| "(id=1)\n(id=1)".to_string()),
            error: None,
            started_us: ended_us - 10,
            ended_us,
            ran_by: "tidemark test".into(),
            environment: "dev".into(),
        }
    }

    #[tokio::test]
    async fn rows_land_one_commit_per_call_and_the_newest_run_of_each_test_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let wh = Warehouse::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
        assert!(last_model_tests(&wh).await.unwrap().is_empty());
        let first = record_model_tests(
            &wh,
            &[
                row("orders", "unique(id)", "fail", 1_000),
                row("orders", "not_null(id)", "pass", 1_000),
            ],
        )
        .await
        .unwrap();
        // Created, then one append.
        assert_eq!(first.version(), Some(1));
        let second = record_model_tests(&wh, &[row("orders", "unique(id)", "pass", 2_000)])
            .await
            .unwrap();
        assert_eq!(second.version(), Some(2));
        let last = last_model_tests(&wh).await.unwrap();
        assert_eq!(
            last,
            [
                row("orders", "not_null(id)", "pass", 1_000),
                row("orders", "unique(id)", "pass", 2_000),
            ]
        );
    }
}
