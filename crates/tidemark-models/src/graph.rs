//! The dependency graph: which tables a model's SQL reads (resolved by DataFusion's
//! own resolver from the parsed statement, CTE names excluded, as it does before
//! planning, not by matching text), the order models build in, cycles, and dbt's
//! selectors.

use std::collections::{BTreeMap, BTreeSet};

use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::datafusion::sql::parser::Statement as DFStatement;

use crate::error::Error;
use crate::project::Project;
use crate::render::Target;

/// The tables `sql` (one SELECT) reads. `Err` carries the parser's message (with its
/// line and column).
pub fn reads(sql: &str) -> Result<BTreeSet<Target>, String> {
    let mut statements = tidemark_query::parse(sql).map_err(|e| e.to_string())?;
    if statements.len() != 1 {
        return Err(format!(
            "a model is one SELECT statement; this file has {}",
            statements.len()
        ));
    }
    let statement = statements.pop_front().expect("one");
    let is_query = matches!(
        &statement,
        DFStatement::Statement(s) if matches!(**s, deltalake::datafusion::sql::sqlparser::ast::Statement::Query(_))
    );
    if !is_query {
        return Err(
            "a model is one SELECT statement (no DDL or DML: tidemark writes the table)".into(),
        );
    }
    let refs = SessionContext::new()
        .state()
        .resolve_table_references(&statement)
        .map_err(|e| e.to_string())?;
    Ok(refs.into_iter().map(target_of).collect())
}

fn target_of(r: TableReference) -> Target {
    match r {
        TableReference::Bare { table } => Target {
            schema: "public".into(),
            table: table.to_string(),
        },
        TableReference::Partial { schema, table } | TableReference::Full { schema, table, .. } => {
            Target {
                schema: schema.to_string(),
                table: table.to_string(),
            }
        }
    }
}

/// `names` in an order where every model comes after the models it reads (among
/// `names`), or the first cycle found.
pub fn order(project: &Project, names: &BTreeSet<String>) -> Result<Vec<String>, Error> {
    let deps = |n: &str| -> Vec<&String> {
        project.models[n]
            .deps
            .iter()
            .filter(|d| names.contains(*d) && project.models.contains_key(*d))
            .collect()
    };
    // Depth-first, with the path kept to name a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    let mut out = Vec::new();
    fn visit<'a>(
        n: &'a str,
        deps: &dyn Fn(&str) -> Vec<&'a String>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
        out: &mut Vec<String>,
    ) -> Result<(), Error> {
        match marks.get(n) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let from = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut cycle: Vec<String> = path[from..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_string());
                return Err(Error::Cycle { cycle });
            }
            None => {}
        }
        marks.insert(n, Mark::Visiting);
        path.push(n);
        for d in deps(n) {
            visit(d, deps, marks, path, out)?;
        }
        path.pop();
        marks.insert(n, Mark::Done);
        out.push(n.to_string());
        Ok(())
    }
    for n in names.iter().filter(|n| project.models.contains_key(*n)) {
        let mut path = Vec::new();
        visit(n, &deps, &mut marks, &mut path, &mut out)?;
    }
    Ok(out)
}

/// The models in a cycle, each with the cycle: they cannot build, the others can.
pub fn cycles(project: &Project) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for name in project.models.keys() {
        let one: BTreeSet<String> = upstream(project, name, true);
        if let Err(Error::Cycle { cycle }) = order(project, &one) {
            if cycle.contains(name) {
                out.insert(name.clone(), cycle);
            }
        }
    }
    out
}

/// `name` and every model it reads, directly or not (`with_self`: `name` included).
pub fn upstream(project: &Project, name: &str, with_self: bool) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_string()];
    while let Some(n) = todo.pop() {
        if let Some(m) = project.models.get(&n) {
            for d in &m.deps {
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
    }
    if with_self {
        seen.insert(name.to_string());
    }
    seen
}

/// `name` and every model that reads it, directly or not.
pub fn downstream(project: &Project, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::from([name.to_string()]);
    let mut todo = vec![name.to_string()];
    while let Some(n) = todo.pop() {
        for (other, m) in &project.models {
            if m.deps.contains(&n) && seen.insert(other.clone()) {
                todo.push(other.clone());
            }
        }
    }
    seen
}

/// The models dbt's selectors pick, united: `model`, `+model` (with what it reads),
/// `model+` (with what reads it), `+model+`, `tag:x`, `path:dir/`. Selectors may be
/// separated by spaces or commas; none selects every model.
pub fn select(project: &Project, selectors: &[String]) -> Result<BTreeSet<String>, String> {
    let all: BTreeSet<String> = project
        .models
        .keys()
        .chain(project.broken.keys())
        .cloned()
        .collect();
    let words: Vec<&str> = selectors
        .iter()
        .flat_map(|s| s.split([' ', ',']))
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return Ok(all);
    }
    let mut out = BTreeSet::new();
    for w in words {
        if let Some(tag) = w.strip_prefix("tag:") {
            out.extend(
                project
                    .models
                    .values()
                    .filter(|m| m.config.tags.iter().any(|t| t == tag))
                    .map(|m| m.name.clone()),
            );
            continue;
        }
        if let Some(p) = w.strip_prefix("path:") {
            let p = p.trim_start_matches("./").trim_end_matches('/');
            out.extend(
                project
                    .models
                    .values()
                    .filter(|m| {
                        m.rel_path == p || m.rel_path.starts_with(&format!("{p}/")) || p.is_empty()
                    })
                    .map(|m| m.name.clone()),
            );
            continue;
        }
        let (up, rest) = match w.strip_prefix('+') {
            Some(r) => (true, r),
            None => (false, w),
        };
        let (down, name) = match rest.strip_suffix('+') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if !all.contains(name) {
            return Err(format!(
                "--select {w}: there is no model {name} (models: {})",
                all.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        out.insert(name.to_string());
        if project.models.contains_key(name) {
            if up {
                out.extend(upstream(project, name, true));
            }
            if down {
                out.extend(downstream(project, name));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::{Materialized, Model, ModelConfig};

    fn model(name: &str, deps: &[&str], tags: &[&str]) -> Model {
        Model {
            name: name.into(),
            path: format!("models/{name}.sql").into(),
            rel_path: format!("marts/{name}.sql"),
            text: String::new(),
            target: Target {
                schema: "analytics".into(),
                table: name.into(),
            },
            config: ModelConfig {
                materialized: Materialized::Table,
                unique_key: vec![],
                strategy: Default::default(),
                tags: tags.iter().map(|s| s.to_string()).collect(),
                description: None,
                enabled: true,
            },
            sidecar: Default::default(),
            sql: String::new(),
            incremental_sql: None,
            deps: deps.iter().map(|s| s.to_string()).collect(),
            reads: BTreeSet::new(),
        }
    }

    fn project(models: Vec<Model>) -> Project {
        Project {
            models: models.into_iter().map(|m| (m.name.clone(), m)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn reads_come_from_the_statement_not_the_text() {
        let r = reads(
            "WITH recent AS (SELECT * FROM invoicing.invoices) \
             SELECT * FROM recent JOIN \"analytics\".\"customers\" c ON true \
             WHERE 'FROM fake.table' <> ''",
        )
        .unwrap();
        let names: Vec<String> = r.iter().map(|t| t.to_string()).collect();
        assert_eq!(names, ["analytics.customers", "invoicing.invoices"]);
        assert!(reads("DELETE FROM a.b").unwrap_err().contains("one SELECT"));
        assert!(reads("SELECT 1; SELECT 2").unwrap_err().contains("has 2"));
        assert!(reads("SELEC 1").is_err());
    }

    #[test]
    fn order_puts_inputs_first_and_names_a_cycle() {
        let p = project(vec![
            model("c", &["b"], &[]),
            model("b", &["a"], &[]),
            model("a", &[], &[]),
            model("d", &[], &[]),
        ]);
        let all: BTreeSet<String> = p.models.keys().cloned().collect();
        let o = order(&p, &all).unwrap();
        let at = |n: &str| o.iter().position(|x| x == n).unwrap();
        assert!(at("a") < at("b") && at("b") < at("c"));
        let p = project(vec![
            model("x", &["z"], &[]),
            model("y", &["x"], &[]),
            model("z", &["y"], &[]),
            model("free", &[], &[]),
        ]);
        let all: BTreeSet<String> = p.models.keys().cloned().collect();
        let e = order(&p, &all).unwrap_err().to_string();
        assert!(e.contains("x → z → y → x"), "{e}");
        let c = cycles(&p);
        assert_eq!(c.len(), 3);
        assert!(!c.contains_key("free"));
    }

    #[test]
    fn selectors() {
        let p = project(vec![
            model("a", &[], &["finance"]),
            model("b", &["a"], &[]),
            model("c", &["b"], &["finance"]),
            model("d", &[], &[]),
        ]);
        let s = |x: &str| {
            select(&p, &[x.to_string()])
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(s("b"), "b");
        assert_eq!(s("+b"), "a,b");
        assert_eq!(s("b+"), "b,c");
        assert_eq!(s("+b+"), "a,b,c");
        assert_eq!(s("tag:finance"), "a,c");
        assert_eq!(s("path:marts"), "a,b,c,d");
        assert_eq!(s("a d"), "a,d");
        assert_eq!(s(""), "a,b,c,d");
        assert!(select(&p, &["nope".into()])
            .unwrap_err()
            .contains("no model nope"));
    }
}
