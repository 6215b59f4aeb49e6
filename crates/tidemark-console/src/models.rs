//! `GET /console/api/models`: the SQL models (tidemark-models) as the signed-in
//! user's role may see them: each model's settings, the tables it reads (the
//! resolved plan's, [`tidemark_models::graph`], not a match on the text), its
//! declared tests, and its last build as its table's newest commit records it
//! ([`ModelProgress`]: build number, SQL hash, input versions).
//!
//! The project is read from the models directory at each request, as a daemon's
//! build job reads it at each run, so an edited model shows at once.
//!
//! What a role learns is what its catalog lists, through tidemark-server's access
//! code ([`DirectSession::reads`]): a model whose table the role cannot read is not
//! listed, and a table it cannot read is never named, neither as another model's
//! input nor as a build's input version nor as a test's target; the page shows
//! "a table you cannot read" instead. Admin roles read everything, so they also see
//! models not built yet (no table to read), broken models with their error, and
//! the daemon's build jobs (whose names and triggers name tables).
//!
//! Each declared test shows its last outcome, from `tidemark.model_tests` (where
//! `tidemark build`, `tidemark test` and daemon build jobs append every data test
//! run: [`tidemark_lake::last_model_tests`]), read with the console's own access to
//! the warehouse: a role needs no grant on `tidemark.*`, and sees outcomes only of
//! the tests of the models listed for it. Failing rows are shown to admins, and to
//! roles that read the model's table unmasked and unfiltered (the rows are the
//! model's, as the test saw them), never for a test over a table the role cannot
//! read (a SQL test's own query, a relationship's error); who ran a test (a job's
//! name) is for admins, as jobs are.
//!
//! [`DirectSession::reads`]: tidemark_server::direct::DirectSession::reads

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use tidemark_core::position::ModelProgress;
use tidemark_lake::TableKind;
use tidemark_models::project::Project;
use tidemark_models::render::Target;
use tidemark_models::testing::{Check, Severity};
use tidemark_models::{Materialized, Strategy};

use crate::auth::Reader;
use crate::{Console, ConsoleError};

/// Commits of a model's table looked through for its last build's own commit
/// (compactions after it repeat its state).
const COMMITS_LOOKED_AT: usize = 32;

/// What a page shows for a table the role may not name.
const HIDDEN: &str = "a table you cannot read";

/// The models page's data.
#[derive(Debug, Serialize)]
pub struct Models {
    /// Whether this console knows a models directory (`[models] path`).
    configured: bool,
    /// The directory (admins only: a path on the server).
    dir: Option<String>,
    /// Why the directory could not be read.
    error: Option<String>,
    /// The models the role reads, in dependency order (inputs first).
    models: Vec<ModelView>,
    /// The tables the listed models read that are not listed models (landed
    /// sources, jobs' tables), as `schema.table`: the DAG's sources.
    tables: Vec<String>,
    /// Whether some listed model reads a table the role cannot read (the DAG
    /// draws one unnamed node for all of them).
    reads_hidden: bool,
    /// For admin roles: models that could not be read, with why.
    broken: Option<Vec<Broken>>,
    /// For admin roles: SQL tests that could not be read, with why.
    broken_tests: Option<Vec<String>>,
    /// Whether a daemon (`tidemark run`) serves this console.
    daemon: bool,
    /// For admin roles under a daemon: its build jobs with their last run.
    jobs: Option<Vec<tidemark_daemon::api::jobs::JobView>>,
}

#[derive(Debug, Serialize)]
struct ModelView {
    name: String,
    /// Where it lands, `schema.table` (its table page).
    table: String,
    /// `table`, `incremental` or `view`.
    materialized: &'static str,
    /// For incremental models: `merge` or `append`.
    strategy: Option<&'static str>,
    unique_key: Vec<String>,
    tags: Vec<String>,
    description: Option<String>,
    /// The file, relative to the models directory.
    path: String,
    /// Its column in the DAG: one more than its deepest input (tables that are
    /// not models are 0).
    layer: usize,
    /// The tables it reads that the role reads, with the model each is (if one).
    reads: Vec<Read>,
    /// How many tables it reads that the role cannot read.
    hidden_reads: usize,
    /// Data tests declared for it (sidecar columns and `tests/*.sql`).
    tests: Vec<TestView>,
    /// Why its test declarations could not be read.
    tests_error: Option<String>,
    /// Names of its unit tests (`[[unit_tests]]`).
    unit_tests: Vec<String>,
    /// Whether its table exists yet (admins see models not built yet).
    built: bool,
    /// Its last build, from its table's commit (tables and incremental models).
    last_build: Option<LastBuild>,
    /// For views: `current` (the stored definition is this SQL), `changed` (an
    /// older one is stored: build to replace it) or `undefined`.
    view: Option<&'static str>,
}

#[derive(Debug, Serialize, PartialEq)]
struct Read {
    /// `schema.table`.
    table: String,
    /// The model that lands it, when it is a listed model.
    model: Option<String>,
}

#[derive(Debug, Serialize)]
struct TestView {
    name: String,
    /// `unique`, `not_null`, `accepted_values`, `relationships` or `sql`.
    kind: &'static str,
    /// `error` (a failure stops the models downstream) or `warn`.
    severity: &'static str,
    /// Its last run, from `tidemark.model_tests`.
    last: Option<LastTest>,
    /// The name tidemark-models gives it (`tidemark.model_tests` keys runs by it),
    /// which `name` may not show.
    #[serde(skip)]
    key: String,
    /// It names or reads a table the role cannot read.
    #[serde(skip)]
    over_hidden: bool,
}

#[derive(Debug, Serialize)]
struct LastTest {
    /// `pass`, `fail` or `error` (it could not run).
    outcome: String,
    /// When it ended (ms since 1970).
    at_ms: i64,
    /// Failing rows it found.
    failing_rows: i64,
    /// The first of them as text, when the role may see them.
    rows: Option<Vec<String>>,
    /// There were failing rows, and this role is not shown them.
    rows_withheld: bool,
    /// Why it could not run, when the message names nothing the role cannot read.
    error: Option<String>,
    /// For admin roles: `tidemark build`, `tidemark test` or `job:<name>`.
    ran_by: Option<String>,
}

#[derive(Debug, Serialize)]
struct LastBuild {
    /// Its number among the model's builds.
    build: i64,
    /// When it committed (ms since 1970).
    at_ms: Option<i64>,
    /// Its Delta commit's version in the model's history log, when among the
    /// newest commits.
    version: Option<i64>,
    /// Hash of the SQL it ran.
    sql_hash: String,
    /// The model's SQL changed since: the next build rebuilds it whole.
    sql_changed: bool,
    /// The inputs it read, at which version, that the role reads.
    inputs: Vec<InputView>,
    /// Inputs it read that the role cannot read (not named).
    hidden_inputs: usize,
}

#[derive(Debug, Serialize)]
struct InputView {
    table: String,
    /// The input's history log version it read up to.
    version: i64,
    /// The newest change it read landed then (ms since 1970).
    landed_ms: Option<i64>,
}

#[derive(Debug, Serialize)]
struct Broken {
    name: String,
    error: String,
}

impl Models {
    fn empty(configured: bool) -> Self {
        Self {
            configured,
            dir: None,
            error: None,
            models: Vec::new(),
            tables: Vec::new(),
            reads_hidden: false,
            broken: None,
            broken_tests: None,
            daemon: false,
            jobs: None,
        }
    }
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warn => "warn",
    }
}

/// The project as a role sees it, without build state: which models are listed,
/// what each reads, its tests and its layer. `readable` says whether the role
/// reads a table; `admin` lists models whose table does not exist yet.
fn shape(
    project: &Project,
    readable: &dyn Fn(&Target) -> bool,
    exists: &dyn Fn(&Target) -> bool,
    admin: bool,
) -> (Vec<ModelView>, Vec<String>, bool) {
    let listed: BTreeMap<&Target, &str> = project
        .models
        .values()
        .filter(|m| {
            if exists(&m.target) {
                readable(&m.target)
            } else {
                // Nobody reads a table that is not there; only admins, who read
                // everything, see the model before its first build.
                admin
            }
        })
        .map(|m| (&m.target, m.name.as_str()))
        .collect();
    let visible = |t: &Target| listed.contains_key(t) || (!is_model(project, t) && readable(t));
    // Layers over what the role sees: a hidden input counts as a source (0).
    let mut layers: BTreeMap<String, usize> = BTreeMap::new();
    fn layer(
        project: &Project,
        name: &str,
        listed: &BTreeMap<&Target, &str>,
        layers: &mut BTreeMap<String, usize>,
        visiting: &mut BTreeSet<String>,
    ) -> usize {
        if let Some(l) = layers.get(name) {
            return *l;
        }
        // A cycle (its models cannot build) is cut where it closes.
        if !visiting.insert(name.to_string()) {
            return 0;
        }
        let m = &project.models[name];
        let mut deepest = 0;
        for t in &m.reads {
            if *t == m.target {
                continue;
            }
            if let Some(dep) = listed.get(t) {
                deepest = deepest.max(layer(project, dep, listed, layers, visiting));
            }
        }
        visiting.remove(name);
        layers.insert(name.to_string(), deepest + 1);
        deepest + 1
    }
    let mut views = Vec::new();
    let mut tables = BTreeSet::new();
    let mut reads_hidden = false;
    for name in listed.values() {
        let m = &project.models[*name];
        let mut reads = Vec::new();
        let mut hidden_reads = 0;
        for t in m.reads.iter().filter(|t| **t != m.target) {
            if visible(t) {
                let model = listed.get(t).map(|n| n.to_string());
                if model.is_none() {
                    tables.insert(t.to_string());
                }
                reads.push(Read {
                    table: t.to_string(),
                    model,
                });
            } else {
                hidden_reads += 1;
            }
        }
        reads_hidden |= hidden_reads > 0;
        let (tests, tests_error) = match tidemark_models::testing::declared(project, m) {
            Ok(tests) => (
                tests
                    .iter()
                    .map(|t| test_view(t, &visible))
                    .collect::<Vec<_>>(),
                None,
            ),
            Err(e) => (Vec::new(), Some(e)),
        };
        let (materialized, strategy) = match m.config.materialized {
            Materialized::Table => ("table", None),
            Materialized::View => ("view", None),
            Materialized::Incremental => (
                "incremental",
                Some(match m.config.strategy {
                    Strategy::Merge => "merge",
                    Strategy::Append => "append",
                }),
            ),
        };
        views.push(ModelView {
            name: m.name.clone(),
            table: m.target.to_string(),
            materialized,
            strategy,
            unique_key: m.config.unique_key.clone(),
            tags: m.config.tags.clone(),
            description: m
                .config
                .description
                .clone()
                .or_else(|| m.sidecar.description.clone()),
            path: m.rel_path.clone(),
            layer: layer(project, name, &listed, &mut layers, &mut BTreeSet::new()),
            reads,
            hidden_reads,
            tests,
            tests_error,
            unit_tests: m
                .sidecar
                .unit_tests
                .iter()
                .map(|u| u.name.clone())
                .collect(),
            built: exists(&m.target),
            last_build: None,
            view: None,
        });
    }
    // Inputs first, then by name: the order the table on the page lists them.
    views.sort_by(|a, b| a.layer.cmp(&b.layer).then_with(|| a.name.cmp(&b.name)));
    (views, tables.into_iter().collect(), reads_hidden)
}

fn is_model(project: &Project, t: &Target) -> bool {
    project.models.values().any(|m| m.target == *t)
}

/// A test as the page shows it: a relationship to, or a SQL test over, a table the
/// role cannot read does not name it.
fn test_view(
    t: &tidemark_models::testing::DataTest,
    visible: &dyn Fn(&Target) -> bool,
) -> TestView {
    let (kind, name) = match &t.check {
        Check::Unique(_) => ("unique", t.name.clone()),
        Check::NotNull(_) => ("not_null", t.name.clone()),
        Check::AcceptedValues(..) => ("accepted_values", t.name.clone()),
        Check::Relationships { column, to, .. } => (
            "relationships",
            if visible(to) {
                t.name.clone()
            } else {
                format!("relationships({column} → {HIDDEN})")
            },
        ),
        Check::Sql(sql) => (
            "sql",
            // A SQL test's name is its file's; it may name what it reads.
            match tidemark_models::graph::reads(sql) {
                Ok(reads) if reads.iter().all(visible) => t.name.clone(),
                _ => format!("a SQL test over {HIDDEN}"),
            },
        ),
    };
    let over_hidden = match &t.check {
        Check::Relationships { to, .. } => !visible(to),
        Check::Sql(sql) => !tidemark_models::graph::reads(sql).is_ok_and(|r| r.iter().all(visible)),
        _ => false,
    };
    TestView {
        name,
        kind,
        severity: severity(t.severity),
        last: None,
        key: t.name.clone(),
        over_hidden,
    }
}

/// A test's last run as a role sees it: `rows_ok` when the role reads the model's
/// table as the test did (admin, or no mask nor row filter on it); `over_hidden`
/// when the test reads or names a table the role cannot read (its rows and its
/// error may come from there).
fn last_test(
    r: &tidemark_lake::ModelTestRow,
    admin: bool,
    rows_ok: bool,
    over_hidden: bool,
) -> LastTest {
    let shows = admin || !over_hidden;
    let sample: Vec<String> = r
        .failing_sample
        .as_deref()
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default();
    let rows = ((admin || rows_ok) && shows && !sample.is_empty()).then_some(sample);
    LastTest {
        outcome: r.outcome.clone(),
        at_ms: r.ended_us.div_euclid(1000),
        failing_rows: r.failing_rows,
        rows_withheld: r.failing_sample.is_some() && rows.is_none(),
        rows,
        error: r.error.clone().filter(|_| shows),
        ran_by: admin.then(|| r.ran_by.clone()),
    }
}

/// The last build of a model landed as a table: the progress its table's newest
/// tidemark commit carries, with that build's own commit's version.
async fn last_build(
    console: &Console,
    target: &Target,
) -> Result<Option<(ModelProgress, Option<i64>, Option<i64>)>, String> {
    let engine = console.inner.gateway.engine();
    let delta = match engine.loaded_history(&target.schema, &target.table) {
        Some(d) => d,
        None => {
            let wh = &console.inner.wh;
            let url = wh.table_url(&target.schema, &target.table, TableKind::History);
            match wh.delta_table(&url).await.map_err(|e| e.to_string())? {
                (d, true) => d,
                (_, false) => return Ok(None),
            }
        }
    };
    let state = tidemark_lake::committed_state(&delta)
        .await
        .map_err(|e| e.to_string())?
        .state;
    let Some(progress) = state.model else {
        return Ok(None);
    };
    let version = build_version(&delta, progress.build).await;
    // Landing stamps the build's commit with the instant it committed.
    let at_ms = state.last_source_ts_us.map(|us| us.div_euclid(1000));
    Ok(Some((progress, at_ms, version)))
}

/// The version of the commit that landed build `build`: the oldest of the newest
/// commits carrying that build (compactions after it carry it too). `None` when it
/// is older than those, or the log's commits cannot be counted back.
async fn build_version(delta: &deltalake::DeltaTable, build: i64) -> Option<i64> {
    use futures::TryStreamExt;
    let newest = i64::try_from(delta.version()?).ok()?;
    let infos: Vec<_> = delta
        .history(Some(COMMITS_LOOKED_AT))
        .try_collect()
        .await
        .ok()?;
    // Newest first, one per version: counted back from the newest, unless some
    // commit carries no commit info (then the versions are not known).
    let expected = usize::try_from(newest + 1)
        .unwrap_or(usize::MAX)
        .min(COMMITS_LOOKED_AT);
    if infos.len() != expected {
        return None;
    }
    let mut found = None;
    for (i, info) in infos.iter().enumerate() {
        let carried = info
            .info
            .get("tidemark")
            .and_then(|v| v.pointer("/state/model/build"))
            .and_then(serde_json::Value::as_i64);
        if carried == Some(build) {
            found = Some(newest - i as i64);
        } else if found.is_some() {
            break;
        }
    }
    found
}

/// The models page's data for the signed-in user.
pub(crate) async fn models(
    State(console): State<Console>,
    Reader(s): Reader,
) -> Result<Json<Models>, ConsoleError> {
    let Some(config) = console.inner.options.models.clone() else {
        return Ok(Json(Models::empty(false)));
    };
    let admin = s.direct.role().is_admin();
    let mut out = Models::empty(true);
    out.dir = admin.then(|| config.path.display().to_string());
    let engine = console.inner.gateway.engine().clone();
    let landed = engine.landed_names();
    let environment = console.inner.options.environment.clone();
    // Reading and rendering the files is blocking work.
    let project =
        tokio::task::spawn_blocking(move || Project::load(&config, Some(&landed), &environment))
            .await
            .map_err(|e| ConsoleError::Internal(format!("reading the models: {e}")))?;
    let project = match project {
        Ok(p) => p,
        Err(e) => {
            out.error = Some(if admin {
                e.to_string()
            } else {
                "the models directory cannot be read; an administrator can see why".into()
            });
            return Ok(Json(out));
        }
    };
    let readable = |t: &Target| admin || s.direct.reads(&t.schema, &t.table);
    let exists = |t: &Target| {
        engine.loaded_history(&t.schema, &t.table).is_some() || s.direct.reads(&t.schema, &t.table)
    };
    let (mut views, tables, reads_hidden) = shape(&project, &readable, &exists, admin);
    let defs = match tidemark_lake::ViewDefs::existing(&console.inner.wh) {
        Ok(Some(d)) => d.list().await.unwrap_or_default(),
        _ => Vec::new(),
    };
    for v in &mut views {
        let m = &project.models[&v.name];
        if m.config.materialized == Materialized::View {
            let stored = defs
                .iter()
                .find(|d| d.schema == m.target.schema && d.name == m.target.table);
            v.view = Some(match stored {
                Some(d) if d.sql == m.sql => "current",
                Some(_) => "changed",
                None => "undefined",
            });
            continue;
        }
        if !v.built {
            continue;
        }
        let (progress, at_ms, version) = match last_build(&console, &m.target).await {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(model = %m.name, error = %e, "reading a model's last build failed");
                continue;
            }
        };
        let mut inputs = Vec::new();
        let mut hidden_inputs = 0;
        for (name, mark) in &progress.inputs {
            let visible = name.split_once('.').is_some_and(|(schema, table)| {
                readable(&Target {
                    schema: schema.into(),
                    table: table.into(),
                })
            });
            if visible {
                inputs.push(InputView {
                    table: name.clone(),
                    version: mark.version,
                    landed_ms: (mark.ingest_us != i64::MIN)
                        .then(|| mark.ingest_us.div_euclid(1000)),
                });
            } else {
                hidden_inputs += 1;
            }
        }
        v.last_build = Some(LastBuild {
            build: progress.build,
            at_ms,
            version,
            sql_changed: progress.sql_hash != tidemark_models::render::sql_hash(&m.sql),
            sql_hash: progress.sql_hash,
            inputs,
            hidden_inputs,
        });
    }
    // Each listed test's last run, read with the console's own access (the role's
    // catalog may not list tidemark.*); only listed models' tests are looked up.
    match tidemark_lake::last_model_tests(&console.inner.wh).await {
        Ok(runs) => {
            let runs: BTreeMap<(&str, &str), &tidemark_lake::ModelTestRow> = runs
                .iter()
                .map(|r| ((r.model.as_str(), r.test.as_str()), r))
                .collect();
            let role = s.direct.role();
            for v in &mut views {
                let target = &project.models[&v.name].target;
                // Masked or filtered, the role would see rows it does not read.
                let rows_ok = admin
                    || (role.masks_on(&target.schema, &target.table).is_empty()
                        && !role.filters_rows(&target.schema, &target.table));
                for t in &mut v.tests {
                    if let Some(r) = runs.get(&(v.name.as_str(), t.key.as_str())) {
                        t.last = Some(last_test(r, admin, rows_ok, t.over_hidden));
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(table = %format!("{}.{}", tidemark_lake::OWN_SCHEMA, tidemark_lake::MODEL_TESTS), error = %e, "reading the data tests' last outcomes failed; the models page shows none");
        }
    }
    out.models = views;
    out.tables = tables;
    out.reads_hidden = reads_hidden;
    if admin {
        out.broken = Some(
            project
                .broken
                .iter()
                .map(|(name, e)| Broken {
                    name: name.clone(),
                    error: e.to_string(),
                })
                .collect(),
        );
        out.broken_tests = Some(project.broken_tests.iter().map(|e| e.to_string()).collect());
    }
    let handle = console.inner.jobs.get();
    out.daemon = handle.is_some();
    // Job names and triggers name tables: admins only, as on the health page.
    out.jobs = handle.filter(|_| admin).map(|h| {
        tidemark_daemon::api::jobs::views(h)
            .into_iter()
            .filter(|j| j.kind == "build")
            .collect()
    });
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_core::config::ModelsConfig;

    /// A project of files: `(relative path, text)`.
    fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let config = ModelsConfig {
            path: dir.path().to_path_buf(),
            ..Default::default()
        };
        let landed: Vec<tidemark_core::names::TableName> = Vec::new();
        let p = Project::load(&config, Some(&landed), "dev").unwrap();
        (dir, p)
    }

    const FILES: &[(&str, &str)] = &[
        (
            "summary.sql",
            "{{ config(materialized='table', unique_key='id') }} SELECT c.id, count(*) AS n FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id GROUP BY c.id",
        ),
        (
            "summary.toml",
            "[columns.id]\ntests = [\"unique\", { relationships = { to = \"shop.customers\", field = \"id\" } }]\n",
        ),
        (
            "by_size.sql",
            "SELECT n, count(*) AS customers FROM {{ ref('summary') }} GROUP BY n",
        ),
        (
            "orders_daily.sql",
            "{{ config(materialized='view') }} SELECT date_trunc('day', at) AS day, count(*) AS n FROM shop.orders GROUP BY 1",
        ),
        ("broken.sql", "SELEC nothing"),
        (
            "tests/sizes_positive.sql",
            "SELECT * FROM {{ ref('by_size') }} WHERE n <= 0",
        ),
    ];

    fn names(v: &[ModelView]) -> Vec<(&str, usize)> {
        v.iter().map(|m| (m.name.as_str(), m.layer)).collect()
    }

    #[test]
    fn everything_for_a_role_that_reads_everything() {
        let (_d, p) = project(FILES);
        assert!(p.broken.contains_key("broken"));
        let (views, tables, hidden) = shape(&p, &|_| true, &|_| true, false);
        assert_eq!(
            names(&views),
            [("orders_daily", 1), ("summary", 1), ("by_size", 2)]
        );
        assert_eq!(tables, ["shop.customers", "shop.orders"]);
        assert!(!hidden);
        let by_size = &views[2];
        assert_eq!(
            by_size.reads,
            [Read {
                table: "analytics.summary".into(),
                model: Some("summary".into())
            }]
        );
        // The SQL test under tests/ is attached to the model it refs.
        assert_eq!(by_size.tests[0].name, "sizes_positive");
        assert_eq!(by_size.tests[0].kind, "sql");
        let summary = &views[1];
        assert_eq!(summary.materialized, "table");
        let tests: Vec<&str> = summary.tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            tests,
            ["unique(id)", "relationships(id → shop.customers.id)"]
        );
    }

    #[test]
    fn a_table_the_role_cannot_read_is_never_named() {
        let (_d, p) = project(FILES);
        // The role reads shop.orders and by_size's table only.
        let readable = |t: &Target| {
            matches!(
                (t.schema.as_str(), t.table.as_str()),
                ("shop", "orders") | ("analytics", "by_size") | ("analytics", "orders_daily")
            )
        };
        let (views, tables, hidden) = shape(&p, &readable, &|_| true, false);
        assert_eq!(names(&views), [("by_size", 1), ("orders_daily", 1)]);
        assert_eq!(tables, ["shop.orders"]);
        assert!(hidden);
        let by_size = &views[0];
        assert!(by_size.reads.is_empty());
        assert_eq!(by_size.hidden_reads, 1);
        // Its SQL test reads only by_size: named. Nothing names summary or customers.
        assert_eq!(by_size.tests[0].name, "sizes_positive");
        let text = serde_json::to_string(&views).unwrap();
        assert!(
            !text.contains("summary") && !text.contains("customers"),
            "{text}"
        );
    }

    #[test]
    fn tests_over_hidden_tables_do_not_name_them() {
        let (_d, p) = project(FILES);
        let readable = |t: &Target| t.table != "customers";
        let (views, _, _) = shape(&p, &readable, &|_| true, false);
        let summary = views.iter().find(|m| m.name == "summary").unwrap();
        assert_eq!(
            summary.tests[1].name,
            format!("relationships(id → {HIDDEN})")
        );
        // And a SQL test reading a hidden model is listed without its name.
        let readable = |t: &Target| t.table != "summary";
        let (views, _, _) = shape(&p, &readable, &|_| true, false);
        let by_size = views.iter().find(|m| m.name == "by_size").unwrap();
        assert_eq!(by_size.tests.len(), 1);
        assert_eq!(by_size.hidden_reads, 1);
        assert_eq!(by_size.tests[0].name, "sizes_positive");
    }

    #[test]
    fn models_not_built_yet_are_shown_to_admins_only() {
        let (_d, p) = project(FILES);
        let unbuilt = |t: &Target| t.table != "by_size";
        let (views, _, _) = shape(&p, &|_| true, &unbuilt, false);
        assert!(views.iter().all(|m| m.name != "by_size"));
        let (views, _, _) = shape(&p, &|_| true, &unbuilt, true);
        let by_size = views.iter().find(|m| m.name == "by_size").unwrap();
        assert!(!by_size.built);
    }

    #[test]
    fn a_tests_rows_and_error_are_shown_only_where_the_role_reads_them() {
        let r = tidemark_lake::ModelTestRow {
            model: "summary".into(),
            test: "sizes_positive".into(),
            outcome: "fail".into(),
            failing_rows: 2,
            failing_sample: Some("(n=0)\n(n=-1)".into()),
            error: Some("over shop.customers".into()),
            ended_us: 5_000,
            ran_by: "job:nightly".into(),
            ..Default::default()
        };
        let admin = last_test(&r, true, false, true);
        assert_eq!(
            admin.rows.as_deref(),
            Some(&["(n=0)".to_string(), "(n=-1)".into()][..])
        );
        assert_eq!(admin.ran_by.as_deref(), Some("job:nightly"));
        assert_eq!(admin.at_ms, 5);
        // A role reading the model unmasked: the rows, not who ran it.
        let plain = last_test(&r, false, true, false);
        assert!(plain.rows.is_some() && !plain.rows_withheld && plain.ran_by.is_none());
        // Masked or filtered: the count and outcome only.
        let masked = last_test(&r, false, false, false);
        assert!(masked.rows.is_none() && masked.rows_withheld);
        assert_eq!((masked.outcome.as_str(), masked.failing_rows), ("fail", 2));
        // A test over a table the role cannot read: neither rows nor error.
        let hidden = last_test(&r, false, true, true);
        assert!(hidden.rows.is_none() && hidden.rows_withheld && hidden.error.is_none());
        let text = serde_json::to_string(&hidden).unwrap();
        assert!(
            !text.contains("customers") && !text.contains("nightly"),
            "{text}"
        );
    }

    #[test]
    fn a_cycle_does_not_hang_the_layers() {
        let (_d, p) = project(&[
            ("a.sql", "SELECT * FROM {{ ref('b') }}"),
            ("b.sql", "SELECT * FROM {{ ref('a') }}"),
        ]);
        let (views, _, _) = shape(&p, &|_| true, &|_| true, false);
        assert_eq!(views.len(), 2);
        assert!(views.iter().all(|m| m.layer >= 1 && m.layer <= 2));
    }
}
