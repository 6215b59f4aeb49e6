//! `tidemark build`: the selected models in dependency order, independent ones at
//! once, each landed in one commit with the input versions it read.
//!
//! A model is skipped (up to date) when its SQL and every input's version are what
//! its last build committed; so a build that landed its commit and died before
//! saying so is not made twice. A model that fails stops the models that read it;
//! the others go on, and the report says which failed and why.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tidemark_core::position::{InputMark, ModelProgress};
use tidemark_lake::{TableKind, Warehouse};
use tidemark_query::Engine;
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::graph;
use crate::land;
use crate::project::{Materialized, Model, Project, Strategy};
use crate::render::sql_hash;

/// What to build and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// dbt selectors (`model`, `+model`, `model+`, `tag:x`, `path:dir`); none: all.
    pub select: Vec<String>,
    /// Build the selected models whole, moving their tables (and history) aside first.
    pub full_refresh: bool,
    /// Models built at once (at least 1).
    pub threads: usize,
    /// A progress bar on the terminal.
    pub progress: bool,
    /// Who runs the build, for the data tests' rows in `tidemark.model_tests`.
    pub ran_by: crate::record::RanBy,
}

/// What a build did to one model.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Landed.
    Built(Built),
    /// Its SQL and inputs are what its last build read: nothing to do.
    UpToDate,
    /// It failed; the message names the file and what to do.
    Failed(String),
    /// Not built because a model it reads failed or was skipped.
    Skipped(String),
}

impl Outcome {
    /// Whether the models downstream must not build on it.
    pub fn blocks(&self) -> bool {
        match self {
            Outcome::Failed(_) | Outcome::Skipped(_) => true,
            Outcome::Built(b) => !b.failed_tests.is_empty(),
            Outcome::UpToDate => false,
        }
    }

    /// Why it blocks, for messages.
    pub fn reason(&self) -> String {
        match self {
            Outcome::Failed(e) | Outcome::Skipped(e) => e.clone(),
            Outcome::Built(b) => b.failed_tests.join("\n"),
            Outcome::UpToDate => String::new(),
        }
    }
}

/// A landed build.
#[derive(Debug, Clone, Default)]
pub struct Built {
    /// The build's number (1 for the first).
    pub build: i64,
    /// Rows the model's query returned.
    pub rows: u64,
    /// Keys new since the last build.
    pub inserted: u64,
    /// Keys whose row changed.
    pub updated: u64,
    /// Keys gone.
    pub deleted: u64,
    /// Built from its inputs' changes only.
    pub incremental: bool,
    /// An append build: the rows of its inputs' new rows, added (`inserted`).
    pub appended: bool,
    /// A view: its definition was stored (nothing else is).
    pub view: bool,
    /// Why an incremental model was built whole, if it was.
    pub full_because: Option<String>,
    /// The input an incremental build read from its history log's tail alone (the
    /// rows landed since its last compaction), not from its whole table: every key
    /// to recompute had changed there ([`crate::incremental::tail_only`]).
    pub from_tail: Option<String>,
    /// Wall time.
    pub millis: u64,
    /// Data tests of severity `error` that failed (the models downstream were not
    /// built), with their messages.
    pub failed_tests: Vec<String>,
    /// Data tests of severity `warn` that failed.
    pub warned_tests: Vec<String>,
}

/// Every selected model's outcome, in build order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// (model, outcome).
    pub models: Vec<(String, Outcome)>,
}

impl Report {
    /// Models that failed, failed their tests, or were skipped.
    pub fn failures(&self) -> Vec<(&str, &Outcome)> {
        self.models
            .iter()
            .filter(|(_, o)| o.blocks())
            .map(|(n, o)| (n.as_str(), o))
            .collect()
    }

    /// The outcome of `model`.
    pub fn get(&self, model: &str) -> Option<&Outcome> {
        self.models.iter().find(|(n, _)| n == model).map(|(_, o)| o)
    }
}

/// Build the selected models of `project` into `wh`, reading through `engine` (one
/// over `wh`, or, for a deferred environment, over `wh` and another environment's
/// warehouse read-only: [`crate::defer`]). Everything a build writes (model tables,
/// their history, views, what `--full-refresh` moves aside) goes to `wh`, and only
/// there: the writers are made for `wh` alone, and `engine` writes nowhere.
pub async fn build(
    wh: &Warehouse,
    engine: Arc<Engine>,
    project: &Project,
    options: &Options,
) -> Result<Report, String> {
    if wh.is_read_only() {
        return Err(format!(
            "warehouse {} is open read-only: a build writes to its own environment's warehouse",
            wh.root()
        ));
    }
    let selected = graph::select(project, &options.select)?;
    let cycles = graph::cycles(project);
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    for name in &selected {
        if let Some(e) = project.broken.get(name) {
            outcomes.insert(name.clone(), Outcome::Failed(e.to_string()));
        } else if let Some(cycle) = cycles.get(name) {
            outcomes.insert(
                name.clone(),
                Outcome::Failed(
                    Error::Cycle {
                        cycle: cycle.clone(),
                    }
                    .to_string(),
                ),
            );
        }
    }
    // A full refresh moves the tables aside first, and the engine forgets them, so
    // nothing reads a table that is being built anew.
    if options.full_refresh {
        for name in &selected {
            let Some(m) = project.models.get(name) else {
                continue;
            };
            match wh.retire(&m.target.schema, &m.target.table).await {
                Ok(Some(to)) => {
                    info!(model = %name, moved_to = %to, "full refresh: the model's table so far moved aside")
                }
                Ok(None) => {}
                Err(e) => {
                    outcomes.insert(
                        name.clone(),
                        Outcome::Failed(Error::lake(name, e).to_string()),
                    );
                }
            }
        }
        engine
            .refresh()
            .await
            .map_err(|e| format!("reading the warehouse again: {e}"))?;
    }
    let mut pending: BTreeSet<String> = selected
        .iter()
        .filter(|n| !outcomes.contains_key(*n))
        .cloned()
        .collect();
    let bar = if options.progress {
        let b = ProgressBar::new(selected.len() as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} models  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    bar.inc(outcomes.len() as u64);
    // Plans are made under the read side, refreshes (after a model lands, so the
    // models reading it see it) under the write side: the input versions a build
    // records are the ones its plan reads.
    let gate = Arc::new(tokio::sync::RwLock::new(()));
    let mut order = Vec::new();
    let mut running = FuturesUnordered::new();
    let threads = options.threads.max(1);
    // Every data test's result, kept in one commit once the build ends.
    let mut tested: Vec<crate::testing::TestResult> = Vec::new();
    loop {
        // Start what is ready; skip what cannot be built.
        let mut progressed = true;
        while progressed {
            progressed = false;
            let names: Vec<String> = pending.iter().cloned().collect();
            for name in names {
                if running.len() >= threads {
                    break;
                }
                let m = &project.models[&name];
                let deps: Vec<&String> = m.deps.iter().filter(|d| selected.contains(*d)).collect();
                if let Some(bad) = deps
                    .iter()
                    .find(|d| outcomes.get(**d).is_some_and(Outcome::blocks))
                {
                    let o = Outcome::Skipped(
                        Error::Upstream {
                            model: name.clone(),
                            upstream: bad.to_string(),
                        }
                        .to_string(),
                    );
                    warn!(model = %name, upstream = %bad, "not built: a model it reads failed");
                    outcomes.insert(name.clone(), o);
                    pending.remove(&name);
                    bar.inc(1);
                    progressed = true;
                    continue;
                }
                if deps.iter().all(|d| outcomes.contains_key(*d)) {
                    pending.remove(&name);
                    bar.set_message(name.clone());
                    let (wh, engine, gate) = (wh.clone(), engine.clone(), gate.clone());
                    let model = m.clone();
                    let full_refresh = options.full_refresh;
                    // A task of its own: a build suspended while it holds the
                    // planning lock must go on while this loop waits to refresh.
                    let name = model.name.clone();
                    let task = tokio::spawn(async move {
                        build_one(&wh, &engine, &gate, &model, full_refresh).await
                    });
                    running.push(async move {
                        let r = task.await.unwrap_or_else(|e| {
                            Err(Error::Sql {
                                model: name.clone(),
                                path: Default::default(),
                                message: format!("the build task failed: {e}"),
                            })
                        });
                        (name, r)
                    });
                    progressed = true;
                }
            }
        }
        let Some((name, r)) = running.next().await else {
            break;
        };
        let mut outcome = match r {
            Ok(o) => o,
            Err(e) => {
                warn!(model = %name, error = %e, "model failed; the models that read it are skipped");
                Outcome::Failed(e.to_string())
            }
        };
        if let Outcome::Built(b) = &mut outcome {
            {
                let _exclusive = gate.write().await;
                if let Err(e) = engine.refresh().await {
                    warn!(error = %e, "reading the warehouse again after a build failed; the models that read it may see the previous build");
                }
            }
            // Its data tests, before anything reads it.
            let m = &project.models[&name];
            match crate::testing::declared(project, m) {
                Ok(tests) if !tests.is_empty() => {
                    let _shared = gate.read().await;
                    let ctx = engine.session_context();
                    for r in crate::testing::run(&ctx, &m.target, &tests).await {
                        if !r.passed() {
                            warn!(model = %name, test = %r.test.name, failures = r.failures, "data test failed");
                            match r.test.severity {
                                crate::testing::Severity::Error => b.failed_tests.push(r.message()),
                                crate::testing::Severity::Warn => b.warned_tests.push(r.message()),
                            }
                        }
                        tested.push(r);
                    }
                }
                Ok(_) => {}
                Err(e) => b.failed_tests.push(e),
            }
        }
        bar.inc(1);
        order.push(name.clone());
        outcomes.insert(name, outcome);
    }
    bar.finish_and_clear();
    let who = if options.ran_by.who.is_empty() {
        "tidemark build"
    } else {
        options.ran_by.who.as_str()
    };
    let rows: Vec<_> = tested
        .iter()
        .map(|r| crate::record::row(r, who, &options.ran_by.environment))
        .collect();
    crate::record::record(wh, &rows).await;
    // Failures found before building first, then the build order.
    let mut models: Vec<(String, Outcome)> = Vec::new();
    for (n, o) in &outcomes {
        if !order.contains(n) {
            models.push((n.clone(), o.clone()));
        }
    }
    for n in order {
        let o = outcomes.remove(&n).expect("recorded");
        models.push((n, o));
    }
    Ok(Report { models })
}

/// The versions of the landed tables `model` reads, as the engine has them loaded.
async fn input_marks(engine: &Engine, model: &Model) -> Result<BTreeMap<String, InputMark>, Error> {
    let mut marks = BTreeMap::new();
    for t in &model.reads {
        let Some(hist) = engine.loaded_history(&t.schema, &t.table) else {
            continue;
        };
        let state = tidemark_lake::committed_state(&hist)
            .await
            .map_err(|source| Error::lake(&model.name, source))?
            .state;
        marks.insert(
            t.to_string(),
            InputMark {
                version: hist.version().map_or(-1, |v| v as i64),
                ingest_us: state.last_ingest_us.unwrap_or(i64::MIN),
                table_id: hist
                    .snapshot()
                    .map(|s| s.metadata().id().to_string())
                    .unwrap_or_default(),
                // Read from another environment's warehouse (a deferred build): its
                // versions are that warehouse's, never mistaken for this one's.
                deferred_from: engine.deferred_root(&t.schema, &t.table),
            },
        );
    }
    Ok(marks)
}

async fn build_one(
    wh: &Warehouse,
    engine: &Engine,
    gate: &tokio::sync::RwLock<()>,
    model: &Model,
    full_refresh: bool,
) -> Result<Outcome, Error> {
    let started = Instant::now();
    let lake = |source| Error::lake(&model.name, source);
    let sql_err = |e: &dyn std::fmt::Display| Error::Sql {
        model: model.name.clone(),
        path: model.path.clone(),
        message: e.to_string(),
    };
    let t = &model.target;
    if model.config.materialized == Materialized::View {
        return build_view(wh, engine, model, started).await;
    }
    let url = wh.table_url(&t.schema, &t.table, TableKind::History);
    let (delta, exists) = wh.delta_table(&url).await.map_err(lake)?;
    let previous = if exists {
        tidemark_lake::committed_state(&delta)
            .await
            .map_err(lake)?
            .state
            .model
    } else {
        None
    };
    let hash = sql_hash(&model.sql);
    let build = previous.as_ref().map_or(1, |p| p.build + 1);
    let mut phases = Phases::new();
    let (df, marks, read) = {
        let _shared = gate.read().await;
        let marks = input_marks(engine, model).await?;
        // Up to date only when every table it reads has a version to compare: a
        // table jobs write, say, has none here, and is read again each build.
        let all_versioned = model
            .reads
            .iter()
            .all(|t| marks.contains_key(&t.to_string()));
        if all_versioned
            && previous
                .as_ref()
                .is_some_and(|p| p.sql_hash == hash && p.inputs == marks)
        {
            return Ok(Outcome::UpToDate);
        }
        let full = engine.sql(&model.sql).await.map_err(|e| sql_err(&e))?;
        let read = how_to_read(
            engine,
            model,
            &full,
            previous.as_ref(),
            &hash,
            full_refresh,
            &marks,
        )
        .await?;
        phases.done("plan");
        let df = match &read {
            Read::Keys { plan, .. } | Read::Appended { plan: Some(plan) } => engine
                .session_context()
                .execute_logical_plan(plan.clone())
                .await
                .map_err(|e| sql_err(&e))?,
            // No input gained a row: nothing to append (the new versions still land).
            Read::Appended { plan: None } => full.limit(0, Some(0)).map_err(|e| sql_err(&e))?,
            Read::Filtered => {
                let isql = model.incremental_sql.as_deref().expect("dbt-style");
                engine.sql(isql).await.map_err(|e| sql_err(&e))?
            }
            Read::Whole { .. } => full,
        };
        (df, marks, read)
    };
    let incremental = !matches!(read, Read::Whole { .. });
    // Rows are added, never changed: an append model's incremental builds.
    let appending = incremental && model.config.strategy == Strategy::Append;
    let result_schema = df.schema().as_arrow().clone();
    let task = Arc::new(df.task_ctx());
    let physical = df.create_physical_plan().await.map_err(|e| sql_err(&e))?;
    let batches = deltalake::datafusion::physical_plan::collect(physical.clone(), task)
        .await
        .map_err(|e| sql_err(&e))?;
    phases.done("query");
    // What a slow build read, operator by operator (RUST_LOG=tidemark_models=debug).
    if tracing::enabled!(tracing::Level::DEBUG) {
        let shown =
            deltalake::datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(
                physical.as_ref(),
            )
            .indent(true)
            .to_string();
        tracing::debug!(model = %model.name, plan = %shown, "the build's query, executed");
    }
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let schema = land::table_schema(model, &result_schema)?;
    // Checked before the table is touched: a refused result lands nothing.
    land::check_keys(
        model,
        &schema.key_names(),
        // The batches' own schema: the plan's may differ in nullability.
        batches
            .first()
            .map(|b| b.schema())
            .unwrap_or_else(|| Arc::new(result_schema.clone())),
        &batches,
    )
    .await?;
    let mut writer = land::open(wh, model, schema).await?;
    let schema = writer.schema().clone();
    let ts = chrono::Utc::now().timestamp_micros();
    let result = land::change_batch(model, &schema, &batches, ts, build)?;
    let position = format!("build:{build}");
    let (changed, gone) = match &read {
        // Whole: every key the result lacks is gone.
        Read::Whole { .. } => (
            writer
                .changed(TableKind::Current, &result)
                .await
                .map_err(lake)?,
            writer
                .missing(TableKind::Current, &result, ts, &position)
                .await
                .map_err(lake)?,
        ),
        // From the changes: the recomputed keys the result lacks, compared with the
        // model's rows of those keys only.
        Read::Keys { keys, .. } => writer
            .changed_among(TableKind::Current, &result, keys, ts, &position)
            .await
            .map_err(lake)?,
        // The template's filter decided what was read: nothing is known gone. An
        // append removes nothing.
        Read::Filtered | Read::Appended { .. } => (
            writer
                .changed(TableKind::Current, &result)
                .await
                .map_err(lake)?,
            tidemark_lake::concat(&schema, &[]).map_err(lake)?,
        ),
    };
    phases.done("diff");
    let (inserted, updated) = ops(&changed);
    // An appended row whose key the table holds would be a row twice (or a changed
    // one): refused, nothing written.
    if appending && inserted < rows {
        // Another build of the model that landed meanwhile holds them: said as its
        // commit would say it.
        let (now, _) = wh.delta_table(&url).await.map_err(lake)?;
        let newest = tidemark_lake::committed_state(&now)
            .await
            .map_err(lake)?
            .state
            .model
            .map(|m| m.build);
        let after = previous.as_ref().map(|p| p.build);
        if newest != after {
            return Err(land::raced(model, newest, after));
        }
        return Err(Error::Result {
            model: model.name.clone(),
            path: model.path.clone(),
            message: format!(
                "{} of the {rows} row(s) this build would append have a {} the table already holds: an append model holds each row once. Give its rows a column that tells them apart (their input's key){}",
                rows - inserted,
                if model.config.unique_key.is_empty() {
                    "row that".to_string()
                } else {
                    format!("unique_key ({}) that", model.config.unique_key.join(", "))
                },
                if model.incremental_sql.is_some() {
                    ", or filter out what was appended before under {% if is_incremental() %}"
                } else {
                    ""
                }
            ),
        });
    }
    let deleted = gone.data.num_rows() as u64;
    let all = tidemark_lake::concat(&schema, &[changed, gone]).map_err(lake)?;
    let progress = ModelProgress {
        build,
        sql_hash: hash,
        inputs: marks,
    };
    land::commit(
        &mut writer,
        model,
        &all,
        progress,
        previous.as_ref().map(|p| p.build),
    )
    .await?;
    phases.done("commit");
    if let Err(e) = writer.compact_if_due().await {
        warn!(model = %model.name, error = %e, "compaction failed; reads merge the tail meanwhile, and the next build tries again");
    }
    let built = Built {
        build,
        rows,
        inserted,
        updated,
        deleted,
        incremental,
        appended: appending,
        view: false,
        full_because: match &read {
            Read::Whole { because } => because.clone(),
            _ => None,
        },
        from_tail: match &read {
            Read::Keys { from_tail, .. } => from_tail.as_ref().map(|t| t.to_string()),
            _ => None,
        },
        millis: started.elapsed().as_millis() as u64,
        failed_tests: Vec::new(),
        warned_tests: Vec::new(),
    };
    info!(model = %model.name, build, rows, inserted, updated, deleted, ms = built.millis, phases = %phases, "model built");
    Ok(Outcome::Built(built))
}

/// Where a build's time went, for the log line that reports it: an operator asking
/// why an incremental build is slow needs to know which step read too much.
struct Phases {
    last: Instant,
    spent: Vec<(&'static str, u128)>,
}

impl Phases {
    fn new() -> Self {
        Self {
            last: Instant::now(),
            spent: Vec::new(),
        }
    }

    /// `name` took the time since the previous step ended.
    fn done(&mut self, name: &'static str) {
        let now = Instant::now();
        self.spent.push((name, (now - self.last).as_millis()));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, ms)) in self.spent.iter().enumerate() {
            write!(f, "{}{name} {ms} ms", if i == 0 { "" } else { ", " })?;
        }
        Ok(())
    }
}

/// How a build reads its inputs.
enum Read {
    /// The model's SQL as it is (`because`: why an incremental model is built whole).
    Whole { because: Option<String> },
    /// Every input restricted to the keys its changes touched.
    Keys {
        plan: deltalake::datafusion::logical_expr::LogicalPlan,
        keys: deltalake::arrow::array::RecordBatch,
        /// The input read from its tail alone, if one was.
        from_tail: Option<crate::render::Target>,
    },
    /// The template's own `is_incremental()` SQL (dbt's way).
    Filtered,
    /// An append build: the model over its inputs' new rows
    /// ([`crate::incremental::append_plan`]); `None` when no input gained a row.
    Appended {
        plan: Option<deltalake::datafusion::logical_expr::LogicalPlan>,
    },
}

/// Decide how `model` reads: whole (tables; incremental models on a first build,
/// after a SQL change, on --full-refresh, when an input was landed again or is read
/// from another warehouse than last time, or when the key cannot be followed), from
/// the keys its inputs' changes touched, from its inputs' new rows (append), or
/// through its template's filter. An append model that cannot be appended to from
/// its inputs' new rows is refused, on its first build too.
async fn how_to_read(
    engine: &Engine,
    model: &Model,
    full: &deltalake::datafusion::dataframe::DataFrame,
    previous: Option<&ModelProgress>,
    hash: &str,
    full_refresh: bool,
    marks: &BTreeMap<String, InputMark>,
) -> Result<Read, Error> {
    if model.config.materialized != Materialized::Incremental {
        return Ok(Read::Whole { because: None });
    }
    let append = model.config.strategy == Strategy::Append;
    let inputs: BTreeSet<crate::render::Target> = model
        .reads
        .iter()
        .filter(|t| marks.contains_key(&t.to_string()))
        .cloned()
        .collect();
    let refused = |why: String| {
        Error::Result {
        model: model.name.clone(),
        path: model.path.clone(),
        message: format!(
            "incremental_strategy = 'append': {why}. An append build makes the new rows of a model that selects, projects and inner-joins landed tables from their new rows; make it incremental_strategy = 'merge' with a unique_key, or filter what is new yourself under {{% if is_incremental() %}}"
        ),
    }
    };
    if append && model.incremental_sql.is_none() {
        crate::incremental::appendable(full.logical_plan(), &inputs).map_err(refused)?;
    }
    let because = |why: &str| Read::Whole {
        because: Some(why.to_string()),
    };
    let Some(previous) = previous else {
        return Ok(because("first build"));
    };
    if full_refresh {
        return Ok(because("--full-refresh"));
    }
    if previous.sql_hash != hash {
        return Ok(because("its SQL changed"));
    }
    if model.incremental_sql.is_some() {
        return Ok(Read::Filtered);
    }
    if let Some(why) = crate::incremental::moved(&previous.inputs, marks) {
        return Ok(because(&why));
    }
    if append {
        return appended(engine, model, full, &inputs, &previous.inputs, marks)
            .await
            .map_err(|e| Error::Sql {
                model: model.name.clone(),
                path: model.path.clone(),
                message: format!("reading the rows its inputs landed since its last build: {e}"),
            });
    }
    Ok(
        match keys_to_rebuild(engine, model, full, &previous.inputs, marks).await {
            Ok((plan, keys, from_tail)) => Read::Keys {
                plan,
                keys,
                from_tail,
            },
            Err(why) => because(&why),
        },
    )
}

/// An append build's plan: the model over the rows its inputs first landed between
/// `from` and `to`.
async fn appended(
    engine: &Engine,
    model: &Model,
    full: &deltalake::datafusion::dataframe::DataFrame,
    inputs: &BTreeSet<crate::render::Target>,
    from: &BTreeMap<String, InputMark>,
    to: &BTreeMap<String, InputMark>,
) -> Result<Read, String> {
    let mut new = BTreeMap::new();
    for t in inputs {
        let name = t.to_string();
        let (Some(m1), Some(m2)) = (from.get(&name), to.get(&name)) else {
            return Err(format!("{name} has no recorded version"));
        };
        if m1 == m2 {
            continue;
        }
        new.insert(
            t.clone(),
            crate::incremental::new_keys(engine, t, m1, m2).await?,
        );
    }
    let rows: usize = new.values().map(|(_, k)| k.num_rows()).sum();
    info!(model = %model.name, new_input_rows = rows, "append: the rows of the input rows landed since the last build");
    Ok(Read::Appended {
        plan: crate::incremental::append_plan(full.logical_plan(), &new)?,
    })
}

/// The plan restricted to the keys the inputs' changes since `from` touched, with
/// those keys; `Err` says why the model must be built whole.
async fn keys_to_rebuild(
    engine: &Engine,
    model: &Model,
    full: &deltalake::datafusion::dataframe::DataFrame,
    from: &BTreeMap<String, InputMark>,
    to: &BTreeMap<String, InputMark>,
) -> Result<
    (
        deltalake::datafusion::logical_expr::LogicalPlan,
        deltalake::arrow::array::RecordBatch,
        Option<crate::render::Target>,
    ),
    String,
> {
    let plan = full.logical_plan().clone();
    let key = &model.config.unique_key;
    let inputs: std::collections::BTreeSet<crate::render::Target> = model
        .reads
        .iter()
        .filter(|t| to.contains_key(&t.to_string()))
        .cloned()
        .collect();
    let lineage = crate::incremental::lineage(&plan, key, &inputs)?;
    let typed: Vec<(String, deltalake::arrow::datatypes::DataType)> = key
        .iter()
        .map(|k| {
            plan.schema()
                .fields()
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(k))
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .ok_or_else(|| format!("the result has no column {k}"))
        })
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let keys = crate::incremental::affected_keys(engine, &lineage, &typed, from, to).await?;
    info!(model = %model.name, keys = keys.num_rows(), inputs = lineage.len(), ms = started.elapsed().as_millis() as u64, "incremental: recomputing the keys the inputs' changes touched");
    let restricted = crate::incremental::restrict(plan, &lineage, &keys)?;
    // Keys that all have rows in the input's tail: the base is left out, so the
    // build reads what landed since the last compaction, not the whole input.
    if let Some(t) = crate::incremental::tail_only(engine, &lineage, from, to) {
        match crate::incremental::read_tail_only(restricted.clone(), &t) {
            Ok(p) => {
                info!(model = %model.name, input = %t, "incremental: reading the input's changed rows from its tail alone");
                return Ok((p, keys, Some(t)));
            }
            Err(why) => {
                debug!(model = %model.name, input = %t, why, "incremental: the input's base is read")
            }
        }
    }
    Ok((restricted, keys, None))
}

/// A view: its definition is stored (replaced when its SQL changed) once the SQL is
/// known to plan, and the engine serves it from the next refresh.
async fn build_view(
    wh: &Warehouse,
    engine: &Engine,
    model: &Model,
    started: Instant,
) -> Result<Outcome, Error> {
    let t = &model.target;
    if engine.landed_schema(&t.schema, &t.table).is_some() {
        return Err(Error::Result {
            model: model.name.clone(),
            path: model.path.clone(),
            message: format!(
                "{t} is a landed table; a view cannot take its name (give the model another name or schema)"
            ),
        });
    }
    let defs = tidemark_lake::ViewDefs::open(wh).map_err(|e| Error::lake(&model.name, e))?;
    let current = defs.list().await.map_err(|e| Error::lake(&model.name, e))?;
    if current
        .iter()
        .any(|d| d.schema == t.schema && d.name == t.table && d.sql == model.sql)
    {
        return Ok(Outcome::UpToDate);
    }
    // It must plan before it is stored: a broken view is this model's error, not
    // something the engine finds later.
    engine.sql(&model.sql).await.map_err(|e| Error::Sql {
        model: model.name.clone(),
        path: model.path.clone(),
        message: e.to_string(),
    })?;
    defs.put(&tidemark_lake::ViewDef {
        schema: t.schema.clone(),
        name: t.table.clone(),
        sql: model.sql.clone(),
        model: model.name.clone(),
    })
    .await
    .map_err(|e| Error::lake(&model.name, e))?;
    info!(model = %model.name, "view defined");
    Ok(Outcome::Built(Built {
        build: 1,
        view: true,
        millis: started.elapsed().as_millis() as u64,
        ..Default::default()
    }))
}

/// Inserts and updates in a diff.
fn ops(batch: &tidemark_core::change::ChangeBatch) -> (u64, u64) {
    use deltalake::arrow::array::{Array, AsArray};
    let Some(op) = batch.data.column_by_name(tidemark_core::schema::OP) else {
        return (0, 0);
    };
    let op = op.as_string::<i32>();
    let (mut c, mut u) = (0, 0);
    for i in 0..op.len() {
        match op.value(i) {
            "c" => c += 1,
            _ => u += 1,
        }
    }
    (c, u)
}

/// What `tidemark test` found for one model: its data tests and unit tests.
#[derive(Debug, Clone)]
pub struct Tested {
    /// The model.
    pub model: String,
    /// Data tests.
    pub data: Vec<crate::testing::TestResult>,
    /// Unit tests: (name, `Err(difference)`).
    pub unit: Vec<(String, Result<(), String>)>,
    /// Declarations that could not be read.
    pub errors: Vec<String>,
}

impl Tested {
    /// Failures that count (data tests of severity error, unit tests, errors).
    pub fn failures(&self) -> Vec<String> {
        let mut out = self.errors.clone();
        for r in &self.data {
            if !r.passed() && r.test.severity == crate::testing::Severity::Error {
                out.push(r.message());
            }
        }
        for (n, r) in &self.unit {
            if let Err(e) = r {
                out.push(format!("unit test {n} of model {}: {e}", self.model));
            }
        }
        out
    }
}

/// Run the selected models' tests without building: data tests on their landed
/// tables, unit tests on their fixtures (`engine` `None`: no warehouse is read).
/// With `record`, the data tests' outcomes are appended to that warehouse's
/// `tidemark.model_tests` (the environment's own, also when `engine` reads a
/// deferred one), in one commit.
pub async fn test(
    engine: Option<&Engine>,
    project: &Project,
    select: &[String],
    record: Option<(&Warehouse, &crate::record::RanBy)>,
) -> Result<Vec<Tested>, String> {
    let selected = graph::select(project, select)?;
    let mut out = Vec::new();
    for name in &selected {
        let Some(m) = project.models.get(name) else {
            let e = project
                .broken
                .get(name)
                .map(|e| e.to_string())
                .unwrap_or_default();
            out.push(Tested {
                model: name.clone(),
                data: Vec::new(),
                unit: Vec::new(),
                errors: vec![e],
            });
            continue;
        };
        let mut t = Tested {
            model: name.clone(),
            data: Vec::new(),
            unit: crate::testing::unit_tests(project, m).await,
            errors: Vec::new(),
        };
        if let Some(engine) = engine {
            match crate::testing::declared(project, m) {
                Ok(tests) => {
                    t.data = crate::testing::run(&engine.session_context(), &m.target, &tests).await
                }
                Err(e) => t.errors.push(e),
            }
        }
        out.push(t);
    }
    if let Some((wh, ran_by)) = record {
        let who = if ran_by.who.is_empty() {
            "tidemark test"
        } else {
            ran_by.who.as_str()
        };
        let rows: Vec<_> = out
            .iter()
            .flat_map(|t| &t.data)
            .map(|r| crate::record::row(r, who, &ran_by.environment))
            .collect();
        crate::record::record(wh, &rows).await;
    }
    Ok(out)
}
