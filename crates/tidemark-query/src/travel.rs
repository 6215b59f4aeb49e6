//! Time travel as a rewrite of the SQL syntax tree.
//!
//! DataFusion does not plan `FOR SYSTEM_TIME AS OF`, and a table function cannot see
//! the warehouse's history tables when it is planned, so before planning each
//! versioned table reference is replaced by a subquery over the table's history view
//! (or, for `VERSION AS OF`, by a hidden table holding that Delta version).

use std::ops::ControlFlow;

use deltalake::datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Ident, ObjectName, ObjectNamePart, Query, Statement,
    TableAlias, TableFactor, TableVersion, Value, VisitMut, VisitorMut,
};
use deltalake::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use deltalake::datafusion::sql::sqlparser::parser::Parser;
use tidemark_core::names::history_schema;
use tidemark_core::schema::{INGEST_TS, OP, SOURCE_TS, VALID_FROM, VALID_TO};
use tidemark_lake::quote;

use crate::engine::{Engine, VERSIONS_SCHEMA};
use crate::{Error, Result};

/// A Delta version of a current table that the query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionRef {
    pub(crate) schema: String,
    pub(crate) table: String,
    pub(crate) version: u64,
}

impl VersionRef {
    pub(crate) fn hidden_name(&self) -> String {
        format!("{}.{}@{}", self.schema, self.table, self.version)
    }
}

struct Rewriter<'a> {
    engine: &'a Engine,
    versions: Vec<VersionRef>,
    error: Option<Error>,
}

/// Rewrite time travel in place; returns the Delta versions to register first.
pub(crate) fn rewrite(statement: &mut Statement, engine: &Engine) -> Result<Vec<VersionRef>> {
    let mut r = Rewriter {
        engine,
        versions: Vec::new(),
        error: None,
    };
    let _ = statement.visit(&mut r);
    match r.error {
        Some(e) => Err(e),
        None => Ok(r.versions),
    }
}

/// An identifier as SQL resolves it: unquoted ones fold to lower case.
fn normalise(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

impl Rewriter<'_> {
    /// `[catalog.]schema.table` or a table name unique across schemas.
    fn resolve(&self, parts: &[String]) -> Result<(String, String)> {
        let shown = parts.join(".");
        match parts {
            [.., s, t] => {
                if self.engine.tables.contains_key(&(s.clone(), t.clone())) {
                    Ok((s.clone(), t.clone()))
                } else {
                    Err(Error::UnknownTable(shown))
                }
            }
            [t] => {
                let hits: Vec<_> = self.engine.tables.keys().filter(|(_, n)| n == t).collect();
                match hits.as_slice() {
                    [(s, n)] => Ok((s.clone(), n.clone())),
                    [] => Err(Error::UnknownTable(shown)),
                    _ => Err(Error::Sql(format!(
                        "table name {t} is ambiguous ({}); qualify it with its schema",
                        hits.iter()
                            .map(|(s, n)| format!("{s}.{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))),
                }
            }
            [] => Err(Error::UnknownTable(shown)),
        }
    }

    fn resolve_name(&self, name: &ObjectName) -> Result<(String, String)> {
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => normalise(i),
                other => other.to_string(),
            })
            .collect();
        self.resolve(&parts)
    }

    /// The rows of `schema.table` valid at `instant`, as a subquery.
    fn as_of_query(&self, schema: &str, table: &str, instant: &Expr) -> Result<Query> {
        let known = &self.engine.tables[&(schema.to_string(), table.to_string())];
        let cols = known
            .schema
            .columns
            .iter()
            .map(|c| quote(&c.name))
            .chain([INGEST_TS, SOURCE_TS, OP].map(quote))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {cols} FROM {hs}.{t} WHERE {vf} <= ({instant}) AND ({vt} IS NULL OR {vt} > ({instant}))",
            hs = quote(&history_schema(schema)),
            t = quote(table),
            vf = quote(VALID_FROM),
            vt = quote(VALID_TO),
        );
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql(&sql)
            .and_then(|mut p| p.parse_query())
            .map(|q| *q)
            .map_err(|e| Error::Sql(format!("AS OF {instant}: {e}")))
    }

    fn derived(query: Query, alias: Option<TableAlias>, table: &str) -> TableFactor {
        TableFactor::Derived {
            lateral: false,
            subquery: Box::new(query),
            alias: Some(alias.unwrap_or(TableAlias {
                explicit: false,
                at: None,
                name: Ident::with_quote('"', table),
                columns: vec![],
            })),
            sample: None,
        }
    }

    fn rewrite_factor(&mut self, factor: &mut TableFactor) -> Result<()> {
        let TableFactor::Table {
            name,
            alias,
            args,
            version,
            ..
        } = factor
        else {
            return Ok(());
        };
        if let Some(v) = version.take() {
            let (schema, table) = self.resolve_name(name)?;
            match v {
                TableVersion::ForSystemTimeAsOf(instant) | TableVersion::TimestampAsOf(instant) => {
                    let q = self.as_of_query(&schema, &table, &instant)?;
                    *factor = Self::derived(q, alias.take(), &table);
                }
                TableVersion::VersionAsOf(n) => {
                    let version = match &n {
                        Expr::Value(v) => match &v.value {
                            Value::Number(s, _) => s.parse::<u64>().ok(),
                            _ => None,
                        },
                        _ => None,
                    }
                    .ok_or_else(|| Error::Sql(format!("VERSION AS OF needs a whole number, got {n}")))?;
                    let r = VersionRef {
                        schema,
                        table,
                        version,
                    };
                    *name = ObjectName(vec![
                        ObjectNamePart::Identifier(Ident::with_quote('"', VERSIONS_SCHEMA)),
                        ObjectNamePart::Identifier(Ident::with_quote('"', r.hidden_name())),
                    ]);
                    if !self.versions.contains(&r) {
                        self.versions.push(r);
                    }
                }
                other => {
                    return Err(Error::Sql(format!(
                        "{other} is not supported; use FOR SYSTEM_TIME AS OF TIMESTAMP '…' or VERSION AS OF n"
                    )))
                }
            }
            return Ok(());
        }
        // as_of('schema.table', instant)
        let fname = name.to_string().to_ascii_lowercase();
        if fname == "as_of" {
            let Some(a) = args.as_ref() else {
                return Ok(());
            };
            let exprs: Vec<&Expr> = a
                .args
                .iter()
                .filter_map(|x| match x {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                    _ => None,
                })
                .collect();
            let usage = || {
                Error::Sql("usage: as_of('schema.table', TIMESTAMP '2026-10-24 00:00:00')".into())
            };
            let [Expr::Value(v), instant] = exprs.as_slice() else {
                return Err(usage());
            };
            let Value::SingleQuotedString(target) = &v.value else {
                return Err(usage());
            };
            let parts: Vec<String> = target.split('.').map(str::to_string).collect();
            let (schema, table) = self.resolve(&parts)?;
            let q = self.as_of_query(&schema, &table, instant)?;
            *factor = Self::derived(q, alias.take(), &table);
        }
        Ok(())
    }
}

impl VisitorMut for Rewriter<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if self.error.is_some() {
            return ControlFlow::Break(());
        }
        if let Err(e) = self.rewrite_factor(factor) {
            self.error = Some(e);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}
