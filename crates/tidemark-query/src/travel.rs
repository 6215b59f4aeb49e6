//! Time travel as a rewrite of the SQL syntax tree.
//!
//! DataFusion does not plan `FOR SYSTEM_TIME AS OF`, and a table function cannot see
//! the warehouse's history tables when it is planned, so before planning each
//! versioned table reference is replaced by a subquery over the table's history view
//! (`AS OF`, `as_of()`), over its raw history log (`changes()`, which needs the
//! tombstones and `_seq` that the view hides), or, for `VERSION AS OF`, by a hidden
//! table holding that Delta version.

use std::ops::ControlFlow;

use deltalake::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use deltalake::datafusion::sql::sqlparser::ast::{
    DataType as SqlType, Expr, FunctionArg, FunctionArgExpr, Ident, ObjectName, ObjectNamePart,
    Query, Statement, TableAlias, TableFactor, TableFunctionArgs, TableVersion, Value, VisitMut,
    VisitorMut,
};
use deltalake::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use deltalake::datafusion::sql::sqlparser::parser::Parser;
use tidemark_core::names::history_schema;
use tidemark_core::schema::{OP, SEQ, SOURCE_POS, VALID_FROM, VALID_TO};
use tidemark_lake::quote;

use crate::engine::{Engine, LOGS_SCHEMA, VERSIONS_SCHEMA};
use crate::{Error, Result};

/// Column of `changes()`: the source instant of the change (the log's `_valid_from`).
const CHANGED_AT: &str = "_changed_at";
/// Column of `changes()`: 1 for a key's first change in the interval, 2 for its
/// second, … (source order: `_valid_from`, then `_seq`), so several changes to one
/// key within one instant still have an order a query can `ORDER BY`.
const CHANGE_NO: &str = "_change_no";
/// Prefix of `changes()`'s column holding a value before the change.
const BEFORE_PREFIX: &str = "before_";
/// Prefix of `changes()`'s column holding a value after the change.
const AFTER_PREFIX: &str = "after_";

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

/// A table whose raw history log the query reads (`changes()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogRef {
    pub(crate) schema: String,
    pub(crate) table: String,
}

impl LogRef {
    pub(crate) fn hidden_name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

/// What the rewritten statement reads that must be registered before planning.
#[derive(Debug, Default)]
pub(crate) struct Needs {
    pub(crate) versions: Vec<VersionRef>,
    pub(crate) logs: Vec<LogRef>,
}

/// Whether the caller sees `schema.table` (see [`rewrite`]).
pub(crate) type Visible<'a> = &'a dyn Fn(&str, &str) -> bool;

struct Rewriter<'a> {
    engine: &'a Engine,
    visible: Visible<'a>,
    /// A session-level instant (`Engine::plan_as_of`): every schema-qualified
    /// reference to a landed current table without a version of its own reads the
    /// table as of it.
    default_as_of: Option<&'a Expr>,
    needs: Needs,
    error: Option<Error>,
}

/// Rewrite time travel in place; returns what must be registered first.
///
/// `visible` says which tables the caller sees: a bare table name is looked for among
/// those only, so resolving it never names (nor reaches) a table outside the caller's
/// grants; a name unknown or ambiguous among them fails as a name that exists nowhere.
pub(crate) fn rewrite(
    statement: &mut Statement,
    engine: &Engine,
    visible: Visible<'_>,
    default_as_of: Option<&Expr>,
) -> Result<Needs> {
    let mut r = Rewriter {
        engine,
        visible,
        default_as_of,
        needs: Needs::default(),
        error: None,
    };
    let _ = statement.visit(&mut r);
    match r.error {
        Some(e) => Err(e),
        None => Ok(r.needs),
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

/// The arguments of a table function, all plain positional expressions; `None` if any
/// is named, a wildcard or there are ClickHouse-style settings.
fn positional(args: &TableFunctionArgs) -> Option<Vec<&Expr>> {
    if args.settings.is_some() {
        return None;
    }
    args.args
        .iter()
        .map(|x| match x {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect()
}

/// A session-level instant (`Engine::plan_as_of`) as the expression the rewrite
/// compares `_valid_from` / `_valid_to` with: `TIMESTAMP '…'`. The text must be an
/// instant Arrow reads (`2026-10-24T00:00:00Z`, `2026-10-24 00:00:00`); it is never
/// pasted into SQL otherwise.
pub(crate) fn instant_expr(text: &str) -> Result<Expr> {
    let bad = || {
        Error::Sql(format!(
            "as of {text:?}: not an instant; use 2026-10-24T00:00:00Z or 2026-10-24 00:00:00"
        ))
    };
    if text.contains('\'') || string_to_timestamp_nanos(text).is_err() {
        return Err(bad());
    }
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("TIMESTAMP '{text}'"))
        .and_then(|mut p| p.parse_expr())
        .map_err(|_| bad())
}

/// Refuse literals that are not instants (`changes('s.t', 1, 2)`, `'yesterday'`), with
/// a message naming where they were used: DataFusion's own errors (a failed cast inside
/// an optimizer rule) do not say which time-travel argument was wrong. Anything else
/// (TIMESTAMP/DATE literals, `now() - INTERVAL …`) is left to the planner.
fn check_instant(what: &str, instant: &Expr) -> Result<()> {
    let text = match instant {
        Expr::Value(v) => match &v.value {
            Value::Number(..) | Value::Boolean(_) => None,
            Value::SingleQuotedString(s) => Some(s),
            _ => return Ok(()),
        },
        Expr::TypedString(t) if matches!(t.data_type, SqlType::Timestamp(..)) => {
            match &t.value.value {
                Value::SingleQuotedString(s) => Some(s),
                _ => return Ok(()),
            }
        }
        _ => return Ok(()),
    };
    if text.is_some_and(|s| string_to_timestamp_nanos(s).is_ok()) {
        return Ok(());
    }
    Err(Error::Sql(format!(
        "{what}: {instant} is not an instant; use TIMESTAMP '2026-10-24 00:00:00' or an expression such as now() - INTERVAL '30 days'"
    )))
}

impl Rewriter<'_> {
    /// `[catalog.]schema.table`, or a table name unique across the schemas the caller
    /// sees. A qualified name outside the grants resolves (the catalog then refuses
    /// it with 42501, as it does in `FROM`); a bare name never resolves to one, and
    /// its errors list only tables the caller sees.
    fn resolve(&self, parts: &[String]) -> Result<(String, String)> {
        let shown = parts.join(".");
        match parts {
            [.., s, t] => {
                if self.engine.known(s, t).is_some() {
                    Ok((s.clone(), t.clone()))
                } else if self.engine.is_view(s, t) {
                    Err(Error::Sql(format!(
                        "{shown} is a view: it stores nothing, so it has no history of its own; travel in time on the tables it reads, or make the model materialized = 'table' to keep its history"
                    )))
                } else {
                    Err(Error::UnknownTable(shown))
                }
            }
            [t] => {
                let keys = self.engine.table_keys();
                let hits: Vec<_> = keys
                    .iter()
                    .filter(|(s, n)| n == t && (self.visible)(s, n))
                    .collect();
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

    /// The table a table function names in its string argument (`'shop.items'`).
    ///
    /// The name as written is tried first, so a table kept with `naming = "preserve"`
    /// is found by its exact spelling (`'shop.LineItems'`); then the string is read as
    /// SQL reads a table name (`'Shop.Items'` folds to `shop.items`, `'"Shop"."T"'`
    /// keeps its case), so the function accepts what `FROM` would.
    fn resolve_target(&self, function: &str, target: &str) -> Result<(String, String)> {
        let as_written: Vec<String> = target.split('.').map(str::to_string).collect();
        let first = match self.resolve(&as_written) {
            Ok(found) => return Ok(found),
            Err(e) => e,
        };
        let as_sql = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(target)
            .and_then(|mut p| p.parse_object_name(false));
        match as_sql {
            Ok(name) => self.resolve_name(&name),
            Err(_) => Err(first),
        }
        .map_err(|e| match e {
            Error::UnknownTable(t) => Error::UnknownTable(format!("{t} (named in {function})")),
            other => other,
        })
    }

    /// The rows of `schema.table` valid at `instant`, as a subquery.
    fn as_of_query(&self, schema: &str, table: &str, instant: &Expr) -> Result<Query> {
        let known = self
            .engine
            .known(schema, table)
            .ok_or_else(|| Error::UnknownTable(format!("{schema}.{table}")))?;
        let cols = tidemark_lake::mor::current_columns_sql(&known.schema);
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

    /// The changes to `schema.table` whose source instant is in `(from, to]`, as a
    /// subquery over the table's versions, tombstones included (see the crate docs
    /// for its columns).
    ///
    /// The half-open interval matches `AS OF`'s `[_valid_from, _valid_to)`: applying
    /// `changes(t, a, b)` to `t AS OF a` gives `t AS OF b`. A change's before-values
    /// are its key's previous version. That version began in the interval too, or
    /// began earlier and ended at the change, so the versions read are those that
    /// begin in `(from, to]` or end in it: both are ranges the closed history's file
    /// and page statistics prune by, so the window runs over the changes (and their
    /// predecessors), never over the whole history.
    fn changes_query(
        &mut self,
        function: &str,
        schema: &str,
        table: &str,
        from: &Expr,
        to: Option<&Expr>,
    ) -> Result<Query> {
        let known = self
            .engine
            .known(schema, table)
            .ok_or_else(|| Error::UnknownTable(format!("{schema}.{table}")))?;
        let ts = &known.schema;
        let keys = ts.key_names();
        let window = format!(
            "OVER (PARTITION BY {} ORDER BY {}, {})",
            keys.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", "),
            quote(VALID_FROM),
            quote(SEQ)
        );
        let values: Vec<(usize, &str)> = ts
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !ts.key.contains(i))
            .map(|(i, c)| (i, c.name.as_str()))
            .collect();

        let mut out_names: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        out_names.extend([OP, CHANGED_AT, CHANGE_NO].map(str::to_string));
        let mut out_cols: Vec<String> = keys.iter().map(|k| quote(k)).collect();
        out_cols.push(quote(OP));
        out_cols.push(format!("{} AS {}", quote(VALID_FROM), quote(CHANGED_AT)));
        // ROW_NUMBER is unsigned in DataFusion; BIGINT is what SQL clients expect.
        // Numbered after the interval filter: the key's changes within it.
        out_cols.push(format!(
            "CAST(ROW_NUMBER() {window} AS BIGINT) AS {}",
            quote(CHANGE_NO)
        ));
        let mut inner = vec![format!(
            "LAG({}) {window} AS \"__tidemark_prev_op\"",
            quote(OP)
        )];
        for (i, name) in &values {
            let (before, after) = (
                format!("{BEFORE_PREFIX}{name}"),
                format!("{AFTER_PREFIX}{name}"),
            );
            inner.push(format!(
                "LAG({}) {window} AS \"__tidemark_before_{i}\"",
                quote(name)
            ));
            // A key that did not exist before the change (its previous version is a
            // delete, or there is none) has no before-value; a deleted one has no
            // after-value. Deletes may carry only the key, so they are never read.
            out_cols.push(format!(
                "CASE WHEN \"__tidemark_prev_op\" = 'd' THEN NULL ELSE \"__tidemark_before_{i}\" END AS {}",
                quote(&before)
            ));
            out_cols.push(format!(
                "CASE WHEN {} = 'd' THEN NULL ELSE {} END AS {}",
                quote(OP),
                quote(name),
                quote(&after)
            ));
            out_names.push(before);
            out_names.push(after);
        }
        out_cols.push(quote(SOURCE_POS));
        out_names.push(SOURCE_POS.to_string());

        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = out_names.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(Error::Sql(format!(
                "{function}: the table has a column whose name is also one of the columns changes() makes ({dup}); read {}.{} instead",
                quote(&history_schema(schema)),
                quote(table)
            )));
        }

        let to = to.map_or_else(|| "now()".to_string(), |e| format!("({e})"));
        let log = LogRef {
            schema: schema.to_string(),
            table: table.to_string(),
        };
        let (vf, vt) = (quote(VALID_FROM), quote(VALID_TO));
        let sql = format!(
            "SELECT {out} FROM (SELECT *, {inner} FROM {ls}.{lt} \
               WHERE ({vf} > ({from}) AND {vf} <= {to}) OR ({vf} <= ({from}) AND {vt} > ({from}) AND {vt} <= {to})\
             ) AS \"__tidemark_log\" \
             WHERE {vf} > ({from}) AND {vf} <= {to}",
            out = out_cols.join(", "),
            inner = inner.join(", "),
            ls = quote(LOGS_SCHEMA),
            lt = quote(&log.hidden_name()),
        );
        if !self.needs.logs.contains(&log) {
            self.needs.logs.push(log);
        }
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql(&sql)
            .and_then(|mut p| p.parse_query())
            .map(|q| *q)
            .map_err(|e| Error::Sql(format!("{function}: {e}")))
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
                    check_instant(&format!("{schema}.{table} AS OF"), &instant)?;
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
                    if !self.needs.versions.contains(&r) {
                        self.needs.versions.push(r);
                    }
                }
                other => {
                    return Err(Error::Unsupported(format!(
                        "{other} is not supported; use FOR SYSTEM_TIME AS OF TIMESTAMP '…' or VERSION AS OF n"
                    )))
                }
            }
            return Ok(());
        }
        // Table functions: as_of('schema.table', instant), changes('schema.table', from[, to]).
        let Some(a) = args.as_ref() else {
            // A session-level instant: a plain `schema.table` that is a landed
            // current table is read as of it, exactly as if the statement said
            // `FOR SYSTEM_TIME AS OF`. Only schema-qualified names: a bare name may
            // be a CTE of the statement, which must stay what it is. History views,
            // tidemark's own tables and views are not landed tables and stay as
            // they are. Grants are the catalog's business, as for AS OF: the
            // rewrite reads `<schema>_history.t`, which the role's catalog serves
            // masked and filtered, or refuses.
            if let (Some(instant), [.., s, t]) = (self.default_as_of, name.0.as_slice()) {
                let part = |p: &ObjectNamePart| match p {
                    ObjectNamePart::Identifier(i) => normalise(i),
                    other => other.to_string(),
                };
                let (schema, table) = (part(s), part(t));
                if self.engine.known(&schema, &table).is_some() {
                    let q = self.as_of_query(&schema, &table, instant)?;
                    *factor = Self::derived(q, alias.take(), &table);
                }
            }
            return Ok(());
        };
        let fname = name.to_string().to_ascii_lowercase();
        let target = |exprs: &[&Expr]| match exprs.first() {
            Some(Expr::Value(v)) => match &v.value {
                Value::SingleQuotedString(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        };
        match fname.as_str() {
            "as_of" => {
                let usage = || {
                    Error::Sql(
                        "usage: as_of('schema.table', TIMESTAMP '2026-10-24 00:00:00')".into(),
                    )
                };
                let exprs = positional(a).ok_or_else(usage)?;
                let (Some(t), [_, instant]) = (target(&exprs), exprs.as_slice()) else {
                    return Err(usage());
                };
                let function = format!("as_of('{t}', …)");
                check_instant(&function, instant)?;
                let (schema, table) = self.resolve_target(&function, &t)?;
                let q = self.as_of_query(&schema, &table, instant)?;
                *factor = Self::derived(q, alias.take(), &table);
            }
            "changes" => {
                let usage = |got: String| {
                    Error::Sql(format!(
                        "changes() takes a table name and one or two instants, got {got}; usage: \
                         changes('schema.table', TIMESTAMP '2026-10-01 00:00:00'[, TIMESTAMP '2026-11-01 00:00:00']) \
                         for the changes after the first instant up to and including the second (default now())"
                    ))
                };
                let exprs = positional(a)
                    .ok_or_else(|| usage("named arguments; they are positional".into()))?;
                let Some(t) = target(&exprs) else {
                    return Err(usage(match exprs.first() {
                        Some(e) => format!(
                            "{e} where the table name should be, as a string such as 'shop.items'"
                        ),
                        None => "no arguments".into(),
                    }));
                };
                let function = format!("changes('{t}', …)");
                let (from, to) = match exprs.as_slice() {
                    [_, from] => (*from, None),
                    [_, from, to] => (*from, Some(*to)),
                    [_] => return Err(usage("1 argument".into())),
                    _ => return Err(usage(format!("{} arguments", exprs.len()))),
                };
                check_instant(&format!("{function} from"), from)?;
                if let Some(to) = to {
                    check_instant(&format!("{function} to"), to)?;
                }
                let (schema, table) = self.resolve_target(&function, &t)?;
                let q = self.changes_query(&function, &schema, &table, from, to)?;
                *factor = Self::derived(q, alias.take(), &table);
            }
            _ => {}
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
