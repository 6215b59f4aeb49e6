//! Templating: a model's file rendered to one SELECT with minijinja, the functions
//! dbt users know (`ref`, `source`, `this`, `is_incremental`, `var`, `config`).
//!
//! Rendering records what the template asked for: the `config(…)` settings and the
//! models it `ref`s. The dependencies themselves come from the rendered SQL's table
//! references (see [`crate::graph`]), so a table named without `ref` counts too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};

use crate::error::Error;

/// Where a model lands, or a landed source table: `"schema"."table"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// Schema (`analytics`).
    pub schema: String,
    /// Table (the model's name).
    pub table: String,
}

impl Target {
    /// Quoted for SQL.
    pub fn sql(&self) -> String {
        format!(
            "{}.{}",
            tidemark_lake::quote(&self.schema),
            tidemark_lake::quote(&self.table)
        )
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// What the template functions answer.
#[derive(Clone, Default)]
pub struct Scope {
    /// Every model's target, by model name.
    pub models: BTreeMap<String, Target>,
    /// Landed source tables by (source database, source table), lower-cased.
    pub sources: BTreeMap<(String, String), Target>,
    /// No warehouse was read (unit tests): `source()` names tables by the default
    /// naming instead of refusing what it does not know.
    pub sources_unknown: bool,
    /// `var()` values (the environment's over the project's).
    pub vars: BTreeMap<String, serde_json::Value>,
    /// The environment built for (`target.name` in dbt): `env` in templates.
    pub environment: String,
}

/// What rendering one model gave.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// The SQL.
    pub sql: String,
    /// `config(…)` settings, as JSON values.
    pub config: BTreeMap<String, serde_json::Value>,
    /// Models named with `ref`.
    pub refs: BTreeSet<String>,
}

#[derive(Default)]
struct Captured {
    config: BTreeMap<String, serde_json::Value>,
    refs: BTreeSet<String>,
}

/// Render `text` (the file at `path`) as model `this`; `incremental` is what
/// `is_incremental()` answers.
pub fn render(
    path: &Path,
    text: &str,
    this: &Target,
    incremental: bool,
    scope: &Scope,
) -> Result<Rendered, Error> {
    let captured = Arc::new(Mutex::new(Captured::default()));
    let mut env = Environment::new();
    // A misspelt variable is an error, not an empty string in the SQL.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    {
        let (models, c) = (scope.models.clone(), captured.clone());
        env.add_function(
            "ref",
            move |name: String| -> Result<String, minijinja::Error> {
                let Some(t) = models.get(&name) else {
                    let known: Vec<&str> = models.keys().map(String::as_str).collect();
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        format!(
                            "ref('{name}'): there is no model {name} (models: {})",
                            known.join(", ")
                        ),
                    ));
                };
                c.lock().expect("capture lock").refs.insert(name);
                Ok(t.sql())
            },
        );
    }
    {
        let (sources, unknown) = (scope.sources.clone(), scope.sources_unknown);
        env.add_function(
            "source",
            move |db: String, table: String| -> Result<String, minijinja::Error> {
                if unknown {
                    let n = tidemark_core::names::TableName::new(&db, &table, Default::default());
                    return Ok(Target {
                        schema: n.schema,
                        table: n.table,
                    }
                    .sql());
                }
                sources
                    .get(&(db.to_lowercase(), table.to_lowercase()))
                    .map(Target::sql)
                    .ok_or_else(|| {
                        minijinja::Error::new(
                            ErrorKind::InvalidOperation,
                            format!("source('{db}', '{table}'): no table {db}.{table} has been landed in this warehouse (check the spelling, or land it first: `tidemark snapshot`)"),
                        )
                    })
            },
        );
    }
    {
        let vars = scope.vars.clone();
        env.add_function(
            "var",
            move |name: String, default: Option<Value>| -> Result<Value, minijinja::Error> {
                match (vars.get(&name), default) {
                    (Some(v), _) => Ok(Value::from_serialize(v)),
                    (None, Some(d)) => Ok(d),
                    (None, None) => Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        format!("var('{name}') has no value: set it under [models.vars] (or [models.env.<environment>]), or give a default: var('{name}', …)"),
                    )),
                }
            },
        );
    }
    env.add_function("is_incremental", move || incremental);
    {
        let c = captured.clone();
        env.add_function(
            "config",
            move |kwargs: Kwargs| -> Result<String, minijinja::Error> {
                let keys: Vec<String> = kwargs.args().map(str::to_string).collect();
                for k in keys {
                    let v: Value = kwargs.get(&k)?;
                    let json = serde_json::to_value(&v).map_err(|e| {
                        minijinja::Error::new(
                            ErrorKind::InvalidOperation,
                            format!("config({k}=…): {e}"),
                        )
                    })?;
                    c.lock().expect("capture lock").config.insert(k, json);
                }
                Ok(String::new())
            },
        );
    }
    let ctx = minijinja::context! {
        this => this.sql(),
        env => scope.environment.clone(),
    };
    let sql = env.render_str(text, ctx).map_err(|e| Error::Template {
        path: path.to_path_buf(),
        line: e.line(),
        message: template_message(&e),
    })?;
    let c = std::mem::take(&mut *captured.lock().expect("capture lock"));
    Ok(Rendered {
        sql,
        config: c.config,
        refs: c.refs,
    })
}

/// minijinja's message without its own location (the error names file and line).
fn template_message(e: &minijinja::Error) -> String {
    match (e.kind(), e.detail()) {
        (ErrorKind::UndefinedError, _) => {
            "a name in {{ … }} is not defined (functions: ref, source, var, is_incremental, config; variables: this, env)".into()
        }
        (_, Some(d)) => d.to_string(),
        (k, None) => k.to_string(),
    }
}

/// Hash of rendered SQL: a model whose SQL changed is built whole again.
pub fn sql_hash(sql: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, sql.as_bytes());
    d.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let mut s = Scope::default();
        s.models.insert(
            "orders".into(),
            Target {
                schema: "analytics".into(),
                table: "orders".into(),
            },
        );
        s.sources.insert(
            ("invoicing".into(), "invoices".into()),
            Target {
                schema: "invoicing".into(),
                table: "invoices".into(),
            },
        );
        s.vars.insert("min".into(), serde_json::json!(10));
        s
    }

    fn this() -> Target {
        Target {
            schema: "analytics".into(),
            table: "m".into(),
        }
    }

    #[test]
    fn functions_render_and_are_recorded() {
        let text = "{{ config(materialized='incremental', unique_key='id', tags=['a']) }}\
SELECT * FROM {{ ref('orders') }} JOIN {{ source('invoicing', 'invoices') }} ON true \
WHERE x > {{ var('min') }}{% if is_incremental() %} AND y IN (SELECT y FROM {{ this }}){% endif %}";
        let r = render(Path::new("m.sql"), text, &this(), true, &scope()).unwrap();
        assert!(r.sql.contains(r#""analytics"."orders""#), "{}", r.sql);
        assert!(r.sql.contains(r#""invoicing"."invoices""#));
        assert!(r.sql.contains("x > 10"));
        assert!(r.sql.contains(r#"FROM "analytics"."m""#));
        assert_eq!(r.config["materialized"], "incremental");
        assert_eq!(r.config["tags"], serde_json::json!(["a"]));
        assert!(r.refs.contains("orders"));
        let full = render(Path::new("m.sql"), text, &this(), false, &scope()).unwrap();
        assert!(!full.sql.contains("AND y IN"));
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let e = render(
            Path::new("models/m.sql"),
            "SELECT 1\nFROM {{ ref('nope') }}",
            &this(),
            false,
            &scope(),
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("models/m.sql:2: ref('nope')"), "{text}");
        assert!(text.contains("models: orders"), "{text}");
        let e = render(
            Path::new("m.sql"),
            "{{ var('x') }}",
            &this(),
            false,
            &scope(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("[models.vars]"), "{e}");
        let e = render(
            Path::new("m.sql"),
            "{{ source('a', 'b') }}",
            &this(),
            false,
            &scope(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no table a.b"), "{e}");
        let e = render(
            Path::new("m.sql"),
            "{{ nothing }}",
            &this(),
            false,
            &scope(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not defined"), "{e}");
    }
}
