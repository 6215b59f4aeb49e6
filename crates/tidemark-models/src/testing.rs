//! Data tests (`tidemark test`, and after each model in `tidemark build`) and unit
//! tests on inline fixtures.
//!
//! Data tests are declared per column in a model's sidecar, as dbt declares them:
//!
//! ```toml
//! [columns.customer_id]
//! tests = ["unique", "not_null",
//!          { relationships = { to = "invoicing.customers", field = "id" } }]
//! [columns.status]
//! tests = [{ accepted_values = { values = ["open", "paid"], severity = "warn" } }]
//! ```
//!
//! and as SQL files under `<models>/tests/` that return the failing rows (templated
//! like models: `ref`, `source`, `var`). A test fails when it returns rows; at
//! severity `error` (the default) the models downstream of its model are not built.
//!
//! Unit tests (`[[unit_tests]]` in a sidecar) run a model's SQL on fixture rows given
//! inline, without a warehouse, and compare with the expected rows (dbt 1.8's unit
//! tests).

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::util::display::array_value_to_string;
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::functions_aggregate::expr_fn::count;
use deltalake::datafusion::logical_expr::{col, lit, Expr, JoinType};
use deltalake::datafusion::prelude::SessionContext;
use serde::Deserialize;

use crate::project::{Model, Project};
use crate::render::Target;

/// How bad a failing test is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Stops the models downstream.
    #[default]
    Error,
    /// Reported only.
    Warn,
}

/// One data test.
#[derive(Debug, Clone, PartialEq)]
pub struct DataTest {
    /// The model it tests.
    pub model: String,
    /// Its name (`unique(customer_id)`, or a SQL test's file stem).
    pub name: String,
    /// What it checks.
    pub check: Check,
    /// How bad a failure is.
    pub severity: Severity,
}

/// What a data test checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// No two rows have the same value (NULLs aside).
    Unique(String),
    /// No NULL.
    NotNull(String),
    /// Every value is one of these.
    AcceptedValues(String, Vec<String>),
    /// Every non-NULL value is in `to`'s `field`.
    Relationships {
        /// The column.
        column: String,
        /// The table it refers to.
        to: Target,
        /// The column there.
        field: String,
    },
    /// A query whose rows are failures.
    Sql(String),
}

/// A test's outcome.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// The test.
    pub test: DataTest,
    /// Failing rows found (0: passed).
    pub failures: u64,
    /// A few of them, rendered.
    pub sample: Vec<String>,
    /// The query failed to run (that is a failure too).
    pub error: Option<String>,
    /// When it started and ended (µs, UTC), for `tidemark.model_tests`.
    pub started_us: i64,
    /// See `started_us`.
    pub ended_us: i64,
}

impl TestResult {
    /// Passed.
    pub fn passed(&self) -> bool {
        self.failures == 0 && self.error.is_none()
    }

    /// The message a failure shows: model, test, a few failing rows.
    pub fn message(&self) -> String {
        match &self.error {
            Some(e) => format!(
                "test {} of model {} could not run: {e}",
                self.test.name, self.test.model
            ),
            None => format!(
                "test {} of model {} failed: {} failing row(s), e.g. {}",
                self.test.name,
                self.test.model,
                self.failures,
                self.sample.join("; ")
            ),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValuesSpec {
    values: Vec<toml::Value>,
    #[serde(default)]
    severity: Severity,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RelSpec {
    to: String,
    field: String,
    #[serde(default)]
    severity: Severity,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PlainSpec {
    #[serde(default)]
    severity: Severity,
}

fn text_of(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The data tests declared for `model` (its sidecar's columns), or what is wrong
/// with a declaration.
pub fn declared(project: &Project, model: &Model) -> Result<Vec<DataTest>, String> {
    let mut out = Vec::new();
    for (column, doc) in &model.sidecar.columns {
        for t in &doc.tests {
            let (kind, spec) = match t {
                toml::Value::String(s) => (s.clone(), toml::Value::Table(Default::default())),
                toml::Value::Table(tab) if tab.len() == 1 => {
                    let (k, v) = tab.iter().next().expect("one");
                    (k.clone(), v.clone())
                }
                other => {
                    return Err(format!(
                        "{}: columns.{column}.tests: {other} is not a test (\"unique\", \"not_null\", {{ accepted_values = {{ values = […] }} }}, {{ relationships = {{ to = \"schema.table\", field = \"id\" }} }})",
                        model.name
                    ))
                }
            };
            let bad =
                |e: toml::de::Error| format!("{}: columns.{column}.tests {kind}: {e}", model.name);
            let (check, severity, name) = match kind.as_str() {
                "unique" => {
                    let s: PlainSpec = spec.try_into().map_err(bad)?;
                    (Check::Unique(column.clone()), s.severity, format!("unique({column})"))
                }
                "not_null" => {
                    let s: PlainSpec = spec.try_into().map_err(bad)?;
                    (Check::NotNull(column.clone()), s.severity, format!("not_null({column})"))
                }
                "accepted_values" => {
                    let s: ValuesSpec = spec.try_into().map_err(bad)?;
                    (
                        Check::AcceptedValues(column.clone(), s.values.iter().map(text_of).collect()),
                        s.severity,
                        format!("accepted_values({column})"),
                    )
                }
                "relationships" => {
                    let s: RelSpec = spec.try_into().map_err(bad)?;
                    // `to` is a model's name or a landed schema.table.
                    let to = match project.models.get(&s.to) {
                        Some(m) => m.target.clone(),
                        None => match s.to.split_once('.') {
                            Some((schema, table)) => Target {
                                schema: schema.into(),
                                table: table.into(),
                            },
                            None => {
                                return Err(format!(
                                    "{}: columns.{column}.tests relationships: to = {:?} is neither a model nor schema.table",
                                    model.name, s.to
                                ))
                            }
                        },
                    };
                    (
                        Check::Relationships {
                            column: column.clone(),
                            to: to.clone(),
                            field: s.field.clone(),
                        },
                        s.severity,
                        format!("relationships({column} → {to}.{})", s.field),
                    )
                }
                other => {
                    return Err(format!(
                        "{}: columns.{column}.tests: unknown test {other:?} (unique, not_null, accepted_values, relationships)",
                        model.name
                    ))
                }
            };
            out.push(DataTest {
                model: model.name.clone(),
                name,
                check,
                severity,
            });
        }
    }
    for t in &project.sql_tests {
        if t.model == model.name {
            out.push(t.clone());
        }
    }
    Ok(out)
}

fn quoted(c: &str) -> Expr {
    col(format!("\"{}\"", c.replace('"', "\"\"")))
}

async fn table(
    ctx: &SessionContext,
    t: &Target,
) -> deltalake::datafusion::error::Result<DataFrame> {
    ctx.table(TableReference::partial(t.schema.as_str(), t.table.as_str()))
        .await
}

/// The failing rows of `test` on `model`'s table, as a DataFrame.
async fn failing(
    ctx: &SessionContext,
    model: &Target,
    test: &DataTest,
) -> deltalake::datafusion::error::Result<DataFrame> {
    let df = || table(ctx, model);
    Ok(match &test.check {
        Check::Unique(c) => df()
            .await?
            .filter(quoted(c).is_not_null())?
            .aggregate(vec![quoted(c)], vec![count(lit(1)).alias("rows")])?
            .filter(col("rows").gt(lit(1i64)))?,
        Check::NotNull(c) => df().await?.filter(quoted(c).is_null())?,
        Check::AcceptedValues(c, values) => df()
            .await?
            .filter(
                deltalake::datafusion::logical_expr::cast(
                    quoted(c),
                    deltalake::arrow::datatypes::DataType::Utf8,
                )
                .in_list(values.iter().map(|v| lit(v.clone())).collect(), true)
                .and(quoted(c).is_not_null()),
            )?
            .aggregate(vec![quoted(c)], vec![count(lit(1)).alias("rows")])?,
        Check::Relationships { column, to, field } => {
            let other = table(ctx, to)
                .await?
                .select(vec![quoted(field).alias("__tidemark_ref")])?;
            df().await?
                .filter(quoted(column).is_not_null())?
                .join(
                    other,
                    JoinType::LeftAnti,
                    &[column.as_str()],
                    &["__tidemark_ref"],
                    None,
                )?
                .select(vec![quoted(column)])?
        }
        Check::Sql(sql) => ctx.sql(sql).await?,
    })
}

fn render_rows(batches: &[RecordBatch], limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            if out.len() >= limit {
                return out;
            }
            let cells: Vec<String> = b
                .schema()
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    format!(
                        "{}={}",
                        f.name(),
                        array_value_to_string(b.column(i), r).unwrap_or_default()
                    )
                })
                .collect();
            out.push(format!("({})", cells.join(", ")));
        }
    }
    out
}

/// Failing rows a result keeps (messages show them; `tidemark.model_tests` keeps
/// them, bounded in bytes too).
pub const SAMPLE_ROWS: usize = 5;

/// Run `tests` on `model`'s table through `ctx` (a session of the engine).
pub async fn run(ctx: &SessionContext, model: &Target, tests: &[DataTest]) -> Vec<TestResult> {
    let mut out = Vec::new();
    for t in tests {
        let started_us = chrono::Utc::now().timestamp_micros();
        let r = async {
            let df = failing(ctx, model, t).await?;
            let failures = df.clone().count().await? as u64;
            let sample = if failures > 0 {
                render_rows(
                    &df.limit(0, Some(SAMPLE_ROWS))?.collect().await?,
                    SAMPLE_ROWS,
                )
            } else {
                Vec::new()
            };
            Ok::<_, deltalake::datafusion::error::DataFusionError>((failures, sample))
        }
        .await;
        let ended_us = chrono::Utc::now().timestamp_micros();
        out.push(match r {
            Ok((failures, sample)) => TestResult {
                test: t.clone(),
                failures,
                sample,
                error: None,
                started_us,
                ended_us,
            },
            Err(e) => TestResult {
                test: t.clone(),
                failures: 0,
                sample: Vec::new(),
                error: Some(e.to_string()),
                started_us,
                ended_us,
            },
        });
    }
    out
}

/// One unit test of a model: fixture rows per input, the rows expected back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitTest {
    /// Its name.
    pub name: String,
    /// Per input (a model's name, or `db.table` as `source()` names it): its rows.
    pub given: BTreeMap<String, Vec<toml::Table>>,
    /// The rows the model must return (any order; only the columns named).
    pub expect: Vec<toml::Table>,
}

/// A batch from fixture rows (types inferred from the values, as JSON would be).
fn batch_of(rows: &[toml::Table]) -> Result<RecordBatch, String> {
    let values: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::to_value(r).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let schema = deltalake::arrow::json::reader::infer_json_schema_from_iterator(
        values.iter().map(|v| Ok(v.clone())),
    )
    .map_err(|e| e.to_string())?;
    let mut decoder = deltalake::arrow::json::ReaderBuilder::new(Arc::new(schema.clone()))
        .build_decoder()
        .map_err(|e| e.to_string())?;
    decoder.serialize(&values).map_err(|e| e.to_string())?;
    Ok(decoder
        .flush()
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| RecordBatch::new_empty(Arc::new(schema))))
}

/// Run a model's unit tests; each `Err` names the test and the difference.
pub async fn unit_tests(project: &Project, model: &Model) -> Vec<(String, Result<(), String>)> {
    let mut out = Vec::new();
    for t in &model.sidecar.unit_tests {
        let r = async {
            let ctx = SessionContext::new();
            let catalog = ctx.catalog("datafusion").ok_or("no default catalog")?;
            for (input, rows) in &t.given {
                let target = match project.models.get(input) {
                    Some(m) => m.target.clone(),
                    None => {
                        let (db, table) = input.split_once('.').ok_or_else(|| {
                            format!("given.{input:?}: name a model or a source as db.table")
                        })?;
                        project
                            .sources
                            .get(&(db.to_lowercase(), table.to_lowercase()))
                            .cloned()
                            .unwrap_or(Target {
                                schema: db.to_string(),
                                table: table.to_string(),
                            })
                    }
                };
                if catalog.schema(&target.schema).is_none() {
                    catalog
                        .register_schema(
                            &target.schema,
                            Arc::new(deltalake::datafusion::catalog::MemorySchemaProvider::new()),
                        )
                        .map_err(|e| e.to_string())?;
                }
                let b = batch_of(rows)?;
                let mem =
                    MemTable::try_new(b.schema(), vec![vec![b]]).map_err(|e| e.to_string())?;
                ctx.register_table(
                    TableReference::partial(target.schema.as_str(), target.table.as_str()),
                    Arc::new(mem),
                )
                .map_err(|e| e.to_string())?;
            }
            let got = ctx
                .sql(&model.sql)
                .await
                .map_err(|e| e.to_string())?
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            let expected = batch_of(&t.expect)?;
            let columns: Vec<String> = expected
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let pick = |batches: &[RecordBatch]| -> Result<Vec<String>, String> {
                let mut rows = Vec::new();
                for b in batches {
                    for r in 0..b.num_rows() {
                        let mut cells = Vec::new();
                        for c in &columns {
                            let a = b
                                .column_by_name(c)
                                .ok_or_else(|| format!("the model returns no column {c}"))?;
                            let text = array_value_to_string(a, r).map_err(|e| e.to_string())?;
                            cells.push(format!("{c}={}", normalize(&text)));
                        }
                        rows.push(cells.join(", "));
                    }
                }
                rows.sort();
                Ok(rows)
            };
            let (got, want) = (pick(&got)?, pick(&[expected])?);
            if got == want {
                Ok(())
            } else {
                Err(format!(
                    "expected rows:\n    {}\n  got:\n    {}",
                    want.join("\n    "),
                    got.join("\n    ")
                ))
            }
        }
        .await;
        out.push((t.name.clone(), r));
    }
    out
}

/// Numbers compared by value: `12.50` and `12.5` are the same amount.
fn normalize(s: &str) -> String {
    if s.parse::<f64>().is_ok() && s.contains('.') {
        let t = s.trim_end_matches('0').trim_end_matches('.');
        return t.to_string();
    }
    s.to_string()
}
