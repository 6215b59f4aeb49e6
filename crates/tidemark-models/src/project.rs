//! A models directory read into models: each `.sql` file one model named after the
//! file, its settings from `{{ config(…) }}` in the file over those of a sidecar
//! `<name>.toml` beside it, its dependencies from the tables its rendered SQL reads.
//!
//! A model that cannot be read (a template error, unknown settings, SQL that does not
//! parse) is kept as broken, with the error naming its file and line: the models that
//! do not depend on it still build.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tidemark_core::config::ModelsConfig;

use crate::error::Error;
use crate::render::{render, Scope, Target};

/// How a model lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Materialized {
    /// The whole result each build, landed as the changes against the last build, so
    /// the model has history (`schema_history.model`, `FOR SYSTEM_TIME AS OF`).
    Table,
    /// Like a table, but a build reads only what changed in its inputs since the
    /// versions it last read, and merges by `unique_key` (deletes included), or
    /// appends the rows of what its inputs gained ([`Strategy::Append`]).
    Incremental,
    /// A name for the query, evaluated when read: always current, no history of its
    /// own, nothing stored but its definition.
    View,
}

/// How an incremental build lands (`incremental_strategy`, dbt's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Rows recomputed for the keys the inputs' changes touched, merged by
    /// `unique_key`: inserts, updates and deletes (the default; needs `unique_key`).
    #[default]
    Merge,
    /// Rows made from the input rows inserted since the last build, appended; an
    /// input row updated or deleted later leaves what was appended as it is.
    Append,
}

/// `unique_key = "id"` or `unique_key = ["a", "b"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Settings as written (config() over the sidecar's `[config]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    materialized: Option<String>,
    #[serde(default)]
    unique_key: Option<OneOrMany>,
    #[serde(default)]
    incremental_strategy: Option<String>,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// A model's settings.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// How it lands.
    pub materialized: Materialized,
    /// Columns that identify a row of the result (every column when empty: then
    /// the result must not repeat a row).
    pub unique_key: Vec<String>,
    /// How an incremental model's builds land (merge for other materialisations).
    pub strategy: Strategy,
    /// Tags, for `--select tag:x`.
    pub tags: Vec<String>,
    /// What the model is.
    pub description: Option<String>,
    /// `enabled = false` leaves the model out of builds.
    pub enabled: bool,
}

/// A sidecar `<name>.toml`: settings, documentation, tests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    /// What the model is.
    #[serde(default)]
    pub description: Option<String>,
    /// Defaults for `config(…)`.
    #[serde(default)]
    pub config: toml::Table,
    /// Column documentation and tests.
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnDoc>,
    /// Unit tests on inline fixtures (`[[unit_tests]]`).
    #[serde(default)]
    pub unit_tests: Vec<crate::testing::UnitTest>,
}

/// One column's documentation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDoc {
    /// What the column holds.
    #[serde(default)]
    pub description: Option<String>,
    /// Data tests on the column (`unique`, `not_null`, …), run by `tidemark test`.
    #[serde(default)]
    pub tests: Vec<toml::Value>,
}

/// One model.
#[derive(Debug, Clone)]
pub struct Model {
    /// Its name: the file's stem.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// The file relative to the models directory, with `/` (for `path:` selectors).
    pub rel_path: String,
    /// The template.
    pub text: String,
    /// Where it lands.
    pub target: Target,
    /// Its settings.
    pub config: ModelConfig,
    /// Its sidecar.
    pub sidecar: Sidecar,
    /// The SQL of a full build.
    pub sql: String,
    /// The SQL with `is_incremental()` true, when the template filters under it:
    /// then an incremental build runs it and merges its rows by `unique_key`, as dbt
    /// does (no deletes: the filter decides what is read).
    pub incremental_sql: Option<String>,
    /// Models it reads.
    pub deps: BTreeSet<String>,
    /// Every table it reads (landed sources and models).
    pub reads: BTreeSet<Target>,
}

/// Every model of a directory.
#[derive(Debug, Default)]
pub struct Project {
    /// The directory.
    pub dir: PathBuf,
    /// Models that read well.
    pub models: BTreeMap<String, Model>,
    /// Models that did not, with why (by name; the file is in the error).
    pub broken: BTreeMap<String, Error>,
    /// SQL tests (`<dir>/tests/*.sql`), each attached to the models it `ref`s.
    pub sql_tests: Vec<crate::testing::DataTest>,
    /// SQL tests that could not be read, with why.
    pub broken_tests: Vec<Error>,
    /// Landed source tables by (database, table), lower-cased, as `source()` sees them.
    pub sources: BTreeMap<(String, String), Target>,
}

impl Project {
    /// Read the models under `config.path`. `landed` lists the warehouse's landed
    /// source tables (for `source()`; `None` without a warehouse, for unit tests);
    /// `environment` selects `[models.env.*]` vars.
    pub fn load(
        config: &ModelsConfig,
        landed: Option<&[tidemark_core::names::TableName]>,
        environment: &str,
    ) -> Result<Self, Error> {
        let dir = config.path.clone();
        let mut files = Vec::new();
        walk(&dir, &mut files)?;
        // `<dir>/tests/` holds SQL tests, not models.
        let tests_dir = dir.join("tests");
        let (tests, mut files): (Vec<PathBuf>, Vec<PathBuf>) =
            files.into_iter().partition(|f| f.starts_with(&tests_dir));
        files.sort();
        let mut project = Project {
            dir: dir.clone(),
            ..Default::default()
        };
        // The files first: names, text, sidecars.
        let mut found: BTreeMap<String, (PathBuf, String, Sidecar)> = BTreeMap::new();
        for path in files {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let read = std::fs::read_to_string(&path).map_err(|e| Error::Read {
                path: path.clone(),
                message: e.to_string(),
            });
            let sidecar = read_sidecar(&path);
            match (read, sidecar) {
                (Ok(text), Ok(side)) => {
                    if let Some((other, _, _)) = found.get(&name) {
                        project.broken.insert(
                            name.clone(),
                            Error::Template {
                                path: path.clone(),
                                line: None,
                                message: format!(
                                    "another model has the name {name}: {} (model names are file names, unique across the directory)",
                                    other.display()
                                ),
                            },
                        );
                        continue;
                    }
                    found.insert(name, (path, text, side));
                }
                (Err(e), _) | (_, Err(e)) => {
                    project.broken.insert(name, e);
                }
            }
        }
        let mut scope = Scope {
            environment: environment.to_string(),
            sources_unknown: landed.is_none(),
            ..Default::default()
        };
        for (k, v) in config
            .vars
            .iter()
            .chain(config.env.get(environment).into_iter().flatten())
        {
            scope
                .vars
                .insert(k.clone(), serde_json::to_value(v).unwrap_or_default());
        }
        for n in landed.unwrap_or_default() {
            scope.sources.insert(
                (n.source_db.to_lowercase(), n.source_table.to_lowercase()),
                Target {
                    schema: n.schema.clone(),
                    table: n.table.clone(),
                },
            );
        }
        // Pass one: each model's settings (its schema decides where `ref` points), with
        // `ref` answering for every model found.
        let placeholder = |name: &str| Target {
            schema: config.schema.clone(),
            table: name.to_string(),
        };
        let mut first = scope.clone();
        for name in found.keys().chain(project.broken.keys()) {
            first.models.insert(name.clone(), placeholder(name));
        }
        let mut settled: BTreeMap<String, (ModelConfig, Target)> = BTreeMap::new();
        for (name, (path, text, side)) in &found {
            let r = render(path, text, &placeholder(name), false, &first)
                .and_then(|r| settings(path, side, &r.config, &config.schema, name));
            match r {
                Ok(s) => {
                    settled.insert(name.clone(), s);
                }
                Err(e) => {
                    project.broken.insert(name.clone(), e);
                }
            }
        }
        // Pass two: the SQL, with every `ref` pointing at its model's target.
        scope.models = settled
            .iter()
            .map(|(n, (_, t))| (n.clone(), t.clone()))
            .chain(project.broken.keys().map(|n| (n.clone(), placeholder(n))))
            .collect();
        project.sources = scope.sources.clone();
        for path in tests {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let r = std::fs::read_to_string(&path)
                .map_err(|e| Error::Read {
                    path: path.clone(),
                    message: e.to_string(),
                })
                .and_then(|text| render(&path, &text, &placeholder(&stem), false, &scope));
            match r {
                Ok(r) => {
                    let severity = match r.config.get("severity").and_then(|v| v.as_str()) {
                        Some("warn") => crate::testing::Severity::Warn,
                        _ => crate::testing::Severity::Error,
                    };
                    if r.refs.is_empty() {
                        project.broken_tests.push(Error::Template {
                            path: path.clone(),
                            line: None,
                            message: "a SQL test names the models it tests with ref('model')"
                                .into(),
                        });
                    }
                    for m in &r.refs {
                        project.sql_tests.push(crate::testing::DataTest {
                            model: m.clone(),
                            name: stem.clone(),
                            check: crate::testing::Check::Sql(r.sql.clone()),
                            severity,
                        });
                    }
                }
                Err(e) => project.broken_tests.push(e),
            }
        }
        let by_target: BTreeMap<Target, String> = settled
            .iter()
            .map(|(n, (_, t))| (t.clone(), n.clone()))
            .collect();
        for (name, (config, target)) in settled {
            let (path, text, sidecar) = found.remove(&name).expect("found");
            if !config.enabled {
                continue;
            }
            let rendered = match render(&path, &text, &target, false, &scope) {
                Ok(r) => r,
                Err(e) => {
                    project.broken.insert(name, e);
                    continue;
                }
            };
            // dbt's way: a template that filters under `{% if is_incremental() %}`
            // gives its own incremental SQL (see `crate::build`).
            let incremental_sql = if config.materialized == Materialized::Incremental {
                match render(&path, &text, &target, true, &scope) {
                    Ok(r) if r.sql != rendered.sql => Some(r.sql),
                    Ok(_) => None,
                    Err(e) => {
                        project.broken.insert(name, e);
                        continue;
                    }
                }
            } else {
                None
            };
            let reads = match crate::graph::reads(&rendered.sql) {
                Ok(r) => r,
                Err(message) => {
                    project.broken.insert(
                        name.clone(),
                        Error::Sql {
                            model: name,
                            path,
                            message,
                        },
                    );
                    continue;
                }
            };
            let mut deps: BTreeSet<String> = reads
                .iter()
                .filter_map(|t| by_target.get(t).cloned())
                .collect();
            deps.extend(rendered.refs.iter().cloned());
            deps.remove(&name);
            if reads.contains(&target) && !matches!(config.materialized, Materialized::Incremental)
            {
                project.broken.insert(
                    name.clone(),
                    Error::Template {
                        path,
                        line: None,
                        message: format!(
                            "model {name} reads its own table {target}: only an incremental model may (through {{{{ this }}}} inside {{% if is_incremental() %}})"
                        ),
                    },
                );
                continue;
            }
            let rel_path = path
                .strip_prefix(&dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            project.models.insert(
                name.clone(),
                Model {
                    name,
                    path,
                    rel_path,
                    text,
                    target,
                    config,
                    sidecar,
                    sql: rendered.sql,
                    incremental_sql,
                    deps,
                    reads,
                },
            );
        }
        Ok(project)
    }
}

/// Every `.sql` file under `dir`.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Read {
        path: dir.to_path_buf(),
        message: format!("{e} (the models directory is [models] path in the config)"),
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::Read {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "sql") {
            out.push(path);
        }
    }
    Ok(())
}

fn read_sidecar(sql: &Path) -> Result<Sidecar, Error> {
    let path = sql.with_extension("toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| Error::Template {
            line: e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
            path,
            message: e.message().to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Sidecar::default()),
        Err(e) => Err(Error::Read {
            path,
            message: e.to_string(),
        }),
    }
}

/// A model's settings and target: `config(…)` over the sidecar's `[config]`.
fn settings(
    path: &Path,
    side: &Sidecar,
    config: &BTreeMap<String, serde_json::Value>,
    default_schema: &str,
    name: &str,
) -> Result<(ModelConfig, Target), Error> {
    let bad = |message: String| Error::Template {
        path: path.to_path_buf(),
        line: None,
        message,
    };
    let mut merged = serde_json::to_value(&side.config)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    for (k, v) in config {
        merged.insert(k.clone(), v.clone());
    }
    let raw: RawConfig = serde_json::from_value(serde_json::Value::Object(merged))
        .map_err(|e| bad(format!("config: {e}")))?;
    let materialized = match raw.materialized.as_deref().unwrap_or("table") {
        "table" => Materialized::Table,
        "incremental" => Materialized::Incremental,
        "view" => Materialized::View,
        other => {
            return Err(bad(format!(
                "materialized = '{other}': expected 'table', 'incremental' or 'view'"
            )))
        }
    };
    let unique_key = match raw.unique_key {
        None => Vec::new(),
        Some(OneOrMany::One(k)) => vec![k],
        Some(OneOrMany::Many(ks)) => ks,
    };
    let strategy = match (raw.incremental_strategy.as_deref(), materialized) {
        (None | Some("merge"), _) => Strategy::Merge,
        (Some("append"), Materialized::Incremental) => Strategy::Append,
        (Some("append"), _) => {
            return Err(bad(
                "incremental_strategy = 'append' is for materialized = 'incremental'".into(),
            ))
        }
        (Some(other), _) => {
            return Err(bad(format!(
                "incremental_strategy = '{other}': expected 'merge' (the default: by unique_key) or 'append'"
            )))
        }
    };
    if materialized == Materialized::Incremental
        && strategy == Strategy::Merge
        && unique_key.is_empty()
    {
        return Err(bad(
            "an incremental model needs unique_key (the columns that identify a row of its result): changes in its inputs are merged by it; or incremental_strategy = 'append', which appends the rows of new input rows".into(),
        ));
    }
    let schema = raw.schema.unwrap_or_else(|| default_schema.to_string());
    if schema == tidemark_lake::OWN_SCHEMA || schema.ends_with("_history") {
        return Err(bad(format!(
            "schema {schema} is tidemark's; choose another (e.g. \"analytics\")"
        )));
    }
    Ok((
        ModelConfig {
            materialized,
            unique_key,
            strategy,
            tags: raw.tags,
            description: raw.description.or_else(|| side.description.clone()),
            enabled: raw.enabled.unwrap_or(true),
        },
        Target {
            schema,
            table: name.to_string(),
        },
    ))
}
